//! AVX-512 quantize kernels for IQ4_NL and IQ4_XS, plain and importance-weighted, and (at the end,
//! without a search) for TQ1_0, TQ2_0 and MXFP4.
//!
//! Their time is ggml's scale search (`quantize_row_iq4_nl_impl`, `formats/iquants/iq4.rs`): per
//! 32-element sub-block 16 candidate scales, each a nearest-entry search in the non-linear table
//! for every element and two weighted sums. As for the K-quants (`kquants.rs`), the kernels
//! vectorise ACROSS sub-blocks: lane s of every vector is sub-block s of a group of 16 (16
//! IQ4_NL blocks, or two IQ4_XS super-blocks), the inputs are transposed so the scalar sums over
//! elements become lane-wise accumulations in the same order, products keep the scalar grouping
//! (`w*q*x` is `(w*q)*x`) with no FMA, and branches are masked selects under the scalar code's own
//! comparisons (ordered ones false on NaN, `!=` true on NaN), so every lane's scale is the scalar
//! one bit for bit.
//!
//! The nearest-entry search (`best_index_int8`, a binary search where an exact midpoint goes up)
//! counts the midpoints `x` is not below ([`IQ4NL_MIDPOINTS`] explains why that is the same index
//! for every float, NaN included): a 4-step branch-free binary search over the midpoints with one
//! `vpermps` table lookup per step, then one more lookup for the table value.
//!
//! The per-block epilogue is the scalar code's: IQ4_NL's fp16 scale, IQ4_XS's 6-bit sub-scales
//! through the shared [`iq4_xs_sub_scales`](crate::formats::iquants::iq4::iq4_xs_sub_scales); then the codes are re-picked 16 elements at a time
//! against the broadcast inverse scale and packed two per byte. Groups with a NaN or an infinity
//! in the input (or any when the imatrix has one) go to the scalar reference; a short last group
//! runs with zero-padded lanes, which the search treats as empty blocks and nothing stores.

use std::arch::x86_64::*;

use super::kquants::transpose16;
use crate::formats::float::fp32_to_fp16;
use crate::formats::iquants::iq4::{IQ4NL_MIDPOINTS, KVALUES_IQ4NL, KVALUES_IQ4NL_F32};
use crate::formats::iquants::{BlockIq4Nl, BlockIq4Xs};
use crate::formats::legacy::inverse_or_zero;
use crate::formats::mxfp4::{e8m0_to_fp32_half, mxfp4_exponent, BlockMxfp4, KVALUES_MXFP4};
use crate::formats::ternary::{BlockTq1_0, BlockTq2_0};
use crate::formats::BlockFormat;
use crate::simd::x86_64::avx2::iquants::{quantize_groups, tq1_0_qh, GroupWeights, Iq4Block};

/// Sub-blocks per search: one per lane.
const LANES: usize = 16;
/// ggml's `GROUP_MAX_EPS` of the IQ4 quantizer: a sub-block whose largest |x| is below gets 0.
const GROUP_MAX_EPS: f32 = 1e-15;
/// The `ntry` of `quantize_iq4_nl` / `quantize_iq4_xs`.
const NTRY: i32 = 7;

pub(super) fn quantize_iq4_nl(src: &[f32], dst: &mut [u8]) {
    // SAFETY: the kernel only needs the CPU features that `Avx512::try_new` checked, and this
    // function is only reachable through `kernels`, which takes that token.
    unsafe { quantize_iq4_avx512::<BlockIq4Nl>(src, dst, None) }
}

pub(super) fn quantize_iq4_xs(src: &[f32], dst: &mut [u8]) {
    // SAFETY: as in `quantize_iq4_nl`.
    unsafe { quantize_iq4_avx512::<BlockIq4Xs>(src, dst, None) }
}

pub(super) fn quantize_tq1_0(src: &[f32], dst: &mut [u8]) {
    // SAFETY: as in `quantize_iq4_nl`.
    unsafe { quantize_tq1_0_avx512(src, dst) }
}

pub(super) fn quantize_tq2_0(src: &[f32], dst: &mut [u8]) {
    // SAFETY: as in `quantize_iq4_nl`.
    unsafe { quantize_tq2_0_avx512(src, dst) }
}

