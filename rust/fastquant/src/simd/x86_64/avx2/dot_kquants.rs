//! AVX2 dot kernels of K-quant / IQ4_XS / TQ1_0 / TQ2_0 weight rows with 1..=8 Q8_K activation
//! rows, and the pieces the AVX-512 kernels share: the super-block unpacking ([`Unpacked`], one
//! function per type) and the driver ([`superblock_driver`]) that does the float part of
//! `matmul::dot_kquants`'s order.
//!
//! A weight super-block is unpacked once into registers (codes as bytes in element order, the
//! per-16 scales, the biases) and then meets each activation row: `maddubs` of codes (unsigned)
//! and activation codes (signed) gives i16 pair sums, `madd` with the sub-block scales sums them
//! into i32 lanes, and the biases meet the activation's `bsums` in one more `madd`. All of that is
//! exact. The i32 vectors of 8 consecutive super-blocks are then reduced into the 8 lanes of one
//! vector, which takes the scalar reference's float operations lane by lane.
//!
//! No i16 sum saturates: codes are at most 63 and activation codes at least -128, so a pair is
//! at most 2 * 63 * 128 = 16128. IQ4_XS has signed codes (-127..113); there the unsigned operand
//! is `|a|` (128 fits a byte) and the signed one the code with `a`'s sign (`-code` fits an i8),
//! which gives `a * code` exactly, -128 included (2 * 128 * 127 < 32768).

use std::arch::x86_64::*;

use super::kquants_dequantize::load_u8x32;
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::formats::kquants::QK_K;
use crate::matmul::dot_kquants::{VecDotFn, MAX_ROWS, PARTIALS, Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
use crate::simd::x86_64::avx512::kquants_dequantize::q3_k_scales;
use crate::types::QuantType;

/// One weight super-block unpacked: `x_e = d * scales[e/16] * codes[e] - dmin * biases[e/16]`
/// (as `matmul::dot_kquants::Superblock`).
#[derive(Clone, Copy)]
pub(in crate::simd::x86_64) struct Unpacked {
    /// Elements `32k..32k + 32` in vector k, one byte each.
    pub codes: [__m256i; 8],
    /// The 16 per-16 scales as i8.
    pub scales: __m128i,
    /// The 16 per-16 biases as i16.
    pub biases: __m256i,
    pub d: f32,
    pub dmin: f32,
}

/// Loads 16 bytes from `b[at..at + 16]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u8x16(b: &[u8], at: usize) -> __m128i {
    let b: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// Loads 8 floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn load_f32x8(x: &[f32; 8]) -> __m256 {
    // SAFETY: `x` is 8 readable floats; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

/// The fp16 at `b[at..at + 2]` as f32 (`vcvtph2ps` is exact).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn fp16_at(b: &[u8], at: usize) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([b[at], b[at + 1]]) as i32)))
}

/// Bit `k` of every byte of `v`, as 0 or `1 << shift` (a fifth or third code bit).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn byte_bit(v: __m256i, k: i32, shift: i32) -> __m256i {
    let bit = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(k)), _mm256_set1_epi8(1));
    _mm256_sll_epi16(bit, _mm_cvtsi32_si128(shift))
}

/// The 4 two-bit fields of every byte of `v` (bits 0-1, 2-3, 4-5, 6-7), each as bytes 0..4.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn crumbs(v: __m256i) -> [__m256i; 4] {
    let three = _mm256_set1_epi8(3);
    [
        _mm256_and_si256(v, three),
        _mm256_and_si256(_mm256_srli_epi16::<2>(v), three),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), three),
        _mm256_and_si256(_mm256_srli_epi16::<6>(v), three),
    ]
}

/// The low and high nibbles of every byte of `v`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibbles(v: __m256i) -> (__m256i, __m256i) {
    let low4 = _mm256_set1_epi8(0x0f);
    (_mm256_and_si256(v, low4), _mm256_and_si256(_mm256_srli_epi16::<4>(v), low4))
}

