//! AVX-512 dequantize kernels for the K-quant super-blocks: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
//!
//! A super-block's 256 floats are 16 zmm vectors, and in every K-quant a sub-block (16 or 32
//! elements) is a whole number of vectors, so each vector has one scale (and one min). The codes
//! are assembled as bytes in a ymm (32 elements at once), widened to i32 16 at a time, converted
//! to f32 and scaled. [`dequantize_superblocks`] writes the vectors, with non-temporal stores for
//! large outputs as `super::dequantize_blocks` does for the 32-element formats.
//!
//! Bit-exactness with `formats::kquants` rests on doing each float operation of the scalar code
//! with the same operands in the same order, and nothing else:
//! * the sub-block scale is `d * (sc as f32)` (and `dmin * (m as f32)`) rounded to f32 before it
//!   meets the code, then `scale * q` and, for the min types, `- min`: a multiply and a separate
//!   subtract (no FMA);
//! * NaN bits: a product has at most one NaN operand (the codes and integer scales are finite), so
//!   its NaN is that operand's, quieted, in either operand order. The subtract can meet two NaNs
//!   (NaN `d` and NaN `dmin`); x86 then returns the first operand, and LLVM keeps `fsub`'s operand
//!   order (it is not commutative), so `vsubps(product, min)` gives the scalar code's bits.
//!   `Inf * 0` gives the same default NaN in both. `vcvtph2ps` converts fp16 NaNs with their
//!   payload and the quiet bit set, as `half`'s conversion does.

use std::arch::x86_64::*;

use super::{entry_points, STREAM_MIN_BYTES};

entry_points! {
    dequantize_q2_k => dequantize_q2_k_avx512(&[u8], &mut [f32]);
    dequantize_q3_k => dequantize_q3_k_avx512(&[u8], &mut [f32]);
    dequantize_q4_k => dequantize_q4_k_avx512(&[u8], &mut [f32]);
    dequantize_q5_k => dequantize_q5_k_avx512(&[u8], &mut [f32]);
    dequantize_q6_k => dequantize_q6_k_avx512(&[u8], &mut [f32]);
}

/// Elements per super-block.
const QK_K: usize = 256;

/// The 16 vectors of one decoded super-block, elements 16k..16k + 16 in vector k.
type Vectors = [__m512; 16];

// ---- block iteration ----------------------------------------------------------------------------

/// Decodes every `B`-byte super-block of `src` with `decode` and writes the floats to `dst` in
/// order. `src` must be whole blocks and `dst` exactly their floats (else this panics, like the
/// scalar references).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn dequantize_superblocks<const B: usize>(
    src: &[u8],
    dst: &mut [f32],
    decode: impl Fn(&[u8; B]) -> Vectors,
) {
    let (blocks, rest) = src.as_chunks::<B>();
    assert!(rest.is_empty() && dst.len() == QK_K * blocks.len(), "partial blocks");
    if dst.len() * 4 >= STREAM_MIN_BYTES {
        stream_superblocks(blocks, dst, decode);
    } else {
        for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
            let v = decode(b);
            for (k, v) in v.into_iter().enumerate() {
                // SAFETY: `y` is 256 writable floats and 16k + 16 <= 256; `storeu` has no
                // alignment requirement.
                unsafe { _mm512_storeu_ps(y.as_mut_ptr().add(16 * k), v) };
            }
        }
    }
}

