//! matmul over numpy buffers: `out = x @ dequantize(w).T`.

use fastquant::matmul::packed_driver::{
    has_packed_kernel as core_has_packed_kernel, matmul_packed as core_matmul_packed, PackedWeight,
};
use fastquant::matmul::{matmul as core_matmul, MatmulWeight};
use fastquant::QuantType;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::to_py;
use crate::quant::parse_level;

/// The output array: `out` when given, else a new one of `len` elements.
fn output<'py>(py: Python<'py>, out: Option<Bound<'py, PyArray1<f32>>>, len: usize) -> Bound<'py, PyArray1<f32>> {
    match out {
        Some(o) => o,
        // SAFETY: f32 has no invalid bit patterns; on success the kernels write every element,
        // and on an error the array never reaches Python.
        None => unsafe { PyArray1::<f32>::new(py, len, false) },
    }
}

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
    let out = output(py, out, rows * n_out);
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

/// A weight packed once into its type's GEMM panels (a copy; the source array may go).
#[pyclass(name = "PackedWeight", module = "fastquant._core", frozen)]
struct PyPackedWeight {
    inner: PackedWeight,
}

#[pymethods]
impl PyPackedWeight {
    /// Packs `n_out` rows of `k` elements of type `qtype_id` (flat uint8 blocks); the GIL is
    /// released while it packs.
    #[new]
    fn new(py: Python<'_>, weight: PyReadonlyArray1<'_, u8>, qtype_id: u32, n_out: usize, k: usize) -> PyResult<Self> {
        let qtype = QuantType::from_id(qtype_id).map_err(to_py)?;
        let data =
            weight.as_slice().map_err(|_| PyValueError::new_err("PackedWeight: the weight must be contiguous"))?;
        let w = MatmulWeight { data, qtype, rows: n_out, k };
        let inner = py.detach(|| PackedWeight::new(&w)).map_err(to_py)?;
        Ok(PyPackedWeight { inner })
    }

    /// Bytes of the packed panels.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.bytes().len()
    }

    /// Whether the panels take more than a quarter more bytes than the blocks (a byte per code).
    #[getter]
    fn panels_expand(&self) -> bool {
        self.inner.panels_expand()
    }
}

/// Whether weights of type `qtype_id` can be packed (`PackedWeight`).
#[pyfunction]
fn has_packed_kernel(qtype_id: u32) -> PyResult<bool> {
    Ok(core_has_packed_kernel(QuantType::from_id(qtype_id).map_err(to_py)?))
}

/// `matmul` with a packed weight: flat f32 rows of the weight's K into `out` (rows * N) when
/// given, else a new array.
#[pyfunction]
#[pyo3(signature = (x, weight, out=None, simd=None))]
fn matmul_packed<'py>(
    py: Python<'py>,
    x: PyReadonlyArray1<'py, f32>,
    weight: &Bound<'py, PyPackedWeight>,
    out: Option<Bound<'py, PyArray1<f32>>>,
    simd: Option<&str>,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let level = parse_level(simd)?;
    let w = &weight.get().inner;
    let rows = x.len().checked_div(w.k()).unwrap_or(0);
    let out = output(py, out, rows * w.rows());
    {
        let mut out_rw: PyReadwriteArray1<'py, f32> = out.readwrite();
        let dst = out_rw.as_slice_mut().map_err(|_| PyValueError::new_err("matmul: out must be contiguous"))?;
        let src = x.as_slice().map_err(|_| PyValueError::new_err("matmul: x must be C-contiguous"))?;
        py.detach(|| core_matmul_packed(w, src, dst, level)).map_err(to_py)?;
    }
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(matmul, m)?)?;
    m.add_function(wrap_pyfunction!(matmul_packed, m)?)?;
    m.add_function(wrap_pyfunction!(has_packed_kernel, m)?)?;
    m.add_class::<PyPackedWeight>()?;
    Ok(())
}
