"""Quantized matrix multiplication: :func:`matmul`, :func:`matmul_q4`, :func:`matmul_q8`, :class:`Linear`.

The weight stays in its block format; activations are quantized per row to the 8-bit type ggml
pairs with the weight (Q8_0, Q8_1 or Q8_K) and the dot products run in integers. The result
therefore differs from ``x @ dequantize(w).T`` by the activations' 8-bit rounding: per block of
32 (256 for the K-quants) elements, each activation moves by at most ``amax(block) / 254``.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import numpy as np

from . import _core
from .errors import QuantTypeError, ShapeError
from ._arrays import as_input, as_output
from .quant import _KINDS, QuantizedTensor, _float_kind, quantize
from .types import QuantType

__all__ = ["matmul", "matmul_q4", "matmul_q8", "Linear"]

# numpy dtype of a plain float weight -> its ggml type.
_FLOAT_WEIGHT_TYPES = {"f32": QuantType.F32, "f16": QuantType.F16, "bf16": QuantType.BF16}

# MXFP4 counts: its E2M1 codes are 4 bits (plus one shared E8M0 exponent byte per 32).
_FOUR_BIT = frozenset(
    {QuantType.Q4_0, QuantType.Q4_1, QuantType.IQ4_NL, QuantType.IQ4_XS, QuantType.Q4_K, QuantType.MXFP4}
)
_EIGHT_BIT = frozenset({QuantType.Q8_0})

WeightLike = Union[QuantizedTensor, np.ndarray]


def _as_weight(w: Any) -> QuantizedTensor:
    """A 2-D weight [N, K] as a QuantizedTensor: quantized ones as they are, float arrays wrapped
    (F32/F16/BF16) without quantizing."""
    if isinstance(w, QuantizedTensor):
        qt = w
    else:
        w = _float_weight(w)
        _, kind = _float_kind(w.dtype, "a float weight")
        qt = QuantizedTensor(w.reshape(-1).view(np.uint8), _FLOAT_WEIGHT_TYPES[kind], w.shape)
    if qt.ndim != 2:
        raise ShapeError(f"the weight must be 2-D [N, K] (out_features x in_features), not shape {qt.shape}")
    return qt


def _float_weight(w: Any) -> np.ndarray:
    """A plain float weight [N, K] from any array-like exporting its memory (zero-copy when it is
    contiguous float32/float16/bfloat16)."""
    w = as_input(w, _KINDS, what="a float weight", sequences=False,
                 kinds="an array exporting its memory: the weight must be a QuantizedTensor or a float numpy array")  # fmt: skip
    if w.ndim != 2:
        raise ShapeError(f"the weight must be 2-D [N, K] (out_features x in_features), not shape {w.shape}")
    return w


def _as_activations(x: Any, k: int) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """``x`` [..., K] as contiguous float32 rows, and the leading shape. 16-bit activations are
    widened to float32 here, silently: that copy is the kernels' documented input format."""
    x = as_input(x, _KINDS, what="x")
    if x.ndim == 0:
        raise ShapeError("x must have at least one dimension [..., K]")
    if x.shape[-1] != k:
        raise ShapeError(f"x has {x.shape[-1]} columns (last axis of shape {x.shape}) but the weight has K = {k}")
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    return x32.reshape(-1), tuple(x.shape[:-1])


def _run(
    x: Any,
    qt: QuantizedTensor,
    out: Optional[np.ndarray],
    simd: Optional[str],
    packed: Optional[_core.PackedWeight] = None,
) -> np.ndarray:
    n, k = qt.shape
    flat, lead = _as_activations(x, k)
    rows = flat.size // k if k else int(np.prod(lead, dtype=np.int64))
    shape = lead + (n,)
    if out is not None:
        out = as_output(out, np.float32, shape)
        target = out.reshape(-1)
    else:
        target = np.empty(rows * n, dtype=np.float32)
    if rows * n == 0 or k == 0:
        target.fill(0.0)  # an empty inner dimension sums nothing
        return target.reshape(shape)
    if packed is not None:
        _core.matmul_packed(flat, packed, target, simd)
    else:
        _core.matmul(flat, qt.data, qt.qtype.id, n, k, target, simd)
    return target.reshape(shape)


def matmul(x: Any, w: WeightLike, *, out: Optional[np.ndarray] = None, simd: Optional[str] = None) -> np.ndarray:
    """``x @ dequantize(w).T`` without dequantizing ``w``.

    Parameters
    ----------
    x
        float32, float16 or bfloat16 activations of shape ``[..., K]``: a numpy array or any
        array-like exporting its memory (buffer protocol, ``__dlpack__`` such as a torch CPU
        tensor, ...), read in place when it is contiguous float32 (a strided or byte-swapped one
        is copied with a :class:`~fastquant.CopyWarning`; 16-bit ones are widened to float32, the
        kernels' input, without a warning).
    w
        The weight ``[N, K]`` (out_features x in_features, as GGUF stores it): a
        :class:`QuantizedTensor` of any type with a dot kernel (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL
        MXFP4, the K-quants and IQ4_XS where built, F32 F16 BF16), or a plain float array (or an
        array-like exporting its memory), used without copying when contiguous.
    out
        Optional float32 array of shape ``[..., N]`` written in place (reused by :class:`Linear`);
        any array-like exporting writeable memory works. One that cannot be written in place
        (read-only, strided, another dtype) raises :class:`~fastquant.errors.ShapeError`.
    simd
        Run at this SIMD level (``"scalar"``, ``"avx2"``, ...) instead of the active one.

    Returns
    -------
    numpy.ndarray
        float32 of shape ``[..., N]``. Activations are quantized to 8 bits per row first, so the
        result is within the activation rounding bound of the module docs of the float product.
    """
    return _run(x, _as_weight(w), out, simd)


