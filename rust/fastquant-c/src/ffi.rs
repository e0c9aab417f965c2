//! The plumbing every extern function shares: the panic guard, the thread-local error message,
//! and the checks that turn C pointers into slices.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::FqStatus;

/// An error on its way to C: the status code and the message `fq_last_error` will return.
#[derive(Debug)]
pub(crate) struct CError {
    pub status: FqStatus,
    pub message: String,
}

impl CError {
    pub fn new(status: FqStatus, message: impl Into<String>) -> Self {
        CError { status, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        CError::new(FqStatus::InvalidArgument, message)
    }

    pub fn out_of_range(what: &str, index: usize, len: usize) -> Self {
        CError::new(FqStatus::OutOfRange, format!("{what} {index} is out of range (there are {len})"))
    }
}

impl From<fastquant::Error> for CError {
    fn from(e: fastquant::Error) -> Self {
        use fastquant::Error as E;
        let status = match &e {
            E::UnknownTypeId(_) | E::UnknownTypeName(_) => FqStatus::UnknownType,
            E::Unsupported { .. } => FqStatus::Unsupported,
            E::BlockMultiple { .. } | E::Size { .. } | E::TooLarge(_) => FqStatus::Size,
            E::NonFinite { .. } => FqStatus::NonFinite,
            E::UnknownSimdLevel(_) | E::SimdEnv { .. } | E::SimdUnavailable { .. } => FqStatus::Simd,
            E::Gguf { .. } => FqStatus::Gguf,
            E::Io(..) => FqStatus::Io,
            E::Invalid(_) => FqStatus::InvalidArgument,
        };
        CError { status, message: e.to_string() }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A NUL inside the message (from a file name, say) would cut it short in C: escape it.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The current thread's message; valid until this thread's next `guard` replaces it.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an extern function's body: clears the thread's message, catches any panic, and turns the
/// result into a status code (recording the message of an error).
pub(crate) fn guard(body: impl FnOnce() -> Result<(), CError>) -> FqStatus {
    set_last_error("");
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => FqStatus::Ok,
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".into());
            // Dropping a payload can itself panic; leak it rather than risk an unwind into C.
            std::mem::forget(payload);
            set_last_error(&format!("internal error in fastquant (please report): {what}"));
            FqStatus::Panic
        }
    }
}

fn null_error(what: &str) -> CError {
    CError::new(FqStatus::NullPointer, format!("{what} is NULL"))
}

/// `ptr` as a mutable reference, or an error if it is NULL or misaligned.
///
/// # Safety
/// A non-null `ptr` must point to a writable `T` that nothing else accesses during the call.
pub(crate) unsafe fn out_ref<'a, T>(what: &str, ptr: *mut T) -> Result<&'a mut T, CError> {
    if ptr.is_null() {
        return Err(null_error(what));
    }
    if !ptr.is_aligned() {
        return Err(CError::invalid(format!("{what} is not aligned to {} bytes", align_of::<T>())));
    }
    // SAFETY: non-null and aligned checked above; validity is the caller's contract.
    Ok(unsafe { &mut *ptr })
}

/// `ptr` as a shared reference, or an error if it is NULL or misaligned.
///
/// # Safety
/// A non-null `ptr` must point to a valid `T` that is not written during the call.
pub(crate) unsafe fn in_ref<'a, T>(what: &str, ptr: *const T) -> Result<&'a T, CError> {
    if ptr.is_null() {
        return Err(null_error(what));
    }
    if !ptr.is_aligned() {
        return Err(CError::invalid(format!("{what} is not aligned to {} bytes", align_of::<T>())));
    }
    // SAFETY: non-null and aligned checked above; validity is the caller's contract.
    Ok(unsafe { &*ptr })
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// A non-null `ptr` must point to a NUL-terminated string that lives for the call.
pub(crate) unsafe fn str_arg<'a>(what: &str, ptr: *const c_char) -> Result<&'a str, CError> {
    if ptr.is_null() {
        return Err(null_error(what));
    }
    // SAFETY: non-null; NUL termination is the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|e| CError::invalid(format!("{what} is not valid UTF-8: {e}")))
}

/// Checks a (pointer, element count) pair: NULL is allowed only for 0 elements, the pointer must
/// be aligned for `T`, and the byte size must fit in `isize`.
fn check_buffer<T>(what: &str, ptr: *const T, len: usize) -> Result<(), CError> {
    if ptr.is_null() {
        return if len == 0 { Ok(()) } else { Err(null_error(what)) };
    }
    if !ptr.is_aligned() {
        return Err(CError::invalid(format!("{what} is not aligned to {} bytes", align_of::<T>())));
    }
    if len.checked_mul(size_of::<T>()).is_none_or(|bytes| bytes > isize::MAX as usize) {
        return Err(CError::new(FqStatus::Size, format!("{what}: {len} elements is too large a buffer")));
    }
    Ok(())
}

/// A caller's input buffer of `len` elements as a slice (empty for NULL with `len` 0).
///
/// # Safety
/// A non-null `ptr` must point to `len` initialised elements not written during the call.
pub(crate) unsafe fn in_slice<'a, T>(what: &str, ptr: *const T, len: usize) -> Result<&'a [T], CError> {
    check_buffer(what, ptr, len)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-null, aligned and size-checked above; the elements are the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A caller's output buffer of `len` elements as a mutable slice.
///
/// # Safety
/// A non-null `ptr` must point to `len` writable elements that nothing else accesses during the
/// call (overlap with the call's inputs is checked separately with [`check_disjoint`]).
pub(crate) unsafe fn out_slice<'a, T>(what: &str, ptr: *mut T, len: usize) -> Result<&'a mut [T], CError> {
    check_buffer(what, ptr, len)?;
    if len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: non-null, aligned and size-checked above; the elements are the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// The byte range a buffer covers, for [`check_disjoint`].
pub(crate) fn byte_range<T>(ptr: *const T, len: usize) -> (usize, usize) {
    let start = ptr as usize;
    (start, start.saturating_add(len.saturating_mul(size_of::<T>())))
}

/// Errors when the output buffer overlaps any input: Rust may not hold `&mut` and `&` to the same
/// bytes, and no kernel here works in place.
pub(crate) fn check_disjoint(output: (usize, usize), inputs: &[(&str, (usize, usize))]) -> Result<(), CError> {
    for (what, input) in inputs {
        if output.0 < output.1 && input.0 < input.1 && output.0 < input.1 && input.0 < output.1 {
            return Err(CError::invalid(format!(
                "the output buffer overlaps {what}; fastquant does not work in place"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: the pointer is this thread's current message, NUL-terminated, read at once.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("kernel bug at block 3"));
        assert_eq!(status, FqStatus::Panic);
        assert!(last_error().contains("kernel bug at block 3"), "{}", last_error());
        let status = guard(|| std::panic::panic_any(17u32));
        assert_eq!(status, FqStatus::Panic);
        assert!(last_error().contains("unknown panic payload"), "{}", last_error());
        // The next successful call clears the message.
        assert_eq!(guard(|| Ok(())), FqStatus::Ok);
        assert_eq!(last_error(), "");
    }

    #[test]
    fn the_message_is_per_thread() {
        let status = guard(|| Err(CError::invalid("bad on this thread")));
        assert_eq!(status, FqStatus::InvalidArgument);
        let other = std::thread::spawn(|| {
            assert_eq!(last_error(), "");
            guard(|| Err(CError::invalid("bad on the other thread")));
            last_error()
        })
        .join()
        .unwrap();
        assert_eq!(other, "bad on the other thread");
        assert_eq!(last_error(), "bad on this thread");
    }

    #[test]
    fn a_nul_in_a_message_is_escaped_not_truncated() {
        guard(|| Err(CError::invalid("a\0b")));
        assert_eq!(last_error(), "a\\0b");
    }

    #[test]
    fn overlap_is_detected_and_adjacency_is_not() {
        let a = (100, 200);
        assert!(check_disjoint(a, &[("x", (150, 250))]).is_err());
        assert!(check_disjoint(a, &[("x", (50, 101))]).is_err());
        assert!(check_disjoint(a, &[("x", (200, 300)), ("y", (0, 100))]).is_ok());
        assert!(check_disjoint((100, 100), &[("x", (50, 150))]).is_ok(), "an empty output overlaps nothing");
    }
}
