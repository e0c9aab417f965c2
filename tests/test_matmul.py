"""fastquant.matmul / matmul_q4 / matmul_q8 / Linear: against numpy's float64 product of the
dequantized weight within the documented activation-rounding bound (reference/matmul.py), against
ggml's own mul_mat, scalar == every SIMD level bit for bit, and clear errors for bad input."""

from __future__ import annotations

import fastquant
import numpy as np
import pytest
from fastquant.errors import QuantTypeError, ShapeError, UnsupportedError
from hypothesis import given
from hypothesis import strategies as st

from conftest import BF16, SIMD_LEVELS
from reference.matmul import error_bound, reference_matmul

CANDIDATES = [
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4",
    "F32", "F16", "BF16",
]  # fmt: skip


def _has_matmul(qtype: str) -> bool:
    block = fastquant.QuantType(qtype).block_size
    w = fastquant.quantize(np.zeros((1, block), np.float32), qtype)
    try:
        fastquant.matmul(np.zeros((1, block), np.float32), w)
    except UnsupportedError:
        return False
    return True


# Every weight type with a dot kernel in this build (the K-quants join as their kernels land).
TYPES = [t for t in CANDIDATES if _has_matmul(t)]


def _weight(rng, n, k, qtype, scale=1.0):
    wf = (rng.standard_normal((n, k)) * scale).astype(np.float32)
    q = fastquant.quantize(wf, qtype)
    return q, fastquant.dequantize(q)


def _check(y, x, wd, qtype):
    want = reference_matmul(x, wd)
    bound = error_bound(x, wd, qtype).reshape(want.shape)
    err = np.abs(y.astype(np.float64) - want)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), f"{qtype}: |error| {err[worst]} > bound {bound[worst]} at {worst}"


def test_the_types_that_must_have_kernels_do():
    for t in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "MXFP4", "F32", "F16", "BF16"]:
        assert t in TYPES


@pytest.mark.parametrize("qtype", TYPES)
@given(data=st.data())
def test_matches_float64_reference_within_the_bound(qtype, data):
    block = fastquant.QuantType(qtype).block_size
    block = max(block, 32)  # activations come in blocks of 32 (256 for the K-quants)
    k = block * data.draw(st.integers(1, 8 if block == 32 else 3), label="blocks")
    n = data.draw(st.integers(1, 41), label="N")
    lead = data.draw(
        st.one_of(
            st.tuples(st.integers(1, 600)),
            st.tuples(st.integers(1, 4), st.integers(1, 9)),
            st.just(()),
        ),
        label="batch shape",
    )
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    scale = data.draw(st.sampled_from([1.0, 1e-3, 50.0]), label="x scale")
    rng = np.random.default_rng(seed)
    q, wd = _weight(rng, n, k, qtype)
    x = (rng.standard_normal(lead + (k,)) * scale).astype(np.float32)
    y = fastquant.matmul(x, q)
    assert y.shape == lead + (n,) and y.dtype == np.float32
    _check(y.reshape(-1, n), x.reshape(-1, k), wd, qtype)


@pytest.mark.parametrize("rows", [1, 3, 8, 9, 64, 130])
@pytest.mark.parametrize("qtype", TYPES)
def test_every_simd_level_gives_the_scalar_bits(qtype, rows):
    rng = np.random.default_rng(rows)
    k = 256 * 3 + (32 * 3 if fastquant.QuantType(qtype).block_size <= 32 else 0)
    q, _ = _weight(rng, 37, k, qtype)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    x[0, :40] *= 100.0  # blocks with very different scales in one row
    want = fastquant.matmul(x, q, simd="scalar")
    for level in SIMD_LEVELS[1:]:
        got = fastquant.matmul(x, q, simd=level)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{qtype} at {level}"
    with fastquant.simd_override(SIMD_LEVELS[-1]):
        assert np.array_equal(fastquant.matmul(x, q), fastquant.matmul(x, q, simd=SIMD_LEVELS[-1]))


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_count_does_not_change_the_result(threads):
    rng = np.random.default_rng(7)
    q, _ = _weight(rng, 300, 512, "Q4_0")
    for rows in (1, 5, 40):
        x = rng.standard_normal((rows, 512)).astype(np.float32)
        fastquant.set_num_threads(1)
        want = fastquant.matmul(x, q)
        fastquant.set_num_threads(threads)
        assert np.array_equal(fastquant.matmul(x, q), want)


