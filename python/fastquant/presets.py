"""llama-quantize's presets and per-tensor type rules (``src/llama-quant.cpp``), as a library.

:func:`plan_model` decides, for every tensor of a model, the type llama-quantize would give it for
a preset such as ``Q4_K_M``: which tensors stay float, which get more bits (attn_v, ffn_down on the
``use_more_bits`` layers, output, token_embd, ...), and the fallbacks for row lengths a type cannot
hold. The rules follow llama.cpp's ``llama_tensor_get_type_impl`` for the presets fastquant can
write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import UnsupportedError
from .types import QuantType

__all__ = ["PRESETS", "Preset", "TensorPlan", "plan_model", "tensor_allows_quantization"]


@dataclass(frozen=True)
class Preset:
    name: str
    #: ``general.file_type`` (llama.cpp's ``llama_ftype``)
    ftype: int
    default_type: str


PRESETS: Dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("F32", 0, "F32"),
        Preset("F16", 1, "F16"),
        Preset("BF16", 32, "BF16"),
        Preset("Q4_0", 2, "Q4_0"),
        Preset("Q4_1", 3, "Q4_1"),
        Preset("Q8_0", 7, "Q8_0"),
        Preset("Q5_0", 8, "Q5_0"),
        Preset("Q5_1", 9, "Q5_1"),
        Preset("Q2_K", 10, "Q2_K"),
        Preset("Q3_K_S", 11, "Q3_K"),
        Preset("Q3_K_M", 12, "Q3_K"),
        Preset("Q3_K_L", 13, "Q3_K"),
        Preset("Q4_K_S", 14, "Q4_K"),
        Preset("Q4_K_M", 15, "Q4_K"),
        Preset("Q5_K_S", 16, "Q5_K"),
        Preset("Q5_K_M", 17, "Q5_K"),
        Preset("Q6_K", 18, "Q6_K"),
        Preset("IQ4_NL", 25, "IQ4_NL"),
        Preset("IQ4_XS", 30, "IQ4_XS"),
        Preset("TQ1_0", 36, "TQ1_0"),
        Preset("TQ2_0", 37, "TQ2_0"),
    ]
}
# llama-quantize's aliases.
_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}


def get_preset(name: str) -> Preset:
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    if key not in PRESETS:
        raise UnsupportedError(
            f"unknown or unsupported preset {name!r}; fastquant can write: {', '.join(PRESETS)} "
            f"(aliases: {', '.join(_ALIASES)})"
        )
    return PRESETS[key]


@dataclass(frozen=True)
class TensorPlan:
    name: str
    source_type: QuantType
    target_type: QuantType
    #: why the type differs from the preset's default (empty if it does not)
    reason: str = ""


# Substrings of names llama.cpp never quantizes (besides 1-D tensors and *_norm.weight).
_NEVER_QUANTIZE = (
    "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
    "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
    "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
    "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
    "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
    "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
    "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
    ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
)


def tensor_allows_quantization(name: str, ndim: int, *, quantize_output: bool = True) -> bool:
    """llama.cpp's ``tensor_allows_quantization``: 2-D and 3-D weights only, not norms, routers,
    position or token-type embeddings, and the other small tensors it keeps as they are."""
    if ndim < 2 or not name.endswith("weight") or "_norm.weight" in name:
        return False
    if not quantize_output and name == "output.weight":
        return False
    if name in ("position_embd.weight", "token_types.weight"):
        return False
    return not any(s in name for s in _NEVER_QUANTIZE)


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (
        ("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"), ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down"),
    ):
        if key in name:
            return cat
    return "other"


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _layer_sort_key(name: str) -> Tuple[int, str]:
    # llama.cpp's weight_name_comparer: tensors outside blocks first, then by block number, then name.
    m = re.match(r"blk\.(\d+)\.", name)
    return (int(m.group(1)) if m else -1, name)


def _hparam(metadata: Mapping[str, Any], arch: str, key: str, default: int) -> int:
    v = metadata.get(f"{arch}.{key}", default)
    if isinstance(v, list):  # per-layer values: llama.cpp's n_gqa() and friends use layer 0
        v = v[0] if v else default
    return int(v)


def _fallback(target: str, ncols: int) -> Tuple[str, str]:
    """llama.cpp's ``tensor_type_fallback`` for a row length the type's block does not divide."""
    if ncols % QuantType(target).block_size == 0:
        return target, ""
    table = {
        "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
        "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL",
    }
    new = table.get(target)
    if new is None:
        raise UnsupportedError(f"no fallback type for {target} with row length {ncols}")
    if ncols % QuantType(new).block_size:
        new = "F16"
    return new, f"row length {ncols} does not fit {target}"


def plan_model(
    tensors: Sequence[Tuple[str, Sequence[int], QuantType]],
    metadata: Mapping[str, Any],
    preset: str,
    *,
    has_imatrix: bool = False,
    pure: bool = False,
    output_tensor_type: Optional[str] = None,
    token_embedding_type: Optional[str] = None,
    leave_output_tensor: bool = False,
) -> List[TensorPlan]:
    """The target type of every tensor, in llama-quantize's order (outside blocks first, then by
    block), for ``tensors`` given as (name, numpy-order shape, current type)."""
    p = get_preset(preset)
    arch = str(metadata.get("general.architecture", ""))
    n_layer = _hparam(metadata, arch, "block_count", 0)
    n_head = _hparam(metadata, arch, "attention.head_count", 0)
    n_head_kv = _hparam(metadata, arch, "attention.head_count_kv", n_head)
    n_gqa = n_head // n_head_kv if n_head_kv else 0
    n_expert = _hparam(metadata, arch, "expert_count", 0)
    is_70b = arch == "llama" and n_layer == 80 and n_head != n_head_kv
    falcon = arch == "falcon"
    ordered = sorted(tensors, key=lambda t: _layer_sort_key(t[0]))
    names = [t[0] for t in ordered]
    n_attention_wv = sum(_category(n) in ("attn_v", "attn_qkv", "attn_kv_b") for n in names)
    tied = "output.weight" not in names
    counters = {"attn_v": 0, "ffn_down": 0, "ffn_gate": 0, "ffn_up": 0}
    ft = p.name
    default = p.default_type

    def layer_of(counter: str, name: str) -> int:
        if max(1, n_expert) > 1:
            m = re.match(r"blk\.(\d+)\.", name)
            if not m:
                raise UnsupportedError(f"cannot determine the layer of tensor {name!r}")
            return int(m.group(1))
        return counters[counter]

    def choose(name: str, ncols: int) -> Tuple[str, str]:
        cat = _category(name)
        new = default
        if cat == "output" or (tied and cat == "token_embd"):
            if output_tensor_type:
                return output_tensor_type, "--output-tensor-type"
            if falcon or ncols % QuantType(new).block_size:
                return "Q8_0", "output tensor"
            return (new, "") if new == "Q8_0" else ("Q6_K", "output tensor")
        if cat == "token_embd":
            if token_embedding_type:
                return token_embedding_type, "--token-embedding-type"
            if ft in ("TQ1_0", "TQ2_0"):
                return "Q4_K", "token embedding"
            return new, ""
        if cat in ("attn_v", "attn_qkv", "attn_kv_b"):
            i = counters["attn_v"]
            if ft == "Q2_K":
                new = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif ft == "Q3_K_M":
                new = "Q5_K" if i < 2 else "Q4_K"
            elif ft == "Q3_K_L":
                new = "Q5_K"
            elif ft in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
                new = "Q5_K"
            elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n_attention_wv):
                new = "Q6_K"
            elif ft == "Q4_K_S" and i < 4:
                new = "Q5_K"
            if is_70b and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"
            if n_expert == 8:
                new = "Q8_0"
            counters["attn_v"] += 1
            return new, "attn_v" if new != default else ""
        if cat == "attn_k":
            return ("Q8_0", "8 experts") if n_expert == 8 else (new, "")
        if cat == "ffn_down":
            i, n = layer_of("ffn_down", name), n_layer
            if ft == "Q2_K":
                new = "Q3_K"
            elif ft == "Q3_K_M":
                new = "Q5_K" if i < n // 16 else ("Q4_K" if not falcon or _use_more_bits(i, n) else "Q3_K")
            elif ft == "Q3_K_L":
                new = "Q4_K" if falcon else "Q5_K"
            elif ft == "Q4_K_M":
                if falcon:
                    new = "Q6_K" if i < n // 16 else ("Q5_K" if _use_more_bits(i, n) else "Q4_K")
                elif _use_more_bits(i, n):
                    new = "Q6_K"
            elif i < n // 8 and ft in ("IQ4_NL", "IQ4_XS") and not has_imatrix:
                new = "Q5_K"
            elif ft == "Q5_K_M" and _use_more_bits(i, n):
                new = "Q6_K"
            elif ft == "Q4_K_S" and not falcon and i < n // 8:
                new = "Q5_K"
            elif ft in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
                new = "Q4_1" if ft == "Q4_0" else "Q5_1"
            counters["ffn_down"] += 1
            return new, "ffn_down" if new != default else ""
        if cat == "attn_output":
            if not falcon:
                if n_expert == 8:
                    if ft in ("Q2_K", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ4_XS"):
                        new = "Q5_K"
                else:
                    new = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}.get(ft, new)
            elif ft == "Q3_K_L":
                new = "Q4_K"
            return new, "attn_output" if new != default else ""
        if cat in ("ffn_gate", "ffn_up"):
            counters[cat] += 1
        return new, ""

    plans = []
    for name, shape, src in ordered:
        ncols = int(shape[-1]) if len(shape) else 1
        if not tensor_allows_quantization(name, len(shape), quantize_output=not leave_output_tensor):
            plans.append(TensorPlan(name, src, src, "kept as is"))
            continue
        if token_embedding_type and _category(name) == "token_embd":
            plans.append(TensorPlan(name, src, QuantType(token_embedding_type.upper()), "--token-embedding-type"))
            continue
        if output_tensor_type and _category(name) == "output":
            plans.append(TensorPlan(name, src, QuantType(output_tensor_type.upper()), "--output-tensor-type"))
            continue
        target, reason = default, ""
        if QuantType(default).is_quantized:
            if not pure:
                target, reason = choose(name, ncols)
            target, why = _fallback(target.upper(), ncols)
            reason = why or reason
        plans.append(TensorPlan(name, src, QuantType(target.upper()), reason))
    return plans