pub(super) fn quantize_mxfp4(src: &[f32], dst: &mut [u8]) {
    // SAFETY: as in `quantize_iq4_nl`.
    unsafe { quantize_mxfp4_avx512(src, dst) }
}

pub(super) fn quantize_iq4_nl_imatrix(src: &[f32], dst: &mut [u8], n_per_row: usize, qw: &[f32]) {
    // SAFETY: as in `quantize_iq4_nl`.
    unsafe { quantize_iq4_avx512::<BlockIq4Nl>(src, dst, Some((n_per_row, qw))) }
}

pub(super) fn quantize_iq4_xs_imatrix(src: &[f32], dst: &mut [u8], n_per_row: usize, qw: &[f32]) {
    // SAFETY: as in `quantize_iq4_nl`.
    unsafe { quantize_iq4_avx512::<BlockIq4Xs>(src, dst, Some((n_per_row, qw))) }
}

/// `T[s][i] = midpoint[min(i + s - 1, 14)]`: at the binary search's step of width `s` (8, 4,
/// 2, 1), an index `i` so far compares against the midpoint `i + s - 1`.
const fn step_table(s: usize) -> [f32; 16] {
    let mut t = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        let k = if i + s - 1 < 14 { i + s - 1 } else { 14 };
        t[i] = IQ4NL_MIDPOINTS[k];
        i += 1;
    }
    t
}
const STEP_TABLES: [[f32; 16]; 3] = [step_table(4), step_table(2), step_table(1)];

/// The lookup tables of [`nearest_x16`], loaded once per kernel call.
#[derive(Clone, Copy)]
struct Tables {
    mid7: __m512,
    steps: [__m512; 3],
    values: __m512,
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn tables() -> Tables {
    // SAFETY: each table is 16 readable floats.
    unsafe {
        Tables {
            mid7: _mm512_set1_ps(IQ4NL_MIDPOINTS[7]),
            steps: STEP_TABLES.map(|t| _mm512_loadu_ps(t.as_ptr())),
            values: _mm512_loadu_ps(KVALUES_IQ4NL_F32.as_ptr()),
        }
    }
}

/// `best_index_int8(kvalues_iq4nl, x)` of each lane: the number of midpoints `x` is not below,
/// by binary search (`!(x < m)` is the unordered `NLT` compare: NaN goes up every time).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn nearest_x16(t: &Tables, x: __m512) -> __m512i {
    let mut idx = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, t.mid7), _mm512_set1_epi32(8));
    for (table, s) in t.steps.iter().zip([4, 2, 1]) {
        let up = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_permutexvar_ps(idx, *table));
        idx = _mm512_mask_add_epi32(idx, up, idx, _mm512_set1_epi32(s));
    }
    idx
}

/// The search of `quantize_row_iq4_nl_impl` for the 16 sub-blocks whose element j is lane s of
/// `xt[j]`, with weights `w`: each lane's scale (0 for a sub-block below `GROUP_MAX_EPS`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn search_x16(t: &Tables, xt: &[__m512; 32], w: &[__m512; 32]) -> __m512 {
    let zero = _mm512_setzero_ps();
    // The first element of largest magnitude: `if (ax > amax) { amax = ax; max = x; }`.
    let (mut amax, mut max) = (zero, zero);
    for &x in xt {
        let ax = _mm512_abs_ps(x);
        let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax);
        amax = _mm512_mask_mov_ps(amax, larger, ax);
        max = _mm512_mask_mov_ps(max, larger, x);
    }
    // Empty lanes compute on (with infinities and NaN) and are zeroed at the end.
    let empty = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax, _mm512_set1_ps(GROUP_MAX_EPS));
    // sumqx += (w*q)*x, sumq2 += (w*q)*q for the codes of `id * x`.
    let sums = |id: __m512| -> (__m512, __m512) {
        let (mut sumqx, mut sumq2) = (zero, zero);
        for j in 0..32 {
            let q = _mm512_permutexvar_ps(nearest_x16(t, _mm512_mul_ps(id, xt[j])), t.values);
            let wq = _mm512_mul_ps(w[j], q);
            sumqx = _mm512_add_ps(sumqx, _mm512_mul_ps(wq, xt[j]));
            sumq2 = _mm512_add_ps(sumq2, _mm512_mul_ps(wq, q));
        }
        (sumqx, sumq2)
    };
    // d = -max / values[0]; the first codes use id = 1/d.
    let d0 = _mm512_div_ps(_mm512_xor_ps(max, _mm512_set1_ps(-0.0)), _mm512_set1_ps(KVALUES_IQ4NL_F32[0]));
    let (sumqx, sumq2) = sums(_mm512_div_ps(_mm512_set1_ps(1.0), d0));
    // d = sumq2 > 0 ? sumqx/sumq2 : 0; best = d*sumqx.
    let mut d = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(sumq2, zero), _mm512_div_ps(sumqx, sumq2));
    let mut best = _mm512_mul_ps(d, sumqx);
    for itry in -NTRY..=NTRY {
        // id = (itry + values[0]) / max, the numerator the same for every lane.
        let id = _mm512_div_ps(_mm512_set1_ps((itry + KVALUES_IQ4NL[0] as i32) as f32), max);
        let (sumqx, sumq2) = sums(id);
        // if (sumq2 > 0 && sumqx*sumqx > best*sumq2) { d = sumqx/sumq2; best = d*sumqx; }
        let better = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(sumq2, zero)
            & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_mul_ps(sumqx, sumqx), _mm512_mul_ps(best, sumq2));
        d = _mm512_mask_mov_ps(d, better, _mm512_div_ps(sumqx, sumq2));
        best = _mm512_mask_mov_ps(best, better, _mm512_mul_ps(d, sumqx));
    }
    _mm512_maskz_mov_ps(!empty, d)
}