/// Q2_K (84 bytes): scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_q2_k(b: &[u8; 84]) -> Unpacked {
    let packed = load_u8x16(b, 0);
    let low4 = _mm_set1_epi8(0x0f);
    let mut codes = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        let c = crumbs(load_u8x32(b, 16 + 32 * h));
        codes[4 * h..4 * h + 4].copy_from_slice(&c);
    }
    Unpacked {
        codes,
        scales: _mm_and_si128(packed, low4),
        biases: _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(packed), low4)),
        d: fp16_at(b, 80),
        dmin: fp16_at(b, 82),
    }
}

/// Q3_K (110 bytes): hmask[32], qs[64] as Q2_K's, 12 scale bytes, d. Code `low2 + 4 * hbit`
/// (0..8), scale `sc - 32`, bias `4 * (sc - 32)` with scale `d`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_q3_k(b: &[u8; 110]) -> Unpacked {
    let packed = q3_k_scales(&b[96..108]);
    let scales = _mm_sub_epi8(load_u8x16(&packed, 0), _mm_set1_epi8(32));
    let hmask = load_u8x32(b, 0);
    let mut codes = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        let c = crumbs(load_u8x32(b, 32 + 32 * h));
        for (s, low) in c.into_iter().enumerate() {
            let k = 4 * h + s;
            codes[k] = _mm256_or_si256(low, byte_bit(hmask, k as i32, 2));
        }
    }
    Unpacked {
        codes,
        scales,
        biases: _mm256_slli_epi16::<2>(_mm256_cvtepi8_epi16(scales)),
        d: fp16_at(b, 108),
        dmin: 0.0,
    }
}

/// The per-16 scales and biases of Q4_K/Q5_K: each 6-bit scale and min twice.
///
/// The 12 packed bytes (`scales_mins_k4` unpacks them in scalar words) are unpacked in one xmm
/// here, so the vector of scales does not wait on four scalar stores: with words `w0, w1, w2`
/// (bytes 4..8 of `b` are `w0`), the 8 scales are `w0 & 0x3f..` and `(w2 & 0x0f..) | (w0 >> 6 & 3) << 4`,
/// the 8 mins `w1 & 0x3f..` and `(w2 >> 4 & 0x0f..) | (w1 >> 6 & 3) << 4`, per byte.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn min_block_scales(b: &[u8]) -> (__m128i, __m256i) {
    // Bytes 4..20 of the block: w0, w1, w2 and 4 bytes of codes (unused).
    let v = load_u8x16(b, 4);
    // Words [w0, w2, w1, w2] and [0, w0, 0, w1] (a pshufb index with the top bit set gives 0).
    const Z: i8 = -128;
    let a = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    let top = _mm_shuffle_epi8(v, _mm_setr_epi8(Z, Z, Z, Z, 0, 1, 2, 3, Z, Z, Z, Z, 4, 5, 6, 7));
    // (x >> 6) << 4 per byte: the 16-bit shift brings the next byte's bits only into bits 6-7.
    let top = _mm_and_si128(_mm_srli_epi16::<2>(top), _mm_set1_epi8(0x30));
    let low = _mm_and_si128(a, _mm_setr_epi32(0x3f3f_3f3f, 0x0f0f_0f0f, 0x3f3f_3f3f, 0));
    let high = _mm_and_si128(_mm_srli_epi16::<4>(a), _mm_setr_epi32(0, 0, 0, 0x0f0f_0f0f));
    let sm = _mm_or_si128(_mm_or_si128(low, high), top);
    (_mm_unpacklo_epi8(sm, sm), _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)))
}

/// Q4_K (144 bytes): d, dmin, 12 bytes of scales/mins, qs[128] (per 64 elements, 32 bytes: low
/// nibbles the first 32, high nibbles the next 32).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_q4_k(b: &[u8; 144]) -> Unpacked {
    let (scales, biases) = min_block_scales(b);
    let mut codes = [_mm256_setzero_si256(); 8];
    for c in 0..4 {
        (codes[2 * c], codes[2 * c + 1]) = nibbles(load_u8x32(b, 16 + 32 * c));
    }
    Unpacked { codes, scales, biases, d: fp16_at(b, 0), dmin: fp16_at(b, 2) }
}

