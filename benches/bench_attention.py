"""Attention speed: fastquant.attention against ggml's flash_attn_ext (ggml-python) and numpy's naive
softmax(Q Kᵀ) V, in one run.

    python benches/bench_attention.py              # N = 512, 2048, 8192 and decode, 1 and 2 threads
    python benches/bench_attention.py --quick      # a smoke run (CI)
    python benches/bench_attention.py --memory     # also peak extra memory at Nq = Nk = 16384

Shape: B=1, Hq=32, Hkv=8 (GQA), D=128. Prefill: Nq = Nk = N, causal and not, q/k/v float32 for
fastquant and numpy, K/V in F16 for ggml (its CPU kernel wants F16 or quantized K/V). Decode: one
query per head against Nk = 4096 and 32768 cached keys in F16 and in Q8_0, for both libraries.
Figures are GFLOP/s of the work the mask leaves (4·B·Hq·Nq·Nk·D, halved for causal), medians of
``--reps`` rounds after a warm-up (min and max in the JSON). Each round calls every side and variant
once (fastquant, ggml, numpy; causal and not; F16 and Q8_0), so the ratios (fastquant / peer,
causal / non-causal, Q8_0 / F16) hold on a noisy machine. The numpy side runs one head at a time (its full score matrix is
Nq x Nk floats) with OpenBLAS set to the same thread count; it is skipped at N = 8192.
``--memory`` runs fastquant in a fresh process at N = 16384 (causal) and reports its peak RSS
beyond the inputs and output. Results: a markdown table on stdout, JSON under benches/results/.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import glob
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

import fastquant

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from reference.ggml_attention import F16, HAVE_GGML, Q8_0, FlashAttnExt, causal_window_mask  # noqa: E402

sys.path.insert(0, str(HERE))
from bench_quant import calls_to_fill  # noqa: E402

B, HQ, HKV, D = 1, 32, 8, 128


def _openblas_threads() -> Callable[[int], None]:
    """Sets numpy's OpenBLAS thread count (numpy wheels bundle scipy-openblas), if it can."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*.so*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                return lambda n: fn(ctypes.c_int(n))
    return lambda n: None


# A timed sample lasts at least this long: calls shorter than that (decode at Nk = 4096, about a
# millisecond) run back to back and count their mean, every side alike; one 1 ms call at a time
# varied by up to 2x between runs on this shared VM.
SAMPLE_SECONDS = 0.05
# Pause before each sample, untimed (see timed_together).
IDLE_SECONDS = 0.2


def timed_together(fns: Dict[str, Callable[[], object]], reps: int) -> Dict[str, Dict[str, float]]:
    """Seconds per call of every function, ``reps`` samples each, interleaved (one sample of each
    per round, after a warm-up call of each): on a shared, noisy machine the load then hits every
    side alike, so the ratios hold even when the absolute times drift. A sample is as many calls
    as the warm-up says fill ``SAMPLE_SECONDS``."""
    calls: Dict[str, int] = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        calls[name] = calls_to_fill(time.perf_counter() - t0, SAMPLE_SECONDS)
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            # OpenBLAS's threads spin for a while after numpy's call before they sleep; on 2 cores
            # they took a core from the next sample's threads (fastquant at N = 512, 2 threads:
            # 15.4 ms right after numpy, 11.2 ms alone). A pause lets every side start idle.
            time.sleep(IDLE_SECONDS)
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / calls[name])
    return {n: {"median": statistics.median(t), "min": min(t), "max": max(t)} for n, t in times.items()}


