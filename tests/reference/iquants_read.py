"""Numpy reference dequantizers of the lattice I-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
IQ1_S, IQ1_M): vectorised over blocks, written from ggml's ``dequantize_row_*`` independently of
the Rust code. The grids are read from the generated ``grids.rs`` (themselves measured through
ggml by ``scripts/gen_iq_grids.py``); the sign tables are built from their definition.

All arithmetic is float32 in ggml's order; a set sign bit negates (flipping a NaN's sign, as ggml's
compiled code does).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict

import numpy as np

QK_K = 256
F32 = np.float32
IQ1S_DELTA = F32(0.125)

GRIDS_RS = Path(__file__).resolve().parents[2] / "rust" / "fastquant" / "src" / "formats" / "iquants" / "grids.rs"


@lru_cache(maxsize=None)
def grid(name: str) -> np.ndarray:
    """The grid `name` (e.g. ``IQ2XXS_GRID``) as [n, width] uint8 rows, from grids.rs."""
    text = GRIDS_RS.read_text()
    m = re.search(rf"pub static {name}: \[(u64|u32); (\d+)\] = \[(.*?)\];", text, re.S)
    assert m, name
    dt = np.uint64 if m.group(1) == "u64" else np.uint32
    vals = np.array([int(v, 16) for v in re.findall(r"0x[0-9a-f]+", m.group(3))], dtype=dt)
    assert vals.size == int(m.group(2))
    return vals.astype(vals.dtype.newbyteorder("<")).view(np.uint8).reshape(vals.size, -1)


def ksigns() -> np.ndarray:
    i = np.arange(128, dtype=np.uint8)
    parity = np.array([bin(v).count("1") & 1 for v in range(128)], dtype=np.uint8)
    return i | (parity << 7)


def _fp16(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (lo.astype(np.uint16) | (hi.astype(np.uint16) << 8)).view(np.float16).astype(F32)


def _apply_signs(v: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """v [..., 8] float32, signs [...] uint8: negate where bit j of the sign byte is set."""
    bits = (signs[..., None] >> np.arange(8, dtype=np.uint8)) & 1
    return np.where(bits.astype(bool), -v, v)


def _blocks(data: np.ndarray, nbytes: int) -> np.ndarray:
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    assert data.size % nbytes == 0
    return data.reshape(-1, nbytes)


def _u16(b: np.ndarray) -> np.ndarray:
    return b[..., 0::2].astype(np.uint16) | (b[..., 1::2].astype(np.uint16) << 8)


def _u32(b: np.ndarray) -> np.ndarray:
    b = b.astype(np.uint32)
    return b[..., 0::4] | (b[..., 1::4] << 8) | (b[..., 2::4] << 16) | (b[..., 3::4] << 24)


def dequantize_iq2_xxs(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, 66)
    d = _fp16(b[:, 0], b[:, 1])
    q = b[:, 2:].reshape(-1, 8, 8)  # [nb, ib32, 8 bytes]
    aux1 = _u32(q[:, :, 4:8])[:, :, 0]  # [nb, 8]
    db = d[:, None] * (F32(0.5) + (aux1 >> 28).astype(F32)) * F32(0.25)
    g = grid("IQ2XXS_GRID")[q[:, :, 0:4]].astype(F32)  # [nb, 8, 4, 8]
    sidx = (aux1[:, :, None] >> (7 * np.arange(4, dtype=np.uint32))) & 127
    v = db[:, :, None, None] * g
    return _apply_signs(v, ksigns()[sidx]).reshape(-1)


def _db_pair(d: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[nb, 8, 4] per-group scale of IQ2_XS / IQ2_S: nibble l/2 of the sub-block byte."""
    lo = d[:, None] * (F32(0.5) + (scales & 0xF).astype(F32)) * F32(0.25)
    hi = d[:, None] * (F32(0.5) + (scales >> 4).astype(F32)) * F32(0.25)
    return np.stack([lo, lo, hi, hi], axis=-1)


def dequantize_iq2_xs(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, 74)
    d = _fp16(b[:, 0], b[:, 1])
    q = _u16(b[:, 2:66]).reshape(-1, 8, 4)
    db = _db_pair(d, b[:, 66:74])
    v = db[..., None] * grid("IQ2XS_GRID")[q & 511].astype(F32)
    return _apply_signs(v, ksigns()[q >> 9]).reshape(-1)


def dequantize_iq2_s(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, 82)
    d = _fp16(b[:, 0], b[:, 1])
    qs = b[:, 2:34].reshape(-1, 8, 4).astype(np.int64)
    signs = b[:, 34:66].reshape(-1, 8, 4)
    qh = b[:, 66:74].astype(np.int64)
    l = np.arange(4)
    idx = qs | ((qh[:, :, None] << (8 - 2 * l)) & 0x300)
    db = _db_pair(d, b[:, 74:82])
    v = db[..., None] * grid("IQ2S_GRID")[idx].astype(F32)
    return _apply_signs(v, signs).reshape(-1)