/// Q5_K (176 bytes): Q4_K's header, qh[32] (bit k of `qh[l]` the fifth bit of element 32k + l),
/// then Q4_K's nibbles.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_q5_k(b: &[u8; 176]) -> Unpacked {
    let (scales, biases) = min_block_scales(b);
    let qh = load_u8x32(b, 16);
    let mut codes = [_mm256_setzero_si256(); 8];
    for c in 0..4 {
        let (low, high) = nibbles(load_u8x32(b, 48 + 32 * c));
        codes[2 * c] = _mm256_or_si256(low, byte_bit(qh, 2 * c as i32, 4));
        codes[2 * c + 1] = _mm256_or_si256(high, byte_bit(qh, 2 * c as i32 + 1, 4));
    }
    Unpacked { codes, scales, biases, d: fp16_at(b, 0), dmin: fp16_at(b, 2) }
}

/// Q6_K (210 bytes): ql[128], qh[64], 16 i8 scales, d. Per 128-element half, elements 0..32 take
/// the low nibbles of `ql[0..32]` and bits 0-1 of `qh`, 32..64 the low nibbles of `ql[32..64]` and
/// bits 2-3, 64..96 and 96..128 the high nibbles and bits 4-5 and 6-7. Bias `32 * sc`, scale `d`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_q6_k(b: &[u8; 210]) -> Unpacked {
    let scales = load_u8x16(b, 192);
    let top2 = _mm256_set1_epi8(0x30);
    let mut codes = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        let (low0, high0) = nibbles(load_u8x32(b, 64 * h));
        let (low1, high1) = nibbles(load_u8x32(b, 64 * h + 32));
        let qh = load_u8x32(b, 128 + 32 * h);
        codes[4 * h] = _mm256_or_si256(low0, _mm256_and_si256(_mm256_slli_epi16::<4>(qh), top2));
        codes[4 * h + 1] = _mm256_or_si256(low1, _mm256_and_si256(_mm256_slli_epi16::<2>(qh), top2));
        codes[4 * h + 2] = _mm256_or_si256(high0, _mm256_and_si256(qh, top2));
        codes[4 * h + 3] = _mm256_or_si256(high1, _mm256_and_si256(_mm256_srli_epi16::<2>(qh), top2));
    }
    Unpacked {
        codes,
        scales,
        biases: _mm256_slli_epi16::<5>(_mm256_cvtepi8_epi16(scales)),
        d: fp16_at(b, 208),
        dmin: 0.0,
    }
}

/// IQ4_XS's per-16 scales `ls - 32` (each 6-bit `ls` twice): the low nibbles of `scales_l` and
/// the 2-bit fields of `scales_h` spread to one byte per sub-block with shifts and masks.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn iq4_xs_scales(b: &[u8; 136]) -> __m128i {
    let mut low = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as u64;
    low = (low | (low << 16)) & 0x0000_ffff_0000_ffff;
    low = (low | (low << 8)) & 0x00ff_00ff_00ff_00ff;
    low = (low | (low << 4)) & 0x0f0f_0f0f_0f0f_0f0f;
    let mut high = u16::from_le_bytes([b[2], b[3]]) as u64;
    high = (high | (high << 24)) & 0x0000_00ff_0000_00ff;
    high = (high | (high << 12)) & 0x000f_000f_000f_000f;
    high = (high | (high << 6)) & 0x0303_0303_0303_0303;
    let ls = _mm_sub_epi8(_mm_cvtsi64_si128((low | (high << 4)) as i64), _mm_set1_epi8(32));
    _mm_unpacklo_epi8(ls, ls)
}