/// The codes of `id * x` for one 32-element sub-block, packed as ggml lays them out: element j in
/// the low nibble of byte j, element j + 16 in its high nibble.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pack_codes(t: &Tables, id: f32, x: &[f32; 32], q4: &mut [u8; 16]) {
    let id = _mm512_set1_ps(id);
    // SAFETY: `x` is 32 readable floats.
    let (lo, hi) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))) };
    let lo = _mm512_cvtepi32_epi8(nearest_x16(t, _mm512_mul_ps(id, lo)));
    let hi = _mm512_cvtepi32_epi8(nearest_x16(t, _mm512_mul_ps(id, hi)));
    // Codes are below 16: shifting 16-bit lanes moves no bit into the neighbouring byte.
    let packed = _mm_or_si128(lo, _mm_slli_epi16::<4>(hi));
    // SAFETY: `q4` is 16 writable bytes.
    unsafe { _mm_storeu_si128(q4.as_mut_ptr().cast(), packed) }
}

/// Element j of each of 16 sub-blocks into lane s of vector j.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn transpose_x32(x: &[[f32; 32]; LANES]) -> [__m512; 32] {
    // SAFETY: every row is 32 readable floats.
    let lo = x.map(|r| unsafe { _mm512_loadu_ps(r.as_ptr()) });
    // SAFETY: as above, floats 16..32.
    let hi = x.map(|r| unsafe { _mm512_loadu_ps(r.as_ptr().add(16)) });
    let (lo, hi) = (transpose16(lo), transpose16(hi));
    std::array::from_fn(|j| if j < 16 { lo[j] } else { hi[j - 16] })
}

/// One group's scales: the weights (`x²`, or `qw * sqrt(sigma2 + x²)`) and [`search_x16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn search_group(t: &Tables, x: &[[f32; 32]; LANES], weights: Option<&GroupWeights<LANES>>) -> [f32; LANES] {
    let xt = transpose_x32(x);
    let w: [__m512; 32] = match weights {
        Some(gw) => {
            let qt = transpose_x32(&gw.qw);
            // SAFETY: `sigma2` is 16 readable floats.
            let sigma2 = unsafe { _mm512_loadu_ps(gw.sigma2.as_ptr()) };
            std::array::from_fn(|j| {
                _mm512_mul_ps(qt[j], _mm512_sqrt_ps(_mm512_add_ps(sigma2, _mm512_mul_ps(xt[j], xt[j]))))
            })
        }
        None => xt.map(|x| _mm512_mul_ps(x, x)),
    };
    let mut scales = [0f32; LANES];
    // SAFETY: `scales` is 16 writable floats.
    unsafe { _mm512_storeu_ps(scales.as_mut_ptr(), search_x16(t, &xt, &w)) };
    scales
}

