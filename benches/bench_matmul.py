"""Quantized matmul: fastquant against ggml's mul_mat (ggml-python) and numpy, one run.

    python benches/bench_matmul.py                 # W [4096 x 14336], x 1, 8, 512 rows, 1 and 2 threads
    python benches/bench_matmul.py --quick         # a smoke run (CI)
    python benches/bench_matmul.py --types q4_0,q8_0 --rows 1,8 --reps 9

The weight is the issue's W [4096 x 14336] (N = 4096 outputs, K = 14336), quantized once by
fastquant; ggml gets the same bytes (a graph ``ggml_mul_mat``, built once, computed by
``ggml_graph_compute`` with ``n_threads`` threads) and numpy multiplies the
dequantized float32 weight (``x @ W.T``; OpenBLAS set to the same thread count). fastquant runs
through a ``Linear`` (weight kept, output buffer reused). Figures: GFLOP/s = 2 * rows * N * K /
time and GB/s of weight bytes read, medians of ``--reps`` runs after a warm-up, each run at least
``REP_SECONDS`` of back-to-back calls (512-row runs: at
most 3). Ratios are fastquant's speed over the peer's; the ``llama.cpp`` column is the issue's
table (llama.cpp b11312 on this machine, its best layout per type), the bar to beat. The read
bandwidth (the best of a few numpy streaming reductions over 256 MB, per thread count) is
measured in the same run; 1-row results also report the fraction of it their weight stream
reaches. A ``Linear`` repacks weights of every type with a packed GEMM kernel once into panels
when it is built (as llama.cpp repacks Q4_0); ``repack_seconds`` per type and thread count is the
median time to build the ``Linear`` (the issue wants it below one 512-row matmul), printed after
the type's rows. Results: a markdown table on stdout and a JSON file under benches/results/.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import glob
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

import fastquant

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))
from bench_quant import _cpu_name, make_weights, timed  # noqa: E402

try:
    from reference.ggml_matmul import GgmlMatmul
except ImportError:  # ggml-python is optional
    GgmlMatmul = None

# The table: llama.cpp b11312 on this machine, GFLOP/s at (rows, threads).
LLAMA_CPP = {
    "Q4_0": {(1, 1): 83, (1, 2): 161, (8, 1): 191, (8, 2): 395, (512, 1): 275, (512, 2): 539},
    "Q8_0": {(1, 1): 46, (1, 2): 85, (8, 1): 105, (8, 2): 208, (512, 1): 147, (512, 2): 271},
    "Q4_K": {(1, 1): 93, (1, 2): 180, (8, 1): 103, (8, 2): 200, (512, 1): 450, (512, 2): 832},
    "Q5_K": {(1, 1): 51, (1, 2): 93, (8, 1): 85, (8, 2): 174, (512, 1): 454, (512, 2): 866},
    "Q6_K": {(1, 1): 54, (1, 2): 102, (8, 1): 77, (8, 2): 150, (512, 1): 348, (512, 2): 720},
    "IQ4_XS": {(1, 1): 57, (1, 2): 115, (8, 1): 132, (8, 2): 246, (512, 1): 462, (512, 2): 909},
    "F16": {(1, 1): 22, (1, 2): 42, (8, 1): 107, (8, 2): 213, (512, 1): 185, (512, 2): 349},
}
# Each timed repetition lasts at least this long (many calls of a 1-row matmul, one of a 512-row
# one), for every side alike: single 1 ms calls on this shared VM varied by up to 2x run to run.
REP_SECONDS = 0.05
DEFAULT_TYPES = [
    "Q4_0", "Q8_0", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "F16", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "MXFP4", "BF16",
]  # fmt: skip


def _openblas_set_threads():
    """numpy's bundled OpenBLAS thread setter, or None (then numpy runs with its default)."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "libscipy_openblas*.so*"))
    for lib in libs:
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            if hasattr(handle, name):
                return getattr(handle, name)
    return None


