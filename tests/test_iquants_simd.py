"""The IQ4_NL / IQ4_XS quantize kernels (AVX2, AVX-512: one 32-element sub-block's scale search per
SIMD lane), plain and importance-weighted, against ggml's ``ggml_quantize_chunk`` at every SIMD level
this CPU has: every data set of ``test_iquants.py`` with every kind of imatrix, rows whose
sub-blocks each have their own scale and shape (so neighbouring lanes take different branches),
row widths whose 8- or 16-sub-block groups straddle rows, heavy-tailed data, and non-finite input.
(``test_iquants.py`` covers the plain path on its data sets at every level.) Then the TQ1_0, TQ2_0
and MXFP4 kernels on the same mixed rows."""

from __future__ import annotations

import zlib

import fastquant as fq
import numpy as np
import pytest
from conftest import first_diff, quantize_at
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")
from test_iquants import FINITE_CASES, IMATRIX_KINDS, _imatrix, ggml_quantize, make_case  # noqa: E402

IQ4 = ["IQ4_NL", "IQ4_XS"]
KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float64)


def quantize_imatrix_at(x: np.ndarray, qtype: str, w: np.ndarray, level: str, check_finite: bool = True):
    with fq.simd_override(level):
        return fq.quantize(x, qtype, imatrix=w, check_finite=check_finite).data


def assert_same(got, want, qtype, what):
    assert np.array_equal(got, want), f"{qtype} {what}: {first_diff(got, want, qtype)}"


def mixed_rows(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    """Sub-blocks of 32 with their own scale (1e-30..1e30, powers of two) and shape: normal, zero,
    constant, on the table's entries and midpoints with -127 as the largest (exact ties in the
    search), a lone 100x outlier, Student-t."""
    subs = rng.standard_normal((rows * k // 32, 32))
    n = subs.shape[0]
    shape = rng.integers(0, 7, size=n)
    subs[shape == 1] = 0.0
    subs[shape == 2] = 1.0
    grid = np.concatenate([KVALUES, (KVALUES[:-1] + KVALUES[1:]) / 2])
    ties = shape == 3
    subs[ties] = rng.choice(grid, size=(int(ties.sum()), 32))
    subs[ties, rng.integers(0, 32)] = -127.0
    outlier = np.flatnonzero(shape == 4)
    subs[outlier] *= 0.01
    subs[outlier, rng.integers(0, 32, size=outlier.size)] = 100.0 * rng.choice([-1.0, 1.0], size=outlier.size)
    heavy = shape == 5
    subs[heavy] = rng.standard_t(2, size=(int(heavy.sum()), 32))
    scale = np.where(
        rng.random((n, 1)) < 0.5,
        2.0 ** rng.integers(-20, 20, size=(n, 1)),
        10.0 ** rng.integers(-30, 31, size=(n, 1)),
    )
    with np.errstate(over="ignore"):
        return (subs * scale).astype(np.float32).reshape(rows, k)


@pytest.mark.parametrize("kind", IMATRIX_KINDS)
@pytest.mark.parametrize("case", sorted(FINITE_CASES))
@pytest.mark.parametrize("qtype", IQ4)
def test_imatrix_every_data_set_at_every_level_matches_ggml(qtype, case, kind, simd_level):
    x = make_case(case)
    w = _imatrix(kind, seed=zlib.crc32(case.encode()))
    got = quantize_imatrix_at(x, qtype, w, simd_level)
    assert_same(got, ggml_quantize(x, qtype, w), qtype, f"{case} with {kind} imatrix at {simd_level}")


# Widths whose groups of 8 (AVX2) or 16 (AVX-512) sub-blocks straddle rows, and odd row counts.
SHAPES = {"IQ4_NL": [(1, 32), (7, 96), (5, 416), (3, 4096 + 32)], "IQ4_XS": [(1, 256), (5, 768), (3, 4096 + 256)]}


@pytest.mark.parametrize("qtype", IQ4)
def test_mixed_sub_blocks_plain_and_weighted_at_every_level_match_ggml(qtype, simd_level):
    for rows, k in SHAPES[qtype]:
        rng = np.random.default_rng(rows * 1009 + k)
        x = mixed_rows(rng, rows, k)
        assert_same(quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype), qtype, f"{rows}x{k} at {simd_level}")
        w = rng.exponential(1.0, size=k).astype(np.float32)
        w[rng.random(k) < 0.2] = 0.0
        got = quantize_imatrix_at(x, qtype, w, simd_level)
        assert_same(got, ggml_quantize(x, qtype, w), qtype, f"{rows}x{k} weighted at {simd_level}")


@pytest.mark.parametrize("qtype", IQ4)
def test_heavy_tailed_multithreaded_input_at_every_level_matches_ggml(qtype, simd_level):
    rng = np.random.default_rng(31)
    x = (rng.standard_t(3, size=(64, 4096 + 256)) * 0.02).astype(np.float32)
    x.reshape(-1)[rng.choice(x.size, size=200, replace=False)] *= 100
    w = rng.exponential(1.0, size=x.shape[1]).astype(np.float32)
    fq.set_num_threads(2)
    assert_same(quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype), qtype, f"heavy tails at {simd_level}")
    got = quantize_imatrix_at(x, qtype, w, simd_level)
    assert_same(got, ggml_quantize(x, qtype, w), qtype, f"heavy tails weighted at {simd_level}")


@pytest.mark.parametrize("qtype", IQ4)
def test_imatrix_nonfinite_data_and_weights_at_every_level_match_ggml(qtype, simd_level):
    x = make_case("nonfinite")
    rng = np.random.default_rng(10)
    k = x.shape[1]
    for w in [_imatrix("some_zero", k), np.where(rng.random(k) < 0.1, np.nan, 1.0).astype(np.float32)]:
        with np.errstate(all="ignore"):
            got = quantize_imatrix_at(x, qtype, w, simd_level, check_finite=False)
            assert_same(got, ggml_quantize(x, qtype, w), qtype, f"nonfinite with imatrix at {simd_level}")


@settings(deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 3), dof=st.sampled_from([1.0, 2.0, 5.0, 100.0]))
@pytest.mark.parametrize("qtype", IQ4)
def test_random_heavy_tailed_rows_at_every_level_match_ggml(qtype, seed, rows, dof):
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(dof, size=(rows, 512)) * 10.0 ** rng.integers(-6, 6)).astype(np.float32)
    w = (rng.random(512) * (rng.random(512) > 0.1)).astype(np.float32)
    want_plain, want_weighted = ggml_quantize(x, qtype), ggml_quantize(x, qtype, w)
    for level in fq.available_simd_levels():
        assert_same(quantize_at(x, qtype, level), want_plain, qtype, f"at {level}")
        assert_same(quantize_imatrix_at(x, qtype, w, level), want_weighted, qtype, f"weighted at {level}")


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0", "MXFP4"])
def test_ternary_and_mxfp4_mixed_sub_blocks_at_every_level_match_ggml(qtype, simd_level):
    for rows, k in [(1, 256), (5, 768), (3, 4096 + 256)]:
        rng = np.random.default_rng(rows * 7919 + k)
        x = mixed_rows(rng, rows, k)
        # quarter steps: ties of the ternary and E2M1 grids
        x[0, :128] = rng.integers(-16, 17, size=128) / 4.0
        assert_same(quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype), qtype, f"{rows}x{k} at {simd_level}")
