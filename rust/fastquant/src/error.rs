//! The crate's one error type. Every message says what is wrong and where, so the Python layer can
//! pass it on unchanged.

/// Errors returned by fastquant's public functions.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    #[error("unknown ggml type id {0}")]
    UnknownTypeId(u32),

    #[error("unknown quantization type name '{0}'")]
    UnknownTypeName(String),

    #[error("{qtype}: {what} is not implemented in fastquant yet")]
    Unsupported { qtype: &'static str, what: &'static str },

    #[error("{qtype}: row length {len} is not a multiple of the block size {block}")]
    BlockMultiple { qtype: &'static str, len: usize, block: usize },

    #[error("size mismatch: {what}: expected {expected}, got {got}")]
    Size { what: &'static str, expected: usize, got: usize },

    #[error("input has a non-finite value ({value}) at flat index {index}")]
    NonFinite { index: usize, value: f32 },

    #[error("size overflow: {0} elements")]
    TooLarge(usize),

    #[error("unknown SIMD level '{0}' (expected one of: scalar, avx2, avx512, avx512vnni)")]
    UnknownSimdLevel(String),

    #[error("FASTQUANT_SIMD={value}: {reason}")]
    SimdEnv { value: String, reason: String },

    #[error("SIMD level '{requested}' is not available on this CPU (best available: {best})")]
    SimdUnavailable { requested: &'static str, best: &'static str },

    #[error("GGUF error at byte {offset}: {what}")]
    Gguf { offset: u64, what: String },

    #[error("{1}")]
    Io(std::io::ErrorKind, String),

    #[error("invalid argument: {0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