/// [`dequantize_superblocks`] with non-temporal stores, which must be 64-byte aligned while `dst`
/// is only 4-byte aligned. As in `super::stream_blocks`: the floats before the first line boundary
/// and after the last go out with masked ordinary stores, and every line between is stitched from
/// two consecutive vectors with one `vpermt2ps`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn stream_superblocks<const B: usize>(blocks: &[[u8; B]], dst: &mut [f32], decode: impl Fn(&[u8; B]) -> Vectors) {
    assert_eq!(dst.len(), QK_K * blocks.len());
    if blocks.is_empty() {
        return;
    }
    let p = dst.as_mut_ptr();
    // Floats before the first 64-byte boundary (f32 slices are 4-byte aligned).
    let head = (64 - p as usize % 64) % 64 / 4;
    if head == 0 {
        for (i, b) in blocks.iter().enumerate() {
            let v = decode(b);
            for (k, v) in v.into_iter().enumerate() {
                // SAFETY: block i's floats are dst[256i..256i + 256], in bounds; p is 64-byte
                // aligned and 16k floats are whole lines, so every store is aligned.
                unsafe { _mm512_stream_ps(p.add(QK_K * i + 16 * k), v) };
            }
        }
    } else {
        // Line lane j takes lane head + j of the earlier vector if that is < 16, else lane
        // head + j - 16 of the later one.
        let stitch = _mm512_add_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(head as i32),
        );
        let head_mask: __mmask16 = ((1u32 << head) - 1) as __mmask16;
        // Vector t (t = 0..16n) holds floats 16t..16t + 16; line t, stitched from vectors t and
        // t + 1, holds floats head + 16t..head + 16t + 16 and starts on a 64-byte boundary.
        // SAFETY: the last line (t = 16n - 2) ends at head + 16(16n - 2) + 16 < 256n = dst.len(),
        // the masked stores write only dst[..head] and dst[256n - 16 + head..], and the lines are
        // aligned by the choice of head.
        unsafe {
            let lines = p.add(head);
            let first = decode(&blocks[0]);
            _mm512_mask_storeu_ps(p, head_mask, first[0]);
            let mut carry = first[0];
            for (k, &v) in first.iter().enumerate().skip(1) {
                _mm512_stream_ps(lines.add(16 * (k - 1)), _mm512_permutex2var_ps(carry, stitch, v));
                carry = v;
            }
            for (i, b) in blocks.iter().enumerate().skip(1) {
                let v = decode(b);
                for (k, v) in v.into_iter().enumerate() {
                    let t = 16 * i + k;
                    _mm512_stream_ps(lines.add(16 * (t - 1)), _mm512_permutex2var_ps(carry, stitch, v));
                    carry = v;
                }
            }
            _mm512_mask_storeu_ps(p.add(dst.len() - 16), !head_mask, carry);
        }
    }
    // Non-temporal stores are weakly ordered: make them visible before anything this thread
    // stores next (such as the flag that tells another thread the output is ready).
    _mm_sfence();
}

// ---- shared helpers -----------------------------------------------------------------------------

/// Loads 32 bytes from `b[at..at + 32]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn load_u8x32(b: &[u8], at: usize) -> __m256i {
    let b: &[u8; 32] = b[at..at + 32].try_into().expect("32 bytes");
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// The fp16 at `b[at..at + 2]` as f32, in every lane of a zmm.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn broadcast_fp16(b: &[u8], at: usize) -> __m512 {
    // Broadcast, then convert (converting a scalar first inserts into a stale register).
    _mm512_cvtph_ps(_mm256_set1_epi16(i16::from_le_bytes([b[at], b[at + 1]])))
}

/// The 16 lanes of `v` as an array (to broadcast one per vector from memory).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn lanes(v: __m512) -> [f32; 16] {
    let mut out = [0f32; 16];
    // SAFETY: `out` is 16 writable floats; `storeu` has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// The 32 unsigned bytes of `q` as i32, elements 0..16 and 16..32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn widen_u8(q: __m256i) -> (__m512i, __m512i) {
    (_mm512_cvtepu8_epi32(_mm256_castsi256_si128(q)), _mm512_cvtepu8_epi32(_mm256_extracti128_si256::<1>(q)))
}

/// The 32 signed bytes of `q` as i32, elements 0..16 and 16..32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn widen_i8(q: __m256i) -> (__m512i, __m512i) {
    (_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)), _mm512_cvtepi8_epi32(_mm256_extracti128_si256::<1>(q)))
}

