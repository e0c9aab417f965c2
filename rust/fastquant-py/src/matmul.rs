//! matmul over numpy buffers: `out = x @ dequantize(w).T`.

use fastquant::matmul::{matmul as core_matmul, MatmulWeight};
use fastquant::QuantType;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::quant::parse_level;

/// Multiplies `rows` contiguous f32 rows of `k` (flat `x`) with the weight's `n_out` rows of `k`
/// elements of type `qtype_id` (flat uint8 blocks). Writes into `out` (flat f32, rows * n_out) when
/// given, else into a new array, and returns it.
#[pyfunction]
#[pyo3(signature = (x, weight, qtype_id, n_out, k, out=None, simd=None))]
#[allow(clippy::too_many_arguments)]
fn matmul<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    weight: PyReadonlyArray1<'py, u8>,
    qtype_id: u32,
    n_out: usize,
    k: usize,
    out: Option<Bound<'py, PyArray1<f32>>>,
    simd: Option<&str>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let qtype = QuantType::from_id(qtype_id).map_err(to_py)?;
    let level = parse_level(simd)?;
    if !x.is_c_contiguous() || !weight.is_c_contiguous() {
        return Err(PyValueError::new_err("matmul: x and the weight must be C-contiguous"));
    }
    let rows = x.len().checked_div(k).unwrap_or(0);
    let out = match out {
        Some(o) => o,
        // SAFETY: f32 has no invalid bit patterns; on success the kernels write every element,
        // and on an error the array never reaches Python.
        None => unsafe { PyArray1::<f32>::new(py, rows * n_out, false) },
    };
    {
        let mut out_rw: PyReadwriteArray1<'py, f32> = out.readwrite();
        let dst = out_rw.as_slice_mut().map_err(|_| PyValueError::new_err("matmul: out must be contiguous"))?;
        let src = x.as_slice()?;
        let data = weight.as_slice()?;
        let w = MatmulWeight { data, qtype, rows: n_out, k };
        py.detach(|| core_matmul(&w, src, dst, level)).map_err(to_py)?;
    }
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    Ok(())
}
