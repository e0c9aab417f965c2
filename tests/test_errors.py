"""Every documented error: the right exception class, a message that says what is wrong, and never
a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest

import fastquant as fq
from conftest import BF16, FORMATS, SIMD_LEVELS, ggml_quantize
from fastquant import _core


def _x(shape=(4, 64), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ================================================================================================
# Arguments
# ================================================================================================


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int8, np.uint16, np.complex64, np.bool_, np.longdouble])
def test_other_dtypes_raise_type_error(dtype):
    x = np.ones((2, 32), dtype=dtype)
    with pytest.raises(TypeError, match=rf"float32, float16 or bfloat16.*{np.dtype(dtype)}"):
        fq.quantize(x, "Q4_0")


def test_wrong_output_dtype_raises_type_error():
    qt = fq.quantize(_x(), "Q8_0")
    for dt in (np.float64, np.int32):
        with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
            fq.dequantize(qt, dt)


def test_dequantize_takes_only_quantized_tensors():
    with pytest.raises(TypeError, match="QuantizedTensor"):
        fq.dequantize(_x(), np.float32)


@pytest.mark.parametrize("qtype", [q for q in FORMATS if fq.QuantType(q).block_size > 1])
@pytest.mark.parametrize("k", [33, 16, 48, 100])
def test_row_length_not_a_block_multiple_raises_shape_error(qtype, k):
    with pytest.raises(fq.ShapeError, match=rf"{qtype}: row length {k}\b.*block size 32\b") as info:
        fq.quantize(np.zeros((3, k), dtype=np.float32), qtype)
    assert isinstance(info.value, ValueError) and isinstance(info.value, fq.FastquantError)


def test_empty_rows_give_an_empty_tensor_and_zero_dimensional_input_raises_shape_error():
    # An empty axis is a whole number of blocks (numpy allows empty axes; GGUF files hold such tensors).
    q = fq.quantize(np.zeros((4, 0), dtype=np.float32), "Q8_0")
    assert q.shape == (4, 0) and q.nbytes == 0
    assert fq.dequantize(q).shape == (4, 0)
    with pytest.raises(fq.ShapeError, match="at least one dimension"):
        fq.quantize(np.float32(1.0), "F32")


@pytest.mark.parametrize("name", ["Q4_9", "q4", "", "float32", "Q4_0_4_4"])
def test_unknown_type_name_raises_quant_type_error(name):
    with pytest.raises(fq.QuantTypeError, match="unknown quantization type") as info:
        fq.quantize(_x(), name)
    assert isinstance(info.value, ValueError)


def test_qtype_of_the_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="qtype"):
        fq.quantize(_x(), 2)


@pytest.mark.parametrize("qtype", ["Q4_0", "F16", "Q8_1"])
def test_from_buffer_of_the_wrong_size_raises_shape_error(qtype):
    t = fq.QuantType(qtype)
    need = t.row_bytes(64) * 3
    for size in (need - 1, need + 1, need + t.type_size):
        with pytest.raises(fq.ShapeError, match=rf"needs {need} bytes, the buffer has {size}"):
            fq.QuantizedTensor.from_buffer(np.zeros(size, dtype=np.uint8), qtype, (3, 64))


def test_from_buffer_shape_must_be_whole_blocks():
    with pytest.raises(fq.ShapeError, match="block size 32"):
        fq.QuantizedTensor.from_buffer(bytes(18), "Q4_0", (1, 31))
    with pytest.raises(fq.ShapeError, match="negative"):
        fq.QuantizedTensor.from_buffer(bytes(18), "Q4_0", (-1, 32))


def test_quantized_tensor_wants_a_uint8_vector():
    with pytest.raises(TypeError, match="uint8"):
        fq.QuantizedTensor(np.zeros(9, dtype=np.uint16), "Q4_0", (32,))
    with pytest.raises(TypeError, match="uint8"):
        fq.QuantizedTensor(bytes(18), "Q4_0", (32,))


@pytest.mark.parametrize(
    "make_out",
    [
        lambda s: np.zeros(s, dtype=np.float64),
        lambda s: np.zeros(s, dtype=np.float16),
        lambda s: np.zeros((s[0], s[1] + 32), dtype=np.float32),
        lambda s: np.zeros(s[::-1], dtype=np.float32),
        lambda s: np.zeros((s[0], 2 * s[1]), dtype=np.float32)[:, ::2],
        lambda s: np.asfortranarray(np.zeros(s, dtype=np.float32)),
        lambda s: [[0.0] * s[1]] * s[0],
    ],
    ids=["float64", "dtype_mismatch", "shape", "transposed_shape", "strided", "fortran", "list"],
)
def test_bad_out_raises_shape_error(make_out):
    qt = fq.quantize(_x((4, 64)), "Q4_0")
    out = make_out(qt.shape)
    with pytest.raises(fq.ShapeError, match="out must be"):
        fq.dequantize(qt, np.float32, out=out)


def test_readonly_out_raises_shape_error():
    qt = fq.quantize(_x((4, 64)), "Q4_0")
    out = np.zeros(qt.shape, dtype=np.float32)
    out.setflags(write=False)
    with pytest.raises(fq.ShapeError, match="writeable"):
        fq.dequantize(qt, out=out)


def test_unaligned_out_is_refused_with_a_value_error():
    qt = fq.quantize(_x((2, 64)), "Q8_0")
    buf = bytearray(qt.size * 4 + 1)
    out = np.frombuffer(buf, dtype=np.float32, offset=1, count=qt.size).reshape(qt.shape)
    assert out.flags.c_contiguous and out.flags.writeable and not out.flags.aligned
    with pytest.raises(ValueError, match="out must be"):
        fq.dequantize(qt, out=out)
    assert not any(buf)  # nothing was written


def test_imatrix_of_the_wrong_length_raises_shape_error():
    with pytest.raises(fq.ShapeError, match=r"imatrix must have shape \(64,\)"):
        fq.quantize(_x((4, 64)), "Q4_0", imatrix=np.ones(32, dtype=np.float32))


# ================================================================================================
# Non-finite input
# ================================================================================================


@pytest.mark.parametrize("qtype", FORMATS)
@pytest.mark.parametrize(
    "positions",
    [[0], [31], [32], [4095], [4096], [70_000], [199_999], [5, 3], [150_000, 100_001], [65_536, 65_535]],
    ids=str,
)
def test_nan_raises_non_finite_error_naming_the_first_flat_index(qtype, positions):
    x = _x((200, 1024), seed=1)  # 204800 elements: several work steps and thread tasks
    flat = x.reshape(-1)
    for p in positions:
        flat[p] = np.nan
    with pytest.raises(fq.NonFiniteError) as info:
        fq.quantize(x, qtype)
    first = min(positions)
    assert info.value.index == first
    assert np.isnan(info.value.value)
    assert f"flat index {first}" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinity_raises_non_finite_error_with_its_value(value, simd_level):
    x = _x((3, 2, 64), seed=2)
    x[1, 1, 17] = value
    x[2, 0, 3] = np.nan
    with fq.simd_override(simd_level), pytest.raises(fq.NonFiniteError) as info:
        fq.quantize(x, "Q4_1")
    assert info.value.index == np.ravel_multi_index((1, 1, 17), x.shape)
    assert info.value.value == value


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("positions", [[0], [63], [4099, 8000], [90_001]], ids=str)
def test_non_finite_16bit_input_names_the_first_index(dtype, positions):
    x = _x((100, 1024), seed=3).astype(dtype)
    flat = x.reshape(-1)
    for i, p in enumerate(positions):
        flat[p] = (np.nan, np.inf)[i % 2]
    for qtype in ("Q8_0", "F16", "BF16", "F32"):
        with pytest.raises(fq.NonFiniteError) as info:
            fq.quantize(x, qtype)
        assert info.value.index == min(positions), qtype


def test_large_float16_values_are_finite_but_float16_infinity_is_not():
    x = np.full((1, 32), 65504, dtype=np.float16)
    fq.quantize(x, "Q8_0")  # finite: fine
    x[0, 9] = np.inf
    with pytest.raises(fq.NonFiniteError) as info:
        fq.quantize(x, "Q8_0")
    assert info.value.index == 9


def test_check_finite_false_accepts_non_finite_input():
    x = _x()
    x[0, 0] = np.nan
    x[1, 5] = -np.inf
    qt = fq.quantize(x, "Q8_0", check_finite=False)
    assert np.array_equal(qt.data, ggml_quantize(x, "Q8_0"))


# ================================================================================================
# Types fastquant cannot handle yet
# ================================================================================================

NO_QUANTIZE = [t.value for t in fq.QuantType if not t.can_quantize]
NO_DEQUANTIZE = [t.value for t in fq.QuantType if not t.can_dequantize]


@pytest.mark.parametrize("qtype", NO_QUANTIZE or [pytest.param(None, marks=pytest.mark.skip("every type is done"))])
def test_quantizing_to_an_unsupported_type_raises_unsupported_error(qtype):
    t = fq.QuantType(qtype)
    with pytest.raises(fq.UnsupportedError, match=qtype) as info:
        fq.quantize(np.zeros((2, t.block_size * 2), dtype=np.float32), qtype)
    assert isinstance(info.value, NotImplementedError)


@pytest.mark.parametrize("qtype", NO_DEQUANTIZE or [pytest.param(None, marks=pytest.mark.skip("every type is done"))])
def test_dequantizing_an_unsupported_type_raises_unsupported_error(qtype):
    t = fq.QuantType(qtype)
    qt = fq.QuantizedTensor.from_buffer(bytes(2 * t.type_size), qtype, (2, t.block_size))
    with pytest.raises(fq.UnsupportedError, match=qtype):
        qt.dequantize()


# ================================================================================================
# SIMD levels and threads
# ================================================================================================


@pytest.mark.parametrize("level", ["bogus", "avx", "sse4", "", "avx-512"])
def test_unknown_simd_level_raises_simd_error(level):
    before = fq.simd_level()
    with pytest.raises(fq.SimdError, match="unknown SIMD level") as info:
        fq.set_simd_level(level)
    assert isinstance(info.value, RuntimeError)
    assert fq.simd_level() == before
    with pytest.raises(fq.SimdError):
        with fq.simd_override(level):
            pass  # pragma: no cover - never reached
    assert fq.simd_level() == before


def test_unknown_simd_level_in_the_private_call_raises_simd_error():
    with pytest.raises(fq.SimdError, match="bogus"):
        _core.quantize(_x().reshape(-1), "f32", fq.QuantType.Q4_0.id, 64, True, None, "bogus")
    out = np.zeros(64, dtype=np.float32)
    with pytest.raises(fq.SimdError, match="bogus"):
        _core.dequantize(np.zeros(18 * 2, dtype=np.uint8), fq.QuantType.Q4_0.id, 64, out, "f32", "bogus")


def test_simd_levels_are_case_insensitive_and_can_be_reset(simd_level):
    fq.set_simd_level(simd_level.upper())
    assert fq.simd_level() == simd_level
    fq.set_simd_level(None)
    assert fq.simd_level() == _env_or_detected_level()


def _env_or_detected_level() -> str:
    env = os.environ.get("FASTQUANT_SIMD", "").strip()
    return env.lower() if env else fq.detected_simd_level()


ALL_LEVELS = ["scalar", "avx2", "avx512", "avx512vnni"]
UNAVAILABLE = [lvl for lvl in ALL_LEVELS if lvl not in SIMD_LEVELS]


@pytest.mark.skipif(not UNAVAILABLE, reason="this CPU runs every SIMD level")
def test_a_level_above_the_cpu_raises_simd_error():
    level = UNAVAILABLE[0]
    with pytest.raises(fq.SimdError, match=rf"'{level}' is not available on this CPU"):
        fq.set_simd_level(level)
    with pytest.raises(fq.SimdError, match="not available"):
        _core.quantize(_x().reshape(-1), "f32", fq.QuantType.Q8_0.id, 64, True, None, level)


def test_levels_are_ordered_and_detected_is_the_best():
    assert SIMD_LEVELS[0] == "scalar"
    assert SIMD_LEVELS == [lvl for lvl in ALL_LEVELS if lvl in SIMD_LEVELS]
    assert SIMD_LEVELS == ALL_LEVELS[: len(SIMD_LEVELS)]
    assert fq.detected_simd_level() == SIMD_LEVELS[-1]


@pytest.mark.parametrize("n", [0, -1, -(2**40)])
def test_set_num_threads_below_one_raises(n):
    before = fq.get_num_threads()
    with pytest.raises(fq.FastquantError, match="at least 1"):
        fq.set_num_threads(n)
    assert fq.get_num_threads() == before


@pytest.mark.parametrize("n", [1.5, True, "2", None])
def test_set_num_threads_wants_an_int(n):
    with pytest.raises(TypeError, match="int"):
        fq.set_num_threads(n)


# ---- FASTQUANT_SIMD in a fresh process (the variable is read once per process) -------------------

_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import fastquant as fq
    report = {"detected": fq.detected_simd_level()}
    try:
        report["level"] = fq.simd_level()
    except fq.SimdError as e:
        report["level_error"] = str(e)
    x = (np.arange(4 * 256, dtype=np.float32).reshape(4, 256) % 37 - 18) / 7
    x[1, 5] = 1e5
    x[2, 100] = -3e-41
    try:
        report["bytes"] = {q: fq.quantize(x, q).data.tobytes().hex() for q in sys.argv[1:]}
    except fq.SimdError as e:
        report["quantize_error"] = str(e)
    print(json.dumps(report))
    """
)


