//! fastquant: byte-exact ggml/GGUF block quantization for CPUs.
//!
//! The crate has no Python in it: `fastquant-py` is a thin Python binding on top, `fastquant-c` a C
//! ABI (`rust/fastquant-c/include/fastquant.h`). `examples/quantize_and_matmul.rs` walks through
//! quantize, dequantize, matmul and GGUF write/read. Functions return [`Result`] with an [`Error`]
//! whose message says what is wrong and where; nothing panics on bad input. Kernels run on the
//! crate's own thread pool ([`set_num_threads`]) at the SIMD level detected at run time
//! ([`simd::set_level`] or `FASTQUANT_SIMD` lower it). Layout:
//!
//! * [`types`]: every ggml type as one table ([`QuantType`], [`TypeInfo`]).
//! * [`formats`]: one file per block-format family, each block a `#[repr(C)]` struct with its scalar
//!   reference codec, a port of ggml's reference code and the specification for everything else.
//! * [`simd`]: run-time ISA detection (`FASTQUANT_SIMD` caps it) and the AVX2 / AVX-512 kernels,
//!   which must produce the same bytes as the scalar references.
//! * [`parallel`]: the crate's own rayon pool (`FASTQUANT_NUM_THREADS`) and work splitting.
//! * [`gguf`]: a strict, memory-mapped GGUF reader.
//! * [`matmul`]: quantized GEMV / GEMM on integer dot products.
//! * [`attention`](mod@attention): tiled flash attention (causal, GQA, masks, quantized KV).
//! * [`codec`]: whole-tensor [`quantize`] / [`dequantize`] on top of all of the above.
//!
//! ```
//! use fastquant::{quantize, dequantize, FloatSlice, FloatSliceMut, QuantType, QuantizeOptions};
//! let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
//! let mut q = vec![0u8; QuantType::Q8_0.row_bytes(64).unwrap()];
//! quantize(QuantType::Q8_0, FloatSlice::F32(&x), 64, &mut q, &QuantizeOptions::default()).unwrap();
//! let mut y = vec![0f32; 64];
//! dequantize(QuantType::Q8_0, &q, 64, FloatSliceMut::F32(&mut y), None).unwrap();
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.01));
//! ```

// Every public item is documented; scripts/test.sh turns rustdoc warnings into errors.
#![warn(missing_docs)]

pub mod attention;
pub mod codec;
pub mod error;
pub mod formats;
pub mod gguf;
pub mod matmul;
pub mod parallel;
pub mod simd;
pub mod types;

pub use attention::{attention, AttentionOptions, AttentionShape, KvData, MaskView, QueryData};
pub use codec::{dequantize, quantize, FloatSlice, FloatSliceMut, QuantizeOptions};
pub use error::{Error, Result};
pub use parallel::{num_threads, set_num_threads};
pub use simd::Level;
pub use types::{QuantType, TypeInfo, TYPE_TABLE};
