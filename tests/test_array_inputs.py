"""Arrays from other libraries (fastquant._arrays): read in place when the layout allows, copied
once with a CopyWarning when it does not, and ``out=`` written in place or refused.

Zero-copy is proven, not assumed: a spy on the native entry records the buffers it received and
``np.shares_memory`` checks them against the caller's memory; ``out=`` is proven by reading the
result back through the caller's own object.
"""

import array
import ctypes
import warnings

import ml_dtypes
import numpy as np
import pytest

import fastquant as fq
from fastquant import _core


# ------------------------------------------------------------------------------------------------
# Foreign array-likes built over memory we own, so sharing can be checked
# ------------------------------------------------------------------------------------------------


class OnlyArrayInterface:
    """Exports memory only through ``__array_interface__`` (as many C extensions do)."""

    def __init__(self, base):
        self._base = base  # keeps the memory alive
        self.__array_interface__ = base.__array_interface__


class OnlyDlpack:
    """Exports memory only through DLPack (as a torch CPU tensor or a JAX array does)."""

    def __init__(self, base):
        self._base = base

    def __dlpack__(self, **kwargs):
        return self._base.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._base.__dlpack_device__()


class ArrayMethodThatCopies:
    """Has only ``__array__``, and it refuses to give a view (like QuantizedTensor)."""

    def __init__(self, base):
        self._base = base

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("no view available")
        return self._base.copy()


def _ctypes_over(base):
    return (ctypes.c_float * base.size).from_buffer(base)


def _foreign(kind, base):
    """A ``kind`` object whose memory is ``base``'s (a C-contiguous float32 array)."""
    if kind == "memoryview":
        return memoryview(base)
    if kind == "ctypes":
        return _ctypes_over(base.reshape(-1)) if base.ndim == 1 else memoryview(base)
    if kind == "array_interface":
        return OnlyArrayInterface(base)
    if kind == "dlpack":
        return OnlyDlpack(base)
    raise AssertionError(kind)


FOREIGN = ["memoryview", "ctypes", "array_interface", "dlpack"]


@pytest.fixture
def spy(monkeypatch):
    """spy("quantize") records the positional arguments of every call to _core.quantize."""
    def install(name):
        real, calls = getattr(_core, name), []

        def wrapper(*args, **kwargs):
            calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(_core, name, wrapper)
        return calls

    return install


