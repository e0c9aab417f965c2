"""Block quantization: :func:`quantize`, :func:`dequantize` and :class:`QuantizedTensor`."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import ml_dtypes
import numpy as np

from . import _core
from ._arrays import as_bytes, as_input, as_output
from .errors import ShapeError
from .types import QuantType, QuantTypeLike, as_quant_type

__all__ = ["QuantizedTensor", "quantize", "dequantize"]

_BF16 = np.dtype(ml_dtypes.bfloat16)

# numpy dtype -> the core's name for it. f16/bf16 cross the boundary as their uint16 bits.
_KINDS = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", _BF16: "bf16"}


def _float_kind(dtype: Any, what: str) -> Tuple[np.dtype, str]:
    dt = np.dtype(dtype)
    kind = _KINDS.get(dt)
    if kind is None:
        raise TypeError(
            f"{what} must be float32, float16 or bfloat16 (ml_dtypes), not {dt}; "
            f"convert first, e.g. x.astype(np.float32)"
        )
    return dt, kind


def _as_bits(a: np.ndarray, kind: str) -> np.ndarray:
    """The flat array the core takes: float32 as is, 16-bit floats as their uint16 bits."""
    flat = a.reshape(-1)
    return flat if kind == "f32" else flat.view(np.uint16)


class QuantizedTensor:
    """A tensor in a ggml block format: raw blocks plus a type and a logical shape.

    ``data`` is a flat ``uint8`` array holding the blocks exactly as ggml and GGUF files store them
    (rows of ``shape[-1]`` elements, row-major). ``shape`` is the logical shape in numpy order. The
    object never copies ``data``: it may be a view of a file or of someone else's buffer.
    """

    __slots__ = ("_data", "_qtype", "_shape")

    def __init__(self, data: np.ndarray, qtype: QuantTypeLike, shape: Sequence[int]) -> None:
        qtype = as_quant_type(qtype)
        shape = tuple(int(s) for s in shape)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 1:
            raise TypeError("data must be a 1-D uint8 numpy array; use QuantizedTensor.from_buffer")
        _check_shape(qtype, shape)
        expected = _nbytes(qtype, shape)
        if data.nbytes != expected:
            raise ShapeError(
                f"{qtype.value} tensor of shape {shape} needs {expected} bytes, the buffer has {data.nbytes}"
            )
        if not data.flags.c_contiguous:
            raise ShapeError("the block data must be contiguous")
        self._data = data
        self._qtype = qtype
        self._shape = shape

    @classmethod
    def from_buffer(cls, data: Any, qtype: QuantTypeLike, shape: Sequence[int]) -> "QuantizedTensor":
        """Wraps existing bytes without copying: any buffer-protocol object (bytes, bytearray,
        memoryview, mmap, array.array, ctypes array), a contiguous numpy array of any dtype (its
        bytes), or an ``__array_interface__`` / ``__dlpack__`` object. A strided array is refused
        rather than copied.

        Raises :class:`~fastquant.errors.ShapeError` if the buffer's size does not match
        ``qtype`` and ``shape``.
        """
        return cls(as_bytes(data, what="data", copy=False), qtype, shape)

    @property
    def qtype(self) -> QuantType:
        return self._qtype

    @property
    def shape(self) -> Tuple[int, ...]:
        """Logical shape in numpy order (the last axis is the row of contiguous blocks)."""
        return self._shape

    @property
    def ndim(self) -> int:
        return len(self._shape)

    @property
    def size(self) -> int:
        """Number of logical elements."""
        return math.prod(self._shape)

    @property
    def data(self) -> np.ndarray:
        """The raw blocks, a flat uint8 array (a view, not a copy)."""
        return self._data

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    @property
    def bits_per_weight(self) -> float:
        return self._qtype.bits_per_weight

    def dequantize(self, dtype: Any = np.float32, *, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The tensor as floats; see :func:`dequantize`."""
        return dequantize(self, dtype, out=out)

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a QuantizedTensor cannot be viewed as floats without decoding it")
        arr = self.dequantize()
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def __len__(self) -> int:
        if not self._shape:
            raise TypeError("len() of a 0-d tensor")
        return self._shape[0]

    def __repr__(self) -> str:
        return (
            f"QuantizedTensor(qtype={self._qtype.value}, shape={self._shape}, "
            f"nbytes={self.nbytes}, bits_per_weight={self.bits_per_weight:g})"
        )