/// `scale * q - min`: the scalar's int -> f32, multiply, then a separate subtract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn scale_min(q: __m512i, scale: f32, min: f32) -> __m512 {
    _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(scale), _mm512_cvtepi32_ps(q)), _mm512_set1_ps(min))
}

/// `scale * q`: the scalar's int -> f32 then multiply.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn scale(q: __m512i, scale: f32) -> __m512 {
    _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_cvtepi32_ps(q))
}

/// Low nibbles of 32 bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn low_nibbles(q: __m256i) -> __m256i {
    _mm256_and_si256(q, _mm256_set1_epi8(0x0f))
}

/// High nibbles of 32 bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn high_nibbles(q: __m256i) -> __m256i {
    _mm256_and_si256(_mm256_srli_epi16::<4>(q), _mm256_set1_epi8(0x0f))
}

/// The 8 sub-block scales and 8 mins of a Q4_K/Q5_K block (`get_scale_min_k4` for j = 0..8) as
/// 16 bytes, scales first: the 12 packed bytes as three little-endian words, rearranged with
/// masks as ggml's SIMD code does.
#[inline]
pub(in crate::simd::x86_64) fn scales_mins_k4(q: &[u8]) -> [u8; 16] {
    let w = |i: usize| u32::from_le_bytes(q[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let (u0, u1, u2) = (w(0), w(1), w(2));
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    // Scales 0..4: low 6 bits of bytes 0..4; scales 4..8: low nibbles of bytes 8..12 and the top
    // 2 bits of bytes 0..4. Mins likewise from bytes 4..8 and the high nibbles of 8..12.
    let s0 = u0 & LOW6;
    let s1 = (u2 & LOW4) | (((u0 >> 6) & LOW2) << 4);
    let m0 = u1 & LOW6;
    let m1 = ((u2 >> 4) & LOW4) | (((u1 >> 6) & LOW2) << 4);
    let mut out = [0u8; 16];
    for (i, word) in [s0, s1, m0, m1].into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// For Q4_K/Q5_K: the 8 sub-block scales `d * sc` and mins `dmin * m` as f32, as the scalar code
/// rounds them (lane j the scale of sub-block j, lane 8 + j its min).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn scales_mins_f32(b: &[u8]) -> [f32; 16] {
    let packed = scales_mins_k4(&b[4..16]);
    // SAFETY: `packed` is 16 readable bytes; `loadu` has no alignment requirement.
    let sm = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(packed.as_ptr().cast()) }));
    // d in lanes 0..8, dmin in lanes 8..16.
    let d = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(_mm512_castps512_ps256(broadcast_fp16(b, 0))), {
        _mm512_castps512_ps256(broadcast_fp16(b, 2))
    });
    lanes(_mm512_mul_ps(d, sm))
}

// ---- Q4_K ---------------------------------------------------------------------------------------

/// `dequantize_row_q4_K`: for each 64-element chunk c, 32 bytes whose low nibbles are elements
/// 64c..64c + 32 (sub-block 2c) and high nibbles 64c + 32..64c + 64 (sub-block 2c + 1);
/// `y = (d * sc) * q - dmin * m`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q4_k_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<144>(src, dst, |b| {
        let sm = scales_mins_f32(b);
        let mut v = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            let q = load_u8x32(b, 16 + 32 * c);
            let (j1, j2) = (2 * c, 2 * c + 1);
            let (a, bb) = widen_u8(low_nibbles(q));
            v[4 * c] = scale_min(a, sm[j1], sm[8 + j1]);
            v[4 * c + 1] = scale_min(bb, sm[j1], sm[8 + j1]);
            let (a, bb) = widen_u8(high_nibbles(q));
            v[4 * c + 2] = scale_min(a, sm[j2], sm[8 + j2]);
            v[4 * c + 3] = scale_min(bb, sm[j2], sm[8 + j2]);
        }
        v
    });
}

