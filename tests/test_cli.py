"""The `fastquant` command: demo, info and config run and print what they promise."""

import subprocess
import sys

import numpy as np
import pytest

import fastquant
from fastquant.cli import main


def test_model_demo_prints_presets_in_error_order_and_writes_a_png(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--layers", "2"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in
            ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")]
    assert [r[0] for r in rows] == ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]
    rmse = [float(r[4]) for r in rows]
    assert rmse == sorted(rmse), "error must grow as bits shrink"
    png = (tmp_path / "size-vs-error.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_matrix_demo_prints_every_implemented_weight_type(capsys):
    assert main(["demo", "--matrix", "--rows", "64", "--cols", "512", "--no-compare"]) == 0
    out = capsys.readouterr().out
    for name in ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]:
        assert f"\n{name} " in out
    assert "RMSE" in out


def test_demo_rejects_a_column_count_no_block_divides(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--matrix", "--cols", "100"])


def test_info_lists_metadata_and_tensors(tmp_path, capsys):
    gguf = pytest.importorskip("gguf")
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    q = fastquant.quantize(np.ones((2, 32), np.float32), "Q8_0")
    w.add_tensor("blk.0.w", q.data.reshape(2, -1), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "llama.block_count" in out and "UINT32" in out
    assert "blk.0.w" in out and "Q8_0" in out and "(2, 32)" in out


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "fastquant", "config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "simd:" in r.stdout
