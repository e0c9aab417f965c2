"""ggml's ``ggml_flash_attn_ext`` as a test oracle and benchmark peer (ggml-python graph).

Layouts: ggml lists dimensions innermost first (``ne``), so a numpy array ``[B, H, N, D]`` is a
ggml tensor with ``ne = [D, N, H, B]``: q and k/v go in as they are. The result comes back as
``ne = [D, Hq, Nq, B]`` (heads and queries swapped), i.e. numpy ``[B, Nq, Hq, D]``. The CPU kernel
wants K and V in F16 (or a block type with a vec_dot: Q8_0, Q4_0) and an F16 mask ``[Nq_pad, Nk]``
with ``Nq_pad`` the query count rounded up to ``GGML_KQ_MASK_PAD``; the mask broadcasts over heads
and batch here.
"""

from __future__ import annotations

import ctypes
from typing import Optional

import numpy as np

from .attention import visible_keys
from .ggml_oracle import HAVE_GGML, ggml, quantize

F16, Q8_0, Q4_0 = 1, 8, 2  # ggml type ids


def causal_window_mask(nq: int, nk: int, causal: bool, window: Optional[int]) -> Optional[np.ndarray]:
    """The additive [Nq, Nk] mask of fastquant's ``causal``/``window`` (queries end-aligned)."""
    if not causal and window is None:
        return None
    return np.where(visible_keys(nq, nk, causal, window), 0.0, -np.inf).astype(np.float32)


class FlashAttnExt:
    """One ggml graph computing ``ggml_flash_attn_ext(q, k, v, mask)``; build once, then
    :meth:`compute` as often as needed (what the benchmark times) and read :meth:`result`."""

    def __init__(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        *,
        scale: float,
        mask: Optional[np.ndarray] = None,
        softcap: float = 0.0,
        kv_type: int = F16,
    ) -> None:
        assert HAVE_GGML
        b, hq, nq, d = q.shape
        _, hkv, nk, _ = k.shape
        nq_pad = -(-nq // ggml.GGML_KQ_MASK_PAD) * ggml.GGML_KQ_MASK_PAD
        kv_bytes = [self._kv_bytes(x, kv_type) for x in (k, v)]
        data = q.nbytes + sum(x.nbytes for x in kv_bytes) + nq_pad * nk * 2 + q.nbytes
        params = ggml.ggml_init_params(
            mem_size=data + 16 * ggml.ggml_tensor_overhead() + ggml.ggml_graph_overhead() + (64 << 20),
            mem_buffer=None,
        )
        self._ctx = ggml.ggml_init(params)
        self._shape = (b, hq, nq, d)
        tq = ggml.ggml_new_tensor_4d(self._ctx, 0, d, nq, hq, b)
        tk = ggml.ggml_new_tensor_4d(self._ctx, kv_type, d, nk, hkv, b)
        tv = ggml.ggml_new_tensor_4d(self._ctx, kv_type, d, nk, hkv, b)
        self._fill(tq, np.ascontiguousarray(q, dtype=np.float32))
        self._fill(tk, kv_bytes[0])
        self._fill(tv, kv_bytes[1])
        tm = None
        if mask is not None:
            m = np.zeros((nq_pad, nk), np.float16)
            m[:nq] = mask.astype(np.float16)
            tm = ggml.ggml_new_tensor_4d(self._ctx, F16, nk, nq_pad, 1, 1)
            self._fill(tm, m)
        self._out = ggml.ggml_flash_attn_ext(self._ctx, tq, tk, tv, tm, scale, 0.0, softcap)
        ggml.ggml_flash_attn_ext_set_prec(self._out, ggml.GGML_PREC_F32)
        self._graph = ggml.ggml_new_graph(self._ctx)
        ggml.ggml_build_forward_expand(self._graph, self._out)

    @staticmethod
    def _kv_bytes(x: np.ndarray, kv_type: int) -> np.ndarray:
        if kv_type == F16:
            return np.ascontiguousarray(x, dtype=np.float16).view(np.uint8).reshape(-1)
        return quantize(x.reshape(-1, x.shape[-1]), kv_type)

    @staticmethod
    def _fill(t, a: np.ndarray) -> None:
        assert ggml.ggml_nbytes(t) == a.nbytes, (ggml.ggml_nbytes(t), a.nbytes)
        ctypes.memmove(ggml.ggml_get_data(t), a.ctypes.data, a.nbytes)

    def compute(self, n_threads: int = 1) -> None:
        ggml.ggml_graph_compute_with_ctx(self._ctx, self._graph, n_threads)

    def result(self) -> np.ndarray:
        b, hq, nq, d = self._shape
        buf = (ctypes.c_float * (b * nq * hq * d)).from_address(ggml.ggml_get_data(self._out))
        return np.frombuffer(buf, np.float32).reshape(b, nq, hq, d).transpose(0, 2, 1, 3).copy()

    def __del__(self) -> None:
        if getattr(self, "_ctx", None) is not None:
            ggml.ggml_free(self._ctx)
            self._ctx = None


def flash_attn_ext(q, k, v, *, scale, mask=None, softcap=0.0, kv_type=F16, n_threads=1) -> np.ndarray:
    """``ggml_flash_attn_ext`` once: [B, Hq, Nq, D] float32."""
    fa = FlashAttnExt(q, k, v, scale=scale, mask=mask, softcap=softcap, kv_type=kv_type)
    fa.compute(n_threads)
    return fa.result()
