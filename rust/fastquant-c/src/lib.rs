//! The C ABI of fastquant: every function C programs can call, and the conventions they share.
//!
//! * Every function returns an [`FqStatus`] (`FQ_STATUS_OK` = 0) unless it cannot fail; on failure
//!   [`fq_last_error`] gives a message that says what is wrong and where.
//! * Every body runs under `catch_unwind`: a panic becomes `FQ_STATUS_PANIC`, never an unwind into C.
//! * Pointers are checked (null, alignment, overlapping input and output) and every buffer comes
//!   with its length, so a bad argument is an error, never undefined behaviour - as long as the
//!   pointer really points at the number of elements the caller says.
//! * Buffers are owned by the caller; the only objects fastquant allocates are opaque handles
//!   (a GGUF file being read, [`FqGguf`], or written, [`FqGgufWriter`]), freed by their
//!   `fq_*_free` function.
//!
//! `include/fastquant.h` is generated from this crate by cbindgen (`tests/header.rs` checks it).

mod ffi;
mod gguf;
mod gguf_writer;
mod kernels;

use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use fastquant::simd::{self, Level};
use fastquant::{QuantType, TYPE_TABLE};

pub use gguf::*;
pub use gguf_writer::*;
pub use kernels::*;

use ffi::{guard, out_ref, CError};

/// The status every fallible function returns. `FQ_STATUS_OK` is 0; any other value means the call
/// did nothing useful and `fq_last_error()` says why.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FqStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL.
    NullPointer = 1,
    /// An argument is out of its domain (a bad option value, misaligned or overlapping buffers).
    InvalidArgument = 2,
    /// A buffer length does not match what the other arguments imply.
    Size = 3,
    /// A ggml type id or name that does not exist.
    UnknownType = 4,
    /// The type exists but fastquant cannot do this with it (e.g. quantize to IQ2_XXS).
    Unsupported = 5,
    /// The input holds NaN or infinity where finite values are required.
    NonFinite = 6,
    /// A SIMD level that does not exist or that this CPU lacks, or a bad `FASTQUANT_SIMD`.
    Simd = 7,
    /// A malformed GGUF file.
    Gguf = 8,
    /// An operating-system error (file not found, permission denied, ...).
    Io = 9,
    /// An index past the end of a table or file.
    OutOfRange = 10,
    /// A metadata value is not of the type asked for.
    WrongValueType = 11,
    /// No metadata key or tensor has the name asked for.
    NotFound = 12,
    /// A bug in fastquant (a caught panic); please report it with the message.
    Panic = 13,
}

/// Portable Rust code, the reference every SIMD level is tested against.
pub const FQ_SIMD_SCALAR: i32 = 0;
/// AVX2 + FMA + F16C.
pub const FQ_SIMD_AVX2: i32 = 1;
/// AVX-512 F/BW/VL/DQ.
pub const FQ_SIMD_AVX512: i32 = 2;
/// AVX-512 with VNNI.
pub const FQ_SIMD_AVX512VNNI: i32 = 3;
/// For `fq_simd_set`: back to the `FASTQUANT_SIMD` environment variable, or the best detected level.
pub const FQ_SIMD_DEFAULT: i32 = -1;

/// ggml type id of F32 (also the element type id of float buffers).
pub const FQ_TYPE_F32: u32 = 0;
/// ggml type id of F16 (IEEE half, passed as `uint16_t` bit patterns).
pub const FQ_TYPE_F16: u32 = 1;
/// ggml type id of Q4_0.
pub const FQ_TYPE_Q4_0: u32 = 2;
/// ggml type id of Q4_1.
pub const FQ_TYPE_Q4_1: u32 = 3;
/// ggml type id of Q5_0.
pub const FQ_TYPE_Q5_0: u32 = 6;
/// ggml type id of Q5_1.
pub const FQ_TYPE_Q5_1: u32 = 7;
/// ggml type id of Q8_0.
pub const FQ_TYPE_Q8_0: u32 = 8;
/// ggml type id of Q2_K.
pub const FQ_TYPE_Q2_K: u32 = 10;
/// ggml type id of Q3_K.
pub const FQ_TYPE_Q3_K: u32 = 11;
/// ggml type id of Q4_K.
pub const FQ_TYPE_Q4_K: u32 = 12;
/// ggml type id of Q5_K.
pub const FQ_TYPE_Q5_K: u32 = 13;
/// ggml type id of Q6_K.
pub const FQ_TYPE_Q6_K: u32 = 14;
/// ggml type id of IQ4_NL.
pub const FQ_TYPE_IQ4_NL: u32 = 20;
/// ggml type id of IQ4_XS.
pub const FQ_TYPE_IQ4_XS: u32 = 23;
/// ggml type id of BF16 (passed as `uint16_t` bit patterns).
pub const FQ_TYPE_BF16: u32 = 30;
/// ggml type id of MXFP4.
pub const FQ_TYPE_MXFP4: u32 = 39;

