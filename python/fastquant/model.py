"""Whole-model quantization: a GGUF file in, a GGUF file out, llama-quantize's presets and rules."""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np

from . import _config
from .errors import NonFiniteError, ShapeError, UnsupportedError
from .gguf import GGUFFile, GGUFWriter
from .imatrix import read_imatrix
from .presets import TensorPlan, get_preset, plan_model
from .quant import QuantizedTensor, dequantize, quantize

__all__ = ["quantize_model", "QuantizeReport"]

PathLike = Union[str, "os.PathLike[str]"]

#: ggml's GGML_QNT_VERSION, written as general.quantization_version.
QUANTIZATION_VERSION = 2


@dataclass
class QuantizeReport:
    """What :func:`quantize_model` did."""

    preset: str
    tensors: List[TensorPlan]
    bytes_in: int
    bytes_out: int
    n_elements: int
    seconds: float
    type_counts: Dict[str, int] = field(default_factory=dict)

    @property
    def bits_per_weight(self) -> float:
        return self.bytes_out * 8 / max(1, self.n_elements)

    def summary(self) -> str:
        counts = ", ".join(f"{t}: {n}" for t, n in sorted(self.type_counts.items()))
        return (
            f"{self.preset}: {len(self.tensors)} tensors ({counts}); "
            f"{self.bytes_in / 2**20:.1f} MiB -> {self.bytes_out / 2**20:.1f} MiB "
            f"({self.bytes_in / max(1, self.bytes_out):.2f}x smaller, {self.bits_per_weight:.3f} bits per weight) "
            f"in {self.seconds:.1f} s"
        )


def _as_float(f: GGUFFile, name: str) -> np.ndarray:
    """The tensor as floats the quantizer takes: F32/F16/BF16 stay the zero-copy view of the file
    (the quantizer converts 16-bit input in small steps, so no float32 copy of the tensor is ever
    made); an already quantized tensor is dequantized."""
    value = f.tensor(name)
    if isinstance(value, QuantizedTensor):
        return dequantize(value)
    if value.dtype.name in ("float32", "float16", "bfloat16"):
        return value
    return np.asarray(value, dtype=np.float32)


def quantize_model(
    src: PathLike,
    dst: PathLike,
    preset: str,
    *,
    imatrix: Union[None, PathLike, Mapping[str, np.ndarray]] = None,
    threads: Optional[int] = None,
    progress: bool = True,
    pure: bool = False,
    output_tensor_type: Optional[str] = None,
    token_embedding_type: Optional[str] = None,
    leave_output_tensor: bool = False,
) -> QuantizeReport:
    """Quantizes the GGUF model ``src`` into ``dst`` with a llama-quantize preset (``"Q4_K_M"``...).

    Every tensor gets the type llama-quantize would give it (see :func:`fastquant.presets.plan_model`)
    and the bytes ggml would write for it. Metadata is copied, with ``general.file_type`` and
    ``general.quantization_version`` set. The output is streamed (one tensor in memory at a time) to
    a temporary file renamed at the end: on any error ``dst`` is untouched.
    """
    started = time.perf_counter()
    p = get_preset(preset)
    if threads is not None:
        _config.set_num_threads(threads)
    weights: Optional[Mapping[str, np.ndarray]] = None
    if imatrix is not None:
        weights = imatrix if isinstance(imatrix, Mapping) else read_imatrix(imatrix)
        for key, w in weights.items():
            if not np.all(np.isfinite(w)):
                raise ValueError(f"imatrix entry {key!r} holds non-finite values")

    f = GGUFFile(src)
    plans = plan_model(
        [(t.name, t.shape, t.qtype) for t in f.tensors],
        f.metadata,
        p.name,
        has_imatrix=weights is not None,
        pure=pure,
        output_tensor_type=output_tensor_type,
        token_embedding_type=token_embedding_type,
        leave_output_tensor=leave_output_tensor,
    )
    for plan in plans:
        if plan.target_type != plan.source_type and not plan.target_type.can_quantize:
            raise UnsupportedError(f"tensor {plan.name!r}: fastquant cannot write {plan.target_type.value} yet")
    if any(pl.source_type.is_quantized and pl.target_type != pl.source_type for pl in plans):
        warnings.warn(f"{os.fspath(src)} is already quantized: requantizing loses quality", stacklevel=2)

    metadata = {k: v for k, v in f.metadata.items() if not k.startswith("split.")}
    types = dict(f.metadata_types)
    for key in ("general.quantization_version", "general.file_type"):
        metadata.pop(key, None)  # ggml's gguf_set_val moves a replaced key to the end
    metadata["general.quantization_version"] = QUANTIZATION_VERSION
    metadata["general.file_type"] = p.ftype
    types["general.quantization_version"] = types["general.file_type"] = "UINT32"
    if weights is not None:
        if not isinstance(imatrix, Mapping):
            metadata["quantize.imatrix.file"] = os.fspath(imatrix)  # type: ignore[arg-type]
            types["quantize.imatrix.file"] = "STRING"
        metadata["quantize.imatrix.entries_count"] = len(weights)
        types["quantize.imatrix.entries_count"] = "INT32"

    infos = {t.name: t for t in f.tensors}
    specs = [(pl.name, infos[pl.name].shape, pl.target_type) for pl in plans]
    bar = _progress_bar(len(plans), progress)
    bytes_out = 0
    with GGUFWriter(dst, metadata, specs, metadata_types=types) as w:
        for pl in plans:
            info = infos[pl.name]
            t0 = time.perf_counter()
            if pl.target_type == pl.source_type:
                data: Any = f.tensor(pl.name)
                nbytes = info.nbytes
            else:
                x = _as_float(f, pl.name)
                try:
                    data = _quantize_tensor(x, pl, None if weights is None else weights.get(pl.name))
                except NonFiniteError as e:
                    raise NonFiniteError(f"tensor {pl.name!r}: {e}", e.index, e.value) from None
                nbytes = data.nbytes
            w.write_tensor(pl.name, data)
            del data
            f.release(pl.name)
            bytes_out += nbytes
            if bar is not None:
                dt = max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix_str(f"{pl.name} {pl.target_type.value} {info.n_elements * 4 / dt / 1e6:.0f} MB/s")
                bar.update(1)
    if bar is not None:
        bar.close()
    report = QuantizeReport(
        preset=p.name,
        tensors=plans,
        bytes_in=sum(t.nbytes for t in f.tensors),
        bytes_out=bytes_out,
        n_elements=sum(t.n_elements for t in f.tensors),
        seconds=time.perf_counter() - started,
        type_counts=dict(Counter(pl.target_type.value for pl in plans)),
    )
    f.close()
    return report


def _quantize_tensor(x: np.ndarray, plan: TensorPlan, w: Optional[np.ndarray]) -> QuantizedTensor:
    """One tensor; a 3-D expert stack is quantized expert by expert with its slice of the weights,
    as llama-quantize does."""
    target = plan.target_type
    if w is not None:
        k = x.shape[-1]
        n_mat = int(np.prod(x.shape[:-2])) if x.ndim > 2 else 1
        if w.size != k * n_mat:
            raise ShapeError(f"imatrix for {plan.name!r} has {w.size} weights, expected {k} x {n_mat}")
        if x.ndim > 2:
            parts = [
                quantize(x.reshape(n_mat, -1, k)[e], target, imatrix=w[e * k : (e + 1) * k]).data for e in range(n_mat)
            ]
            return QuantizedTensor(np.concatenate(parts), target, x.shape)
        return quantize(x, target, imatrix=w)
    return quantize(x, target)


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, unit="tensor", desc="quantizing")

