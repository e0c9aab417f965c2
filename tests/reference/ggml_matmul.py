"""ggml's own ``ggml_mul_mat`` through ggml-python: the oracle and benchmark peer of fastquant.matmul.

A :class:`GgmlMatmul` builds the graph once for a weight [N, K] (raw ggml blocks, shared with the
caller's numpy array, no copy) and activations [M, K] float32, and computes ``x @ W.T`` into a
numpy array with ``ggml_graph_compute`` on ``n_threads`` threads (``ggml_graph_plan`` sizes the
work buffer, a numpy array kept between calls). ggml quantizes the
activations to its ``vec_dot_type`` itself, as it does in llama.cpp.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .ggml_oracle import ggml


class GgmlMatmul:
    """``y = x @ W.T`` by ggml for a fixed weight and a fixed number of activation rows."""

    def __init__(self, weight: np.ndarray, type_id: int, n: int, k: int, m: int) -> None:
        self.weight = np.ascontiguousarray(weight, dtype=np.uint8)  # kept alive: ggml points into it
        self.x = np.zeros((m, k), dtype=np.float32)
        self.y = np.zeros((m, n), dtype=np.float32)
        # The context holds only tensor headers and the graph; the data are numpy arrays, and the
        # work buffer (ggml's quantized activations) is sized by ggml_graph_plan per thread count.
        mem = 8 * ggml.ggml_tensor_overhead() + ggml.ggml_graph_overhead() + (1 << 16)
        params = ggml.ggml_init_params(mem_size=mem, mem_buffer=None, no_alloc=True)
        self.ctx = ggml.ggml_init(params)
        # ggml's ne order: ne0 is the row length.
        self.w_t = ggml.ggml_new_tensor_2d(self.ctx, type_id, k, n)
        self.x_t = ggml.ggml_new_tensor_2d(self.ctx, ggml.GGML_TYPE_F32, k, m)
        self.y_t = ggml.ggml_mul_mat(self.ctx, self.w_t, self.x_t)
        assert ggml.ggml_nbytes(self.w_t) == self.weight.nbytes, (ggml.ggml_nbytes(self.w_t), self.weight.nbytes)
        self.w_t.contents.data = self.weight.ctypes.data_as(ctypes.c_void_p)
        self.x_t.contents.data = self.x.ctypes.data_as(ctypes.c_void_p)
        self.y_t.contents.data = self.y.ctypes.data_as(ctypes.c_void_p)
        self.graph = ggml.ggml_new_graph(self.ctx)
        ggml.ggml_build_forward_expand(self.graph, self.y_t)
        self.work = np.zeros(0, dtype=np.uint8)

    def __call__(self, x: np.ndarray, n_threads: int = 1) -> np.ndarray:
        """The product for ``x`` [M, K]; the returned array is reused by the next call."""
        self.x[...] = x
        plan = ggml.ggml_graph_plan(self.graph, n_threads, None)
        if plan.work_size > self.work.nbytes:
            self.work = np.zeros(plan.work_size, dtype=np.uint8)
        plan.work_data = self.work.ctypes.data_as(ctypes.POINTER(ctypes.c_ubyte))
        status = ggml.ggml_graph_compute(self.graph, ctypes.byref(plan))
        assert status == 0, f"ggml_graph_compute returned {status}"
        return self.y

    def close(self) -> None:
        if self.ctx is not None:
            ggml.ggml_free(self.ctx)
            self.ctx = None

    def __del__(self) -> None:
        self.close()


def ggml_matmul(x: np.ndarray, weight: np.ndarray, type_id: int, n: int, k: int, n_threads: int = 1) -> np.ndarray:
    """One ``x @ W.T`` by ggml (x [M, K] float32, W raw blocks of [N, K]); returns a new array."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, k)
    mm = GgmlMatmul(weight, type_id, n, k, x.shape[0])
    try:
        return mm(x, n_threads).copy()
    finally:
        mm.close()
