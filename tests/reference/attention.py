"""Attention as written in the definition, in float64 numpy: the reference for fastquant.attention.

Materialises the full [B, Hq, Nq, Nk] score matrix, so only for test sizes.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def visible_keys(nq: int, nk: int, causal: bool, window: Optional[int]) -> np.ndarray:
    """[Nq, Nk] bool: which keys each query sees (queries aligned to the end of the keys)."""
    pos = np.arange(nq)[:, None] + (nk - nq)
    j = np.arange(nk)[None, :]
    keep = np.ones((nq, nk), bool)
    if causal:
        keep &= j <= pos
    if window is not None:
        keep &= j > pos - window
    return keep


def attention_ref(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    *,
    causal: bool = False,
    scale: Optional[float] = None,
    mask: Optional[np.ndarray] = None,
    window: Optional[int] = None,
    softcap: Optional[float] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """(output [B, Hq, Nq, D], log-sum-exp [B, Hq, Nq]) in float64; rows with no visible key give
    zeros and -inf."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    b, hq, nq, d = q.shape
    hkv, nk = k.shape[1], k.shape[2]
    group = hq // hkv
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * (1.0 / np.sqrt(d) if scale is None else scale)
    if softcap is not None:
        s = softcap * np.tanh(s / softcap)
    if mask is not None:
        s = s + np.asarray(mask, dtype=np.float64)
    s = np.where(visible_keys(nq, nk, causal, window), s, -np.inf)
    s = np.broadcast_to(s, (b, hq, nq, nk))
    top = s.max(axis=-1, keepdims=True) if nk else np.full((b, hq, nq, 1), -np.inf)
    safe = np.where(np.isfinite(top), top, 0.0)
    w = np.exp(s - safe)
    total = w.sum(axis=-1, keepdims=True)
    out = np.divide(w, total, out=np.zeros_like(w), where=total > 0) @ v
    with np.errstate(divide="ignore"):
        lse = np.where(total > 0, safe + np.log(total), -np.inf)[..., 0]
    return out, lse
