"""Flash attention on the CPU: :func:`attention` and a paged, quantized :class:`KVCache`.

>>> import numpy as np, fastquant
>>> rng = np.random.default_rng(0)
>>> q = rng.standard_normal((1, 8, 5, 64), dtype=np.float32)
>>> k = rng.standard_normal((1, 2, 9, 64), dtype=np.float32)
>>> v = rng.standard_normal((1, 2, 9, 64), dtype=np.float32)
>>> fastquant.attention(q, k, v, causal=True).shape
(1, 8, 5, 64)
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple, Union

import numpy as np

from . import _core
from ._arrays import as_input, ready_input, view_input
from .errors import InvalidArgumentError, ShapeError
from .quant import _KINDS, QuantizedTensor, quantize
from .types import QuantType, QuantTypeLike, as_quant_type

__all__ = ["attention", "KVCache"]

KV = Union[np.ndarray, QuantizedTensor]

# Block types a key/value tensor may come in (the KV-cache types llama.cpp offers).
_KV_TYPES = (QuantType.F16, QuantType.Q8_0, QuantType.Q4_0)


_FLOATS = (np.float32, np.float16)


def _float_array(x: Any, name: str, dims: str, also: str = "") -> np.ndarray:
    """A view of ``x``'s memory as a float32/float16 array of 4 dimensions, or a clear error.
    Not yet contiguous: callers check shapes first, then :func:`_flat` copies if it must."""
    x = view_input(x, _FLOATS, what=name, sequences=False,
                   kinds=f"a numpy array{also} (or an array-like exporting its memory)")  # fmt: skip
    if x.ndim != 4:
        raise ShapeError(f"{name} must have shape {dims}, got {x.shape}")
    return x


def _flat(x: Any, name: str) -> Any:
    """The flat buffer the core reads: block bytes as they are, a float array made contiguous
    (a CopyWarning if that copies) with float16 as its uint16 bits."""
    if x.dtype == np.uint8:
        return x
    flat = ready_input(x, _FLOATS, what=name).reshape(-1)
    return flat.view(np.uint16) if flat.dtype == np.float16 else flat


def _query(q: Any) -> np.ndarray:
    return _float_array(q, "q", "[B, Hq, Nq, D]")


def _kv(x: Any, name: str) -> Tuple[Any, int, Tuple[int, ...]]:
    """(the data, ggml type id, shape) of a key or value tensor; the data is a QuantizedTensor's
    block bytes or a float view for :func:`_flat`."""
    if isinstance(x, QuantizedTensor):
        if x.qtype not in _KV_TYPES:
            names = ", ".join(t.value for t in _KV_TYPES)
            raise TypeError(f"{name}: a quantized key/value tensor must be one of {names}, not {x.qtype.value}")
        if x.ndim != 4:
            raise ShapeError(f"{name} must have shape [B, Hkv, Nk, D], got {x.shape}")
        return x.data, x.qtype.id, x.shape
    x = _float_array(x, name, "[B, Hkv, Nk, D]", " or a QuantizedTensor")
    return x, (QuantType.F16 if x.dtype == np.float16 else QuantType.F32).id, x.shape


def _mask(mask: Any, full: Tuple[int, int, int, int]) -> Tuple[np.ndarray, List[int]]:
    """The mask as a contiguous float32 array of 4 dims, each 1 or the full size (a view of the
    caller's memory when it is contiguous float32; other float dtypes are converted, warning)."""
    try:
        m = as_input(mask, [np.float32], what="mask", convert=np.float32)
    except TypeError as exc:
        raise TypeError(
            f"mask must be an additive float mask (0 to keep, -inf to drop): {exc}; for a boolean "
            "keep-mask use np.where(keep, np.float32(0), np.float32(-np.inf))"
        ) from None
    if m.ndim > 4:
        raise ShapeError(f"mask has {m.ndim} dimensions; it must broadcast to [B, Hq, Nq, Nk] = {list(full)}")
    dims = [1] * (4 - m.ndim) + list(m.shape)
    for axis, (got, want) in enumerate(zip(dims, full)):
        if got not in (1, want):
            raise ShapeError(f"mask of shape {m.shape} does not broadcast to [B, Hq, Nq, Nk] = {list(full)} (axis {axis})")
    return m.reshape(dims), dims


def _check_options(scale: Optional[float], window: Optional[int], softcap: Optional[float]) -> None:
    if scale is not None and not np.isfinite(scale):
        raise InvalidArgumentError(f"scale must be finite, got {scale}")
    if window is not None and (int(window) != window or window < 1):
        raise InvalidArgumentError(f"window must be a positive number of keys, got {window}")
    if softcap is not None and not (np.isfinite(softcap) and softcap > 0):
        raise InvalidArgumentError(f"softcap must be a positive finite number, got {softcap}")


def _run(
    q: np.ndarray,
    k: Tuple[Any, int, Tuple[int, ...]],
    v: Tuple[Any, int, Tuple[int, ...]],
    n_keys: int,
    *,
    causal: bool,
    scale: Optional[float],
    mask: Optional[Tuple[np.ndarray, List[int]]],
    window: Optional[int],
    softcap: Optional[float],
    want_lse: bool,
    kv_head_stride: Optional[int] = None,
    query_offset: Optional[int] = None,
    simd: Optional[str] = None,
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    b, hq, nq, d = q.shape
    hkv = k[2][1]
    out = np.empty((b, hq, nq, d), dtype=np.float32)
    lse = np.empty((b, hq, nq), dtype=np.float32) if want_lse else None
    mask_flat, mask_dims = (None, None) if mask is None else (mask[0].reshape(-1), mask[1])
    q_type = (QuantType.F16 if q.dtype == np.float16 else QuantType.F32).id
    _core.attention(
        _flat(q, "q"),
        q_type,
        _flat(k[0], "k"),
        k[1],
        _flat(v[0], "v"),
        v[1],
        (b, hq, hkv, nq, n_keys, d),
        out.reshape(-1),
        None if lse is None else lse.reshape(-1),
        causal=bool(causal),
        scale=None if scale is None else float(scale),
        mask=mask_flat,
        mask_dims=mask_dims,
        window=None if window is None else int(window),
        softcap=None if softcap is None else float(softcap),
        kv_head_stride=kv_head_stride,
        query_offset=query_offset,
        simd=simd,
    )
    return out, lse


def attention(
    q: np.ndarray,
    k: KV,
    v: KV,
    *,
    causal: bool = False,
    scale: Optional[float] = None,
    mask: Any = None,
    window: Optional[int] = None,
    softcap: Optional[float] = None,
    return_lse: bool = False,
    simd: Optional[str] = None,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """``softmax(q kᵀ · scale + mask) v`` by tiled flash attention (float32 accumulation, never the
    full score matrix).

    Parameters
    ----------
    q
        ``[B, Hq, Nq, D]`` float32 or float16.
    k, v
        ``[B, Hkv, Nk, D]`` float32 or float16 arrays, or :class:`QuantizedTensor` of that shape in
        F16, Q8_0 or Q4_0 (D a multiple of 32 for the block types). ``Hq`` must be a multiple of
        ``Hkv`` (GQA; MQA when ``Hkv == 1``).
    causal
        Query ``i`` sees keys ``j <= i + Nk - Nq`` (queries aligned to the end of the keys, as in
        decoding with a cache).
    scale
        Multiplies the scores; ``1/sqrt(D)`` by default.
    mask
        Additive float mask broadcastable to ``[B, Hq, Nq, Nk]`` (``-inf`` drops a key).
    window
        Sliding window: query ``i`` sees only keys ``j > i + Nk - Nq - window``; with ``causal``,
        the last ``window`` keys up to its own position.
    softcap
        Scores become ``softcap * tanh(score / softcap)`` (after ``scale``, before ``mask``).
    return_lse
        Also return the log-sum-exp of each row's final scores, ``[B, Hq, Nq]`` float32.
    simd
        Run at this SIMD level instead of the process-wide one.

    Returns float32 ``[B, Hq, Nq, D]`` (and the log-sum-exp). A row whose keys are all masked
    gives zeros (and a log-sum-exp of ``-inf``), never NaN.
    """
    q = _query(q)
    kk, vv = _kv(k, "k"), _kv(v, "v")
    b, hq, nq, d = q.shape
    kb, hkv, nk, kd = kk[2]
    if vv[2] != kk[2]:
        raise ShapeError(f"k and v must have the same shape, got {kk[2]} and {vv[2]}")
    if kb != b or kd != d:
        raise ShapeError(f"k/v shape {kk[2]} does not match q shape {q.shape} (batch and head dimension D must agree)")
    if hkv == 0 or hq % hkv:
        raise ShapeError(f"q has {hq} heads, which is not a multiple of the {hkv} key/value heads")
    _check_options(scale, window, softcap)
    mask4 = None if mask is None else _mask(mask, (b, hq, nq, nk))
    out, lse = _run(
        q, kk, vv, nk, causal=causal, scale=scale, mask=mask4, window=window, softcap=softcap,
        want_lse=return_lse, simd=simd,
    )  # fmt: skip
    return (out, lse) if return_lse else out


class KVCache:
    """One layer's key/value cache for decoding: rows are quantized as they are appended and stored
    in fixed-size pages, so growing never copies what is already there.

    >>> import numpy as np, fastquant
    >>> cache = fastquant.KVCache(n_kv_heads=2, head_dim=64, qtype="Q8_0", page_size=4)
    >>> rng = np.random.default_rng(0)
    >>> cache.append(rng.standard_normal((1, 2, 6, 64), dtype=np.float32),
    ...              rng.standard_normal((1, 2, 6, 64), dtype=np.float32))
    >>> len(cache), cache.n_pages
    (6, 2)
    >>> cache.attend(rng.standard_normal((1, 8, 1, 64), dtype=np.float32)).shape
    (1, 8, 1, 64)
    """

    def __init__(
        self, n_kv_heads: int, head_dim: int, qtype: QuantTypeLike = "F16", *, batch: int = 1, page_size: int = 1024
    ) -> None:
        self.qtype = as_quant_type(qtype)
        if self.qtype not in _KV_TYPES:
            names = ", ".join(t.value for t in _KV_TYPES)
            raise InvalidArgumentError(f"KVCache type must be one of {names}, not {self.qtype.value}")
        if min(n_kv_heads, head_dim, batch, page_size) < 1:
            raise InvalidArgumentError("n_kv_heads, head_dim, batch and page_size must all be at least 1")
        self.row_bytes = self.qtype.row_bytes(head_dim)  # raises for a D that is not whole blocks
        self.n_kv_heads, self.head_dim, self.batch, self.page_size = n_kv_heads, head_dim, batch, page_size
        # Each page: [B * Hkv, page_size, row_bytes] for keys and for values.
        self._pages: List[Tuple[np.ndarray, np.ndarray]] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def n_pages(self) -> int:
        return len(self._pages)

    @property
    def nbytes(self) -> int:
        return sum(k.nbytes + v.nbytes for k, v in self._pages)

    def _rows(self, x: Any, name: str) -> np.ndarray:
        x = view_input(x, _KINDS, what=name, sequences=False,
                       kinds="a numpy array (or an array-like exporting its memory)")  # fmt: skip
        want = (self.batch, self.n_kv_heads)
        if x.ndim != 4 or x.shape[:2] != want or x.shape[3] != self.head_dim:
            raise ShapeError(f"{name} must have shape [{want[0]}, {want[1]}, T, {self.head_dim}], got {x.shape}")
        return x

    def _quantize_rows(self, x: np.ndarray) -> np.ndarray:
        """``x`` [B, Hkv, T, D] as blocks [B * Hkv, T, row_bytes]. Rows are quantized independently,
        so all T positions go at once, read in place: the whole array when it is contiguous, else
        each (batch, head) slab, which is contiguous when ``x`` is a range of positions cut from a
        larger contiguous cache or projection (``k[:, :, a:b]``); only a slab that is not is copied
        (with a CopyWarning)."""
        b, h, t, _ = x.shape
        if x.flags.c_contiguous:
            return quantize(x, self.qtype).data.reshape(b * h, t, self.row_bytes)
        out = np.empty((b * h, t, self.row_bytes), np.uint8)
        for i in range(b):
            for j in range(h):
                out[i * h + j] = quantize(x[i, j], self.qtype).data.reshape(t, self.row_bytes)
        return out

    def append(self, k: Any, v: Any) -> None:
        """Appends ``T`` new positions: k and v of shape ``[B, Hkv, T, D]`` (float32/float16
        numpy arrays or array-likes exporting their memory, read in place when contiguous)."""
        k, v = self._rows(k, "k"), self._rows(v, "v")
        if k.shape != v.shape:
            raise ShapeError(f"k and v must have the same shape, got {k.shape} and {v.shape}")
        t, done = k.shape[2], 0
        if t == 0:
            return
        blocks = [self._quantize_rows(src) for src in (k, v)]
        while done < t:
            fill = self._len % self.page_size
            if fill == 0:
                shape = (self.batch * self.n_kv_heads, self.page_size, self.row_bytes)
                self._pages.append((np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)))
            n = min(self.page_size - fill, t - done)
            for src_blocks, page in zip(blocks, self._pages[-1]):
                page[:, fill : fill + n] = src_blocks[:, done : done + n]
            done += n
            self._len += n

    def attend(
        self,
        q: np.ndarray,
        *,
        causal: bool = False,
        scale: Optional[float] = None,
        mask: Any = None,
        window: Optional[int] = None,
        softcap: Optional[float] = None,
        return_lse: bool = False,
    ) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
        """:func:`attention` of ``q`` (``[B, Hq, Nq, D]``) over every cached position; ``causal``
        aligns the queries to the newest positions. Pages are attended one by one and merged by
        their log-sum-exp."""
        q = _query(q)
        b, hq, nq, d = q.shape
        if b != self.batch or d != self.head_dim or hq % self.n_kv_heads:
            raise ShapeError(
                f"q of shape {q.shape} does not fit a cache of batch {self.batch}, {self.n_kv_heads} kv heads, D={self.head_dim}"
            )
        _check_options(scale, window, softcap)
        q = ready_input(q, _FLOATS, what="q")  # once, not per page
        if mask is not None:
            m, m_dims = _mask(mask, (b, hq, nq, self._len))  # shape check against the whole cache
        outs, lses = [], []
        for p, (kp, vp) in enumerate(self._pages):
            start = p * self.page_size
            n = min(self.page_size, self._len - start)
            page_mask = None
            if mask is not None:
                # Each page's keys are a column range of the mask: a (small) contiguous copy the
                # kernel can read, unless the mask broadcasts along the keys.
                cols = m if m_dims[-1] == 1 else np.ascontiguousarray(m[..., start : start + n])
                page_mask = (cols, list(cols.shape))
            shape = (b, self.n_kv_heads, n, d)
            out, lse = _run(
                q, (kp.reshape(-1), self.qtype.id, shape), (vp.reshape(-1), self.qtype.id, shape), n,
                causal=causal, scale=scale, mask=page_mask, window=window, softcap=softcap, want_lse=True,
                kv_head_stride=self.page_size, query_offset=self._len - nq - start,
            )  # fmt: skip
            outs.append(out)
            lses.append(lse)
        if not outs:
            out = np.zeros((b, hq, nq, d), np.float32)
            lse = np.full((b, hq, nq), -np.inf, np.float32)
        elif len(outs) == 1:
            out, lse = outs[0], lses[0]
        else:
            out, lse = _merge(outs, lses)
        return (out, lse) if return_lse else out


def _merge(outs: List[np.ndarray], lses: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Combines attention over disjoint key sets from each part's output and log-sum-exp."""
    lse = np.stack(lses)
    top = lse.max(axis=0)
    safe_top = np.where(np.isfinite(top), top, 0.0)
    w = np.exp(lse - safe_top)  # 0 for parts where a row saw no key
    total = w.sum(axis=0)
    scale = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    out = np.einsum("p...,p...d->...d", scale, np.stack(outs)).astype(np.float32)
    with np.errstate(divide="ignore"):
        merged = np.where(total > 0, safe_top + np.log(total), -np.inf).astype(np.float32)
    return out, merged