// ---- Q5_K ---------------------------------------------------------------------------------------

/// `dequantize_row_q5_K`: Q4_K's layout (after 32 bytes of `qh`) plus a fifth bit per element:
/// bit 2c of `qh[l]` for element 64c + l, bit 2c + 1 for element 64c + 32 + l.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q5_k_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<176>(src, dst, |b| {
        let sm = scales_mins_f32(b);
        let qh = load_u8x32(b, 16);
        let sixteen = _mm256_set1_epi8(16);
        let mut v = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            let q = load_u8x32(b, 48 + 32 * c);
            let (j1, j2) = (2 * c, 2 * c + 1);
            let h1 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(1 << j1));
            let h2 = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((1u8 << j2) as i8));
            let lo = low_nibbles(q);
            let lo = _mm256_mask_add_epi8(lo, h1, lo, sixteen);
            let hi = high_nibbles(q);
            let hi = _mm256_mask_add_epi8(hi, h2, hi, sixteen);
            let (a, bb) = widen_u8(lo);
            v[4 * c] = scale_min(a, sm[j1], sm[8 + j1]);
            v[4 * c + 1] = scale_min(bb, sm[j1], sm[8 + j1]);
            let (a, bb) = widen_u8(hi);
            v[4 * c + 2] = scale_min(a, sm[j2], sm[8 + j2]);
            v[4 * c + 3] = scale_min(bb, sm[j2], sm[8 + j2]);
        }
        v
    });
}

// ---- Q6_K ---------------------------------------------------------------------------------------

/// `dequantize_row_q6_K`: two halves of 128 elements, each from 64 bytes of low nibbles `ql`, 32
/// of high bit pairs `qh`; element 32g + l of a half (g = 0..4, l = 0..32) is nibble g / 2 of
/// `ql[l + 32 (g % 2)]` with bits 2g, 2g + 1 of `qh[l]` on top, minus 32. Vector k of the block has
/// the scale `scales[k]`: `y = (d * sc) * q`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q6_k_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<210>(src, dst, |b| {
        let d = broadcast_fp16(b, 208);
        // SAFETY: bytes 192..208 of the block are the 16 scales; `loadu` has no alignment needs.
        let sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(unsafe { _mm_loadu_si128(b[192..208].as_ptr().cast()) }));
        let ds = lanes(_mm512_mul_ps(d, sc));
        let mut v = [_mm512_setzero_ps(); 16];
        let m4 = _mm256_set1_epi8(0x0f);
        let m30 = _mm256_set1_epi8(0x30);
        let bias = _mm256_set1_epi8(32);
        for half in 0..2 {
            let ql0 = load_u8x32(b, 64 * half);
            let ql1 = load_u8x32(b, 64 * half + 32);
            let qh = load_u8x32(b, 128 + 32 * half);
            // The 6-bit codes as bytes, then minus 32 (in -32..32, so signed bytes).
            let codes = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                ),
            ];
            for (g, q) in codes.into_iter().enumerate() {
                let (a, bb) = widen_i8(_mm256_sub_epi8(q, bias));
                let k = 8 * half + 2 * g;
                v[k] = scale(a, ds[k]);
                v[k + 1] = scale(bb, ds[k + 1]);
            }
        }
        v
    });
}

// ---- Q2_K ---------------------------------------------------------------------------------------

