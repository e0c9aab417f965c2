//! AVX2 dequantize kernels for the 256-element super-blocks: the K-quants (Q2_K..Q6_K), IQ4_XS,
//! TQ1_0 and TQ2_0.
//!
//! The codes of 32 elements are assembled as bytes in a ymm, widened to i32 8 at a time,
//! converted to f32, scaled, and stored. The float operations are the scalar code's, one for one
//! and in its order (see `avx512/kquants_dequantize.rs` for why that gives its NaN bits too): the
//! sub-block scale `d * sc` rounded first, then `scale * q`, then a separate `- min`.

use std::arch::x86_64::*;

use super::safe_wrappers;
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::simd::x86_64::avx512::kquants_dequantize::{q3_k_scales, scales_mins_k4};

/// Elements per super-block.
const QK_K: usize = 256;

/// Decodes every `B`-byte super-block of `src` into its 256 floats with `decode`. `src` must be
/// whole blocks and `dst` exactly their floats (else this panics, like the scalar references).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_superblocks<const B: usize>(src: &[u8], dst: &mut [f32], decode: impl Fn(&[u8; B], &mut [f32; QK_K])) {
    let (blocks, rest) = src.as_chunks::<B>();
    assert!(rest.is_empty() && dst.len() == QK_K * blocks.len(), "partial blocks");
    for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        decode(b, y);
    }
}

/// Loads 32 bytes from `b[at..at + 32]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn load_u8x32(b: &[u8], at: usize) -> __m256i {
    let b: &[u8; 32] = b[at..at + 32].try_into().expect("32 bytes");
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// The fp16 at `b[at..at + 2]` as f32, in every lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn broadcast_fp16(b: &[u8], at: usize) -> __m256 {
    _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes([b[at], b[at + 1]])))
}

/// `v * (8 small integers)` as an array: the sub-block scales `d * sc` as the scalar code rounds
/// them.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn times_ints(v: __m256, ints: __m256i) -> [f32; 8] {
    let mut out = [0f32; 8];
    // SAFETY: `out` is 8 writable floats; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(v, _mm256_cvtepi32_ps(ints))) };
    out
}

/// 8 bytes (the low 64 bits of `q`) widened to i32.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn bytes_to_i32(q: __m128i, signed: bool) -> __m256i {
    if signed {
        _mm256_cvtepi8_epi32(q)
    } else {
        _mm256_cvtepu8_epi32(q)
    }
}

/// Writes elements `at..at + 32` from the 32 code bytes of `q` (signed or not): the first 16 as
/// `scale[0] * q - min[0]`, the next 16 with `scale[1]`, `min[1]` (no subtract when `min` is
/// `None`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store32(y: &mut [f32; QK_K], at: usize, q: __m256i, signed: bool, scale: [f32; 2], min: Option<[f32; 2]>) {
    let (lo, hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
    let parts = [lo, _mm_srli_si128::<8>(lo), hi, _mm_srli_si128::<8>(hi)];
    let y: &mut [f32; 32] = (&mut y[at..at + 32]).try_into().expect("32 floats");
    for (i, part) in parts.into_iter().enumerate() {
        let product = _mm256_mul_ps(_mm256_set1_ps(scale[i / 2]), _mm256_cvtepi32_ps(bytes_to_i32(part, signed)));
        let v = match min {
            Some(m) => _mm256_sub_ps(product, _mm256_set1_ps(m[i / 2])),
            None => product,
        };
        // SAFETY: `y` is 32 writable floats and 8i + 8 <= 32; `storeu` has no alignment needs.
        unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(8 * i), v) };
    }
}

/// Low nibbles of 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn low_nibbles(q: __m256i) -> __m256i {
    _mm256_and_si256(q, _mm256_set1_epi8(0x0f))
}

/// High nibbles of 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn high_nibbles(q: __m256i) -> __m256i {
    _mm256_and_si256(_mm256_srli_epi16::<4>(q), _mm256_set1_epi8(0x0f))
}

