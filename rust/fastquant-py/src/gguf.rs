//! GGUF header reading. Python maps the tensor data itself (`np.memmap`) at the offsets returned
//! here, so tensors are zero-copy views and no Rust object has to outlive a numpy array.

use fastquant::gguf::{GgufFile, Value};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3::IntoPyObjectExt;

use crate::errors::to_py;

fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::U8(x) => x.into_bound_py_any(py)?,
        Value::I8(x) => x.into_bound_py_any(py)?,
        Value::U16(x) => x.into_bound_py_any(py)?,
        Value::I16(x) => x.into_bound_py_any(py)?,
        Value::U32(x) => x.into_bound_py_any(py)?,
        Value::I32(x) => x.into_bound_py_any(py)?,
        Value::F32(x) => x.into_bound_py_any(py)?,
        Value::Bool(x) => x.into_bound_py_any(py)?,
        Value::String(x) => x.into_bound_py_any(py)?,
        Value::U64(x) => x.into_bound_py_any(py)?,
        Value::I64(x) => x.into_bound_py_any(py)?,
        Value::F64(x) => x.into_bound_py_any(py)?,
        Value::Array(_, items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(value_to_py(py, item)?)?;
            }
            list.into_any()
        }
    })
}

/// The type name of a value, arrays as `ARRAY[ELEM]` (nested: `ARRAY[ARRAY[UINT8]]`).
fn type_name(v: &Value) -> String {
    match v {
        Value::Array(elem, items) => match items.first() {
            Some(first @ Value::Array(..)) => format!("ARRAY[{}]", type_name(first)),
            _ => format!("ARRAY[{}]", elem.name()),
        },
        other => other.value_type().name().to_owned(),
    }
}

/// Parses the header of the GGUF file at `path`. Returns a dict with `version`, `alignment`,
/// `data_offset`, `file_size`, `metadata` (list of (key, type name, value) in file order) and
/// `tensors` (list of (name, numpy-order shape, ggml type id, absolute offset, nbytes)).
#[pyfunction]
fn gguf_read_header<'py>(py: Python<'py>, path: std::path::PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let file = py.detach(|| GgufFile::open(&path)).map_err(to_py)?;
    let h = &file.header;
    let out = PyDict::new(py);
    out.set_item("version", h.version)?;
    out.set_item("alignment", h.alignment)?;
    out.set_item("data_offset", h.data_offset)?;
    out.set_item("file_size", file.file_len())?;
    let metadata = PyList::empty(py);
    for (k, v) in &h.metadata {
        metadata.append((k, type_name(v), value_to_py(py, v)?))?;
    }
    out.set_item("metadata", metadata)?;
    let tensors = PyList::empty(py);
    for t in &h.tensors {
        tensors.append((&t.name, t.shape(), t.qtype.id(), h.data_offset + t.offset, t.size))?;
    }
    out.set_item("tensors", tensors)?;
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gguf_read_header, m)?)?;
    Ok(())
}