/// Both formats through the AVX2 kernels' group loop, 16 sub-blocks per group.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_iq4_avx512<B: Iq4Block>(src: &[f32], dst: &mut [u8], imatrix: Option<(usize, &[f32])>) {
    let t = tables();
    quantize_groups::<B, LANES>(
        src,
        dst,
        imatrix,
        |x, w| search_group(&t, x, w),
        |id, x, q4| pack_codes(&t, id, x, q4),
    );
}

// ---- TQ1_0, TQ2_0, MXFP4 ------------------------------------------------------------------------
//
// These quantizers have no search: one scale per block (the largest |x|, or MXFP4's power of two
// from `log2f`), then each element's code on its own. The kernels vectorise along the elements,
// each lane doing the scalar code's operations; blocks with a NaN or an infinity, and ternary
// blocks whose inverse scale overflows (a largest |x| below 2^-128), take the scalar reference.

/// Whether any lane of `v` is NaN or ±Inf.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn non_finite_mask(v: __m512) -> __mmask16 {
    // fpclass categories: 0x01 QNaN, 0x08 +Inf, 0x10 -Inf, 0x80 SNaN.
    _mm512_fpclass_ps_mask::<0x99>(v)
}

/// `lroundf(v) + 1` of ggml's ternary quantizers for |v| <= 1 (up to rounding): 0, 1 or 2.
/// Ties go away from zero, so the code is 2 from 0.5 up and 0 from -0.5 down.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn trit_x16(v: __m512) -> __m512i {
    let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, _mm512_set1_ps(0.5));
    let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, _mm512_set1_ps(-0.5));
    let one = _mm512_set1_epi32(1);
    _mm512_mask_sub_epi32(_mm512_mask_add_epi32(one, up, one, one), down, one, one)
}

/// A ternary block's 16 vectors of codes (`lroundf(x * id) + 1`) and fp16 scale, or `None` when
/// the block must take the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn ternary_codes(x: &[f32; 256]) -> Option<([__m512i; 16], [u8; 2])> {
    // SAFETY: `x` is 256 readable floats, read 16 at a time.
    let v: [__m512; 16] = std::array::from_fn(|k| unsafe { _mm512_loadu_ps(x.as_ptr().add(16 * k)) });
    if v.iter().fold(0, |m, &v| m | non_finite_mask(v)) != 0 {
        return None;
    }
    // `MAX(amax, fabsf(x))` over finite values is the largest |x|, whatever the order.
    let amax = v.iter().fold(_mm512_setzero_ps(), |m, &v| _mm512_max_ps(m, _mm512_abs_ps(v)));
    let d = _mm512_reduce_max_ps(amax);
    let id = inverse_or_zero(d);
    if !id.is_finite() {
        return None;
    }
    let idv = _mm512_set1_ps(id);
    Some((v.map(|v| trit_x16(_mm512_mul_ps(v, idv))), fp32_to_fp16(d).to_le_bytes()))
}

/// `quantize_row_tq2_0_ref`: byte `j*32 + m` holds the codes of elements `j*128 + n*32 + m` at bits
/// `2n..2n+2`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_tq2_0_avx512(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockTq2_0] = bytemuck::cast_slice_mut(dst);
    let (xs, rest) = src.as_chunks::<256>();
    assert!(rest.is_empty() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        let Some((t, d)) = ternary_codes(x) else {
            BlockTq2_0::quantize_block(x, y);
            continue;
        };
        y.d = d;
        // Vector k holds elements 16k..16k+16: element j*128 + n*32 + m is vector 8j + 2n + m/16.
        for (k, out) in y.qs.chunks_exact_mut(16).enumerate() {
            let (j, h) = (k / 2, k % 2);
            let at = |n: usize| t[8 * j + 2 * n + h];
            let q = _mm512_or_si512(
                _mm512_or_si512(at(0), _mm512_slli_epi32::<2>(at(1))),
                _mm512_or_si512(_mm512_slli_epi32::<4>(at(2)), _mm512_slli_epi32::<6>(at(3))),
            );
            let out: &mut [u8; 16] = out.try_into().expect("16 bytes");
            // SAFETY: `out` is 16 writable bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(q)) }
        }
    }
}

