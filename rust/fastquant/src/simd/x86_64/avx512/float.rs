//! AVX-512 kernels for F16 and BF16 rows, 16 values per step when quantizing and 32 when
//! dequantizing; a row's last few values go through the scalar reference, which is the
//! specification anyway.
//!
//! F16 uses the hardware conversions: `vcvtps2ph` with round-to-nearest-even is ggml's
//! `fp32_to_fp16` for every non-NaN value (subnormals included, with the default MXCSR that Rust
//! never changes), and only NaNs need patching to ggml's `sign | 0x7E00`; `vcvtph2ps` is exact.
//! BF16 does ggml's integer rounding instead of `vcvtneps2bf16`, which flushes subnormals to zero.

use std::arch::x86_64::*;

use super::{dequantize_blocks, entry_points, fp16_ggml_x16, prefetch, PREFETCH_BYTES, STREAM_MIN_BYTES};
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
/// the scalar `tail` reference. Large outputs are streamed (see [`stream_16bit`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_16bit(src: &[f32], dst: &mut [u8], encode: impl Fn(__m512) -> __m256i, tail: fn(&[f32], &mut [u8])) {
    assert_eq!(dst.len(), 2 * src.len(), "a 16-bit row has two bytes per value");
    if dst.len() >= STREAM_MIN_BYTES && (dst.as_ptr() as usize).is_multiple_of(2) {
        let (xs, x_tail) = src.as_chunks::<{ 2 * STEP }>();
        let (ys, y_tail) = dst.split_at_mut(4 * STEP * xs.len());
        stream_16bit(xs, ys, encode);
        return tail(x_tail, y_tail);
    }
    let (xs, x_tail) = src.as_chunks::<STEP>();
    let (ys, y_tail) = dst.as_chunks_mut::<{ 2 * STEP }>();
    for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
        prefetch(xs, i + PREFETCH_BYTES / 64);
        store_u16x16(y, encode(load_f32x16(x)));
    }
    tail(x_tail, y_tail);
}

/// [`quantize_16bit`] with non-temporal stores, as `super::stream_blocks` does for f32 outputs:
/// 32 values make one 64-byte line, stitched to the line boundaries of `dst` (which must be
/// 2-byte aligned) with `vpermt2w`; the ends are masked ordinary stores.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn stream_16bit(xs: &[[f32; 2 * STEP]], dst: &mut [u8], encode: impl Fn(__m512) -> __m256i) {
    assert!(dst.len() == 4 * STEP * xs.len() && (dst.as_ptr() as usize).is_multiple_of(2));
    let encode_line = |x: &[f32; 2 * STEP]| {
        let (lo, hi) = x.split_at(STEP);
        let lo = encode(load_f32x16(lo.try_into().expect("16 floats")));
        let hi = encode(load_f32x16(hi.try_into().expect("16 floats")));
        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
    };
    let Some((first, rest)) = xs.split_first() else { return };
    let p = dst.as_mut_ptr();
    // 16-bit values before the first 64-byte boundary.
    let head = (64 - p as usize % 64) % 64 / 2;
    let lanes = _mm512_set_epi16(
        31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2,
        1, 0,
    );
    let stitch = _mm512_add_epi16(lanes, _mm512_set1_epi16(head as i16));
    let head_mask: __mmask32 = ((1u64 << head) - 1) as __mmask32;
    let line = encode_line(first);
    // SAFETY: step t's values are dst[64t..64t + 64], in bounds. With head == 0, p is 64-byte
    // aligned and so is every step. Otherwise line t, stitched from steps t and t + 1, starts at
    // 2 * head + 64t (a line boundary) and ends at most at 2 * head + 64(n - 1) < 64n, and the
    // masked stores write only dst[..2 * head] and dst[64n - 64 + 2 * head..].
    unsafe {
        if head == 0 {
            _mm512_stream_si512(p.cast(), line);
            for (i, x) in rest.iter().enumerate() {
                prefetch(rest, i + PREFETCH_BYTES / 128);
                _mm512_stream_si512(p.add(64 * (i + 1)).cast(), encode_line(x));
            }
        } else {
            let lines = p.add(2 * head);
            _mm512_mask_storeu_epi16(p.cast(), head_mask, line);
            let mut carry = line;
            for (i, x) in rest.iter().enumerate() {
                prefetch(rest, i + PREFETCH_BYTES / 128);
                let line = encode_line(x);
                _mm512_stream_si512(lines.add(64 * i).cast(), _mm512_permutex2var_epi16(carry, stitch, line));
                carry = line;
            }
            _mm512_mask_storeu_epi16(p.add(dst.len() - 64).cast(), !head_mask, carry);
        }
    }
    // As in `super::stream_blocks`: make the weakly ordered stores visible before later ones.
    _mm_sfence();
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
