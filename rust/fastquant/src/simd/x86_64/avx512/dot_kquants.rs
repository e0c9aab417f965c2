//! AVX-512 dot kernels of K-quant / IQ4_XS / TQ1_0 / TQ2_0 weight rows with 1..=8 Q8_K activation
//! rows, without and with VNNI. A super-block becomes 4 zmm of 64 codes in element order (Q4_K,
//! Q5_K, Q6_K and IQ4_XS straight from their bytes; the others through the AVX2 unpacking, joined),
//! and the exact integer sums run 64 elements per instruction: `vpmaddubsw`, then `vpmaddwd` +
//! `vpaddd` with the sub-block scales, which VNNI fuses into one `vpdpwssd`. The float part is the
//! shared driver's, so every level gives the scalar reference's bits.
//!
//! AVX-512 has no `vpsignb`: for IQ4_XS's signed codes the code is negated under the mask of
//! negative activation codes (a zero activation meets `|a| = 0`, so its code does not matter).
//! With VNNI, IQ4_XS takes `vpdpbusd` on offset codes instead ([`PreparedOffset`]).

use std::arch::x86_64::*;

use super::super::avx2::dot_kquants::{
    fp16_at, iq4_xs_scales, min_block_scales, superblock_driver, unpack_q2_k, unpack_q3_k, unpack_tq1_0, unpack_tq2_0,
    Unpacked,
};
use super::kquants_dequantize::load_u8x32;
use super::load_u8x16;
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::matmul::dot_kquants::{VecDotFn, MAX_ROWS, PARTIALS, Q8K_BSUMS, Q8K_BYTES, Q8K_QS};
use crate::types::QuantType;

superblock_driver!(dot_superblocks, dot_superblocks_rows, "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c");
superblock_driver!(
    dot_superblocks_vnni,
    dot_superblocks_vnni_rows,
    "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni"
);

/// An unpacked super-block as 4 zmm: vector k holds elements 64k..64k + 64, and its scale
/// vector's i16 lane t (elements 64k + 2t, + 1) the scale of sub-block 4k + t/8.
#[derive(Clone, Copy)]
struct Prepared {
    codes: [__m512i; 4],
    scales: [__m512i; 4],
    biases: __m256i,
}

/// The per-16 scales (i8) spread as `Prepared::scales`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn spread_scales_i16(scales: __m128i) -> [__m512i; 4] {
    const SUB_BLOCK_OF_LANE: [i16; 32] = {
        let mut t = [0i16; 32];
        let mut i = 0;
        while i < 32 {
            t[i] = (i / 8) as i16;
            i += 1;
        }
        t
    };
    // SAFETY: the table is 32 readable i16; `loadu` has no alignment requirement.
    let first = unsafe { _mm512_loadu_si512(SUB_BLOCK_OF_LANE.as_ptr().cast()) };
    let scales16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(scales));
    std::array::from_fn(|k| {
        _mm512_permutexvar_epi16(_mm512_add_epi16(first, _mm512_set1_epi16(4 * k as i16)), scales16)
    })
}

/// An AVX2-unpacked super-block as 4 zmm, with its `d` and `dmin`: the driver's `load`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn prepare(u: Unpacked) -> (Prepared, f32, f32) {
    let codes =
        std::array::from_fn(|k| _mm512_inserti64x4::<1>(_mm512_castsi256_si512(u.codes[2 * k]), u.codes[2 * k + 1]));
    (Prepared { codes, scales: spread_scales_i16(u.scales), biases: u.biases }, u.d, u.dmin)
}

