//! Quantized matrix multiplication.

pub mod dot_kquants;