/// `value` in the bytes of `q` whose bits under `bit` are all set, else 0.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn where_set(q: __m256i, bit: u8, value: i8) -> __m256i {
    let b = _mm256_set1_epi8(bit as i8);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(q, b), b), _mm256_set1_epi8(value))
}

/// Q4_K/Q5_K sub-block scales (`[..8]`) and mins (`[8..]`), `d * sc` and `dmin * m`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn scales_mins_f32(b: &[u8]) -> ([f32; 8], [f32; 8]) {
    let packed = scales_mins_k4(&b[4..16]);
    let sc = u64::from_le_bytes(packed[..8].try_into().expect("8 bytes"));
    let m = u64::from_le_bytes(packed[8..].try_into().expect("8 bytes"));
    (
        times_ints(broadcast_fp16(b, 0), _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sc as i64))),
        times_ints(broadcast_fp16(b, 2), _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(m as i64))),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_q4_k_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<144>(src, dst, |b, y| {
        let (d, m) = scales_mins_f32(b);
        for c in 0..4 {
            let q = load_u8x32(b, 16 + 32 * c);
            let (j1, j2) = (2 * c, 2 * c + 1);
            store32(y, 64 * c, low_nibbles(q), false, [d[j1]; 2], Some([m[j1]; 2]));
            store32(y, 64 * c + 32, high_nibbles(q), false, [d[j2]; 2], Some([m[j2]; 2]));
        }
    });
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_q5_k_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<176>(src, dst, |b, y| {
        let (d, m) = scales_mins_f32(b);
        let qh = load_u8x32(b, 16);
        for c in 0..4 {
            let q = load_u8x32(b, 48 + 32 * c);
            let (j1, j2) = (2 * c, 2 * c + 1);
            let lo = _mm256_add_epi8(low_nibbles(q), where_set(qh, 1 << j1, 16));
            let hi = _mm256_add_epi8(high_nibbles(q), where_set(qh, 1 << j2, 16));
            store32(y, 64 * c, lo, false, [d[j1]; 2], Some([m[j1]; 2]));
            store32(y, 64 * c + 32, hi, false, [d[j2]; 2], Some([m[j2]; 2]));
        }
    });
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_q6_k_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<210>(src, dst, |b, y| {
        let d = broadcast_fp16(b, 208);
        let sc = |at: usize| {
            let s = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
            _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(s as i64))
        };
        let ds = [times_ints(d, sc(192)), times_ints(d, sc(200))];
        let (m4, m30, bias) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30), _mm256_set1_epi8(32));
        for half in 0..2 {
            let ql0 = load_u8x32(b, 64 * half);
            let ql1 = load_u8x32(b, 64 * half + 32);
            let qh = load_u8x32(b, 128 + 32 * half);
            let codes = [
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4), _mm256_and_si256(qh, m30)),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                ),
            ];
            let ds = &ds[half];
            for (g, q) in codes.into_iter().enumerate() {
                store32(y, 128 * half + 32 * g, _mm256_sub_epi8(q, bias), true, [ds[2 * g], ds[2 * g + 1]], None);
            }
        }
    });
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_q2_k_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<84>(src, dst, |b, y| {
        let (d, dmin) = (broadcast_fp16(b, 80), broadcast_fp16(b, 82));
        let mut dl = [0f32; 16];
        let mut ml = [0f32; 16];
        for h in 0..2 {
            let s = u64::from_le_bytes(b[8 * h..8 * h + 8].try_into().expect("8 bytes"));
            let s = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(s as i64));
            dl[8 * h..8 * h + 8].copy_from_slice(&times_ints(d, _mm256_and_si256(s, _mm256_set1_epi32(0xf))));
            ml[8 * h..8 * h + 8].copy_from_slice(&times_ints(dmin, _mm256_srli_epi32::<4>(s)));
        }
        let three = _mm256_set1_epi8(3);
        for half in 0..2 {
            let q = load_u8x32(b, 16 + 32 * half);
            let shifted = [q, _mm256_srli_epi16::<2>(q), _mm256_srli_epi16::<4>(q), _mm256_srli_epi16::<6>(q)];
            for (s, q) in shifted.into_iter().enumerate() {
                let k = 8 * half + 2 * s;
                let q = _mm256_and_si256(q, three);
                store32(y, 16 * k, q, false, [dl[k], dl[k + 1]], Some([ml[k], ml[k + 1]]));
            }
        }
    });
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_q3_k_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<110>(src, dst, |b, y| {
        let packed = q3_k_scales(&b[96..108]);
        let d = broadcast_fp16(b, 108);
        let mut dl = [0f32; 16];
        for h in 0..2 {
            let s = u64::from_le_bytes(packed[8 * h..8 * h + 8].try_into().expect("8 bytes"));
            let s = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(s as i64)), _mm256_set1_epi32(32));
            dl[8 * h..8 * h + 8].copy_from_slice(&times_ints(d, s));
        }
        let hmask = load_u8x32(b, 0);
        let (three, four) = (_mm256_set1_epi8(3), _mm256_set1_epi8(4));
        for half in 0..2 {
            let q = load_u8x32(b, 32 + 32 * half);
            let shifted = [q, _mm256_srli_epi16::<2>(q), _mm256_srli_epi16::<4>(q), _mm256_srli_epi16::<6>(q)];
            for (s, q) in shifted.into_iter().enumerate() {
                let k = 8 * half + 2 * s;
                // 4 is subtracted where the hmask bit is clear: q - 4 + (bit set ? 4 : 0).
                let set = where_set(hmask, 1 << (4 * half + s), 4);
                let q = _mm256_add_epi8(_mm256_sub_epi8(_mm256_and_si256(q, three), four), set);
                store32(y, 16 * k, q, true, [dl[k], dl[k + 1]], None);
            }
        }
    });
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_iq4_xs_avx2(src: &[u8], dst: &mut [f32]) {
    // SAFETY: the table is 16 readable bytes; `loadu` has no alignment requirement.
    let t = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
    let t = _mm256_set_m128i(t, t);
    dequantize_superblocks::<136>(src, dst, |b, y| {
        let scales_h = u16::from_le_bytes([b[2], b[3]]);
        let ls: [i32; 8] = std::array::from_fn(|ib| {
            ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) as i32 | ((((scales_h >> (2 * ib)) & 3) as i32) << 4)
        });
        // SAFETY: `ls` is 8 readable i32; `loadu` has no alignment requirement.
        let ls = unsafe { _mm256_loadu_si256(ls.as_ptr().cast()) };
        let dl = times_ints(broadcast_fp16(b, 0), _mm256_sub_epi32(ls, _mm256_set1_epi32(32)));
        for p in 0..4 {
            // Sub-blocks 2p (bytes 0..16) and 2p + 1 (bytes 16..32).
            let q = load_u8x32(b, 8 + 32 * p);
            let lo = _mm256_shuffle_epi8(t, low_nibbles(q));
            let hi = _mm256_shuffle_epi8(t, high_nibbles(q));
            // Elements of sub-block 2p: low nibbles of its 16 bytes, then the high ones.
            let first = _mm256_permute2x128_si256::<0x20>(lo, hi);
            let second = _mm256_permute2x128_si256::<0x31>(lo, hi);
            store32(y, 64 * p, first, true, [dl[2 * p]; 2], None);
            store32(y, 64 * p + 32, second, true, [dl[2 * p + 1]; 2], None);
        }
    });
}