@pytest.mark.parametrize("qtype", TYPES)
@pytest.mark.parametrize("rows", [1, 7, 33])
def test_agrees_with_ggml_mul_mat(qtype, rows):
    pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")
    from reference.ggml_matmul import ggml_matmul

    rng = np.random.default_rng(rows * 31 + len(qtype))
    n, k = 45, 512
    q, wd = _weight(rng, n, k, qtype)
    x = rng.standard_normal((rows, k)).astype(np.float32)
    got = fastquant.matmul(x, q)
    theirs = ggml_matmul(x, q.data, q.qtype.id, n, k)
    _check(got, x, wd, qtype)
    # ggml rounds the activations of F16 / BF16 weights to fp16 / bf16 (its vec_dot_type), which
    # fastquant does not: that rounding (relative 2^-11 / 2^-8) joins the bound.
    bound = error_bound(x, wd, qtype)
    rel = {"F16": 2.0**-11, "BF16": 2.0**-8}.get(qtype, 0.0)
    bound = 2 * bound + rel * (np.abs(x).astype(np.float64) @ np.abs(wd).T)
    assert np.all(np.abs(got.astype(np.float64) - theirs) <= bound), qtype


def test_float16_and_bfloat16_activations_are_converted():
    rng = np.random.default_rng(3)
    q, _ = _weight(rng, 16, 64, "Q8_0")
    x = rng.standard_normal((4, 64)).astype(np.float32)
    for dt in (np.float16, BF16):
        xd = x.astype(dt)
        assert np.array_equal(fastquant.matmul(xd, q), fastquant.matmul(xd.astype(np.float32), q))


def test_float_weight_arrays_are_accepted():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((10, 48)).astype(np.float32)
    x = rng.standard_normal((3, 48)).astype(np.float32)
    for dt in (np.float32, np.float16, BF16):
        wd = w.astype(dt)
        y = fastquant.matmul(x, wd)
        _check(y, x, wd.astype(np.float32), {np.float32: "F32", np.float16: "F16"}.get(dt, "BF16"))


def test_matmul_q4_and_q8_quantize_float_weights_once_and_check_types():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((12, 64)).astype(np.float32)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    assert np.array_equal(fastquant.matmul_q4(x, w), fastquant.matmul(x, fastquant.quantize(w, "Q4_0")))
    assert np.array_equal(fastquant.matmul_q8(x, w), fastquant.matmul(x, fastquant.quantize(w, "Q8_0")))
    for four_bit in ("IQ4_NL", "MXFP4"):
        q4 = fastquant.quantize(w, four_bit)
        assert np.array_equal(fastquant.matmul_q4(x, q4), fastquant.matmul(x, q4))
    with pytest.raises(QuantTypeError, match="matmul_q4 needs a weight of type .*MXFP4.*got Q5_0"):
        fastquant.matmul_q4(x, fastquant.quantize(w, "Q5_0"))
    with pytest.raises(QuantTypeError, match="matmul_q8 needs a weight of type Q8_0.*got Q4_0"):
        fastquant.matmul_q8(x, fastquant.quantize(w, "Q4_0"))
    with pytest.raises(QuantTypeError, match="matmul_q4 needs"):
        fastquant.matmul_q4(x, fastquant.quantize(w, "Q8_0"))
    with pytest.raises(QuantTypeError):
        fastquant.matmul_q4(x, fastquant.quantize(w, "F16"))


def test_linear_reuses_its_buffer_and_adds_the_bias():
    rng = np.random.default_rng(6)
    w = rng.standard_normal((20, 96)).astype(np.float32)
    bias = rng.standard_normal(20).astype(np.float32)
    lin = fastquant.Linear(w, "Q8_0", bias=bias)
    assert (lin.in_features, lin.out_features) == (96, 20)
    x = rng.standard_normal((2, 96)).astype(np.float32)
    a = lin(x, copy=False)
    b = lin(x * 2, copy=False)
    assert a is b  # the same buffer, overwritten
    # The bias is added to the product the layer computes without one (its packed GEMM).
    product = fastquant.Linear(fastquant.quantize(w, "Q8_0"))(x * 2)
    assert np.array_equal(b, product + bias)
    _check(product, x * 2, fastquant.dequantize(lin.weight), "Q8_0")
    c = lin(x)
    assert c is not lin(x)
    with pytest.raises(ShapeError, match="bias must have shape"):
        fastquant.Linear(w, "Q8_0", bias=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="already quantized"):
        fastquant.Linear(fastquant.quantize(w, "Q8_0"), "Q4_0")


