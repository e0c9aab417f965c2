//! `fastquant._core`: the PyO3 face of the `fastquant` crate.
//!
//! No algorithms live here. Each function borrows numpy buffers (contiguity and dtype are settled
//! by the Python layer, and checked again here), releases the GIL around the core call, and turns
//! `fastquant::Error` into the exception classes defined in `fastquant/errors.py`.

use pyo3::prelude::*;

mod attention;
mod config;
mod errors;
mod gguf;
mod matmul;
mod quant;

#[pymodule(gil_used = false)]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    config::register(m)?;
    quant::register(m)?;
    gguf::register(m)?;
    matmul::register(m)?;
    attention::register(m)?;
    Ok(())
}
