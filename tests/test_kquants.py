"""Q4_K, Q5_K, Q6_K and Q8_K: bytes against ggml's ``ggml_quantize_chunk`` (with and without an
imatrix) on the data sets of ``reference/kquant_data.py``, values bit for bit against ggml's
``to_float`` and the numpy references in ``reference/kquants.py``, then the error properties the
formats guarantee (more bits, less error; the imatrix lowers the error it weights)."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastquant as fq
from conftest import SIMD_LEVELS, bits, dequantize_at, first_diff, qtype_id, quantize_at
from reference import kquant_data as data
from reference import kquants as ref

ggml = pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")
from reference import ggml_oracle  # noqa: E402

KQUANTS = ["Q4_K", "Q5_K", "Q6_K"]
ALL = KQUANTS + ["Q8_K"]
QK_K = 256


# ---- the oracle for Q8_K: ggml_quantize_chunk rejects it and its type traits have no
# from_float_ref / to_float, so call libggml-base's exported functions directly -------------------


def _ggml_base():
    lib = os.path.join(os.path.dirname(ggml.__file__), "lib", "libggml-base.so")
    return ctypes.CDLL(lib)


def ggml_quantize(x: np.ndarray, qtype: str, w=None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if qtype != "Q8_K":
        return ggml_oracle.quantize(x.reshape(-1, x.shape[-1]), qtype_id(qtype), w)
    out = np.zeros(x.size // QK_K * 292, dtype=np.uint8)
    _ggml_base().quantize_row_q8_K_ref(
        x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(x.size)
    )
    return out


def ggml_dequantize(blob: np.ndarray, qtype: str, n: int) -> np.ndarray:
    if qtype != "Q8_K":
        return ggml_oracle.dequantize(blob, qtype_id(qtype), n)
    blob = np.ascontiguousarray(blob, dtype=np.uint8)
    out = np.empty(n, dtype=np.float32)
    _ggml_base().dequantize_row_q8_K(
        blob.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int64(n)
    )
    return out


def fq_bytes(x: np.ndarray, qtype: str, w=None) -> np.ndarray:
    return fq.quantize(x, qtype, imatrix=w).data.reshape(-1)


def fq_values(blob: np.ndarray, qtype: str, n: int) -> np.ndarray:
    return dequantize_at(blob, qtype, n, n)


def random_blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    """Arbitrary bytes: every fp16 pattern (NaN, inf, subnormal) turns up in the scales."""
    return np.random.default_rng(seed).integers(0, 256, size=n_blocks * ref.BLOCK_BYTES[qtype], dtype=np.uint8)


# ================================================================================================
# Bytes against ggml
# ================================================================================================


@pytest.mark.parametrize("imatrix", [None] + sorted(data.IMATRICES))
@pytest.mark.parametrize("case", sorted(data.CASES))
@pytest.mark.parametrize("qtype", KQUANTS)
def test_quantize_matches_ggml(qtype, case, imatrix):
    x = data.case(case)
    w = None if imatrix is None else data.imatrix(imatrix)
    got, want = fq_bytes(x, qtype, w), ggml_quantize(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("case", sorted(data.CASES))
def test_q8_k_quantize_matches_ggml(case):
    x = data.case(case)
    got, want = fq_bytes(x, "Q8_K"), ggml_quantize(x, "Q8_K")
    assert np.array_equal(got, want), first_diff(got, want, "Q8_K")


@pytest.mark.parametrize("qtype", ALL)
def test_quantize_at_every_simd_level_matches_ggml(qtype, simd_level):
    x = data.case("student_t_outliers")
    got, want = quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype", KQUANTS)
def test_large_multithreaded_input_matches_ggml(qtype):
    x = data.case("normal", rows=96, k=4096)
    w = data.imatrix("some_zeros", 4096)
    for imatrix in (None, w):
        got, want = fq_bytes(x, qtype, imatrix), ggml_quantize(x, qtype, imatrix)
        assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype, imatrix", [(t, None) for t in ALL] + [(t, "lognormal") for t in KQUANTS])
def test_nonfinite_input_with_check_finite_false_matches_ggml(qtype, imatrix):
    x = data.case("normal")
    x[0, 3], x[1, 300], x[2, 40] = np.inf, -np.inf, np.nan
    x[3, 256:] = np.nan  # a whole block of NaN
    w = None if imatrix is None else data.imatrix(imatrix)
    got = fq.quantize(x, qtype, imatrix=w, check_finite=False).data.reshape(-1)
    want = ggml_quantize(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@given(
    qtype=st.sampled_from(ALL),
    x=hnp.arrays(np.float32, (2, QK_K), elements=st.floats(-1e6, 1e6, width=32)),
)
def test_quantize_matches_ggml_on_arbitrary_finite_data(qtype, x):
    got, want = fq_bytes(x, qtype), ggml_quantize(x, qtype)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@given(
    qtype=st.sampled_from(KQUANTS),
    x=hnp.arrays(np.float32, (1, QK_K), elements=st.floats(-1e4, 1e4, width=32)),
    w=hnp.arrays(np.float32, (QK_K,), elements=st.floats(0, 1e3, width=32)),
)
def test_imatrix_quantize_matches_ggml_on_arbitrary_finite_data(qtype, x, w):
    got, want = fq_bytes(x, qtype, w), ggml_quantize(x, qtype, w)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


# ================================================================================================
# Values against ggml's to_float and the numpy reference
# ================================================================================================


@pytest.mark.parametrize("case", sorted(data.CASES))
@pytest.mark.parametrize("qtype", ALL)
def test_dequantize_quantized_data_matches_ggml_bits(qtype, case):
    x = data.case(case)
    blob = ggml_quantize(x, qtype)
    got, want = fq_values(blob, qtype, x.size), ggml_dequantize(blob, qtype, x.size)
    assert np.array_equal(bits(got), bits(want)), first_diff(bits(got), bits(want))
    assert np.array_equal(bits(ref.DEQUANTIZE[qtype](blob)), bits(want))


@pytest.mark.parametrize("qtype", ALL)
def test_dequantize_random_bytes_matches_ggml_bits(qtype, simd_level):
    blob = random_blocks(qtype, 64, seed=qtype_id(qtype))
    n = 64 * QK_K
    got = dequantize_at(blob, qtype, n, n, simd_level)
    want = ggml_dequantize(blob, qtype, n)
    assert np.array_equal(bits(got), bits(want)), first_diff(bits(got), bits(want))
    assert np.array_equal(bits(ref.DEQUANTIZE[qtype](blob)), bits(want))


@given(qtype=st.sampled_from(ALL), seed=st.integers(0, 2**32 - 1))
def test_dequantize_matches_reference(qtype, seed):
    blob = random_blocks(qtype, 2, seed)
    got = fq_values(blob, qtype, 2 * QK_K)
    assert np.array_equal(bits(got), bits(ref.DEQUANTIZE[qtype](blob)))


# ================================================================================================
# Error properties
# ================================================================================================


def _rmse(x, qtype, w=None):
    y = fq.dequantize(fq.quantize(x, qtype, imatrix=w))
    return float(np.sqrt(np.mean((x.astype(np.float64) - y) ** 2)))


@pytest.mark.parametrize("case", ["normal", "student_t_outliers", "positive_only"])
def test_more_bits_give_less_error(case):
    x = data.case(case, rows=16, k=1024)
    e4, e5, e6, e8 = (_rmse(x, t) for t in ["Q4_K", "Q5_K", "Q6_K", "Q8_K"])
    assert e6 < e5 < e4, (e6, e5, e4)
    if case != "student_t_outliers":  # one scale per 256 loses to Q6_K's 16 around 100x outliers
        assert e8 < e6, (e8, e6)


def test_error_is_near_the_rounding_noise_of_the_code_range():
    # Normal data: Q4_K's per-sub-block range is about 5 sigma over 15 steps; the uniform rounding
    # noise of a step h is h/sqrt(12). Allow a factor 1.3 for the 6-bit scales and the fp16 scale.
    x = data.case("normal", rows=16, k=1024)
    for qtype, steps in [("Q4_K", 15), ("Q5_K", 31), ("Q6_K", 63)]:
        bound = 5.0 / steps / np.sqrt(12) * 1.3
        assert _rmse(x, qtype) < bound, (qtype, _rmse(x, qtype), bound)


def _weighted_err(x, qtype, w, imatrix):
    y = fq.dequantize(fq.quantize(x, qtype, imatrix=imatrix))
    return float(np.sum(w[None, :] * (x.astype(np.float64) - y) ** 2))


@pytest.mark.parametrize("imatrix", ["lognormal", "uniform_random", "some_zeros"])
@pytest.mark.parametrize("qtype", KQUANTS)
def test_imatrix_lowers_the_weighted_error(qtype, imatrix):
    x = data.case("normal", rows=16, k=1024)
    w = data.imatrix(imatrix, 1024)
    assert _weighted_err(x, qtype, w, w) <= _weighted_err(x, qtype, w, None)


@pytest.mark.parametrize("qtype", ALL)
def test_requantizing_is_close_to_the_first_round_trip(qtype):
    # The searches are not idempotent bit for bit, but a second round trip adds little error.
    x = data.case("normal", rows=8, k=1024)
    y1 = fq.dequantize(fq.quantize(x, qtype))
    y2 = fq.dequantize(fq.quantize(y1, qtype))
    e1 = np.sqrt(np.mean((x - y1) ** 2))
    assert np.sqrt(np.mean((y1 - y2) ** 2)) <= e1


@pytest.mark.parametrize("qtype", ALL)
def test_zero_rows_round_trip_to_zero(qtype):
    x = np.zeros((2, 512), dtype=np.float32)
    assert not np.any(fq.dequantize(fq.quantize(x, qtype)))


def test_every_level_is_listed():
    assert SIMD_LEVELS[0] == "scalar"
