//! The K-quant super-block formats (QK_K = 256 elements per block).
//!
//! Ports of ggml's `quantize_row_*_ref` (plain path), `quantize_row_*_impl` (importance-weighted
//! path) and `dequantize_row_*` from `ggml-quants.c`. A K-quant block splits its 256 elements into
//! sub-blocks of 16 or 32 with their own small integer scale (and, for the "min" types, a small
//! integer minimum), which are in turn quantized against one or two fp16 super-scales.
//!
//! [`search`] holds ggml's shared scale searches (`make_qx_quants`, `make_qkx2_quants`, ...) that
//! the K-quants, and the importance-weighted legacy quantizers, are built from. They keep ggml's
//! exact float operation order (no FMA, left-to-right sums), so every caller gives ggml's bytes.

pub mod q2_k;
pub mod q3_k;
pub mod q4_k;
pub mod q5_k;
pub mod q6_k;
pub mod q8_k;
pub mod search;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_k::BlockQ4K;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_k::BlockQ8K;

/// Elements per K-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// Bytes of packed 6-bit scales and mins in a Q4_K / Q5_K block (ggml's `K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;