def naive(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """softmax(q kᵀ / sqrt(D)) v one head at a time, materialising each head's scores."""
    out = np.empty_like(q)
    group = q.shape[1] // k.shape[1]
    nq, nk = q.shape[2], k.shape[2]
    keep = np.arange(nk)[None, :] <= np.arange(nq)[:, None] + (nk - nq) if causal else None
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            s = q[b, h] @ k[b, h // group].T * np.float32(1 / np.sqrt(q.shape[3]))
            if keep is not None:
                s = np.where(keep, s, np.float32(-np.inf))
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            out[b, h] = s @ v[b, h // group]
    return out


def flops(nq: int, nk: int, causal: bool) -> float:
    full = 4.0 * B * HQ * nq * nk * D
    if not causal:
        return full
    # Visible (query, key) pairs with queries aligned to the end of the keys.
    visible = sum(min(nk, nk - nq + i + 1) for i in range(nq))
    return full * visible / (nq * nk)


def bench(args: argparse.Namespace) -> List[Dict[str, object]]:
    set_blas_threads = _openblas_threads()
    rng = np.random.default_rng(0)
    rows: List[Dict[str, object]] = []
    threads = [int(t) for t in args.threads.split(",")]
    # (case, N, variants): the variants of one case (causal and not; F16 and Q8_0 K/V) share the
    # data and are timed interleaved, so causal/non-causal and Q8_0/F16 ratios are same-run too.
    groups = []
    if args.only in (None, "prefill"):
        sizes = [256, 512] if args.quick else [int(x) for x in args.sizes.split(",")]
        groups += [("prefill", n, [(False, "F32"), (True, "F32")]) for n in sizes]
    if args.only in (None, "decode"):
        groups += [("decode", n, [(False, "F16"), (False, "Q8_0")]) for n in ([1024] if args.quick else [4096, 32768])]
    for kind, n, variants in groups:
        nq = n if kind == "prefill" else 1
        q = rng.standard_normal((B, HQ, nq, D), dtype=np.float32)
        k = rng.standard_normal((B, HKV, n, D), dtype=np.float32)
        v = rng.standard_normal((B, HKV, n, D), dtype=np.float32)
        for t in threads:
            fastquant.set_num_threads(t)
            set_blas_threads(t)
            fns: Dict[str, Callable[[], object]] = {}
            for causal, kv in variants:
                ours_k, ours_v = (k, v) if kv == "F32" else (fastquant.quantize(k, kv), fastquant.quantize(v, kv))
                key = f"{causal}-{kv}"
                fns["fastquant " + key] = lambda k_=ours_k, v_=ours_v, c=causal: fastquant.attention(q, k_, v_, causal=c)
                if HAVE_GGML and not args.no_ggml:
                    mask = causal_window_mask(nq, n, causal, None)
                    fa = FlashAttnExt(q, k, v, scale=D**-0.5, mask=mask, kv_type=Q8_0 if kv == "Q8_0" else F16)
                    fns["ggml " + key] = lambda fa=fa, t=t: fa.compute(t)
                if kind == "prefill" and n <= 2048 and not args.no_numpy:
                    fns["numpy " + key] = lambda c=causal: naive(q, k, v, c)
            res = timed_together(fns, args.reps)
            for causal, kv in variants:
                key = f"{causal}-{kv}"
                work = flops(nq, n, causal)
                row: Dict[str, object] = {"case": kind, "n_queries": nq, "n_keys": n, "causal": causal, "kv": kv, "threads": t}
                ours = res["fastquant " + key]
                row["fastquant_s"] = ours
                row["fastquant_gflops"] = work / ours["median"] / 1e9
                for peer in ("ggml", "numpy"):
                    if f"{peer} {key}" in res:
                        theirs = res[f"{peer} {key}"]
                        row[f"{peer}_s"] = theirs
                        row[f"{peer}_gflops"] = work / theirs["median"] / 1e9
                        row[f"ratio_{peer}"] = theirs["median"] / ours["median"]
                rows.append(row)
                print(_line(row), flush=True)
            del fns
    return rows


def _fmt(v: Optional[float], suffix: str = "", digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}{suffix}"


def _line(r: Dict[str, object]) -> str:
    g = r.get
    shape = f"{r['n_queries']}x{r['n_keys']}"
    ms = 1e3 * r["fastquant_s"]["median"]  # type: ignore[index]
    return (
        f"| {r['case']} | {shape} | {'yes' if r['causal'] else 'no'} | {r['kv']} | {r['threads']} | {ms:.2f} "
        f"| {_fmt(g('fastquant_gflops'))} | {_fmt(g('ggml_gflops'))} | {_fmt(g('ratio_ggml'), 'x', 2)} "
        f"| {_fmt(g('numpy_gflops'))} | {_fmt(g('ratio_numpy'), 'x', 2)} |"
    )


HEADER = (
    "| case | Nq x Nk | causal | K/V | threads | fastquant ms | fastquant GFLOP/s | ggml GFLOP/s | vs ggml "
    "| numpy GFLOP/s | vs numpy |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def summary(rows: List[Dict[str, object]]) -> List[str]:
    """The issue's bars, computed from this run's rows."""
    lines = []
    by = {(r["case"], r["n_keys"], r["causal"], r["kv"], r["threads"]): r for r in rows}
    for (case, n, causal, kv, t), r in sorted(by.items(), key=str):
        if case == "prefill" and causal:
            other = by.get((case, n, False, kv, t))
            if other:
                frac = r["fastquant_s"]["median"] / other["fastquant_s"]["median"]  # type: ignore[index]
                lines.append(f"causal/non-causal time, N={n}, {t} thread(s): {frac:.2f}")
        if case == "decode" and kv == "Q8_0":
            other = by.get((case, n, False, "F16", t))
            if other:
                speed = other["fastquant_s"]["median"] / r["fastquant_s"]["median"]  # type: ignore[index]
                lines.append(f"decode Q8_0 speed-up over F16, Nk={n}, {t} thread(s): {speed:.2f}x")
    return lines


def peak_memory(n: int) -> Dict[str, float]:
    """Peak RSS of a fresh process during the call beyond what it held before (the inputs) and
    the output, in MB (Linux: the peak is reset just before the call)."""
    code = f"""
import numpy as np, fastquant
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
rng = np.random.default_rng(0)
q = rng.standard_normal(({B}, {HQ}, {n}, {D}), dtype=np.float32)
k = rng.standard_normal(({B}, {HKV}, {n}, {D}), dtype=np.float32)
v = rng.standard_normal(({B}, {HKV}, {n}, {D}), dtype=np.float32)
open("/proc/self/clear_refs", "w").write("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS")
o = fastquant.attention(q, k, v, causal=True)
print(before, status("VmHWM"), o.nbytes / 2**20)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after, out_mb = (float(x) for x in res.stdout.split())
    # The output is written in full, so all its pages are resident: whatever else the peak grew by
    # is the kernel's own memory (scratch, partials) plus the interpreter's noise.
    return {"n": n, "rss_before_mb": before, "rss_after_mb": after, "output_mb": out_mb, "extra_mb": after - before - out_mb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--memory", action="store_true", help="also measure peak extra memory at N = 16384")
    p.add_argument("--sizes", default="512,2048,8192", help="prefill sizes N (default 512,2048,8192)")
    p.add_argument("--only", choices=["prefill", "decode"], help="run only these cases")
    p.add_argument("--no-ggml", action="store_true")
    p.add_argument("--no-numpy", action="store_true")
    p.add_argument("--out", help="JSON output path (default benches/results/attention-<date>.json)")
    args = p.parse_args()
    print(f"fastquant {fastquant.__version__}, simd {fastquant.simd_level()}, B={B} Hq={HQ} Hkv={HKV} D={D}")
    print(f"GFLOP/s of the unmasked work; medians of {args.reps} runs\n")
    print(HEADER)
    rows = bench(args)
    report: Dict[str, object] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "simd": fastquant.simd_level(),
        "shape": {"B": B, "Hq": HQ, "Hkv": HKV, "D": D},
        "rows": rows,
    }
    print()
    for line in summary(rows):
        print(line)
    if args.memory:
        mem = peak_memory(16384)
        report["memory"] = mem
        print(f"peak memory beyond inputs and output at Nq = Nk = 16384: {mem['extra_mb']:.1f} MB")
    out = Path(args.out) if args.out else HERE / "results" / f"attention-{_dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
