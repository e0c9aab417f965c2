//! GGUF writing for C: an opaque handle over the core crate's streaming, atomic `GgufWriter`.
//!
//! Two phases, as the core writer needs the whole header before any data: first the metadata and
//! the tensor list are declared (`fq_gguf_writer_add_*`), then each tensor's data is written in
//! the declared order (`fq_gguf_writer_write_tensor`; the first call writes the header to a
//! temporary file beside the target). `fq_gguf_writer_finish` renames the temporary over the
//! target; `fq_gguf_writer_free` without a finish removes it, so the target is never half written.

use std::ffi::c_char;
use std::path::Path;

use fastquant::gguf::{GgufWriter, TensorSpec, Value, ValueType};
use fastquant::QuantType;

use crate::ffi::{guard, in_slice, out_ref, str_arg, CError};
use crate::FqStatus;

/// A GGUF file being written. Opaque to C; one thread at a time may use a handle.
pub struct FqGgufWriter {
    path: String,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorSpec>,
    state: WriterState,
}

enum WriterState {
    /// Metadata and tensors may still be added; nothing is on disk yet.
    Declaring,
    /// The header is in the temporary file; tensor data is being written.
    Writing(GgufWriter),
    /// Renamed into place (or a finish that failed: the temporary is gone either way).
    Closed,
}

/// The handle behind `w`, or an error for NULL.
///
/// # Safety
/// A non-null `w` must come from `fq_gguf_writer_open`, not be freed, and not be in use elsewhere.
unsafe fn writer<'a>(w: *mut FqGgufWriter) -> Result<&'a mut FqGgufWriter, CError> {
    // SAFETY: the caller's contract.
    unsafe { out_ref("gguf writer", w) }
}

impl FqGgufWriter {
    fn add_metadata(&mut self, key: &str, value: Value) -> Result<(), CError> {
        self.check_declaring(&format!("metadata '{key}'"))?;
        if key.is_empty() || self.metadata.iter().any(|(k, _)| k == key) {
            return Err(CError::invalid(format!("metadata key '{key}' is empty or already added")));
        }
        self.metadata.push((key.to_owned(), value));
        Ok(())
    }

    fn check_declaring(&self, what: &str) -> Result<(), CError> {
        match self.state {
            WriterState::Declaring => Ok(()),
            _ => Err(CError::invalid(format!(
                "cannot add {what}: metadata and tensors must all be added before the first fq_gguf_writer_write_tensor"
            ))),
        }
    }
}

/// A scalar metadata value of GGUF type `value_type` from an integer, range-checked.
fn int_value(key: &str, value_type: u32, v: i64) -> Result<Value, CError> {
    let out_of_range = || CError::invalid(format!("metadata '{key}': {v} does not fit type {value_type}"));
    let ty = ValueType::from_u32(value_type)
        .ok_or_else(|| CError::invalid(format!("metadata '{key}': {value_type} is not a GGUF value type")))?;
    Ok(match ty {
        ValueType::U8 => Value::U8(u8::try_from(v).map_err(|_| out_of_range())?),
        ValueType::I8 => Value::I8(i8::try_from(v).map_err(|_| out_of_range())?),
        ValueType::U16 => Value::U16(u16::try_from(v).map_err(|_| out_of_range())?),
        ValueType::I16 => Value::I16(i16::try_from(v).map_err(|_| out_of_range())?),
        ValueType::U32 => Value::U32(u32::try_from(v).map_err(|_| out_of_range())?),
        ValueType::I32 => Value::I32(i32::try_from(v).map_err(|_| out_of_range())?),
        ValueType::U64 => Value::U64(u64::try_from(v).map_err(|_| out_of_range())?),
        ValueType::I64 => Value::I64(v),
        ValueType::Bool if v == 0 || v == 1 => Value::Bool(v == 1),
        ValueType::Bool => return Err(out_of_range()),
        other => {
            return Err(CError::new(
                FqStatus::WrongValueType,
                format!("metadata '{key}': type {} is not an integer or bool type", other.name()),
            ))
        }
    })
}

