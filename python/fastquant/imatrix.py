"""llama.cpp importance-matrix files: the weights ``quantize(..., imatrix=...)`` takes.

Two layouts exist (llama.cpp's ``tools/imatrix``):

* the GGUF one (the default since 2025): ``general.type = "imatrix"``; for each weight matrix
  ``<name>.in_sum2`` (F32, one row of per-column sums of squared activations per expert) and
  ``<name>.counts`` (F32, tokens seen per expert). The weight is ``in_sum2 / count`` per expert.
* the legacy binary ``.dat`` (little-endian, no magic): ``i32 n_entries``, then per entry
  ``i32 name_len, name, i32 ncall, i32 nval, f32 values[nval]`` (values are ``mean * ncall``), then
  optionally ``i32 chunks, i32 len, dataset name``. The weight is ``value / ncall``.

Both are read the way llama-quantize reads them, into ``{tensor name: float32 weights}`` with one
weight per input column (times the number of experts for MoE tensors).
"""

from __future__ import annotations

import os
import struct
from typing import Dict, Union

import numpy as np

from .errors import GGUFError

__all__ = ["read_imatrix"]

PathLike = Union[str, "os.PathLike[str]"]


def read_imatrix(path: PathLike) -> Dict[str, np.ndarray]:
    """Reads an importance-matrix file (GGUF or legacy ``.dat``) into ``{tensor name: weights}``.

    Raises :class:`~fastquant.errors.GGUFError` (a ``ValueError``) for a malformed file, naming
    what is wrong and where.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"GGUF":
        return _read_gguf_imatrix(path)
    return _read_legacy_imatrix(path)


def _read_gguf_imatrix(path: str) -> Dict[str, np.ndarray]:
    from .gguf import GGUFFile

    f = GGUFFile(path)
    kind = f.metadata.get("general.type")
    if kind is not None and kind != "imatrix":
        raise GGUFError(f"{path}: general.type is {kind!r}, not 'imatrix'")
    out: Dict[str, np.ndarray] = {}
    for info in f.tensors:
        if not info.name.endswith(".in_sum2"):
            continue
        name = info.name[: -len(".in_sum2")]
        counts_name = name + ".counts"
        if counts_name not in f:
            raise GGUFError(f"{path}: tensor {info.name!r} has no matching {counts_name!r}")
        sums = np.asarray(f.tensor(info.name), dtype=np.float32)
        counts = np.asarray(f.tensor(counts_name), dtype=np.float32).reshape(-1)
        sums = sums.reshape(-1, sums.shape[-1]) if sums.ndim else sums.reshape(1, 1)
        if counts.size != sums.shape[0]:
            raise GGUFError(
                f"{path}: {counts_name!r} has {counts.size} counts for {sums.shape[0]} rows of {info.name!r}"
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(counts[:, None] > 0, sums / np.where(counts > 0, counts, 1)[:, None], 1.0)
        out[name] = w.astype(np.float32).reshape(-1)
    if not out:
        raise GGUFError(f"{path}: no '<name>.in_sum2' tensors: not an imatrix file")
    return out


def _read_legacy_imatrix(path: str) -> Dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        data = memoryview(fh.read())
    pos = 0

    def take(n: int, what: str) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(data):
            raise GGUFError(f"{path}: truncated legacy imatrix at byte {pos}: {what} needs {n} bytes")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    def i32(what: str) -> int:
        return struct.unpack("<i", take(4, what))[0]

    n_entries = i32("entry count")
    # Each entry needs at least 12 bytes of lengths and counts: a count the file cannot hold is a
    # malformed (or not-an-imatrix) file, not a reason to loop or allocate.
    if n_entries < 0 or n_entries * 12 > len(data) - pos:
        raise GGUFError(f"{path}: entry count {n_entries} does not fit the file: not an imatrix file")
    out: Dict[str, np.ndarray] = {}
    for i in range(n_entries):
        at = pos
        name_len = i32("name length")
        try:
            name = bytes(take(name_len, "name")).decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{path}: entry {i} at byte {at}: name is not valid UTF-8") from None
        ncall = i32("ncall")
        nval = i32("value count")
        if nval < 1:
            raise GGUFError(f"{path}: entry {name!r} at byte {at}: {nval} values")
        values = np.frombuffer(take(4 * nval, "values"), dtype="<f4").astype(np.float32)
        if name in out:
            raise GGUFError(f"{path}: entry {name!r} appears twice")
        out[name] = values / ncall if ncall > 0 else values
    return out