/// The nibbles of 64 bytes of Q4_K/Q5_K codes (two 64-element chunks: per chunk 32 bytes, low
/// nibbles its first 32 elements, high nibbles its last 32) as two zmm of 64 elements each.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn min_block_nibbles(q: __m512i) -> (__m512i, __m512i) {
    let low4 = _mm512_set1_epi8(0x0f);
    let low = _mm512_and_si512(q, low4);
    let high = _mm512_and_si512(_mm512_srli_epi16::<4>(q), low4);
    // 128-bit lanes 0, 1 of each, then 2, 3 of each.
    (_mm512_shuffle_i64x2::<0b01_00_01_00>(low, high), _mm512_shuffle_i64x2::<0b11_10_11_10>(low, high))
}

/// Q4_K (144 bytes) straight into zmm.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_q4_k(b: &[u8; 144]) -> (Prepared, f32, f32) {
    let (scales, biases) = min_block_scales(b);
    let mut codes = [_mm512_setzero_si512(); 4];
    for p in 0..2 {
        (codes[2 * p], codes[2 * p + 1]) = min_block_nibbles(load_u8x64(b, 16 + 64 * p));
    }
    (Prepared { codes, scales: spread_scales_i16(scales), biases }, fp16_at(b, 0), fp16_at(b, 2))
}

/// Q5_K (176 bytes) straight into zmm: Q4_K's nibbles, and the fifth bit of element 32k + l (bit
/// k of `qh[l]`) added as 16 under a byte mask.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_q5_k(b: &[u8; 176]) -> (Prepared, f32, f32) {
    let (scales, biases) = min_block_scales(b);
    let qh = _mm512_broadcast_i64x4(load_u8x32(b, 16));
    let sixteen = _mm512_set1_epi8(16);
    let mut codes = [_mm512_setzero_si512(); 4];
    for p in 0..2 {
        (codes[2 * p], codes[2 * p + 1]) = min_block_nibbles(load_u8x64(b, 48 + 64 * p));
    }
    for (k, c) in codes.iter_mut().enumerate() {
        // Vector k holds chunks 2k (bytes 0..32) and 2k + 1 (bytes 32..64).
        let bits = _mm512_inserti64x4::<1>(_mm512_set1_epi8(1 << (2 * k)), _mm256_set1_epi8(1 << (2 * k + 1)));
        *c = _mm512_mask_add_epi8(*c, _mm512_test_epi8_mask(qh, bits), *c, sixteen);
    }
    (Prepared { codes, scales: spread_scales_i16(scales), biases }, fp16_at(b, 0), fp16_at(b, 2))
}

/// Q6_K (210 bytes) straight into zmm: per 128-element half, the 64 bytes of `ql` are elements
/// 0..64 in their low nibbles and 64..128 in their high ones, in order; the top two bits come from
/// `qh` (bits 0-1, 2-3 for the low nibbles' two 32-byte halves, 4-5, 6-7 for the high ones).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_q6_k(b: &[u8; 210]) -> (Prepared, f32, f32) {
    let scales = load_u8x16(&b[192..208]);
    let low4 = _mm512_set1_epi8(0x0f);
    let top2 = _mm512_set1_epi8(0x30);
    // i16 shift counts: 4 / 2 for the low half's bytes 0..32 / 32..64, 0 / 2 (right) for the high.
    let left = _mm512_inserti64x4::<1>(_mm512_set1_epi16(4), _mm256_set1_epi16(2));
    let right = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(2));
    let mut codes = [_mm512_setzero_si512(); 4];
    for h in 0..2 {
        let ql = load_u8x64(b, 64 * h);
        let qh = _mm512_broadcast_i64x4(load_u8x32(b, 128 + 32 * h));
        let low = _mm512_and_si512(ql, low4);
        let high = _mm512_and_si512(_mm512_srli_epi16::<4>(ql), low4);
        codes[2 * h] = _mm512_or_si512(low, _mm512_and_si512(_mm512_sllv_epi16(qh, left), top2));
        codes[2 * h + 1] = _mm512_or_si512(high, _mm512_and_si512(_mm512_srlv_epi16(qh, right), top2));
    }
    let biases = _mm256_slli_epi16::<5>(_mm256_cvtepi8_epi16(scales));
    (Prepared { codes, scales: spread_scales_i16(scales), biases }, fp16_at(b, 208), 0.0)
}