/// Starts a GGUF v3 file at `path` (NUL-terminated UTF-8) and writes a new handle to `*out`.
/// Nothing is written to disk until the first `fq_gguf_writer_write_tensor` (or
/// `fq_gguf_writer_finish` for a file without tensors); the directory must exist.
///
/// Ownership: the handle belongs to the caller, who frees it with `fq_gguf_writer_free`, finished
/// or not. Threading: a writer handle must be used by one thread at a time. On error `*out` is
/// set to NULL.
///
/// # Safety
/// `path` must be NULL (an error) or NUL-terminated; `out` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_open(path: *const c_char, out: *mut *mut FqGgufWriter) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a writable pointer (function contract).
        let out = unsafe { out_ref("out", out) }?;
        *out = std::ptr::null_mut();
        // SAFETY: the caller passes NULL or a NUL-terminated string (function contract).
        let path = unsafe { str_arg("path", path) }?;
        let p = Path::new(path);
        if p.file_name().is_none() {
            return Err(CError::invalid(format!("{path} is not a file path")));
        }
        let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(CError::new(FqStatus::Io, format!("{path}: directory {} does not exist", dir.display())));
        }
        let handle = FqGgufWriter {
            path: path.to_owned(),
            metadata: Vec::new(),
            tensors: Vec::new(),
            state: WriterState::Declaring,
        };
        *out = Box::into_raw(Box::new(handle));
        Ok(())
    })
}

/// Frees a writer. If it was not finished, the temporary file (if any) is removed and the target
/// path is left as it was: this is how a writer is abandoned. NULL is ignored.
///
/// # Safety
/// `w` must be NULL or a handle from `fq_gguf_writer_open` not yet freed, not in use elsewhere.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_free(w: *mut FqGgufWriter) {
    if !w.is_null() {
        // SAFETY: `w` came from Box::into_raw in fq_gguf_writer_open and is freed once (caller's
        // contract). Dropping an unfinished core writer removes its temporary file; the removal's
        // error is ignored there, so the drop cannot panic.
        drop(unsafe { Box::from_raw(w) });
    }
}

/// Adds metadata `key` = the string `value` (both NUL-terminated UTF-8; copied).
///
/// # Safety
/// `w` must be NULL (an error) or a live writer; `key` and `value` NULL (an error) or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_add_string(
    w: *mut FqGgufWriter,
    key: *const c_char,
    value: *const c_char,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (all three pointers).
        let (w, key, value) = unsafe { (writer(w)?, str_arg("key", key)?, str_arg("value", value)?) };
        w.add_metadata(key, Value::String(value.to_owned()))
    })
}

/// Adds metadata `key` = `value` stored as GGUF type `value_type`: an integer type (0 UINT8,
/// 1 INT8, 2 UINT16, 3 INT16, 4 UINT32, 5 INT32, 10 UINT64, 11 INT64) or 7 BOOL (0 or 1). A value
/// outside the type's range is `FQ_STATUS_INVALID_ARGUMENT`; a non-integer type
/// `FQ_STATUS_WRONG_VALUE_TYPE`.
///
/// # Safety
/// `w` must be NULL (an error) or a live writer; `key` NULL (an error) or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_add_int(
    w: *mut FqGgufWriter,
    key: *const c_char,
    value_type: u32,
    value: i64,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (w, key) = unsafe { (writer(w)?, str_arg("key", key)?) };
        let v = int_value(key, value_type, value)?;
        w.add_metadata(key, v)
    })
}

/// Adds metadata `key` = `value` stored as 6 FLOAT32 (rounded to nearest) or 12 FLOAT64.
///
/// # Safety
/// `w` must be NULL (an error) or a live writer; `key` NULL (an error) or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_add_float(
    w: *mut FqGgufWriter,
    key: *const c_char,
    value_type: u32,
    value: f64,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (w, key) = unsafe { (writer(w)?, str_arg("key", key)?) };
        let v = match ValueType::from_u32(value_type) {
            Some(ValueType::F32) => Value::F32(value as f32),
            Some(ValueType::F64) => Value::F64(value),
            _ => {
                return Err(CError::new(
                    FqStatus::WrongValueType,
                    format!("metadata '{key}': type {value_type} is not 6 (FLOAT32) or 12 (FLOAT64)"),
                ))
            }
        };
        w.add_metadata(key, v)
    })
}