def measure_read_bandwidth(nbytes: int, threads: int, reps: int) -> float:
    """GB/s of streaming `nbytes` from memory on `threads` threads: the best rate any of a few numpy
    reductions reaches (a max over uint64, a bitwise OR over int64, over uint8), best of at least
    10 runs each. The buffer is 256 MB (far past the L3), filled so every page is mapped before
    timing, and split in one contiguous part per thread (one Python thread each; numpy releases
    the GIL). One reduction alone can be compute-bound on a core (numpy's max at 1 thread, the
    int64 OR at 2 ran below the stream) and the machine is shared, so the best over reductions and
    runs is the fair bar: the bandwidth the machine has, not what one loop or a busy moment gets.
    "of read bw" is a 1-row run's weight GB/s over this figure; a weight about the size of the L3
    (Q4_0 W: 33 MB) is partly read from there on repeated calls, so it can pass 100%."""
    a = np.random.default_rng(0).integers(0, 1 << 62, nbytes // 8, dtype=np.int64)
    parts = np.array_split(a, threads)
    reductions = [
        lambda p: p.view(np.uint64).max(),
        lambda p: np.bitwise_or.reduce(p),
        lambda p: np.bitwise_or.reduce(p.view(np.uint8)),
    ]
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    best = 0.0
    for reduce in reductions:
        if pool is None:
            fn = lambda: reduce(a)  # noqa: E731
        else:
            fn = lambda: list(pool.map(reduce, parts))  # noqa: E731
        best = max(best, nbytes / timed(fn, max(reps, 10))["min"])
    if pool is not None:
        pool.shutdown()
    return best / 1e9


def _has_kernel(qtype: str) -> bool:
    block = max(32, fastquant.QuantType(qtype).block_size)
    w = fastquant.quantize(np.zeros((1, block), np.float32), qtype)
    try:
        fastquant.matmul(np.zeros((1, block), np.float32), w)
    except fastquant.UnsupportedError:
        return False
    return True


def bench(args: argparse.Namespace) -> Dict[str, object]:
    n, k = (4096, 14336) if not args.quick else (256, 2048)
    rows_list = [int(r) for r in args.rows.split(",")] if args.rows else ([1, 8, 512] if not args.quick else [1, 8, 32])
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [1, 2]
    types = [t.upper() for t in args.types.split(",")] if args.types else DEFAULT_TYPES
    set_blas_threads = _openblas_set_threads()
    read_bw = {t: measure_read_bandwidth((256 << 20) if not args.quick else (16 << 20), t, args.reps) for t in thread_counts}
    wf = make_weights(n, k)
    rng = np.random.default_rng(1)
    results: List[Dict[str, object]] = []
    repack_seconds: Dict[str, Dict[int, float]] = {}
    for qtype in types:
        if not _has_kernel(qtype):
            print(f"| {qtype} | (no matmul kernel in this build) |", flush=True)
            continue
        q = fastquant.quantize(wf, qtype)
        w_deq = fastquant.dequantize(q) if not args.no_numpy else None
        lin = fastquant.Linear(q)
        repack: Dict[int, float] = {}
        if lin.packed:
            for threads in thread_counts:
                fastquant.set_num_threads(threads)
                repack[threads] = timed(lambda: fastquant.Linear(q), min(args.reps, 3))["median"]
            repack_seconds[qtype] = repack
        wbytes = q.nbytes
        for rows in rows_list:
            x = rng.standard_normal((rows, k)).astype(np.float32)
            flops = 2.0 * rows * n * k
            reps = min(args.reps, 3) if rows >= 256 else args.reps
            gg = GgmlMatmul(q.data, q.qtype.id, n, k, rows) if GgmlMatmul is not None and not args.no_ggml else None
            for threads in thread_counts:
                fastquant.set_num_threads(threads)
                row: Dict[str, object] = {"type": qtype, "rows": rows, "threads": threads, "N": n, "K": k}
                t_fq = timed(lambda: lin(x, copy=False), reps, REP_SECONDS)
                row["fastquant"] = t_fq
                row["packed"] = lin.packed
                if threads in repack:
                    row["repack_seconds"] = repack[threads]
                row["gflops"] = flops / t_fq["median"] / 1e9
                row["weight_gbps"] = wbytes / t_fq["median"] / 1e9
                if rows == 1:
                    row["read_bandwidth_fraction"] = row["weight_gbps"] / read_bw[threads]
                if gg is not None:
                    t_gg = timed(lambda: gg(x, threads), reps, REP_SECONDS)
                    row["ggml"] = t_gg
                    row["ggml_gflops"] = flops / t_gg["median"] / 1e9
                    row["ratio_ggml"] = t_gg["median"] / t_fq["median"]
                if w_deq is not None:
                    if set_blas_threads is not None:
                        set_blas_threads(threads)
                    t_np = timed(lambda: x @ w_deq.T, reps, REP_SECONDS)
                    row["numpy"] = t_np
                    row["numpy_gflops"] = flops / t_np["median"] / 1e9
                    row["ratio_numpy"] = t_np["median"] / t_fq["median"]
                bar = LLAMA_CPP.get(qtype, {}).get((rows, threads)) if not args.quick else None
                if bar is not None:
                    row["llama_cpp_gflops"] = bar
                    row["ratio_llama_cpp"] = row["gflops"] / bar
                results.append(row)
                print(_line(row), flush=True)
            if gg is not None:
                gg.close()
        if repack:
            times = ", ".join(f"{t} thread(s) {1e3 * v:.1f} ms" for t, v in repack.items())
            print(f"| {qtype} | repack once: {times} |", flush=True)
    fastquant.set_num_threads(os.cpu_count() or 1)
    return {
        "benchmark": "matmul",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "simd": fastquant.simd_level(),
        "fastquant": fastquant.__version__,
        "shape": {"N": n, "K": k},
        "read_bandwidth_gbps": read_bw,
        "repack_seconds": {t: {str(n): v for n, v in r.items()} for t, r in repack_seconds.items()},
        "reps": args.reps,
        "results": results,
    }


def _fmt(v: Optional[float], suffix: str = "", digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}{suffix}"


def _line(r: Dict[str, object]) -> str:
    g = r.get
    frac = g("read_bandwidth_fraction")
    return (
        f"| {r['type']} | {r['rows']} | {r['threads']} | {_fmt(g('gflops'))} | {_fmt(g('weight_gbps'))} "
        f"| {'-' if frac is None else f'{100 * frac:.0f}%'} | {_fmt(g('ggml_gflops'))} | {_fmt(g('ratio_ggml'), 'x', 2)} "
        f"| {_fmt(g('numpy_gflops'))} | {_fmt(g('ratio_numpy'), 'x', 2)} "
        f"| {_fmt(g('llama_cpp_gflops'), '', 0)} | {_fmt(g('ratio_llama_cpp'), 'x', 2)} |"
    )


HEADER = (
    "| weight | rows | threads | GFLOP/s | weight GB/s | of read bw | ggml GFLOP/s | vs ggml "
    "| numpy GFLOP/s | vs numpy | llama.cpp GFLOP/s | vs llama.cpp |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--types", help="comma-separated weight types (default: the issue's table, then the others)")
    p.add_argument("--rows", help="comma-separated activation row counts (default 1,8,512)")
    p.add_argument("--threads", help="comma-separated thread counts (default 1,2)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="W [256 x 2048], rows 1,8,32: a smoke run")
    p.add_argument("--no-ggml", action="store_true", help="skip ggml")
    p.add_argument("--no-numpy", action="store_true", help="skip numpy")
    p.add_argument("--out", help="JSON output path (default benches/results/matmul-<date>.json)")
    args = p.parse_args()
    print(f"fastquant {fastquant.__version__}, simd {fastquant.simd_level()}, cpu {_cpu_name()}")
    print(f"GFLOP/s = 2 * rows * N * K / time; medians of {args.reps} runs of at least {REP_SECONDS}s of calls\n")
    print(HEADER)
    report = bench(args)
    bw = ", ".join(f"{t} thread(s): {v:.1f} GB/s" for t, v in report["read_bandwidth_gbps"].items())
    print(f"\nread bandwidth (best numpy streaming reduction over 256 MB): {bw}")
    out = Path(args.out) if args.out else HERE / "results" / f"matmul-{_dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**report, "read_bandwidth_gbps": {str(k): v for k, v in report["read_bandwidth_gbps"].items()}}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