/// `dequantize_row_q2_K`: 16 scale bytes (low nibble the scale, high the min of a 16-element
/// sub-block), then two 128-element halves of 32 bytes, element 32s + l of a half being bits
/// 2s..2s + 2 of `qs[l]`; `y = (d * sc) * q - dmin * m`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q2_k_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<84>(src, dst, |b| {
        // SAFETY: bytes 0..16 of the block are the 16 scale bytes; `loadu` has no alignment needs.
        let s = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(b.as_ptr().cast()) });
        let sc = _mm512_cvtepi32_ps(_mm512_and_si512(s, _mm512_set1_epi32(0xf)));
        let m = _mm512_cvtepi32_ps(_mm512_srli_epi32::<4>(s));
        let dl = lanes(_mm512_mul_ps(broadcast_fp16(b, 80), sc));
        let ml = lanes(_mm512_mul_ps(broadcast_fp16(b, 82), m));
        let three = _mm256_set1_epi8(3);
        let mut v = [_mm512_setzero_ps(); 16];
        for half in 0..2 {
            let q = load_u8x32(b, 16 + 32 * half);
            let shifted = [q, _mm256_srli_epi16::<2>(q), _mm256_srli_epi16::<4>(q), _mm256_srli_epi16::<6>(q)];
            for (s, q) in shifted.into_iter().enumerate() {
                let (a, bb) = widen_u8(_mm256_and_si256(q, three));
                let k = 8 * half + 2 * s;
                v[k] = scale_min(a, dl[k], ml[k]);
                v[k + 1] = scale_min(bb, dl[k + 1], ml[k + 1]);
            }
        }
        v
    });
}

// ---- Q3_K ---------------------------------------------------------------------------------------

/// The 16 6-bit scales of a Q3_K block as stored (bias 32 not removed), ggml's unpacking of the 12
/// bytes: low nibbles from bytes 0..8, the top two bits from bytes 8..12.
#[inline]
pub(in crate::simd::x86_64) fn q3_k_scales(q: &[u8]) -> [u8; 16] {
    let w = |i: usize| u32::from_le_bytes(q[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let (a0, a1, tmp) = (w(0), w(1), w(2));
    const K1: u32 = 0x0303_0303;
    const K2: u32 = 0x0f0f_0f0f;
    let words = [
        (a0 & K2) | ((tmp & K1) << 4),
        (a1 & K2) | (((tmp >> 2) & K1) << 4),
        ((a0 >> 4) & K2) | (((tmp >> 4) & K1) << 4),
        ((a1 >> 4) & K2) | (((tmp >> 6) & K1) << 4),
    ];
    let mut out = [0u8; 16];
    for (i, word) in words.into_iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

/// `dequantize_row_q3_K`: 32 bytes of `hmask`, then Q2_K's 2-bit layout; element 32s + l of half
/// h has 4 subtracted unless bit 4h + s of `hmask[l]` is set; `y = (d * (sc - 32)) * q`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q3_k_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<110>(src, dst, |b| {
        let packed = q3_k_scales(&b[96..108]);
        // SAFETY: `packed` is 16 readable bytes; `loadu` has no alignment requirement.
        let s = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(packed.as_ptr().cast()) });
        let sc = _mm512_cvtepi32_ps(_mm512_sub_epi32(s, _mm512_set1_epi32(32)));
        let dl = lanes(_mm512_mul_ps(broadcast_fp16(b, 108), sc));
        let hmask = load_u8x32(b, 0);
        let (three, four) = (_mm256_set1_epi8(3), _mm256_set1_epi8(4));
        let mut v = [_mm512_setzero_ps(); 16];
        for half in 0..2 {
            let q = load_u8x32(b, 32 + 32 * half);
            let shifted = [q, _mm256_srli_epi16::<2>(q), _mm256_srli_epi16::<4>(q), _mm256_srli_epi16::<6>(q)];
            for (s, q) in shifted.into_iter().enumerate() {
                let bit = _mm256_set1_epi8((1u8 << (4 * half + s)) as i8);
                let low = _mm256_testn_epi8_mask(hmask, bit);
                let q = _mm256_and_si256(q, three);
                let q = _mm256_mask_sub_epi8(q, low, q, four);
                let (a, bb) = widen_i8(q);
                let k = 8 * half + 2 * s;
                v[k] = scale(a, dl[k]);
                v[k + 1] = scale(bb, dl[k + 1]);
            }
        }
        v
    });
}

