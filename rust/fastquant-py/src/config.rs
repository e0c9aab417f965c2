//! Process-wide settings: SIMD level and thread count.

use fastquant::simd::{self, Level};
use pyo3::prelude::*;

use crate::errors::to_py;

/// The SIMD level kernels run at now ("scalar", "avx2", "avx512" or "avx512vnni").
#[pyfunction]
fn simd_level() -> PyResult<&'static str> {
    simd::active_level().map(Level::name).map_err(to_py)
}

/// The best SIMD level this CPU supports.
#[pyfunction]
fn detected_simd_level() -> &'static str {
    simd::detected_level().name()
}

/// Every SIMD level this CPU can run, lowest first.
#[pyfunction]
fn available_simd_levels() -> Vec<&'static str> {
    simd::available_levels().into_iter().map(Level::name).collect()
}

/// Forces a SIMD level for the process; None returns to FASTQUANT_SIMD / detection.
#[pyfunction]
#[pyo3(signature = (level))]
fn set_simd_level(level: Option<&str>) -> PyResult<()> {
    let level = level.map(Level::from_name).transpose().map_err(to_py)?;
    simd::set_level(level).map_err(to_py)
}

#[pyfunction]
fn num_threads() -> usize {
    fastquant::num_threads()
}

#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    fastquant::set_num_threads(n).map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(detected_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(available_simd_levels, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    Ok(())
}
