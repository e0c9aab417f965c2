"""Readable numpy references for ggml's F32/F16/BF16 rows and legacy 32-element block formats.

Written from ggml's C reference (``quantize_row_*_ref`` / ``dequantize_row_*`` in ggml-quants.c,
``ggml_compute_fp32_to_fp16`` / ``ggml_compute_fp32_to_bf16`` in ggml-impl.h), vectorised over
blocks: every function takes a float32 array of shape ``[..., K]`` (``K`` a multiple of 32) and
works on it as ``[n_blocks, 32]``. The C semantics that decide bytes are spelled out:

* float arithmetic is float32, one rounding per operation, no fused multiply-add (numpy never fuses
  separate ufunc calls, and the x86 build of ggml-base has no FMA);
* C's float -> integer conversion truncates toward zero; NaN and values outside the int32 range
  give x86's "integer indefinite" ``INT_MIN``, and ``(int8_t)`` / ``(uint8_t)`` keep its low byte;
* ``roundf`` rounds half-way cases away from zero (not numpy's ties-to-even);
* loops that look for a maximum update only on a strictly larger value, so the first of equal
  candidates wins and NaN never wins (except in Q8_0's ``MAX(amax, fabsf(v))`` fold, see
  :func:`absmax_fold`);
* scales go to fp16 with round-to-nearest-even, and every NaN becomes ``sign | 0x7E00``.

Everything returns new arrays; quantizers return the blocks as a flat ``uint8`` array, exactly as
ggml lays them out in memory, dequantizers a flat ``float32`` array.
"""

from __future__ import annotations

import numpy as np

QK = 32
"""Elements per legacy block."""

FLT_MAX = np.float32(np.finfo(np.float32).max)
INT_MIN = -(2**31)

BLOCK_BYTES = {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24, "Q8_0": 34, "Q8_1": 36}


# ================================================================================================
# Element conversions
# ================================================================================================


def fp32_to_fp16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> fp16 bit patterns (uint16), round to nearest even; NaN -> sign | 0x7E00."""
    xf = np.ascontiguousarray(x, dtype=np.float32)
    bits = xf.view(np.uint32).astype(np.int64)
    sign = (bits >> 16) & 0x8000
    a = bits & 0x7FFFFFFF  # |x| as bits
    out = np.zeros_like(a)

    is_nan = a > 0x7F800000
    # 0x477FF000 is 65520, half-way between fp16's largest finite value 65504 and 65536: it and
    # everything above (infinity included) rounds to infinity.
    is_inf = ~is_nan & (a >= 0x477FF000)
    # fp16 normals: |x| >= 2^-14 (0x38800000). Round the 23-bit mantissa to 10 bits by adding
    # half an fp16 ulp minus one, plus the kept lowest bit (ties to even), then rebias the exponent
    # from 127 to 15 (112 << 10 = 0x1C000). A carry out of the mantissa bumps the exponent, which
    # is what rounding up must do.
    is_normal = ~is_nan & ~is_inf & (a >= 0x38800000)
    rounded = (a + 0xFFF + ((a >> 13) & 1)) >> 13
    # fp16 subnormals (and zero): the value in units of 2^-24, rounded to nearest even. float64
    # holds |x| * 2^24 exactly and np.rint rounds ties to even. 1024 is the smallest normal.
    is_small = a < 0x38800000
    small = np.rint(np.abs(np.where(is_small, xf, 0).astype(np.float64)) * 2.0**24).astype(np.int64)

    out = np.where(is_nan, 0x7E00, out)
    out = np.where(is_inf, 0x7C00, out)
    out = np.where(is_normal, rounded - 0x1C000, out)
    out = np.where(is_small, small, out)
    return (sign | out).astype(np.uint16)


def fp16_bits_to_fp32(h: np.ndarray) -> np.ndarray:
    """fp16 bit patterns -> float32, exact; a NaN keeps its payload and becomes quiet."""
    h = np.asarray(h, dtype=np.uint16).astype(np.uint32)
    sign = (h & 0x8000) << 16
    exp = (h >> 10) & 0x1F
    man = h & 0x3FF
    normal = ((exp + (127 - 15)) << 23) | (man << 13)
    # exp == 0: zero or subnormal, man * 2^-24 (exact in float32).
    sub = (man.astype(np.float32) * np.float32(2.0**-24)).view(np.uint32)
    special = np.uint32(0x7F800000) | (man << 13) | np.where(man != 0, np.uint32(0x00400000), np.uint32(0))
    mag = np.where(exp == 0, sub, np.where(exp == 31, special, normal))
    return (sign | mag).astype(np.uint32).view(np.float32)


def fp32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bit patterns, round to nearest even by integer addition (subnormals kept);
    a NaN keeps its top 16 bits and is made quiet by setting bit 6."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)
    is_nan = (u & 0x7FFFFFFF) > 0x7F800000
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return np.where(is_nan, (u >> 16) | 64, rounded).astype(np.uint16)


def bf16_bits_to_fp32(h: np.ndarray) -> np.ndarray:
    """bf16 bit patterns -> float32: the bits shifted up, exact (NaNs untouched)."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# ================================================================================================
