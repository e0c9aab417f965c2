"""Readable numpy references for ggml's IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4 dequantizers.

Written from ggml's C (``dequantize_row_iq4_nl``, ``dequantize_row_iq4_xs``,
``dequantize_row_tq1_0``, ``dequantize_row_tq2_0``, ``dequantize_row_mxfp4`` in ggml-quants.c;
``kvalues_iq4nl`` / ``kvalues_mxfp4`` in ggml-common.h; ``ggml_e8m0_to_fp32_half`` in ggml-impl.h)
and vectorised over blocks. Every function takes the blocks as a flat ``uint8`` array and returns
a flat ``float32`` array, bit-exact with ggml's ``to_float``: each value is one float32 product of
the same two operands (scale and table value) that the C multiplies, so NaN scales propagate the
same way.
"""

from __future__ import annotations

import numpy as np

from .legacy import fp16_bits_to_fp32

QK4_NL = 32
QK_K = 256
QK_MXFP4 = 32

BLOCK_BYTES = {"IQ4_NL": 18, "IQ4_XS": 136, "TQ1_0": 54, "TQ2_0": 66, "MXFP4": 17}
BLOCK_ELEMS = {"IQ4_NL": QK4_NL, "IQ4_XS": QK_K, "TQ1_0": QK_K, "TQ2_0": QK_K, "MXFP4": QK_MXFP4}

KVALUES_IQ4NL = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int8)
KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.int8)


def _blocks(data: np.ndarray, qtype: str) -> np.ndarray:
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    assert data.size % BLOCK_BYTES[qtype] == 0, (qtype, data.size)
    return data.reshape(-1, BLOCK_BYTES[qtype])


def _fp16(b: np.ndarray) -> np.ndarray:
    """The little-endian fp16 in two byte columns, as float32 (``GGML_FP16_TO_FP32``)."""
    return fp16_bits_to_fp32(np.ascontiguousarray(b).view("<u2")[:, 0])


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """16 bytes per row -> 32 codes: low nibbles are elements 0..16, high nibbles 16..32."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def e8m0_to_fp32_half(e: np.ndarray) -> np.ndarray:
    """``ggml_e8m0_to_fp32_half``: 2^(e-128) by bits; e = 0, 1 are the subnormals 2^-128, 2^-127."""
    e = np.asarray(e, dtype=np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - 1) << np.uint32(23))
    return bits.astype(np.uint32).view(np.float32)


def dequantize_iq4_nl(data: np.ndarray) -> np.ndarray:
    """``d * kvalues_iq4nl[q]`` per element."""
    b = _blocks(data, "IQ4_NL")
    d = _fp16(b[:, 0:2])[:, None]
    k = KVALUES_IQ4NL[_nibbles(b[:, 2:18])].astype(np.float32)
    return (d * k).astype(np.float32).reshape(-1)


def dequantize_iq4_xs(data: np.ndarray) -> np.ndarray:
    """``dl = d * (ls - 32)`` per 32 elements (ls: 4 low bits from ``scales_l``, 2 high bits from
    ``scales_h``), then ``dl * kvalues_iq4nl[q]``."""
    b = _blocks(data, "IQ4_XS")
    n = b.shape[0]
    d = _fp16(b[:, 0:2])
    scales_h = np.ascontiguousarray(b[:, 2:4]).view("<u2")[:, 0].astype(np.int32)
    scales_l = b[:, 4:8].astype(np.int32)
    ib = np.arange(QK_K // 32)
    ls = ((scales_l[:, ib // 2] >> (4 * (ib % 2))) & 0xF) | (((scales_h[:, None] >> (2 * ib)) & 3) << 4)
    dl = d[:, None] * (ls - 32).astype(np.float32)  # [n, 8]
    codes = _nibbles(b[:, 8:].reshape(n, 8, 16))  # [n, 8, 32]
    k = KVALUES_IQ4NL[codes].astype(np.float32)
    return (dl[:, :, None] * k).astype(np.float32).reshape(-1)


def dequantize_tq1_0(data: np.ndarray) -> np.ndarray:
    """Base-3 digits read most significant first: multiply the byte by 3^n (mod 256), then the top
    trit is ``(q * 3) >> 8``; value ``(t - 1) * d``. Elements: 32 bytes x 5 trits, then 16 bytes x
    5 trits, then the 4 ``qh`` bytes x 4 trits, each group trit-major."""
    b = _blocks(data, "TQ1_0")
    n = b.shape[0]
    d = _fp16(b[:, 52:54])[:, None]

    def trits(q, count):  # q: [n, m] -> [n, count * m], trit-major
        pow3 = np.array([1, 3, 9, 27, 81][:count], dtype=np.uint16)
        qq = (q[:, None, :].astype(np.uint16) * pow3[None, :, None]) & 0xFF
        return ((qq * 3) >> 8).astype(np.int32).reshape(n, -1)

    t = np.concatenate([trits(b[:, 0:32], 5), trits(b[:, 32:48], 5), trits(b[:, 48:52], 4)], axis=1)
    return ((t - 1).astype(np.float32) * d).astype(np.float32).reshape(-1)


def dequantize_tq2_0(data: np.ndarray) -> np.ndarray:
    """2-bit codes: bits 2l..2l+2 of byte 32j+m are element 128j + 32l + m; value ``(q - 1) * d``."""
    b = _blocks(data, "TQ2_0")
    n = b.shape[0]
    d = _fp16(b[:, 64:66])[:, None]
    qs = b[:, :64].reshape(n, 2, 1, 32)
    q = (qs >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3
    return ((q.reshape(n, -1).astype(np.int32) - 1).astype(np.float32) * d).astype(np.float32).reshape(-1)


def dequantize_mxfp4(data: np.ndarray) -> np.ndarray:
    """``kvalues_mxfp4[q] * 2^(e-128)`` (doubled E2M1 values, halved E8M0 scale)."""
    b = _blocks(data, "MXFP4")
    d = e8m0_to_fp32_half(b[:, 0])[:, None]
    k = KVALUES_MXFP4[_nibbles(b[:, 1:17])].astype(np.float32)
    return (k * d).astype(np.float32).reshape(-1)


DEQUANTIZERS = {
    "IQ4_NL": dequantize_iq4_nl,
    "IQ4_XS": dequantize_iq4_xs,
    "TQ1_0": dequantize_tq1_0,
    "TQ2_0": dequantize_tq2_0,
    "MXFP4": dequantize_mxfp4,
}


def dequantize(data: np.ndarray, qtype: str) -> np.ndarray:
    """The flat float32 values of the blocks in ``data``."""
    with np.errstate(all="ignore"):
        return DEQUANTIZERS[qtype](data)


def block_scales(data: np.ndarray, qtype: str) -> np.ndarray:
    """The per-block float32 scale as stored (fp16 d, or the E8M0 scale of MXFP4)."""
    b = _blocks(data, qtype)
    if qtype == "MXFP4":
        return e8m0_to_fp32_half(b[:, 0])
    off = {"IQ4_NL": 0, "IQ4_XS": 0, "TQ1_0": 52, "TQ2_0": 64}[qtype]
    return _fp16(b[:, off : off + 2])
