//! GGUF reading for C: an opaque handle over the core crate's memory-mapped `GgufFile`.

use std::ffi::c_char;

use fastquant::gguf::{GgufFile, Value, ValueType};

use crate::ffi::{guard, in_ref, out_ref, str_arg, CError};
use crate::FqStatus;

/// An open GGUF file: the validated header and a read-only memory map of the data. Opaque to C.
/// Immutable once open, so one handle may be read from several threads at once.
pub struct FqGguf {
    file: GgufFile,
    /// Metadata keys as NUL-terminated bytes (the C view of `file.header.metadata[i].0`).
    keys: Vec<Vec<u8>>,
    /// String values as NUL-terminated bytes, `None` for other types.
    strings: Vec<Option<Vec<u8>>>,
    /// Tensor names as NUL-terminated bytes.
    tensor_names: Vec<Vec<u8>>,
}

/// One tensor's entry in a GGUF header.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FqTensorInfo {
    /// The tensor's name: NUL-terminated, owned by the handle, valid until `fq_gguf_free`.
    pub name: *const c_char,
    /// ggml type id of the data.
    pub type_id: u32,
    /// Number of dimensions (1..=4).
    pub n_dims: u32,
    /// Dimensions in ggml order: `dims[0]` is the row length (fastest-varying); unused ones are 1.
    pub dims: [u64; 4],
    /// Offset of the data from the start of the file's data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

fn nul_terminated(s: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(s.len() + 1);
    bytes.extend_from_slice(s.as_bytes());
    bytes.push(0);
    bytes
}

/// The position of `wanted` among `names`, or `FQ_STATUS_NOT_FOUND` with "`missing` 'wanted'".
fn find<'a>(mut names: impl Iterator<Item = &'a str>, wanted: &str, missing: &str) -> Result<usize, CError> {
    names.position(|n| n == wanted).ok_or_else(|| CError::new(FqStatus::NotFound, format!("{missing} '{wanted}'")))
}

/// The handle behind `h`, or an error for NULL.
///
/// # Safety
/// A non-null `h` must come from `fq_gguf_open` and not have been freed.
unsafe fn handle<'a>(h: *const FqGguf) -> Result<&'a FqGguf, CError> {
    // SAFETY: the caller's contract.
    unsafe { in_ref("gguf handle", h) }
}

impl FqGguf {
    fn metadata(&self, index: usize) -> Result<&Value, CError> {
        let metadata = &self.file.header.metadata;
        metadata.get(index).map(|(_, v)| v).ok_or_else(|| CError::out_of_range("metadata index", index, metadata.len()))
    }

    fn check_tensor(&self, index: usize) -> Result<(), CError> {
        let n = self.file.header.tensors.len();
        if index >= n {
            return Err(CError::out_of_range("tensor index", index, n));
        }
        Ok(())
    }

    fn wrong_type(&self, index: usize, wanted: &str) -> CError {
        let (key, value) = &self.file.header.metadata[index];
        CError::new(
            FqStatus::WrongValueType,
            format!("metadata '{key}' is {}, not {wanted}", value.value_type().name()),
        )
    }
}

/// Opens and validates the GGUF file at `path` (a NUL-terminated UTF-8 path) and writes a new
/// handle to `*out`. Only the header is read; tensor data is memory-mapped.
///
/// Ownership: the handle belongs to the caller, who frees it with `fq_gguf_free`; every pointer
/// obtained from it (names, strings, tensor data) is valid until then. Threading: a handle may be
/// read from several threads at once; `fq_gguf_free` must not run concurrently with other uses.
/// On error `*out` is set to NULL.
///
/// # Safety
/// `path` must be NULL (an error) or NUL-terminated; `out` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_open(path: *const c_char, out: *mut *mut FqGguf) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a writable pointer (function contract).
        let out = unsafe { out_ref("out", out) }?;
        *out = std::ptr::null_mut();
        // SAFETY: the caller passes NULL or a NUL-terminated string (function contract).
        let path = unsafe { str_arg("path", path) }?;
        let file = GgufFile::open(path)?;
        let header = &file.header;
        let keys = header.metadata.iter().map(|(k, _)| nul_terminated(k)).collect();
        let strings = header.metadata.iter().map(|(_, v)| v.as_str().map(nul_terminated)).collect();
        let tensor_names = header.tensors.iter().map(|t| nul_terminated(&t.name)).collect();
        *out = Box::into_raw(Box::new(FqGguf { file, keys, strings, tensor_names }));
        Ok(())
    })
}

