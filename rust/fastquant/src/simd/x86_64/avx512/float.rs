//! AVX-512 kernels for F16 and BF16 rows, 16 values per step when quantizing and 32 when
//! dequantizing; a row's last few values go through the scalar reference, which is the
//! specification anyway.
//!
//! F16 uses the hardware conversions: `vcvtps2ph` with round-to-nearest-even is ggml's
//! `fp32_to_fp16` for every non-NaN value (subnormals included, with the default MXCSR that Rust
//! never changes), and only NaNs need patching to ggml's `sign | 0x7E00`; `vcvtph2ps` is exact.
//! BF16 does ggml's integer rounding instead of `vcvtneps2bf16`, which flushes subnormals to zero.

use std::arch::x86_64::*;

use super::{dequantize_blocks, entry_points, fp16_ggml_x16, prefetch, PREFETCH_BYTES};
use crate::formats::float::{dequantize_row_bf16, dequantize_row_f16, quantize_row_bf16, quantize_row_f16};

entry_points! {
    quantize_f16 => quantize_f16_avx512(&[f32], &mut [u8]);
    dequantize_f16 => dequantize_f16_avx512(&[u8], &mut [f32]);
    quantize_bf16 => quantize_bf16_avx512(&[f32], &mut [u8]);
    dequantize_bf16 => dequantize_bf16_avx512(&[u8], &mut [f32]);
}

/// Values per step: one zmm of f32, one ymm of 16-bit values.
const STEP: usize = 16;

/// Loads 16 floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_f32x16(x: &[f32; STEP]) -> __m512 {
    // SAFETY: `x` is 16 readable floats; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

/// Loads 16 little-endian 16-bit values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_u16x16(b: &[u8; 2 * STEP]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Stores 16 little-endian 16-bit values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn store_u16x16(b: &mut [u8; 2 * STEP], v: __m256i) {
    // SAFETY: `b` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
}

/// Quantizes a 16-bit row: whole 16-value steps with `encode`, the last `len % 16` values with
/// the scalar `tail` reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_16bit(src: &[f32], dst: &mut [u8], encode: impl Fn(__m512) -> __m256i, tail: fn(&[f32], &mut [u8])) {
    assert_eq!(dst.len(), 2 * src.len(), "a 16-bit row has two bytes per value");
    let (xs, x_tail) = src.as_chunks::<STEP>();
    let (ys, y_tail) = dst.as_chunks_mut::<{ 2 * STEP }>();
    for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
        prefetch(xs, i + PREFETCH_BYTES / 64);
        store_u16x16(y, encode(load_f32x16(x)));
    }
    tail(x_tail, y_tail);
}

/// Dequantizes a 16-bit row: whole 32-value pieces with `decode` (through [`dequantize_blocks`],
/// which streams large outputs), the last `len % 32` values with the scalar `tail` reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn dequantize_16bit(src: &[u8], dst: &mut [f32], decode: impl Fn(__m256i) -> __m512, tail: fn(&[u8], &mut [f32])) {
    assert_eq!(src.len(), 2 * dst.len(), "a 16-bit row has two bytes per value");
    let whole = dst.len() / 32 * 32;
    let (src, src_tail) = src.split_at(2 * whole);
    let (dst, dst_tail) = dst.split_at_mut(whole);
    dequantize_blocks::<64>(src, dst, |b| {
        let (lo, hi) = b.split_at(32);
        (decode(load_u16x16(lo.try_into().expect("32 bytes"))), decode(load_u16x16(hi.try_into().expect("32 bytes"))))
    });
    tail(src_tail, dst_tail);
}

// ---- F16 ----------------------------------------------------------------------------------------

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_f16_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_16bit(src, dst, |v| fp16_ggml_x16(v), quantize_row_f16);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_f16_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_16bit(src, dst, |h| _mm512_cvtph_ps(h), dequantize_row_f16);
}

// ---- BF16 ---------------------------------------------------------------------------------------

/// ggml's `fp32_to_bf16` on 16 lanes: round to nearest even by adding `0x7fff + lsb` to the bits
/// and keeping the top half; a NaN keeps its top half with the quiet bit (bit 6) set instead.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn bf16_ggml_x16(v: __m512) -> __m256i {
    let u = _mm512_castps_si512(v);
    let top = _mm512_srli_epi32::<16>(u);
    let lsb = _mm512_and_si512(top, _mm512_set1_epi32(1));
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb));
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    let bits = _mm512_mask_or_epi32(rounded, nan, top, _mm512_set1_epi32(64));
    _mm512_cvtepi32_epi16(bits)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_bf16_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_16bit(src, dst, |v| bf16_ggml_x16(v), quantize_row_bf16);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_bf16_avx512(src: &[u8], dst: &mut [f32]) {
    let widen = |h| _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)));
    dequantize_16bit(src, dst, widen, dequantize_row_bf16);
}
