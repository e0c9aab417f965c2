#!/usr/bin/env python3
"""Recovers the lattice grids of ggml's I-quants from the real ggml and writes them as Rust.

The grids (``iq2xxs_grid``, ``iq2xs_grid``, ``iq2s_grid``, ``iq3xxs_grid``, ``iq3s_grid``,
``iq1s_grid``) are format data: a block stores an index, and the grid entry at that index is the
row of 8 (or 4) magnitudes the block decodes to. Rather than copy the tables, this script *measures*
them: for every index it builds blocks with scale d = 1.0, that index in one slot, no sign flips and
the smallest sub-block scale, runs ggml's own dequantizer on them (``to_float`` through
``tests/reference/ggml_oracle.py``) and divides the known scale factor back out. Every value is a
small integer times a power of two (or that plus 1/8 for IQ1), so the division is exact; the script
checks each recovered byte is an integer in range before writing anything.

The sign tables (``ksigns_iq2xs``: 7 sign bits plus an even-parity eighth bit; ``kmask_iq2xs``: bit
j) are defined by that rule and derived in Rust, not here.

Usage (from the repository root, in a venv with ggml-python):

    python scripts/gen_iq_grids.py            # writes rust/fastquant/src/formats/iquants/grids.rs
    python scripts/gen_iq_grids.py --check    # fails if the committed file differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from reference import ggml_oracle  # noqa: E402

OUT = ROOT / "rust" / "fastquant" / "src" / "formats" / "iquants" / "grids.rs"

QK_K = 256
FP16_ONE = (0x00, 0x3C)  # 1.0 as little-endian fp16

# ggml type ids and block sizes (ggml-common.h)
IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ3_S, IQ2_S = 16, 17, 18, 19, 21, 22


def _dequant_blocks(blocks: List[np.ndarray], type_id: int) -> np.ndarray:
    """ggml's to_float over the concatenated blocks, one row of 256 values per block."""
    data = np.concatenate(blocks)
    return ggml_oracle.dequantize(data, type_id, QK_K * len(blocks)).reshape(len(blocks), QK_K)


def _recover(
    n: int,
    width: int,
    type_id: int,
    block_bytes: int,
    slots: int,
    place: Callable[[np.ndarray, int, int], int],
    scale: float,
    offset: float,
    lo: int,
    hi: int,
) -> List[List[int]]:
    """Grid entries 0..n: `place(block, slot, index)` writes `index` into slot `slot` (0..slots) of a
    block and returns the element offset the slot decodes to; value = scale * (entry + offset)."""
    entries: List[List[int]] = []
    for start in range(0, n, slots):
        blk = np.zeros(block_bytes, dtype=np.uint8)
        blk[0], blk[1] = FP16_ONE
        where = []
        for s, idx in enumerate(range(start, min(start + slots, n))):
            where.append(place(blk, s, idx))
        y = _dequant_blocks([blk], type_id)[0]
        for pos in where:
            vals = y[pos : pos + width].astype(np.float64) / scale - offset
            ints = np.rint(vals)
            if not np.array_equal(ints, vals) or ints.min() < lo or ints.max() > hi:
                raise SystemExit(f"type {type_id}: grid values {vals} are not integers in [{lo}, {hi}]")
            entries.append([int(v) for v in ints])
    assert len(entries) == n
    return entries


# ---- where each format keeps its grid index (ggml-common.h, dequantize_row_* in ggml-quants.c) ----
# Every placement leaves the sub-block scale bits and sign bits at zero.


def _place_iq2xxs(blk: np.ndarray, s: int, idx: int) -> int:
    # qs: 8 groups of 8 bytes; bytes 0..4 of a group are the four grid indices.
    ib32, l = divmod(s, 4)
    blk[2 + 8 * ib32 + l] = idx
    return 32 * ib32 + 8 * l


def _place_iq2xs(blk: np.ndarray, s: int, idx: int) -> int:
    # qs: 32 little-endian u16, low 9 bits the index.
    blk[2 + 2 * s] = idx & 0xFF
    blk[2 + 2 * s + 1] = idx >> 8
    return 8 * s


def _place_iq2s(blk: np.ndarray, s: int, idx: int) -> int:
    # qs[0..32] low 8 bits, qh[ib32] bits 2l..2l+2 the high 2 bits.
    ib32, l = divmod(s, 4)
    blk[2 + s] = idx & 0xFF
    blk[2 + 64 + ib32] |= (idx >> 8) << (2 * l)
    return 8 * s


def _place_iq3xxs(blk: np.ndarray, s: int, idx: int) -> int:
    # qs[0..64]: one byte per 4 values.
    blk[2 + s] = idx
    return 4 * s


