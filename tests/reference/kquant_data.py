"""The data sets the importance-weighted and K-quant tests run on (deterministic per name).

Every case is a float32 ``[rows, K]`` array; every imatrix a float32 ``[K]`` array of positive
weights, optionally with some zeros (llama.cpp's imatrix has zeros for never-activated columns).
"""

from __future__ import annotations

import zlib

import numpy as np

ROWS, K = 4, 512  # two 256-blocks per row; 16 legacy blocks per row


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _student_t_outliers(rng, rows, k):
    x = rng.standard_t(3, size=(rows, k))
    for r in range(rows):
        pos = rng.choice(k, size=3, replace=False)
        x[r, pos] = rng.choice([-1, 1], size=3) * 100 * np.abs(x[r]).max()
    return x


def _mixed_rows(rng, rows, k):
    """All-zero, constant, a zero block in a normal row, a single spike."""
    x = rng.standard_normal((rows, k))
    x[0] = 0.0
    x[1] = -2.75
    x[2, 32:288] = 0.0
    x[3] = 0.0
    x[3, 7] = 3.0
    return x


def _fp16_scale_edges(rng, rows, k):
    """Rows whose K-quant super-scales land near fp16's limits: overflow to inf (Q4_K's d is
    about range/(15*63), so a range near 6e7 reaches 65504), and subnormal scales."""
    mult = np.array([3e7, 6.2e7, 1.2e8, 2e-5, 3e-7, 5e4][:rows] + [1.0] * max(0, rows - 6))
    return rng.standard_normal((rows, k)) * mult[:, None]


CASES = {
    "fp16_scale_edges": _fp16_scale_edges,
    "normal": lambda rng, r, k: rng.standard_normal((r, k)),
    "student_t_outliers": _student_t_outliers,
    "zero_and_constant_rows": _mixed_rows,
    "constant_rows": lambda rng, r, k: np.repeat(rng.standard_normal((r, 1)) * 3, k, axis=1),
    "tiny": lambda rng, r, k: rng.standard_normal((r, k)) * 1e-30,
    "huge": lambda rng, r, k: rng.standard_normal((r, k)) * 1e30,
    "small_ints": lambda rng, r, k: rng.integers(-8, 9, size=(r, k)).astype(np.float64),
    "positive_only": lambda rng, r, k: np.abs(rng.standard_normal((r, k))) + 0.5,
}


def case(name: str, rows: int = ROWS, k: int = K) -> np.ndarray:
    return np.ascontiguousarray(CASES[name](rng_for(name), rows, k), dtype=np.float32)


IMATRICES = {
    "uniform_random": lambda rng, k: rng.uniform(0.01, 10.0, size=k),
    "lognormal": lambda rng, k: np.exp(rng.standard_normal(k) * 2),
    "some_zeros": lambda rng, k: np.where(rng.random(k) < 0.2, 0.0, rng.uniform(0.1, 5.0, size=k)),
    "all_ones": lambda rng, k: np.ones(k),
    "all_zero": lambda rng, k: np.zeros(k),
    "huge_and_tiny": lambda rng, k: np.where(rng.random(k) < 0.5, 1e30, 1e-30) * rng.uniform(0.5, 2.0, size=k),
}


def imatrix(name: str, k: int = K) -> np.ndarray:
    return np.ascontiguousarray(IMATRICES[name](rng_for("imatrix-" + name), k), dtype=np.float32)