def _check_shape(qtype: QuantType, shape: Tuple[int, ...]) -> None:
    if len(shape) == 0:
        raise ShapeError("a quantized tensor needs at least one dimension (rows of blocks)")
    if any(s < 0 for s in shape):
        raise ShapeError(f"negative dimension in shape {shape}")
    k = shape[-1]
    # An empty row (k == 0) is a whole number of blocks, as numpy allows empty axes; GGUF files
    # can hold such tensors too.
    if k % qtype.block_size:
        raise ShapeError(
            f"{qtype.value}: row length {k} (the last axis of shape {shape}) is not a multiple of "
            f"the block size {qtype.block_size}"
        )


def _nbytes(qtype: QuantType, shape: Tuple[int, ...]) -> int:
    return math.prod(shape[:-1]) * qtype.row_bytes(shape[-1])


def _is_empty(shape: Tuple[int, ...]) -> bool:
    return math.prod(shape) == 0


def quantize(
    x: Any,
    qtype: QuantTypeLike,
    *,
    imatrix: Any = None,
    check_finite: bool = True,
) -> QuantizedTensor:
    """Quantizes ``x`` to a ggml block format, byte-identical to ggml's ``ggml_quantize_chunk``.

    Parameters
    ----------
    x
        A float32, float16 or bfloat16 (``ml_dtypes.bfloat16``) array of shape ``[..., K]`` with
        ``K`` a multiple of the type's block size: a numpy array or any array-like exporting its
        memory (buffer protocol, ``__array_interface__``, ``__dlpack__`` such as a torch CPU tensor,
        ``__array__``), read without copying. Read-only memory is fine; a strided, unaligned or
        byte-swapped one is copied once with a :class:`~fastquant.CopyWarning`. Lists and tuples
        are converted to float32; other dtypes raise ``TypeError``.
    qtype
        A :class:`QuantType` or its name in any case (``"q4_0"``, ``"Q8_0"``, ``"F16"``).
    imatrix
        Per-column importance weights of length ``K`` (llama.cpp's imatrix).
    check_finite
        If true (default) NaN or ±Inf input raises :class:`~fastquant.errors.NonFiniteError` naming
        the first bad flat index. If false it is encoded exactly as ggml encodes it.

    Returns
    -------
    QuantizedTensor
        With ``shape == x.shape``.
    """
    qtype = as_quant_type(qtype)
    x = as_input(x, _KINDS, what="x")
    _, kind = _float_kind(x.dtype, "x")
    shape = tuple(x.shape)
    _check_shape(qtype, shape)
    if not qtype.can_quantize:
        from .errors import UnsupportedError

        raise UnsupportedError(f"{qtype.value}: quantization is not implemented in fastquant yet")
    w = None
    if imatrix is not None:
        w = as_input(imatrix, [np.float32], what="imatrix", convert=np.float32)
        if w.shape != (shape[-1],):
            raise ShapeError(f"imatrix must have shape ({shape[-1]},) (one weight per column), not {w.shape}")
    if _is_empty(shape):
        return QuantizedTensor(np.zeros(_nbytes(qtype, shape), dtype=np.uint8), qtype, shape)
    data = _core.quantize(_as_bits(x, kind), kind, qtype.id, shape[-1], check_finite, w)
    return QuantizedTensor(data, qtype, shape)


def dequantize(qt: QuantizedTensor, dtype: Any = np.float32, *, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Decodes a :class:`QuantizedTensor` to floats, bit-identical to ggml's ``to_float``.

    ``dtype`` is float32 (default), float16 or bfloat16; 16-bit results are rounded from the float32
    values as ggml rounds. ``out``, if given, is written in place (no allocation) and a numpy view
    of it is returned: a writeable C-contiguous array of ``qt.shape`` and ``dtype``, or any
    array-like exporting such memory (a flat buffer of ``qt.size`` elements, such as a memoryview
    or array.array, is viewed with ``qt.shape``). One that cannot be written in place (read-only,
    strided, unaligned, another dtype) raises :class:`~fastquant.errors.ShapeError`.
    """
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"dequantize takes a QuantizedTensor, not {type(qt).__name__}")
    dt, kind = _float_kind(dtype, "dtype")
    out = np.empty(qt.shape, dtype=dt) if out is None else as_output(out, dt, qt.shape)
    if not _is_empty(qt.shape):
        _core.dequantize(qt.data, qt.qtype.id, qt.shape[-1], _as_bits(out, kind), kind)
    return out
