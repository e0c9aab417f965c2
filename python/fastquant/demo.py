"""`fastquant demo`: the main job on an embedded default, no download needed.

It builds a small model-shaped F16 GGUF (llama architecture: token_embd, blocks of attention and
feed-forward weights with norms, output; heavy-tailed weights with outlier input channels, as real
LLM weights have), quantizes it with the presets people use, and prints what each costs and keeps:
file size, bits per weight, how much smaller, RMSE and cosine of the weights, and time. It also
writes a PNG of size against error.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from .gguf import GGUFFile, GGUFWriter
from .model import quantize_model
from .quant import QuantizedTensor, dequantize

__all__ = ["build_demo_model", "run_model_demo", "DEMO_PRESETS"]

DEMO_PRESETS = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]


def _weight(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    w = rng.standard_t(5, size=(rows, cols)) * (1.0 / np.sqrt(cols))
    w[:, rng.choice(cols, size=max(1, cols // 128), replace=False)] *= 8  # outlier input channels
    return w.astype(np.float16)


def build_demo_model(path: Path, *, n_layer: int = 4, d: int = 512, ff: int = 1536, vocab: int = 4096, seed: int = 0) -> Path:
    """Writes a llama-shaped F16 GGUF model to ``path`` (GQA 4: 8 heads, 2 KV heads)."""
    rng = np.random.default_rng(seed)
    n_head, n_kv = 8, 2
    kv = d // n_head * n_kv
    shapes: List[tuple] = [("token_embd.weight", (vocab, d)), ("output_norm.weight", (d,)), ("output.weight", (vocab, d))]
    for i in range(n_layer):
        shapes += [
            (f"blk.{i}.attn_norm.weight", (d,)),
            (f"blk.{i}.attn_q.weight", (d, d)),
            (f"blk.{i}.attn_k.weight", (kv, d)),
            (f"blk.{i}.attn_v.weight", (kv, d)),
            (f"blk.{i}.attn_output.weight", (d, d)),
            (f"blk.{i}.ffn_norm.weight", (d,)),
            (f"blk.{i}.ffn_gate.weight", (ff, d)),
            (f"blk.{i}.ffn_up.weight", (ff, d)),
            (f"blk.{i}.ffn_down.weight", (d, ff)),
        ]
    metadata: Dict[str, Any] = {
        "general.architecture": "llama",
        "general.name": "fastquant demo model",
        "general.file_type": 1,
        "llama.block_count": n_layer,
        "llama.context_length": 2048,
        "llama.embedding_length": d,
        "llama.feed_forward_length": ff,
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": n_kv,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.vocab_size": vocab,
    }
    types = {k: "UINT32" for k, v in metadata.items() if isinstance(v, int)}
    specs = [(name, shape, "F16" if len(shape) > 1 else "F32") for name, shape in shapes]
    with GGUFWriter(path, metadata, specs, metadata_types=types) as w:
        for name, shape in shapes:
            if len(shape) == 1:
                w.write_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32))
            else:
                w.write_tensor(name, _weight(rng, *shape))
    return path


def _weights_error(src: GGUFFile, dst: GGUFFile) -> tuple:
    """RMSE and cosine similarity over every 2-D weight, quantized against the F16 original."""
    se = dot = na = nb = 0.0
    n = 0
    for t in src.tensors:
        if len(t.shape) < 2:
            continue
        a = np.asarray(src.tensor(t.name), dtype=np.float64)
        q = dst.tensor(t.name)
        b = np.asarray(dequantize(q) if isinstance(q, QuantizedTensor) else q, dtype=np.float64)
        se += float(np.sum((a - b) ** 2))
        dot += float(np.sum(a * b))
        na += float(np.sum(a * a))
        nb += float(np.sum(b * b))
        n += a.size
    return (se / max(n, 1)) ** 0.5, dot / max((na * nb) ** 0.5, 1e-300)


def run_model_demo(out_dir: Optional[Path] = None, *, presets: Optional[List[str]] = None, n_layer: int = 4) -> List[Dict[str, Any]]:
    """Builds the demo model, quantizes it with each preset, prints the table, writes the plot."""
    out = Path(out_dir or "fastquant-demo")
    out.mkdir(parents=True, exist_ok=True)
    src_path = build_demo_model(out / "demo-F16.gguf", n_layer=n_layer)
    src = GGUFFile(src_path)
    n_params = sum(t.n_elements for t in src.tensors)
    f16_size = src_path.stat().st_size
    print(f"demo model: llama-shaped, {n_layer} blocks, {n_params / 1e6:.1f}M parameters, "
          f"F16 file {f16_size / 2**20:.1f} MiB ({src_path})\n")
    header = f"{'preset':<8} {'file MiB':>9} {'bits/w':>7} {'x smaller':>9} {'RMSE':>10} {'cosine':>9} {'time s':>7}"
    print(header)
    print("-" * len(header))
    rows = []
    for preset in presets or DEMO_PRESETS:
        dst_path = out / f"demo-{preset}.gguf"
        t0 = time.perf_counter()
        quantize_model(src_path, dst_path, preset, progress=False)
        seconds = time.perf_counter() - t0
        dst = GGUFFile(dst_path)
        rmse, cosine = _weights_error(src, dst)
        size = dst_path.stat().st_size
        row = {
            "preset": preset,
            "file_bytes": size,
            "bits_per_weight": size * 8 / n_params,
            "x_smaller": f16_size / size,
            "rmse": rmse,
            "cosine": cosine,
            "seconds": seconds,
        }
        rows.append(row)
        print(f"{preset:<8} {size / 2**20:>9.2f} {row['bits_per_weight']:>7.3f} {row['x_smaller']:>9.2f} "
              f"{rmse:>10.3e} {cosine:>9.6f} {seconds:>7.2f}")
    plot = out / "size-vs-error.png"
    write_plot(plot, rows)
    print(f"\nplot of bits per weight against RMSE: {plot}")
    return rows


# ---- a dependency-free PNG plot ---------------------------------------------------------------

_FONT = {  # 3x5 bitmap digits and the few letters the labels use
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "_": "000000000000111", "Q": "111101101111001",
    "K": "101110100110101", "M": "101111111101101", "S": "111100111001111", "L": "100100100100111",
    ".": "000000000000010", "-": "000000111000000", " ": "000000000000000", "B": "110101110101110",
    "P": "111101111100100", "W": "101101111111101", "R": "110101110101101", "E": "111100110100111",
    "O": "111101101101111", "G": "111100101101111", "I": "111010010010111", "T": "111010010010010",
    "N": "110101101101101", "A": "010101111101101",
}


def _text(img: np.ndarray, x: int, y: int, s: str, scale: int = 2) -> None:
    for ch in s.upper():
        glyph = _FONT.get(ch, _FONT[" "])
        for i, bit in enumerate(glyph):
            if bit == "1":
                r, c = divmod(i, 3)
                img[y + r * scale : y + (r + 1) * scale, x + c * scale : x + (c + 1) * scale] = 0
        x += 4 * scale


def write_plot(path: Path, rows: List[Dict[str, Any]], width: int = 640, height: int = 400) -> None:
    """Bits per weight (x) against RMSE (y, log scale) for each preset, as a grayscale PNG."""
    img = np.full((height, width), 255, dtype=np.uint8)
    left, right, top, bottom = 70, width - 30, 30, height - 50
    img[top:bottom, left] = 0
    img[bottom, left:right] = 0
    bpw = np.array([r["bits_per_weight"] for r in rows])
    err = np.log10(np.array([r["rmse"] for r in rows]))
    x0, x1 = 0.0, float(np.ceil(bpw.max() + 0.5))
    y0, y1 = float(np.floor(err.min())), float(np.ceil(err.max()))
    if y1 == y0:
        y1 = y0 + 1
    for v in range(int(x0), int(x1) + 1):
        px = left + int((v - x0) / (x1 - x0) * (right - left))
        img[bottom : bottom + 6, px] = 0
        _text(img, px - 4, bottom + 10, str(v))
    for e in range(int(y0), int(y1) + 1):
        py = bottom - int((e - y0) / (y1 - y0) * (bottom - top))
        img[py, left - 6 : left] = 0
        _text(img, 8, py - 5, f"-{-e}" if e < 0 else str(e))
    _text(img, (left + right) // 2 - 60, height - 18, "BITS PER WEIGHT")
    _text(img, 8, 8, "LOG10 RMSE")
    for b, e, r in zip(bpw, err, rows):
        px = left + int((b - x0) / (x1 - x0) * (right - left))
        py = bottom - int((e - y0) / (y1 - y0) * (bottom - top))
        img[max(py - 3, 0) : py + 4, max(px - 3, 0) : px + 4] = 0
        _text(img, px + 6, py - 12, r["preset"])
    _write_png_gray(path, img)


def _write_png_gray(path: Path, img: np.ndarray) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)