def dequantize_iq3_xxs(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, 98)
    d = _fp16(b[:, 0], b[:, 1])
    qs = b[:, 2:66].reshape(-1, 8, 4, 2)  # [nb, ib32, l, two grid rows]
    aux = _u32(b[:, 66:98])  # [nb, 8]
    db = d[:, None] * (F32(0.5) + (aux >> 28).astype(F32)) * F32(0.5)
    g = grid("IQ3XXS_GRID")[qs].reshape(-1, 8, 4, 8).astype(F32)
    sidx = (aux[:, :, None] >> (7 * np.arange(4, dtype=np.uint32))) & 127
    v = db[:, :, None, None] * g
    return _apply_signs(v, ksigns()[sidx]).reshape(-1)


def dequantize_iq3_s(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, 110)
    d = _fp16(b[:, 0], b[:, 1])
    qs = b[:, 2:66].reshape(-1, 8, 4, 2).astype(np.int64)
    qh = b[:, 66:74].astype(np.int64)
    signs = b[:, 74:106].reshape(-1, 8, 4)
    sc = b[:, 106:110].astype(np.int64)
    s = np.stack([sc & 0xF, sc >> 4], axis=-1).reshape(-1, 8)  # sub-block ib32's nibble
    db = d[:, None] * (1 + 2 * s).astype(F32)
    l = np.arange(4)
    hi1 = (qh[:, :, None] << (8 - 2 * l)) & 256
    hi2 = (qh[:, :, None] << (7 - 2 * l)) & 256
    idx = np.stack([qs[..., 0] | hi1, qs[..., 1] | hi2], axis=-1)
    g = grid("IQ3S_GRID")[idx].reshape(-1, 8, 4, 8).astype(F32)
    return _apply_signs(db[:, :, None, None] * g, signs).reshape(-1)


def _iq1_values(dl: np.ndarray, idx: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """dl [nb, 8, 4], idx [nb, 8, 4], neg [nb, 8, 4] -> dl * (grid + delta) per element."""
    g = grid("IQ1S_GRID")[idx].view(np.int8).astype(F32)
    delta = np.where(neg, -IQ1S_DELTA, IQ1S_DELTA).astype(F32)
    return (dl[..., None] * (g + delta[..., None])).reshape(-1)


def dequantize_iq1_s(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, 50)
    d = _fp16(b[:, 0], b[:, 1])
    qs = b[:, 2:34].reshape(-1, 8, 4).astype(np.int64)
    qh = _u16(b[:, 34:50]).astype(np.int64)  # [nb, 8]
    dl = d[:, None] * (2 * ((qh >> 12) & 7) + 1).astype(F32)
    idx = qs | (((qh[:, :, None] >> (3 * np.arange(4))) & 7) << 8)
    neg = np.broadcast_to(((qh & 0x8000) != 0)[:, :, None], idx.shape)
    return _iq1_values(np.broadcast_to(dl[:, :, None], idx.shape), idx, neg)


def dequantize_iq1_m(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, 56)
    qs = b[:, 0:32].reshape(-1, 8, 4).astype(np.int64)
    qh = b[:, 32:48].reshape(-1, 8, 2).astype(np.int64)
    sc = _u16(b[:, 48:56]).astype(np.int64)  # [nb, 4]
    scale = (sc[:, 0] >> 12) | ((sc[:, 1] >> 8) & 0x00F0) | ((sc[:, 2] >> 4) & 0x0F00) | (sc[:, 3] & 0xF000)
    d = scale.astype(np.uint16).view(np.float16).astype(F32)
    s = sc[:, np.arange(8) // 2]  # [nb, 8]
    shift = 6 * (np.arange(8) % 2)
    dl1 = d[:, None] * (2 * ((s >> shift) & 7) + 1).astype(F32)
    dl2 = d[:, None] * (2 * ((s >> (shift + 3)) & 7) + 1).astype(F32)
    dl = np.stack([dl1, dl1, dl2, dl2], axis=-1)
    qhx = np.stack([qh[..., 0], qh[..., 0], qh[..., 1], qh[..., 1]], axis=-1)  # the qh byte of group l
    sh = np.array([8, 4, 8, 4])
    idx = qs | ((qhx << sh) & 0x700)
    neg = (qhx & np.array([0x08, 0x80, 0x08, 0x80])) != 0
    return _iq1_values(dl, idx, neg)


DEQUANTIZERS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "IQ2_XXS": dequantize_iq2_xxs,
    "IQ2_XS": dequantize_iq2_xs,
    "IQ2_S": dequantize_iq2_s,
    "IQ3_XXS": dequantize_iq3_xxs,
    "IQ3_S": dequantize_iq3_s,
    "IQ1_S": dequantize_iq1_s,
    "IQ1_M": dequantize_iq1_m,
}


def dequantize(name: str, data: np.ndarray) -> np.ndarray:
    """The reference decode of `data` (whole blocks of type `name`) as a flat float32 array.
    NaN/Inf scales are part of the contract, so numpy's warnings about them are silenced."""
    with np.errstate(all="ignore"):
        return DEQUANTIZERS[name](data)
