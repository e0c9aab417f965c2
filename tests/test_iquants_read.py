"""The lattice I-quants fastquant reads but does not write: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
IQ1_S, IQ1_M.

Decoding must give ggml's ``to_float`` bits for every input: blocks ggml itself wrote (with an
importance matrix, as llama-quantize writes them) and arbitrary bytes, NaN/Inf scales included.
Also checked against gguf-py and against the numpy reference in ``reference/iquants_read.py``; the
grids those use are checked to be the generated ones (``scripts/gen_iq_grids.py --check``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import fastquant as fq
import numpy as np
import pytest
from conftest import (
    BF16,
    assert_dequantize_matches_gguf_py,
    bits,
    dequantize_at,
    first_diff,
    ggml_dequantize,
    ggml_has_to_float,
    qtype_id,
)
from hypothesis import given
from hypothesis import strategies as st
from reference import iquants_read as ref
from reference.ggml_oracle import quantize as ggml_quantize_chunk

IQ_READ = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]
QK_K = 256
ROOT = Path(__file__).resolve().parent.parent

# fp16 scales that stress the decoder: NaN (quiet, signalling, negative), +-Inf, +-0, the smallest
# subnormal, the largest finite value.
SPECIAL_FP16 = np.array([0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01, 0x0000, 0x8000, 0x0001, 0x7BFF], dtype="<u2")


def _set_scale(data: np.ndarray, qtype: str, rows: np.ndarray, h: np.ndarray) -> None:
    """Writes fp16 bit patterns `h` as the super-block scale of blocks `rows` of `data` [nb, size]."""
    if qtype == "IQ1_M":
        # IQ1_M keeps its fp16 scale in the top nibbles of its four scale u16 (bytes 48..56).
        sc = data[rows, 48:56].copy().view("<u2")
        for k in range(4):
            sc[:, k] = (sc[:, k] & 0x0FFF) | (((h >> (4 * k)) & 0xF) << 12)
        data[rows, 48:56] = sc.view(np.uint8)
    else:
        data[rows, 0:2] = h.astype("<u2").view(np.uint8).reshape(-1, 2)


def random_blocks(qtype: str, n_blocks: int, seed: int, finite: bool) -> np.ndarray:
    """Random bytes; with `finite`, every scale is a finite fp16, else a quarter of the blocks get a
    special scale (NaN, Inf, zero, subnormal, max) and the rest stay random (often NaN for IQ1_M)."""
    t = fq.QuantType(qtype)
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n_blocks, t.type_size), dtype=np.uint8)
    if finite:
        h = rng.integers(0, 0x7C00, size=n_blocks).astype(np.uint16) | (rng.integers(0, 2, n_blocks) << 15).astype(
            np.uint16
        )
        _set_scale(data, qtype, np.arange(n_blocks), h)
    else:
        rows = rng.choice(n_blocks, size=n_blocks // 4, replace=False)
        _set_scale(data, qtype, rows, rng.choice(SPECIAL_FP16, size=rows.size))
    return data.reshape(-1)


def _assert_bits(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert np.array_equal(bits(got), bits(expected)), what + ": " + first_diff(bits(got), bits(expected))


# ---- ggml-written blocks -----------------------------------------------------------------------


def _weights_data(seed: int, rows: int = 8, k: int = 512):
    """Normal rows with a few outliers, and positive importance weights (some tiny)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[rng.integers(0, rows, 4), rng.integers(0, k, 4)] *= 30
    w = rng.uniform(0.01, 4.0, k).astype(np.float32)
    w[rng.integers(0, k, 8)] = 1e-6
    return x, w


@pytest.fixture(scope="module")
def ggml_written():
    """{qtype: (x, bytes)} from ggml_quantize_chunk with an imatrix (all these types accept one;
    IQ2_XXS, IQ2_XS and IQ1_S require one)."""
    out = {}
    for i, qtype in enumerate(IQ_READ):
        x, w = _weights_data(100 + i)
        out[qtype] = (x, ggml_quantize_chunk(x, qtype_id(qtype), w))
    return out


def test_ggml_has_a_to_float_for_every_type():
    assert all(ggml_has_to_float(q) for q in IQ_READ)
    assert all(fq.QuantType(q).can_dequantize and not fq.QuantType(q).can_quantize for q in IQ_READ)


@pytest.mark.parametrize("qtype", IQ_READ)
def test_decoding_ggml_written_blocks_matches_to_float(qtype, ggml_written, simd_level):
    x, data = ggml_written[qtype]
    expected = ggml_dequantize(data, qtype, x.size)
    got = dequantize_at(data, qtype, x.shape[-1], x.size, simd_level)
    _assert_bits(got, expected, f"{qtype} at {simd_level}")
    # Sanity: the blocks are a real (lossy) encoding of x, not garbage that happens to agree.
    assert np.corrcoef(got, x.reshape(-1))[0, 1] > 0.8


@pytest.mark.parametrize("qtype", ["IQ2_S", "IQ3_XXS", "IQ3_S"])
def test_decoding_blocks_ggml_wrote_without_an_imatrix(qtype, simd_level):
    x, _ = _weights_data(7)
    data = ggml_quantize_chunk(x, qtype_id(qtype))
    got = dequantize_at(data, qtype, x.shape[-1], x.size, simd_level)
    _assert_bits(got, ggml_dequantize(data, qtype, x.size), qtype)


