//! AVX2 kernels (with FMA and F16C). Same file stems as `formats/`: `legacy.rs` for Q4_0..Q8_1,
//! `float.rs` for F16/BF16, `kquants.rs` for quantizing Q4_K/Q5_K/Q6_K (F32 has no kernel here:
//! the scalar copy already runs at memcpy speed).
//!
//! Every kernel gives the scalar reference's bytes (quantize) and bits (dequantize) for every input,
//! NaN, infinities and subnormals included; `tests/formats.rs` checks this level against scalar.
//!
//! Soundness: the kernels are `#[target_feature(enable = "avx2,fma,f16c")]` functions, which may
//! only run on a CPU with those features. The table [`kernels`] returns holds safe wrappers around
//! them, and it is only handed out in exchange for an [`Avx2`] token, which only detection creates.
//! Helpers are `#[target_feature]` functions too (so they inline into the kernels); the only
//! `unsafe` inside the kernels is for unaligned loads and stores through pointers, each in bounds
//! of a fixed-size array.

mod attention;
pub(super) mod dot;
pub(super) mod dot_float; // its prefetch distance is shared with AVX-512
pub(super) mod dot_kquants; // its unpacking and driver are shared with AVX-512
mod float;
mod gemm_float;
pub(super) mod gemm_kquants; // its activation prefetch is shared with AVX-512
mod gemm_legacy;
pub(super) mod iquants; // its group loop is shared with AVX-512
mod iquants_dequantize;
pub(super) mod kquants;
mod kquants_dequantize;
pub(super) mod kquants_imatrix; // its scalar parts are shared with AVX-512
pub(super) mod kquants_low; // its scalar epilogues are shared with AVX-512
mod legacy;

use std::arch::x86_64::*;

use crate::formats::{DequantizeFn, QuantizeFn, QuantizeImatrixFn};
use crate::simd::IsaKernels;
use crate::types::QuantType;

use super::Avx2;

pub use attention::attention_kernels;

/// The AVX2 kernels for `qtype`; fields left `None` fall back to the next lower level.
pub fn kernels(_token: Avx2, qtype: QuantType) -> IsaKernels {
    let (quantize, dequantize) = plain_kernels(qtype);
    IsaKernels { quantize, dequantize, quantize_imatrix: imatrix_kernel(qtype) }
}

/// The matmul dot kernel for `weight` at this level (`matmul::dot` has the contract): the legacy,
/// IQ4_NL kernels of `dot.rs`, the float ones of `dot_float.rs`, the K-quant and IQ4_XS ones of
/// `dot_kquants.rs`.
pub fn dot_kernel(_token: Avx2, weight: QuantType) -> Option<crate::matmul::VecDotFn> {
    dot::kernel(weight).or_else(|| dot_float::kernel(weight)).or_else(|| dot_kquants::kernel(weight))
}

/// The packed float GEMM of `kind` at this level (`matmul::packed_float` has the contract).
pub fn packed_float_gemm(_token: Avx2, kind: crate::matmul::dot::FloatKind) -> crate::matmul::packed::PackedGemmFn {
    gemm_float::gemm(kind)
}

/// The packed-GEMM microkernel of a legacy type or IQ4_NL (`matmul::packed_legacy`).
pub fn packed_gemm_legacy(
    _token: Avx2,
    kind: crate::matmul::packed_legacy::Kind,
) -> crate::matmul::packed::PackedGemmFn {
    gemm_legacy::kernel(kind)
}

/// The packed-GEMM microkernel of format `index` of `matmul::packed_kquants` (Q2_K..Q6_K,
/// IQ4_XS) at this level.
pub fn packed_kquant_gemm(_token: Avx2, index: usize) -> crate::matmul::packed::PackedGemmFn {
    gemm_kquants::kernel(index)
}

/// The importance-weighted quantizers at this level (whole rows plus the imatrix).
fn imatrix_kernel(qtype: QuantType) -> Option<QuantizeImatrixFn> {
    match qtype {
        QuantType::IQ4_NL => Some(iquants::quantize_iq4_nl_imatrix),
        QuantType::IQ4_XS => Some(iquants::quantize_iq4_xs_imatrix),
        QuantType::Q2_K => Some(kquants_imatrix::quantize_q2_k_imatrix),
        QuantType::Q3_K => Some(kquants_imatrix::quantize_q3_k_imatrix),
        QuantType::Q4_K => Some(kquants_imatrix::quantize_q4_k_imatrix),
        QuantType::Q5_K => Some(kquants_imatrix::quantize_q5_k_imatrix),
        QuantType::Q6_K => Some(kquants_imatrix::quantize_q6_k_imatrix),
        _ => None,
    }
}

