//! The crate's one error type. Every message says what is wrong and where, so the Python layer can
//! pass it on unchanged.

/// Errors returned by fastquant's public functions.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// A ggml type id that names no type (ids removed from ggml included).
    #[error("unknown ggml type id {0}")]
    UnknownTypeId(u32),

    /// A type name that names no type.
    #[error("unknown quantization type name '{0}'")]
    UnknownTypeName(String),

    /// The type exists but fastquant has no code for this operation on it.
    #[error("{qtype}: {what} is not implemented in fastquant yet")]
    Unsupported {
        /// The type's name.
        qtype: &'static str,
        /// The operation ("quantization", "dequantization", ...).
        what: &'static str,
    },

    /// A row length that is not a whole number of the type's blocks.
    #[error("{qtype}: row length {len} is not a multiple of the block size {block}")]
    BlockMultiple {
        /// The type's name.
        qtype: &'static str,
        /// The row length given.
        len: usize,
        /// Elements per block of the type.
        block: usize,
    },

    /// A buffer whose length does not match what the other arguments imply.
    #[error("size mismatch: {what}: expected {expected}, got {got}")]
    Size {
        /// Which buffer, and in which unit.
        what: &'static str,
        /// The length the other arguments imply.
        expected: usize,
        /// The length given.
        got: usize,
    },

    /// NaN or infinity in input that must be finite (see `QuantizeOptions::check_finite`).
    #[error("input has a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        /// Flat index of the first non-finite element.
        index: usize,
        /// Its value.
        value: f32,
    },

    /// A size computation that overflows `usize`.
    #[error("size overflow: {0} elements")]
    TooLarge(usize),

    /// A SIMD level name that names no level.
    #[error("unknown SIMD level '{0}' (expected one of: scalar, avx2, avx512, avx512vnni)")]
    UnknownSimdLevel(String),

    /// A `FASTQUANT_SIMD` value that is no level, or a level this CPU lacks.
    #[error("FASTQUANT_SIMD={value}: {reason}")]
    SimdEnv {
        /// The variable's value.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// A SIMD level asked for explicitly that this CPU lacks.
    #[error("SIMD level '{requested}' is not available on this CPU (best available: {best})")]
    SimdUnavailable {
        /// The level asked for.
        requested: &'static str,
        /// The best level this CPU has.
        best: &'static str,
    },

    /// A malformed GGUF file, or a GGUF file that cannot be written as asked.
    #[error("GGUF error at byte {offset}: {what}")]
    Gguf {
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong, naming the field, key or tensor.
        what: String,
    },

    /// An operating-system error: its kind and a message naming the path.
    #[error("{1}")]
    Io(std::io::ErrorKind, String),

    /// Any other bad argument, with a message saying which and why.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// `Result` with fastquant's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