/// IQ4_XS (136 bytes): d, scales_h (u16), scales_l[4], qs[128]. Codes are the signed table
/// values; the sub-block scale is `ls - 32`; no bias.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_iq4_xs(b: &[u8; 136]) -> Unpacked {
    let table = _mm256_broadcastsi128_si256(load_u8x16(&KVALUES_IQ4NL.map(|v| v as u8), 0));
    let mut codes = [_mm256_setzero_si256(); 8];
    for p in 0..4 {
        // Sub-blocks 2p (low 128 bits) and 2p + 1; each is its 16 low nibbles, then its 16 high.
        let (low, high) = nibbles(load_u8x32(b, 8 + 32 * p));
        let (low, high) = (_mm256_shuffle_epi8(table, low), _mm256_shuffle_epi8(table, high));
        codes[2 * p] = _mm256_permute2x128_si256::<0x20>(low, high);
        codes[2 * p + 1] = _mm256_permute2x128_si256::<0x31>(low, high);
    }
    Unpacked { codes, scales: iq4_xs_scales(b), biases: _mm256_setzero_si256(), d: fp16_at(b, 0), dmin: 0.0 }
}

/// The ternary types' scales and biases: all 1 (`x = d * (q - 1)`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn ternary(codes: [__m256i; 8], d: f32) -> Unpacked {
    Unpacked { codes, scales: _mm_set1_epi8(1), biases: _mm256_set1_epi16(1), d, dmin: 0.0 }
}

/// TQ2_0 (66 bytes): qs[64] in Q2_K's layout, d.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_tq2_0(b: &[u8; 66]) -> Unpacked {
    let mut codes = [_mm256_setzero_si256(); 8];
    for h in 0..2 {
        codes[4 * h..4 * h + 4].copy_from_slice(&crumbs(load_u8x32(b, 32 * h)));
    }
    ternary(codes, fp16_at(b, 64))
}

/// Trit `n` of every byte of `v`, `((v * 3^n) mod 256) * 3 >> 8`, with `3^n` given per 16-bit lane
/// in `pow`: the byte products come from two 16-bit multiplies (even bytes, odd bytes masked so
/// no carry crosses), and `x * 3 >> 8` is `(x >= 86) + (x >= 171)`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn trits(v: __m256i, pow: __m256i) -> __m256i {
    let high_bytes = _mm256_set1_epi16(0xff00u16 as i16);
    let even = _mm256_andnot_si256(high_bytes, _mm256_mullo_epi16(v, pow));
    let odd = _mm256_mullo_epi16(_mm256_and_si256(v, high_bytes), pow);
    let x = _mm256_or_si256(even, odd);
    let at_least = |t: i8| _mm256_cmpeq_epi8(_mm256_max_epu8(x, _mm256_set1_epi8(t)), x);
    _mm256_sub_epi8(_mm256_setzero_si256(), _mm256_add_epi8(at_least(86), at_least(171u8 as i8)))
}

/// TQ1_0 (54 bytes): qs[48] (5 trits a byte), qh[4] (4 trits a byte), d. `qs[0..32]` hold elements
/// 32n + m (vectors 0..5); `qs[32..48]` elements 160 + 16n + m, two trits per vector (5..8); `qh`
/// elements 240 + 4n + j, the high half of vector 7.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn unpack_tq1_0(b: &[u8; 54]) -> Unpacked {
    let pow_pair = |low: i16, high: i16| _mm256_setr_m128i(_mm_set1_epi16(low), _mm_set1_epi16(high));
    let mut codes = [_mm256_setzero_si256(); 8];
    let q = load_u8x32(b, 0);
    for (n, pow) in [1, 3, 9, 27, 81].into_iter().enumerate() {
        codes[n] = trits(q, _mm256_set1_epi16(pow));
    }
    let q16 = load_u8x16(b, 32);
    let q16x2 = _mm256_broadcastsi128_si256(q16);
    codes[5] = trits(q16x2, pow_pair(1, 3));
    codes[6] = trits(q16x2, pow_pair(9, 27));
    let qh = _mm_set1_epi32(i32::from_le_bytes([b[48], b[49], b[50], b[51]]));
    let qh_pow = _mm_setr_epi16(1, 1, 3, 3, 9, 9, 27, 27);
    codes[7] = trits(_mm256_setr_m128i(q16, qh), _mm256_setr_m128i(_mm_set1_epi16(81), qh_pow));
    ternary(codes, fp16_at(b, 52))
}