/// The plain quantize and dequantize kernels at this level.
fn plain_kernels(qtype: QuantType) -> (Option<QuantizeFn>, Option<DequantizeFn>) {
    let (quantize, dequantize): (QuantizeFn, DequantizeFn) = match qtype {
        QuantType::F16 => (float::quantize_f16, float::dequantize_f16),
        QuantType::BF16 => (float::quantize_bf16, float::dequantize_bf16),
        QuantType::Q4_0 => (legacy::quantize_q4_0, legacy::dequantize_q4_0),
        QuantType::Q4_1 => (legacy::quantize_q4_1, legacy::dequantize_q4_1),
        QuantType::Q5_0 => (legacy::quantize_q5_0, legacy::dequantize_q5_0),
        QuantType::Q5_1 => (legacy::quantize_q5_1, legacy::dequantize_q5_1),
        QuantType::Q8_0 => (legacy::quantize_q8_0, legacy::dequantize_q8_0),
        QuantType::Q8_1 => (legacy::quantize_q8_1, legacy::dequantize_q8_1),
        QuantType::Q2_K => (kquants_low::quantize_q2_k, kquants_dequantize::dequantize_q2_k),
        QuantType::Q3_K => (kquants_low::quantize_q3_k, kquants_dequantize::dequantize_q3_k),
        QuantType::Q4_K => (kquants::quantize_q4_k, kquants_dequantize::dequantize_q4_k),
        QuantType::Q5_K => (kquants::quantize_q5_k, kquants_dequantize::dequantize_q5_k),
        QuantType::Q6_K => (kquants::quantize_q6_k, kquants_dequantize::dequantize_q6_k),
        QuantType::IQ4_NL => (iquants::quantize_iq4_nl, iquants_dequantize::dequantize_iq4_nl),
        QuantType::IQ4_XS => (iquants::quantize_iq4_xs, kquants_dequantize::dequantize_iq4_xs),
        QuantType::TQ1_0 => (iquants::quantize_tq1_0, kquants_dequantize::dequantize_tq1_0),
        QuantType::TQ2_0 => (iquants::quantize_tq2_0, kquants_dequantize::dequantize_tq2_0),
        QuantType::MXFP4 => (iquants::quantize_mxfp4, iquants_dequantize::dequantize_mxfp4),
        // Every other type falls back to the next lower level.
        _ => return (None, None),
    };
    (Some(quantize), Some(dequantize))
}

/// Defines safe `fn(&[f32], &mut [u8])` / `fn(&[u8], &mut [f32])` wrappers around
/// `#[target_feature]` kernels, for the table above.
macro_rules! safe_wrappers {
    ($( $(#[$doc:meta])* $name:ident($a:ident: $ta:ty, $b:ident: $tb:ty) => $kernel:ident; )*) => {
        $(
            $(#[$doc])*
            pub(super) fn $name($a: $ta, $b: $tb) {
                // SAFETY: these wrappers are only reachable through the table `avx2::kernels`
                // returns, which it only returns for an `Avx2` token; the token exists only after
                // run-time detection found AVX2, FMA and F16C, all that `$kernel` enables.
                unsafe { $kernel($a, $b) }
            }
        )*
    };
}
pub(crate) use safe_wrappers;

/// fp32 -> fp16 bits exactly as `formats::float::fp32_to_fp16` (ggml's `GGML_FP32_TO_FP16`).
///
/// `vcvtps2ph` with round-to-nearest-even agrees with ggml for every non-NaN value; for NaN ggml
/// writes `sign | 0x7E00` while the hardware keeps payload bits, hence the branch (NaN scales
/// are rare, so it predicts perfectly).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fp32_to_fp16(f: f32) -> u16 {
    if f.is_nan() {
        return ((f.to_bits() >> 16) as u16 & 0x8000) | 0x7e00;
    }
    _mm_extract_epi16::<0>(_mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(f))) as u16
}

/// `[fp16(a), fp16(b)]` as little-endian bytes, as [`fp32_to_fp16`] (the d, m pair of Q4_1/Q5_1).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fp32x2_to_fp16(a: f32, b: f32) -> [u8; 4] {
    if a.is_nan() || b.is_nan() {
        let (a, b) = (fp32_to_fp16(a).to_le_bytes(), fp32_to_fp16(b).to_le_bytes());
        return [a[0], a[1], b[0], b[1]];
    }
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_setr_ps(a, b, 0.0, 0.0));
    _mm_cvtsi128_si32(h).to_le_bytes()
}

/// fp16 bits -> fp32 in all eight lanes. `vcvtph2ps` is exact and, like the scalar `half`
/// conversion, keeps NaN payloads and sets the quiet bit.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn broadcast_fp16(bits: [u8; 2]) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes(bits)))
}
