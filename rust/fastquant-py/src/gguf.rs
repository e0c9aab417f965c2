//! GGUF header reading. Python maps the tensor data itself (`np.memmap`) at the offsets returned
//! here, so tensors are zero-copy views and no Rust object has to outlive a numpy array.

use fastquant::gguf::{GgufFile, GgufWriter, TensorSpec, Value, ValueType};
use fastquant::QuantType;
use numpy::PyReadonlyArray1;
use pyo3::exceptions::PyValueError;
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
    m.add_class::<PyGgufWriter>()?;
    Ok(())
}

/// Parses a type name as `gguf_read_header` prints it (`UINT32`, `ARRAY[STRING]`, nested arrays).
fn parse_type_name(name: &str) -> Option<(ValueType, Option<&str>)> {
    if let Some(inner) = name.strip_prefix("ARRAY[").and_then(|r| r.strip_suffix(']')) {
        return Some((ValueType::Array, Some(inner)));
    }
    let t = [
        ValueType::U8,
        ValueType::I8,
        ValueType::U16,
        ValueType::I16,
        ValueType::U32,
        ValueType::I32,
        ValueType::F32,
        ValueType::Bool,
        ValueType::String,
        ValueType::U64,
        ValueType::I64,
        ValueType::F64,
    ]
    .into_iter()
    .find(|t| t.name() == name)?;
    Some((t, None))
}

/// Converts a Python value to a GGUF value of the named type; integers out of range are errors.
fn py_to_value(obj: &Bound<'_, PyAny>, type_name: &str, key: &str) -> PyResult<Value> {
    let bad = |e: PyErr| PyValueError::new_err(format!("metadata '{key}': cannot store {obj} as {type_name}: {e}"));
    let (ty, inner) = parse_type_name(type_name)
        .ok_or_else(|| PyValueError::new_err(format!("metadata '{key}': unknown type '{type_name}'")))?;
    Ok(match ty {
        ValueType::U8 => Value::U8(obj.extract().map_err(bad)?),
        ValueType::I8 => Value::I8(obj.extract().map_err(bad)?),
        ValueType::U16 => Value::U16(obj.extract().map_err(bad)?),
        ValueType::I16 => Value::I16(obj.extract().map_err(bad)?),
        ValueType::U32 => Value::U32(obj.extract().map_err(bad)?),
        ValueType::I32 => Value::I32(obj.extract().map_err(bad)?),
        ValueType::F32 => Value::F32(obj.extract().map_err(bad)?),
        ValueType::Bool => Value::Bool(obj.extract().map_err(bad)?),
        ValueType::String => Value::String(obj.extract().map_err(bad)?),
        ValueType::U64 => Value::U64(obj.extract().map_err(bad)?),
        ValueType::I64 => Value::I64(obj.extract().map_err(bad)?),
        ValueType::F64 => Value::F64(obj.extract().map_err(bad)?),
        ValueType::Array => {
            let inner = inner.expect("array types carry their element type");
            let (elem, _) = parse_type_name(inner)
                .ok_or_else(|| PyValueError::new_err(format!("metadata '{key}': unknown type '{inner}'")))?;
            let mut items = Vec::new();
            for item in obj.try_iter().map_err(bad)? {
                items.push(py_to_value(&item?, inner, key)?);
            }
            Value::Array(elem, items)
        }
    })
}

/// A streaming, atomic GGUF writer: the header now, tensors one by one, `finish` renames.
#[pyclass(name = "GgufWriter", module = "fastquant._core")]
struct PyGgufWriter {
    inner: Option<GgufWriter>,
}

#[pymethods]
impl PyGgufWriter {
    /// `metadata`: [(key, type name, value)]; `tensors`: [(name, numpy-order shape, type id)].
    #[new]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        metadata: Vec<(String, String, Bound<'_, PyAny>)>,
        tensors: Vec<(String, Vec<u64>, u32)>,
    ) -> PyResult<Self> {
        let metadata: Vec<(String, Value)> =
            metadata.iter().map(|(k, t, v)| Ok((k.clone(), py_to_value(v, t, k)?))).collect::<PyResult<_>>()?;
        let specs: Vec<TensorSpec> = tensors
            .into_iter()
            .map(|(name, shape, type_id)| {
                let qtype = QuantType::from_id(type_id).map_err(to_py)?;
                // numpy order -> ggml order: the one reversal on the write side.
                Ok(TensorSpec { name, dims: shape.into_iter().rev().collect(), qtype })
            })
            .collect::<PyResult<_>>()?;
        let w = py.detach(|| GgufWriter::create(&path, &metadata, &specs)).map_err(to_py)?;
        Ok(PyGgufWriter { inner: Some(w) })
    }

    fn write_tensor(&mut self, py: Python<'_>, name: &str, data: PyReadonlyArray1<'_, u8>) -> PyResult<()> {
        let w = self.inner.as_mut().ok_or_else(|| PyValueError::new_err("the writer is closed"))?;
        let bytes = data.as_slice().map_err(|_| PyValueError::new_err("tensor data must be contiguous"))?;
        let result = py.detach(|| w.write_tensor(name, bytes));
        if result.is_err() {
            // A failed write leaves the file inconsistent: drop it (removes the temporary).
            self.inner = None;
        }
        result.map_err(to_py)
    }

    /// Name of the tensor `write_tensor` expects next, or None when all are written.
    fn next_tensor(&self) -> Option<String> {
        self.inner.as_ref().and_then(|w| w.next_tensor()).map(|t| t.name.clone())
    }

    fn finish(&mut self, py: Python<'_>) -> PyResult<()> {
        let w = self.inner.take().ok_or_else(|| PyValueError::new_err("the writer is closed"))?;
        py.detach(|| w.finish()).map_err(to_py)
    }

    /// Abandons the file: the temporary is removed, the target is untouched.
    fn abort(&mut self) {
        self.inner = None;
    }
}
