"""safetensors <-> GGUF: `fastquant convert` and `fastquant export`.

safetensors files are read with a small strict parser of their own (8-byte header length, JSON
header, raw little-endian data), memory-mapped, so BF16 works (as ``ml_dtypes.bfloat16``) and a
sharded checkpoint (``model.safetensors.index.json``) is read shard by shard without loading the
model into memory.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import ml_dtypes
import numpy as np

from .errors import ShapeError, UnsupportedError
from .gguf import GGUFFile, GGUFWriter
from .quant import QuantizedTensor, dequantize, quantize
from .types import QuantType, as_quant_type

__all__ = ["read_safetensors", "convert_safetensors", "export_safetensors"]

PathLike = Union[str, "os.PathLike[str]"]

_ST_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_MAX_HEADER = 100 * 2**20


class SafetensorsError(ValueError):
    """A malformed safetensors file."""


def _open_one(path: Path) -> Iterator[Tuple[str, np.ndarray]]:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise SafetensorsError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise SafetensorsError(f"{path}: header length {n} does not fit the file")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SafetensorsError(f"{path}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    data = np.memmap(path, dtype=np.uint8, mode="r") if size > 8 + n else np.zeros(0, np.uint8)
    base = 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _ST_DTYPES[info["dtype"]]
            shape = tuple(int(s) for s in info["shape"])
            start, end = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {name!r}: bad or unsupported entry {info!r}") from None
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if start < 0 or end - start != nbytes or base + end > size:
            raise SafetensorsError(f"{path}: tensor {name!r}: offsets {start}..{end} do not fit shape {shape} / file")
        yield name, data[base + start : base + end].view(dtype).reshape(shape)


def read_safetensors(path: PathLike) -> Iterator[Tuple[str, np.ndarray]]:
    """(name, zero-copy array) for every tensor of a safetensors file, or of every shard listed by
    a ``*.safetensors.index.json``, in file order."""
    p = Path(path)
    if p.name.endswith(".index.json"):
        index = json.loads(p.read_text())
        shards: List[str] = list(dict.fromkeys(index.get("weight_map", {}).values()))
        if not shards:
            raise SafetensorsError(f"{p}: no weight_map in the index")
        for shard in shards:
            yield from _open_one(p.parent / shard)
    else:
        yield from _open_one(p)


def _architecture(path: Path) -> str:
    config = (path.parent / "config.json")
    if config.exists():
        try:
            return str(json.loads(config.read_text()).get("model_type", "unknown")).replace("-", "_")
        except (OSError, json.JSONDecodeError):
            pass
    return "unknown"


def convert_safetensors(src: PathLike, dst: PathLike, qtype: str = "F16", *, arch: Optional[str] = None) -> Dict[str, int]:
    """Writes the tensors of a safetensors checkpoint (names kept) into a GGUF file.

    2-D and larger float weights get ``qtype`` (when their row length fits its block size, else
    F16); 1-D tensors (biases, norms) stay F32, as llama.cpp's converter keeps them. Streams tensor
    by tensor (two passes over the mapped input: shapes first, then data). Returns a count of
    tensors per written type.
    """
    target = as_quant_type(qtype)
    if not target.can_quantize:
        raise UnsupportedError(f"fastquant cannot write {target.value}")
    src = Path(src)
    plan: List[Tuple[str, Tuple[int, ...], QuantType]] = []
    for name, arr in read_safetensors(src):
        if len(name.encode()) > 64:
            raise ShapeError(f"tensor name {name!r} is longer than GGUF's 64 bytes")
        if arr.dtype.kind not in "fV" and arr.dtype != np.dtype(ml_dtypes.bfloat16):
            ty = {np.dtype("i1"): "I8", np.dtype("<i2"): "I16", np.dtype("<i4"): "I32", np.dtype("<i8"): "I64"}.get(arr.dtype)
            if ty is None:
                raise UnsupportedError(f"tensor {name!r}: dtype {arr.dtype} has no GGUF type")
            plan.append((name, arr.shape, QuantType(ty)))
        elif arr.ndim < 2:
            plan.append((name, arr.shape or (1,), QuantType.F32))
        elif arr.shape[-1] % target.block_size == 0:
            plan.append((name, arr.shape, target))
        else:
            plan.append((name, arr.shape, QuantType.F16))
    metadata = {"general.architecture": arch or _architecture(src), "general.name": src.parent.name or src.stem}
    if any(t.is_quantized for _, _, t in plan):
        metadata["general.quantization_version"] = 2
    with GGUFWriter(dst, metadata, plan, metadata_types={"general.quantization_version": "UINT32"}) as w:
        types = {name: t for name, _, t in plan}
        for name, arr in read_safetensors(src):
            t = types[name]
            if t.value in ("I8", "I16", "I32", "I64"):
                w.write_tensor(name, arr)
            elif t == QuantType.F32:
                w.write_tensor(name, np.asarray(arr, dtype=np.float32).reshape(-1))
            else:
                x = arr if arr.dtype in (np.float32, np.float16, np.dtype(ml_dtypes.bfloat16)) else arr.astype(np.float32)
                w.write_tensor(name, quantize(x, t))
    counts: Dict[str, int] = {}
    for _, _, t in plan:
        counts[t.value] = counts.get(t.value, 0) + 1
    return counts


def export_safetensors(src: PathLike, dst: PathLike, dtype: Any = np.float32) -> int:
    """Writes every tensor of a GGUF file, dequantized to ``dtype`` (float32, float16 or bfloat16),
    into a safetensors file (atomically). Returns the number of tensors."""
    out_dtype = np.dtype(dtype)
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(ml_dtypes.bfloat16): "BF16"}
    if out_dtype not in names:
        raise TypeError(f"export dtype must be float32, float16 or bfloat16, not {out_dtype}")
    f = GGUFFile(src)
    header: Dict[str, Any] = {"__metadata__": {"format": "pt", "source": os.path.basename(os.fspath(src))}}
    int_types = {"I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8")}
    offset = 0
    for t in f.tensors:
        # Integer tensors (position ids, ...) keep their type; floats become `dtype`.
        dt, dt_name = (int_types[t.qtype.value], t.qtype.value) if t.qtype.value in int_types else (out_dtype, names[out_dtype])
        n = t.n_elements * dt.itemsize
        header[t.name] = {"dtype": dt_name, "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(struct.pack("<Q", len(blob)) + blob)
            for t in f.tensors:
                v = f.tensor(t.name)
                if isinstance(v, QuantizedTensor):
                    arr = dequantize(v, out_dtype)
                elif t.qtype.value in int_types:
                    arr = np.asarray(v)
                else:
                    arr = np.asarray(v).astype(out_dtype)
                out.write(np.ascontiguousarray(arr).tobytes())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(f.tensors)