/// Closes a handle from `fq_gguf_open` and unmaps the file; every pointer obtained from it becomes
/// invalid. NULL is ignored.
///
/// # Safety
/// `h` must be NULL or a handle from `fq_gguf_open` not yet freed, not in use on another thread.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_free(h: *mut FqGguf) {
    if !h.is_null() {
        // SAFETY: `h` came from Box::into_raw in fq_gguf_open and is freed once (caller's contract).
        // Dropping unmaps the file; nothing in the drop can panic.
        drop(unsafe { Box::from_raw(h) });
    }
}

/// Writes the number of metadata key/value pairs to `*out_count`.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_count` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_count(h: *const FqGguf, out_count: *mut usize) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_count", out_count)?) };
        *out = g.file.header.metadata.len();
        Ok(())
    })
}

/// Writes the key of metadata pair `index` (file order) to `*out_key`: NUL-terminated, owned by the
/// handle, valid until `fq_gguf_free`.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_key` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_key(h: *const FqGguf, index: usize, out_key: *mut *const c_char) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_key", out_key)?) };
        g.metadata(index)?;
        *out = g.keys[index].as_ptr().cast();
        Ok(())
    })
}

/// Writes the index of the metadata pair with key `key` to `*out_index`; `FQ_STATUS_NOT_FOUND`
/// when there is none.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `key` NULL (an error) or NUL-terminated;
/// `out_index` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_find(
    h: *const FqGguf,
    key: *const c_char,
    out_index: *mut usize,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (all three pointers).
        let (g, key, out) = unsafe { (handle(h)?, str_arg("key", key)?, out_ref("out_index", out_index)?) };
        *out = find(g.file.header.metadata.iter().map(|(k, _)| k.as_str()), key, "no metadata key")?;
        Ok(())
    })
}

/// Writes the GGUF value type of metadata pair `index` to `*out_type`: 0 UINT8, 1 INT8, 2 UINT16,
/// 3 INT16, 4 UINT32, 5 INT32, 6 FLOAT32, 7 BOOL, 8 STRING, 9 ARRAY, 10 UINT64, 11 INT64, 12 FLOAT64.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_type` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_type(h: *const FqGguf, index: usize, out_type: *mut u32) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_type", out_type)?) };
        *out = g.metadata(index)?.value_type() as u32;
        Ok(())
    })
}

/// Writes metadata value `index` to `*out_value` if it is an integer of any width or a bool (0/1);
/// `FQ_STATUS_WRONG_VALUE_TYPE` otherwise, or for a UINT64 above `INT64_MAX`.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_value` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_int(h: *const FqGguf, index: usize, out_value: *mut i64) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_value", out_value)?) };
        *out = match *g.metadata(index)? {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::I64(v) => v,
            Value::Bool(v) => v.into(),
            Value::U64(v) => i64::try_from(v).map_err(|_| g.wrong_type(index, "an integer that fits int64_t"))?,
            _ => return Err(g.wrong_type(index, "an integer")),
        };
        Ok(())
    })
}

/// Writes metadata value `index` to `*out_value` if it is a FLOAT32 or FLOAT64;
/// `FQ_STATUS_WRONG_VALUE_TYPE` otherwise.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_value` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_float(h: *const FqGguf, index: usize, out_value: *mut f64) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_value", out_value)?) };
        *out = match *g.metadata(index)? {
            Value::F32(v) => v.into(),
            Value::F64(v) => v,
            _ => return Err(g.wrong_type(index, "a float")),
        };
        Ok(())
    })
}

