"""Readable numpy references for ggml's Q2_K and Q3_K dequantizers.

Written from ggml's C (``dequantize_row_q2_K`` / ``dequantize_row_q3_K`` in ggml-quants.c and the
block layouts in ggml-common.h), vectorised over 256-element super-blocks. Float arithmetic is
float32 with one rounding per operation and no fused multiply-add, as in ggml-base on x86:

* Q2_K: ``y = (d * (sc & 0xF)) * q - dmin * (sc >> 4)`` with q in 0..3;
* Q3_K: ``y = (d * (sc - 32)) * (q - 4*(1 - hbit))`` with sc a 6-bit scale and q in 0..3.

Both take the raw bytes (any shape, a whole number of blocks) and return a flat float32 array.
"""

from __future__ import annotations

import numpy as np

from .legacy import fp16_field

QK_K = 256
BLOCK_BYTES = {"Q2_K": 84, "Q3_K": 110}


def _blocks(data: np.ndarray, qtype: str) -> np.ndarray:
    b = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    assert b.size % BLOCK_BYTES[qtype] == 0, (b.size, qtype)
    return b.reshape(-1, BLOCK_BYTES[qtype])


def unpack_2bit(qs: np.ndarray) -> np.ndarray:
    """``[n, 64]`` code bytes -> ``[n, 256]`` 2-bit codes. Byte ``32*h + l`` holds elements
    ``128*h + 32*s + l`` for s = 0..3 in bits ``2*s``, ``2*s + 1``."""
    q = qs.reshape(-1, 2, 1, 32)  # [n, half, shift, l]
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
    return ((q >> shifts) & 3).reshape(-1, QK_K)


def q3_k_scales(scales: np.ndarray) -> np.ndarray:
    """``[n, 12]`` scale bytes -> ``[n, 16]`` stored 6-bit scales (0..63, bias not removed): low
    nibble of scale j in byte j % 8 (low nibble for j < 8, high for j >= 8), top two bits in byte
    8 + j % 4 at bit 2 * (j // 4)."""
    j = np.arange(16)
    low = np.where(j < 8, scales[:, j % 8] & 0xF, scales[:, j % 8] >> 4)
    high = (scales[:, 8 + j % 4] >> (2 * (j // 4)).astype(np.uint8)) & 3
    return (low | (high << 4)).astype(np.int32)


def dequantize_q2_k(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, "Q2_K")
    sc = b[:, :16]
    q = unpack_2bit(b[:, 16:80]).reshape(-1, 16, 16).astype(np.float32)
    d = fp16_field(b, 80)[:, None]
    dmin = fp16_field(b, 82)[:, None]
    dl = (d * (sc & 0xF).astype(np.float32))[:, :, None]
    ml = (dmin * (sc >> 4).astype(np.float32))[:, :, None]
    return (dl * q - ml).astype(np.float32).reshape(-1)


def dequantize_q3_k(data: np.ndarray) -> np.ndarray:
    b = _blocks(data, "Q3_K")
    hmask = b[:, :32]
    low = unpack_2bit(b[:, 32:96]).astype(np.int32)
    e = np.arange(QK_K)
    hbit = (hmask[:, e % 32] >> (e // 32).astype(np.uint8)) & 1
    q = (low - np.where(hbit != 0, 0, 4)).astype(np.float32).reshape(-1, 16, 16)
    d = fp16_field(b, 108)[:, None]
    dl = (d * (q3_k_scales(b[:, 96:108]) - 32).astype(np.float32))[:, :, None]
    return (dl * q).astype(np.float32).reshape(-1)


DEQUANTIZE = {"Q2_K": dequantize_q2_k, "Q3_K": dequantize_q3_k}