/// IQ4_XS's codes straight into zmm through `table` (the 16 values in each 128-bit lane): each
/// 64 bytes of `qs` are sub-blocks 4p..4p + 4, one per 128-bit lane, low nibbles its first 16
/// elements and high nibbles its last 16; a two-source permute puts them in element order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn iq4_xs_codes(b: &[u8; 136], table: __m512i) -> [__m512i; 4] {
    let low4 = _mm512_set1_epi8(0x0f);
    let first = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
    let second = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    let mut codes = [_mm512_setzero_si512(); 4];
    for p in 0..2 {
        let q = load_u8x64(b, 8 + 64 * p);
        let low = _mm512_shuffle_epi8(table, _mm512_and_si512(q, low4));
        let high = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16::<4>(q), low4));
        codes[2 * p] = _mm512_permutex2var_epi64(low, first, high);
        codes[2 * p + 1] = _mm512_permutex2var_epi64(low, second, high);
    }
    codes
}

/// IQ4_XS for the signed-code kernels (no AVX2 round trip).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_iq4_xs(b: &[u8; 136]) -> (Prepared, f32, f32) {
    let table = _mm512_broadcast_i32x4(load_u8x16(&KVALUES_IQ4NL.map(|v| v as u8)));
    let scales = iq4_xs_scales(b);
    let prepared =
        Prepared { codes: iq4_xs_codes(b, table), scales: spread_scales_i16(scales), biases: _mm256_setzero_si256() };
    (prepared, fp16_at(b, 0), 0.0)
}

/// Loads 64 bytes from `b[at..at + 64]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_u8x64(b: &[u8], at: usize) -> __m512i {
    let b: &[u8; 64] = b[at..at + 64].try_into().expect("64 bytes");
    // SAFETY: `b` is 64 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
}

/// The i16 pair sums of codes times activation codes for vector k (module docs for `SIGNED`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pair_sums<const SIGNED: bool>(codes: __m512i, a: __m512i) -> __m512i {
    if SIGNED {
        let negative = _mm512_movepi8_mask(a);
        let signed_codes = _mm512_mask_sub_epi8(codes, negative, _mm512_setzero_si512(), codes);
        _mm512_maddubs_epi16(_mm512_abs_epi8(a), signed_codes)
    } else {
        _mm512_maddubs_epi16(codes, a)
    }
}

/// The 16 i32 lanes of `acc` folded to 8, and the bias lanes; the driver's `row_sums` result.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn finish(acc: __m512i, biases: __m256i, act: &[u8; Q8K_BYTES]) -> (__m256i, __m256i) {
    let isum = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64::<1>(acc));
    let bsums: &[u8; 32] = act[Q8K_BSUMS..].try_into().expect("16 bsums");
    // SAFETY: `bsums` is 32 readable bytes; `loadu` has no alignment requirement.
    let bsums = unsafe { _mm256_loadu_si256(bsums.as_ptr().cast()) };
    (isum, _mm256_madd_epi16(bsums, biases))
}

/// The driver's `row_sums`: `(isum, msum)` lane vectors of one prepared super-block against one
/// Q8_K block; `SIGNED` for IQ4_XS's signed codes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn row_sums<const SIGNED: bool>(p: &Prepared, act: &[u8; Q8K_BYTES]) -> (__m256i, __m256i) {
    let mut acc = _mm512_setzero_si512();
    for k in 0..4 {
        let pairs = pair_sums::<SIGNED>(p.codes[k], load_u8x64(act, Q8K_QS + 64 * k));
        acc = _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, p.scales[k]));
    }
    finish(acc, p.biases, act)
}