# ---- arbitrary bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", IQ_READ)
@pytest.mark.parametrize("finite", [True, False], ids=["finite_scales", "any_scales"])
def test_decoding_random_bytes_matches_to_float_bits(qtype, finite, simd_level):
    n_blocks = 2048
    data = random_blocks(qtype, n_blocks, seed=qtype_id(qtype) + 1000 * finite, finite=finite)
    n = n_blocks * QK_K
    expected = ggml_dequantize(data, qtype, n)
    if not finite:
        assert np.isnan(expected).any()  # the special scales are really exercised
    got = dequantize_at(data, qtype, 4 * QK_K, n, simd_level)
    _assert_bits(got, expected, f"{qtype} at {simd_level}")


@pytest.mark.parametrize("qtype", IQ_READ)
def test_every_scale_bit_pattern_matches_to_float(qtype):
    # All 65536 fp16 scales, one block each, over the same random payload.
    t = fq.QuantType(qtype)
    rng = np.random.default_rng(3)
    data = np.tile(rng.integers(0, 256, t.type_size, dtype=np.uint8), (1 << 16, 1))
    _set_scale(data, qtype, np.arange(1 << 16), np.arange(1 << 16, dtype=np.uint32))
    data = data.reshape(-1)
    n = (1 << 16) * QK_K
    _assert_bits(dequantize_at(data, qtype, QK_K, n), ggml_dequantize(data, qtype, n), qtype)


# ---- the public API ----------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", IQ_READ)
def test_public_dequantize_reads_the_type(qtype, ggml_written):
    x, data = ggml_written[qtype]
    qt = fq.QuantizedTensor.from_buffer(data, qtype, x.shape)
    got = fq.dequantize(qt)
    assert got.shape == x.shape and got.dtype == np.float32
    _assert_bits(got.reshape(-1), ggml_dequantize(data, qtype, x.size), qtype)
    # 16-bit outputs are the float32 values rounded (as for every other type).
    _assert_bits(qt.dequantize(np.float16), got.astype(np.float16), f"{qtype} float16")
    assert np.array_equal(bits(qt.dequantize(BF16)), bits(got.astype(BF16))), f"{qtype} bfloat16"


@pytest.mark.parametrize("qtype", IQ_READ)
def test_quantizing_to_a_read_only_type_raises_unsupported_error(qtype):
    x = np.ones((2, QK_K), dtype=np.float32)
    with pytest.raises(fq.UnsupportedError, match=qtype):
        fq.quantize(x, qtype)
    with pytest.raises(fq.UnsupportedError, match=qtype):
        fq.quantize(x, qtype, imatrix=np.ones(QK_K, dtype=np.float32))


# ---- gguf-py -----------------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", IQ_READ)
def test_decoding_matches_gguf_py(qtype, ggml_written):
    pytest.importorskip("gguf")

    x, q = ggml_written[qtype]
    samples = [("ggml_written", q, x.shape), ("random_bytes", random_blocks(qtype, 256, 5, finite=False), (32, 2048))]
    for name, data, shape in samples:
        assert_dequantize_matches_gguf_py(data, qtype, shape, name)


# ---- the numpy reference -----------------------------------------------------------------------


@pytest.mark.parametrize("qtype", IQ_READ)
def test_reference_matches_to_float(qtype, ggml_written):
    x, q = ggml_written[qtype]
    data = random_blocks(qtype, 1024, seed=77, finite=False)
    for name, d, n in [("ggml_written", q, x.size), ("random_bytes", data, 1024 * QK_K)]:
        _assert_bits(ref.dequantize(qtype, d), ggml_dequantize(d, qtype, n), f"{qtype} {name} reference")


@given(qtype=st.sampled_from(IQ_READ), n_blocks=st.integers(1, 8), seed=st.integers(0, 2**32 - 1), finite=st.booleans())
def test_decoding_matches_reference(qtype, n_blocks, seed, finite):
    data = random_blocks(qtype, n_blocks, seed, finite)
    n = n_blocks * QK_K
    _assert_bits(dequantize_at(data, qtype, QK_K, n), ref.dequantize(qtype, data), qtype)


def test_reference_grids_are_the_derived_ones():
    # Each grid is a set of distinct rows of small magnitudes; the IQ1 one holds only -1, 0, 1.
    for name, n in [("IQ2XXS_GRID", 256), ("IQ2XS_GRID", 512), ("IQ2S_GRID", 1024), ("IQ3XXS_GRID", 256),
                    ("IQ3S_GRID", 512), ("IQ1S_GRID", 2048)]:
        g = ref.grid(name)
        assert g.shape[0] == n and len({r.tobytes() for r in g}) == n, name
    assert set(np.unique(ref.grid("IQ1S_GRID").view(np.int8))) == {-1, 0, 1}
    assert set(np.unique(ref.grid("IQ2XXS_GRID"))) == {8, 25, 43}


def test_generated_grids_file_is_up_to_date():
    script = ROOT / "scripts" / "gen_iq_grids.py"
    r = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
