"""Importance-weighted quantization of the legacy types (Q4_0, Q4_1, Q5_0, Q5_1): bytes against
ggml's ``ggml_quantize_chunk`` with an imatrix (``quantize_row_q4_0_impl`` etc.), on the data sets
of ``reference/kquant_data.py``, plus the properties the weighted search guarantees."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastquant as fq
from conftest import first_diff, qtype_id
from reference import kquant_data as data

ggml_oracle = pytest.importorskip("reference.ggml_oracle")
pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")

LEGACY = ["Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def fq_bytes(x: np.ndarray, qtype: str, w=None) -> np.ndarray:
    return fq.quantize(x, qtype, imatrix=w).data.reshape(-1)


def ggml_bytes(x: np.ndarray, qtype: str, w=None) -> np.ndarray:
    return ggml_oracle.quantize(x, qtype_id(qtype), w)


@pytest.mark.parametrize("imatrix", sorted(data.IMATRICES))
@pytest.mark.parametrize("case", sorted(data.CASES))
@pytest.mark.parametrize("qtype", LEGACY)
def test_imatrix_quantize_matches_ggml(qtype, case, imatrix):
    x = data.case(case)
    w = data.imatrix(imatrix)
    got, want = fq_bytes(x, qtype, w), ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype", LEGACY)
@pytest.mark.parametrize("k", [32, 96, 256, 4096])
def test_imatrix_row_lengths_match_ggml(qtype, k):
    # sigma2 is a statistic of the whole row: every row length gives different weights.
    x = data.case("normal", rows=3, k=k)
    w = data.imatrix("lognormal", k)
    got, want = fq_bytes(x, qtype, w), ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype", LEGACY)
def test_imatrix_many_rows_multithreaded_matches_ggml(qtype):
    x = data.case("student_t_outliers", rows=257, k=1024)
    w = data.imatrix("some_zeros", 1024)
    got, want = fq_bytes(x, qtype, w), ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype", LEGACY)
def test_imatrix_nonfinite_input_with_check_finite_false_matches_ggml(qtype):
    x = data.case("normal")
    x[0, 3], x[1, 300], x[2, 40] = np.inf, -np.inf, np.nan
    x[3, 32:64] = np.nan  # a whole block of NaN
    w = data.imatrix("lognormal")
    got = fq.quantize(x, qtype, imatrix=w, check_finite=False).data.reshape(-1)
    want = ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype", LEGACY)
def test_no_imatrix_is_still_the_plain_path(qtype):
    x = data.case("normal")
    assert np.array_equal(fq_bytes(x, qtype), ggml_bytes(x, qtype))


@pytest.mark.parametrize("qtype", LEGACY)
def test_imatrix_changes_the_bytes(qtype):
    x = data.case("normal")
    assert not np.array_equal(fq_bytes(x, qtype, data.imatrix("lognormal")), fq_bytes(x, qtype))


def _weighted_err(x, y, w):
    return float(np.sum(w[None, :] * (x.astype(np.float64) - y) ** 2))


@pytest.mark.parametrize("qtype", LEGACY)
def test_imatrix_lowers_the_weighted_error(qtype):
    # Not guaranteed per block (the search is heuristic), but on a whole tensor with strongly
    # varying weights the weighted search must win on the weighted metric.
    x = data.case("normal", rows=16, k=1024)
    w = data.imatrix("lognormal", 1024)
    plain = fq.dequantize(fq.quantize(x, qtype))
    weighted = fq.dequantize(fq.quantize(x, qtype, imatrix=w))
    assert _weighted_err(x, weighted, w) <= _weighted_err(x, plain, w)


@given(
    qtype=st.sampled_from(LEGACY),
    x=hnp.arrays(np.float32, (2, 64), elements=st.floats(-1e4, 1e4, width=32)),
    w=hnp.arrays(np.float32, (64,), elements=st.floats(0, 1e3, width=32)),
)
def test_imatrix_matches_ggml_on_arbitrary_finite_data(qtype, x, w):
    got, want = fq_bytes(x, qtype, w), ggml_bytes(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)