# C arithmetic helpers
# ================================================================================================


def c_float_to_int(v: np.ndarray) -> np.ndarray:
    """C's ``(int)v`` on x86 (``cvttss2si``): truncation toward zero, INT_MIN for NaN or a value
    outside [-2^31, 2^31). Returned as int64."""
    v = np.asarray(v, dtype=np.float32)
    bad = np.isnan(v) | (v >= np.float32(2.0**31)) | (v < np.float32(-(2.0**31)))
    return np.where(bad, INT_MIN, np.trunc(np.where(bad, 0, v))).astype(np.int64)


def c_float_to_int8(v: np.ndarray) -> np.ndarray:
    """C's ``(int8_t)v``: the low byte of :func:`c_float_to_int`, sign-extended (int64 result)."""
    return c_float_to_int(v).astype(np.int8).astype(np.int64)


def c_float_to_uint8(v: np.ndarray) -> np.ndarray:
    """C's ``(uint8_t)v``: the low byte of :func:`c_float_to_int` (int64 result, 0..255)."""
    return c_float_to_int(v) & 0xFF


def roundf(v: np.ndarray) -> np.ndarray:
    """C's ``roundf``: nearest integer, half-way cases away from zero (float32 in, float32 out).

    ``v - trunc(v)`` is exact in float32, so the comparison with 0.5 decides ties correctly (the
    ``floor(v + 0.5)`` idiom would round 0.49999997 up)."""
    v = np.asarray(v, dtype=np.float32)
    with np.errstate(invalid="ignore"):  # inf - inf for infinite v; the result is still inf
        t = np.trunc(v)
        frac = np.abs(v - t)
    up = np.where(frac >= np.float32(0.5), np.copysign(np.float32(1), v), np.float32(0))
    return np.where(np.isinf(v), v, t + up).astype(np.float32)


# ================================================================================================
# Block helpers
# ================================================================================================