/// Lane `s` of the result = the sum of the 8 lanes of `v[s]` (exact, wrapping i32 adds).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn lane_sums(v: &[__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    // Per 128-bit lane: [v0, v1, v2, v3] and [v4 .. v7], each the sum of that half of the vector.
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(h0123, h4567), _mm256_permute2x128_si256::<0x31>(h0123, h4567))
}

/// The 8 partials of one row summed as `matmul::dot_kquants::reduce_partials` does.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn reduce_partials(p: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps::<1>(p));
    let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
}

/// Checks the shapes of a kernel call: whole super-blocks, 1..=8 rows, every row in bounds.
pub(in crate::simd::x86_64) fn check_shapes(
    n: usize,
    weight_len: usize,
    block_bytes: usize,
    acts_len: usize,
    act_row_bytes: usize,
    rows: usize,
) {
    assert!(n.is_multiple_of(QK_K), "n = {n} is not a multiple of {QK_K}");
    let nb = n / QK_K;
    assert_eq!(weight_len, nb * block_bytes, "weight row length");
    assert!((1..=MAX_ROWS).contains(&rows), "1..=8 activation rows");
    assert!(act_row_bytes >= nb * Q8K_BYTES && acts_len >= (rows - 1) * act_row_bytes + nb * Q8K_BYTES);
}