/// Static facts about one ggml type (a row of fastquant's type table).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FqTypeInfo {
    /// The ggml type id, as GGUF files store it.
    pub id: u32,
    /// The name ggml prints (`"Q4_K"`): a static NUL-terminated string, never freed.
    pub name: *const c_char,
    /// Elements per block (1 for F32/F16/BF16).
    pub block_elems: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Non-zero when `fq_quantize` can encode this type.
    pub can_quantize: i32,
    /// Non-zero when `fq_dequantize`, `fq_matmul` and attention can decode this type.
    pub can_dequantize: i32,
}

/// The library version (`"0.1.0"`): a static NUL-terminated string, never freed.
///
/// Thread-safe; cannot fail.
#[no_mangle]
pub extern "C" fn fq_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the calling thread's most recent call that returned an `FqStatus`: what is
/// wrong and where if it failed, `""` if it succeeded (or no call was made yet).
///
/// Ownership: the string belongs to fastquant and stays valid until the calling thread's next
/// call that returns an `FqStatus` (copy it to keep it). Threading: each thread has its own message.
#[no_mangle]
pub extern "C" fn fq_last_error() -> *const c_char {
    ffi::last_error_ptr()
}

/// The best SIMD level this CPU supports (`FQ_SIMD_*`), detected once. Thread-safe; cannot fail.
#[no_mangle]
pub extern "C" fn fq_simd_detected() -> i32 {
    simd::detected_level() as i32
}

/// Writes the SIMD level kernels run at now (`FQ_SIMD_*`) to `*out_level`: the one set by
/// `fq_simd_set`, else `FASTQUANT_SIMD`, else the best detected.
///
/// Fails with `FQ_STATUS_SIMD` when `FASTQUANT_SIMD` is invalid. Thread-safe.
///
/// # Safety
/// `out_level` must be NULL (an error) or point to a writable `int32_t`.
#[no_mangle]
pub unsafe extern "C" fn fq_simd_active(out_level: *mut i32) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a writable int32_t (function contract).
        let out = unsafe { out_ref("out_level", out_level) }?;
        *out = simd::active_level()? as i32;
        Ok(())
    })
}

/// Sets the SIMD level of every later call in the process (`FQ_SIMD_DEFAULT` returns to the
/// environment's choice). Fails with `FQ_STATUS_SIMD` for an unknown level or one this CPU lacks.
///
/// Threading: process-wide; calls already running keep the level they started with.
#[no_mangle]
pub extern "C" fn fq_simd_set(level: i32) -> FqStatus {
    guard(|| {
        let level = if level == FQ_SIMD_DEFAULT { None } else { Some(level_from_i32(level)?) };
        simd::set_level(level)?;
        Ok(())
    })
}

/// The name of SIMD level `level` (`"avx2"`), or NULL for a value that is no level.
///
/// Ownership: a static string, never freed. Thread-safe; does not touch `fq_last_error`.
#[no_mangle]
pub extern "C" fn fq_simd_level_name(level: i32) -> *const c_char {
    match level {
        FQ_SIMD_SCALAR => c"scalar".as_ptr(),
        FQ_SIMD_AVX2 => c"avx2".as_ptr(),
        FQ_SIMD_AVX512 => c"avx512".as_ptr(),
        FQ_SIMD_AVX512VNNI => c"avx512vnni".as_ptr(),
        _ => std::ptr::null(),
    }
}

fn level_from_i32(level: i32) -> Result<Level, CError> {
    usize::try_from(level).ok().and_then(|i| Level::ALL.get(i).copied()).ok_or_else(|| {
        CError::new(FqStatus::Simd, format!("unknown SIMD level {level} (expected FQ_SIMD_SCALAR..FQ_SIMD_AVX512VNNI)"))
    })
}

/// Number of threads fastquant's kernels use (its own pool; `FASTQUANT_NUM_THREADS` sets the
/// initial size). Thread-safe; cannot fail.
#[no_mangle]
pub extern "C" fn fq_num_threads() -> usize {
    fastquant::num_threads()
}

/// Sets the number of threads fastquant's kernels use (at least 1).
///
/// Threading: process-wide; calls already running finish on the old pool.
#[no_mangle]
pub extern "C" fn fq_set_num_threads(threads: usize) -> FqStatus {
    guard(|| Ok(fastquant::set_num_threads(threads)?))
}

/// Number of rows in the type table; `fq_type_info_at(0 .. count-1)` lists them in id order.
/// Thread-safe; cannot fail.
#[no_mangle]
pub extern "C" fn fq_type_count() -> usize {
    TYPE_TABLE.len()
}

