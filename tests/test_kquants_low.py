"""Q2_K and Q3_K: bytes against ggml's ``ggml_quantize_chunk`` (with and without an importance
matrix), bits against ggml's ``to_float`` and the numpy references in ``reference/kquants_low.py``,
then the error properties the formats promise."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastquant as fq
from conftest import BF16, bits, dequantize_at, first_diff, ggml_dequantize, ggml_quantize, qtype_id, quantize_at
from reference import kquants_low as ref
from reference import legacy as legacy_ref

pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")

QTYPES = ["Q2_K", "Q3_K"]
QK_K = 256
ROWS, K = 4, 2 * QK_K  # 8 super-blocks per case, two per row (the imatrix path works on rows)


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


# ================================================================================================
# Test data: every case is [ROWS, K] float32, deterministic per case name
# ================================================================================================


def _normal(rng, scale=1.0):
    return rng.standard_normal((ROWS, K)) * scale


def _student_t_outliers(rng):
    # Heavy tails plus a few 100x outliers per row: the sub-block searches and the super-block
    # scale quantization see very uneven magnitudes.
    x = rng.standard_t(3, size=(ROWS, K))
    for r in range(ROWS):
        pos = rng.choice(K, size=4, replace=False)
        x[r, pos] *= 100 * rng.choice([-1, 1], size=4)
    return x


def _constant_rows(rng):
    vals = [1.5, -3.25, 1e-30, -65504.0]
    return np.repeat(np.array(vals)[:, None], K, axis=1)


def _subblock_magnitudes(rng):
    # Each 16-element sub-block at its own power of ten: most 4/6-bit sub-scales round to 0.
    x = rng.standard_normal((ROWS * K // 16, 16))
    x *= 10.0 ** rng.integers(-6, 4, size=x.shape[0])[:, None]
    return x.reshape(ROWS, K)


def _wide_exponents(rng):
    x = rng.standard_normal((ROWS * K // 16, 16))
    x *= 2.0 ** rng.integers(-140, 120, size=x.shape[0])[:, None]
    return x.reshape(ROWS, K)


def _sparse(rng):
    x = np.zeros((ROWS, K))
    mask = rng.random((ROWS, K)) < 0.05
    x[mask] = rng.standard_normal(mask.sum()) * 3
    return x


def _one_sign(sign):
    return lambda rng: sign * np.abs(_normal(rng)) + sign * 0.5  # min > 0 (or max < 0) everywhere


def _small_integers(rng):
    # Values on a coarse grid: many exact ties in the searches' rounding.
    return rng.integers(-4, 4, size=(ROWS, K)).astype(np.float64)


def _ramp(rng):
    return np.tile(0.1 + 2 * np.cos(np.arange(K)), (ROWS, 1))  # ggml's test-quantize-fns data


def _signed_zeros(rng):
    x = rng.choice([-0.0, 0.0], size=(ROWS, K))
    x[1, 40] = 1.0
    return x


FINITE_CASES = {
    "normal": lambda rng: _normal(rng),
    "student_t_outliers": _student_t_outliers,
    "zeros": lambda rng: np.zeros((ROWS, K)),
    "signed_zeros": _signed_zeros,
    "constant_rows": _constant_rows,
    "tiny_1e-30": lambda rng: _normal(rng, 1e-30),
    "huge_1e30": lambda rng: _normal(rng, 1e30),
    "subnormal": lambda rng: _normal(rng, 1e-40),
    "beyond_fp16": lambda rng: _normal(rng, 1e6),
    "subblock_magnitudes": _subblock_magnitudes,
    "wide_exponents": _wide_exponents,
    "sparse": _sparse,
    "all_positive": _one_sign(1.0),
    "all_negative": _one_sign(-1.0),
    "small_integers": _small_integers,
    "ramp": _ramp,
}


def _nonfinite(rng):
    x = rng.standard_normal((ROWS * K // 16, 16)).astype(np.float32)
    cases = [
        lambda b: b.__setitem__(0, np.nan),
        lambda b: b.__setitem__(15, np.nan),
        lambda b: b.__setitem__(slice(None), np.nan),
        lambda b: b.__setitem__(5, np.inf),
        lambda b: b.__setitem__(5, -np.inf),
        lambda b: b.__setitem__(slice(None), np.inf),
        lambda b: b.__setitem__([3, 9], [np.inf, -np.inf]),
        lambda b: b.__setitem__([3, 9], [np.nan, np.inf]),
        lambda b: None,
    ]
    for i, blk in enumerate(x):
        if i % 3 == 0:  # leave most sub-blocks finite so super-blocks mix both
            cases[(i // 3) % len(cases)](blk)
    return x.reshape(ROWS, K)


def make_case(name: str) -> np.ndarray:
    maker = FINITE_CASES.get(name, _nonfinite)
    with np.errstate(over="ignore"):
        return np.asarray(maker(_rng(name)), dtype=np.float32)


def _imatrices(k: int):
    """(name, weights) pairs of length ``k``: what llama-quantize passes (positive sums of squared
    activations), with zeros, and with a huge dynamic range."""
    rng = _rng(f"imatrix{k}")
    with_zeros = rng.random(k).astype(np.float32)
    with_zeros[rng.random(k) < 0.25] = 0
    yield "positive", (rng.random(k) + 0.01).astype(np.float32)
    yield "some_zeros", with_zeros
    yield "all_zeros", np.zeros(k, dtype=np.float32)
    yield "lognormal", np.exp(rng.standard_normal(k) * 3).astype(np.float32)
    yield "ones", np.ones(k, dtype=np.float32)


def _ggml_imatrix(x: np.ndarray, qtype: str, w: np.ndarray) -> np.ndarray:
    from reference import ggml_oracle

    return ggml_oracle.quantize(x.reshape(-1, x.shape[-1]), qtype_id(qtype), w)


def _assert_bytes(got, expected, qtype, what=""):
    assert got.dtype == np.uint8 and expected.dtype == np.uint8
    assert np.array_equal(got, expected), f"{qtype} {what}: {first_diff(got, expected, qtype)}"


# ================================================================================================
# (1) quantize: byte-exact against ggml
# ================================================================================================


@pytest.mark.parametrize("case", list(FINITE_CASES))
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_matches_ggml(qtype, case, simd_level):
    x = make_case(case)
    _assert_bytes(quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype), qtype, f"{case} at {simd_level}")


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_nonfinite_matches_ggml_with_check_finite_false(qtype):
    x = make_case("nonfinite")
    _assert_bytes(quantize_at(x, qtype, check_finite=False), ggml_quantize(x, qtype), qtype, "nonfinite")


@pytest.mark.parametrize("case", list(FINITE_CASES))
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_with_imatrix_matches_ggml(qtype, case):
    x = make_case(case)
    for wname, w in _imatrices(K):
        got = fq.quantize(x, qtype, imatrix=w).data
        _assert_bytes(got, _ggml_imatrix(x, qtype, w), qtype, f"{case} with {wname} imatrix")


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_with_imatrix_nonfinite_matches_ggml(qtype):
    x = make_case("nonfinite")
    for wname, w in _imatrices(K):
        got = fq.quantize(x, qtype, imatrix=w, check_finite=False).data
        _assert_bytes(got, _ggml_imatrix(x, qtype, w), qtype, f"nonfinite with {wname} imatrix")


@pytest.mark.parametrize("qtype", QTYPES)
def test_imatrix_changes_the_bytes(qtype):
    # The weighted path is a different algorithm (make_qkx3 / make_qx + make_qp_quants), so
    # fastquant must not fall back to the plain path when given weights.
    x = make_case("normal")
    w = next(w for name, w in _imatrices(K) if name == "lognormal")
    assert not np.array_equal(fq.quantize(x, qtype, imatrix=w).data, fq.quantize(x, qtype).data)


@pytest.mark.parametrize("shape", [(1, 256), (3, 256), (1, 256 * 17), (2, 4096 + 256)])
@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_shapes_match_ggml(qtype, shape):
    rng = np.random.default_rng(shape[0] * 100003 + shape[1])
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::37] *= 50
    _assert_bytes(quantize_at(x, qtype), ggml_quantize(x, qtype), qtype, f"shape {shape}")
    w = (rng.random(shape[1]) + 0.1).astype(np.float32)
    _assert_bytes(fq.quantize(x, qtype, imatrix=w).data, _ggml_imatrix(x, qtype, w), qtype, f"imatrix {shape}")


@pytest.mark.parametrize("qtype", QTYPES)
def test_quantize_large_multithreaded_input_matches_ggml(qtype):
    # ~1M elements: split over the thread pool in both paths.
    rng = np.random.default_rng(11)
    x = (rng.standard_t(4, size=(256, 4096)) * 0.02).astype(np.float32)
    _assert_bytes(quantize_at(x, qtype), ggml_quantize(x, qtype), qtype, "large input")
    w = np.exp(rng.standard_normal(4096)).astype(np.float32)
    _assert_bytes(fq.quantize(x, qtype, imatrix=w).data, _ggml_imatrix(x, qtype, w), qtype, "large input, imatrix")


@pytest.mark.parametrize("qtype", QTYPES)
def test_16bit_input_gives_the_bytes_of_its_float32_upcast(qtype):
    rng = np.random.default_rng(16)
    for dt in [np.dtype(np.float16), BF16]:
        x = (rng.standard_normal((4, K)) * 3).astype(dt)
        _assert_bytes(quantize_at(x, qtype), ggml_quantize(x.astype(np.float32), qtype), qtype, f"{dt} input")
        w = (rng.random(K) + 0.1).astype(np.float32)
        got = fq.quantize(x, qtype, imatrix=w).data
        _assert_bytes(got, _ggml_imatrix(x.astype(np.float32), qtype, w), qtype, f"{dt} input, imatrix")


# ================================================================================================
# (2) dequantize: bit-exact against ggml's to_float and the numpy reference
# ================================================================================================

FP16_SPECIALS = np.array([0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01, 0x0000, 0x8000, 0x0001, 0x7BFF], dtype="<u2")
FP16_OFFSETS = {"Q2_K": [80, 82], "Q3_K": [108]}


def _random_blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    """Random bytes, with the fp16 fields of some blocks forced to NaN, Inf, zero and subnormal."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n_blocks, ref.BLOCK_BYTES[qtype]), dtype=np.uint8)
    for off in FP16_OFFSETS[qtype]:
        rows = rng.choice(n_blocks, size=n_blocks // 4, replace=False)
        data[rows, off : off + 2] = rng.choice(FP16_SPECIALS, size=rows.size).view(np.uint8).reshape(-1, 2)
    return data.reshape(-1)


def _dequant_inputs(qtype: str):
    """(name, data, number of elements): ggml-quantized data of every case, and random bytes."""
    x = np.concatenate([make_case(c) for c in FINITE_CASES] + [make_case("nonfinite")])
    yield "quantized", ggml_quantize(x, qtype), x.size
    w = next(w for name, w in _imatrices(K) if name == "some_zeros")
    yield "quantized_imatrix", _ggml_imatrix(x, qtype, w), x.size
    n_blocks = 4096
    yield "random_bytes", _random_blocks(qtype, n_blocks, seed=qtype_id(qtype)), n_blocks * QK_K


@pytest.mark.parametrize("qtype", QTYPES)
def test_dequantize_matches_ggml_to_float_bits(qtype, simd_level):
    for name, data, n in _dequant_inputs(qtype):
        expected = ggml_dequantize(data, qtype, n)
        got = dequantize_at(data, qtype, n, n, simd_level)
        assert np.array_equal(bits(got), bits(expected)), f"{qtype} {name}: " + first_diff(bits(got), bits(expected))


@pytest.mark.parametrize("qtype", QTYPES)
def test_numpy_reference_matches_ggml_to_float_bits(qtype):
    for name, data, n in _dequant_inputs(qtype):
        with np.errstate(all="ignore"):
            got = ref.DEQUANTIZE[qtype](data)
        expected = ggml_dequantize(data, qtype, n)
        assert np.array_equal(bits(got), bits(expected)), f"{qtype} {name}: " + first_diff(bits(got), bits(expected))


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("out_dtype", ["float16", "bfloat16"])
def test_dequantize_to_16bit_is_the_float32_result_rounded_as_ggml_rounds(qtype, out_dtype):
    dt = np.dtype(np.float16) if out_dtype == "float16" else BF16
    narrow = legacy_ref.fp32_to_fp16_bits if out_dtype == "float16" else legacy_ref.fp32_to_bf16_bits
    for name, data, n in _dequant_inputs(qtype):
        got = dequantize_at(data, qtype, n, n, dtype=dt)
        expected = narrow(ggml_dequantize(data, qtype, n))
        assert np.array_equal(bits(got), expected), f"{qtype}->{out_dtype} {name}: " + first_diff(bits(got), expected)


@pytest.mark.parametrize("qtype", QTYPES)
def test_public_dequantize_round_trip_shape_and_values(qtype):
    x = make_case("normal")
    qt = fq.quantize(x, qtype)
    assert qt.qtype == qtype and qt.shape == x.shape and qt.data.nbytes == x.size // QK_K * ref.BLOCK_BYTES[qtype]
    y = fq.dequantize(qt)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.array_equal(bits(y.reshape(-1)), bits(ref.DEQUANTIZE[qtype](qt.data)))


# ================================================================================================
# (3) hypothesis: arbitrary finite rows and arbitrary blocks
# ================================================================================================

_finite_f32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def _rows(draw):
    n_rows = draw(st.integers(1, 3))
    scale = draw(st.sampled_from([1e-38, 1e-20, 1e-3, 1.0, 1e4, 1e20, 1e37]))
    x = draw(hnp.arrays(np.float32, (n_rows, QK_K), elements=st.floats(-4, 4, width=32) | _finite_f32))
    with np.errstate(over="ignore"):
        x = (x.astype(np.float64) * scale).astype(np.float32)
    return np.where(np.isfinite(x), x, 0).astype(np.float32)


@pytest.mark.parametrize("qtype", QTYPES)
@given(x=_rows(), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_quantize_matches_ggml(qtype, x, seed):
    _assert_bytes(quantize_at(x, qtype), ggml_quantize(x, qtype), qtype, "hypothesis rows")
    w = np.random.default_rng(seed).random(QK_K).astype(np.float32)
    _assert_bytes(fq.quantize(x, qtype, imatrix=w).data, _ggml_imatrix(x, qtype, w), qtype, "hypothesis imatrix")


@pytest.mark.parametrize("qtype", QTYPES)
@given(data=st.data())
def test_hypothesis_dequantize_matches_reference_and_ggml(qtype, data):
    n_blocks = data.draw(st.integers(1, 4))
    raw = data.draw(hnp.arrays(np.uint8, n_blocks * ref.BLOCK_BYTES[qtype]))
    n = n_blocks * QK_K
    got = dequantize_at(raw, qtype, n, n)
    with np.errstate(all="ignore"):
        expected = ref.DEQUANTIZE[qtype](raw)
    assert np.array_equal(bits(got), bits(expected))
    assert np.array_equal(bits(got), bits(ggml_dequantize(raw, qtype, n)))


@pytest.mark.parametrize("qtype", QTYPES)
@given(x=_rows())
def test_hypothesis_round_trip_error_is_bounded_by_the_row_range(qtype, x):
    # Every reconstructed value lies within the block's range widened by its own width (the codes
    # and the 4/6-bit sub-scales cannot overshoot further) plus what fp16 scales cannot resolve
    # (a block of tiny values decodes to zeros), and is finite when the range fits in fp16.
    qt = fq.quantize(x, qtype)
    y = fq.dequantize(qt).astype(np.float64).reshape(-1, QK_K)
    b = x.astype(np.float64).reshape(-1, QK_K)
    lo, hi = b.min(axis=1), b.max(axis=1)
    amax = np.maximum(np.abs(lo), np.abs(hi))
    fits = amax < 30000
    width = hi - lo + amax * 1e-2 + 1e-4
    assert np.all(np.isfinite(y[fits]))
    assert np.all(y[fits] >= (lo - width)[fits, None])
    assert np.all(y[fits] <= (hi + width)[fits, None])


# ================================================================================================
# (4) error properties
# ================================================================================================


def _rmse(x: np.ndarray, qtype: str, imatrix=None) -> float:
    y = fq.dequantize(fq.quantize(x, qtype, imatrix=imatrix))
    return float(np.sqrt(np.mean((y.astype(np.float64) - x) ** 2)))


def test_q3_k_is_more_accurate_than_q2_k():
    for case in ["normal", "student_t_outliers", "ramp"]:
        x = make_case(case)
        assert _rmse(x, "Q3_K") < _rmse(x, "Q2_K"), case
    x = np.random.default_rng(21).standard_normal((64, 4096)).astype(np.float32)
    e2, e3 = _rmse(x, "Q2_K"), _rmse(x, "Q3_K")
    assert e3 < e2
    # Rough sizes on unit Gaussians (llama.cpp's tables: Q2_K ~0.3 rms, Q3_K ~0.17): catches a
    # broken search that still gives ggml-like layouts.
    assert 0.2 < e2 < 0.45 and 0.1 < e3 < 0.25, (e2, e3)


@pytest.mark.parametrize("qtype", QTYPES)
def test_imatrix_lowers_the_weighted_error(qtype):
    # Quantizing with importance weights must not do worse on the weighted error than ignoring them
    # (summed over many rows: the searches are heuristics, not exact optima per block).
    rng = np.random.default_rng(22)
    x = rng.standard_normal((64, 2048)).astype(np.float32)
    w = np.exp(rng.standard_normal(2048) * 2).astype(np.float32)

    def weighted(imatrix):
        y = fq.dequantize(fq.quantize(x, qtype, imatrix=imatrix)).astype(np.float64)
        return float(np.sum(w * (y - x) ** 2))
    assert weighted(w) <= weighted(None)