/// [`row_sums`] of unsigned codes with VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
#[inline]
fn row_sums_vnni(p: &Prepared, act: &[u8; Q8K_BYTES]) -> (__m256i, __m256i) {
    let mut acc = _mm512_setzero_si512();
    for k in 0..4 {
        let pairs = pair_sums::<false>(p.codes[k], load_u8x64(act, Q8K_QS + 64 * k));
        acc = _mm512_dpwssd_epi32(acc, pairs, p.scales[k]);
    }
    finish(acc, p.biases, act)
}

/// IQ4_XS's signed codes for VNNI, offset to unsigned bytes (`code + 128`, 1..=241) so that
/// `vpdpbusd` multiplies them with the activation codes exactly (four products summed straight into
/// an i32, no i16 step to saturate, no sign trick); each i32 lane then takes its sub-block's scale
/// (`vpmulld`), and the offset goes back out through the bsums: bias `128 * scale`, which the
/// driver subtracts like Q6_K's. No i32 overflows: one scaled lane is at most 4 * 241 * 128 * 32
/// < 2^22 in magnitude, and a super-block sums 64 of them.
#[derive(Clone, Copy)]
struct PreparedOffset {
    codes: [__m512i; 4],
    /// Vector k's i32 lane t (elements 64k + 4t..64k + 4t + 4) holds the scale of 16-block 4k + t/4.
    scales: [__m512i; 4],
    biases: __m256i,
}

/// IQ4_XS for the VNNI kernel: the table holds `value + 128`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_iq4_xs_offset(b: &[u8; 136]) -> (PreparedOffset, f32, f32) {
    let table = _mm512_broadcast_i32x4(load_u8x16(&KVALUES_IQ4NL.map(|v| (v as u8) ^ 0x80)));
    let scales = iq4_xs_scales(b);
    let first = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    let scales32 = _mm512_cvtepi8_epi32(scales);
    let spread = std::array::from_fn(|k| {
        _mm512_permutexvar_epi32(_mm512_add_epi32(first, _mm512_set1_epi32(4 * k as i32)), scales32)
    });
    let biases = _mm256_slli_epi16::<7>(_mm256_cvtepi8_epi16(scales));
    (PreparedOffset { codes: iq4_xs_codes(b, table), scales: spread, biases }, fp16_at(b, 0), 0.0)
}

/// [`row_sums`] of offset codes with VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
#[inline]
fn row_sums_offset(p: &PreparedOffset, act: &[u8; Q8K_BYTES]) -> (__m256i, __m256i) {
    let mut acc = _mm512_setzero_si512();
    for k in 0..4 {
        let dots = _mm512_dpbusd_epi32(_mm512_setzero_si512(), p.codes[k], load_u8x64(act, Q8K_QS + 64 * k));
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(dots, p.scales[k]));
    }
    finish(acc, p.biases, act)
}

/// Defines a kernel (the driver of `$driver`'s feature set with a `load`, bytes -> registers, and
/// a `row_sums`) and its safe entry point `$entry`.
macro_rules! kernel {
    ($entry:ident => $kernel:ident, $driver:ident, $features:literal,
     $bytes:literal, separate_min: $sep:literal, $prepared:ident, $load:expr, $row_sums:expr) => {
        #[target_feature(enable = $features)]
        fn $kernel(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
            $driver::<$bytes, $prepared>(n, weight, acts, act_row_bytes, out, $sep, $load, $row_sums)
        }

        fn $entry(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
            // SAFETY: only reachable through `avx512::dot_kernel` / `dot_kernel_vnni`, which take an
            // `Avx512` token, and `kernel` below hands out the VNNI kernels only after detecting
            // AVX-512 VNNI: the CPU has every feature the kernel enables.
            unsafe { $kernel(n, weight, acts, act_row_bytes, out) }
        }
    };
}