/// Writes metadata string `index` to `*out_str` (NUL-terminated, owned by the handle, valid until
/// `fq_gguf_free`) and, if `out_len` is not NULL, its length in bytes to `*out_len` (a string may
/// hold NUL bytes; the length counts them). `FQ_STATUS_WRONG_VALUE_TYPE` for a non-string.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_str` NULL (an error) or writable; `out_len`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_string(
    h: *const FqGguf,
    index: usize,
    out_str: *mut *const c_char,
    out_len: *mut usize,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_str", out_str)?) };
        g.metadata(index)?;
        let bytes = g.strings[index].as_ref().ok_or_else(|| g.wrong_type(index, "a string"))?;
        if !out_len.is_null() {
            // SAFETY: non-null checked; writable by the function contract.
            *unsafe { out_ref("out_len", out_len) }? = bytes.len() - 1;
        }
        *out = bytes.as_ptr().cast();
        Ok(())
    })
}

/// Writes the element type (as `fq_gguf_metadata_type` numbers them) and the length of metadata
/// array `index` to `*out_elem_type` and `*out_len`; `FQ_STATUS_WRONG_VALUE_TYPE` for a non-array.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; both outputs NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_metadata_array(
    h: *const FqGguf,
    index: usize,
    out_elem_type: *mut u32,
    out_len: *mut usize,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (all three pointers).
        let (g, elem_out, len_out) =
            unsafe { (handle(h)?, out_ref("out_elem_type", out_elem_type)?, out_ref("out_len", out_len)?) };
        match g.metadata(index)? {
            Value::Array(elem, items) => {
                *elem_out = *elem as u32;
                *len_out = items.len();
                Ok(())
            }
            _ => Err(g.wrong_type(index, ValueType::Array.name())),
        }
    })
}

/// Writes the number of tensors to `*out_count`.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_count` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_tensor_count(h: *const FqGguf, out_count: *mut usize) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_count", out_count)?) };
        *out = g.file.header.tensors.len();
        Ok(())
    })
}

/// Writes the index of the tensor named `name` to `*out_index`; `FQ_STATUS_NOT_FOUND` when there
/// is none.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `name` NULL (an error) or NUL-terminated;
/// `out_index` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_tensor_find(h: *const FqGguf, name: *const c_char, out_index: *mut usize) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (all three pointers).
        let (g, name, out) = unsafe { (handle(h)?, str_arg("name", name)?, out_ref("out_index", out_index)?) };
        *out = find(g.file.header.tensors.iter().map(|t| t.name.as_str()), name, "no tensor named")?;
        Ok(())
    })
}

/// Writes the header entry of tensor `index` (file order) to `*out_info`; its `name` is owned by the
/// handle and valid until `fq_gguf_free`.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; `out_info` NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_tensor_info(h: *const FqGguf, index: usize, out_info: *mut FqTensorInfo) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (both pointers).
        let (g, out) = unsafe { (handle(h)?, out_ref("out_info", out_info)?) };
        g.check_tensor(index)?;
        let t = &g.file.header.tensors[index];
        let mut dims = [1u64; 4];
        // The reader refuses more than 4 dimensions, so this never truncates.
        for (d, &n) in dims.iter_mut().zip(&t.dims) {
            *d = n;
        }
        *out = FqTensorInfo {
            name: g.tensor_names[index].as_ptr().cast(),
            type_id: t.qtype.id(),
            n_dims: t.dims.len() as u32,
            dims,
            offset: t.offset,
            size: t.size,
        };
        Ok(())
    })
}

/// Writes a pointer to tensor `index`'s bytes to `*out_data` and their count to `*out_bytes`. The
/// bytes are the memory-mapped file: read-only (writing them is undefined behaviour), owned by the
/// handle, valid until `fq_gguf_free`; they can be passed straight to `fq_matmul` or
/// `fq_dequantize`.
///
/// # Safety
/// `h` must be NULL (an error) or a live handle; both outputs NULL (an error) or writable.
#[no_mangle]
pub unsafe extern "C" fn fq_gguf_tensor_data(
    h: *const FqGguf,
    index: usize,
    out_data: *mut *const u8,
    out_bytes: *mut usize,
) -> FqStatus {
    guard(|| {
        // SAFETY: the function contract (all three pointers).
        let (g, data_out, bytes_out) =
            unsafe { (handle(h)?, out_ref("out_data", out_data)?, out_ref("out_bytes", out_bytes)?) };
        g.check_tensor(index)?;
        let data = g.file.tensor_data(index);
        *data_out = data.as_ptr();
        *bytes_out = data.len();
        Ok(())
    })
}