/// Writes row `index` of the type table to `*out`. Fails with `FQ_STATUS_OUT_OF_RANGE` past the end.
///
/// # Safety
/// `out` must be NULL (an error) or point to a writable `FqTypeInfo`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn fq_type_info_at(index: usize, out: *mut FqTypeInfo) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a writable FqTypeInfo (function contract).
        let out = unsafe { out_ref("out", out) }?;
        if index >= TYPE_TABLE.len() {
            return Err(CError::out_of_range("type table index", index, TYPE_TABLE.len()));
        }
        *out = type_info(index);
        Ok(())
    })
}

/// Writes the facts of the type with ggml id `type_id` to `*out`. Fails with
/// `FQ_STATUS_UNKNOWN_TYPE` for an id that is no type.
///
/// # Safety
/// `out` must be NULL (an error) or point to a writable `FqTypeInfo`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn fq_type_info(type_id: u32, out: *mut FqTypeInfo) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a writable FqTypeInfo (function contract).
        let out = unsafe { out_ref("out", out) }?;
        let qtype = QuantType::from_id(type_id)?;
        *out = type_info(table_index(qtype));
        Ok(())
    })
}

/// Writes the ggml id of the type named `name` (any letter case: `"q4_k"`) to `*out_id`.
///
/// # Safety
/// `name` must be NULL (an error) or a NUL-terminated string; `out_id` NULL or a writable
/// `uint32_t`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn fq_type_from_name(name: *const c_char, out_id: *mut u32) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a NUL-terminated string (function contract).
        let name = unsafe { ffi::str_arg("name", name) }?;
        // SAFETY: the caller passes NULL or a writable uint32_t (function contract).
        let out = unsafe { out_ref("out_id", out_id) }?;
        *out = QuantType::from_name(name)?.id();
        Ok(())
    })
}

/// Writes the bytes that `n_elems` elements of type `type_id` take to `*out_bytes`. Fails with
/// `FQ_STATUS_SIZE` when `n_elems` is not a whole number of blocks.
///
/// # Safety
/// `out_bytes` must be NULL (an error) or point to a writable `size_t`. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn fq_type_row_bytes(type_id: u32, n_elems: usize, out_bytes: *mut usize) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a writable size_t (function contract).
        let out = unsafe { out_ref("out_bytes", out_bytes) }?;
        *out = QuantType::from_id(type_id)?.row_bytes(n_elems)?;
        Ok(())
    })
}

fn table_index(qtype: QuantType) -> usize {
    TYPE_TABLE.iter().position(|info| info.qtype == qtype).expect("every QuantType has a table row")
}

/// Row `index` of the type table with its name as a static C string.
fn type_info(index: usize) -> FqTypeInfo {
    static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        TYPE_TABLE.iter().map(|info| CString::new(info.name).expect("type names have no NUL")).collect()
    });
    let info = &TYPE_TABLE[index];
    FqTypeInfo {
        id: info.id,
        name: names[index].as_ptr(),
        block_elems: info.block_elems,
        block_bytes: info.block_bytes,
        can_quantize: info.can_quantize.into(),
        can_dequantize: info.can_dequantize.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn c_str_to_string(s: *const c_char) -> Option<String> {
        // SAFETY: only called on fastquant's static level names, NUL-terminated or NULL.
        (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
    }

    #[test]
    fn type_constants_are_the_ggml_ids() {
        let pairs = [
            (FQ_TYPE_F32, QuantType::F32),
            (FQ_TYPE_F16, QuantType::F16),
            (FQ_TYPE_Q4_0, QuantType::Q4_0),
            (FQ_TYPE_Q4_1, QuantType::Q4_1),
            (FQ_TYPE_Q5_0, QuantType::Q5_0),
            (FQ_TYPE_Q5_1, QuantType::Q5_1),
            (FQ_TYPE_Q8_0, QuantType::Q8_0),
            (FQ_TYPE_Q2_K, QuantType::Q2_K),
            (FQ_TYPE_Q3_K, QuantType::Q3_K),
            (FQ_TYPE_Q4_K, QuantType::Q4_K),
            (FQ_TYPE_Q5_K, QuantType::Q5_K),
            (FQ_TYPE_Q6_K, QuantType::Q6_K),
            (FQ_TYPE_IQ4_NL, QuantType::IQ4_NL),
            (FQ_TYPE_IQ4_XS, QuantType::IQ4_XS),
            (FQ_TYPE_BF16, QuantType::BF16),
            (FQ_TYPE_MXFP4, QuantType::MXFP4),
        ];
        for (id, qtype) in pairs {
            assert_eq!(id, qtype.id(), "{qtype}");
        }
    }

    #[test]
    fn simd_constants_are_the_levels() {
        for level in Level::ALL {
            let name = c_str_to_string(fq_simd_level_name(level as i32)).unwrap();
            assert_eq!(name, level.name());
        }
        assert!(fq_simd_level_name(4).is_null());
        assert!(fq_simd_level_name(FQ_SIMD_DEFAULT).is_null());
    }
}