/// `((uint16_t)q * 256 + 242) / 243` of 5 trits `q` (at most 242): the division in floats is
/// exact here (a quotient just below an integer is at least 1/243 below it, far more than an ulp).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn ceil_div_243_x16(q: __m512i) -> __m128i {
    let n = _mm512_add_epi32(_mm512_slli_epi32::<8>(q), _mm512_set1_epi32(242));
    _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_div_ps(_mm512_cvtepi32_ps(n), _mm512_set1_ps(243.0))))
}

/// `q = q*3 + t` over the trits `ts`, the first the most significant (no wrap: at most 242).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn base3_x16(ts: impl Iterator<Item = __m512i>) -> __m512i {
    ts.fold(_mm512_setzero_si512(), |q, t| _mm512_add_epi32(_mm512_mullo_epi32(q, _mm512_set1_epi32(3)), t))
}

/// `quantize_row_tq1_0_ref`: 5 trits per byte (elements m + 32n of 0..160 in bytes 0..32, 160 + m +
/// 16n in bytes 32..48), 4 per byte of `qh` (elements 240 + j + 4m), each scaled to a fraction of
/// 243.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_tq1_0_avx512(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockTq1_0] = bytemuck::cast_slice_mut(dst);
    let (xs, rest) = src.as_chunks::<256>();
    assert!(rest.is_empty() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        let Some((t, d)) = ternary_codes(x) else {
            BlockTq1_0::quantize_block(x, y);
            continue;
        };
        y.d = d;
        // Bytes 16h..16h+16 (h = 0, 1): element 32n + 16h + m is vector 2n + h; bytes 32..48:
        // element 160 + 16n + m is vector 10 + n.
        let mut bytes = [_mm_setzero_si128(); 3];
        for (h, b) in bytes.iter_mut().enumerate().take(2) {
            *b = ceil_div_243_x16(base3_x16((0..5).map(|n| t[2 * n + h])));
        }
        bytes[2] = ceil_div_243_x16(base3_x16((0..5).map(|n| t[10 + n])));
        for (out, b) in y.qs.chunks_exact_mut(16).zip(bytes) {
            let out: &mut [u8; 16] = out.try_into().expect("16 bytes");
            // SAFETY: `out` is 16 writable bytes.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), b) }
        }
        // qh: the codes of elements 240..256 are vector 15.
        let mut last = [0i32; 16];
        // SAFETY: `last` is 16 writable ints.
        unsafe { _mm512_storeu_si512(last.as_mut_ptr().cast(), t[15]) };
        y.qh = tq1_0_qh(&last);
    }
}

/// `quantize_row_mxfp4_ref`: the block's exponent by the scalar code (libm `log2f`, as ggml), then
/// each element's code: the first of the 16 table values `kvalues_mxfp4[i] * d` nearest to it.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_mxfp4_avx512(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockMxfp4] = bytemuck::cast_slice_mut(dst);
    let (xs, rest) = src.as_chunks::<32>();
    assert!(rest.is_empty() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        // SAFETY: `x` is 32 readable floats.
        let (lo, hi) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))) };
        if non_finite_mask(lo) | non_finite_mask(hi) != 0 {
            BlockMxfp4::quantize_block(x, y);
            continue;
        }
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        y.e = mxfp4_exponent(amax);
        let d = e8m0_to_fp32_half(y.e);
        // err = |kv*d - x| (kv*d is exact: a small integer times a power of two), updated on a
        // strictly smaller error, table order.
        let code = |v: __m512| -> __m128i {
            let mut best = _mm512_setzero_si512();
            let mut best_err = _mm512_abs_ps(_mm512_sub_ps(_mm512_set1_ps(KVALUES_MXFP4[0] as f32 * d), v));
            for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
                let err = _mm512_abs_ps(_mm512_sub_ps(_mm512_set1_ps(k as f32 * d), v));
                let better = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(err, best_err);
                best = _mm512_mask_mov_epi32(best, better, _mm512_set1_epi32(i as i32));
                best_err = _mm512_mask_mov_ps(best_err, better, err);
            }
            _mm512_cvtepi32_epi8(best)
        };
        let packed = _mm_or_si128(code(lo), _mm_slli_epi16::<4>(code(hi)));
        // SAFETY: `qs` is 16 writable bytes.
        unsafe { _mm_storeu_si128(y.qs.as_mut_ptr().cast(), packed) }
    }
}
