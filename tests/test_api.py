"""The public objects: QuantizedTensor, QuantType and dequantize(out=...)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fastquant as fq
from conftest import BF16, FORMATS, bits, ggml_dequantize, ggml_has_to_float, ggml_quantize
from fastquant.types import as_quant_type
from reference import ggml_oracle
from reference import legacy as ref

pytest.importorskip("ggml", reason="the ggml oracle (ggml-python) is not installed")


def _weights(shape=(8, 256), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _ggml_traits():
    """(id, name, blck_size, type_size) of every type ggml-python's ggml knows, removed ones
    (block size 0) included."""
    import ggml

    for t in range(ggml.GGML_TYPE_COUNT):
        tr = ggml_oracle.type_traits(t)
        yield t, tr.type_name.decode(), int(tr.blck_size), int(tr.type_size)


def _expected_values(qt: fq.QuantizedTensor) -> np.ndarray:
    name = qt.qtype.value
    if ggml_has_to_float(name):
        return ggml_dequantize(qt.data, name, qt.size).reshape(qt.shape)
    return ref.dequantize(qt.data, name).reshape(qt.shape)


# ================================================================================================
# QuantizedTensor
# ================================================================================================


@pytest.mark.parametrize("qtype", FORMATS)
def test_quantize_returns_a_described_tensor(qtype):
    x = _weights((4, 2, 256))
    qt = fq.quantize(x, qtype)
    tr = ggml_oracle.type_traits(fq.QuantType(qtype).id)
    assert isinstance(qt, fq.QuantizedTensor)
    assert qt.qtype is fq.QuantType(qtype)
    assert qt.shape == (4, 2, 256) and qt.ndim == 3 and qt.size == x.size and len(qt) == 4
    assert qt.nbytes == x.size // tr.blck_size * tr.type_size == qt.data.nbytes
    assert qt.bits_per_weight == tr.type_size * 8 / tr.blck_size
    assert qt.data.dtype == np.uint8 and qt.data.ndim == 1 and qt.data.flags.c_contiguous
    assert np.array_equal(qt.data, ggml_quantize(x, qtype))


def test_bits_per_weight_of_the_legacy_formats():
    expected = {"F32": 32, "F16": 16, "BF16": 16, "Q4_0": 4.5, "Q4_1": 5, "Q5_0": 5.5, "Q5_1": 6, "Q8_0": 8.5, "Q8_1": 9}
    assert {name: fq.QuantType(name).bits_per_weight for name in expected} == expected


def test_data_is_the_quantized_array_itself_not_a_copy():
    qt = fq.quantize(_weights(), "Q4_0")
    a, b = qt.data, qt.data
    assert a is b
    arr = np.zeros(18 * 8, dtype=np.uint8)
    qt2 = fq.QuantizedTensor(arr, "Q4_0", (8, 32))
    assert qt2.data is arr


def test_from_buffer_uint8_array_is_zero_copy():
    qt = fq.quantize(_weights(), "Q8_0")
    buf = qt.data.copy()
    view = fq.QuantizedTensor.from_buffer(buf, "Q8_0", qt.shape)
    assert np.shares_memory(view.data, buf)
    buf[:2] = np.array([0x3C00], dtype="<u2").view(np.uint8)  # first block's scale := 1.0
    assert view.data[0] == 0x00 and view.data[1] == 0x3C
    assert np.array_equal(view.dequantize()[0, :32], buf[2:34].view(np.int8).astype(np.float32))


def test_from_buffer_bytes_is_zero_copy_and_readonly():
    qt = fq.quantize(_weights(), "Q4_1")
    raw = qt.data.tobytes()
    view = fq.QuantizedTensor.from_buffer(raw, "q4_1", qt.shape)
    assert np.shares_memory(view.data, np.frombuffer(raw, dtype=np.uint8))
    assert not view.data.flags.writeable
    assert np.array_equal(bits(view.dequantize()), bits(_expected_values(qt)))


@pytest.mark.parametrize("kind", ["bytearray", "memoryview"])
def test_from_buffer_bytearray_and_memoryview_see_later_writes(kind):
    qt = fq.quantize(_weights(), "Q5_0")
    ba = bytearray(qt.data.tobytes())
    view = fq.QuantizedTensor.from_buffer(ba if kind == "bytearray" else memoryview(ba), "Q5_0", qt.shape)
    assert np.array_equal(view.data, qt.data)
    ba[0:2] = b"\x00\x00"  # zero the first block's scale through the original buffer
    assert view.data[0] == 0 and view.data[1] == 0
    y = view.dequantize()
    assert np.all(y[0, :32] == 0) and np.array_equal(bits(y[0, 32:]), bits(_expected_values(qt)[0, 32:]))


def test_from_buffer_accepts_a_wider_dtype_array_as_its_bytes():
    qt = fq.quantize(_weights(), "F16")
    as_u16 = qt.data.view("<u2").reshape(qt.shape)
    view = fq.QuantizedTensor.from_buffer(as_u16, "F16", qt.shape)
    assert np.shares_memory(view.data, as_u16)
    assert np.array_equal(view.dequantize(np.float16).view(np.uint16), as_u16)


def test_from_buffer_checks_the_size():
    qt = fq.quantize(_weights(), "Q4_0")  # (8, 256): 8 * 8 blocks of 18 bytes = 1152 bytes
    for n in (qt.nbytes - 1, qt.nbytes + 18, 0):
        with pytest.raises(fq.ShapeError, match=rf"needs 1152 bytes, the buffer has {n}\b"):
            fq.QuantizedTensor.from_buffer(bytes(n), "Q4_0", qt.shape)
    fq.QuantizedTensor.from_buffer(bytes(1152), "Q4_0", (8, 256))  # the exact size is fine
    fq.QuantizedTensor.from_buffer(bytes(1152), "Q4_0", (2, 4, 256))  # any shape of as many blocks


def test_from_buffer_rejects_non_contiguous_arrays():
    buf = np.zeros(2 * 36, dtype=np.uint8)
    with pytest.raises(fq.ShapeError, match="contiguous"):
        fq.QuantizedTensor.from_buffer(buf[::2], "Q8_0", (1, 32))


@pytest.mark.parametrize("qtype", FORMATS)
def test_dequantize_method_and_asarray_decode_like_ggml(qtype):
    x = _weights((3, 5, 64))
    qt = fq.quantize(x, qtype)
    expected = _expected_values(qt)
    y = qt.dequantize()
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.array_equal(bits(y), bits(expected))
    a = np.asarray(qt)
    assert a.dtype == np.float32 and a.shape == x.shape and np.array_equal(bits(a), bits(expected))
    a64 = np.asarray(qt, dtype=np.float64)
    assert a64.dtype == np.float64 and np.array_equal(a64, expected.astype(np.float64))
    assert np.array_equal(bits(np.array(qt)), bits(expected))


def test_asarray_without_copy_is_refused():
    qt = fq.quantize(_weights(), "Q8_0")
    with pytest.raises(ValueError, match="decod"):
        np.asarray(qt, copy=False)


def test_repr():
    qt = fq.quantize(_weights((64, 256)), "Q4_0")
    assert repr(qt) == "QuantizedTensor(qtype=Q4_0, shape=(64, 256), nbytes=9216, bits_per_weight=4.5)"
    qt = fq.quantize(_weights((2, 3, 32)), "bf16")
    assert repr(qt) == "QuantizedTensor(qtype=BF16, shape=(2, 3, 32), nbytes=384, bits_per_weight=16)"


def test_len_of_a_one_dimensional_tensor_is_its_row_length():
    assert len(fq.quantize(_weights((64,)), "Q8_0")) == 64


# ================================================================================================
# QuantType
# ================================================================================================


@pytest.mark.parametrize("spelling", ["q4_0", "Q4_0", "q4_0 ".upper(), " q4_0", "Q4_0\n"])
def test_type_names_are_accepted_in_any_case(spelling):
    x = _weights()
    assert as_quant_type(spelling) is fq.QuantType.Q4_0
    qt = fq.quantize(x, spelling)
    assert qt.qtype is fq.QuantType.Q4_0
    assert np.array_equal(qt.data, ggml_quantize(x, "Q4_0"))


@pytest.mark.parametrize("name", ["bf16", "Bf16", "f16", "f32", "q8_1", "Q5_1", "q5_0"])
def test_every_format_name_in_lower_and_mixed_case(name):
    assert as_quant_type(name).value == name.upper()
    assert fq.QuantizedTensor.from_buffer(bytes(fq.QuantType(name.upper()).row_bytes(64)), name, (64,)).qtype == name.upper()


def test_quant_type_members_are_strings_with_ggml_facts():
    t = fq.QuantType.Q4_0
    assert t == "Q4_0" and isinstance(t, str) and str(t) == "Q4_0" and repr(t) == "QuantType.Q4_0"
    assert fq.QuantType["Q8_0"] is fq.QuantType("Q8_0") is fq.QuantType.Q8_0
    assert (t.id, t.block_size, t.type_size) == (2, 32, 18)
    assert fq.QuantType.from_id(8) is fq.QuantType.Q8_0
    assert fq.QuantType.F32.is_quantized is False and fq.QuantType.Q8_1.is_quantized is True
    assert fq.QuantType.Q4_1.row_bytes(4096) == 4096 // 32 * 20


@pytest.mark.parametrize("qtype", FORMATS)
def test_the_legacy_formats_can_be_encoded_and_decoded(qtype):
    t = fq.QuantType(qtype)
    assert t.can_quantize and t.can_dequantize


def test_every_ggml_type_is_known_with_ggml_block_facts():
    seen = 0
    for type_id, name, blck, size in _ggml_traits():
        if blck == 0:  # ids ggml removed ("DEPRECATED", "... REMOVED, use ... runtime repacking")
            with pytest.raises(fq.QuantTypeError, match=str(type_id)):
                fq.QuantType.from_id(type_id)
            continue
        t = fq.QuantType.from_id(type_id)
        assert (t.id, t.value, t.block_size, t.type_size) == (type_id, name.upper(), blck, size)
        assert fq.QuantType(name.upper()) is t
        seen += 1
    assert seen >= 30


def test_type_ids_and_sizes_agree_with_gguf_py():
    gguf = pytest.importorskip("gguf")
    for member in gguf.GGMLQuantizationType:
        if member.name not in fq.QuantType.__members__:
            continue
        if member.name == "Q8_1":
            # gguf-py still lists the old 40-byte block (fp32 d and s); ggml's block_q8_1 holds two
            # fp16 and is 36 bytes, which the ggml test above checks.
            assert tuple(gguf.GGML_QUANT_SIZES[member]) in ((32, 40), (32, 36))
            assert fq.QuantType.Q8_1.id == member.value
            continue
        t = fq.QuantType(member.name)
        assert t.id == member.value, member.name
        assert (t.block_size, t.type_size) == tuple(gguf.GGML_QUANT_SIZES[member]), member.name


@pytest.mark.parametrize("type_id", [4, 5, 31, 36, 999, 2**31])
def test_unknown_type_ids_raise_quant_type_error(type_id):
    with pytest.raises(fq.QuantTypeError):
        fq.QuantType.from_id(type_id)


# ================================================================================================
# dequantize(out=...)
# ================================================================================================


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("qtype", FORMATS)
def test_dequantize_writes_into_out_and_returns_it(qtype, dtype):
    x = _weights((4, 96), seed=3)
    qt = fq.quantize(x, qtype)
    out = np.full(x.shape, np.nan, dtype=dtype)
    addr = out.ctypes.data
    res = fq.dequantize(qt, dtype, out=out)
    assert res is out and out.ctypes.data == addr
    y32 = _expected_values(qt)
    if np.dtype(dtype) == np.float32:
        expected = bits(y32)
    elif np.dtype(dtype) == np.float16:
        expected = ref.fp32_to_fp16_bits(y32).reshape(x.shape)
    else:
        expected = ref.fp32_to_bf16_bits(y32).reshape(x.shape)
    assert np.array_equal(bits(out), expected)
    out2 = np.zeros(x.shape, dtype=dtype)
    assert qt.dequantize(dtype, out=out2) is out2 and np.array_equal(bits(out2), expected)


def test_dequantize_out_may_be_a_view_into_a_larger_buffer():
    x = _weights((4, 64), seed=4)
    qt = fq.quantize(x, "Q8_0")
    big = np.full((6, 64), 7.0, dtype=np.float32)
    fq.dequantize(qt, out=big[1:5])
    assert np.all(big[0] == 7.0) and np.all(big[5] == 7.0)
    assert np.array_equal(bits(big[1:5]), bits(_expected_values(qt)))


def test_bfloat16_dtype_object_and_name_both_work():
    qt = fq.quantize(_weights(), "Q4_0")
    assert fq.dequantize(qt, BF16).dtype == BF16
    assert fq.dequantize(qt, ml_dtypes.bfloat16).dtype == BF16
    assert fq.dequantize(qt, "float16").dtype == np.float16
