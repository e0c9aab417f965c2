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

import mmap
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import ml_dtypes
import numpy as np

from . import _core
from ._arrays import as_bytes
from .quant import QuantizedTensor
from .types import QuantType, as_quant_type

__all__ = ["GGUFFile", "GGUFTensorInfo", "GGUFWriter"]

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

    def release(self, name: str) -> None:
        """Tells the OS it may drop tensor ``name``'s pages from memory (they are read again from
        the file if touched). Streaming consumers such as the model quantizer call it after each
        tensor, so resident memory stays about one tensor, not the whole file."""
        info = self.tensor_info(name)
        raw = getattr(self._map, "_mmap", None)
        if raw is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = info.offset // mmap.PAGESIZE * mmap.PAGESIZE
        length = info.offset + info.nbytes - start
        if length > 0:
            raw.madvise(mmap.MADV_DONTNEED, start, length)

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


def _infer_type(value: Any) -> str:
    """The GGUF type name a Python value is stored as when none is given."""
    if isinstance(value, (bool, np.bool_)):
        return "BOOL"
    if isinstance(value, np.generic):
        names = {"u1": "UINT8", "i1": "INT8", "u2": "UINT16", "i2": "INT16", "u4": "UINT32", "i4": "INT32",
                 "f4": "FLOAT32", "u8": "UINT64", "i8": "INT64", "f8": "FLOAT64"}
        key = value.dtype.str[1:]
        if key in names:
            return names[key]
    if isinstance(value, (int, np.integer)):
        if -(2**31) <= value < 2**31:
            return "INT32"
        return "INT64" if value < 2**63 else "UINT64"
    if isinstance(value, (float, np.floating)):
        return "FLOAT32"
    if isinstance(value, str):
        return "STRING"
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        return f"ARRAY[{_infer_type(items[0]) if items else 'STRING'}]"
    raise TypeError(f"cannot store a {type(value).__name__} in GGUF metadata")


class GGUFWriter:
    """Writes a GGUF v3 file, streaming and atomically.

    Metadata and the list of tensors (name, numpy-order shape, type) are given up front; the header
    is written at once, then each tensor with :meth:`write_tensor` in the declared order (peak
    memory: one tensor). Everything goes to a temporary file beside ``path``; :meth:`finish` renames
    it over ``path``. On an error, or leaving a ``with`` block by an exception, the temporary is
    removed and ``path`` is untouched.

    ``metadata_types`` maps keys to GGUF type names (``"UINT32"``, ``"ARRAY[STRING]"``, as
    :attr:`GGUFFile.metadata_types` gives them); keys without one are inferred (bool -> BOOL, int ->
    INT32/INT64, float -> FLOAT32, str -> STRING, lists -> ARRAY of their first element's type).
    """

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        metadata: Mapping[str, Any],
        tensors: Sequence[Tuple[str, Sequence[int], Any]],
        *,
        metadata_types: Optional[Mapping[str, str]] = None,
    ) -> None:
        types = dict(metadata_types or {})
        kvs = [(k, types.get(k) or _infer_type(v), v) for k, v in metadata.items()]
        specs = [(name, [int(s) for s in shape], as_quant_type(qtype).id) for name, shape, qtype in tensors]
        self.path = os.fspath(path)
        self._w: Optional[Any] = _core.GgufWriter(self.path, kvs, specs)

    def write_tensor(self, name: str, data: Union[QuantizedTensor, np.ndarray]) -> None:
        """Writes the next tensor: a QuantizedTensor, or an array whose bytes are the data (a numpy
        array, or any buffer / ``__array_interface__`` / ``__dlpack__`` object, read in place; a
        strided one is copied with a :class:`~fastquant.CopyWarning`)."""
        if self._w is None:
            raise ValueError("the writer is closed")
        raw = data.data if isinstance(data, QuantizedTensor) else as_bytes(data, what=f"tensor {name!r}")
        self._w.write_tensor(name, raw)

    def finish(self) -> None:
        """Checks every tensor was written and moves the file into place."""
        if self._w is None:
            raise ValueError("the writer is closed")
        w, self._w = self._w, None
        w.finish()

    def abort(self) -> None:
        """Abandons the file; ``path`` is untouched."""
        if self._w is not None:
            self._w.abort()
            self._w = None

    def __enter__(self) -> "GGUFWriter":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is not None:
            self.abort()
        elif self._w is not None:
            self.finish()