def test_out_parameter_and_empty_shapes():
    rng = np.random.default_rng(8)
    q, _ = _weight(rng, 6, 64, "Q4_0")
    x = rng.standard_normal((3, 64)).astype(np.float32)
    out = np.empty((3, 6), np.float32)
    assert fastquant.matmul(x, q, out=out) is not None
    assert np.array_equal(out, fastquant.matmul(x, q))
    assert fastquant.matmul(np.zeros((0, 64), np.float32), q).shape == (0, 6)
    with pytest.raises(ShapeError, match="out must be"):
        fastquant.matmul(x, q, out=np.empty((3, 5), np.float32))


def test_clear_errors():
    rng = np.random.default_rng(9)
    q, _ = _weight(rng, 6, 64, "Q4_0")
    with pytest.raises(ShapeError, match="x has 32 columns.*K = 64"):
        fastquant.matmul(np.zeros((2, 32), np.float32), q)
    with pytest.raises(TypeError, match="x must be float32, float16 or bfloat16"):
        fastquant.matmul(np.zeros((2, 64), np.int32), q)
    with pytest.raises(ShapeError, match="must be 2-D"):
        fastquant.matmul(np.zeros((2, 64), np.float32), fastquant.quantize(np.zeros((2, 3, 64), np.float32), "Q4_0"))
    with pytest.raises(ShapeError, match="at least one dimension"):
        fastquant.matmul(np.float32(1.0), q)
    with pytest.raises(TypeError, match="QuantizedTensor or a float numpy array"):
        fastquant.matmul(np.zeros((2, 64), np.float32), [[1.0] * 64])
    with pytest.raises(TypeError, match="a float weight must be float32"):
        fastquant.matmul(np.zeros((2, 64), np.float32), np.zeros((6, 64), np.int8))
    x = np.zeros((1, 256), np.float32)
    x[0, 17] = np.nan
    with pytest.raises(fastquant.NonFiniteError, match="17"):
        fastquant.matmul(x, fastquant.quantize(np.ones((2, 256), np.float32), "Q8_0"))
    iq2 = fastquant.QuantizedTensor(np.zeros(66, np.uint8), "IQ2_XXS", (1, 256))
    with pytest.raises(UnsupportedError, match="IQ2_XXS"):
        fastquant.matmul(np.zeros((1, 256), np.float32), iq2)
    with pytest.raises(fastquant.SimdError):
        fastquant.matmul(np.zeros((1, 64), np.float32), q, simd="nonsense")


# Types whose Linear runs on a packed copy of the weight (the packed GEMM's panels).
PACKED = [t for t in TYPES if fastquant.Linear(fastquant.quantize(np.zeros((1, 256), np.float32), t)).packed]


def test_the_legacy_types_that_must_pack_do():
    for t in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "MXFP4"]:
        assert t in PACKED


@pytest.mark.parametrize("qtype", PACKED)
@given(data=st.data())
def test_packed_linear_is_within_the_bound_and_the_same_at_every_level(qtype, data):
    block = max(32, fastquant.QuantType(qtype).block_size)
    k = block * data.draw(st.integers(1, 9 if block == 32 else 3), label="blocks")
    n = data.draw(st.integers(1, 70), label="N")
    rows = data.draw(st.sampled_from([1, 2, 5, 8, 9, 17, 66]), label="rows")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    scale = data.draw(st.sampled_from([1.0, 1e-3, 50.0]), label="x scale")
    rng = np.random.default_rng(seed)
    q, wd = _weight(rng, n, k, qtype)
    x = (rng.standard_normal((rows, k)) * scale).astype(np.float32)
    lin = fastquant.Linear(q)
    assert lin.packed
    want = lin(x, simd="scalar")
    _check(want, x, wd, qtype)
    for level in SIMD_LEVELS[1:]:
        got = lin(x, simd=level)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{qtype} packed Linear at {level}"
    # Panels larger than the blocks (Q5_0/Q5_1, the K-quants) are packed on the fly only from 32
    # rows (and a Linear runs one row of them on the blocks); the others from 5.
    expands = lin._packed_min_rows > 1
    if rows >= (32 if expands else 5):
        # matmul packs the same panels on the fly: the same bits.
        assert np.array_equal(fastquant.matmul(x, q, simd="scalar").view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("threads", [1, 2])
def test_packed_linear_thread_count_does_not_change_the_result(threads):
    rng = np.random.default_rng(11)
    q, _ = _weight(rng, 333, 1024, "Q4_0")
    lin = fastquant.Linear(q)
    for rows in (1, 8, 70):
        x = rng.standard_normal((rows, 1024)).astype(np.float32)
        fastquant.set_num_threads(1)
        want = lin(x)
        fastquant.set_num_threads(threads)
        assert np.array_equal(lin(x), want)


def test_packed_linear_errors():
    rng = np.random.default_rng(12)
    lin = fastquant.Linear(rng.standard_normal((6, 64)).astype(np.float32), "Q4_0")
    assert lin.packed
    with pytest.raises(ShapeError, match="x has 32 columns.*K = 64"):
        lin(np.zeros((2, 32), np.float32))
    x = np.zeros((2, 64), np.float32)
    x[1, 3] = np.inf
    with pytest.raises(fastquant.NonFiniteError, match="67"):
        lin(x)
    with pytest.raises(fastquant.SimdError):
        lin(np.zeros((1, 64), np.float32), simd="nonsense")


# ---- MXFP4 blocks at the ends of the E8M0 range --------------------------------------------------

KVALUES_MXFP4 = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], np.float64)