/// The plain AVX-512 and the VNNI kernel of a type whose codes are unsigned.
macro_rules! unsigned_kernels {
    ($($entry:ident, $entry_vnni:ident => $kernel:ident, $kernel_vnni:ident($bytes:literal, $load:expr, separate_min: $sep:literal);)*) => {$(
        kernel!($entry => $kernel, dot_superblocks, "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c",
            $bytes, separate_min: $sep, Prepared, $load, |p, a| row_sums::<false>(p, a));
        kernel!($entry_vnni => $kernel_vnni, dot_superblocks_vnni, "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni",
            $bytes, separate_min: $sep, Prepared, $load, |p, a| row_sums_vnni(p, a));
    )*};
}

unsigned_kernels! {
    dot_q2_k, dot_q2_k_vnni => dot_q2_k_avx512, dot_q2_k_avx512vnni(84, |b| prepare(unpack_q2_k(b)), separate_min: true);
    dot_q3_k, dot_q3_k_vnni => dot_q3_k_avx512, dot_q3_k_avx512vnni(110, |b| prepare(unpack_q3_k(b)), separate_min: false);
    dot_q4_k, dot_q4_k_vnni => dot_q4_k_avx512, dot_q4_k_avx512vnni(144, |b| load_q4_k(b), separate_min: true);
    dot_q5_k, dot_q5_k_vnni => dot_q5_k_avx512, dot_q5_k_avx512vnni(176, |b| load_q5_k(b), separate_min: true);
    dot_q6_k, dot_q6_k_vnni => dot_q6_k_avx512, dot_q6_k_avx512vnni(210, |b| load_q6_k(b), separate_min: false);
    dot_tq1_0, dot_tq1_0_vnni => dot_tq1_0_avx512, dot_tq1_0_avx512vnni(54, |b| prepare(unpack_tq1_0(b)), separate_min: false);
    dot_tq2_0, dot_tq2_0_vnni => dot_tq2_0_avx512, dot_tq2_0_avx512vnni(66, |b| prepare(unpack_tq2_0(b)), separate_min: false);
}

kernel!(dot_iq4_xs => dot_iq4_xs_avx512, dot_superblocks, "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c",
    136, separate_min: false, Prepared, |b| load_iq4_xs(b), |p, a| row_sums::<true>(p, a));
kernel!(dot_iq4_xs_vnni => dot_iq4_xs_avx512vnni, dot_superblocks_vnni,
    "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni",
    136, separate_min: false, PreparedOffset, |b| load_iq4_xs_offset(b), |p, a| row_sums_offset(p, a));

/// The AVX-512 dot kernel for `qtype` against Q8_K, the VNNI one if `vnni` is asked for and this
/// CPU has it.
pub(super) fn kernel(qtype: QuantType, vnni: bool) -> Option<VecDotFn> {
    let vnni = vnni && std::arch::is_x86_feature_detected!("avx512vnni");
    Some(match (qtype, vnni) {
        (QuantType::Q2_K, false) => dot_q2_k,
        (QuantType::Q2_K, true) => dot_q2_k_vnni,
        (QuantType::Q3_K, false) => dot_q3_k,
        (QuantType::Q3_K, true) => dot_q3_k_vnni,
        (QuantType::Q4_K, false) => dot_q4_k,
        (QuantType::Q4_K, true) => dot_q4_k_vnni,
        (QuantType::Q5_K, false) => dot_q5_k,
        (QuantType::Q5_K, true) => dot_q5_k_vnni,
        (QuantType::Q6_K, false) => dot_q6_k,
        (QuantType::Q6_K, true) => dot_q6_k_vnni,
        (QuantType::IQ4_XS, false) => dot_iq4_xs,
        (QuantType::IQ4_XS, true) => dot_iq4_xs_vnni,
        (QuantType::TQ1_0, false) => dot_tq1_0,
        (QuantType::TQ1_0, true) => dot_tq1_0_vnni,
        (QuantType::TQ2_0, false) => dot_tq2_0,
        (QuantType::TQ2_0, true) => dot_tq2_0_vnni,
        _ => return None,
    })
}
