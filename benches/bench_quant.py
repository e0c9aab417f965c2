"""Quantize / dequantize throughput: fastquant against ggml (ggml-python) and gguf-py, one run.

    python benches/bench_quant.py                # 64 MB and 1 MB inputs, 1 and 2 threads
    python benches/bench_quant.py --quick        # a smoke run (CI)
    python benches/bench_quant.py --types q4_0,q8_0 --reps 9

Every figure is GB/s of float32 (quantize: f32 read; dequantize: f32 written), the median of
``--reps`` timed runs after a warm-up, with min and max kept in the JSON. Both sides get the same
data and the same number of threads: ggml's ``ggml_quantize_chunk`` and ``to_float`` are
single-threaded calls, so with N threads ggml runs N calls on N Python threads (ctypes releases the
GIL), each on its share of the rows, as llama-quantize splits its work. Memory bandwidth is
measured in the same run (a 64 MB numpy copy per thread count) so dequantize can be reported as a
fraction of it. Results: a markdown table on stdout and a JSON file under benches/results/.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import math
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

import fastquant

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from reference import ggml_oracle  # noqa: E402

try:
    import gguf
    from gguf.quants import quantize as gguf_quantize, dequantize as gguf_dequantize
except ImportError:  # gguf-py is optional for this benchmark
    gguf = None

# Every type ggml_quantize_chunk writes and fastquant implements (Q8_1 and Q8_K are activation
# types that ggml_quantize_chunk does not take).
DEFAULT_TYPES = [
    t.value for t in fastquant.QuantType if t.can_quantize and t.value not in ("F32", "Q8_1", "Q8_K")
]
GGUF_PY_QUANTIZE = {"BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4"}


def calls_to_fill(call_seconds: float, min_seconds: float) -> int:
    """How many back-to-back calls of `call_seconds` each last at least `min_seconds` (at least 1)."""
    return max(1, math.ceil(min_seconds / max(call_seconds, 1e-9)))


def timed(fn: Callable[[], object], reps: int, min_rep_seconds: float = 0.0) -> Dict[str, float]:
    """Seconds per call of `fn`: median, min and max over `reps` repetitions after a warm-up call.
    With `min_rep_seconds`, a repetition calls `fn` as many times as the warm-up says fill that
    long and counts the mean: a call of a millisecond is then not one sample of a timer and of
    whatever else this shared machine does during that millisecond."""
    t0 = time.perf_counter()
    fn()  # warm-up: page faults, caches, lazy initialisation
    calls = calls_to_fill(time.perf_counter() - t0, min_rep_seconds)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)


def on_threads(n: int, work: Callable[[int, int], None], rows: int) -> Callable[[], None]:
    """Runs work(row_start, row_end) on n Python threads of a pool started once (so thread start-up
    is not timed) over a split of the rows."""
    if n == 1:
        return lambda: work(0, rows)

    def run() -> None:
        bounds = [(rows * i // n, rows * (i + 1) // n) for i in range(n)]
        for f in [_POOL.submit(work, a, b) for a, b in bounds]:
            f.result()

    return run


def make_weights(rows: int, k: int, seed: int = 0) -> np.ndarray:
    """Weight-like data: Student-t (heavy tails) at a typical std of 0.02, a few outlier columns."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(5, size=(rows, k)) * 0.02).astype(np.float32)
    w[:, rng.choice(k, size=max(1, k // 512), replace=False)] *= 20
    return w


def measure_bandwidth(nbytes: int, threads: int, reps: int) -> float:
    """GB/s of a large copy (bytes read + bytes written) with `threads` numpy copies in parallel."""
    n = nbytes // 4
    src = np.ones(n, dtype=np.float32)
    dst = np.empty_like(src)
    dst[:] = 0

    def work(a: int, b: int) -> None:
        np.copyto(dst[a:b], src[a:b])

    t = timed(on_threads(threads, work, n), reps)
    return 2 * nbytes / t["median"] / 1e9


def bench(args: argparse.Namespace) -> Dict[str, object]:
    sizes = {"64MB": (4096, 4096), "1MB": (64, 4096)}
    if args.quick:
        sizes = {"4MB": (256, 4096), "256KB": (16, 4096)}
    if args.sizes:
        sizes = {name: shape for name, shape in sizes.items() if name in args.sizes.split(",")}
    thread_counts = [1, 2] if not args.threads else [int(t) for t in args.threads.split(",")]
    types = [fastquant.QuantType(t.upper()) for t in (args.types.split(",") if args.types else DEFAULT_TYPES)]
    results: List[Dict[str, object]] = []
    bandwidth = {t: measure_bandwidth(64 << 20 if not args.quick else 4 << 20, t, args.reps) for t in thread_counts}

    for size_name, (rows, k) in sizes.items():
        x = make_weights(rows, k)
        gb = x.nbytes / 1e9
        # llama.cpp-like importance weights: mean squared activations, positive, a few large.
        imatrix = (np.random.default_rng(1).lognormal(0.0, 1.0, k).astype(np.float32) if args.imatrix else None)
        for qt in types:
            q_ref = ggml_oracle.quantize(x, qt.id, imatrix)
            if not np.array_equal(fastquant.quantize(x, qt, imatrix=imatrix).data, q_ref):
                raise SystemExit(f"{qt.value}: fastquant bytes differ from ggml; refusing to time a wrong kernel")
            row_bytes = qt.row_bytes(k)
            for threads in thread_counts:
                fastquant.set_num_threads(threads)
                out_q = np.empty(rows * row_bytes, dtype=np.uint8)
                out_f = np.empty((rows, k), dtype=np.float32)
                qtensor = fastquant.QuantizedTensor(q_ref, qt, (rows, k))

                def ggml_q(a: int, b: int) -> None:
                    out_q[a * row_bytes : b * row_bytes] = ggml_oracle.quantize(x[a:b], qt.id, imatrix)

                def ggml_dq(a: int, b: int) -> None:
                    out_f[a:b] = ggml_oracle.dequantize(q_ref[a * row_bytes : b * row_bytes], qt.id, (b - a) * k).reshape(
                        b - a, k
                    )

                row: Dict[str, object] = {
                    "size": size_name,
                    "type": qt.value,
                    "threads": threads,
                    "imatrix": imatrix is not None,
                }
                t_fq = timed(lambda: fastquant.quantize(x, qt, imatrix=imatrix), args.reps)
                t_gg = timed(on_threads(threads, ggml_q, rows), args.reps)
                row["quantize"] = {"fastquant": t_fq, "ggml": t_gg}
                row["quantize_gbps"] = gb / t_fq["median"]
                row["quantize_ggml_gbps"] = gb / t_gg["median"]
                row["quantize_ratio_ggml"] = t_gg["median"] / t_fq["median"]

                has_ggml_dq = bool(ggml_oracle.type_traits(qt.id).to_float)
                d_fq = timed(lambda: fastquant.dequantize(qtensor, out=out_f), args.reps)
                row["dequantize"] = {"fastquant": d_fq}
                row["dequantize_gbps"] = gb / d_fq["median"]
                moved = (x.nbytes + q_ref.nbytes) / 1e9
                row["dequantize_bandwidth_fraction"] = moved / d_fq["median"] / bandwidth[threads]
                if has_ggml_dq:
                    d_gg = timed(on_threads(threads, ggml_dq, rows), args.reps)
                    row["dequantize"]["ggml"] = d_gg
                    row["dequantize_ggml_gbps"] = gb / d_gg["median"]
                    row["dequantize_ratio_ggml"] = d_gg["median"] / d_fq["median"]

                if gguf is not None and threads == 1 and not args.no_gguf:
                    gtype = gguf.GGMLQuantizationType[qt.value]
                    if qt.value in GGUF_PY_QUANTIZE and imatrix is None:
                        t_gp = timed(lambda: gguf_quantize(x, gtype), max(3, args.reps // 2))
                        row["quantize"]["gguf_py"] = t_gp
                        row["quantize_ratio_gguf_py"] = t_gp["median"] / t_fq["median"]
                    qbytes = q_ref.reshape(rows, row_bytes)
                    d_gp = timed(lambda: gguf_dequantize(qbytes, gtype), max(3, args.reps // 2))
                    row["dequantize"]["gguf_py"] = d_gp
                    row["dequantize_ratio_gguf_py"] = d_gp["median"] / d_fq["median"]
                results.append(row)
                print(_line(row), flush=True)
    fastquant.set_num_threads(os.cpu_count() or 1)
    return {
        "benchmark": "quant",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "simd": fastquant.simd_level(),
        "fastquant": fastquant.__version__,
        "bandwidth_gbps": bandwidth,
        "reps": args.reps,
        "imatrix": bool(args.imatrix),
        "results": results,
    }


def _fmt(v: Optional[float], suffix: str = "") -> str:
    return "-" if v is None else f"{v:.2f}{suffix}"


def _line(r: Dict[str, object]) -> str:
    g = r.get
    return (
        f"| {r['size']} | {r['type']} | {r['threads']} | {_fmt(g('quantize_gbps'))} | {_fmt(g('quantize_ggml_gbps'))} "
        f"| {_fmt(g('quantize_ratio_ggml'), 'x')} | {_fmt(g('quantize_ratio_gguf_py'), 'x')} "
        f"| {_fmt(g('dequantize_gbps'))} | {_fmt(g('dequantize_ggml_gbps'))} | {_fmt(g('dequantize_ratio_ggml'), 'x')} "
        f"| {_fmt(g('dequantize_ratio_gguf_py'), 'x')} | {100 * g('dequantize_bandwidth_fraction'):.0f}% |"
    )


HEADER = (
    "| size | type | threads | quantize GB/s | ggml GB/s | vs ggml | vs gguf-py "
    "| dequantize GB/s | ggml GB/s | vs ggml | vs gguf-py | of bandwidth |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--types", help="comma-separated types (default: all implemented legacy/float types)")
    p.add_argument("--threads", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--imatrix", action="store_true", help="quantize with importance weights (both sides)")
    p.add_argument("--sizes", help="comma-separated subset of the sizes (64MB,1MB)")
    p.add_argument("--no-gguf", action="store_true", help="skip gguf-py")
    p.add_argument("--out", help="JSON output path (default benches/results/quant-<date>.json)")
    args = p.parse_args()
    print(f"fastquant {fastquant.__version__}, simd {fastquant.simd_level()}, cpu {_cpu_name()}")
    print("GB/s of float32 data (quantize: read, dequantize: written); medians of", args.reps, "runs\n")
    print(HEADER)
    report = bench(args)
    bw = ", ".join(f"{t} thread(s): {v:.1f} GB/s" for t, v in report["bandwidth_gbps"].items())
    print(f"\nmemory bandwidth (numpy copy, read+write): {bw}")
    out = Path(args.out) if args.out else HERE / "results" / f"quant-{_dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
