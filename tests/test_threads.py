"""Threads: concurrent Python callers (the GIL is released inside the kernels) and the size of
fastquant's own pool must never change a byte."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastquant as fq
from conftest import FORMATS, SIMD_LEVELS, bits, dequantize_at, ggml_quantize, quantize_at

N_THREADS = 8


def _data(seed: int, shape=(64, 4096)) -> np.ndarray:
    """Heavy-tailed weights; 262k elements, above the size at which fastquant splits a call over its
    pool, so concurrent Python calls also share the pool."""
    rng = np.random.default_rng(seed)
    return (rng.standard_t(5, size=shape) * 0.02).astype(np.float32)


def _run_concurrently(fn, args):
    """Runs ``fn(*a)`` for every ``a`` in ``args`` from N_THREADS threads that start together."""
    barrier = threading.Barrier(N_THREADS)

    def job(a):
        barrier.wait(timeout=60)
        return fn(*a)

    assert len(args) == N_THREADS
    with ThreadPoolExecutor(N_THREADS) as ex:
        return list(ex.map(job, args))


def test_concurrent_quantize_and_dequantize_give_the_serial_results():
    inputs = [_data(seed) for seed in range(N_THREADS)]

    def work(x):
        out = {}
        for qtype in FORMATS:
            qt = fq.quantize(x, qtype)
            out[qtype] = (qt.data.copy(), fq.dequantize(qt).copy(), fq.dequantize(qt, np.float16).copy())
        return out

    serial = [work(x) for x in inputs]
    # The serial results are the real thing (spot check against ggml for one input).
    for qtype in FORMATS:
        assert np.array_equal(serial[0][qtype][0], ggml_quantize(inputs[0], qtype)), qtype
    for _ in range(3):
        concurrent = _run_concurrently(work, [(x,) for x in inputs])
        for i, (got, want) in enumerate(zip(concurrent, serial)):
            for qtype in FORMATS:
                assert np.array_equal(got[qtype][0], want[qtype][0]), f"thread {i} {qtype} bytes"
                assert np.array_equal(bits(got[qtype][1]), bits(want[qtype][1])), f"thread {i} {qtype} f32"
                assert np.array_equal(bits(got[qtype][2]), bits(want[qtype][2])), f"thread {i} {qtype} f16"


def test_concurrent_calls_at_different_simd_levels_do_not_interfere():
    # The per-call level (simd=) is not process state: threads at different levels at the same time
    # each get the (identical) right bytes.
    x = _data(100)
    expected = {qtype: ggml_quantize(x, qtype) for qtype in FORMATS}
    levels = [SIMD_LEVELS[i % len(SIMD_LEVELS)] for i in range(N_THREADS)]

    def work(level):
        return {qtype: quantize_at(x, qtype, level) for qtype in FORMATS}

    for i, got in enumerate(_run_concurrently(work, [(lvl,) for lvl in levels])):
        for qtype in FORMATS:
            assert np.array_equal(got[qtype], expected[qtype]), f"thread {i} at {levels[i]}: {qtype}"


def test_resizing_the_pool_while_other_threads_quantize_is_safe():
    x = _data(200)
    expected = {qtype: ggml_quantize(x, qtype) for qtype in ("Q4_0", "Q8_0", "BF16")}
    stop = threading.Event()
    errors = []

    def resize():
        n = 0
        while not stop.is_set():
            fq.set_num_threads(1 + n % 3)
            n += 1

    def work(_):
        for _ in range(5):
            for qtype, want in expected.items():
                got = fq.quantize(x, qtype).data
                if not np.array_equal(got, want):
                    errors.append(qtype)
        return True

    resizer = threading.Thread(target=resize)
    resizer.start()
    try:
        with ThreadPoolExecutor(N_THREADS - 1) as ex:
            assert all(ex.map(work, range(N_THREADS - 1)))
    finally:
        stop.set()
        resizer.join()
    assert not errors


@pytest.mark.parametrize("qtype", FORMATS)
def test_one_thread_and_two_threads_give_identical_results_on_4m_elements(qtype):
    x = _data(300, shape=(1024, 4096))  # 4M elements
    fq.set_num_threads(1)
    q1 = fq.quantize(x, qtype)
    y1 = q1.dequantize()
    h1 = q1.dequantize(np.float16)
    fq.set_num_threads(2)
    assert fq.get_num_threads() == 2
    q2 = fq.quantize(x, qtype)
    assert np.array_equal(q2.data, q1.data)
    assert np.array_equal(bits(q2.dequantize()), bits(y1))
    assert np.array_equal(bits(q2.dequantize(np.float16)), bits(h1))
    # ... and those bytes are ggml's.
    assert np.array_equal(q1.data, ggml_quantize(x, qtype))


def test_one_row_longer_than_a_task_splits_across_threads_correctly():
    # A single 2M-element row: the work is split inside the row, by blocks.
    x = _data(400, shape=(1, 1 << 21))
    fq.set_num_threads(2)
    for qtype in ("Q4_1", "Q5_0", "Q8_1", "F16"):
        got = fq.quantize(x, qtype).data
        assert np.array_equal(got, ggml_quantize(x, qtype)), qtype
        fq.set_num_threads(1)
        y1 = dequantize_at(got, qtype, x.shape[-1], x.size)
        fq.set_num_threads(2)
        assert np.array_equal(bits(dequantize_at(got, qtype, x.shape[-1], x.size)), bits(y1)), qtype