def _place_iq3s(blk: np.ndarray, s: int, idx: int) -> int:
    # qs[0..64] low 8 bits; qh[s / 8] bit (s % 8) the ninth bit.
    blk[2 + s] = idx & 0xFF
    blk[2 + 64 + s // 8] |= (idx >> 8) << (s % 8)
    return 4 * s


def _place_iq1s(blk: np.ndarray, s: int, idx: int) -> int:
    # qs[0..32] low 8 bits; qh: 8 little-endian u16, bits 3l..3l+3 the high 3 bits of slot l.
    ib, l = divmod(s, 4)
    blk[2 + s] = idx & 0xFF
    qh = 2 + 32 + 2 * ib
    v = int(blk[qh]) | (int(blk[qh + 1]) << 8)
    v |= (idx >> 8) << (3 * l)
    blk[qh], blk[qh + 1] = v & 0xFF, v >> 8
    return 8 * s


def derive() -> dict:
    # IQ2: db = d * (0.5 + 0) * 0.25 = 1/8; IQ3_XXS: d * 0.5 * 0.5 = 1/4; IQ3_S: d * (1 + 0) = 1;
    # IQ1_S: dl = d * 1, value = dl * (grid + IQ1S_DELTA) with IQ1S_DELTA = 1/8 (qh bit 15 clear).
    return {
        "IQ2XXS_GRID": ("u64", 8, _recover(256, 8, IQ2_XXS, 66, 32, _place_iq2xxs, 0.125, 0.0, 0, 255)),
        "IQ2XS_GRID": ("u64", 8, _recover(512, 8, IQ2_XS, 74, 32, _place_iq2xs, 0.125, 0.0, 0, 255)),
        "IQ2S_GRID": ("u64", 8, _recover(1024, 8, IQ2_S, 82, 32, _place_iq2s, 0.125, 0.0, 0, 255)),
        "IQ3XXS_GRID": ("u32", 4, _recover(256, 4, IQ3_XXS, 98, 64, _place_iq3xxs, 0.25, 0.0, 0, 255)),
        "IQ3S_GRID": ("u32", 4, _recover(512, 4, IQ3_S, 110, 64, _place_iq3s, 1.0, 0.0, 0, 255)),
        "IQ1S_GRID": ("u64", 8, _recover(2048, 8, IQ1_S, 50, 32, _place_iq1s, 1.0, 0.125, -1, 1)),
    }


def _pack(entry: List[int]) -> int:
    """The grid entry as ggml stores it: the bytes (int8 two's complement for IQ1) little-endian."""
    return int.from_bytes(bytes(v & 0xFF for v in entry), "little")


DOCS = {
    "IQ2XXS_GRID": "`iq2xxs_grid`: 256 rows of 8 magnitudes (bytes of the little-endian u64) for IQ2_XXS.",
    "IQ2XS_GRID": "`iq2xs_grid`: 512 rows of 8 magnitudes for IQ2_XS.",
    "IQ2S_GRID": "`iq2s_grid`: 1024 rows of 8 magnitudes for IQ2_S.",
    "IQ3XXS_GRID": "`iq3xxs_grid`: 256 rows of 4 magnitudes (bytes of the little-endian u32) for IQ3_XXS.",
    "IQ3S_GRID": "`iq3s_grid`: 512 rows of 4 magnitudes for IQ3_S.",
    "IQ1S_GRID": "`iq1s_grid`: 2048 rows of 8 values in {-1, 0, 1} (int8 bytes of the u64) for IQ1_S and IQ1_M.",
}


def render(grids: dict) -> str:
    out = [
        "// @generated by scripts/gen_iq_grids.py -- do not edit by hand; rerun the script.",
        "//",
        "// The lattice grids of ggml's I-quants, measured from ggml itself: for each index the script",
        "// dequantizes crafted blocks (scale 1.0, that index, no sign flips, smallest sub-block scale)",
        f"// with ggml's to_float from ggml-python {_ggml_version()} (its bundled ggml) and divides the",
        "// known scale back out. Entry i of each table equals ggml-common.h's table of the same name.",
        "",
        "//! The I-quant lattice grids (generated; see the header of this file).",
        "",
    ]
    for name, (ty, width, entries) in grids.items():
        digits = 2 * width
        per_line = 6 if width == 8 else 10
        out.append(f"/// {DOCS[name]}")
        out.append("#[rustfmt::skip]")
        out.append(f"pub static {name}: [{ty}; {len(entries)}] = [")
        vals = [f"0x{_pack(e):0{digits}x}" for e in entries]
        for i in range(0, len(vals), per_line):
            out.append("    " + ", ".join(vals[i : i + per_line]) + ",")
        out.append("];")
        out.append("")
    return "\n".join(out)


def _ggml_version() -> str:
    import ggml

    return getattr(ggml, "__version__", "unknown")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = ap.parse_args()
    text = render(derive())
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date; rerun scripts/gen_iq_grids.py", file=sys.stderr)
            return 1
        print(f"{OUT} is up to date")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
