//! GGUF files: metadata values, a validating memory-mapped reader and a streaming, atomic writer.

pub mod reader;
pub mod value;
pub mod writer;

pub use reader::{GgufFile, GgufHeader, TensorInfo};
pub use value::{Value, ValueType};
pub use writer::{GgufWriter, TensorSpec};
