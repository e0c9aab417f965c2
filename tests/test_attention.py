"""fastquant.attention and KVCache against a float64 numpy reference, ggml's flash_attn_ext, and
the scalar kernels at every SIMD level.

Documented error bounds (max abs error of the output, inputs ~ N(0, 1)):
* float32 (and float16, whose values convert exactly) inputs: 2e-5 against the float64 reference.
* Quantized K/V: 2e-5 against the reference on the *dequantized* K/V (the kernel sees exactly those
  values); against the unquantized float64 result, the quantization itself costs up to
  F16 3e-3, Q8_0 5e-2, Q4_0 0.6 (QUANT_BOUNDS below; the worst rows attend sharply to a few keys).
* Decode (at most 16 query rows per kv head and unit) with Q8_0 keys rounds the scaled queries to
  Q8_0 and takes integer dots, as ggml does: its exact reference is the attention of those rounded
  queries (2e-5 again). Against the f32 queries the rounding costs a few 1e-3 typically and up to
  ~2e-2 on rows that attend sharply (each scaled query element moves by at most half its block's
  step amax/127; rust/fastquant/tests/attention.rs checks the worst-case bound derived from that).
"""

from __future__ import annotations

import fastquant
import numpy as np
import pytest
from conftest import SIMD_LEVELS
from fastquant import InvalidArgumentError, KVCache, ShapeError
from hypothesis import given
from hypothesis import strategies as st
from reference.attention import attention_ref
from reference import legacy
from reference.ggml_attention import HAVE_GGML, Q8_0, causal_window_mask, flash_attn_ext

F32_BOUND = 2e-5
QUANT_BOUNDS = {"F16": 3e-3, "Q8_0": 5e-2, "Q4_0": 0.6}


def _q8_decode(hq: int, hkv: int, nq: int) -> bool:
    """Whether the units of this shape take the int8 path for Q8_0 keys: at most 16 query rows
    (FEW_ROWS in attention/flash.rs) of the 256 a unit holds (ROWS_PER_UNIT)."""
    group = hq // hkv
    return group * min(nq, max(1, 256 // group)) <= 16


def _q8_rounded_queries(q: np.ndarray) -> np.ndarray:
    """The queries the int8 path sees: scaled by 1/sqrt(D) in float32, then rounded to Q8_0."""
    scaled = (q * (np.float32(1) / np.sqrt(np.float32(q.shape[-1])))).astype(np.float32)
    return legacy.dequantize(legacy.quantize(scaled.reshape(-1), "Q8_0"), "Q8_0").reshape(q.shape)


def _max_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))


def _lse_err(a: np.ndarray, b: np.ndarray) -> float:
    assert np.array_equal(np.isneginf(a), np.isneginf(b)), "fully masked rows differ"
    fin = np.isfinite(b)
    return float(np.max(np.abs(a[fin] - b[fin]), initial=0.0))


