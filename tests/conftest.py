"""Shared test configuration: hypothesis profiles, the SIMD-level fixture and small helpers.

Hypothesis profiles: ``HYPOTHESIS_PROFILE=ci`` (few examples, derandomized: reproducible and fast)
or ``dev`` (the default: many examples). Test modules import the helpers below with
``from conftest import ...`` (pytest puts ``tests/`` on ``sys.path``, as it does for
``reference``).
"""

from __future__ import annotations

import os
from typing import Optional

import fastquant
import ml_dtypes
import numpy as np
import pytest
from fastquant import _core
from hypothesis import HealthCheck, settings

# ---- hypothesis -------------------------------------------------------------------------------

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=25, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=300, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# ---- the formats under test -------------------------------------------------------------------

FLOAT_FORMATS = ["F32", "F16", "BF16"]
BLOCK_FORMATS = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1"]
FORMATS = FLOAT_FORMATS + BLOCK_FORMATS

BF16 = np.dtype(ml_dtypes.bfloat16)

SIMD_LEVELS = fastquant.available_simd_levels()


def pytest_report_header(config):
    return (
        f"fastquant {fastquant.__version__}: simd levels {SIMD_LEVELS}, "
        f"hypothesis profile {settings.get_current_profile_name()}"
    )


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request) -> str:
    """Every SIMD level this CPU can run, lowest ("scalar") first."""
    return request.param


@pytest.fixture(autouse=True)
def _restore_process_settings():
    """No test may leak a forced SIMD level or thread count into the next one."""
    threads = fastquant.get_num_threads()
    yield
    fastquant.set_simd_level(None)
    if fastquant.get_num_threads() != threads:
        fastquant.set_num_threads(threads)


# ---- helpers ----------------------------------------------------------------------------------

_KINDS = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16", BF16: "bf16"}


def qtype_id(name: str) -> int:
    return fastquant.QuantType(name).id


def quantize_at(x: np.ndarray, qtype: str, simd: Optional[str] = None, check_finite: bool = True) -> np.ndarray:
    """fastquant's bytes for ``x`` (float32/float16/bfloat16 ``[..., K]``), at SIMD level ``simd``
    (``None``: the process-wide level), through the private ``_core.quantize``."""
    x = np.ascontiguousarray(x)
    kind = _KINDS[x.dtype]
    flat = x.reshape(-1) if kind == "f32" else x.reshape(-1).view(np.uint16)
    return _core.quantize(flat, kind, qtype_id(qtype), x.shape[-1], check_finite, None, simd)


def dequantize_at(
    data: np.ndarray, qtype: str, n_per_row: int, n: int, simd: Optional[str] = None, dtype=np.float32
) -> np.ndarray:
    """fastquant's values for ``n`` elements of ``qtype`` blocks in ``data``, as a flat array of
    ``dtype`` (float32, float16 or bfloat16), at SIMD level ``simd``."""
    dt = np.dtype(dtype)
    out = np.full(n, np.nan, dtype=dt)  # poisoned: every element must be written
    kind = _KINDS[dt]
    _core.dequantize(
        np.ascontiguousarray(data, dtype=np.uint8), qtype_id(qtype), n_per_row,
        out if kind == "f32" else out.view(np.uint16), kind, simd,
    )
    return out


def ggml_quantize(x: np.ndarray, qtype: str) -> np.ndarray:
    """ggml's bytes for float32 ``x``: ``ggml_quantize_chunk``, or ``quantize_row_q8_1_ref`` for
    Q8_1 (which ``ggml_quantize_chunk`` rejects with an abort)."""
    from reference import ggml_oracle

    x = np.ascontiguousarray(x, dtype=np.float32)
    if qtype == "Q8_1":
        return ggml_oracle.quantize_ref_row(x, qtype_id(qtype))
    return ggml_oracle.quantize(x.reshape(-1, x.shape[-1]), qtype_id(qtype))


def ggml_has_to_float(qtype: str) -> bool:
    from reference import ggml_oracle

    return bool(ggml_oracle.type_traits(qtype_id(qtype)).to_float)


def ggml_dequantize(data: np.ndarray, qtype: str, n: int) -> np.ndarray:
    """ggml's ``to_float`` (only for types that have one: never call it for F32 or Q8_1, whose
    NULL function pointer would crash the process)."""
    from reference import ggml_oracle

    if not ggml_has_to_float(qtype):
        raise ValueError(f"ggml has no to_float for {qtype}")
    return ggml_oracle.dequantize(data, qtype_id(qtype), n)


def first_diff(got: np.ndarray, expected: np.ndarray, qtype: str = "") -> str:
    """A readable description of the first differing byte/element, for assertion messages."""
    got = np.asarray(got).reshape(-1)
    expected = np.asarray(expected).reshape(-1)
    if got.shape != expected.shape:
        return f"sizes differ: {got.shape} vs {expected.shape}"
    bad = np.flatnonzero(got != expected)
    if bad.size == 0:
        return "equal"
    i = int(bad[0])
    where = f"position {i}"
    if qtype and got.dtype == np.uint8 and qtype in fastquant.QuantType.__members__:
        ts = fastquant.QuantType(qtype).type_size
        where += f" (block {i // ts}, byte {i % ts})"
    return f"{bad.size} differences, first at {where}: got {got[i]!r}, expected {expected[i]!r}"


def bits(a: np.ndarray) -> np.ndarray:
    """The bit patterns of a float array (float32 -> uint32, 16-bit floats -> uint16)."""
    a = np.asarray(a)
    return a.view(np.uint32) if a.dtype.itemsize == 4 else a.view(np.uint16)


def assert_dequantize_matches_gguf_py(data: np.ndarray, qtype: str, shape: tuple, label: str) -> None:
    """fastquant's dequantize of raw blocks equals gguf-py's: NaN where gguf-py has NaN (its NaN
    bits come from numpy's conversions, which may keep a signalling NaN signalling), every other
    value bit for bit."""
    import gguf.quants

    got = fastquant.QuantizedTensor.from_buffer(data, qtype, shape).dequantize()
    with np.errstate(all="ignore"):
        expected = gguf.quants.dequantize(data.reshape(shape[0], -1), gguf.GGMLQuantizationType[qtype])
    expected = np.asarray(expected, dtype=np.float32).reshape(shape)
    nan = np.isnan(expected)
    assert np.array_equal(nan, np.isnan(got)), f"{qtype} {label}: NaN positions differ"
    assert np.array_equal(bits(got)[~nan], bits(expected)[~nan]), f"{qtype} {label}: " + first_diff(
        bits(got)[~nan], bits(expected)[~nan]
    )