@pytest.fixture(autouse=True)
def copies_are_errors():
    """Any CopyWarning a test does not expect fails it."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", fq.CopyWarning)
        yield


def _x(shape=(4, 64), seed=0):
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


# ------------------------------------------------------------------------------------------------
# Zero-copy inputs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", FOREIGN)
def test_quantize_reads_foreign_memory_in_place(kind, spy):
    base = _x((256,)) if kind == "ctypes" else _x()
    calls = spy("quantize")
    got = fq.quantize(_foreign(kind, base), "Q8_0")
    assert np.shares_memory(calls[0][0], base)
    want = fq.quantize(base.copy(), "Q8_0")
    assert got.shape == base.shape and bytes(got.data) == bytes(want.data)


def test_quantize_reads_array_array_in_place(spy):
    values = _x((64,))
    buf = array.array("f", values.tobytes())
    calls = spy("quantize")
    got = fq.quantize(buf, "Q4_0")
    assert np.shares_memory(calls[0][0], np.frombuffer(buf, np.float32))
    assert bytes(got.data) == bytes(fq.quantize(values, "Q4_0").data)


def test_read_only_memory_is_read_in_place(spy):
    raw = _x().tobytes()  # immutable bytes
    view = memoryview(raw).cast("f", (4, 64))
    calls = spy("quantize")
    got = fq.quantize(view, "Q5_0")
    assert np.shares_memory(calls[0][0], np.frombuffer(raw, np.float32))
    assert bytes(got.data) == bytes(fq.quantize(np.frombuffer(raw, np.float32).reshape(4, 64), "Q5_0").data)


@pytest.mark.parametrize("kind", ["memoryview", "array_interface", "dlpack"])
def test_matmul_reads_activations_and_weight_in_place(kind, spy):
    x, w = _x((3, 64), 1), _x((5, 64), 2)
    calls = spy("matmul")
    got = fq.matmul(_foreign(kind, x), _foreign(kind, w))
    args = calls[0]
    assert np.shares_memory(args[0], x) and np.shares_memory(args[1], w)
    np.testing.assert_array_equal(got, fq.matmul(x.copy(), w.copy()))


def test_attention_and_kv_cache_read_dlpack_in_place(spy):
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 4, 3, 32), dtype=np.float32)
    k = rng.standard_normal((1, 2, 7, 32), dtype=np.float32)
    v = rng.standard_normal((1, 2, 7, 32), dtype=np.float32)
    calls = spy("attention")
    got = fq.attention(OnlyDlpack(q), OnlyDlpack(k), memoryview(v), causal=True)
    assert all(np.shares_memory(a, b) for a, b in zip((calls[0][0], calls[0][2], calls[0][4]), (q, k, v)))
    np.testing.assert_array_equal(got, fq.attention(q.copy(), k.copy(), v.copy(), causal=True))

    quant_calls = spy("quantize")
    cache = fq.KVCache(n_kv_heads=2, head_dim=32, qtype="Q8_0", page_size=4)
    cache.append(OnlyDlpack(k), OnlyArrayInterface(v))
    assert np.shares_memory(quant_calls[0][0], k) and np.shares_memory(quant_calls[1][0], v)
    reference = fq.KVCache(n_kv_heads=2, head_dim=32, qtype="Q8_0", page_size=4)
    reference.append(k.copy(), v.copy())
    np.testing.assert_array_equal(cache.attend(OnlyDlpack(q)), reference.attend(q))


@pytest.mark.parametrize("kind", ["ctypes", "array_interface", "dlpack", "array.array"])
def test_from_buffer_wraps_foreign_block_data_without_copying(kind):
    qt = fq.quantize(_x((2, 256)), "Q4_K")
    raw = qt.data.copy()
    if kind == "ctypes":
        src = (ctypes.c_uint8 * raw.size).from_buffer(raw)
    elif kind == "array.array":
        src = array.array("B", raw.tobytes())
        raw = np.frombuffer(src, np.uint8)
    else:
        src = OnlyArrayInterface(raw) if kind == "array_interface" else OnlyDlpack(raw)
    view = fq.QuantizedTensor.from_buffer(src, "Q4_K", qt.shape)
    assert np.shares_memory(view.data, raw)
    np.testing.assert_array_equal(view.dequantize(), qt.dequantize())


def test_gguf_writer_takes_a_memoryview(tmp_path):
    data = _x((2, 32))
    path = tmp_path / "m.gguf"
    with fq.gguf.GGUFWriter(path, {"general.architecture": "test"}, [("t", data.shape, "F32")]) as w:
        w.write_tensor("t", memoryview(data))
    with fq.gguf.GGUFFile(path) as f:
        np.testing.assert_array_equal(f.tensor("t"), data)


def test_python_lists_are_converted_silently():
    rows = _x((2, 32)).tolist()
    got = fq.quantize(rows, "Q8_0", imatrix=[1.0] * 32)  # no CopyWarning: a list has no memory
    want = fq.quantize(np.asarray(rows, np.float32), "Q8_0", imatrix=np.ones(32, np.float32))
    assert bytes(got.data) == bytes(want.data)
    w = fq.quantize(_x((4, 32)), "Q8_0")
    np.testing.assert_array_equal(fq.matmul(rows, w), fq.matmul(np.asarray(rows, np.float32), w))


def test_matmul_widens_16_bit_activations_silently():
    x, w = _x((2, 64)), fq.quantize(_x((3, 64), 5), "Q8_0")
    x16 = x.astype(np.float16)
    np.testing.assert_array_equal(fq.matmul(x16, w), fq.matmul(x16.astype(np.float32), w))
    xb = x.astype(ml_dtypes.bfloat16)
    np.testing.assert_array_equal(fq.matmul(xb, w), fq.matmul(xb.astype(np.float32), w))


# ------------------------------------------------------------------------------------------------
# Copies, announced
# ------------------------------------------------------------------------------------------------


def test_non_contiguous_input_is_copied_with_a_warning_and_correct():
    x = _x((4, 128))[:, ::2]
    with pytest.warns(fq.CopyWarning, match=r"x: copied .*not C-contiguous \(strides \(512, 8\)\).*ascontiguousarray"):
        got = fq.quantize(x, "Q4_0")
    assert bytes(got.data) == bytes(fq.quantize(np.ascontiguousarray(x), "Q4_0").data)


def test_strided_memoryview_is_copied_with_a_warning():
    base = _x((8, 64))
    with pytest.warns(fq.CopyWarning, match="not C-contiguous"):
        got = fq.quantize(memoryview(base)[::2], "Q8_0")
    assert bytes(got.data) == bytes(fq.quantize(base[::2].copy(), "Q8_0").data)


@pytest.mark.parametrize("dtype", [">f4", ">f2"])
def test_byte_swapped_input_is_copied_with_a_warning_and_correct(dtype):
    x = _x((2, 64)).astype(dtype)
    with pytest.warns(fq.CopyWarning, match="big-endian"):
        got = fq.quantize(x, "Q8_0")
    assert bytes(got.data) == bytes(fq.quantize(x.astype(x.dtype.newbyteorder("=")), "Q8_0").data)
    w = fq.quantize(_x((3, 64), 1), "Q8_0")
    with pytest.warns(fq.CopyWarning, match="big-endian"):
        y = fq.matmul(x, w)
    np.testing.assert_array_equal(y, fq.matmul(x.astype(np.float32), w))


def test_unaligned_input_is_copied_with_a_warning():
    buf = bytearray(4 * 64 + 1)
    x = np.frombuffer(buf, np.float32, count=64, offset=1)
    x[:] = _x((64,))
    with pytest.warns(fq.CopyWarning, match="not aligned"):
        got = fq.quantize(x, "Q8_0")
    assert bytes(got.data) == bytes(fq.quantize(x.copy(), "Q8_0").data)


def test_other_float_dtypes_of_parameters_are_converted_with_a_warning():
    x = _x((2, 32))
    with pytest.warns(fq.CopyWarning, match="imatrix: copied .*float64 and imatrix is used as float32"):
        got = fq.quantize(x, "Q4_0", imatrix=np.ones(32))
    assert bytes(got.data) == bytes(fq.quantize(x, "Q4_0", imatrix=np.ones(32, np.float32)).data)
    with pytest.warns(fq.CopyWarning, match="bias"):
        layer = fq.Linear(x, "Q8_0", bias=np.zeros(2))
    assert layer.bias.dtype == np.float32
    q = _x((1, 2, 3, 32))
    k = _x((1, 2, 5, 32), 1)
    with pytest.warns(fq.CopyWarning, match="mask"):
        got = fq.attention(q, k, k, mask=np.zeros((3, 5)))
    np.testing.assert_array_equal(got, fq.attention(q, k, k, mask=np.zeros((3, 5), np.float32)))


def test_array_method_that_cannot_give_a_view_is_copied_with_a_warning():
    x = _x()
    with pytest.warns(fq.CopyWarning, match="__array__ cannot return a view"):
        got = fq.quantize(ArrayMethodThatCopies(x), "Q8_0")
    assert bytes(got.data) == bytes(fq.quantize(x, "Q8_0").data)


def test_the_warning_points_at_the_callers_line():
    with pytest.warns(fq.CopyWarning) as record:
        fq.matmul(_x((2, 128))[:, ::2], fq.quantize(_x((3, 64)), "Q8_0"))
    assert record[0].filename == __file__


def test_other_dtypes_still_raise_rather_than_copy():
    with pytest.raises(TypeError, match="float32, float16 or bfloat16.*float64"):
        fq.quantize(memoryview(np.zeros((2, 32))), "Q8_0")
    with pytest.raises(TypeError, match="additive float mask"):
        fq.attention(_x((1, 1, 1, 32)), _x((1, 1, 2, 32)), _x((1, 1, 2, 32)), mask=np.zeros(2, np.int32))
    with pytest.raises(TypeError, match="x must be a numpy array or an array-like exporting its memory, not object"):
        fq.quantize(object(), "Q8_0")


def test_from_buffer_refuses_strided_data_instead_of_copying():
    raw = np.zeros(2 * 34, np.uint8)
    with pytest.raises(fq.ShapeError, match="contiguous"):
        fq.QuantizedTensor.from_buffer(memoryview(raw)[::2], "Q8_0", (1, 32))


# ------------------------------------------------------------------------------------------------
# out=: written in place, or refused
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memoryview", "ctypes", "array.array", "array_interface", "dlpack"])
def test_dequantize_writes_through_a_foreign_out(kind):
    qt = fq.quantize(_x((2, 64)), "Q8_0")
    want = qt.dequantize()
    if kind == "ctypes":
        out = (ctypes.c_float * qt.size)()
        readback = lambda: np.ctypeslib.as_array(out).reshape(qt.shape)  # noqa: E731
    elif kind == "array.array":
        out = array.array("f", bytes(4 * qt.size))
        readback = lambda: np.frombuffer(out, np.float32).reshape(qt.shape)  # noqa: E731
    else:
        base = np.zeros(qt.shape, np.float32)
        out = {"memoryview": memoryview, "array_interface": OnlyArrayInterface, "dlpack": OnlyDlpack}[kind](base)
        readback = lambda: base  # noqa: E731
    res = fq.dequantize(qt, out=out)
    np.testing.assert_array_equal(readback(), want)
    assert np.shares_memory(res, readback())


def test_matmul_and_linear_write_through_a_foreign_out():
    x, w = _x((3, 64)), fq.quantize(_x((5, 64), 1), "Q4_0")
    buf = bytearray(4 * 15)
    fq.matmul(x, w, out=memoryview(buf).cast("f", (3, 5)))
    np.testing.assert_array_equal(np.frombuffer(buf, np.float32).reshape(3, 5), fq.matmul(x, w))
    layer = fq.Linear(w)  # runs on packed panels: its own bits, so compare it with itself
    np.testing.assert_array_equal(layer(memoryview(x)), layer(x))


def test_read_only_out_is_an_error_and_nothing_is_written():
    qt = fq.quantize(_x((2, 64)), "Q8_0")
    frozen = bytes(4 * qt.size)
    for out in (memoryview(frozen).cast("f", qt.shape), np.frombuffer(frozen, np.float32).reshape(qt.shape)):
        with pytest.raises(fq.ShapeError, match="read-only.*never writes a result into a copy"):
            fq.dequantize(qt, out=out)
    assert not any(frozen)
    with pytest.raises(fq.ShapeError, match="read-only"):
        fq.matmul(_x((1, 64)), qt, out=memoryview(bytes(8)).cast("f", (1, 2)))


def test_out_that_would_need_a_copy_is_an_error():
    qt = fq.quantize(_x((2, 64)), "Q8_0")
    with pytest.raises(fq.ShapeError, match="strided"):
        fq.dequantize(qt, out=np.zeros((2, 128), np.float32)[:, ::2])
    with pytest.raises(fq.ShapeError, match="this one is float64"):
        fq.dequantize(qt, out=np.zeros(qt.shape))
    with pytest.raises(fq.ShapeError, match="this one is >f4"):
        fq.dequantize(qt, out=np.zeros(qt.shape, ">f4"))
    with pytest.raises(fq.ShapeError, match="not a list"):
        fq.dequantize(qt, out=[0.0] * qt.size)


# ------------------------------------------------------------------------------------------------
# torch, when it happens to be installed (never a dependency)
# ------------------------------------------------------------------------------------------------


def test_torch_cpu_tensors_are_read_in_place(spy):
    torch = pytest.importorskip("torch")
    t = torch.randn(4, 64, dtype=torch.float32)
    calls = spy("quantize")
    got = fq.quantize(t, "Q8_0")
    assert calls[0][0].ctypes.data == t.data_ptr()
    assert bytes(got.data) == bytes(fq.quantize(t.numpy().copy(), "Q8_0").data)
    out = torch.zeros(4, 64)
    fq.dequantize(got, out=out)
    np.testing.assert_array_equal(out.numpy(), got.dequantize())
    with pytest.warns(fq.CopyWarning, match="not C-contiguous"):
        fq.quantize(t.t().contiguous().t(), "Q8_0")


# ------------------------------------------------------------------------------------------------
# Pieces of strided arrays that are contiguous are used in place
# ------------------------------------------------------------------------------------------------


def test_kv_cache_appends_a_range_of_positions_in_place(spy):
    rng = np.random.default_rng(4)
    k = rng.standard_normal((1, 2, 10, 32), dtype=np.float32)
    v = rng.standard_normal((1, 2, 10, 32), dtype=np.float32)
    calls = spy("quantize")
    cache = fq.KVCache(n_kv_heads=2, head_dim=32, qtype="Q8_0", page_size=4)
    cache.append(k[:, :, 3:7], v[:, :, 3:7])  # strided across heads, each head's rows contiguous
    assert len(calls) == 4 and all(np.shares_memory(c[0], k) or np.shares_memory(c[0], v) for c in calls)
    reference = fq.KVCache(n_kv_heads=2, head_dim=32, qtype="Q8_0", page_size=4)
    reference.append(k[:, :, 3:7].copy(), v[:, :, 3:7].copy())
    q = rng.standard_normal((1, 2, 1, 32), dtype=np.float32)
    np.testing.assert_array_equal(cache.attend(q), reference.attend(q))
    with pytest.warns(fq.CopyWarning, match="not C-contiguous"):  # rows themselves strided
        cache.append(np.repeat(k[:, :, :1], 2, axis=3)[..., ::2], v[:, :, :1])


def test_attention_checks_shapes_before_copying():
    q = np.zeros((1, 2, 2, 8), np.float32)
    k = np.zeros((1, 2, 4, 8), np.float32)
    with pytest.raises(fq.ShapeError, match="same shape"):  # no CopyWarning for a rejected input
        fq.attention(q, k, k[:, :, :3])