/// Adds metadata `key` = an array of `count` numbers of GGUF type `elem_type`, read from `values`
/// as that type's C element (`uint8_t` for 0 UINT8, `int8_t` for 1, `uint16_t` 2, `int16_t` 3,
/// `uint32_t` 4, `int32_t` 5, `float` 6 FLOAT32, `uint8_t` 0/1 for 7 BOOL, `uint64_t` 10,
/// `int64_t` 11, `double` 12 FLOAT64). `values` (copied) must be aligned for that element; it may
/// be NULL when `count` is 0.
///
/// # Safety
/// `w` must be NULL (an error) or a live writer; `key` NULL (an error) or NUL-terminated; `values`
/// NULL or `count` readable elements of the type `elem_type` names.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_add_array(
    w: *mut FqGgufWriter,
    key: *const c_char,
    elem_type: u32,
    values: *const std::ffi::c_void,
    count: usize,
) -> FqStatus {
    /// `count` elements of `T` at `values`, each turned into a `Value`.
    ///
    /// # Safety
    /// As the enclosing function's `values`.
    unsafe fn read<T: Copy>(
        values: *const std::ffi::c_void,
        count: usize,
        f: impl Fn(T) -> Value,
    ) -> Result<Vec<Value>, CError> {
        // SAFETY: the enclosing function's contract; in_slice checks NULL, alignment and size.
        let items = unsafe { in_slice("values", values.cast::<T>(), count) }?;
        Ok(items.iter().map(|&x| f(x)).collect())
    }
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (w, key) = unsafe { (writer(w)?, str_arg("key", key)?) };
        let ty = ValueType::from_u32(elem_type);
        // SAFETY: in every arm `values` holds `count` elements of the C type `elem_type` names
        // (function contract), which is the type that arm reads.
        let items = unsafe {
            match ty {
                Some(ValueType::U8) => read(values, count, Value::U8)?,
                Some(ValueType::I8) => read(values, count, Value::I8)?,
                Some(ValueType::U16) => read(values, count, Value::U16)?,
                Some(ValueType::I16) => read(values, count, Value::I16)?,
                Some(ValueType::U32) => read(values, count, Value::U32)?,
                Some(ValueType::I32) => read(values, count, Value::I32)?,
                Some(ValueType::F32) => read(values, count, Value::F32)?,
                Some(ValueType::U64) => read(values, count, Value::U64)?,
                Some(ValueType::I64) => read(values, count, Value::I64)?,
                Some(ValueType::F64) => read(values, count, Value::F64)?,
                Some(ValueType::Bool) => {
                    let bytes: &[u8] = in_slice("values", values.cast::<u8>(), count)?;
                    if let Some(i) = bytes.iter().position(|&b| b > 1) {
                        return Err(CError::invalid(format!("metadata '{key}': BOOL element {i} is {}", bytes[i])));
                    }
                    bytes.iter().map(|&b| Value::Bool(b == 1)).collect()
                }
                _ => {
                    return Err(CError::new(
                        FqStatus::WrongValueType,
                        format!(
                            "metadata '{key}': array element type {elem_type} is not a number or bool type \
                             (strings: fq_gguf_writer_add_string_array)"
                        ),
                    ))
                }
            }
        };
        let ty = ty.expect("matched a type above");
        w.add_metadata(key, Value::Array(ty, items))
    })
}

/// Adds metadata `key` = an array of the `count` NUL-terminated UTF-8 strings `values[0..count]`
/// (copied; a tokenizer's vocabulary, say). `values` may be NULL when `count` is 0.
///
/// # Safety
/// `w` must be NULL (an error) or a live writer; `key` NULL (an error) or NUL-terminated; `values`
/// NULL or `count` readable pointers, each NULL (an error) or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_add_string_array(
    w: *mut FqGgufWriter,
    key: *const c_char,
    values: *const *const c_char,
    count: usize,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (all three pointers).
        let (w, key, ptrs) = unsafe { (writer(w)?, str_arg("key", key)?, in_slice("values", values, count)?) };
        let items = ptrs
            .iter()
            .enumerate()
            // SAFETY: each pointer is NULL (an error) or NUL-terminated (function contract).
            .map(|(i, &p)| unsafe { str_arg(&format!("values[{i}]"), p) }.map(|s| Value::String(s.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        w.add_metadata(key, Value::Array(ValueType::String, items))
    })
}