@st.composite
def problems(draw, max_d: int = 130):
    """Random shapes and options: GQA ratios, Nq/Nk from 1 (and Nk = 0), odd D, masks of every
    broadcast shape with -inf holes, windows, softcaps."""
    b = draw(st.integers(1, 2))
    hkv = draw(st.integers(1, 3))
    hq = hkv * draw(st.sampled_from([1, 2, 4]))
    nq = draw(st.integers(1, 40))
    nk = draw(st.integers(0, 90))
    d = draw(st.sampled_from([1, 3, 16, 17, 32, 64, 80, 96, 127, 128])) if max_d >= 128 else draw(st.integers(1, max_d))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((b, hq, nq, d), dtype=np.float32) * draw(st.sampled_from([0.5, 1.0, 3.0]))
    k = rng.standard_normal((b, hkv, nk, d), dtype=np.float32)
    v = rng.standard_normal((b, hkv, nk, d), dtype=np.float32)
    opts = dict(
        causal=draw(st.booleans()),
        window=draw(st.one_of(st.none(), st.integers(1, 50))),
        softcap=draw(st.one_of(st.none(), st.sampled_from([1.0, 5.0, 30.0]))),
        scale=draw(st.one_of(st.none(), st.sampled_from([0.05, 0.3]))),
    )
    mask_shape = draw(st.sampled_from([None, (nq, nk), (b, 1, 1, nk), (b, hq, nq, nk), (hq, 1, nk), (1, nk)]))
    if mask_shape is not None:
        m = rng.standard_normal(mask_shape).astype(np.float32)
        m[rng.random(mask_shape) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = -np.inf
        opts["mask"] = m
    return q, k, v, opts


@given(problems())
def test_matches_float64_reference(problem):
    q, k, v, opts = problem
    out, lse = fastquant.attention(q, k, v, return_lse=True, **opts)
    want, want_lse = attention_ref(q, k, v, **opts)
    assert out.dtype == np.float32 and out.shape == q.shape
    assert np.isfinite(out).all()
    assert _max_err(out, want) <= F32_BOUND
    assert _lse_err(lse, want_lse) <= 1e-4


@given(problems(max_d=64))
def test_float16_inputs(problem):
    q, k, v, opts = problem
    q, k, v = (x.astype(np.float16) for x in (q, k, v))
    want, _ = attention_ref(q, k, v, **opts)
    assert _max_err(fastquant.attention(q, k, v, **opts), want) <= F32_BOUND


@given(problems())
def test_every_simd_level_matches_scalar(problem):
    q, k, v, opts = problem
    scalar = fastquant.attention(q, k, v, simd="scalar", **opts)
    for level in SIMD_LEVELS[1:]:
        # Reassociation (and the SIMD exp/tanh, ~1 ulp) only.
        assert _max_err(fastquant.attention(q, k, v, simd=level, **opts), scalar) <= 1e-5, level


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_0"])
@given(data=st.data())
def test_quantized_kv(qtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    hkv = data.draw(st.integers(1, 2))
    hq = hkv * data.draw(st.sampled_from([1, 4]))
    nq, nk = data.draw(st.integers(1, 20)), data.draw(st.integers(1, 150))
    d = data.draw(st.sampled_from([32, 64, 128]))
    causal = data.draw(st.booleans())
    q = rng.standard_normal((1, hq, nq, d), dtype=np.float32)
    k = rng.standard_normal((1, hkv, nk, d), dtype=np.float32)
    v = rng.standard_normal((1, hkv, nk, d), dtype=np.float32)
    kq, vq = fastquant.quantize(k, qtype), fastquant.quantize(v, qtype)
    out = fastquant.attention(q, kq, vq, causal=causal)
    if qtype == "Q8_0" and _q8_decode(hq, hkv, nq):
        exact, _ = attention_ref(_q8_rounded_queries(q), kq.dequantize(), vq.dequantize(), causal=causal, scale=1.0)
    else:
        exact, _ = attention_ref(q, kq.dequantize(), vq.dequantize(), causal=causal)
    assert _max_err(out, exact) <= F32_BOUND
    unquantized, _ = attention_ref(q, k, v, causal=causal)
    assert _max_err(out, unquantized) <= QUANT_BOUNDS[qtype]
    for level in SIMD_LEVELS:
        assert _max_err(fastquant.attention(q, kq, vq, causal=causal, simd=level), exact) <= F32_BOUND


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hq,hkv,nk", [(1, 1, 3000), (4, 1, 2100), (8, 2, 5000)])
def test_decode_split_over_threads(threads, hq, hkv, nk):
    rng = np.random.default_rng(nk)
    q = rng.standard_normal((1, hq, 1, 64), dtype=np.float32)
    k = rng.standard_normal((1, hkv, nk, 64), dtype=np.float32)
    v = rng.standard_normal((1, hkv, nk, 64), dtype=np.float32)
    mask = np.where(rng.random(nk) < 0.2, -np.inf, 0.0).astype(np.float32)
    old = fastquant.get_num_threads()
    fastquant.set_num_threads(threads)
    try:
        out, lse = fastquant.attention(q, k, v, mask=mask, window=1700, return_lse=True)
    finally:
        fastquant.set_num_threads(old)
    want, want_lse = attention_ref(q, k, v, mask=mask, window=1700)
    assert _max_err(out, want) <= F32_BOUND
    assert _lse_err(lse, want_lse) <= 1e-4


@pytest.mark.skipif(not HAVE_GGML, reason="ggml-python not installed")
@given(data=st.data())
def test_matches_ggml_flash_attn_ext(data):
    """Same inputs through ggml. ggml stores K/V in F16 and accumulates V·softmax in F16 when V is
    F16, so the comparison is against fastquant on the same F16 K/V, within F16 accumulation error."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    b = data.draw(st.integers(1, 2))
    hkv = data.draw(st.integers(1, 2))
    hq = hkv * data.draw(st.sampled_from([1, 2, 4]))
    nq, nk = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 100))
    d = data.draw(st.sampled_from([64, 80, 128]))
    causal = data.draw(st.booleans())
    window = data.draw(st.one_of(st.none(), st.integers(1, 60)))
    softcap = data.draw(st.one_of(st.none(), st.sampled_from([5.0, 30.0])))
    q = rng.standard_normal((b, hq, nq, d), dtype=np.float32)
    k = rng.standard_normal((b, hkv, nk, d), dtype=np.float32).astype(np.float16)
    v = rng.standard_normal((b, hkv, nk, d), dtype=np.float32).astype(np.float16)
    scale = 1.0 / np.sqrt(d)
    mask = causal_window_mask(nq, nk, causal, window)
    theirs = flash_attn_ext(q, k, v, scale=scale, mask=mask, softcap=softcap or 0.0)
    ours = fastquant.attention(q, k, v, causal=causal, window=window, softcap=softcap)
    # ggml gives NaN-free zeros for fully masked rows too.
    assert _max_err(ours, theirs.astype(np.float64)) <= 5e-3


@pytest.mark.skipif(not HAVE_GGML, reason="ggml-python not installed")
def test_matches_ggml_with_q8_0_kv():
    """ggml quantizes Q to Q8_0 for its vec_dot with Q8_0 keys; fastquant keeps Q in f32."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((1, 8, 3, 128), dtype=np.float32)
    k = rng.standard_normal((1, 2, 300, 128), dtype=np.float32)
    v = rng.standard_normal((1, 2, 300, 128), dtype=np.float32)
    theirs = flash_attn_ext(q, k, v, scale=128**-0.5, kv_type=Q8_0)
    ours = fastquant.attention(q, fastquant.quantize(k, "Q8_0"), fastquant.quantize(v, "Q8_0"))
    assert _max_err(ours, theirs.astype(np.float64)) <= 2e-2


def test_fully_masked_rows_and_empty_keys_give_zeros():
    rng = np.random.default_rng(1)
    q = rng.standard_normal((1, 2, 4, 8), dtype=np.float32)
    k = rng.standard_normal((1, 1, 5, 8), dtype=np.float32)
    mask = np.zeros((4, 5), np.float32)
    mask[1] = -np.inf
    out, lse = fastquant.attention(q, k, k, mask=mask, return_lse=True)
    assert (out[:, :, 1] == 0).all() and np.isneginf(lse[:, :, 1]).all()
    assert np.isfinite(out).all() and (out[:, :, 0] != 0).any()
    empty = np.zeros((1, 1, 0, 8), np.float32)
    out, lse = fastquant.attention(q, empty, empty, return_lse=True)
    assert (out == 0).all() and np.isneginf(lse).all()
    # Causal with more queries than keys: the first Nq - Nk rows see nothing.
    out = fastquant.attention(q, k[:, :, :2], k[:, :, :2], causal=True)
    assert (out[:, :, :2] == 0).all() and (out[:, :, 2:] != 0).any()
    assert fastquant.attention(q[:, :, :0], k, k).shape == (1, 2, 0, 8)


def test_bad_input_raises_clear_errors():
    q = np.zeros((1, 3, 2, 8), np.float32)
    k = np.zeros((1, 2, 4, 8), np.float32)
    with pytest.raises(ShapeError, match="not a multiple of the 2 key/value heads"):
        fastquant.attention(q, k, k)
    with pytest.raises(ShapeError, match=r"q must have shape \[B, Hq, Nq, D\]"):
        fastquant.attention(q[0], k, k)
    with pytest.raises(ShapeError, match="same shape"):
        fastquant.attention(q[:, :2], k, k[:, :, :3])
    with pytest.raises(ShapeError, match="head dimension"):
        fastquant.attention(q[:, :2], k[..., :4], k[..., :4])
    with pytest.raises(TypeError, match="float32 or float16"):
        fastquant.attention(q.astype(np.float64), k, k)
    with pytest.raises(TypeError, match="numpy array or a QuantizedTensor"):
        fastquant.attention(q[:, :2], k.tolist(), k)
    with pytest.raises(TypeError, match="must be one of F16, Q8_0, Q4_0"):
        k32 = np.zeros((1, 2, 4, 32), np.float32)
        fastquant.attention(np.zeros((1, 2, 2, 32), np.float32), fastquant.quantize(k32, "Q5_0"), k32)
    with pytest.raises(ShapeError, match="does not broadcast"):
        fastquant.attention(q[:, :2], k, k, mask=np.zeros((3, 4), np.float32))
    with pytest.raises(TypeError, match="additive float mask"):
        fastquant.attention(q[:, :2], k, k, mask=np.ones((2, 4), bool))
    with pytest.raises(InvalidArgumentError, match="window"):
        fastquant.attention(q[:, :2], k, k, window=0)
    with pytest.raises(InvalidArgumentError, match="softcap"):
        fastquant.attention(q[:, :2], k, k, softcap=-1.0)
    with pytest.raises(InvalidArgumentError, match="scale"):
        fastquant.attention(q[:, :2], k, k, scale=float("nan"))
    with pytest.raises(fastquant.SimdError):
        fastquant.attention(q[:, :2], k, k, simd="sse9")


def test_non_contiguous_inputs_are_accepted():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((1, 2, 16, 6), dtype=np.float32)[:, :, ::2]
    k = rng.standard_normal((1, 2, 6, 9), dtype=np.float32)[..., ::2][..., :5]
    q = q[..., :5]
    want, _ = attention_ref(q, k, k)
    with pytest.warns(fastquant.CopyWarning, match="not C-contiguous"):  # copied once, and said so
        got = fastquant.attention(q, k, k)
    assert _max_err(got, want) <= F32_BOUND


@pytest.mark.parametrize("qtype", ["F16", "Q8_0", "Q4_0"])
def test_kv_cache_pages_match_one_tensor(qtype):
    rng = np.random.default_rng(3)
    d, hkv, hq, total = 64, 2, 8, 23
    k = rng.standard_normal((1, hkv, total, d), dtype=np.float32)
    v = rng.standard_normal((1, hkv, total, d), dtype=np.float32)
    cache = KVCache(hkv, d, qtype, page_size=8)
    for a, z in [(0, 3), (3, 11), (11, 12), (12, 23)]:
        cache.append(k[:, :, a:z], v[:, :, a:z])
    assert len(cache) == total and cache.n_pages == 3
    kq, vq = fastquant.quantize(k, qtype), fastquant.quantize(v, qtype)
    kd, vd = kq.dequantize(), vq.dequantize()
    mask = np.where(rng.random((5, total)) < 0.2, -np.inf, rng.standard_normal((5, total))).astype(np.float32)
    for opts in [dict(), dict(causal=True), dict(causal=True, window=6), dict(mask=mask, softcap=10.0)]:
        q = rng.standard_normal((1, hq, 5, d), dtype=np.float32)
        out, lse = cache.attend(q, return_lse=True, **opts)
        want, want_lse = attention_ref(q, kd, vd, **opts)
        assert _max_err(out, want) <= F32_BOUND, opts
        assert _lse_err(lse, want_lse) <= 1e-4
    # Decoding one token at a time: the newest query sees every position.
    q1 = rng.standard_normal((1, hq, 1, d), dtype=np.float32)
    if qtype == "Q8_0":  # the int8 decode path (see the module docs)
        want, _ = attention_ref(_q8_rounded_queries(q1), kd, vd, scale=1.0)
    else:
        want, _ = attention_ref(q1, kd, vd)
    assert _max_err(cache.attend(q1, causal=True), want) <= F32_BOUND


def test_kv_cache_errors_and_empty():
    cache = KVCache(2, 64, "Q8_0", page_size=4)
    assert (cache.attend(np.ones((1, 4, 1, 64), np.float32)) == 0).all()
    with pytest.raises(ShapeError):
        cache.append(np.zeros((1, 3, 1, 64), np.float32), np.zeros((1, 3, 1, 64), np.float32))
    with pytest.raises(ShapeError):
        cache.attend(np.ones((1, 3, 1, 64), np.float32))
    with pytest.raises(InvalidArgumentError):
        KVCache(2, 64, "Q6_K")
    with pytest.raises(fastquant.QuantTypeError):
        KVCache(2, 48, "Q4_0")