#[cfg(test)]
mod tests {
    use crate::simd::{codec_for, Level};
    use crate::types::QuantType;

    struct Rng(u64);
    impl Rng {
        fn next_u32(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 16) as u32
        }
    }

    /// (type, offset of d, offset of dmin if any).
    const TYPES: [(QuantType, usize, Option<usize>); 5] = [
        (QuantType::Q4_K, 0, Some(2)),
        (QuantType::Q5_K, 0, Some(2)),
        (QuantType::Q6_K, 208, None),
        (QuantType::Q2_K, 80, Some(82)),
        (QuantType::Q3_K, 108, None),
    ];

    fn check(qtype: QuantType, bytes: &[u8], what: &str) {
        super::super::iquants_dequantize::tests::check(qtype, bytes, what);
    }

    /// Every fp16 value as `d`, every fp16 value (scrambled) as `dmin`, random codes and scales:
    /// NaN, Inf, subnormal and negative-zero scales all decode as the scalar code does.
    #[test]
    fn dequantize_every_fp16_scale_at_every_level() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for (qtype, d_at, dmin_at) in TYPES {
            let bb = qtype.block_bytes();
            let n_blocks = 1 << 16;
            let mut bytes: Vec<u8> = (0..n_blocks * bb).map(|_| rng.next_u32() as u8).collect();
            for (i, block) in bytes.chunks_exact_mut(bb).enumerate() {
                block[d_at..d_at + 2].copy_from_slice(&(i as u16).to_le_bytes());
                if let Some(m) = dmin_at {
                    block[m..m + 2].copy_from_slice(&((i as u16).wrapping_mul(40503)).to_le_bytes());
                }
            }
            check(qtype, &bytes, "every fp16 scale");
        }
    }

    /// Large outputs take the streaming path, at both output alignments the test gives.
    #[test]
    fn large_random_outputs_match_scalar() {
        let mut rng = Rng(0x0bad_cafe_f00d);
        for (qtype, _, _) in TYPES {
            let n_blocks = (9 << 20) / 4 / 256; // 9 MiB of f32
            let bytes: Vec<u8> = (0..n_blocks * qtype.block_bytes()).map(|_| rng.next_u32() as u8).collect();
            check(qtype, &bytes, "large");
            check(qtype, &bytes[..3 * qtype.block_bytes()], "small");
            check(qtype, &[], "empty");
        }
    }

    /// Single-thread GB/s of f32 output, scalar vs this level, on 16M and 256K elements, for every
    /// type with a dequantize-only kernel here (this file and the I-quant and ternary ones):
    /// `cargo test --release -p fastquant --lib dequantize_throughput -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn dequantize_throughput() {
        let mut rng = Rng(7);
        for n in [16 << 20, 256 << 10] {
            for qtype in TYPES.map(|t| t.0).into_iter().chain([
                QuantType::IQ4_NL,
                QuantType::IQ4_XS,
                QuantType::MXFP4,
                QuantType::TQ1_0,
                QuantType::TQ2_0,
            ]) {
                let bytes: Vec<u8> =
                    (0..n / qtype.block_elems() * qtype.block_bytes()).map(|_| rng.next_u32() as u8 & 0x3f).collect();
                let mut y = vec![0f32; n];
                for level in [Level::Scalar, Level::Avx2, Level::Avx512] {
                    let Some(codec) = codec_for(qtype, level).unwrap() else { continue };
                    (codec.dequantize)(&bytes, &mut y);
                    let mut best = f64::MAX;
                    for _ in 0..5 {
                        let t = std::time::Instant::now();
                        (codec.dequantize)(&bytes, &mut y);
                        best = best.min(t.elapsed().as_secs_f64());
                    }
                    let real = codec.dequantize_level;
                    println!("{qtype} {n} {level} ({real}): {:.2} GB/s", (4 * n) as f64 / best / 1e9);
                }
            }
        }
    }
}
