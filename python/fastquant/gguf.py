"""Reading GGUF files (llama.cpp's model format), zero-copy.

>>> with fastquant.gguf.GGUFFile("model.gguf") as f:            # doctest: +SKIP
...     f.metadata["general.architecture"]
...     w = f.tensor("blk.0.attn_q.weight")                       # a QuantizedTensor viewing the file
...     f.tensor("token_embd.weight").dequantize()

The header is parsed and validated by the Rust core (every count, length, offset and size is
checked against the file before use; a bad file raises :class:`~fastquant.errors.GGUFError` naming
the field and byte offset). Tensor data is never read at open: tensors are numpy views of a
read-only memory map.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Tuple, Union

import ml_dtypes
import numpy as np

from . import _core
from .quant import QuantizedTensor
from .types import QuantType

__all__ = ["GGUFFile", "GGUFTensorInfo"]

# Plain element types come back as numpy arrays of their dtype; block types as QuantizedTensor.
_NUMPY_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"),
    "I16": np.dtype("<i2"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One tensor's entry: ``shape`` in numpy order (GGUF stores it reversed), ``offset`` from the
    start of the file."""

    name: str
    shape: Tuple[int, ...]
    qtype: QuantType
    offset: int
    nbytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


class GGUFFile:
    """A GGUF file opened read-only and memory-mapped.

    Attributes: ``version``, ``alignment``, ``data_offset``, ``metadata`` (dict in file order),
    ``metadata_types`` (key -> GGUF type name such as ``"UINT32"`` or ``"ARRAY[STRING]"``),
    ``tensors`` (list of :class:`GGUFTensorInfo` in file order).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = os.fspath(path)
        header = _core.gguf_read_header(self.path)
        self.version: int = header["version"]
        self.alignment: int = header["alignment"]
        self.data_offset: int = header["data_offset"]
        self.file_size: int = header["file_size"]
        self.metadata: Dict[str, Any] = {k: v for k, _, v in header["metadata"]}
        self.metadata_types: Dict[str, str] = {k: t for k, t, _ in header["metadata"]}
        self.tensors: List[GGUFTensorInfo] = [
            GGUFTensorInfo(name, tuple(shape), QuantType.from_id(type_id), offset, nbytes)
            for name, shape, type_id, offset, nbytes in header["tensors"]
        ]
        self._by_name = {t.name: t for t in self.tensors}
        self._map: Any = np.memmap(self.path, dtype=np.uint8, mode="r")

    def tensor_info(self, name: str) -> GGUFTensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in {self.path}") from None

    def tensor(self, name: str) -> Union[QuantizedTensor, np.ndarray]:
        """Tensor ``name`` without copying: a numpy array for plain element types (F32, F16, BF16,
        integers), a :class:`~fastquant.QuantizedTensor` for block types."""
        if self._map is None:
            raise ValueError(f"{self.path} is closed")
        info = self.tensor_info(name)
        raw = self._map[info.offset : info.offset + info.nbytes]
        dtype = _NUMPY_DTYPES.get(info.qtype.value)
        if dtype is not None:
            return raw.view(dtype).reshape(info.shape)
        return QuantizedTensor.from_buffer(raw, info.qtype, info.shape)

    def __getitem__(self, name: str) -> Union[QuantizedTensor, np.ndarray]:
        return self.tensor(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[GGUFTensorInfo]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def close(self) -> None:
        """Drops this object's map; views handed out earlier keep it alive until they go."""
        self._map = None

    def __enter__(self) -> "GGUFFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        arch = self.metadata.get("general.architecture", "?")
        return f"GGUFFile({self.path!r}, version={self.version}, architecture={arch!r}, tensors={len(self.tensors)})"
