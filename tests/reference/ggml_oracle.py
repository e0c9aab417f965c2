"""The real ggml as a test oracle and benchmark peer, through the ggml-python package (ctypes).

``ggml_quantize_chunk`` is what llama-quantize calls to write every tensor; the type traits'
``to_float`` is ggml's dequantizer and ``from_float_ref`` its reference row quantizer (the only
way to reach Q8_1, which ``ggml_quantize_chunk`` does not take).
"""

from __future__ import annotations

import ctypes
from typing import Optional

import numpy as np

try:
    import ggml  # ggml-python

    HAVE_GGML = True
except ImportError:  # pragma: no cover - the test extra installs it
    ggml = None
    HAVE_GGML = False


def _f32_ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def type_traits(type_id: int):
    return ggml.ggml_get_type_traits(type_id).contents


def row_bytes(type_id: int, n: int) -> int:
    return int(ggml.ggml_row_size(type_id, n))


def quantize(x: np.ndarray, type_id: int, imatrix: Optional[np.ndarray] = None) -> np.ndarray:
    """ggml_quantize_chunk over a [rows, K] float32 array; returns the bytes as uint8."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    rows, k = x.reshape(-1, x.shape[-1]).shape
    out = np.zeros(rows * row_bytes(type_id, k), dtype=np.uint8)
    w = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    ggml.ggml_quantize_init(type_id)
    written = ggml.ggml_quantize_chunk(
        type_id,
        _f32_ptr(x),
        out.ctypes.data_as(ctypes.c_void_p),
        0,
        rows,
        k,
        None if w is None else _f32_ptr(w),
    )
    assert written == out.nbytes, (written, out.nbytes)
    return out


def quantize_ref_row(x: np.ndarray, type_id: int) -> np.ndarray:
    """The type's ``from_float_ref`` (e.g. ``quantize_row_q8_1_ref``) over the flat input."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.zeros(row_bytes(type_id, x.size), dtype=np.uint8)
    type_traits(type_id).from_float_ref(_f32_ptr(x), out.ctypes.data_as(ctypes.c_void_p), x.size)
    return out


def dequantize(data: np.ndarray, type_id: int, n: int) -> np.ndarray:
    """The type's ``to_float`` over ``n`` elements stored in ``data``."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    out = np.empty(n, dtype=np.float32)
    type_traits(type_id).to_float(data.ctypes.data_as(ctypes.c_void_p), _f32_ptr(out), n)
    return out