/// `dequantize_row_tq2_0`: `(t - 1) as f32 * d`, element 128h + 32l + m being bits 2l..2l + 2 of
/// `qs[32h + m]`. (The product with the scale is commutative, NaN bits included: only `d` can be
/// NaN.)
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_tq2_0_avx2(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<66>(src, dst, |b, y| {
        let d = _mm256_cvtss_f32(broadcast_fp16(b, 64));
        let (three, one) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
        for h in 0..2 {
            let q = load_u8x32(b, 32 * h);
            let shifted = [q, _mm256_srli_epi16::<2>(q), _mm256_srli_epi16::<4>(q), _mm256_srli_epi16::<6>(q)];
            for (l, q) in shifted.into_iter().enumerate() {
                let t = _mm256_sub_epi8(_mm256_and_si256(q, three), one);
                store32(y, 128 * h + 32 * l, t, true, [d; 2], None);
            }
        }
    });
}

/// Writes elements `at..at + 16` as `t as f32 * d` from 16 i16 codes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_i16x16(y: &mut [f32; QK_K], at: usize, t: __m256i, d: __m256) {
    let y: &mut [f32; 16] = (&mut y[at..at + 16]).try_into().expect("16 floats");
    let halves = [_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t)];
    for (i, half) in halves.into_iter().enumerate() {
        let v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(half)), d);
        // SAFETY: `y` is 16 writable floats and 8i + 8 <= 16; `storeu` has no alignment needs.
        unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(8 * i), v) };
    }
}

