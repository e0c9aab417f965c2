//! GGUF files: metadata values and a validating, memory-mapped reader.

pub mod reader;
pub mod value;

pub use reader::{GgufFile, GgufHeader, TensorInfo};
pub use value::{Value, ValueType};
