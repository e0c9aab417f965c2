//! quantize / dequantize over numpy buffers.

use fastquant::{FloatSlice, FloatSliceMut, Level, QuantType, QuantizeOptions, TYPE_TABLE};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::errors::to_py;

/// Rows of the type table: (id, name, block_elems, block_bytes, can_quantize, can_dequantize).
#[pyfunction]
fn type_table() -> Vec<(u32, &'static str, usize, usize, bool, bool)> {
    TYPE_TABLE.iter().map(|t| (t.id, t.name, t.block_elems, t.block_bytes, t.can_quantize, t.can_dequantize)).collect()
}

pub(crate) fn parse_level(simd: Option<&str>) -> PyResult<Option<Level>> {
    simd.map(Level::from_name).transpose().map_err(to_py)
}

/// A float input: f32 as such; f16 and bf16 as their uint16 bit patterns with `kind` saying which.
enum FloatArray<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    Bits16(PyReadonlyArray1<'py, u16>),
}

fn float_array<'py>(x: &Bound<'py, PyAny>, kind: &str) -> PyResult<FloatArray<'py>> {
    let arr = match kind {
        "f32" => FloatArray::F32(x.extract()?),
        "f16" | "bf16" => FloatArray::Bits16(x.extract()?),
        other => return Err(PyValueError::new_err(format!("unknown float kind '{other}'"))),
    };
    let contiguous = match &arr {
        FloatArray::F32(a) => a.is_c_contiguous(),
        FloatArray::Bits16(a) => a.is_c_contiguous(),
    };
    if !contiguous {
        return Err(PyValueError::new_err("input must be C-contiguous"));
    }
    Ok(arr)
}

/// Quantizes a flat, contiguous float array of `rows * n_per_row` elements; returns the blocks as
/// a new uint8 array.
#[pyfunction]
#[pyo3(signature = (x, kind, qtype_id, n_per_row, check_finite=true, imatrix=None, simd=None))]
#[allow(clippy::too_many_arguments)]
fn quantize<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    kind: &str,
    qtype_id: u32,
    n_per_row: usize,
    check_finite: bool,
    imatrix: Option<PyReadonlyArray1<'py, f32>>,
    simd: Option<&str>,
) -> PyResult<Bound<'py, PyArray1<u8>>> {
    let qtype = QuantType::from_id(qtype_id).map_err(to_py)?;
    let level = parse_level(simd)?;
    let x = float_array(x, kind)?;
    let n = match &x {
        FloatArray::F32(a) => a.len(),
        FloatArray::Bits16(a) => a.len(),
    };
    if n_per_row == 0 || n % n_per_row != 0 {
        return Err(to_py(fastquant::Error::Size {
            what: "elements (a whole number of rows)",
            expected: n_per_row,
            got: n,
        }));
    }
    let nbytes = (n / n_per_row)
        .checked_mul(qtype.row_bytes(n_per_row).map_err(to_py)?)
        .ok_or_else(|| to_py(fastquant::Error::TooLarge(n)))?;
    // Not zero-filled: calloc'd pages would be faulted in and zeroed only to be overwritten, which
    // costs a third of the time of a large Q4_0 quantize. The kernels write every byte (whole
    // blocks), and on an error the array is dropped without reaching Python.
    // SAFETY: u8 has no invalid bit patterns, and the array is fully written before it is returned.
    let out = unsafe { PyArray1::<u8>::new(py, nbytes, false) };
    {
        let mut out_rw = out.readwrite();
        let dst = out_rw.as_slice_mut().expect("new array is contiguous");
        let w = imatrix.as_ref().map(|w| w.as_slice()).transpose()?;
        let src = match &x {
            FloatArray::F32(a) => FloatSlice::F32(a.as_slice()?),
            FloatArray::Bits16(a) if kind == "f16" => FloatSlice::F16(a.as_slice()?),
            FloatArray::Bits16(a) => FloatSlice::BF16(a.as_slice()?),
        };
        let options = QuantizeOptions { check_finite, imatrix: w, level };
        py.detach(|| fastquant::quantize(qtype, src, n_per_row, dst, &options)).map_err(to_py)?;
    }
    Ok(out)
}

/// Dequantizes flat uint8 blocks into `out` (a contiguous float32 array, or uint16 holding f16 or
/// bf16 bits as `kind` says).
#[pyfunction]
#[pyo3(signature = (data, qtype_id, n_per_row, out, kind, simd=None))]
fn dequantize<'py>(
    py: Python<'py>,
    data: PyReadonlyArray1<'py, u8>,
    qtype_id: u32,
    n_per_row: usize,
    out: &Bound<'py, PyAny>,
    kind: &str,
    simd: Option<&str>,
) -> PyResult<()> {
    let qtype = QuantType::from_id(qtype_id).map_err(to_py)?;
    let level = parse_level(simd)?;
    let src = data.as_slice().map_err(|_| PyValueError::new_err("quantized data must be contiguous"))?;
    match kind {
        "f32" => {
            let mut o: PyReadwriteArray1<'py, f32> = out.extract()?;
            let dst = o.as_slice_mut().map_err(|_| PyValueError::new_err("out must be contiguous"))?;
            py.detach(|| fastquant::dequantize(qtype, src, n_per_row, FloatSliceMut::F32(dst), level))
        }
        "f16" | "bf16" => {
            let mut o: PyReadwriteArray1<'py, u16> = out.extract()?;
            let dst = o.as_slice_mut().map_err(|_| PyValueError::new_err("out must be contiguous"))?;
            let dst = if kind == "f16" { FloatSliceMut::F16(dst) } else { FloatSliceMut::BF16(dst) };
            py.detach(|| fastquant::dequantize(qtype, src, n_per_row, dst, level))
        }
        other => return Err(PyTypeError::new_err(format!("unknown output kind '{other}'"))),
    }
    .map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(type_table, m)?)?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    m.add_function(wrap_pyfunction!(dequantize, m)?)?;
    Ok(())
}
