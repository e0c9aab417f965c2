"""IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 and MXFP4: bytes and bits against the real ggml
(``ggml_quantize_chunk`` with and without an importance matrix, ``to_float``), gguf-py and the numpy
dequantizers in ``reference/iquants.py``, at every SIMD level; then error and round-trip properties.

ggml's quantizers for these types depend only on the (super-)block: IQ4_NL/IQ4_XS use the weights
x² without an imatrix and ``qw * sqrt(sigma2 + x²)`` with one (sigma2 over the 32 or 256 elements of
the block), TQ1_0/TQ2_0/MXFP4 ignore the imatrix."""

from __future__ import annotations

import zlib

import fastquant as fq
import numpy as np
import pytest
from conftest import (
    SIMD_LEVELS,
    assert_dequantize_matches_gguf_py,
    bits,
    dequantize_at,
    first_diff,
    ggml_dequantize,
    qtype_id,
    quantize_at,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import ggml_oracle
from reference import iquants as ref

pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")

TYPES = ["IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4"]
IMATRIX_TYPES = ["IQ4_NL", "IQ4_XS"]
ROWS, K = 6, 512  # 2 super-blocks, 16 small blocks per row


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def ggml_quantize(x: np.ndarray, qtype: str, imatrix=None) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return ggml_oracle.quantize(x.reshape(-1, x.shape[-1]), qtype_id(qtype), imatrix)


def _assert_bytes(got, expected, qtype, what=""):
    assert got.dtype == np.uint8 and expected.dtype == np.uint8
    assert np.array_equal(got, expected), f"{qtype} {what}: {first_diff(got, expected, qtype)}"


# ================================================================================================
# Test data: [ROWS, K] float32, deterministic per case name
# ================================================================================================


def _student_outliers(rng):
    # Heavy tails plus a few 100x outliers per row.
    x = rng.standard_t(3, size=(ROWS, K))
    for r in range(ROWS):
        pos = rng.choice(K, size=4, replace=False)
        x[r, pos] *= 100 * rng.choice([-1, 1], size=4)
    return x


def _constant_rows(rng):
    vals = [1.5, -3.25, 1e-3, -65504.0, 7e-8, 1e-30]
    return np.repeat(np.array(vals)[:, None], K, axis=1)


def _per_block_exponents(lo, hi, block=32):
    def make(rng):
        x = rng.standard_normal((ROWS * K // block, block))
        x *= 2.0 ** rng.integers(lo, hi, size=(x.shape[0], 1))
        return x.reshape(ROWS, K)

    return make


def _powers_of_two_edges(rng):
    # MXFP4's exponent is floor(log2f(amax)): block maxima exactly at, and one ulp either side of,
    # powers of two (where log2f may round up to the integer) across the whole float range.
    x = rng.uniform(-1, 1, size=(ROWS * K // 32, 32)).astype(np.float32)
    e = rng.integers(-130, 127, size=x.shape[0])
    p = (2.0 ** e.astype(np.float64)).astype(np.float32)
    kind = np.arange(x.shape[0]) % 4
    m = np.where(kind == 0, p, np.where(kind == 1, np.nextafter(p, np.float32(0)), np.nextafter(p, np.float32(np.inf))))
    m = np.where(kind == 3, np.float32(p) * np.float32(1.5), m)
    x = x * np.abs(m)[:, None] * np.float32(0.9)
    x[np.arange(x.shape[0]), rng.integers(0, 32, size=x.shape[0])] = m * rng.choice([-1, 1], size=x.shape[0])
    return x.reshape(ROWS, K)


def _ternary_ties(rng):
    # x/amax exactly +-0.5 (lroundf rounds away from zero) and values on the trits.
    x = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(ROWS, K)) * 4.0
    x[:, ::256] = 4.0
    return x


def _iq4_midpoints(rng):
    # Values on the kvalues grid and on midpoints between neighbours (best_index_int8's ties).
    kv = ref.KVALUES_IQ4NL.astype(np.float64)
    mids = (kv[:-1] + kv[1:]) / 2
    x = rng.choice(np.concatenate([kv, mids]), size=(ROWS, K))
    x[:, ::32] = 113.0
    return x


def _sparse(rng):
    x = np.zeros((ROWS, K))
    x[rng.random((ROWS, K)) < 0.05] = 1.0
    x *= rng.standard_normal((ROWS, K))
    return x


FINITE_CASES = {
    "normal": lambda rng: rng.standard_normal((ROWS, K)),
    "student_t_outliers": _student_outliers,
    "zeros": lambda rng: np.zeros((ROWS, K)),
    "signed_zeros": lambda rng: rng.choice([-0.0, 0.0], size=(ROWS, K)),
    "constant_rows": _constant_rows,
    "tiny_1e-30": lambda rng: rng.standard_normal((ROWS, K)) * 1e-30,
    "huge_1e30": lambda rng: rng.standard_normal((ROWS, K)) * 1e30,
    "subnormal": lambda rng: rng.standard_normal((ROWS, K)) * 1e-40,
    "near_group_max_eps": lambda rng: rng.standard_normal((ROWS, K)) * 1e-15,
    "wide_exponents_32": _per_block_exponents(-140, 120),
    "wide_exponents_256": _per_block_exponents(-140, 120, block=256),
    "fp16_edge": lambda rng: rng.standard_normal((ROWS, K)) * 65504 / 3,
    "powers_of_two_edges": _powers_of_two_edges,
    "ternary_ties": _ternary_ties,
    "iq4_midpoints": _iq4_midpoints,
    "alternating": lambda rng: np.tile((-1.0) ** np.arange(K) * (1 + np.arange(K) % 7), (ROWS, 1)),
    "sparse": _sparse,
    "ramp": lambda rng: np.tile(0.1 + 2 * np.cos(np.arange(K)), (ROWS, 1)),
}


def _nonfinite(rng):
    x = rng.standard_normal((ROWS * K // 32, 32)).astype(np.float32)
    specials = [np.nan, np.inf, -np.inf, np.float32(1e-42)]
    for i, blk in enumerate(x):
        kind = i % 8
        if kind < 3:
            blk[rng.integers(32)] = specials[kind]
        elif kind == 3:
            blk[:] = np.nan
        elif kind == 4:
            blk[:] = np.inf
        elif kind == 5:
            blk[[3, 9]] = [np.inf, np.nan]
        elif kind == 6:
            blk *= np.float32(3e38)  # overflows to inf in places
    return x.reshape(ROWS, K)


def make_case(name: str) -> np.ndarray:
    maker = FINITE_CASES.get(name) or {"nonfinite": _nonfinite}[name]
    with np.errstate(over="ignore"):
        return np.asarray(maker(_rng(name)), dtype=np.float32)


def _imatrix(kind: str, k: int = K, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "positive":
        return rng.uniform(0.01, 10.0, size=k).astype(np.float32)
    if kind == "some_zero":
        w = rng.exponential(1.0, size=k).astype(np.float32)
        w[rng.random(k) < 0.3] = 0
        w[:32] = 0  # a whole block of zero weights: sumq2 = 0, scale 0
        return w
    if kind == "ones":
        return np.ones(k, dtype=np.float32)
    if kind == "wide":
        return (2.0 ** rng.uniform(-20, 20, size=k)).astype(np.float32)
    raise ValueError(kind)


IMATRIX_KINDS = ["positive", "some_zero", "ones", "wide"]


# ================================================================================================
# (1) quantize: byte-exact against ggml_quantize_chunk
# ================================================================================================


@pytest.mark.parametrize("case", list(FINITE_CASES))
@pytest.mark.parametrize("qtype", TYPES)
def test_quantize_matches_ggml(qtype, case, simd_level):
    x = make_case(case)
    _assert_bytes(quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype), qtype, f"{case} at {simd_level}")


@pytest.mark.parametrize("qtype", TYPES)
def test_quantize_nonfinite_matches_ggml_with_check_finite_false(qtype, simd_level):
    x = make_case("nonfinite")
    got = quantize_at(x, qtype, simd_level, check_finite=False)
    with np.errstate(all="ignore"):
        _assert_bytes(got, ggml_quantize(x, qtype), qtype, f"nonfinite at {simd_level}")


@pytest.mark.parametrize("shape", [(1, 256), (3, 256), (2, 768), (5, 4096 + 256), (1, 256 * 33)])
@pytest.mark.parametrize("qtype", TYPES)
def test_quantize_shapes_and_threads_match_ggml(qtype, shape, simd_level):
    rng = np.random.default_rng(shape[0] * 100003 + shape[1])
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[::37] *= 50
    _assert_bytes(quantize_at(x, qtype, simd_level), ggml_quantize(x, qtype), qtype, f"shape {shape}")


@pytest.mark.parametrize("qtype", TYPES)
def test_large_multithreaded_input_matches_ggml(qtype):
    rng = np.random.default_rng(7)
    x = (rng.standard_t(4, size=(160, 4096 + 256)) * 0.02).astype(np.float32)
    _assert_bytes(fq.quantize(x, qtype).data, ggml_quantize(x, qtype), qtype, "large input")


@pytest.mark.parametrize("qtype", TYPES)
def test_16bit_inputs_give_the_bytes_of_their_float32_upcast(qtype):
    rng = np.random.default_rng(16)
    h = rng.integers(0, 1 << 16, size=(4, K), dtype=np.uint16)
    h = np.where((h & 0x7C00) == 0x7C00, h & 0x83FF, h)
    x16 = h.view(np.float16)
    x16[0] = rng.standard_normal(K).astype(np.float16)
    _assert_bytes(quantize_at(x16, qtype), ggml_quantize(x16.astype(np.float32), qtype), qtype, "float16")


# ---- with an importance matrix -----------------------------------------------------------------


@pytest.mark.parametrize("kind", IMATRIX_KINDS)
@pytest.mark.parametrize("case", ["normal", "student_t_outliers", "zeros", "constant_rows", "tiny_1e-30",
                                  "huge_1e30", "wide_exponents_32", "iq4_midpoints", "sparse"])
@pytest.mark.parametrize("qtype", IMATRIX_TYPES)
def test_imatrix_quantize_matches_ggml(qtype, case, kind):
    x = make_case(case)
    w = _imatrix(kind, seed=zlib.crc32(case.encode()))
    got = fq.quantize(x, qtype, imatrix=w).data
    _assert_bytes(got, ggml_quantize(x, qtype, w), qtype, f"{case} with {kind} imatrix")


@pytest.mark.parametrize("qtype", IMATRIX_TYPES)
def test_imatrix_changes_the_bytes(qtype):
    # The weighted path is really taken (ggml's bytes differ between NULL and an imatrix).
    x = make_case("student_t_outliers")
    w = _imatrix("positive")
    with_w = fq.quantize(x, qtype, imatrix=w).data
    assert not np.array_equal(with_w, fq.quantize(x, qtype).data)
    _assert_bytes(with_w, ggml_quantize(x, qtype, w), qtype, "imatrix")


@pytest.mark.parametrize("qtype", IMATRIX_TYPES)
def test_imatrix_nonfinite_data_and_weights_match_ggml(qtype):
    x = make_case("nonfinite")
    rng = np.random.default_rng(9)
    for w in [_imatrix("positive"), np.where(rng.random(K) < 0.1, np.inf, 1.0).astype(np.float32)]:
        with np.errstate(all="ignore"):
            got = fq.quantize(x, qtype, imatrix=w, check_finite=False).data
            _assert_bytes(got, ggml_quantize(x, qtype, w), qtype, "nonfinite with imatrix")


@pytest.mark.parametrize("qtype", IMATRIX_TYPES)
def test_imatrix_large_multithreaded_input_matches_ggml(qtype):
    rng = np.random.default_rng(8)
    x = (rng.standard_t(4, size=(96, 4096 + 256)) * 0.02).astype(np.float32)
    w = rng.exponential(1.0, size=x.shape[1]).astype(np.float32)
    _assert_bytes(fq.quantize(x, qtype, imatrix=w).data, ggml_quantize(x, qtype, w), qtype, "large with imatrix")


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0", "MXFP4"])
def test_types_that_ignore_the_imatrix_give_ggmls_bytes_with_one(qtype):
    x = make_case("student_t_outliers")
    w = _imatrix("positive")
    expected = ggml_quantize(x, qtype, w)
    _assert_bytes(expected, ggml_quantize(x, qtype), qtype, "ggml ignores the imatrix")
    _assert_bytes(fq.quantize(x, qtype, imatrix=w).data, expected, qtype, "imatrix ignored")


# ================================================================================================
# (2) dequantize: bit-exact against ggml's to_float and the numpy references
# ================================================================================================


def _random_blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    """Random bytes; the fp16 scale of a quarter of the blocks forced to NaN/Inf/0/subnormal/max."""
    t = fq.QuantType(qtype)
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n_blocks, t.type_size), dtype=np.uint8)
    rows = rng.choice(n_blocks, size=n_blocks // 4, replace=False)
    if qtype == "MXFP4":
        data[rows, 0] = rng.choice([0, 1, 2, 127, 128, 254, 255], size=rows.size)
    else:
        off = {"IQ4_NL": 0, "IQ4_XS": 0, "TQ1_0": 52, "TQ2_0": 64}[qtype]
        specials = np.array([0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01, 0x0000, 0x8000, 0x0001, 0x7BFF], dtype="<u2")
        data[rows, off : off + 2] = rng.choice(specials, size=rows.size).view(np.uint8).reshape(-1, 2)
    return data.reshape(-1)


def _dequant_inputs(qtype: str):
    t = fq.QuantType(qtype)
    x = np.concatenate([make_case(c) for c in FINITE_CASES] + [make_case("nonfinite")])
    with np.errstate(all="ignore"):
        yield "quantized", ggml_quantize(x, qtype), x.size
    n_blocks = 4096 if t.block_size == 32 else 512
    yield "random_bytes", _random_blocks(qtype, n_blocks, seed=t.id), n_blocks * t.block_size
    if qtype == "MXFP4":
        # Every exponent byte with every code.
        e = np.repeat(np.arange(256, dtype=np.uint8), 2)
        qs = np.tile(np.arange(256, dtype=np.uint8).reshape(16, 16), (32, 1))
        yield "every_exponent", np.concatenate([e[:, None], qs], axis=1).reshape(-1), 512 * 32
    else:
        # Every fp16 scale once, random codes.
        h = np.arange(1 << 16, dtype="<u2")
        data = np.random.default_rng(3).integers(0, 256, size=(1 << 16, t.type_size), dtype=np.uint8)
        off = {"IQ4_NL": 0, "IQ4_XS": 0, "TQ1_0": 52, "TQ2_0": 64}[qtype]
        data[:, off : off + 2] = h.view(np.uint8).reshape(-1, 2)
        yield "every_fp16_scale", data.reshape(-1), (1 << 16) * t.block_size


@pytest.mark.parametrize("qtype", TYPES)
def test_dequantize_matches_ggml_to_float_bits(qtype, simd_level):
    for name, data, n in _dequant_inputs(qtype):
        expected = ggml_dequantize(data, qtype, n)
        got = dequantize_at(data, qtype, n, n, simd_level)
        assert np.array_equal(bits(got), bits(expected)), f"{qtype} {name}: " + first_diff(bits(got), bits(expected))


@pytest.mark.parametrize("qtype", TYPES)
def test_reference_dequantize_matches_ggml_to_float(qtype):
    for name, data, n in _dequant_inputs(qtype):
        got = ref.dequantize(data, qtype)
        expected = ggml_dequantize(data, qtype, n)
        assert np.array_equal(bits(got), bits(expected)), f"reference {qtype} {name}: " + first_diff(
            bits(got), bits(expected)
        )


@pytest.mark.parametrize("qtype", TYPES)
@given(data=st.data())
def test_dequantize_matches_reference(qtype, data):
    t = fq.QuantType(qtype)
    n_blocks = data.draw(st.integers(1, 12), label="blocks")
    raw = data.draw(hnp.arrays(np.uint8, n_blocks * t.type_size), label="bytes")
    n = n_blocks * t.block_size
    expected = ref.dequantize(raw, qtype)
    for level in SIMD_LEVELS:
        got = dequantize_at(raw, qtype, n, n, level)
        assert np.array_equal(bits(got), bits(expected)), f"{qtype} at {level}: " + first_diff(bits(got), bits(expected))


# ================================================================================================
# (3) gguf-py
# ================================================================================================

# Finite data with scales well inside fp16 (gguf-py's float -> int casts of inf are undefined).
GGUF_CASES = ["normal", "student_t_outliers", "zeros", "constant_rows", "ternary_ties", "alternating", "sparse", "ramp"]


def _gguf():
    gguf = pytest.importorskip("gguf")
    import gguf.quants

    return gguf


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0", "MXFP4"])
def test_quantize_matches_gguf_py(qtype):
    gguf = _gguf()
    x = np.concatenate([make_case(c) for c in GGUF_CASES])
    expected = np.asarray(gguf.quants.quantize(x, gguf.GGMLQuantizationType[qtype]))
    expected = np.ascontiguousarray(expected).reshape(-1).view(np.uint8)
    _assert_bytes(fq.quantize(x, qtype).data, expected, qtype, "vs gguf-py")


@pytest.mark.parametrize("qtype", TYPES)
def test_dequantize_matches_gguf_py(qtype):
    _gguf()
    t = fq.QuantType(qtype)
    x = np.concatenate([make_case(c) for c in GGUF_CASES])
    samples = [("quantized", ggml_quantize(x, qtype), x.shape)]
    samples.append(("random_bytes", _random_blocks(qtype, 512, 11), (16, 512 * t.block_size // 16)))
    for name, data, shape in samples:
        assert_dequantize_matches_gguf_py(data, qtype, shape, name)


# ================================================================================================
# (4) hypothesis: any data, against ggml directly
# ================================================================================================


def _shapes(max_blocks=4):
    return st.tuples(st.integers(1, 3), st.integers(1, max_blocks)).map(lambda t: (t[0], 256 * t[1]))


@st.composite
def scaled_normal_arrays(draw, min_exp=-149, max_exp=120):
    shape = draw(_shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    e = draw(st.integers(min_exp, max_exp))
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    with np.errstate(under="ignore", over="ignore"):
        return x * np.float32(2.0**e)


FINITE_F32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)
ANY_F32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)
finite_arrays = st.one_of(hnp.arrays(np.float32, _shapes(2), elements=FINITE_F32), scaled_normal_arrays())


@pytest.mark.parametrize("qtype", TYPES)
@given(x=finite_arrays)
def test_quantize_matches_ggml_on_any_finite_data(qtype, x):
    with np.errstate(all="ignore"):
        expected = ggml_quantize(x, qtype)
    for level in SIMD_LEVELS:
        _assert_bytes(quantize_at(x, qtype, level), expected, qtype, f"at {level}, shape {x.shape}")


@pytest.mark.parametrize("qtype", TYPES)
@given(x=hnp.arrays(np.float32, _shapes(2), elements=ANY_F32))
def test_quantize_matches_ggml_on_any_data(qtype, x):
    with np.errstate(all="ignore"):
        expected = ggml_quantize(x, qtype)
    _assert_bytes(quantize_at(x, qtype, check_finite=False), expected, qtype, f"shape {x.shape}")


@pytest.mark.parametrize("qtype", IMATRIX_TYPES)
@given(x=finite_arrays, data=st.data())
def test_imatrix_quantize_matches_ggml_on_any_finite_data(qtype, x, data):
    w = data.draw(
        hnp.arrays(np.float32, x.shape[-1], elements=st.floats(0, 1e6, width=32, allow_subnormal=True)), label="w"
    )
    with np.errstate(all="ignore"):
        expected = ggml_quantize(x, qtype, w)
        got = fq.quantize(x, qtype, imatrix=w).data
    _assert_bytes(got, expected, qtype, f"shape {x.shape}")


# ================================================================================================
# (5) properties
# ================================================================================================


def _round_trip(x, qtype):
    data = fq.quantize(x, qtype).data
    return data, dequantize_at(data, qtype, x.shape[-1], x.size).astype(np.float64).reshape(x.shape)


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0"])
@given(x=scaled_normal_arrays(min_exp=-10, max_exp=10))
def test_ternary_error_is_at_most_half_the_scale(qtype, x):
    # t = round(x/amax) in {-1, 0, 1}: |x - t*amax| <= amax/2, plus the fp16 rounding of amax.
    data, y = _round_trip(x, qtype)
    amax = np.abs(x.reshape(-1, 256)).max(axis=1).astype(np.float64)
    d = ref.block_scales(data, qtype).astype(np.float64)
    bound = amax / 2 * (1 + 2.0**-20) + np.abs(d - amax)
    err = np.abs(x.reshape(-1, 256).astype(np.float64) - y.reshape(-1, 256))
    assert np.all(err <= bound[:, None]), float((err / bound[:, None]).max())


@given(x=scaled_normal_arrays(min_exp=-100, max_exp=100))
def test_mxfp4_error_is_within_half_a_grid_step(x):
    # d = 2^(floor(log2 amax) - 3); the doubled E2M1 grid 0..12 (steps <= 4) times d covers
    # |x| <= 12 d with error <= 2 d; beyond 12 d (up to amax < 16 d) the top value is taken.
    data, y = _round_trip(x, "MXFP4")
    d = ref.block_scales(data, "MXFP4").astype(np.float64)[:, None]
    xb = np.abs(x.reshape(-1, 32).astype(np.float64))
    bound = np.maximum(2 * d, xb - 12 * d) * (1 + 2.0**-20)
    err = np.abs(x.reshape(-1, 32).astype(np.float64) - y.reshape(-1, 32))
    assert np.all(err <= bound)


@pytest.mark.parametrize("qtype", ["IQ4_NL", "IQ4_XS"])
def test_iq4_error_on_normal_data_is_that_of_a_good_4_bit_code(qtype):
    x = np.random.default_rng(5).standard_normal((64, 1024)).astype(np.float32)
    _, y = _round_trip(x, qtype)
    rel = np.sqrt(np.mean((x - y) ** 2) / np.mean(x.astype(np.float64) ** 2))
    assert rel < 0.11, rel  # ~0.09 for both; Q4_0 gives ~0.12 on the same data


@pytest.mark.parametrize("qtype", ["IQ4_NL", "IQ4_XS"])
def test_imatrix_lowers_the_weighted_error(qtype):
    # Weights that favour a quarter of the columns: the importance-weighted error drops.
    rng = np.random.default_rng(6)
    x = rng.standard_t(5, size=(64, 1024)).astype(np.float32)
    w = np.where(rng.random(1024) < 0.25, 100.0, 1.0).astype(np.float32)
    plain = dequantize_at(fq.quantize(x, qtype).data, qtype, 1024, x.size).reshape(x.shape)
    weighted = dequantize_at(fq.quantize(x, qtype, imatrix=w).data, qtype, 1024, x.size).reshape(x.shape)
    err = lambda y: float(np.sum(w * (x.astype(np.float64) - y) ** 2))  # noqa: E731
    assert err(weighted) < err(plain)


@pytest.mark.parametrize("qtype", TYPES)
def test_requantizing_dequantized_data_is_stable(qtype):
    # Values on a block's own grid come back on the same grid: a second round trip changes
    # nothing in the values (bytes may differ only where two codes decode alike, e.g. MXFP4 +-0).
    x = make_case("normal")
    _, y1 = _round_trip(x, qtype)
    _, y2 = _round_trip(y1.astype(np.float32), qtype)
    if qtype in ("TQ1_0", "TQ2_0", "MXFP4"):
        assert np.array_equal(y1, y2)
    else:
        # IQ4's least-squares scale may move by fp16 rounding; the values stay close.
        assert np.max(np.abs(y1 - y2)) <= 0.05 * np.max(np.abs(y1))


def test_type_table_flags():
    for name in TYPES:
        t = fq.QuantType(name)
        assert t.can_quantize and t.can_dequantize, name