def _typed_weight(w: Any, allowed: frozenset, target: QuantType, what: str) -> QuantizedTensor:
    if isinstance(w, QuantizedTensor):
        if w.qtype not in allowed:
            names = ", ".join(sorted(t.value for t in allowed))
            raise QuantTypeError(
                f"{what} needs a weight of type {names} (or a float array to quantize to {target.value}), "
                f"got {w.qtype.value}; use fastquant.matmul for other types"
            )
        return _as_weight(w)
    return quantize(_float_weight(w), target)


def matmul_q4(x: Any, w: WeightLike, *, simd: Optional[str] = None) -> np.ndarray:
    """:func:`matmul` with a 4-bit weight (Q4_0, Q4_1, IQ4_NL, IQ4_XS, Q4_K, MXFP4). A float array is
    quantized to Q4_0 first; keep the :class:`QuantizedTensor` (or a :class:`Linear`) to do that
    only once."""
    return _run(x, _typed_weight(w, _FOUR_BIT, QuantType.Q4_0, "matmul_q4"), None, simd)


def matmul_q8(x: Any, w: WeightLike, *, simd: Optional[str] = None) -> np.ndarray:
    """:func:`matmul` with an 8-bit weight (Q8_0). A float array is quantized to Q8_0 first."""
    return _run(x, _typed_weight(w, _EIGHT_BIT, QuantType.Q8_0, "matmul_q8"), None, simd)


class Linear:
    """A linear layer ``y = x @ W.T (+ bias)`` that keeps its weight quantized.

    ``Linear(w)`` takes a :class:`QuantizedTensor` [N, K] or a float array with ``qtype`` to
    quantize it to once. Calls with the same number of rows reuse the output buffer, so an engine
    calling it per token does not allocate (``copy=False`` returns that buffer itself, which the
    next call overwrites).

    Weights of a type with a packed GEMM kernel (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL MXFP4, Q2_K..Q6_K
    IQ4_XS, F32 F16 BF16) are repacked once, here, into panels of 16 rows that the register-blocked
    microkernels read directly (as llama.cpp repacks its weights), and calls run on them. The packed
    copy is the size of the blocks for Q4_0 Q4_1 Q8_0 IQ4_NL MXFP4 and the float types (plus at most
    one block per row) and about that size for the K-quants and IQ4_XS (Q2_K 3.125, Q3_K 3.5625, Q4_K
    4.625, Q5_K 5.625, Q6_K 6.5625, IQ4_XS 4.31 bits a weight against GGUF's 2.625, 3.4375, 4.5,
    5.5, 6.5625 and 4.25); Q5_0/Q5_1 keep a byte per code (1.5 times their blocks), so for them a
    single row, which only streams the weight once, still runs on the blocks and only calls with
    more rows use the panels. ``weight`` still refers to the :class:`QuantizedTensor` (not copied
    when you passed one), so memory holds the weight twice while you keep both. ``packed`` tells
    whether a packed copy exists.
    """

    def __init__(self, w: WeightLike, qtype: Optional[Union[QuantType, str]] = None, bias: Any = None) -> None:
        if qtype is not None:
            if isinstance(w, QuantizedTensor):
                raise TypeError("qtype is for quantizing a float weight array; this weight is already quantized")
            w = quantize(_float_weight(w), qtype)
        self.weight = _as_weight(w)
        n = self.weight.shape[0]
        self.bias = None if bias is None else as_input(bias, [np.float32], what="bias", convert=np.float32)
        if self.bias is not None and self.bias.shape != (n,):
            raise ShapeError(f"bias must have shape ({n},), not {self.bias.shape}")
        self._out: Optional[np.ndarray] = None
        qt = self.weight
        self._packed: Optional[_core.PackedWeight] = None
        # Rows from which calls use the panels: 1, or 2 when the panels are larger than the blocks
        # (measured at 1 row on W [4096 x 14336], one thread: Q4_K's former byte-code panels ran at
        # 47 GFLOP/s against 85 on the blocks, its nibble panels now at 145 against 90-103; from 2
        # rows the panels win or tie).
        self._packed_min_rows = 1
        if qt.shape[0] > 0 and qt.shape[1] > 0 and _core.has_packed_kernel(qt.qtype.id):
            self._packed = _core.PackedWeight(qt.data, qt.qtype.id, qt.shape[0], qt.shape[1])
            if self._packed.panels_expand:
                self._packed_min_rows = 2

    @property
    def packed(self) -> bool:
        """Whether calls run on a packed copy of the weight (see the class docs)."""
        return self._packed is not None

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def __call__(self, x: Any, *, copy: bool = True, simd: Optional[str] = None) -> np.ndarray:
        x = as_input(x, _KINDS, what="x")
        shape = tuple(x.shape[:-1]) + (self.out_features,)
        if self._out is None or self._out.shape != shape:
            self._out = np.empty(shape, dtype=np.float32)
        rows = int(np.prod(x.shape[:-1], dtype=np.int64))
        _run(x, self.weight, self._out, simd, self._packed if rows >= self._packed_min_rows else None)
        y = self._out
        if self.bias is not None:
            y += self.bias
        return y.copy() if copy else y

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, qtype={self.weight.qtype.value})"
