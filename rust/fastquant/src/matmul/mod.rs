//! Quantized matrix multiplication: `out = x @ dequantize(w).T` without dequantizing `w`.
//!
//! * [`dot`]: the kernel table; per weight type a dot product of one weight row with 1..=8
//!   activation rows (scalar reference, AVX2, AVX-512 VNNI), and the accumulation order that makes
//!   every level give the same bits.
//! * [`activation`]: activations quantized per row into the 8-bit type the weight pairs with.
//! * [`gemm`]: the drivers: GEMV for up to 8 rows (memory-bound: weight rows split over threads,
//!   each streamed once against every activation row) and GEMM for more (compute-bound: weight
//!   tiles kept in L2 and reused across groups of 8 activation rows; K in pieces whose activation
//!   rows stay in L1).
//! * [`packed`]: GEMM on weights repacked into panels of 16 rows, per type a register-blocked
//!   microkernel ([`packed::PackedKernel`]: panel and activation layouts, scalar reference, SIMD);
//!   [`packed_legacy`], [`packed_kquants`] and [`packed_float`] have the types' kernels, and
//!   [`packed_driver`] runs them (threads, tiles, weights packed once or on the fly).

pub mod activation;
pub mod dot;
pub mod dot_kquants;
pub mod gemm;
pub mod packed;
pub mod packed_driver;
pub mod packed_float;
pub mod packed_kquants;
pub mod packed_legacy;

pub use dot::{activation_type, dot_kernel_for, DotKernel, VecDotFn};
pub use gemm::{matmul, MatmulWeight};
