"""The SIMD dequantize kernels of the K-quants against ggml's ``to_float`` directly, at every SIMD
level: every fp16 value as the super-scale ``d`` and (scrambled) as ``dmin``, with random codes and
sub-block scales, so NaN, infinite, subnormal and signed-zero scales (and NaN ``d`` meeting NaN
``dmin``) give ggml's bits. The 64 MiB outputs also take the kernels' streaming-store path.
(The I-quant, ternary and MXFP4 kernels are covered the same way by ``test_iquants.py``.)"""

from __future__ import annotations

import numpy as np
import pytest

import fastquant as fq
from conftest import bits, dequantize_at, first_diff, ggml_dequantize

pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")

# (type, byte offset of d, byte offset of dmin or None)
SCALES = {"Q2_K": (80, 82), "Q3_K": (108, None), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208, None)}


def every_fp16_scale(qtype: str) -> tuple[np.ndarray, int]:
    t = fq.QuantType(qtype)
    d_at, m_at = SCALES[qtype]
    data = np.random.default_rng(t.id).integers(0, 256, size=(1 << 16, t.type_size), dtype=np.uint8)
    h = np.arange(1 << 16, dtype="<u2")
    data[:, d_at : d_at + 2] = h.view(np.uint8).reshape(-1, 2)
    if m_at is not None:
        data[:, m_at : m_at + 2] = (h * np.uint16(40503)).astype("<u2").view(np.uint8).reshape(-1, 2)
    return data.reshape(-1), (1 << 16) * t.block_size


@pytest.mark.parametrize("qtype", sorted(SCALES))
def test_every_fp16_scale_matches_ggml_bits(qtype, simd_level):
    data, n = every_fp16_scale(qtype)
    expected = ggml_dequantize(data, qtype, n)
    got = dequantize_at(data, qtype, n, n, simd_level)
    assert np.array_equal(bits(got), bits(expected)), f"{qtype}: " + first_diff(bits(got), bits(expected))
