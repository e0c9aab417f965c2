"""read_imatrix: llama.cpp's GGUF and legacy .dat importance-matrix files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import fastquant


def write_legacy(path, entries, chunks=None, dataset=b"calib.txt"):
    out = struct.pack("<i", len(entries))
    for name, ncall, values in entries:
        out += struct.pack("<i", len(name)) + name + struct.pack("<ii", ncall, len(values))
        out += np.asarray(values, dtype="<f4").tobytes()
    if chunks is not None:
        out += struct.pack("<ii", chunks, len(dataset)) + dataset
    path.write_bytes(out)


def test_legacy_dat_values_are_divided_by_ncall(tmp_path):
    path = tmp_path / "imatrix.dat"
    write_legacy(path, [(b"blk.0.attn_q.weight", 4, [4.0, 8.0, 2.0]), (b"output.weight", 0, [1.5, 2.5])], chunks=4)
    w = fastquant.read_imatrix(path)
    assert list(w) == ["blk.0.attn_q.weight", "output.weight"]
    np.testing.assert_array_equal(w["blk.0.attn_q.weight"], np.float32([1.0, 2.0, 0.5]))
    np.testing.assert_array_equal(w["output.weight"], np.float32([1.5, 2.5]))
    assert w["output.weight"].dtype == np.float32


@pytest.mark.parametrize("cut", [0, 3, 5, 10, 30, 40])
def test_truncated_legacy_files_raise(tmp_path, cut):
    path = tmp_path / "imatrix.dat"
    write_legacy(path, [(b"blk.0.attn_q.weight", 4, [4.0, 8.0, 2.0])])
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(fastquant.GGUFError):
        fastquant.read_imatrix(path)


def test_hostile_entry_count_is_refused(tmp_path):
    path = tmp_path / "imatrix.dat"
    path.write_bytes(struct.pack("<i", 2**30) + bytes(16))
    with pytest.raises(fastquant.GGUFError, match="entry count"):
        fastquant.read_imatrix(path)


def test_gguf_imatrix_divides_sums_by_counts_per_expert(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "imatrix.gguf"
    w = gguf.GGUFWriter(str(path), arch="")
    w.add_string("general.type", "imatrix")
    w.add_uint32("imatrix.chunk_count", 10)
    sums = np.array([[2.0, 4.0, 6.0, 8.0]], dtype=np.float32)
    w.add_tensor("blk.0.ffn_up.weight.in_sum2", sums)
    w.add_tensor("blk.0.ffn_up.weight.counts", np.array([[2.0]], dtype=np.float32))
    moe = np.arange(8, dtype=np.float32).reshape(2, 4) + 1
    w.add_tensor("blk.0.ffn_up_exps.weight.in_sum2", moe)
    w.add_tensor("blk.0.ffn_up_exps.weight.counts", np.array([[4.0], [0.0]], dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    got = fastquant.read_imatrix(path)
    np.testing.assert_array_equal(got["blk.0.ffn_up.weight"], np.float32([1, 2, 3, 4]))
    # the second expert saw no tokens: weights 1.0, as llama-quantize fills them
    np.testing.assert_array_equal(got["blk.0.ffn_up_exps.weight"], np.float32([0.25, 0.5, 0.75, 1.0, 1, 1, 1, 1]))


def test_a_gguf_model_is_not_an_imatrix(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "model.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("x", np.zeros((2, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(fastquant.GGUFError):
        fastquant.read_imatrix(path)
