//! AVX2 kernels for F16 and BF16 rows, 16 elements per iteration; a tail shorter than that goes
//! to the scalar reference (these rows may have any length).
//!
//! The scalar references in `formats::float` are ggml's conversions: F16 rounds to nearest even,
//! which `vcvtps2ph` does too, except that ggml writes every NaN as `sign | 0x7E00`; BF16 rounds
//! by integer addition (`(u + 0x7fff + lsb) >> 16`, so subnormals survive) and quiets a NaN by
//! setting bit 6. The reverse conversions are exact.

use std::arch::x86_64::*;

use crate::formats::float as scalar;

use super::safe_wrappers;

/// Elements per loop iteration.
const STEP: usize = 16;

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_f32x8(x: &[f32; STEP], at: usize) -> __m256 {
    assert!(at + 8 <= STEP);
    // SAFETY: elements at..at+8 are inside `x` (checked above, a constant after inlining).
    unsafe { _mm256_loadu_ps(x.as_ptr().add(at)) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_f32x8(y: &mut [f32; STEP], at: usize, v: __m256) {
    assert!(at + 8 <= STEP);
    // SAFETY: elements at..at+8 are inside `y` (checked above, a constant after inlining).
    unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(at), v) }
}

/// Eight u16 at bytes `x[at..at + 16]`, zero-extended to u32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u16x8_as_u32(x: &[u8; 2 * STEP], at: usize) -> __m256i {
    assert!(at + 16 <= 2 * STEP);
    // SAFETY: bytes at..at+16 are inside `x` (checked above); `loadu` needs no alignment.
    _mm256_cvtepu16_epi32(unsafe { _mm_loadu_si128(x.as_ptr().add(at).cast()) })
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u16x8(x: &[u8; 2 * STEP], at: usize) -> __m128i {
    assert!(at + 16 <= 2 * STEP);
    // SAFETY: bytes at..at+16 are inside `x` (checked above); `loadu` needs no alignment.
    unsafe { _mm_loadu_si128(x.as_ptr().add(at).cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_u8x32(y: &mut [u8; 2 * STEP], v: __m256i) {
    // SAFETY: `y` is exactly 32 bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_si256(y.as_mut_ptr().cast(), v) }
}

/// Panics unless `bytes` holds exactly `elems` 2-byte values (the kernel contract).
fn check_2_byte_row(elems: usize, bytes: usize) {
    assert_eq!(bytes, 2 * elems, "row of 2-byte values has the wrong size");
}

// ---- F16 ---------------------------------------------------------------------------------------

/// Eight floats to fp16 bits as ggml's `GGML_FP32_TO_FP16`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f32x8_to_f16(v: __m256) -> __m128i {
    // vcvtps2ph keeps the top payload bits of a NaN; ggml writes sign | 0x7E00. A NaN with only
    // the quiet bit set (sign | 0x7FC00000) converts to exactly that, so swap NaNs for it first.
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
    let quiet = _mm256_or_ps(_mm256_and_ps(v, _mm256_set1_ps(-0.0)), _mm256_set1_ps(f32::from_bits(0x7fc0_0000)));
    _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_blendv_ps(v, quiet, nan))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_f16_avx2(src: &[f32], dst: &mut [u8]) {
    check_2_byte_row(src.len(), dst.len());
    let (x, x_tail) = src.as_chunks::<STEP>();
    let (y, y_tail) = dst.as_chunks_mut::<{ 2 * STEP }>();
    for (x, y) in x.iter().zip(y) {
        let lo = f32x8_to_f16(load_f32x8(x, 0));
        let hi = f32x8_to_f16(load_f32x8(x, 8));
        store_u8x32(y, _mm256_set_m128i(hi, lo));
    }
    scalar::quantize_row_f16(x_tail, y_tail);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_f16_avx2(src: &[u8], dst: &mut [f32]) {
    check_2_byte_row(dst.len(), src.len());
    let (x, x_tail) = src.as_chunks::<{ 2 * STEP }>();
    let (y, y_tail) = dst.as_chunks_mut::<STEP>();
    for (x, y) in x.iter().zip(y) {
        // Exact, NaN payloads kept with the quiet bit set, as the scalar `half` conversion.
        store_f32x8(y, 0, _mm256_cvtph_ps(load_u16x8(x, 0)));
        store_f32x8(y, 8, _mm256_cvtph_ps(load_u16x8(x, 16)));
    }
    scalar::dequantize_row_f16(x_tail, y_tail);
}

// ---- BF16 --------------------------------------------------------------------------------------

/// Eight floats to bf16 bits (in the low half of u32 lanes) as ggml's `ggml_compute_fp32_to_bf16`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn f32x8_to_bf16(v: __m256) -> __m256i {
    let u = _mm256_castps_si256(v);
    let top = _mm256_srli_epi32::<16>(u);
    // Round to nearest even by adding 0x7fff plus the lowest kept bit; no lane overflows, since
    // the largest non-NaN pattern is 0xff800000.
    let bias = _mm256_add_epi32(_mm256_and_si256(top, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7fff));
    let rounded = _mm256_srli_epi32::<16>(_mm256_add_epi32(u, bias));
    // NaN: the top 16 bits with bit 6 set (quiet), instead of rounding into the exponent.
    let quieted = _mm256_or_si256(top, _mm256_set1_epi32(64));
    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
    _mm256_blendv_epi8(rounded, quieted, nan)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_bf16_avx2(src: &[f32], dst: &mut [u8]) {
    check_2_byte_row(src.len(), dst.len());
    let (x, x_tail) = src.as_chunks::<STEP>();
    let (y, y_tail) = dst.as_chunks_mut::<{ 2 * STEP }>();
    for (x, y) in x.iter().zip(y) {
        let lo = f32x8_to_bf16(load_f32x8(x, 0));
        let hi = f32x8_to_bf16(load_f32x8(x, 8));
        // Lanes hold 0..=0xffff, so packus does not saturate; it works per 128-bit lane, giving
        // qwords [lo 0..4, hi 0..4, lo 4..8, hi 4..8]: reorder them to 0, 2, 1, 3.
        let packed = _mm256_packus_epi32(lo, hi);
        store_u8x32(y, _mm256_permute4x64_epi64::<0b11_01_10_00>(packed));
    }
    scalar::quantize_row_bf16(x_tail, y_tail);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_bf16_avx2(src: &[u8], dst: &mut [f32]) {
    check_2_byte_row(dst.len(), src.len());
    let (x, x_tail) = src.as_chunks::<{ 2 * STEP }>();
    let (y, y_tail) = dst.as_chunks_mut::<STEP>();
    for (x, y) in x.iter().zip(y) {
        // bf16 is the top half of an f32: exact by shifting into place.
        let lo = _mm256_slli_epi32::<16>(load_u16x8_as_u32(x, 0));
        let hi = _mm256_slli_epi32::<16>(load_u16x8_as_u32(x, 16));
        store_f32x8(y, 0, _mm256_castsi256_ps(lo));
        store_f32x8(y, 8, _mm256_castsi256_ps(hi));
    }
    scalar::dequantize_row_bf16(x_tail, y_tail);
}

safe_wrappers! {
    quantize_f16(src: &[f32], dst: &mut [u8]) => quantize_f16_avx2;
    dequantize_f16(src: &[u8], dst: &mut [f32]) => dequantize_f16_avx2;
    quantize_bf16(src: &[f32], dst: &mut [u8]) => quantize_bf16_avx2;
    dequantize_bf16(src: &[u8], dst: &mut [f32]) => dequantize_bf16_avx2;
}