/// The top trit minus 1 of each byte (16-bit lanes) after `n` trits were shifted out:
/// `q = byte * 3^n mod 256`, then `((q * 3) >> 8) - 1` (`pow3` is 3^n per lane).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn trit(bytes: __m256i, pow3: __m256i) -> __m256i {
    let q = _mm256_and_si256(_mm256_mullo_epi16(bytes, pow3), _mm256_set1_epi16(0xff));
    let t = _mm256_srli_epi16::<8>(_mm256_mullo_epi16(q, _mm256_set1_epi16(3)));
    _mm256_sub_epi16(t, _mm256_set1_epi16(1))
}

/// `dequantize_row_tq1_0`: 5 trits per byte of `qs[0..32]` (elements 32n + m for trit n of byte
/// m), then of `qs[32..48]` (160 + 16n + m), then 4 trits per byte of `qh[0..4]` (240 + 4n + m).
#[target_feature(enable = "avx2,fma,f16c")]
fn dequantize_tq1_0_avx2(src: &[u8], dst: &mut [f32]) {
    const POW3: [i16; 5] = [1, 3, 9, 27, 81];
    dequantize_superblocks::<54>(src, dst, |b, y| {
        let d = broadcast_fp16(b, 52);
        let widen = |at: usize| {
            let q: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
            // SAFETY: `q` is 16 readable bytes; `loadu` has no alignment requirement.
            _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(q.as_ptr().cast()) })
        };
        let q = [widen(0), widen(16), widen(32)];
        for (n, p) in POW3.into_iter().enumerate() {
            let p = _mm256_set1_epi16(p);
            store_i16x16(y, 32 * n, trit(q[0], p), d);
            store_i16x16(y, 32 * n + 16, trit(q[1], p), d);
            store_i16x16(y, 160 + 16 * n, trit(q[2], p), d);
        }
        let qh = u32::from_le_bytes([b[48], b[49], b[50], b[51]]);
        let qh = _mm256_cvtepu8_epi16(_mm_set1_epi32(qh as i32));
        let p = _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
        store_i16x16(y, 240, trit(qh, p), d);
    });
}

safe_wrappers! {
    dequantize_tq1_0(src: &[u8], dst: &mut [f32]) => dequantize_tq1_0_avx2;
    dequantize_q2_k(src: &[u8], dst: &mut [f32]) => dequantize_q2_k_avx2;
    dequantize_q3_k(src: &[u8], dst: &mut [f32]) => dequantize_q3_k_avx2;
    dequantize_q4_k(src: &[u8], dst: &mut [f32]) => dequantize_q4_k_avx2;
    dequantize_q5_k(src: &[u8], dst: &mut [f32]) => dequantize_q5_k_avx2;
    dequantize_q6_k(src: &[u8], dst: &mut [f32]) => dequantize_q6_k_avx2;
    dequantize_iq4_xs(src: &[u8], dst: &mut [f32]) => dequantize_iq4_xs_avx2;
    dequantize_tq2_0(src: &[u8], dst: &mut [f32]) => dequantize_tq2_0_avx2;
}
