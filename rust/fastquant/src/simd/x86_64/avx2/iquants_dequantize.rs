//! AVX2 dequantize kernels for the 32-element 4-bit lookup-table formats IQ4_NL and MXFP4 (MXFP4
//! decodes exactly like IQ4_NL with another table and scale). `vpshufb` looks up the 32 table
//! values of a block; each output is the scalar code's one product of a table value (exact in
//! f32) and the scale, the only operand that can be NaN, so the order of the product's operands
//! does not change its bits.

use std::arch::x86_64::*;

use super::safe_wrappers;
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::formats::mxfp4::{e8m0_to_fp32_half, KVALUES_MXFP4};

/// Elements per block.
const QK: usize = 32;

/// Decodes every `B`-byte block of `src` into 32 floats: the scale from `scale`, the 16 code bytes
/// from `b[at..at + 16]` looked up in `values` (low nibbles elements 0..16, high ones 16..32).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_lookup<const B: usize>(
    src: &[u8],
    dst: &mut [f32],
    values: &[i8; 16],
    at: usize,
    scale: impl Fn(&[u8; B]) -> __m256,
) {
    let (blocks, rest) = src.as_chunks::<B>();
    assert!(rest.is_empty() && dst.len() == QK * blocks.len(), "partial blocks");
    // SAFETY: `values` is 16 readable bytes; `loadu` has no alignment requirement.
    let t = unsafe { _mm_loadu_si128(values.as_ptr().cast()) };
    let m4 = _mm_set1_epi8(0x0f);
    for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let d = scale(b);
        let q: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
        // SAFETY: `q` is 16 readable bytes; `loadu` has no alignment requirement.
        let q = unsafe { _mm_loadu_si128(q.as_ptr().cast()) };
        let lo = _mm_shuffle_epi8(t, _mm_and_si128(q, m4));
        let hi = _mm_shuffle_epi8(t, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
        let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
        for (i, part) in parts.into_iter().enumerate() {
            let v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part)), d);
            // SAFETY: `y` is 32 writable floats and 8i + 8 <= 32; `storeu` has no alignment needs.
            unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(8 * i), v) };
        }
    }
}

/// `dequantize_row_iq4_nl`: `d * kvalues_iq4nl[q]`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_iq4_nl_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_lookup::<18>(src, dst, &KVALUES_IQ4NL, 2, |b| {
        _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes([b[0], b[1]])))
    });
}

/// `dequantize_row_mxfp4`: `kvalues_mxfp4[q] * 2^(e - 128)`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_mxfp4_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_lookup::<17>(src, dst, &KVALUES_MXFP4, 1, |b| _mm256_set1_ps(e8m0_to_fp32_half(b[0])));
}

safe_wrappers! {
    dequantize_iq4_nl(src: &[u8], dst: &mut [f32]) => dequantize_iq4_nl_avx2;
    dequantize_mxfp4(src: &[u8], dst: &mut [f32]) => dequantize_mxfp4_avx2;
}
