"""numpy float64 reference of fastquant.matmul and its documented error bound.

fastquant.matmul computes ``x @ dequantize(w).T`` with the activations quantized per row to the
8-bit type the weight pairs with (Q8_0 / Q8_1 for 32-element blocks, Q8_K for 256), exactly as
ggml does. The difference to the float64 product of the unquantized activations is bounded by:

* the activation rounding: in a block of x with largest magnitude ``amax``, each value moves by at
  most half a step, ``amax / 254``, plus the fp16 rounding of the Q8_0/Q8_1 scale (relative
  ``2**-11`` of ``amax``): summed as ``sum_t |w_jt| * e_t``;
* Q8_1's fp16 ``s = d * sum(q)`` (relative ``2**-11``), multiplied by the weight's block offset ``m``;
* the f32 accumulation: ``2e-5 * sum_t |x_t w_jt|`` (the sums run over at most a few thousand
  block terms in eight partial sums).

Float weights (F32/F16/BF16) meet f32 activations unquantized: only the accumulation term applies.
"""

from __future__ import annotations

import numpy as np

ACT_BLOCK = {"Q8_0": 32, "Q8_1": 32, "Q8_K": 256}

# The activation type of each weight type, as ggml pairs them.
ACTIVATION_TYPE = {
    **{t: "Q8_0" for t in ("Q4_0", "Q5_0", "Q8_0", "IQ4_NL", "MXFP4")},
    **{t: "Q8_1" for t in ("Q4_1", "Q5_1")},
    **{t: "Q8_K" for t in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS", "TQ1_0", "TQ2_0")},
    **{t: None for t in ("F32", "F16", "BF16")},
}


def reference_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """float64 ``x @ w.T`` of x [..., K] and the dequantized weight w [N, K]."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T


def error_bound(x: np.ndarray, w: np.ndarray, weight_type: str) -> np.ndarray:
    """Per output element, the largest |fastquant.matmul - reference_matmul| the module docs allow."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, w.shape[1])
    w = np.asarray(w, dtype=np.float64)
    aw = np.abs(w)
    bound = 2e-5 * (np.abs(x) @ aw.T) + 1e-30
    act = ACTIVATION_TYPE[weight_type]
    if act is None:
        return bound
    block = ACT_BLOCK[act]
    rows, k = x.shape
    amax = np.abs(x).reshape(rows, k // block, block).max(axis=2)
    step = amax * (1 / 254 + 2.0**-10)
    e = np.repeat(step, block, axis=1)  # per element of x
    bound = bound + e @ aw.T
    if act == "Q8_1":
        # |m| <= max |w| of the row; |s| <= sum |x| of the block (summed over blocks: of the row).
        bound = bound + 2.0**-10 * np.abs(x).sum(axis=1)[:, None] * aw.max(axis=1)[None, :]
    return bound
