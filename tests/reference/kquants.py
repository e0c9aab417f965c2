"""Readable numpy references for the dequantizers of ggml's K-quants Q4_K, Q5_K, Q6_K and Q8_K.

Written from ggml's ``dequantize_row_q4_K`` / ``_q5_K`` / ``_q6_K`` / ``_q8_K`` (ggml-quants.c),
vectorised over blocks; every function takes the flat block bytes and returns a flat float32 array.
Arithmetic is float32 with one rounding per operation in ggml's order (``d*sc`` first, then times
the code, then minus ``dmin*m``); numpy never fuses a multiply and an add.
"""

from __future__ import annotations

import numpy as np

from .legacy import fp16_field

QK_K = 256
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210, "Q8_K": 292}


def as_block_bytes(data: np.ndarray, qtype: str) -> np.ndarray:
    """Flat block bytes as ``[n_blocks, block_bytes]``."""
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if data.size % BLOCK_BYTES[qtype]:
        raise ValueError(f"{qtype}: {data.size} bytes is not a whole number of blocks")
    return data.reshape(-1, BLOCK_BYTES[qtype])


def scale_min_k4(scales: np.ndarray):
    """ggml's ``get_scale_min_k4`` for all 8 sub-blocks: ``[n, 12]`` bytes -> two ``[n, 8]`` int
    arrays (6-bit scales, 6-bit mins). Sub-blocks 0..3 use the low 6 bits of bytes j and j+4;
    4..7 the nibbles of byte j+4 plus the top 2 bits of bytes j-4 (scale) and j (min)."""
    s = scales.astype(np.int64)
    lo_sc, lo_m = s[:, 0:4] & 63, s[:, 4:8] & 63
    hi_sc = (s[:, 8:12] & 0xF) | ((s[:, 0:4] >> 6) << 4)
    hi_m = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return np.concatenate([lo_sc, hi_sc], axis=1), np.concatenate([lo_m, hi_m], axis=1)


def _k4_codes(qs: np.ndarray) -> np.ndarray:
    """Q4_K/Q5_K nibbles ``[n, 128]`` -> low 4 bits of the codes ``[n, 8 sub-blocks, 32]``: each
    32-byte chunk c holds sub-block 2c in its low nibbles and 2c+1 in its high nibbles."""
    q = qs.astype(np.int64).reshape(-1, 4, 32)
    return np.stack([q & 0xF, q >> 4], axis=2).reshape(-1, 8, 32)


@np.errstate(all="ignore")  # inf * 0 and NaN are data here, as in C
def _min_dequant(b: np.ndarray, q: np.ndarray) -> np.ndarray:
    d, dmin = fp16_field(b, 0), fp16_field(b, 2)
    sc, m = scale_min_k4(b[:, 4:16])
    d_sub = d[:, None] * sc.astype(np.float32)
    m_sub = dmin[:, None] * m.astype(np.float32)
    y = d_sub[:, :, None] * q.astype(np.float32) - m_sub[:, :, None]
    return y.astype(np.float32).reshape(-1)


def dequantize_q4_k(data: np.ndarray) -> np.ndarray:
    """x = (d*sc) * q - (dmin*m), q the 4-bit code."""
    b = as_block_bytes(data, "Q4_K")
    return _min_dequant(b, _k4_codes(b[:, 16:144]))


def dequantize_q5_k(data: np.ndarray) -> np.ndarray:
    """Q4_K plus a fifth bit: bit k of ``qh[l]`` is element l of sub-block k."""
    b = as_block_bytes(data, "Q5_K")
    qh = b[:, 16:48].astype(np.int64)
    high = ((qh[:, None, :] >> np.arange(8)[None, :, None]) & 1) << 4
    return _min_dequant(b, _k4_codes(b[:, 48:176]) + high)


@np.errstate(all="ignore")  # inf * 0 and NaN are data here, as in C
def dequantize_q6_k(data: np.ndarray) -> np.ndarray:
    """x = (d*sc[e//16]) * (q - 32). Per 128-element half h and l in 0..32, elements
    128h + 32k + l (k = 0..3) take their low nibble from ``ql[64h + l + 32*(k%2)]`` (low nibble for
    k < 2, high for k >= 2) and their top 2 bits from bits 2k..2k+1 of ``qh[32h + l]``."""
    b = as_block_bytes(data, "Q6_K")
    n = b.shape[0]
    ql = b[:, 0:128].astype(np.int64).reshape(n, 2, 2, 32)  # [half, ql half (k%2), l]
    qh = b[:, 128:192].astype(np.int64).reshape(n, 2, 32)
    sc = b[:, 192:208].view(np.int8).astype(np.float32)
    d = fp16_field(b, 208)
    q = np.empty((n, 2, 4, 32), dtype=np.int64)
    for k in range(4):
        nib = ql[:, :, k % 2, :]
        low = nib & 0xF if k < 2 else nib >> 4
        q[:, :, k, :] = (low | (((qh >> (2 * k)) & 3) << 4)) - 32
    q = q.reshape(n, QK_K)
    scale = d[:, None] * np.repeat(sc, 16, axis=1)
    return (scale * q.astype(np.float32)).astype(np.float32).reshape(-1)


@np.errstate(all="ignore")  # inf * 0 and NaN are data here, as in C
def dequantize_q8_k(data: np.ndarray) -> np.ndarray:
    """x = d * q with the f32 d at byte 0 and the 256 int8 codes after it (bsums unused)."""
    b = as_block_bytes(data, "Q8_K")
    d = np.ascontiguousarray(b[:, 0:4]).view("<f4")[:, 0].astype(np.float32)
    q = b[:, 4:260].view(np.int8).astype(np.float32)
    return (d[:, None] * q).astype(np.float32).reshape(-1)


DEQUANTIZE = {"Q4_K": dequantize_q4_k, "Q5_K": dequantize_q5_k, "Q6_K": dequantize_q6_k, "Q8_K": dequantize_q8_k}
