"""GGUF reading, writing and whole-model quantization, against gguf-py and the disk, in one run.

    python benches/bench_gguf.py              # a 1 GB model
    python benches/bench_gguf.py --size-mb 64 # smaller (CI smoke run)

Reports: open + read all metadata (fastquant GGUFFile vs gguf-py GGUFReader, ms and ratio), writing
the tensors of the model (GB/s, and the fraction of a plain sequential write of the same bytes,
both with fsync), and quantizing the F16 model to Q4_K_M (wall time, peak RSS of a child process,
peak RSS against the largest tensor).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

import fastquant
from fastquant.gguf import GGUFFile, GGUFWriter

HERE = Path(__file__).resolve().parent


def median_time(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def model_shapes(size_mb: int) -> List[tuple]:
    """A llama-shaped tensor list of about `size_mb` MB in F16."""
    d, ff, vocab = 2048, 5632, 32000
    per_layer = (4 * d * d + 3 * d * ff) * 2
    n_layer = max(1, (size_mb * 2**20 - 2 * vocab * d * 2) // per_layer)
    shapes = [("token_embd.weight", (vocab, d)), ("output_norm.weight", (d,)), ("output.weight", (vocab, d))]
    for i in range(int(n_layer)):
        shapes += [
            (f"blk.{i}.attn_norm.weight", (d,)),
            (f"blk.{i}.attn_q.weight", (d, d)), (f"blk.{i}.attn_k.weight", (d // 4, d)),
            (f"blk.{i}.attn_v.weight", (d // 4, d)), (f"blk.{i}.attn_output.weight", (d, d)),
            (f"blk.{i}.ffn_norm.weight", (d,)),
            (f"blk.{i}.ffn_gate.weight", (ff, d)), (f"blk.{i}.ffn_up.weight", (ff, d)), (f"blk.{i}.ffn_down.weight", (d, ff)),
        ]
    return shapes, int(n_layer)


def write_model(path: Path, shapes, n_layer: int) -> float:
    """Writes the model with fastquant's writer; returns seconds (including fsync)."""
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(1 << 22) * 0.02).astype(np.float16)
    meta = {
        "general.architecture": "llama", "llama.block_count": n_layer, "llama.attention.head_count": 16,
        "llama.attention.head_count_kv": 4, "llama.embedding_length": 2048,
        "tokenizer.ggml.tokens": [f"tok{i}" for i in range(32000)], "tokenizer.ggml.scores": [0.0] * 32000,
    }
    types = {"llama.block_count": "UINT32", "llama.attention.head_count": "UINT32",
             "llama.attention.head_count_kv": "UINT32", "llama.embedding_length": "UINT32"}
    specs = [(n, s, "F16" if len(s) > 1 else "F32") for n, s in shapes]
    t0 = time.perf_counter()
    with GGUFWriter(path, meta, specs, metadata_types=types) as w:
        for name, shape in shapes:
            n = int(np.prod(shape))
            if len(shape) == 1:
                w.write_tensor(name, np.ones(n, np.float32))
            else:
                w.write_tensor(name, np.resize(pool, n))
    return time.perf_counter() - t0


def plain_write(path: Path, nbytes: int) -> float:
    block = np.random.default_rng(1).integers(0, 255, 1 << 24, dtype=np.uint8).tobytes()
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dir", help="where to put the files (default: a temporary folder)")
    ap.add_argument("--out", help="JSON output path")
    args = ap.parse_args()
    import gguf

    tmp = Path(args.dir or tempfile.mkdtemp(prefix="fastquant-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    model = tmp / "model-F16.gguf"
    shapes, n_layer = model_shapes(args.size_mb)
    # Alternate our writer and a plain write of the same size, best of two each: the disk of a
    # shared VM is noisy and the first write of a run warms the page cache.
    write_s = plain_s = float("inf")
    for _ in range(2):
        if model.exists():
            model.unlink()
        write_s = min(write_s, write_model(model, shapes, n_layer))
        size = model.stat().st_size
        plain_s = min(plain_s, plain_write(tmp / "plain.bin", size))
        (tmp / "plain.bin").unlink()

    def ours() -> None:
        f = GGUFFile(model)
        _ = [f.metadata[k] for k in f.metadata], [t.shape for t in f.tensors]

    def theirs() -> None:
        r = gguf.GGUFReader(str(model))
        _ = [fld.contents() for fld in r.fields.values()], [t.shape for t in r.tensors]

    t_ours = median_time(ours, args.reps)
    t_theirs = median_time(theirs, max(3, args.reps // 2))

    largest = max(int(np.prod(s)) for _, s in shapes) * 2  # the largest tensor in the file (F16)
    code = (
        "import fastquant, resource, sys, time; t=time.perf_counter(); "
        f"fastquant.quantize_model({str(model)!r}, {str(tmp / 'model-Q4_K_M.gguf')!r}, 'Q4_K_M', progress=False); "
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    q_seconds, rss_kb = float(out[0]), int(out[1])
    report: Dict[str, object] = {
        "benchmark": "gguf",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "file_bytes": size,
        "open_metadata_ms": {"fastquant": t_ours * 1e3, "gguf_py": t_theirs * 1e3, "ratio": t_theirs / t_ours},
        "write": {"fastquant_gbps": size / write_s / 1e9, "plain_gbps": size / plain_s / 1e9,
                  "fraction": plain_s / write_s},
        "quantize_q4_k_m": {"seconds": q_seconds, "peak_rss_mb": rss_kb / 1024, "largest_tensor_mb": largest / 2**20,
                            "bound_mb": (2 * largest + 200 * 2**20) / 2**20, "threads": fastquant.get_num_threads()},
    }
    print(f"model: {size / 2**30:.2f} GiB F16, {len(shapes)} tensors, 32000-token vocabulary in the metadata")
    o = report["open_metadata_ms"]
    print(f"open + all metadata: fastquant {o['fastquant']:.1f} ms, gguf-py {o['gguf_py']:.1f} ms -> {o['ratio']:.1f}x")
    w = report["write"]
    print(f"write: fastquant {w['fastquant_gbps']:.2f} GB/s, plain sequential write {w['plain_gbps']:.2f} GB/s "
          f"-> {100 * w['fraction']:.0f}%")
    q = report["quantize_q4_k_m"]
    print(f"quantize to Q4_K_M: {q['seconds']:.1f} s, peak RSS {q['peak_rss_mb']:.0f} MB "
          f"(bound: 2 x largest tensor + 200 MB = {q['bound_mb']:.0f} MB)")
    dest = Path(args.out) if args.out else HERE / "results" / f"gguf-{_dt.date.today().isoformat()}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=1))
    print(f"wrote {dest}")
    if not args.dir:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
