"""GGUF writing: what we write gguf-py reads identically (and we read it back), streaming in
declared order, and failures leave no file behind and the target untouched."""

from __future__ import annotations

import os

import gguf
import numpy as np
import pytest

import fastquant
from fastquant.gguf import GGUFFile, GGUFWriter

METADATA = {
    "general.architecture": "llama",
    "general.name": "tiny ç",
    "t.u8": np.uint8(200),
    "t.i8": np.int8(-100),
    "t.u16": np.uint16(60000),
    "t.i16": np.int16(-30000),
    "t.u32": np.uint32(4_000_000_000),
    "t.i32": -2_000_000_000,
    "t.f32": 1.5,
    "t.u64": np.uint64(2**63 + 5),
    "t.i64": 2**40,
    "t.f64": np.float64(2.25),
    "t.bool": True,
    "t.strings": ["a", "", "ünï"],
    "t.ints": [1, 2, 3],
    "t.floats": [0.5, -1.25],
}


def _tensors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 256)).astype(np.float32)
    out = {"f32": x, "f16": x.astype(np.float16), "i32": np.arange(5, dtype=np.int32)}
    for t in ["Q4_0", "Q8_0", "Q4_K", "Q6_K", "IQ4_NL"]:
        out[t] = fastquant.quantize(x, t)
    return out


def _qtype(v):
    if isinstance(v, fastquant.QuantizedTensor):
        return v.qtype
    return {np.float32: "F32", np.float16: "F16", np.int32: "I32"}[v.dtype.type]


def write(path, tensors, **kw):
    with GGUFWriter(path, METADATA, [(n, v.shape, _qtype(v)) for n, v in tensors.items()], **kw) as w:
        for name, value in tensors.items():
            w.write_tensor(name, value)


def test_gguf_py_reads_what_we_write(tmp_path):
    path = tmp_path / "out.gguf"
    tensors = _tensors()
    write(path, tensors)
    r = gguf.GGUFReader(str(path))
    for key in ["general.name", "t.u32", "t.i32", "t.f32", "t.bool", "t.u64", "t.i64", "t.f64"]:
        assert r.fields[key].contents() == pytest.approx(METADATA[key] if key != "t.u64" else 2**63 + 5)
    assert r.fields["t.strings"].contents() == ["a", "", "ünï"]
    assert r.fields["t.u8"].types == [gguf.GGUFValueType.UINT8]
    assert r.fields["t.i32"].types == [gguf.GGUFValueType.INT32]
    assert r.fields["t.f32"].types == [gguf.GGUFValueType.FLOAT32]
    by_name = {t.name: t for t in r.tensors}
    for name, value in tensors.items():
        rt = by_name[name]
        if isinstance(value, fastquant.QuantizedTensor):
            assert rt.tensor_type.name == value.qtype.value
            np.testing.assert_array_equal(np.asarray(rt.data).reshape(-1).view(np.uint8), value.data)
        else:
            np.testing.assert_array_equal(np.asarray(rt.data).reshape(value.shape), value)


def test_round_trip_through_our_reader_keeps_metadata_types_and_bytes(tmp_path):
    path = tmp_path / "out.gguf"
    tensors = _tensors()
    write(path, tensors)
    f = GGUFFile(path)
    assert f.metadata_types["t.u8"] == "UINT8" and f.metadata_types["t.strings"] == "ARRAY[STRING]"
    assert f.metadata_types["t.i64"] == "INT64" and f.metadata_types["t.ints"] == "ARRAY[INT32]"
    # Rewriting from what we read gives the same file, byte for byte.
    copy = tmp_path / "copy.gguf"
    with GGUFWriter(copy, f.metadata, [(t.name, t.shape, t.qtype) for t in f.tensors], metadata_types=f.metadata_types) as w:
        for t in f.tensors:
            w.write_tensor(t.name, f.tensor(t.name))
    assert copy.read_bytes() == path.read_bytes()


