"""F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1: bytes and bits against the real ggml,
gguf-py and the numpy references in ``reference/legacy.py``, at every SIMD level; then the
properties the formats guarantee (error bounds, round trips, dtypes, layouts)."""

from __future__ import annotations

import contextlib
import zlib

import fastquant as fq
import ml_dtypes
import numpy as np
import pytest
from conftest import (
    BF16,
    BLOCK_FORMATS,
    FORMATS,
    SIMD_LEVELS,
    assert_dequantize_matches_gguf_py,
    bits,
    dequantize_at,
    first_diff,
    ggml_dequantize,
    ggml_has_to_float,
    ggml_quantize,
    quantize_at,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import legacy as ref

pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")

F32_MAX = float(np.finfo(np.float32).max)
ROWS, K = 6, 256  # 48 blocks per case


def _f32(bits_u32) -> np.float32:
    return np.uint32(bits_u32).view(np.float32)


SNAN = _f32(0x7F800001)  # signalling NaN, smallest payload
NAN_PAYLOAD = _f32(0xFFC12345)  # quiet negative NaN with a payload


# ================================================================================================
# Test data: every case is [ROWS, K] float32, deterministic per case name
# ================================================================================================


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _normal(rng, scale=1.0):
    return rng.standard_normal((ROWS, K)) * scale


def _constant_rows(rng):
    vals = [1.5, -3.25, 1e-3, -65504.0, 7e-8, 1e-30]
    return np.repeat(np.array(vals)[:, None], K, axis=1)


def _outlier(rng):
    x = _normal(rng)
    for r in range(ROWS):
        x[r, rng.integers(K)] = (-1) ** r * 1e4
    return x


def _fp16_limits(rng):
    x = _normal(rng)
    specials = [65504, -65504, 65519.996, -65519.996, 65520, -65520, 6.1035156e-05, -5.9604645e-08, 2.9802322e-08]
    for r in range(ROWS):
        pos = rng.choice(K, size=len(specials), replace=False)
        x[r, pos] = specials
    x[0, :32] = 65504  # a whole block at fp16's largest finite value
    x[1, :32] = -65504 * 8  # Q4_0's scale is exactly -65504
    x[1, 32:64] = 65504 * 8.0001  # ... or just beyond (fp16 scale overflows to inf)
    x[2, :32] = 65504 * 127  # Q8_0's scale is exactly 65504
    return x


def _beyond_fp16(rng):
    x = _normal(rng)
    specials = [1e5, -1e5, 3e38, -3e38, F32_MAX, -F32_MAX]
    for r in range(ROWS):
        x[r, rng.integers(0, K, size=3)] = specials[r]
    x[0, :32] = 1e5
    x[1, 32:64] = np.linspace(-F32_MAX, F32_MAX, 32)  # max - min overflows to inf (Q4_1, Q5_1)
    return x


def _subnormal(rng):
    x = _normal(rng, 1e-40)
    x[1] = rng.choice([-1, 0, 1], size=K) * 1.4e-45  # the smallest subnormal
    x[2, :32] = 1.4e-45
    return x


def _tiny_scales(rng):
    # One block per power of two from 2^-150 to 2^-88: fp16-subnormal scales, scales that round to
    # fp16 zero, inverse scales that overflow to inf, float32-subnormal scales.
    x = rng.standard_normal((ROWS * K // 32, 32))
    x *= 2.0 ** np.linspace(-150, -88, x.shape[0])[:, None]
    return x.reshape(ROWS, K)


def _wide_exponents(rng):
    x = rng.standard_normal((ROWS * K // 32, 32))
    x *= 2.0 ** rng.integers(-140, 120, size=x.shape[0])[:, None]
    return x.reshape(ROWS, K)


def _alternating(rng):
    i = np.arange(K)
    return np.tile((-1.0) ** i * (1 + i % 7), (ROWS, 1))


def _max_both_signs(first_sign):
    def make(rng):
        x = _normal(rng, 0.5)
        for blk in range(0, K, 32):
            a, b = sorted(rng.choice(32, size=2, replace=False))
            x[:, blk + a] = first_sign * 3.0
            x[:, blk + b] = -first_sign * 3.0
        return x

    return make


def _student_t(rng):
    return rng.standard_t(2, size=(ROWS, K))


def _halves(limit, first):
    # Values on half-integers around a chosen extreme so that x * id lands exactly on the rounding
    # boundaries: first = 127 gives Q8_0's d = 1 (ties of roundf), first = -8 gives Q4_0's d = 1
    # (x * id + 8.5 exactly an integer), first = -16 gives Q5_0's d = 1.
    def make(rng):
        x = rng.integers(-2 * limit, 2 * limit + 1, size=(ROWS, K)) / 2.0
        x[:, ::32] = first
        return x

    return make


def _ramp(rng):
    return np.tile(0.1 + 2 * np.cos(np.arange(K)), (ROWS, 1))  # ggml's test-quantize-fns data


def _signed_zeros(rng):
    x = rng.choice([-0.0, 0.0], size=(ROWS, K))
    x[0, :32] = -0.0
    x[1, 32:64] = 0.0
    x[2, 64:96] = -0.0
    x[2, 70] = 1.0
    return x


FINITE_CASES = {
    "normal": lambda rng: _normal(rng),
    "zeros": lambda rng: np.zeros((ROWS, K)),
    "signed_zeros": _signed_zeros,
    "constant_rows": _constant_rows,
    "outlier_per_row": _outlier,
    "fp16_limits": _fp16_limits,
    "beyond_fp16": _beyond_fp16,
    "subnormal": _subnormal,
    "tiny_scales": _tiny_scales,
    "wide_exponents": _wide_exponents,
    "alternating_signs": _alternating,
    "max_abs_both_signs_pos_first": _max_both_signs(+1),
    "max_abs_both_signs_neg_first": _max_both_signs(-1),
    "student_t": _student_t,
    "ties_q8": _halves(127, 127.0),
    "ties_q4": _halves(8, -8.0),
    "ties_q5": _halves(16, -16.0),
    "ramp": _ramp,
}


def _nonfinite(rng):
    """Every block a different NaN/Inf situation (finite rows of normal data in between)."""
    x = rng.standard_normal((ROWS * K // 32, 32)).astype(np.float32)  # float32: keeps NaN payloads
    cases = [
        lambda b: b.__setitem__(0, np.nan),
        lambda b: b.__setitem__(31, np.nan),  # last element: Q8_0's MAX fold ends on NaN
        lambda b: b.__setitem__(13, np.nan),
        lambda b: b.__setitem__(slice(None), np.nan),
        lambda b: b.__setitem__(5, np.inf),
        lambda b: b.__setitem__(5, -np.inf),
        lambda b: b.__setitem__(slice(None), np.inf),
        lambda b: b.__setitem__([3, 9], [np.inf, -np.inf]),
        lambda b: b.__setitem__([3, 9], [np.nan, np.inf]),
        lambda b: b.__setitem__([3, 9], [-np.inf, np.nan]),
        lambda b: b.__setitem__(20, SNAN),
        lambda b: b.__setitem__(7, NAN_PAYLOAD),
        lambda b: (b.__imul__(np.float32(1e-42)), b.__setitem__(4, np.inf)),
        lambda b: (b.__imul__(np.float32(3e37)), b.__setitem__(30, np.nan)),
        lambda b: b.__setitem__(slice(0, 31), np.nan),
        lambda b: None,
    ]
    for i, blk in enumerate(x):
        cases[i % len(cases)](blk)
    return x.reshape(ROWS, K)


NONFINITE_CASES = {"nonfinite_blocks": _nonfinite}


def make_case(name: str) -> np.ndarray:
    maker = FINITE_CASES.get(name) or NONFINITE_CASES[name]
    with np.errstate(over="ignore"):
        return np.asarray(maker(_rng(name)), dtype=np.float32)


# ================================================================================================
# (1) quantize: byte-exact against ggml, every format, every SIMD level
# ================================================================================================


def _assert_bytes(got, expected, qtype, what=""):
    assert got.dtype == np.uint8 and expected.dtype == np.uint8
    assert np.array_equal(got, expected), f"{qtype} {what}: {first_diff(got, expected, qtype)}"


@pytest.mark.parametrize("case", list(FINITE_CASES))
@pytest.mark.parametrize("qtype", FORMATS)
def test_quantize_matches_ggml(qtype, case, simd_level):
    x = make_case(case)
    got = quantize_at(x, qtype, simd_level)
    _assert_bytes(got, ggml_quantize(x, qtype), qtype, f"{case} at {simd_level}")


@pytest.mark.parametrize("case", list(NONFINITE_CASES))
@pytest.mark.parametrize("qtype", FORMATS)
def test_quantize_nonfinite_matches_ggml_with_check_finite_false(qtype, case, simd_level):
    x = make_case(case)
    got = quantize_at(x, qtype, simd_level, check_finite=False)
    _assert_bytes(got, ggml_quantize(x, qtype), qtype, f"{case} at {simd_level}")


@pytest.mark.parametrize("shape", [(1, 32), (3, 32), (1, 64), (5, 96), (2, 224), (3, 4096 + 96), (1, 32 * 257)])
@pytest.mark.parametrize("qtype", FORMATS)
def test_quantize_block_counts_and_tails_match_ggml(qtype, shape, simd_level):
    # Odd numbers of blocks and rows around the kernels' unrolling and the 4096-element steps.
    rng = np.random.default_rng(shape[0] * 100003 + shape[1])
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[:: 37] *= 50  # some large values
    got = quantize_at(x, qtype, simd_level)
    _assert_bytes(got, ggml_quantize(x, qtype), qtype, f"shape {shape} at {simd_level}")


@pytest.mark.parametrize("qtype", FORMATS)
def test_quantize_large_multithreaded_input_matches_ggml(qtype, simd_level):
    # 1.5M elements: split over the thread pool, with a row length that is not a multiple of the
    # work step.
    rng = np.random.default_rng(7)
    x = (rng.standard_t(4, size=(366, 4096 + 32)) * 0.02).astype(np.float32)
    got = quantize_at(x, qtype, simd_level)
    _assert_bytes(got, ggml_quantize(x, qtype), qtype, f"large input at {simd_level}")


@pytest.mark.parametrize("qtype", FORMATS)
def test_public_quantize_under_simd_override_matches_ggml(qtype, simd_level):
    x = np.concatenate([make_case("normal"), make_case("outlier_per_row"), make_case("subnormal")])
    with fq.simd_override(simd_level):
        assert fq.simd_level() == simd_level
        qt = fq.quantize(x, qtype)
    assert qt.qtype == qtype and qt.shape == x.shape
    _assert_bytes(qt.data, ggml_quantize(x, qtype), qtype, f"public API at {simd_level}")


def _f16_sample(rng, n_rows=8):
    # Every finite fp16 magnitude class, both signs: random bit patterns minus NaN/Inf.
    h = rng.integers(0, 1 << 16, size=(n_rows, K), dtype=np.uint16)
    h = np.where((h & 0x7C00) == 0x7C00, h & 0x83FF, h)
    x = h.view(np.float16)
    x[0] = rng.standard_normal(K).astype(np.float16)
    return x


def _bf16_sample(rng, n_rows=8):
    h = rng.integers(0, 1 << 16, size=(n_rows, K), dtype=np.uint16)
    h = np.where((h & 0x7F80) == 0x7F80, h & 0x807F, h)
    x = h.view(BF16)
    x[0] = rng.standard_normal(K).astype(BF16)
    return x


@pytest.mark.parametrize("qtype", FORMATS)
def test_float16_input_gives_the_bytes_of_its_float32_upcast(qtype, simd_level):
    x16 = _f16_sample(np.random.default_rng(16))
    got = quantize_at(x16, qtype, simd_level)
    _assert_bytes(got, ggml_quantize(x16.astype(np.float32), qtype), qtype, f"float16 input at {simd_level}")


@pytest.mark.parametrize("qtype", FORMATS)
def test_bfloat16_input_gives_the_bytes_of_its_float32_upcast(qtype, simd_level):
    xb = _bf16_sample(np.random.default_rng(17))
    with np.errstate(over="ignore"):
        got = quantize_at(xb, qtype, simd_level)
        expected = ggml_quantize(xb.astype(np.float32), qtype)
    _assert_bytes(got, expected, qtype, f"bfloat16 input at {simd_level}")


@pytest.mark.parametrize("qtype", FORMATS)
def test_nonfinite_16bit_inputs_with_check_finite_false_match_ggml(qtype, simd_level):
    rng = np.random.default_rng(18)
    for dt, specials in [
        (np.dtype(np.float16), [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE3F]),
        (BF16, [0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFFF]),
    ]:
        h = (rng.standard_normal((4, K)).astype(dt)).view(np.uint16)
        for r in range(4):
            h[r, rng.choice(K, size=len(specials), replace=False)] = specials
        h[3, 32:64] = specials[0]
        x = h.view(dt)
        got = quantize_at(x, qtype, simd_level, check_finite=False)
        # The float32 upcast as ggml makes it (its to_float): a signalling fp16 NaN becomes quiet.
        up = ggml_dequantize(h.view(np.uint8), "F16" if dt == np.float16 else "BF16", h.size).reshape(h.shape)
        _assert_bytes(got, ggml_quantize(up, qtype), qtype, f"{dt} NaN/Inf at {simd_level}")


# ================================================================================================
# (2) dequantize: bit-exact against ggml's to_float
# ================================================================================================

TO_FLOAT_FORMATS = [f for f in FORMATS if ggml_has_to_float(f)]


def test_ggml_has_to_float_for_the_expected_types():
    # F32 has no to_float in ggml (it is a copy) and Q8_1 none either (it is only an activation).
    assert TO_FLOAT_FORMATS == ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


def _random_blocks(qtype: str, n_blocks: int, seed: int) -> np.ndarray:
    """Random bytes, with the fp16 fields of some blocks forced to NaN, Inf, zero and subnormal."""
    t = fq.QuantType(qtype)
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n_blocks, t.type_size), dtype=np.uint8)
    if t.block_size > 1:
        specials = np.array([0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE01, 0x0000, 0x8000, 0x0001, 0x7BFF], dtype="<u2")
        n_fields = 2 if qtype in ("Q4_1", "Q5_1", "Q8_1") else 1
        for f in range(n_fields):
            rows = rng.choice(n_blocks, size=n_blocks // 4, replace=False)
            data[rows, 2 * f : 2 * f + 2] = rng.choice(specials, size=rows.size).view(np.uint8).reshape(-1, 2)
    return data.reshape(-1)


def _quantized_sample(qtype: str) -> np.ndarray:
    x = np.concatenate([make_case(c) for c in FINITE_CASES] + [make_case("nonfinite_blocks")])
    return x, ggml_quantize(x, qtype)


def _all_16bit_patterns() -> np.ndarray:
    return np.arange(1 << 16, dtype="<u2").view(np.uint8)


def _dequant_inputs(qtype: str):
    """(name, data, number of elements) triples: ggml-quantized data and random bytes."""
    t = fq.QuantType(qtype)
    x, q = _quantized_sample(qtype)
    yield "quantized", q, x.size
    if t.block_size == 1:
        yield "all_bit_patterns", _all_16bit_patterns(), 1 << 16
    else:
        n_blocks = 4096
        yield "random_bytes", _random_blocks(qtype, n_blocks, seed=t.id), n_blocks * t.block_size


@pytest.mark.parametrize("qtype", TO_FLOAT_FORMATS)
def test_dequantize_matches_ggml_to_float_bits(qtype, simd_level):
    for name, data, n in _dequant_inputs(qtype):
        expected = ggml_dequantize(data, qtype, n)
        got = dequantize_at(data, qtype, n, n, simd_level)
        assert np.array_equal(bits(got), bits(expected)), f"{qtype} {name} at {simd_level}: " + first_diff(
            bits(got), bits(expected)
        )


@pytest.mark.parametrize("qtype", TO_FLOAT_FORMATS)
@pytest.mark.parametrize("out_dtype", ["float16", "bfloat16"])
def test_dequantize_to_16bit_is_the_float32_result_rounded_as_ggml_rounds(qtype, out_dtype, simd_level):
    dt = np.dtype(np.float16) if out_dtype == "float16" else BF16
    narrow = ref.fp32_to_fp16_bits if out_dtype == "float16" else ref.fp32_to_bf16_bits
    same_type = (qtype, out_dtype) in (("F16", "float16"), ("BF16", "bfloat16"))
    for name, data, n in _dequant_inputs(qtype):
        got = dequantize_at(data, qtype, n, n, simd_level, dtype=dt)
        if same_type:
            # F16 -> float16 and BF16 -> bfloat16 hand the stored bits back, NaN payloads and all.
            expected = data.view("<u2")
        else:
            expected = narrow(ggml_dequantize(data, qtype, n))
        assert np.array_equal(bits(got), expected), f"{qtype}->{out_dtype} {name} at {simd_level}: " + first_diff(
            bits(got), expected
        )


def test_f32_dequantize_returns_the_stored_bits(simd_level):
    data = np.random.default_rng(32).integers(0, 256, size=4 * 4096, dtype=np.uint8)
    data[:8] = np.array([0x7F800001, 0xFFC12345], dtype="<u4").view(np.uint8)  # NaN payloads kept
    got = dequantize_at(data, "F32", 4096, 4096, simd_level)
    assert np.array_equal(bits(got), data.view("<u4"))


def test_f32_quantize_keeps_every_bit_pattern(simd_level):
    x = np.random.default_rng(33).integers(0, 1 << 32, size=(4, 1024), dtype=np.uint64).astype(np.uint32)
    x = x.view(np.float32)
    got = quantize_at(x, "F32", simd_level, check_finite=False)
    _assert_bytes(got, ggml_quantize(x, "F32"), "F32")
    assert np.array_equal(got.view("<u4"), x.reshape(-1).view(np.uint32))


def test_q8_1_dequantize_is_d_times_q(simd_level):
    # ggml has no to_float for Q8_1: its values are d * q like Q8_0, checked against the reference
    # on ggml-quantized data and on random bytes.
    x, q = _quantized_sample("Q8_1")
    for name, data, n in [("quantized", q, x.size), ("random_bytes", _random_blocks("Q8_1", 2048, 9), 2048 * 32)]:
        got = dequantize_at(data, "Q8_1", n, n, simd_level)
        expected = ref.dequantize_q8_1(data)
        assert np.array_equal(bits(got), bits(expected)), f"Q8_1 {name}: " + first_diff(bits(got), bits(expected))


# ================================================================================================
# (3) gguf-py, llama.cpp's numpy implementation
# ================================================================================================

GGUF_FORMATS = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]
# Data on which gguf-py is meant to agree with ggml: finite, with scales in fp16's range and not
# so small that the inverse scale overflows (gguf-py's float -> uint8 casts of inf are undefined).
GGUF_CASES = [
    "normal", "zeros", "constant_rows", "outlier_per_row", "alternating_signs", "student_t",
    "max_abs_both_signs_pos_first", "max_abs_both_signs_neg_first", "ties_q8", "ties_q4", "ties_q5", "ramp",
]


def _gguf():
    gguf = pytest.importorskip("gguf")
    import gguf.quants

    return gguf


@pytest.mark.parametrize("qtype", GGUF_FORMATS)
def test_quantize_matches_gguf_py(qtype):
    gguf = _gguf()
    x = np.concatenate([make_case(c) for c in GGUF_CASES])
    expected = np.asarray(gguf.quants.quantize(x, gguf.GGMLQuantizationType[qtype]))
    expected = np.ascontiguousarray(expected).reshape(-1).view(np.uint8)
    _assert_bytes(fq.quantize(x, qtype).data, expected, qtype, "vs gguf-py")


@pytest.mark.parametrize("qtype", GGUF_FORMATS)
def test_dequantize_matches_gguf_py(qtype):
    _gguf()
    t = fq.QuantType(qtype)
    x = np.concatenate([make_case(c) for c in GGUF_CASES])
    samples = [("quantized", ggml_quantize(x, qtype), x.shape)]
    if t.block_size > 1:
        samples.append(("random_bytes", _random_blocks(qtype, 1024, 11), (32, 1024)))
    else:
        samples.append(("all_bit_patterns", _all_16bit_patterns(), (16, 4096)))
    for name, data, shape in samples:
        assert_dequantize_matches_gguf_py(data, qtype, shape, name)


# ================================================================================================
# (4) the numpy references, with hypothesis
# ================================================================================================


def _shapes(max_blocks=8):
    lead = st.lists(st.integers(0, 3), max_size=2).map(tuple)
    return st.tuples(lead, st.integers(1, max_blocks)).map(lambda t: (*t[0], 32 * t[1]))


FINITE_F32 = st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=True)
ANY_F32 = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)


@st.composite
def scaled_normal_arrays(draw, min_exp=-149, max_exp=120, shapes=_shapes()):
    """Normal data times 2^e: realistic blocks at any magnitude, subnormal included."""
    shape = draw(shapes)
    seed = draw(st.integers(0, 2**32 - 1))
    e = draw(st.integers(min_exp, max_exp))
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    with np.errstate(under="ignore", over="ignore"):
        return x * np.float32(2.0**e)


def finite_arrays(elements=FINITE_F32, **kw):
    return st.one_of(hnp.arrays(np.float32, _shapes(), elements=elements), scaled_normal_arrays(**kw))


def _assert_all_levels_match_reference(x, qtype, check_finite=True):
    with np.errstate(all="ignore"):
        expected = ref.quantize(x, qtype)
    # The reference is itself checked against ggml on every example.
    _assert_bytes(expected, ggml_quantize(x, qtype), qtype, f"reference vs ggml, shape {x.shape}")
    for level in SIMD_LEVELS:
        got = quantize_at(x, qtype, level, check_finite=check_finite)
        _assert_bytes(got, expected, qtype, f"vs reference at {level}, shape {x.shape}")


@pytest.mark.parametrize("case", [*FINITE_CASES, *NONFINITE_CASES])
@pytest.mark.parametrize("qtype", FORMATS)
def test_reference_quantize_matches_ggml_on_adversarial_data(qtype, case):
    x = make_case(case)
    with np.errstate(all="ignore"):
        got = ref.quantize(x, qtype)
    _assert_bytes(got, ggml_quantize(x, qtype), qtype, f"reference, {case}")


@pytest.mark.parametrize("qtype", TO_FLOAT_FORMATS)
def test_reference_dequantize_matches_ggml_to_float(qtype):
    for name, data, n in _dequant_inputs(qtype):
        got = ref.dequantize(data, qtype)
        expected = ggml_dequantize(data, qtype, n)
        assert np.array_equal(bits(got), bits(expected)), f"reference {qtype} {name}: " + first_diff(
            bits(got), bits(expected)
        )


@pytest.mark.parametrize("qtype", FORMATS)
@given(x=finite_arrays())
def test_quantize_matches_reference(qtype, x):
    _assert_all_levels_match_reference(x, qtype)


@pytest.mark.parametrize("qtype", FORMATS)
@given(x=hnp.arrays(np.float32, _shapes(4), elements=ANY_F32))
def test_quantize_nonfinite_matches_reference(qtype, x):
    _assert_all_levels_match_reference(x, qtype, check_finite=False)


@pytest.mark.parametrize("qtype", FORMATS)
@given(data=st.data())
def test_dequantize_matches_reference(qtype, data):
    t = fq.QuantType(qtype)
    n_blocks = data.draw(st.integers(1, 64 // t.block_size + 16), label="blocks")
    raw = data.draw(hnp.arrays(np.uint8, n_blocks * t.type_size), label="bytes")
    n = n_blocks * t.block_size
    expected = ref.dequantize(raw, qtype)
    for level in SIMD_LEVELS:
        got = dequantize_at(raw, qtype, n, n, level)
        assert np.array_equal(bits(got), bits(expected)), f"{qtype} at {level}: " + first_diff(bits(got), bits(expected))


@pytest.mark.parametrize("qtype", FORMATS)
@given(x=finite_arrays())
def test_every_simd_level_gives_the_scalar_bytes_and_values(qtype, x):
    scalar = quantize_at(x, qtype, "scalar")
    n = x.size
    values = dequantize_at(scalar, qtype, x.shape[-1], n, "scalar")
    for level in SIMD_LEVELS[1:]:
        _assert_bytes(quantize_at(x, qtype, level), scalar, qtype, f"{level} vs scalar")
        got = dequantize_at(scalar, qtype, x.shape[-1], n, level)
        assert np.array_equal(bits(got), bits(values)), f"{qtype} dequantize {level} vs scalar"


# ================================================================================================
# (5) properties
# ================================================================================================

# x * (1/d) and the following addition are float32 operations: in units of the step d their
# rounding errors add up to at most n * 2^-22 with n <= 127 (< 2^-15); 2^-14 covers it.
CODE_SLACK = 2.0**-14
# Rounding of the decoded value itself: half an ulp (relative 2^-24) per float32 operation, and at
# most 2^-150 absolute per operation in the subnormal range.
ROUND = 2.0**-24
TINY = 2.0**-148
MIN_NORMAL = 2.0**-126


def _block_error_bound(x: np.ndarray, data: np.ndarray, qtype: str):
    """Per element, the largest |x - dequantize(quantize(x))| ggml's algorithm allows, derived from
    the block's float32 scale d (as the quantizer computes it) and the stored fp16 fields.

    For a block whose |d| is below float32's smallest normal (or rounded to zero from a tiny but
    non-zero block) the inverse scale overflows or is 0 and the codes are meaningless, but the
    stored scale (and minimum) are then fp16 zeros: such blocks ("underflow") must decode to zeros,
    which is checked instead. (A constant block of Q4_1/Q5_1 has d = 0 and decodes to M.)

    * Q4_0 / Q5_0 (n = 8 / 16): t = x/d lies in [-n, n]; the code q = min(2n-1, trunc(t + n + 1/2))
      is t rounded half-up, except past t = n - 1/2 where the clamp leaves t - (n - 1) <= 1. So
      |x - (q-n) d| <= |d| (1/2 + max(0, t - (n - 1/2))), plus |q - n| |D - d| for the fp16 scale D.
    * Q4_1 / Q5_1: t = (x - min)/d in [0, 15 or 31], code = t rounded half-up, no clamp needed; the
      fp16 scale adds q |D - d| and the fp16 minimum M adds |M - min|.
    * Q8_0 / Q8_1: t = x/d in [-127, 127], roundf; the scale adds |q| |D - d|.
    """
    b = x.reshape(-1, 32)
    f = ref.fields(data, qtype)
    q = f["q"].astype(np.float64)
    D = f["d"].astype(np.float64)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        if qtype in ("Q4_0", "Q5_0"):
            n = 8 if qtype == "Q4_0" else 16
            d32 = ref.signed_absmax(b) / np.float32(-n)
            k = q - n
        elif qtype in ("Q4_1", "Q5_1"):
            vmin, vmax = ref.min_max(b)
            d32 = (vmax - vmin) / np.float32(15 if qtype == "Q4_1" else 31)
            k = q
        else:
            d32 = ref.absmax_fold(b) / np.float32(127)
            k = q
    d = d32.astype(np.float64)[:, None]
    underflow = np.abs(d32) < MIN_NORMAL  # includes a scale that rounded to 0 from a tiny block
    if qtype in ("Q4_1", "Q5_1"):
        underflow &= vmax != vmin  # a constant block has d = 0 legitimately: it decodes to M
    safe_d = np.where(d == 0, 1.0, d)
    t = b.astype(np.float64) / safe_d
    half = 0.5 + CODE_SLACK
    offset = 0.0
    if qtype in ("Q4_0", "Q5_0"):
        ideal = np.abs(d) * (half + np.maximum(0.0, t - (n - 0.5)))
    else:
        ideal = np.abs(d) * half
    if qtype in ("Q4_1", "Q5_1"):
        offset = np.abs(f["m"].astype(np.float64)[:, None] - vmin.astype(np.float64)[:, None])
    # k * D is exact in float32 (at most 16 significant bits); the rounding of the decoded value
    # (of "+ m" for Q4_1/Q5_1) is added by the caller.
    scale = np.abs(k) * np.abs(D - d)
    return ideal + scale + offset, underflow


def _assert_within_bound(x, qtype, level):
    data = quantize_at(x, qtype, level)
    y = dequantize_at(data, qtype, x.shape[-1], x.size, level).astype(np.float64)
    x64 = x.astype(np.float64).reshape(-1)
    err = np.abs(x64 - y)
    if qtype == "F32":
        assert np.array_equal(bits(y.astype(np.float32)), bits(x.reshape(-1)))
        return
    if qtype in ("F16", "BF16"):
        # Round to nearest: at most half an ulp of the target format at x's binade.
        mant_bits, min_exp = (10, -14) if qtype == "F16" else (7, -126)
        e = np.frexp(x64)[1] - 1  # x = 1.f * 2^e
        bound = np.where(x64 == 0, 0.0, 2.0 ** (np.maximum(e, min_exp) - mant_bits - 1))
        bad = err > bound
        assert not bad.any(), f"{qtype}: error {err[bad][:3]} above half an ulp for x = {x64[bad][:3]}"
        return
    bound, underflow = _block_error_bound(x, data, qtype)
    bound = bound.reshape(-1) + ROUND * np.abs(y) + TINY
    blk_under = np.repeat(underflow, 32)
    assert np.all(y[blk_under] == 0), f"{qtype}: a block with an underflowing scale does not decode to 0"
    bad = (err > bound) & ~blk_under
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        pytest.fail(
            f"{qtype} at {level}: |x - y| = {err[i]!r} > bound {bound[i]!r} at flat index {i} "
            f"(x = {x64[i]!r}, y = {y[i]!r}, block {x64[i // 32 * 32 : i // 32 * 32 + 32]!r})"
        )


# |x| <= 6e4 keeps every fp16 scale and minimum finite (beyond it ggml stores infinities).
FP16_SAFE = st.floats(-6e4, 6e4, width=32, allow_subnormal=True)


@pytest.mark.parametrize("qtype", FORMATS)
@given(x=finite_arrays(elements=FP16_SAFE, max_exp=12))
def test_round_trip_error_is_within_the_format_bound(qtype, x):
    for level in SIMD_LEVELS:
        _assert_within_bound(x, qtype, level)


@pytest.mark.parametrize("qtype", BLOCK_FORMATS)
def test_round_trip_error_bound_on_adversarial_finite_data(qtype, simd_level):
    # Cases whose scales fit fp16 (beyond it ggml stores infinities and there is no bound).
    x = np.concatenate([x for x in map(make_case, FINITE_CASES) if np.abs(x).max() <= 6e4])
    _assert_within_bound(x, qtype, simd_level)


def test_error_bound_is_tight_for_normal_data():
    # The bounds are not loose: on plenty of normal data the worst element comes within 2% of them
    # (Q4_0/Q5_0 reach their clamped last step, the others half a step).
    x = np.random.default_rng(1).standard_normal((512, 256)).astype(np.float32)
    for qtype in BLOCK_FORMATS:
        data = fq.quantize(x, qtype).data
        y = dequantize_at(data, qtype, 256, x.size).astype(np.float64)
        bound, _ = _block_error_bound(x, data, qtype)
        ratio = np.abs(x.reshape(-1) - y) / bound.reshape(-1)
        assert 0.98 < ratio.max() <= 1.0, (qtype, ratio.max())


# ---- quantize(dequantize(q)) == q ---------------------------------------------------------------


@pytest.mark.parametrize("qtype", ["F16", "BF16"])
def test_16bit_formats_round_trip_every_non_nan_pattern(qtype, simd_level):
    h = np.arange(1 << 16, dtype=np.uint16)
    is_nan = ((h & 0x7C00) == 0x7C00) & ((h & 0x03FF) != 0) if qtype == "F16" else ((h & 0x7F80) == 0x7F80) & (
        (h & 0x007F) != 0
    )
    y = dequantize_at(h.view(np.uint8), qtype, 1 << 15, 1 << 16, simd_level)
    back = quantize_at(y.reshape(2, -1), qtype, simd_level, check_finite=False).view("<u2")
    assert np.array_equal(back[~is_nan], h[~is_nan])
    # NaNs come back as ggml re-encodes them: fp16 as sign | 0x7E00, bf16 with the quiet bit set.
    expected_nan = (h & 0x8000) | 0x7E00 if qtype == "F16" else h | 0x0040
    assert np.array_equal(back[is_nan], expected_nan[is_nan])


def _requantize(data: np.ndarray, qtype: str, k: int, level: str) -> np.ndarray:
    n = data.size // fq.QuantType(qtype).type_size * 32
    y = dequantize_at(data, qtype, k, n, level).reshape(-1, k)
    return quantize_at(y, qtype, level, check_finite=False)  # blocks with an inf scale are ignored


def _round_trip_blocks(x: np.ndarray, qtype: str) -> np.ndarray:
    """The blocks of quantize(x) for which quantize(dequantize(q)) == q is guaranteed:

    * Q4_0 / Q5_0 / Q8_0: the stored scale D is finite and non-zero. The block then holds the
      extreme code (-8, -16, +-127) whose value n*D gives back exactly d' = D, and x * (1/D) lands
      within 2^-18 steps of every code.
    * Q8_1: as Q8_0 for d and the codes; s is re-derived from D (checked separately).
    * Q4_1 / Q5_1: D > 0 finite, the minimum M not -0.0 (0*D + -0.0 decodes to +0.0), and every
      k*D + M exactly representable in float32 (otherwise decoding rounds and the codes shift).
    """
    f = ref.fields(quantize_at(x, qtype, "scalar"), qtype)
    D = f["d"].astype(np.float64)
    ok = np.isfinite(D) & (D != 0)
    if qtype in ("Q4_1", "Q5_1"):
        M = f["m"]
        top = 15 if qtype == "Q4_1" else 31
        with np.errstate(over="ignore", invalid="ignore"):
            grid = np.arange(top + 1)[None, :] * D[:, None] + M.astype(np.float64)[:, None]
            exact = (grid.astype(np.float32).astype(np.float64) == grid).all(axis=1)
        ok &= (D > 0) & np.isfinite(M) & (M.view(np.uint32) != 0x80000000) & exact
    return ok


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"])
@given(x=finite_arrays(elements=FP16_SAFE))
def test_requantizing_dequantized_blocks_gives_the_same_blocks(qtype, x):
    _check_requantize(x, qtype)


def _check_requantize(x, qtype):
    ok = _round_trip_blocks(x, qtype)
    ts = fq.QuantType(qtype).type_size
    for level in SIMD_LEVELS:
        q1 = quantize_at(x, qtype, level).reshape(-1, ts)
        q2 = _requantize(q1.reshape(-1), qtype, x.shape[-1], level).reshape(-1, ts)
        if qtype == "Q8_1":
            # d and the codes come back; s = fp16(sum(q) * D) is now computed from the fp16 scale.
            assert np.array_equal(q2[ok][:, :2], q1[ok][:, :2]) and np.array_equal(q2[ok][:, 4:], q1[ok][:, 4:])
            f = ref.fields(q1.reshape(-1), qtype)
            s = ref.fp32_to_fp16_bits(f["q"].sum(axis=1).astype(np.float32) * f["d"])
            assert np.array_equal(q2[ok][:, 2:4].copy().view("<u2")[:, 0], s[ok])
        else:
            assert np.array_equal(q2[ok], q1[ok]), f"{qtype} at {level}: " + first_diff(q2[ok], q1[ok], qtype)


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"])
def test_requantizing_holds_for_almost_all_normal_data(qtype):
    # Makes sure the property above is not vacuous: on normal data nearly every block qualifies.
    x = np.random.default_rng(5).standard_normal((64, 256)).astype(np.float32)
    assert _round_trip_blocks(x, qtype).mean() > 0.95
    _check_requantize(x, qtype)


# ---- dtypes and layouts -------------------------------------------------------------------------


@pytest.mark.parametrize("qtype", FORMATS)
@given(x=finite_arrays(elements=FP16_SAFE, max_exp=12))
def test_float16_and_bfloat16_inputs_equal_their_float32_upcast(qtype, x):
    for dt in (np.dtype(np.float16), BF16):
        x16 = x.astype(dt)
        assert fq.quantize(x16, qtype).data.tobytes() == fq.quantize(x16.astype(np.float32), qtype).data.tobytes()


@pytest.mark.parametrize("qtype", FORMATS)
def test_public_dequantize_16bit_dtypes_equal_the_rounded_float32_result(qtype):
    x = np.concatenate([make_case("normal"), make_case("outlier_per_row"), make_case("fp16_limits")])
    qt = fq.quantize(x, qtype)
    y32 = ggml_dequantize(qt.data, qtype, x.size) if ggml_has_to_float(qtype) else ref.dequantize(qt.data, qtype)
    y32 = y32.reshape(x.shape)
    y16 = qt.dequantize(np.float16)
    yb16 = fq.dequantize(qt, ml_dtypes.bfloat16)
    assert y16.dtype == np.float16 and yb16.dtype == BF16
    assert y16.shape == yb16.shape == x.shape
    assert np.array_equal(bits(y16), ref.fp32_to_fp16_bits(y32))
    assert np.array_equal(bits(yb16), ref.fp32_to_bf16_bits(y32))


def _layouts(x: np.ndarray):
    """Views of the same logical values in other memory layouts, as (name, array) pairs."""
    wide = np.zeros((x.shape[0], 2 * x.shape[1]), dtype=x.dtype)
    wide[:, ::2] = x
    yield "column_strided", wide[:, ::2]
    tall = np.zeros((2 * x.shape[0], x.shape[1]), dtype=x.dtype)
    tall[::2] = x
    yield "row_strided", tall[::2]
    yield "reversed", np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    yield "fortran", np.asfortranarray(x)
    ro = x.copy()
    ro.setflags(write=False)
    yield "readonly", ro
    buf = np.zeros(x.nbytes + 1, dtype=np.uint8)
    unaligned = np.frombuffer(buf.data, dtype=x.dtype, count=x.size, offset=1).reshape(x.shape)
    buf[1:] = x.reshape(-1).view(np.uint8)
    yield "unaligned", unaligned


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("qtype", FORMATS)
def test_any_memory_layout_gives_ggml_bytes(qtype, dtype):
    dt = BF16 if dtype == "bfloat16" else np.dtype(dtype)
    x = np.concatenate([make_case("normal"), make_case("outlier_per_row")]).astype(dt)
    expected = ggml_quantize(x.astype(np.float32), qtype)
    for name, view in _layouts(x):
        assert np.array_equal(view, x)
        # Every layout but the read-only one is copied once, with a CopyWarning (test_array_inputs.py).
        with pytest.warns(fq.CopyWarning) if name != "readonly" else contextlib.nullcontext():
            qt = fq.quantize(view, qtype)
        assert qt.shape == x.shape
        _assert_bytes(qt.data, expected, qtype, f"{dtype} {name}")


@pytest.mark.parametrize("qtype", FORMATS)
@pytest.mark.parametrize("shape", [(64,), (2, 3, 64), (2, 1, 2, 96), (0, 64), (3, 0, 64), (0, 0, 32)])
def test_shapes_are_preserved(qtype, shape):
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    qt = fq.quantize(x, qtype)
    t = fq.QuantType(qtype)
    assert qt.shape == shape and qt.ndim == len(shape) and qt.size == x.size
    assert qt.nbytes == x.size // t.block_size * t.type_size
    _assert_bytes(qt.data, ggml_quantize(x, qtype) if x.size else np.zeros(0, np.uint8), qtype, f"shape {shape}")
    y = fq.dequantize(qt)
    assert y.shape == shape and y.dtype == np.float32
    if x.size:
        expected = ggml_dequantize(qt.data, qtype, x.size) if ggml_has_to_float(qtype) else ref.dequantize(qt.data, qtype)
        assert np.array_equal(bits(y.reshape(-1)), bits(expected))


def test_list_input_is_converted_to_float32():
    x = [[0.5 * i - 7 for i in range(32)], [1.0] * 32]
    expected = ggml_quantize(np.array(x, dtype=np.float32), "Q4_0")
    _assert_bytes(fq.quantize(x, "Q4_0").data, expected, "Q4_0", "list input")