def _run_with_simd_env(value: str, *qtypes: str) -> dict:
    env = dict(os.environ, FASTQUANT_SIMD=value)
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *qtypes], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"the child process failed (exit {proc.returncode}):\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _script_input() -> np.ndarray:
    x = (np.arange(4 * 256, dtype=np.float32).reshape(4, 256) % 37 - 18) / 7
    x[1, 5] = 1e5
    x[2, 100] = -3e-41
    return x


def test_fastquant_simd_scalar_env_selects_scalar_and_still_gives_ggml_bytes():
    pytest.importorskip("ggml")
    report = _run_with_simd_env("scalar", *FORMATS)
    assert report["level"] == "scalar"
    x = _script_input()
    for qtype in FORMATS:
        assert bytes.fromhex(report["bytes"][qtype]) == ggml_quantize(x, qtype).tobytes(), qtype


def test_fastquant_simd_env_is_case_and_space_insensitive():
    report = _run_with_simd_env(" Scalar ")
    assert report["level"] == "scalar"


def test_fastquant_simd_bogus_env_gives_a_clear_simd_error_not_a_crash():
    report = _run_with_simd_env("bogus", "Q4_0")
    for key in ("level_error", "quantize_error"):
        msg = report[key]
        assert "bogus" in msg and all(lvl in msg for lvl in ALL_LEVELS), msg
    assert report["detected"] == fq.detected_simd_level()


@pytest.mark.skipif(not UNAVAILABLE, reason="this CPU runs every SIMD level")
def test_fastquant_simd_above_the_cpu_gives_a_clear_simd_error_not_a_crash():
    level = UNAVAILABLE[-1]
    report = _run_with_simd_env(level, "Q4_0")
    for key in ("level_error", "quantize_error"):
        assert f"'{level}' is not available on this CPU" in report[key]


def test_bf16_dtype_is_accepted_everywhere_as_the_ml_dtypes_type():
    # Guard for the dtype tests above: bfloat16 is a supported input, not a TypeError.
    x = _x().astype(BF16)
    assert fq.quantize(x, "BF16").data.view("<u2").tolist() == x.view(np.uint16).reshape(-1).tolist()