/// Declares the next tensor: `name` (NUL-terminated UTF-8, at most 64 bytes, unique), ggml type
/// id `type_id`, and `n_dims` (1..=4) dimensions in ggml order (`dims[0]` is the row length, a
/// multiple of the type's block size). Its data is written later, in declaration order.
///
/// # Safety
/// `w` must be NULL (an error) or a live writer; `name` NULL (an error) or NUL-terminated; `dims`
/// NULL (an error) or `n_dims` readable elements.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_add_tensor(
    w: *mut FqGgufWriter,
    name: *const c_char,
    type_id: u32,
    n_dims: u32,
    dims: *const u64,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (w, name) = unsafe { (writer(w)?, str_arg("name", name)?) };
        w.check_declaring(&format!("tensor '{name}'"))?;
        if !(1..=4).contains(&n_dims) {
            return Err(CError::invalid(format!("tensor '{name}': n_dims is {n_dims}, not 1..=4")));
        }
        if dims.is_null() {
            return Err(CError::new(FqStatus::NullPointer, "dims is NULL"));
        }
        // SAFETY: non-null, and `n_dims` readable elements (function contract); in_slice checks alignment.
        let dims = unsafe { in_slice("dims", dims, n_dims as usize) }?;
        if w.tensors.iter().any(|t| t.name == name) {
            return Err(CError::invalid(format!("tensor '{name}' is already added")));
        }
        let spec = TensorSpec { name: name.to_owned(), dims: dims.to_vec(), qtype: QuantType::from_id(type_id)? };
        spec.nbytes()?; // a row that is not whole blocks, or a size that overflows, fails here
        w.tensors.push(spec);
        Ok(())
    })
}

/// The core writer, created (header written to the temporary file) on first use.
fn started(w: &mut FqGgufWriter) -> Result<&mut GgufWriter, CError> {
    if let WriterState::Declaring = w.state {
        w.state = WriterState::Writing(GgufWriter::create(&w.path, &w.metadata, &w.tensors)?);
    }
    match &mut w.state {
        WriterState::Writing(core) => Ok(core),
        _ => Err(CError::invalid(format!("the writer of {} is already finished", w.path))),
    }
}

/// Writes the data of tensor `name`, which must be the next declared one: `nbytes` bytes at `data`
/// (copied to the file during the call), exactly the tensor's size (`FQ_STATUS_SIZE` otherwise).
/// The first call writes the header; no metadata or tensor can be added after it.
///
/// # Safety
/// `w` must be NULL (an error) or a live writer; `name` NULL (an error) or NUL-terminated; `data`
/// NULL (an error unless `nbytes` is 0) or `nbytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_write_tensor(
    w: *mut FqGgufWriter,
    name: *const c_char,
    data: *const std::ffi::c_void,
    nbytes: usize,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (all three pointers).
        let (w, name, data) =
            unsafe { (writer(w)?, str_arg("name", name)?, in_slice("data", data.cast::<u8>(), nbytes)?) };
        started(w)?.write_tensor(name, data)?;
        Ok(())
    })
}

/// Checks that every declared tensor was written, flushes and syncs the temporary file and renames
/// it over the target path (atomically: readers see the old file or the whole new one). On error
/// the temporary is removed and the target is untouched. Either way the handle is still freed with
/// `fq_gguf_writer_free`; nothing more can be written with it.
///
/// # Safety
/// `w` must be NULL (an error) or a live writer.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_writer_finish(w: *mut FqGgufWriter) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract.
        let w = unsafe { writer(w) }?;
        started(w)?;
        if let WriterState::Writing(core) = std::mem::replace(&mut w.state, WriterState::Closed) {
            core.finish()?; // on error the core writer is dropped, which removes the temporary
        }
        Ok(())
    })
}