def test_files_gguf_py_writes_rewrite_identically(tmp_path):
    src = tmp_path / "gp.gguf"
    w = gguf.GGUFWriter(str(src), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_array("tokenizer.ggml.tokens", ["a", "b"])
    w.add_tensor("x", np.ones((2, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = GGUFFile(src)
    out = tmp_path / "ours.gguf"
    with GGUFWriter(out, f.metadata, [(t.name, t.shape, t.qtype) for t in f.tensors], metadata_types=f.metadata_types) as w2:
        w2.write_tensor("x", f.tensor("x"))
    assert out.read_bytes() == src.read_bytes()


def test_custom_alignment(tmp_path):
    path = tmp_path / "a.gguf"
    meta = {"general.architecture": "llama", "general.alignment": 64}
    x = np.ones((3, 32), np.float32)
    with GGUFWriter(path, meta, [("a", (1,), "F32"), ("b", x.shape, "F32")], metadata_types={"general.alignment": "UINT32"}) as w:
        w.write_tensor("a", np.ones(1, np.float32))
        w.write_tensor("b", x)
    f = GGUFFile(path)
    assert f.alignment == 64 and all((t.offset - f.data_offset) % 64 == 0 for t in f.tensors)


def _leftovers(d):
    return [p for p in os.listdir(d) if p.endswith(".tmp")]


def test_an_error_midway_leaves_the_target_untouched_and_no_temporary(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"precious")
    with pytest.raises(RuntimeError):
        with GGUFWriter(path, {"general.architecture": "llama"}, [("a", (32,), "F32"), ("b", (32,), "F32")]) as w:
            w.write_tensor("a", np.zeros(32, np.float32))
            raise RuntimeError("interrupted")
    assert path.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == []


def test_wrong_size_wrong_order_and_missing_tensors_are_errors(tmp_path):
    path = tmp_path / "m.gguf"
    spec = [("a", (32,), "Q8_0"), ("b", (32,), "F32")]
    w = GGUFWriter(path, {}, spec)
    with pytest.raises(ValueError, match="out of order"):
        w.write_tensor("b", np.zeros(32, np.float32))
    w.abort()
    w = GGUFWriter(path, {}, spec)
    with pytest.raises(fastquant.ShapeError):
        w.write_tensor("a", np.zeros(10, np.uint8))
    w = GGUFWriter(path, {}, spec)
    w.write_tensor("a", fastquant.quantize(np.zeros(32, np.float32), "Q8_0"))
    with pytest.raises(fastquant.FastquantError, match="1 of 2"):
        w.finish()
    assert not path.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "meta, types, message",
    [
        ({"k": 300}, {"k": "UINT8"}, "cannot store"),
        ({"k": "x"}, {"k": "UINT128"}, "unknown type"),
        ({"k": object()}, None, "cannot store"),
    ],
)
def test_bad_metadata_is_refused_before_anything_is_written(tmp_path, meta, types, message):
    path = tmp_path / "m.gguf"
    with pytest.raises((ValueError, TypeError), match=message):
        GGUFWriter(path, meta, [], metadata_types=types)
    assert not path.exists() and _leftovers(tmp_path) == []


def test_row_length_must_fit_the_type(tmp_path):
    with pytest.raises(fastquant.FastquantError, match="block size"):
        GGUFWriter(tmp_path / "m.gguf", {}, [("a", (2, 33), "Q4_0")])
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "qtype",
    [t for t in fastquant.QuantType if t.block_size > 0 and t.value not in ("Q8_1", "Q8_K") and hasattr(gguf.GGMLQuantizationType, t.value)],
    ids=str,
)
def test_every_tensor_type_round_trips_with_gguf_py(tmp_path, qtype):
    """Raw blocks of every type gguf-py knows: ours -> gguf-py, and gguf-py -> ours."""
    rng = np.random.default_rng(qtype.id)
    shape = (3, 2 * max(qtype.block_size, 32) if qtype.block_size > 1 else 64)
    raw = rng.integers(0, 256, size=qtype.row_bytes(shape[1]) * shape[0], dtype=np.uint8)
    ours = tmp_path / "ours.gguf"
    with GGUFWriter(ours, {"general.architecture": "llama"}, [("t", shape, qtype)]) as w:
        w.write_tensor("t", raw)
    rt = gguf.GGUFReader(str(ours)).tensors[0]
    assert rt.tensor_type.name == qtype.value
    assert tuple(int(s) for s in reversed(rt.shape)) == shape
    np.testing.assert_array_equal(np.asarray(rt.data).reshape(-1).view(np.uint8), raw)
    theirs = tmp_path / "theirs.gguf"
    gw = gguf.GGUFWriter(str(theirs), "llama")
    gw.add_tensor("t", raw.reshape(shape[0], -1), raw_dtype=gguf.GGMLQuantizationType[qtype.value])
    gw.write_header_to_file()
    gw.write_kv_data_to_file()
    gw.write_tensors_to_file()
    gw.close()
    f = GGUFFile(theirs)
    assert f.tensors[0].qtype == qtype and f.tensors[0].shape == shape
    got = f.tensor("t")
    got_bytes = got.data if isinstance(got, fastquant.QuantizedTensor) else np.asarray(got).reshape(-1).view(np.uint8)
    np.testing.assert_array_equal(got_bytes, raw)