# (exponents the blocks take in turn, activation scale): e = 0 and 1 are the subnormal halved
# scales (d_w * d_a lands among the f32 subnormals); 254 is the largest a quantizer writes, with
# activations small enough for the products to stay finite but large enough for a normal fp16 d_a.
MXFP4_SPECIAL = [
    ([0, 1], 1.0),
    ([254, 240, 245], 1e-2),
    ([0, 254, 1, 127, 128], 1e-2),
    ([120, 127, 130], 1.0),
]


def _mxfp4_special_weight(rng, n, k, exponents):
    """MXFP4 rows [n, k] of random codes whose blocks take the exponents in turn, every seventh
    block with all-zero codes; returned with the float64 weight (2^(e - 128) * kvalue, computed in
    float64: 12 * 2^126 is past float32's range, where fastquant.dequantize gives inf)."""
    nb = k // 32
    blocks = np.zeros((n * nb, 17), np.uint8)
    blocks[:, 0] = np.resize(np.asarray(exponents, np.uint8), n * nb)
    blocks[:, 1:] = rng.integers(0, 256, (n * nb, 16), dtype=np.uint8)
    blocks[::7, 1:] = 0
    codes = np.concatenate([blocks[:, 1:] & 0x0F, blocks[:, 1:] >> 4], axis=1)
    wd = KVALUES_MXFP4[codes] * np.exp2(blocks[:, :1].astype(np.float64) - 128)
    q = fastquant.QuantizedTensor(blocks.reshape(-1), "MXFP4", (n, k))
    return q, wd.reshape(n, k)


def _mxfp4_special_case(exponents, x_scale, rows):
    rng = np.random.default_rng(rows + 7 * len(exponents))
    n, k = 37, 32 * 10
    q, wd = _mxfp4_special_weight(rng, n, k, exponents)
    x = (rng.standard_normal((rows, k)) * x_scale).astype(np.float32)
    return q, wd, x


@pytest.mark.parametrize("rows", [1, 3, 8, 17])
@pytest.mark.parametrize("exponents, x_scale", MXFP4_SPECIAL)
def test_mxfp4_special_blocks(exponents, x_scale, rows):
    q, wd, x = _mxfp4_special_case(exponents, x_scale, rows)
    want = fastquant.matmul(x, q, simd="scalar")
    assert np.all(np.isfinite(want))
    _check(want, x, wd, "MXFP4")
    for level in SIMD_LEVELS[1:]:
        got = fastquant.matmul(x, q, simd=level)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"MXFP4 at {level}"
    lin = fastquant.Linear(q)
    assert lin.packed
    packed = lin(x, simd="scalar")
    _check(packed, x, wd, "MXFP4")
    for level in SIMD_LEVELS[1:]:
        got = lin(x, simd=level)
        assert np.array_equal(got.view(np.uint32), packed.view(np.uint32)), f"MXFP4 packed Linear at {level}"


@pytest.mark.parametrize("rows", [1, 17])
@pytest.mark.parametrize("exponents, x_scale", MXFP4_SPECIAL)
def test_mxfp4_special_blocks_agree_with_ggml_mul_mat(exponents, x_scale, rows):
    pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")
    from reference.ggml_matmul import ggml_matmul

    q, wd, x = _mxfp4_special_case(exponents, x_scale, rows)
    got = fastquant.matmul(x, q)
    theirs = ggml_matmul(x, q.data, q.qtype.id, q.shape[0], q.shape[1])
    assert np.all(np.isfinite(theirs))
    assert np.all(np.abs(got.astype(np.float64) - theirs) <= 2 * error_bound(x, wd, "MXFP4"))
