"""Type stubs for the native module ``fastquant._core`` (Rust, PyO3). Private: use the public
names re-exported by ``fastquant``."""

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import numpy.typing as npt
from typing_extensions import final

__version__: str
__all__ = [
    "__version__",
    "GgufWriter",
    "PackedWeight",
    "attention",
    "available_simd_levels",
    "dequantize",
    "gguf_read_header",
    "matmul",
    "matmul_packed",
    "has_packed_kernel",
    "detected_simd_level",
    "num_threads",
    "quantize",
    "set_num_threads",
    "set_simd_level",
    "simd_level",
    "type_table",
]

def type_table() -> List[Tuple[int, str, int, int, bool, bool]]:
    """Rows (id, name, block_elems, block_bytes, can_quantize, can_dequantize) of ggml's types."""

def quantize(
    x: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    kind: str,
    qtype_id: int,
    n_per_row: int,
    check_finite: bool = True,
    imatrix: Optional[npt.NDArray[np.float32]] = None,
    simd: Optional[str] = None,
) -> npt.NDArray[np.uint8]:
    """Quantizes a flat contiguous array (f32, or the uint16 bits of f16/bf16 as ``kind`` says)."""

def dequantize(
    data: npt.NDArray[np.uint8],
    qtype_id: int,
    n_per_row: int,
    out: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    kind: str,
    simd: Optional[str] = None,
) -> None:
    """Dequantizes flat blocks into ``out`` (f32, or uint16 bits of f16/bf16 as ``kind`` says)."""

def matmul(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.uint8],
    qtype_id: int,
    n_out: int,
    k: int,
    out: Optional[npt.NDArray[np.float32]] = None,
    simd: Optional[str] = None,
) -> npt.NDArray[np.float32]:
    """``x @ dequantize(weight).T`` for flat f32 rows of ``k`` and ``n_out`` weight rows; into ``out``."""
@final
class PackedWeight:
    """A weight packed once into its type's GEMM panels (a copy of the blocks, 64-byte aligned)."""

    def __new__(cls, weight: npt.NDArray[np.uint8], qtype_id: int, n_out: int, k: int) -> PackedWeight: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def panels_expand(self) -> bool: ...

def has_packed_kernel(qtype_id: int) -> bool:
    """Whether weights of this type can be a ``PackedWeight``."""

def matmul_packed(
    x: npt.NDArray[np.float32],
    weight: PackedWeight,
    out: Optional[npt.NDArray[np.float32]] = None,
    simd: Optional[str] = None,
) -> npt.NDArray[np.float32]:
    """``matmul`` with a packed weight: flat f32 rows of its K; into ``out``."""
def attention(
    q: npt.NDArray[np.float32] | npt.NDArray[np.uint16],
    q_type: int,
    k: npt.NDArray[np.float32] | npt.NDArray[np.uint16] | npt.NDArray[np.uint8],
    k_type: int,
    v: npt.NDArray[np.float32] | npt.NDArray[np.uint16] | npt.NDArray[np.uint8],
    v_type: int,
    shape: Tuple[int, int, int, int, int, int],
    out: npt.NDArray[np.float32],
    lse: Optional[npt.NDArray[np.float32]] = None,
    *,
    causal: bool = False,
    scale: Optional[float] = None,
    mask: Optional[npt.NDArray[np.float32]] = None,
    mask_dims: Optional[List[int]] = None,
    window: Optional[int] = None,
    softcap: Optional[float] = None,
    kv_head_stride: Optional[int] = None,
    query_offset: Optional[int] = None,
    simd: Optional[str] = None,
) -> None:
    """Flash attention into ``out``; shape is (B, Hq, Hkv, Nq, Nk, D), types are ggml type ids
    (0 f32, 1 f16 bits, else blocks)."""

def gguf_read_header(path: str | os.PathLike[str]) -> Dict[str, Any]:
    """Parses and validates a GGUF header: version, alignment, data_offset, file_size, metadata
    [(key, type name, value)], tensors [(name, numpy-order shape, type id, absolute offset, nbytes)]."""

@final
class GgufWriter:
    """Streaming, atomic GGUF writer (see fastquant.gguf.GGUFWriter)."""

    def __new__(
        cls,
        path: str | os.PathLike[str],
        metadata: List[Tuple[str, str, Any]],
        tensors: List[Tuple[str, List[int], int]],
    ) -> GgufWriter: ...
    def write_tensor(self, name: str, data: npt.NDArray[np.uint8]) -> None: ...
    def next_tensor(self) -> Optional[str]: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...

def simd_level() -> str: ...
def detected_simd_level() -> str: ...
def available_simd_levels() -> List[str]: ...
def set_simd_level(level: Optional[str]) -> None: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