/// Defines `$name`, the loop every dot kernel of one ISA runs, with `$features` enabled (a macro
/// so each ISA's closures inline into a driver with their own features):
/// `load` turns a weight super-block into registers once (and gives its `d`, `dmin`), `row_sums`
/// gives its two i32 vectors (`isum`, `msum` lanes) against one activation block, and the float
/// part follows `matmul::dot_kquants`'s order, 8 super-blocks per step.
///
/// `$name` takes the call; `$rows_name` is the loop for at most `CAP` rows (1, 4 or 8), sizing
/// its buffers: a single row (the decode case) does not pay for zeroing 8 rows' worth, which cost
/// it 15% on a 14336-element row.
macro_rules! superblock_driver {
    ($name:ident, $rows_name:ident, $features:literal) => {
        #[target_feature(enable = $features)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        fn $name<const B: usize, P>(
            n: usize,
            weight: &[u8],
            acts: &[u8],
            act_row_bytes: usize,
            out: &mut [f32],
            separate_min: bool,
            load: impl Fn(&[u8; B]) -> (P, f32, f32) + Copy,
            row_sums: impl Fn(&P, &[u8; Q8K_BYTES]) -> (__m256i, __m256i) + Copy,
        ) {
            match out.len() {
                1 => $rows_name::<B, P, 1>(n, weight, acts, act_row_bytes, out, separate_min, load, row_sums),
                2..=4 => $rows_name::<B, P, 4>(n, weight, acts, act_row_bytes, out, separate_min, load, row_sums),
                _ => $rows_name::<B, P, MAX_ROWS>(n, weight, acts, act_row_bytes, out, separate_min, load, row_sums),
            }
        }

        #[target_feature(enable = $features)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        fn $rows_name<const B: usize, P, const CAP: usize>(
            n: usize,
            weight: &[u8],
            acts: &[u8],
            act_row_bytes: usize,
            out: &mut [f32],
            separate_min: bool,
            load: impl Fn(&[u8; B]) -> (P, f32, f32),
            row_sums: impl Fn(&P, &[u8; Q8K_BYTES]) -> (__m256i, __m256i),
        ) {
            use $crate::simd::x86_64::avx2::dot_kquants::{
                check_shapes, lane_sums, load_f32x8, reduce_partials, WEIGHT_PREFETCH_BYTES,
            };
            check_shapes(n, weight.len(), B, acts.len(), act_row_bytes, out.len());
            assert!(out.len() <= CAP);
            let rows = out.len();
            let blocks = weight.as_chunks::<B>().0;
            // Each activation row as its blocks, sliced once.
            let act_rows: [&[[u8; Q8K_BYTES]]; CAP] = std::array::from_fn(|r| {
                if r < rows {
                    &acts[r * act_row_bytes..].as_chunks::<Q8K_BYTES>().0[..blocks.len()]
                } else {
                    &[]
                }
            });
            let act_block = |r: usize, i: usize| -> &[u8; Q8K_BYTES] { &act_rows[r][i] };
            let mut partials = [_mm256_setzero_ps(); CAP];
            // Lane vectors of the last 8 super-blocks per row; slots past the end of a short last
            // group keep stale integers, which meet d_w = d_a = 0 and add +0.0.
            let mut isums = [[_mm256_setzero_si256(); PARTIALS]; CAP];
            let mut msums = [[_mm256_setzero_si256(); PARTIALS]; CAP];
            for (g, group) in blocks.chunks(PARTIALS).enumerate() {
                let mut d_w = [0f32; PARTIALS];
                let mut dmin_w = [0f32; PARTIALS];
                for (s, block) in group.iter().enumerate() {
                    let i = g * PARTIALS + s;
                    if CAP == 1 {
                        // One row streams whole weight rows, the next ones right after this one;
                        // with more rows K goes in pieces, and the bytes ahead belong to a later
                        // piece. A prefetch of any address is harmless (it never faults).
                        let ahead = weight.as_ptr().wrapping_add(i * B + WEIGHT_PREFETCH_BYTES);
                        for line in (0..B).step_by(64) {
                            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line).cast());
                        }
                    }
                    let p;
                    (p, d_w[s], dmin_w[s]) = load(block);
                    for r in 0..rows {
                        let (isum, msum) = row_sums(&p, act_block(r, i));
                        if separate_min {
                            (isums[r][s], msums[r][s]) = (isum, msum);
                        } else {
                            isums[r][s] = _mm256_sub_epi32(isum, msum);
                        }
                    }
                }
                let d_w = load_f32x8(&d_w);
                let dmin_w = load_f32x8(&dmin_w);
                for r in 0..rows {
                    let mut d_a = [0f32; PARTIALS];
                    for s in 0..group.len() {
                        d_a[s] = f32::from_le_bytes(act_block(r, g * PARTIALS + s)[..4].try_into().expect("f32 d"));
                    }
                    let d_a = load_f32x8(&d_a);
                    let isum = _mm256_cvtepi32_ps(lane_sums(&isums[r]));
                    partials[r] = _mm256_fmadd_ps(_mm256_mul_ps(d_w, d_a), isum, partials[r]);
                    if separate_min {
                        let msum = _mm256_cvtepi32_ps(lane_sums(&msums[r]));
                        partials[r] = _mm256_fnmadd_ps(_mm256_mul_ps(dmin_w, d_a), msum, partials[r]);
                    }
                }
            }
            for (o, p) in out.iter_mut().zip(partials) {
                *o = reduce_partials(p);
            }
        }
    };
}
pub(in crate::simd::x86_64) use superblock_driver;
/// How far ahead of the super-block being unpacked the single-row drivers prefetch the weight. A
/// single-row matmul streams the weight from memory once, and the hardware prefetcher alone left
/// the loads of each super-block waiting: measured on W [4096 x 14336], one thread, Q6_K went
/// from 31 to 44 GB/s, Q5_K 24 -> 30, Q4_K 26 -> 29 with 16 KiB (4 KiB gained half of that).
pub(in crate::simd::x86_64) const WEIGHT_PREFETCH_BYTES: usize = 16 << 10;

superblock_driver!(dot_superblocks, dot_superblocks_rows, "avx2,fma,f16c");