def as_blocks(x: np.ndarray) -> np.ndarray:
    """A float32 ``[..., K]`` array as ``[n_blocks, 32]`` (rows are whole blocks)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 0 or x.shape[-1] % QK:
        raise ValueError(f"the last axis must be a multiple of {QK}, got shape {x.shape}")
    return x.reshape(-1, QK)


def _take(b: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take_along_axis(b, idx[:, None], axis=1)[:, 0]


def signed_absmax(b: np.ndarray) -> np.ndarray:
    """Per block, the element of largest magnitude; the first one on ties, +0.0 if every element
    is zero or NaN. (ggml: ``if (amax < fabsf(v)) { amax = fabsf(v); max = v; }`` from 0.)"""
    a = np.abs(b)
    a = np.where(np.isnan(a), -1, a)  # NaN never compares larger
    idx = np.argmax(a, axis=1)  # first index of the maximum
    return np.where(_take(a, idx) > 0, _take(b, idx), np.float32(0)).astype(np.float32)


def absmax_fold(b: np.ndarray) -> np.ndarray:
    """Per block, ggml's ``amax = MAX(amax, fabsf(v))`` fold from 0, with ``MAX(a, b) = a > b ? a :
    b``: a NaN element replaces the running value (``a > NaN`` is false), and the next element
    replaces the NaN in turn. So the result is the largest magnitude after the last NaN, or NaN when
    the last element is NaN."""
    n = b.shape[1]
    a = np.abs(b)
    nan = np.isnan(b)
    last_nan = np.where(nan.any(axis=1), n - 1 - np.argmax(nan[:, ::-1], axis=1), -1)
    after = np.arange(n)[None, :] > last_nan[:, None]
    amax = np.where(after, a, 0).max(axis=1).astype(np.float32)
    return np.where(last_nan == n - 1, np.float32(np.nan), amax).astype(np.float32)


def min_max(b: np.ndarray):
    """Per block, ggml's ``if (v < min) min = v; if (v > max) max = v;`` from min = FLT_MAX,
    max = -FLT_MAX: NaN never updates, +-inf beyond the start values never win, and among equal
    values (``-0.0 == 0.0``) the first one is kept."""
    lo = np.where(np.isnan(b) | (b > FLT_MAX), FLT_MAX, b)
    hi = np.where(np.isnan(b) | (b < -FLT_MAX), -FLT_MAX, b)
    vmin = _take(lo, np.argmin(lo, axis=1))
    vmax = _take(hi, np.argmax(hi, axis=1))
    return vmin.astype(np.float32), vmax.astype(np.float32)


def inverse_or_zero(d: np.ndarray) -> np.ndarray:
    """``d ? 1.0f/d : 0.0f`` (NaN is true in C, so NaN gives NaN)."""
    with np.errstate(divide="ignore", over="ignore"):
        inv = np.float32(1) / np.where(d != 0, d, np.float32(1))
    return np.where(d != 0, inv, np.float32(0)).astype(np.float32)


def _fp16_bytes(v: np.ndarray) -> np.ndarray:
    """Per block, the fp16 of ``v`` as its 2 little-endian bytes, shape ``[n_blocks, 2]``."""
    return fp32_to_fp16_bits(v).astype("<u2").view(np.uint8).reshape(-1, 2)


def fp16_field(blocks: np.ndarray, offset: int) -> np.ndarray:
    """The fp16 at byte ``offset`` of each block (``[n_blocks, block_bytes]`` uint8), as float32."""
    bits = blocks[:, offset].astype(np.uint16) | (blocks[:, offset + 1].astype(np.uint16) << 8)
    return fp16_bits_to_fp32(bits)


def _pack_nibbles(q: np.ndarray) -> np.ndarray:
    """ggml's nibble layout: byte j holds element j (low nibble) and element j + 16 (high nibble).
    ``q`` holds each element's C ``uint8_t`` value; ``q[j] | q[j+16] << 4`` is stored as a byte."""
    return ((q[:, : QK // 2] | (q[:, QK // 2 :] << 4)) & 0xFF).astype(np.uint8)


def unpack_nibbles(qs: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack_nibbles`: ``[n_blocks, 16]`` bytes -> ``[n_blocks, 32]`` codes."""
    qs = qs.astype(np.int64)
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _pack_fifth_bits(q: np.ndarray) -> np.ndarray:
    """Bit 4 of each element's code as a little-endian uint32 (bit j <- element j), 4 bytes."""
    bits = ((q >> 4) & 1).astype(np.uint32)
    qh = (bits << np.arange(QK, dtype=np.uint32)[None, :]).sum(axis=1, dtype=np.uint32)
    return qh.astype("<u4").view(np.uint8).reshape(-1, 4)


def unpack_fifth_bits(qh_bytes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack_fifth_bits`: 4 bytes per block -> ``[n_blocks, 32]`` values 0 or 16."""
    qh = np.ascontiguousarray(qh_bytes).view("<u4")[:, 0].astype(np.int64)
    return ((qh[:, None] >> np.arange(QK)[None, :]) & 1) << 4


def as_block_bytes(data: np.ndarray, qtype: str) -> np.ndarray:
    """Flat block bytes as ``[n_blocks, block_bytes]``."""
    data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    if data.size % BLOCK_BYTES[qtype]:
        raise ValueError(f"{qtype}: {data.size} bytes is not a whole number of blocks")
    return data.reshape(-1, BLOCK_BYTES[qtype])


# ================================================================================================
# Q4_0: x = d * (q - 8)
# ================================================================================================


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    b = as_blocks(x)
    with np.errstate(over="ignore", invalid="ignore"):
        d = signed_absmax(b) / np.float32(-8)
        idv = inverse_or_zero(d)
        v = b * idv[:, None] + np.float32(8.5)
    q = np.minimum(15, c_float_to_int8(v)) & 0xFF  # MIN(15, (int8_t)v) stored in a uint8_t
    return np.concatenate([_fp16_bytes(d), _pack_nibbles(q)], axis=1).reshape(-1)


def dequantize_q4_0(data: np.ndarray) -> np.ndarray:
    blocks = as_block_bytes(data, "Q4_0")
    d = fp16_field(blocks, 0)
    q = unpack_nibbles(blocks[:, 2:]) - 8
    with np.errstate(invalid="ignore", over="ignore"):
        return (q.astype(np.float32) * d[:, None]).reshape(-1)


# ================================================================================================
# Q4_1: x = d * q + m
# ================================================================================================


def quantize_q4_1(x: np.ndarray) -> np.ndarray:
    b = as_blocks(x)
    vmin, vmax = min_max(b)
    with np.errstate(over="ignore", invalid="ignore"):
        d = (vmax - vmin) / np.float32(15)
        idv = inverse_or_zero(d)
        v = (b - vmin[:, None]) * idv[:, None] + np.float32(0.5)
    q = np.minimum(15, c_float_to_int8(v)) & 0xFF
    return np.concatenate([_fp16_bytes(d), _fp16_bytes(vmin), _pack_nibbles(q)], axis=1).reshape(-1)


def _scale_add(product: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``q*d + m`` as ggml's x86 build computes it: when both are NaN, SSE's addss returns the first
    operand (the product). numpy's vectorised add may pick either NaN, so the rule is explicit."""
    return np.where(np.isnan(product), product, product + m)


def dequantize_q4_1(data: np.ndarray) -> np.ndarray:
    blocks = as_block_bytes(data, "Q4_1")
    d = fp16_field(blocks, 0)
    m = fp16_field(blocks, 2)
    q = unpack_nibbles(blocks[:, 4:])
    with np.errstate(invalid="ignore", over="ignore"):
        return _scale_add(q.astype(np.float32) * d[:, None], m[:, None]).reshape(-1)


# ================================================================================================
# Q5_0: x = d * (q - 16)
# ================================================================================================


def quantize_q5_0(x: np.ndarray) -> np.ndarray:
    b = as_blocks(x)
    with np.errstate(over="ignore", invalid="ignore"):
        d = signed_absmax(b) / np.float32(-16)
        idv = inverse_or_zero(d)
        v = b * idv[:, None] + np.float32(16.5)
    q = np.minimum(31, c_float_to_int8(v)) & 0xFF
    qs = _pack_nibbles(q & 0x0F)
    return np.concatenate([_fp16_bytes(d), _pack_fifth_bits(q), qs], axis=1).reshape(-1)


def dequantize_q5_0(data: np.ndarray) -> np.ndarray:
    blocks = as_block_bytes(data, "Q5_0")
    d = fp16_field(blocks, 0)
    q = (unpack_nibbles(blocks[:, 6:]) | unpack_fifth_bits(blocks[:, 2:6])) - 16
    with np.errstate(invalid="ignore", over="ignore"):
        return (q.astype(np.float32) * d[:, None]).reshape(-1)


# ================================================================================================
# Q5_1: x = d * q + m
# ================================================================================================


def quantize_q5_1(x: np.ndarray) -> np.ndarray:
    b = as_blocks(x)
    vmin, vmax = min_max(b)
    with np.errstate(over="ignore", invalid="ignore"):
        d = (vmax - vmin) / np.float32(31)
        idv = inverse_or_zero(d)
        v = (b - vmin[:, None]) * idv[:, None] + np.float32(0.5)
    q = c_float_to_uint8(v)  # ggml has no MIN(31, ...) here
    qs = _pack_nibbles(q & 0x0F)
    return np.concatenate([_fp16_bytes(d), _fp16_bytes(vmin), _pack_fifth_bits(q), qs], axis=1).reshape(-1)


def dequantize_q5_1(data: np.ndarray) -> np.ndarray:
    blocks = as_block_bytes(data, "Q5_1")
    d = fp16_field(blocks, 0)
    m = fp16_field(blocks, 2)
    q = unpack_nibbles(blocks[:, 8:]) | unpack_fifth_bits(blocks[:, 4:8])
    with np.errstate(invalid="ignore", over="ignore"):
        return _scale_add(q.astype(np.float32) * d[:, None], m[:, None]).reshape(-1)


# ================================================================================================
# Q8_0: x = d * q; Q8_1 adds s = d * sum(q)
# ================================================================================================


def _q8_codes(b: np.ndarray):
    with np.errstate(over="ignore", invalid="ignore"):
        d = absmax_fold(b) / np.float32(127)
        idv = inverse_or_zero(d)
        v = b * idv[:, None]
    return d, c_float_to_int8(roundf(v))  # implicit float -> int8_t of roundf's result


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    d, q = _q8_codes(as_blocks(x))
    return np.concatenate([_fp16_bytes(d), q.astype(np.int8).view(np.uint8)], axis=1).reshape(-1)


def quantize_q8_1(x: np.ndarray) -> np.ndarray:
    d, q = _q8_codes(as_blocks(x))
    with np.errstate(over="ignore", invalid="ignore"):
        s = q.sum(axis=1).astype(np.float32) * d  # int sum, converted to float, times d
    fields = [_fp16_bytes(d), _fp16_bytes(s), q.astype(np.int8).view(np.uint8)]
    return np.concatenate(fields, axis=1).reshape(-1)


def _dequantize_q8(data: np.ndarray, qtype: str, offset: int) -> np.ndarray:
    blocks = as_block_bytes(data, qtype)
    d = fp16_field(blocks, 0)
    q = np.ascontiguousarray(blocks[:, offset:]).view(np.int8)
    with np.errstate(invalid="ignore", over="ignore"):
        return (q.astype(np.float32) * d[:, None]).reshape(-1)


def dequantize_q8_0(data: np.ndarray) -> np.ndarray:
    return _dequantize_q8(data, "Q8_0", 2)


def dequantize_q8_1(data: np.ndarray) -> np.ndarray:
    """Q8_1's values are ``d * q`` (ggml itself has no ``to_float`` for it)."""
    return _dequantize_q8(data, "Q8_1", 4)


def fields(data: np.ndarray, qtype: str) -> dict:
    """The stored fields of each block: ``d`` (and ``m`` for Q4_1/Q5_1, ``s`` for Q8_1) as float32
    ``[n_blocks]``, and ``q``, the stored codes as int64 ``[n_blocks, 32]`` (0..15 for Q4_*, 0..31
    for Q5_*, -128..127 for Q8_*; not offset by 8 or 16)."""
    blocks = as_block_bytes(data, qtype)
    out = {"d": fp16_field(blocks, 0)}
    if qtype in ("Q4_1", "Q5_1"):
        out["m"] = fp16_field(blocks, 2)
    if qtype == "Q8_1":
        out["s"] = fp16_field(blocks, 2)
    if qtype == "Q4_0":
        out["q"] = unpack_nibbles(blocks[:, 2:])
    elif qtype == "Q4_1":
        out["q"] = unpack_nibbles(blocks[:, 4:])
    elif qtype == "Q5_0":
        out["q"] = unpack_nibbles(blocks[:, 6:]) | unpack_fifth_bits(blocks[:, 2:6])
    elif qtype == "Q5_1":
        out["q"] = unpack_nibbles(blocks[:, 8:]) | unpack_fifth_bits(blocks[:, 4:8])
    elif qtype in ("Q8_0", "Q8_1"):
        off = 2 if qtype == "Q8_0" else 4
        out["q"] = np.ascontiguousarray(blocks[:, off:]).view(np.int8).astype(np.int64)
    else:
        raise ValueError(f"not a legacy block type: {qtype}")
    return out


# ================================================================================================
# F32 / F16 / BF16 rows
# ================================================================================================


def quantize_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).astype("<f4").reshape(-1).view(np.uint8)


def dequantize_f32(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data, dtype=np.uint8).view("<f4").astype(np.float32)


def quantize_f16(x: np.ndarray) -> np.ndarray:
    return fp32_to_fp16_bits(np.asarray(x, dtype=np.float32).reshape(-1)).astype("<u2").view(np.uint8)


def dequantize_f16(data: np.ndarray) -> np.ndarray:
    return fp16_bits_to_fp32(np.ascontiguousarray(data, dtype=np.uint8).view("<u2"))


def quantize_bf16(x: np.ndarray) -> np.ndarray:
    return fp32_to_bf16_bits(np.asarray(x, dtype=np.float32).reshape(-1)).astype("<u2").view(np.uint8)


def dequantize_bf16(data: np.ndarray) -> np.ndarray:
    return bf16_bits_to_fp32(np.ascontiguousarray(data, dtype=np.uint8).view("<u2"))


QUANTIZE = {
    "F32": quantize_f32,
    "F16": quantize_f16,
    "BF16": quantize_bf16,
    "Q4_0": quantize_q4_0,
    "Q4_1": quantize_q4_1,
    "Q5_0": quantize_q5_0,
    "Q5_1": quantize_q5_1,
    "Q8_0": quantize_q8_0,
    "Q8_1": quantize_q8_1,
}
"""Type name -> reference quantizer (float32 ``[..., K]`` -> flat uint8 blocks)."""

DEQUANTIZE = {
    "F32": dequantize_f32,
    "F16": dequantize_f16,
    "BF16": dequantize_bf16,
    "Q4_0": dequantize_q4_0,
    "Q4_1": dequantize_q4_1,
    "Q5_0": dequantize_q5_0,
    "Q5_1": dequantize_q5_1,
    "Q8_0": dequantize_q8_0,
    "Q8_1": dequantize_q8_1,
}
"""Type name -> reference dequantizer (flat uint8 blocks -> flat float32)."""


def quantize(x: np.ndarray, qtype: str) -> np.ndarray:
    return QUANTIZE[str(qtype)](x)


def dequantize(data: np.ndarray, qtype: str) -> np.ndarray:
    return DEQUANTIZE[str(qtype)](data)
