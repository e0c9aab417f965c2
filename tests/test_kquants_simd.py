"""The Q2_K..Q6_K quantize kernels (AVX2, AVX-512: one sub-block's scale search per SIMD
lane) against ggml's ``ggml_quantize_chunk`` at every SIMD level this CPU has, on every data set
of ``reference/kquant_data.py`` and on rows whose sub-blocks each have their own scale."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import first_diff, quantize_at
from reference import kquant_data as data

pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")
from test_kquants import ggml_quantize  # noqa: E402

KQUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


@pytest.mark.parametrize("case", sorted(data.CASES))
@pytest.mark.parametrize("qtype", KQUANTS)
def test_every_data_set_at_every_level_matches_ggml(qtype, case, simd_level):
    x = data.case(case)
    got, want = quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype", KQUANTS)
def test_mixed_sub_block_scales_at_every_level_match_ggml(qtype, simd_level):
    # 16-element groups with scales from 1e-30 to 1e30, some all zero, some constant, some on the
    # rounding grid: neighbouring lanes of a vector take different branches of the search.
    rng = np.random.default_rng(20261123)
    groups = rng.standard_normal((8 * 256 // 16, 16)).astype(np.float32)
    scales = (10.0 ** rng.integers(-30, 31, size=(groups.shape[0], 1))).astype(np.float32)
    groups *= scales
    groups[::7] = 0.0
    groups[3::11] = scales[3::11]
    groups[5::13] = np.round(groups[5::13] * 2) / 2
    x = groups.reshape(8, 256)
    got, want = quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype)
    assert np.array_equal(got, want), first_diff(got, want, qtype)


@pytest.mark.parametrize("qtype", KQUANTS)
def test_long_rows_of_special_sub_blocks_at_every_level_match_ggml(qtype, simd_level):
    # Rows of 16 super-blocks (the Q3_K kernels search several super-blocks together, and leave
    # a tail), whose sub-blocks are heavy-tailed, one-outlier, all-zero, subnormal or huge.
    rng = np.random.default_rng(31)
    groups = rng.standard_t(3, size=(6 * 4096 // 16, 16))
    kind = rng.integers(0, 5, size=groups.shape[0])
    groups[kind == 1] *= 1e-3
    groups[kind == 1, rng.integers(0, 16)] = 50.0
    groups[kind == 2] = 0.0
    groups[kind == 3] *= 1e-42
    groups[kind == 4] *= 1e25
    x = groups.astype(np.float32).reshape(6, 4096)[:, : 4096 - 3 * 256]
    x = np.ascontiguousarray(x)
    got, want = quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype)
    assert np.array_equal(got, want), first_diff(got, want, qtype)