/// An unpacked super-block with the scales spread per 32-element vector: vector k's i16 lanes
/// 0..8 take scale 2k, lanes 8..16 scale 2k + 1 (a `maddubs` lane covers elements 2t, 2t + 1).
#[derive(Clone, Copy)]
struct Prepared {
    codes: [__m256i; 8],
    scales: [__m256i; 8],
    biases: __m256i,
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn prepare(u: &Unpacked) -> Prepared {
    // Byte indices [2k x 8, 2k + 1 x 8] for vector k.
    let first = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let mut scales = [_mm256_setzero_si256(); 8];
    for (k, s) in scales.iter_mut().enumerate() {
        let index = _mm_add_epi8(first, _mm_set1_epi8(2 * k as i8));
        *s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(u.scales, index));
    }
    Prepared { codes: u.codes, scales, biases: u.biases }
}

/// `(isum, msum)` lane vectors of one prepared super-block against one Q8_K block; `SIGNED` for
/// codes that are signed (IQ4_XS).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn row_sums<const SIGNED: bool>(p: &Prepared, act: &[u8; Q8K_BYTES]) -> (__m256i, __m256i) {
    let mut acc = _mm256_setzero_si256();
    for k in 0..8 {
        let a = load_u8x32(act, Q8K_QS + 32 * k);
        let pairs = if SIGNED {
            _mm256_maddubs_epi16(_mm256_abs_epi8(a), _mm256_sign_epi8(p.codes[k], a))
        } else {
            _mm256_maddubs_epi16(p.codes[k], a)
        };
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, p.scales[k]));
    }
    let bsums = load_u8x32(act, Q8K_BSUMS);
    (acc, _mm256_madd_epi16(bsums, p.biases))
}

/// Defines the AVX2 kernel and its safe entry point for each type.
macro_rules! kernels {
    ($($entry:ident => $kernel:ident($bytes:literal, $unpack:ident, separate_min: $sep:literal, signed: $signed:literal);)*) => {$(
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $kernel(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
            dot_superblocks::<$bytes, Prepared>(
                n, weight, acts, act_row_bytes, out, $sep,
                |b| {
                    let u = $unpack(b);
                    (prepare(&u), u.d, u.dmin)
                },
                |p, a| row_sums::<$signed>(p, a),
            )
        }

        fn $entry(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
            // SAFETY: only reachable through `avx2::dot_kernel`, which takes an `Avx2` token: the
            // CPU has AVX2, FMA and F16C, all the kernel enables.
            unsafe { $kernel(n, weight, acts, act_row_bytes, out) }
        }
    )*};
}

kernels! {
    dot_q2_k => dot_q2_k_avx2(84, unpack_q2_k, separate_min: true, signed: false);
    dot_q3_k => dot_q3_k_avx2(110, unpack_q3_k, separate_min: false, signed: false);
    dot_q4_k => dot_q4_k_avx2(144, unpack_q4_k, separate_min: true, signed: false);
    dot_q5_k => dot_q5_k_avx2(176, unpack_q5_k, separate_min: true, signed: false);
    dot_q6_k => dot_q6_k_avx2(210, unpack_q6_k, separate_min: false, signed: false);
    dot_iq4_xs => dot_iq4_xs_avx2(136, unpack_iq4_xs, separate_min: false, signed: true);
    dot_tq1_0 => dot_tq1_0_avx2(54, unpack_tq1_0, separate_min: false, signed: false);
    dot_tq2_0 => dot_tq2_0_avx2(66, unpack_tq2_0, separate_min: false, signed: false);
}

/// The AVX2 dot kernel for `qtype` against Q8_K, if there is one (see `avx2::dot_kernel`).
pub(super) fn kernel(qtype: QuantType) -> Option<VecDotFn> {
    Some(match qtype {
        QuantType::Q2_K => dot_q2_k,
        QuantType::Q3_K => dot_q3_k,
        QuantType::Q4_K => dot_q4_k,
        QuantType::Q5_K => dot_q5_k,
        QuantType::Q6_K => dot_q6_k,
        QuantType::IQ4_XS => dot_iq4_xs,
        QuantType::TQ1_0 => dot_tq1_0,
        QuantType::TQ2_0 => dot_tq2_0,
        _ => return None,
    })
}
