"""The importance-weighted Q2_K..Q6_K quantize kernels (AVX2, AVX-512: one sub-block's
weighted scale search per SIMD lane) against ggml's ``ggml_quantize_chunk`` with the same imatrix,
at every SIMD level this CPU has: every data set of ``reference/kquant_data.py`` with every imatrix
style, heavy-tailed rows, rows of odd and even block counts, and hypothesis-drawn data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastquant as fq
from conftest import SIMD_LEVELS, first_diff, qtype_id
from reference import kquant_data as data

ggml_oracle = pytest.importorskip("reference.ggml_oracle")
pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")

KQUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def quantize_at(x: np.ndarray, qtype: str, w: np.ndarray, level: str) -> np.ndarray:
    with fq.simd_override(level):
        return fq.quantize(x, qtype, imatrix=w).data.reshape(-1)


def ggml_bytes(x: np.ndarray, qtype: str, w: np.ndarray) -> np.ndarray:
    return ggml_oracle.quantize(np.ascontiguousarray(x, dtype=np.float32), qtype_id(qtype), w)


@pytest.mark.parametrize("imatrix", sorted(data.IMATRICES))
@pytest.mark.parametrize("case", sorted(data.CASES))
@pytest.mark.parametrize("qtype", KQUANTS)
def test_every_data_set_and_imatrix_at_every_level_matches_ggml(qtype, case, imatrix, simd_level):
    x, w = data.case(case), data.imatrix(imatrix)
    got, want = quantize_at(x, qtype, w, simd_level), ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("blocks", [1, 2, 3, 5, 43])
@pytest.mark.parametrize("qtype", KQUANTS)
def test_heavy_tailed_rows_of_every_block_count_match_ggml(qtype, blocks, simd_level):
    # Student-t (3 degrees of freedom) with a few 100x outliers per row; 43 blocks is LLaMA's
    # 11008-wide FFN rows: an odd count leaves the AVX-512 kernel a block to pair with itself.
    rng = np.random.default_rng(blocks)
    k = 256 * blocks
    x = rng.standard_t(3, size=(4, k)).astype(np.float32)
    for row in x:
        row[rng.integers(0, k, size=3)] *= 100.0
    w = np.exp(rng.standard_normal(k) * 2).astype(np.float32)
    w[rng.random(k) < 0.1] = 0.0
    got, want = quantize_at(x, qtype, w, simd_level), ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@given(
    qtype=st.sampled_from(KQUANTS),
    level=st.sampled_from(SIMD_LEVELS),
    x=hnp.arrays(np.float32, (2, 512), elements=st.floats(-1e4, 1e4, width=32)),
    w=hnp.arrays(np.float32, (512,), elements=st.floats(0, 1e3, width=32)),
)
def test_arbitrary_finite_data_and_weights_match_ggml(qtype, level, x, w):
    got, want = quantize_at(x, qtype, w, level), ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)
