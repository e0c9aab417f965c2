"""quantize_model / `fastquant quantize`: llama-quantize's per-tensor rules, ggml's bytes for every
tensor, metadata carried over, and a failed run leaves nothing behind."""

from __future__ import annotations

import os

import gguf
import numpy as np
import pytest
from reference import ggml_oracle

import fastquant
from fastquant.cli import main
from fastquant.gguf import GGUFFile
from fastquant.presets import plan_model

N_LAYER = 8
D, FF, KV = 256, 512, 64  # n_head 8, n_head_kv 2: GQA 4


def make_model(path, *, tied=False, d=D, ff=FF):
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(N_LAYER)
    w.add_head_count(8)
    w.add_head_count_kv(2)
    w.add_embedding_length(d)
    w.add_string("general.name", "tiny-llama")

    def t(name, *shape):
        x = (rng.standard_t(5, size=shape) * 0.02).astype(np.float16)
        w.add_tensor(name, x)

    t("token_embd.weight", 300, d)
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    if not tied:
        t("output.weight", 300, d)
    for i in range(N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(d, np.float32))
        t(f"blk.{i}.attn_q.weight", d, d)
        t(f"blk.{i}.attn_k.weight", KV, d)
        t(f"blk.{i}.attn_v.weight", KV, d)
        t(f"blk.{i}.attn_output.weight", d, d)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(d, np.float32))
        t(f"blk.{i}.ffn_gate.weight", ff, d)
        t(f"blk.{i}.ffn_up.weight", ff, d)
        t(f"blk.{i}.ffn_down.weight", d, ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def types_of(path):
    return {t.name: t.qtype.value for t in GGUFFile(path).tensors}


def test_q4_k_m_follows_llama_quantize_rules_and_ggml_bytes(tmp_path):
    src, dst = tmp_path / "f16.gguf", tmp_path / "q4km.gguf"
    make_model(src)
    report = fastquant.quantize_model(src, dst, "Q4_K_M", progress=False)
    ty = types_of(dst)
    more_bits = [i for i in range(N_LAYER) if i < N_LAYER // 8 or i >= 7 * N_LAYER // 8 or (i - N_LAYER // 8) % 3 == 2]
    for i in range(N_LAYER):
        assert ty[f"blk.{i}.attn_v.weight"] == ("Q6_K" if i in more_bits else "Q4_K")
        assert ty[f"blk.{i}.ffn_down.weight"] == ("Q6_K" if i in more_bits else "Q4_K")
        assert ty[f"blk.{i}.attn_q.weight"] == "Q4_K"
        assert ty[f"blk.{i}.attn_norm.weight"] == "F32"
    assert ty["output.weight"] == "Q6_K" and ty["token_embd.weight"] == "Q4_K"
    f = GGUFFile(dst)
    assert f.metadata["general.file_type"] == 15 and f.metadata["general.quantization_version"] == 2
    assert f.metadata["general.name"] == "tiny-llama"
    # Every quantized tensor holds ggml's bytes for the same input.
    srcf = GGUFFile(src)
    for t in f.tensors:
        if t.qtype.is_quantized:
            x = np.asarray(srcf.tensor(t.name), dtype=np.float32)
            np.testing.assert_array_equal(f.tensor(t.name).data, ggml_oracle.quantize(x, t.qtype.id), err_msg=t.name)
    # llama.cpp's order: tensors outside blocks first, then block by block (names sorted).
    names = [t.name for t in f.tensors]
    assert names[:3] == ["output.weight", "output_norm.weight", "token_embd.weight"]
    assert report.bytes_out < report.bytes_in / 3
    assert gguf.GGUFReader(str(dst)).fields["general.file_type"].contents() == 15


@pytest.mark.parametrize(
    "preset, attn_v, ffn_down, attn_output",
    [
        ("Q2_K", "Q4_K", "Q3_K", "Q3_K"),  # GQA 4: attn_v to Q4_K
        ("Q3_K_L", "Q5_K", "Q5_K", "Q5_K"),
        ("Q8_0", "Q8_0", "Q8_0", "Q8_0"),
        ("Q4_0", "Q4_0", "Q4_0", "Q4_0"),
    ],
)
def test_presets_layer_zero_types(tmp_path, preset, attn_v, ffn_down, attn_output):
    src, dst = tmp_path / "f16.gguf", tmp_path / "q.gguf"
    make_model(src)
    fastquant.quantize_model(src, dst, preset, progress=False)
    ty = types_of(dst)
    assert (ty["blk.0.attn_v.weight"], ty["blk.0.ffn_down.weight"], ty["blk.0.attn_output.weight"]) == (
        attn_v,
        ffn_down,
        attn_output,
    )
    assert ty["output.weight"] == ("Q8_0" if preset == "Q8_0" else "Q6_K")


def test_q3_k_m_first_two_attn_v_get_q5_k(tmp_path):
    plans = plan_model(
        [(f"blk.{i}.attn_v.weight", (64, 256), fastquant.QuantType.F16) for i in range(4)],
        {"general.architecture": "llama", "llama.block_count": 4},
        "Q3_K_M",
    )
    assert [p.target_type.value for p in plans] == ["Q5_K", "Q5_K", "Q4_K", "Q4_K"]


def test_tied_embeddings_take_the_output_rule(tmp_path):
    src, dst = tmp_path / "f16.gguf", tmp_path / "q.gguf"
    make_model(src, tied=True)
    fastquant.quantize_model(src, dst, "Q4_K_M", progress=False)
    assert types_of(dst)["token_embd.weight"] == "Q6_K"


def test_row_lengths_that_do_not_fit_fall_back(tmp_path):
    plans = plan_model(
        [("blk.0.attn_q.weight", (64, 96), fastquant.QuantType.F16), ("blk.0.ffn_up.weight", (64, 100), fastquant.QuantType.F16)],
        {"general.architecture": "llama", "llama.block_count": 1},
        "Q4_K_M",
    )
    assert [p.target_type.value for p in plans] == ["Q5_0", "F16"]


def test_pure_and_overrides(tmp_path):
    src, dst = tmp_path / "f16.gguf", tmp_path / "q.gguf"
    make_model(src)
    assert main(["quantize", str(src), str(dst), "Q4_K_M", "--pure", "--output-tensor-type", "Q8_0",
                 "--token-embedding-type", "Q5_0", "--no-progress"]) == 0
    ty = types_of(dst)
    assert ty["blk.0.attn_v.weight"] == "Q4_K" and ty["blk.0.ffn_down.weight"] == "Q4_K"
    assert ty["output.weight"] == "Q8_0" and ty["token_embd.weight"] == "Q5_0"
    dst2 = tmp_path / "q2.gguf"
    assert main(["quantize", str(src), str(dst2), "Q8_0", "--leave-output-tensor", "--no-progress"]) == 0
    assert types_of(dst2)["output.weight"] == "F16"


def test_imatrix_is_used_and_recorded(tmp_path):
    src, dst = tmp_path / "f16.gguf", tmp_path / "q.gguf"
    make_model(src)
    rng = np.random.default_rng(3)
    weights = {f"blk.{i}.{n}.weight": rng.lognormal(size=D).astype(np.float32)
               for i in range(N_LAYER) for n in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"]}
    weights.update({f"blk.{i}.ffn_down.weight": rng.lognormal(size=FF).astype(np.float32) for i in range(N_LAYER)})
    fastquant.quantize_model(src, dst, "Q4_K_M", imatrix=weights, progress=False)
    f, srcf = GGUFFile(dst), GGUFFile(src)
    assert f.metadata["quantize.imatrix.entries_count"] == len(weights)
    name = "blk.1.attn_q.weight"
    x = np.asarray(srcf.tensor(name), dtype=np.float32)
    np.testing.assert_array_equal(f.tensor(name).data, ggml_oracle.quantize(x, 12, weights[name]))


def test_failure_leaves_no_output(tmp_path):
    src, dst = tmp_path / "f16.gguf", tmp_path / "q.gguf"
    make_model(src)
    dst.write_bytes(b"old")
    with pytest.raises(fastquant.ShapeError):
        fastquant.quantize_model(src, dst, "Q4_K_M", imatrix={"blk.0.attn_q.weight": np.ones(7, np.float32)}, progress=False)
    assert dst.read_bytes() == b"old"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_unknown_preset_is_a_clear_error(tmp_path):
    src = tmp_path / "f16.gguf"
    make_model(src)
    with pytest.raises(fastquant.UnsupportedError, match="Q4_K_M"):
        fastquant.quantize_model(src, tmp_path / "x.gguf", "Q4_K_X", progress=False)


def test_requantizing_warns_and_still_gives_ggml_bytes_of_the_dequantized_weights(tmp_path):
    src, q8, q4 = tmp_path / "f16.gguf", tmp_path / "q8.gguf", tmp_path / "q4.gguf"
    make_model(src)
    fastquant.quantize_model(src, q8, "Q8_0", progress=False)
    with pytest.warns(UserWarning, match="already quantized"):
        fastquant.quantize_model(q8, q4, "Q4_0", progress=False)
    f8, f4 = GGUFFile(q8), GGUFFile(q4)
    name = "blk.2.ffn_up.weight"
    x = fastquant.dequantize(f8.tensor(name))
    np.testing.assert_array_equal(f4.tensor(name).data, ggml_oracle.quantize(x, 2))
