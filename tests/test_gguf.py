"""GGUF reading: files written by gguf-py read back identically, and hostile files raise GGUFError
(never a crash, a hang or a huge allocation)."""

from __future__ import annotations

import struct

import gguf
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastquant
from fastquant.gguf import GGUFFile

GT = gguf.GGMLQuantizationType


def write_sample(path, *, alignment=None, extra_kv=True):
    """A small file with every metadata value type and a few tensor types, by gguf-py."""
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    w.add_string("general.name", "tiny ç ✓")
    if extra_kv:
        w.add_uint8("t.u8", 200)
        w.add_int8("t.i8", -100)
        w.add_uint16("t.u16", 60000)
        w.add_int16("t.i16", -30000)
        w.add_uint32("t.u32", 4_000_000_000)
        w.add_int32("t.i32", -2_000_000_000)
        w.add_float32("t.f32", 1.5)
        w.add_uint64("t.u64", 2**63 + 5)
        w.add_int64("t.i64", -(2**62))
        w.add_float64("t.f64", 2.25)
        w.add_bool("t.bool", True)
        w.add_array("t.strings", ["a", "", "ünï"])
        w.add_array("t.ints", [1, 2, 3])
        w.add_array("t.floats", [0.5, -1.25])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    tensors = {"f32": x, "f16": x.astype(np.float16)}
    w.add_tensor("f32", x)
    w.add_tensor("f16", x.astype(np.float16))
    w.add_tensor("i32", np.arange(7, dtype=np.int32))
    for name in ["Q4_0", "Q8_0", "Q5_1"]:
        q = fastquant.quantize(x, name)
        tensors[name] = q
        w.add_tensor(f"w.{name}", q.data.reshape(4, -1), raw_dtype=GT[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def test_files_written_by_gguf_py_read_back_identically(tmp_path):
    path = tmp_path / "m.gguf"
    tensors = write_sample(path)
    f = GGUFFile(path)
    r = gguf.GGUFReader(str(path))
    assert f.version == 3
    assert f.metadata["general.architecture"] == "llama"
    assert f.metadata["general.name"] == "tiny ç ✓"
    assert f.metadata["t.u64"] == 2**63 + 5 and f.metadata["t.i64"] == -(2**62)
    assert f.metadata["t.strings"] == ["a", "", "ünï"]
    assert f.metadata_types["t.strings"] == "ARRAY[STRING]"
    assert f.metadata_types["t.u8"] == "UINT8"
    # Same keys, in the same order, as gguf-py sees them (it adds GGUF.* pseudo-fields).
    assert list(f.metadata) == [k for k in r.fields if not k.startswith("GGUF.")]
    for field_name in ["t.f32", "t.u32", "t.i16", "t.bool"]:
        assert f.metadata[field_name] == r.fields[field_name].contents()
    assert [t.name for t in f.tensors] == [t.name for t in r.tensors]
    for t, rt in zip(f.tensors, r.tensors):
        assert t.offset == rt.data_offset
        assert t.shape == tuple(int(s) for s in reversed(rt.shape))
        assert t.qtype.id == int(rt.tensor_type)
        assert t.nbytes == rt.n_bytes
    np.testing.assert_array_equal(f["f32"], tensors["f32"])
    np.testing.assert_array_equal(f["f16"], tensors["f16"])
    np.testing.assert_array_equal(f["i32"], np.arange(7, dtype=np.int32))
    for name in ["Q4_0", "Q8_0", "Q5_1"]:
        qt = f[f"w.{name}"]
        assert isinstance(qt, fastquant.QuantizedTensor) and qt.qtype == name and qt.shape == (4, 64)
        np.testing.assert_array_equal(qt.data, tensors[name].data)
        rt = next(t for t in r.tensors if t.name == f"w.{name}")
        np.testing.assert_array_equal(qt.dequantize(), gguf.quants.dequantize(rt.data, GT[name]))


def test_tensors_are_zero_copy_views_of_the_file(tmp_path):
    path = tmp_path / "m.gguf"
    write_sample(path)
    with GGUFFile(path) as f:
        a = f["f32"]
        q = f["w.Q4_0"]
        assert not a.flags.owndata and not a.flags.writeable
        assert isinstance(a.base, np.ndarray)  # a view of the memory map
        assert not q.data.flags.owndata


def test_custom_alignment_is_honoured(tmp_path):
    path = tmp_path / "a.gguf"
    write_sample(path, alignment=64)
    f = GGUFFile(path)
    assert f.alignment == 64
    assert all((t.offset - f.data_offset) % 64 == 0 for t in f.tensors)
    assert f.data_offset % 64 == 0


def test_missing_file_and_directory_are_os_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        GGUFFile(tmp_path / "nope.gguf")
    with pytest.raises(OSError):
        GGUFFile(tmp_path)


def test_every_truncation_raises_gguf_error(tmp_path):
    path = tmp_path / "m.gguf"
    write_sample(path, extra_kv=False)
    data = path.read_bytes()
    # Every cut inside the header, and a sample of cuts inside the tensor data.
    f = GGUFFile(path)
    cuts = list(range(0, f.data_offset + 1)) + list(range(f.data_offset, len(data), 97))
    bad = tmp_path / "cut.gguf"
    for n in cuts:
        bad.write_bytes(data[:n])
        if n == 0:
            # numpy cannot map an empty file, but the header check comes first
            pass
        with pytest.raises(fastquant.GGUFError):
            GGUFFile(bad)


def _header(version=3, n_tensors=0, n_kv=0):
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def _str(s: bytes) -> bytes:
    return struct.pack("<Q", len(s)) + s


def _kv_u32(key: bytes, v: int) -> bytes:
    return _str(key) + struct.pack("<II", 4, v)


def _tensor(name: bytes, dims, type_id, offset) -> bytes:
    return _str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", type_id, offset)


def _pad(b: bytes, align=32) -> bytes:
    return b + b"\0" * (-len(b) % align)


@pytest.mark.parametrize(
    "blob, message",
    [
        (b"GGML" + bytes(20), "not a GGUF file"),
        (_header(version=1), "version 1"),
        (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), "big-endian"),
        (_header(version=7), "unsupported GGUF version 7"),
        (_header(n_kv=2**62), "metadata count"),
        (_header(n_tensors=2**40), "tensor count"),
        (_header(n_kv=1) + _str(b"k") + struct.pack("<I", 99) + bytes(8), "unknown value type 99"),
        (_header(n_kv=1) + _str(b"k") + struct.pack("<I", 8) + struct.pack("<Q", 2**60), "length"),
        (_header(n_kv=1) + _str(b"k") + struct.pack("<I", 8) + _str(b"\xff\xfe"), "UTF-8"),
        (_header(n_kv=1) + _str(b"k") + struct.pack("<IIQ", 9, 4, 2**61), "array length"),
        (_header(n_kv=1) + _str(b"k") + struct.pack("<IB", 7, 2), "bool byte 2"),
        (_header(n_kv=2) + _kv_u32(b"k", 1) + _kv_u32(b"k", 2), "duplicate metadata key"),
        (_header(n_kv=1) + _str(b"") + struct.pack("<II", 4, 1), "empty metadata key"),
        (_header(n_kv=1) + _kv_u32(b"general.alignment", 24), "power of two"),
        (_header(n_kv=1) + _kv_u32(b"general.alignment", 0), "power of two"),
        (_pad(_header(n_tensors=1) + _tensor(b"t", [32], 4, 0)) + bytes(64), "unknown ggml type id 4"),
        (_pad(_header(n_tensors=1) + _tensor(b"t", [33], 2, 0)) + bytes(64), "not a multiple of the Q4_0 block size"),
        (_pad(_header(n_tensors=1) + _tensor(b"t", [1, 1, 1, 1, 1], 0, 0)) + bytes(64), "dimensions"),
        (_pad(_header(n_tensors=1) + _tensor(b"t", [2**62, 2**62], 0, 0)) + bytes(64), "overflows"),
        (_pad(_header(n_tensors=1) + _tensor(b"t", [2**63], 0, 0)) + bytes(64), "too large"),
        (_pad(_header(n_tensors=1) + _tensor(b"t", [8], 0, 16)) + bytes(64), "not a multiple of the alignment"),
        (_pad(_header(n_tensors=1) + _tensor(b"t", [64], 0, 0)) + bytes(64), "past the end"),
        (_pad(_header(n_tensors=2) + _tensor(b"a", [16], 0, 0) + _tensor(b"b", [16], 0, 32)) + bytes(128), "overlaps"),
        (_pad(_header(n_tensors=2) + _tensor(b"a", [8], 0, 0) + _tensor(b"a", [8], 0, 32)) + bytes(128), "duplicate tensor name"),
        (_pad(_header(n_tensors=1) + _tensor(b"x" * 65, [8], 0, 0)) + bytes(64), "exceeds 64"),
    ],
)
def test_hostile_headers_raise_gguf_error_naming_the_problem(tmp_path, blob, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(blob)
    with pytest.raises(fastquant.GGUFError, match=message):
        GGUFFile(path)


def test_gguf_error_is_a_value_error():
    assert issubclass(fastquant.GGUFError, ValueError)


def test_empty_arrays_keep_their_element_type(tmp_path):
    blob = _header(n_kv=1) + _str(b"empty") + struct.pack("<IIQ", 9, 8, 0)
    path = tmp_path / "e.gguf"
    path.write_bytes(blob)
    f = GGUFFile(path)
    assert f.metadata["empty"] == [] and f.metadata_types["empty"] == "ARRAY[STRING]"


def test_nested_arrays_are_read(tmp_path):
    inner = struct.pack("<IQ", 4, 2) + struct.pack("<II", 7, 8)
    blob = _header(n_kv=1) + _str(b"nested") + struct.pack("<IIQ", 9, 9, 2) + inner + inner
    path = tmp_path / "n.gguf"
    path.write_bytes(blob)
    f = GGUFFile(path)
    assert f.metadata["nested"] == [[7, 8], [7, 8]]
    assert f.metadata_types["nested"] == "ARRAY[ARRAY[UINT32]]"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_files_never_crash(tmp_path_factory, data):
    base = tmp_path_factory.getbasetemp() / "mutate-base.gguf"
    if not base.exists():
        write_sample(base)
    blob = bytearray(base.read_bytes())
    header_len = GGUFFile(base).data_offset
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, header_len - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("m") / "m.gguf"
    path.write_bytes(bytes(blob))
    try:
        f = GGUFFile(path)
    except fastquant.GGUFError:
        return
    # A mutation that still parses must give tensors that lie inside the file.
    for t in f.tensors:
        assert t.offset + t.nbytes <= len(blob)
        f.tensor(t.name)
