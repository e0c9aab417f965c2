"""fastquant: byte-exact GGUF/ggml block quantization for CPUs, with a Rust core.

>>> import numpy as np, fastquant
>>> w = np.random.default_rng(0).standard_normal((64, 256), dtype=np.float32)
>>> q = fastquant.quantize(w, "Q4_0")
>>> q
QuantizedTensor(qtype=Q4_0, shape=(64, 256), nbytes=9216, bits_per_weight=4.5)
>>> float(np.abs(fastquant.dequantize(q) - w).max()) < 0.5
True
"""

from ._config import (
    available_simd_levels,
    detected_simd_level,
    get_num_threads,
    set_num_threads,
    set_simd_level,
    show_config,
    simd_level,
    simd_override,
)
from . import gguf
from .attention import KVCache, attention
from ._core import __version__
from .errors import (
    CopyWarning,
    FastquantError,
    GGUFError,
    InvalidArgumentError,
    NonFiniteError,
    QuantTypeError,
    ShapeError,
    SimdError,
    UnsupportedError,
)
from .imatrix import read_imatrix
from .matmul import Linear, matmul, matmul_q4, matmul_q8
from .model import QuantizeReport, quantize_model
from .quant import QuantizedTensor, dequantize, quantize
from .types import QuantType

__all__ = [
    "__version__",
    "QuantType",
    "QuantizedTensor",
    "quantize",
    "dequantize",
    "matmul",
    "matmul_q4",
    "matmul_q8",
    "Linear",
    "attention",
    "KVCache",
    "read_imatrix",
    "quantize_model",
    "QuantizeReport",
    "simd_level",
    "detected_simd_level",
    "available_simd_levels",
    "set_simd_level",
    "simd_override",
    "get_num_threads",
    "set_num_threads",
    "show_config",
    "FastquantError",
    "ShapeError",
    "QuantTypeError",
    "NonFiniteError",
    "UnsupportedError",
    "SimdError",
    "GGUFError",
    "InvalidArgumentError",
    "CopyWarning",
    "gguf",
]
