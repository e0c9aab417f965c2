//! AVX2 quantize kernels for IQ4_NL and IQ4_XS, plain and importance-weighted: the AVX-512
//! kernels' method (see `avx512/iquants.rs`) with 8 lanes, one 32-element sub-block each, so a
//! search covers 8 IQ4_NL blocks or one IQ4_XS super-block. The group loop is shared with AVX-512
//! ([`quantize_groups`]). TQ1_0, TQ2_0 and MXFP4 kernels follow at the end.
//!
//! Lane s runs sub-block s's scale search of `quantize_row_iq4_nl_impl` with exactly the scalar
//! code's float operations in its order (transposed inputs, no FMA, blends under the scalar
//! comparisons). The nearest-entry search is the same count of midpoints not above `x`, as a
//! 4-step binary search whose 8-entry `vpermps` tables are indexed by `idx / 2`, and the table
//! value is one of two 8-entry lookups chosen by bit 3 of the index. Groups with a NaN or an
//! infinity (or any, when the imatrix has one) take the scalar reference.

use std::arch::x86_64::*;

use super::safe_wrappers;
use crate::formats::float::fp32_to_fp16;
use crate::formats::iquants::iq4::{iq4_xs_sub_scales, IQ4NL_MIDPOINTS, KVALUES_IQ4NL, KVALUES_IQ4NL_F32, QK4_NL};
use crate::formats::iquants::{BlockIq4Nl, BlockIq4Xs};
use crate::formats::legacy::inverse_or_zero;
use crate::formats::mxfp4::{e8m0_to_fp32_half, mxfp4_exponent, BlockMxfp4, KVALUES_MXFP4};
use crate::formats::ternary::{BlockTq1_0, BlockTq2_0};
use crate::formats::BlockFormat;
use crate::simd::x86_64::any_non_finite_avx2;

safe_wrappers! {
    quantize_iq4_nl(src: &[f32], dst: &mut [u8]) => quantize_iq4_nl_avx2;
    quantize_iq4_xs(src: &[f32], dst: &mut [u8]) => quantize_iq4_xs_avx2;
    quantize_tq1_0(src: &[f32], dst: &mut [u8]) => quantize_tq1_0_avx2;
    quantize_tq2_0(src: &[f32], dst: &mut [u8]) => quantize_tq2_0_avx2;
    quantize_mxfp4(src: &[f32], dst: &mut [u8]) => quantize_mxfp4_avx2;
}

pub(super) fn quantize_iq4_nl_imatrix(src: &[f32], dst: &mut [u8], n_per_row: usize, qw: &[f32]) {
    // SAFETY: only reachable through the table `avx2::kernels` returns for an `Avx2` token, which
    // exists only after run-time detection found AVX2, FMA and F16C, all the kernel enables.
    unsafe { quantize_iq4_avx2::<BlockIq4Nl>(src, dst, Some((n_per_row, qw))) }
}

pub(super) fn quantize_iq4_xs_imatrix(src: &[f32], dst: &mut [u8], n_per_row: usize, qw: &[f32]) {
    // SAFETY: as in `quantize_iq4_nl_imatrix`.
    unsafe { quantize_iq4_avx2::<BlockIq4Xs>(src, dst, Some((n_per_row, qw))) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_iq4_nl_avx2(src: &[f32], dst: &mut [u8]) {
    quantize_iq4_avx2::<BlockIq4Nl>(src, dst, None);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_iq4_xs_avx2(src: &[f32], dst: &mut [u8]) {
    quantize_iq4_avx2::<BlockIq4Xs>(src, dst, None);
}

/// Sub-blocks per search: one per lane.
const LANES: usize = 8;
/// ggml's `GROUP_MAX_EPS` of the IQ4 quantizer: a sub-block whose largest |x| is below gets 0.
const GROUP_MAX_EPS: f32 = 1e-15;
/// The `ntry` of `quantize_iq4_nl` / `quantize_iq4_xs`.
const NTRY: i32 = 7;

/// `T[s][k] = midpoint[min(2k + s - 1, 14)]`: at the binary search's step of width `s` (4, 2, 1),
/// an index `i` so far (a multiple of 2s) compares against the midpoint `i + s - 1`, looked up at
/// `k = i / 2`.
const fn step_table(s: usize) -> [f32; 8] {
    let mut t = [0.0f32; 8];
    let mut k = 0;
    while k < 8 {
        let m = if 2 * k + s - 1 < 14 { 2 * k + s - 1 } else { 14 };
        t[k] = IQ4NL_MIDPOINTS[m];
        k += 1;
    }
    t
}
const STEP_TABLES: [[f32; 8]; 3] = [step_table(4), step_table(2), step_table(1)];

/// The lookup tables of [`nearest_x8`], loaded once per kernel call.
#[derive(Clone, Copy)]
struct Tables {
    mid7: __m256,
    steps: [__m256; 3],
    values_lo: __m256,
    values_hi: __m256,
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn tables() -> Tables {
    // SAFETY: each table is 8 (or 16) readable floats.
    unsafe {
        Tables {
            mid7: _mm256_set1_ps(IQ4NL_MIDPOINTS[7]),
            steps: STEP_TABLES.map(|t| _mm256_loadu_ps(t.as_ptr())),
            values_lo: _mm256_loadu_ps(KVALUES_IQ4NL_F32.as_ptr()),
            values_hi: _mm256_loadu_ps(KVALUES_IQ4NL_F32.as_ptr().add(8)),
        }
    }
}

/// `best_index_int8(kvalues_iq4nl, x)` of each lane: the number of midpoints `x` is not below,
/// by binary search (`!(x < m)` is the unordered `NLT` compare: NaN goes up every time).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nearest_x8(t: &Tables, x: __m256) -> __m256i {
    let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_NLT_UQ>(x, t.mid7));
    let mut idx = _mm256_and_si256(up, _mm256_set1_epi32(8));
    for (table, s) in t.steps.iter().zip([4, 2, 1]) {
        let m = _mm256_permutevar8x32_ps(*table, _mm256_srli_epi32::<1>(idx));
        let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_NLT_UQ>(x, m));
        idx = _mm256_add_epi32(idx, _mm256_and_si256(up, _mm256_set1_epi32(s)));
    }
    idx
}

/// `kvalues_iq4nl[idx]` of each lane: the low or high half of the table by bit 3 of the index
/// (moved to the sign bit, which `vblendvps` reads); `vpermps` reads the low 3 bits.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn value_x8(t: &Tables, idx: __m256i) -> __m256 {
    let lo = _mm256_permutevar8x32_ps(t.values_lo, idx);
    let hi = _mm256_permutevar8x32_ps(t.values_hi, idx);
    _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)))
}

/// The search of `quantize_row_iq4_nl_impl` for the 8 sub-blocks whose element j is lane s of
/// `xt[j]`, with weights `w`: each lane's scale (0 for a sub-block below `GROUP_MAX_EPS`).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn search_x8(t: &Tables, xt: &[__m256; 32], w: &[__m256; 32]) -> __m256 {
    let zero = _mm256_setzero_ps();
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    // The first element of largest magnitude: `if (ax > amax) { amax = ax; max = x; }`.
    let (mut amax, mut max) = (zero, zero);
    for &x in xt {
        let ax = _mm256_and_ps(x, abs_mask);
        let larger = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax);
        amax = _mm256_blendv_ps(amax, ax, larger);
        max = _mm256_blendv_ps(max, x, larger);
    }
    // Empty lanes compute on (with infinities and NaN) and are zeroed at the end.
    let empty = _mm256_cmp_ps::<_CMP_LT_OQ>(amax, _mm256_set1_ps(GROUP_MAX_EPS));
    // sumqx += (w*q)*x, sumq2 += (w*q)*q for the codes of `id * x`.
    let sums = |id: __m256| -> (__m256, __m256) {
        let (mut sumqx, mut sumq2) = (zero, zero);
        for j in 0..32 {
            let q = value_x8(t, nearest_x8(t, _mm256_mul_ps(id, xt[j])));
            let wq = _mm256_mul_ps(w[j], q);
            sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, xt[j]));
            sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
        }
        (sumqx, sumq2)
    };
    // d = -max / values[0]; the first codes use id = 1/d.
    let d0 = _mm256_div_ps(_mm256_xor_ps(max, _mm256_set1_ps(-0.0)), _mm256_set1_ps(KVALUES_IQ4NL_F32[0]));
    let (sumqx, sumq2) = sums(_mm256_div_ps(_mm256_set1_ps(1.0), d0));
    // d = sumq2 > 0 ? sumqx/sumq2 : 0; best = d*sumqx.
    let mut d = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(sumq2, zero), _mm256_div_ps(sumqx, sumq2));
    let mut best = _mm256_mul_ps(d, sumqx);
    for itry in -NTRY..=NTRY {
        // id = (itry + values[0]) / max, the numerator the same for every lane.
        let id = _mm256_div_ps(_mm256_set1_ps((itry + KVALUES_IQ4NL[0] as i32) as f32), max);
        let (sumqx, sumq2) = sums(id);
        // if (sumq2 > 0 && sumqx*sumqx > best*sumq2) { d = sumqx/sumq2; best = d*sumqx; }
        let better = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(sumq2, zero),
            _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2)),
        );
        d = _mm256_blendv_ps(d, _mm256_div_ps(sumqx, sumq2), better);
        best = _mm256_blendv_ps(best, _mm256_mul_ps(d, sumqx), better);
    }
    _mm256_andnot_ps(empty, d)
}

/// The codes of `id * x` for one 32-element sub-block, packed as ggml lays them out: element j in
/// the low nibble of byte j, element j + 16 in its high nibble.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack_codes(t: &Tables, id: f32, x: &[f32; 32], q4: &mut [u8; 16]) {
    let id = _mm256_set1_ps(id);
    // SAFETY: `x` is 32 readable floats, read 8 at offsets 0, 8, 16, 24.
    let code = |k: usize| nearest_x8(t, _mm256_mul_ps(id, unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) }));
    // SAFETY: `q4` is 16 writable bytes.
    unsafe { _mm_storeu_si128(q4.as_mut_ptr().cast(), pack_nibbles([code(0), code(1), code(2), code(3)])) }
}

/// 32 codes below 16 (elements 0..32, 8 per vector) as ggml's 16 bytes: element j in the low
/// nibble of byte j, element j + 16 in its high nibble.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack_nibbles(c: [__m256i; 4]) -> __m128i {
    let a = _mm256_or_si256(c[0], _mm256_slli_epi32::<4>(c[2]));
    let b = _mm256_or_si256(c[1], _mm256_slli_epi32::<4>(c[3]));
    // 16 bytes in order: pack to 16 bits (per 128-bit half), restore the order, pack to 8 bits.
    let h = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(a, b));
    _mm_packus_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h))
}

/// The importance weights of one group for the search: each sub-block's imatrix entries and each
/// lane's `sigma2 = 2 * mean(x²)` over its (super-)block.
pub(in crate::simd::x86_64) struct GroupWeights<const N: usize> {
    pub qw: [[f32; 32]; N],
    pub sigma2: [f32; N],
}

/// What differs between the two formats: how a block is finished from its sub-blocks' scales.
pub(in crate::simd::x86_64) trait Iq4Block: BlockFormat {
    /// Writes the block of sub-blocks `x` (1 or 8) whose searched scales are `scales`, the codes
    /// of `id * x` for each sub-block through `pack(id, x, codes)`.
    fn finish(x: &[[f32; 32]], scales: &[f32], y: &mut Self, pack: &mut impl FnMut(f32, &[f32; 32], &mut [u8; 16]));
}

impl Iq4Block for BlockIq4Nl {
    /// The scale as is (fp16), codes re-picked with `1/scale` (0 for a zero scale).
    #[inline(always)]
    fn finish(x: &[[f32; 32]], scales: &[f32], y: &mut Self, pack: &mut impl FnMut(f32, &[f32; 32], &mut [u8; 16])) {
        y.d = fp32_to_fp16(scales[0]).to_le_bytes();
        let id = if scales[0] != 0.0 { 1.0 / scales[0] } else { 0.0 };
        pack(id, &x[0], &mut y.qs);
    }
}

impl Iq4Block for BlockIq4Xs {
    /// The scalar epilogue's sub-scales, codes re-picked with each sub-block's `1/(d*l)`.
    #[inline(always)]
    fn finish(x: &[[f32; 32]], scales: &[f32], y: &mut Self, pack: &mut impl FnMut(f32, &[f32; 32], &mut [u8; 16])) {
        let scales: &[f32; 8] = scales.try_into().expect("8 sub-blocks");
        let idl = iq4_xs_sub_scales(scales, &mut y.d, &mut y.scales_h, &mut y.scales_l);
        let (q4, _) = y.qs.as_chunks_mut::<16>();
        for ((q4, &idl), x) in q4.iter_mut().zip(&idl).zip(x) {
            pack(idl, x, q4);
        }
    }
}

/// The loop both levels' kernels share, for both formats, with (`imatrix = Some((n_per_row,
/// qw))`) or without importance weights: groups of `N` sub-blocks (zero-padded at the end of the
/// input) through `search`, which returns each lane's scale, then [`Iq4Block::finish`]. Groups
/// with NaN or an infinity, and everything when the imatrix has one, take the scalar reference.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn quantize_groups<B: Iq4Block, const N: usize>(
    src: &[f32],
    dst: &mut [u8],
    imatrix: Option<(usize, &[f32])>,
    mut search: impl FnMut(&[[f32; 32]; N], Option<&GroupWeights<N>>) -> [f32; N],
    mut pack: impl FnMut(f32, &[f32; 32], &mut [u8; 16]),
) {
    let blocks: &mut [B] = bytemuck::cast_slice_mut(dst);
    let (subs, rest) = src.as_chunks::<QK4_NL>();
    assert!(rest.is_empty() && subs.len() * QK4_NL == blocks.len() * B::ELEMS, "partial blocks");
    if let Some((n_per_row, qw)) = imatrix {
        assert!(
            qw.len() == n_per_row && n_per_row.is_multiple_of(B::ELEMS) && src.len().is_multiple_of(n_per_row),
            "partial rows"
        );
        if any_non_finite_avx2(qw) {
            // Weights with NaN or infinities: the scalar reference, which defines what they do.
            for (x, y) in src.chunks_exact(n_per_row).zip(blocks.chunks_exact_mut(n_per_row / B::ELEMS)) {
                B::quantize_row_imatrix(x, y, qw);
            }
            return;
        }
    }
    let subs_per_block = B::ELEMS / QK4_NL;
    for (g, (xs, ys)) in subs.chunks(N).zip(blocks.chunks_mut(N / subs_per_block)).enumerate() {
        // The column of sub-block k of this group within its row, for the imatrix.
        let col = |k: usize, n_per_row: usize| (g * N + k) * QK4_NL % n_per_row;
        if any_non_finite_avx2(xs.as_flattened()) {
            for (k, (x, y)) in xs.chunks_exact(subs_per_block).zip(ys.iter_mut()).enumerate() {
                let x = x.as_flattened();
                match imatrix {
                    Some((n, qw)) => {
                        let c = col(k * subs_per_block, n);
                        B::quantize_row_imatrix(x, std::slice::from_mut(y), &qw[c..c + B::ELEMS]);
                    }
                    None => B::quantize_block(x, y),
                }
            }
            continue;
        }
        let mut x = [[0f32; 32]; N];
        x[..xs.len()].copy_from_slice(xs);
        let weights = imatrix.map(|(n, qw)| {
            let mut w = GroupWeights { qw: [[0f32; 32]; N], sigma2: [0f32; N] };
            for (k, q) in w.qw.iter_mut().enumerate().take(xs.len()) {
                let c = col(k, n);
                q.copy_from_slice(&qw[c..c + QK4_NL]);
            }
            // The scalar sum over the (super-)block in order, then * (2 / its size).
            for (sb, s) in x.chunks_exact(subs_per_block).zip(w.sigma2.chunks_exact_mut(subs_per_block)) {
                let mut sum = 0.0f32;
                for &v in sb.as_flattened() {
                    sum += v * v;
                }
                s.fill(sum * (2.0 / B::ELEMS as f32));
            }
            w
        });
        let scales = search(&x, weights.as_ref());
        for ((x, s), y) in xs.chunks_exact(subs_per_block).zip(scales.chunks_exact(subs_per_block)).zip(ys) {
            B::finish(x, s, y, &mut pack);
        }
    }
}

/// Element j of each of 8 sub-blocks into lane s of vector j.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn transpose_x32(x: &[[f32; 32]; LANES]) -> [__m256; 32] {
    let idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
    let base = x.as_flattened().as_ptr();
    // SAFETY: lane s reads x[s][j], s < 8 and j < 32, inside the 256 floats of `x`.
    std::array::from_fn(|j| unsafe { _mm256_i32gather_ps::<4>(base.add(j), idx) })
}

/// One group's scales: the weights (`x²`, or `qw * sqrt(sigma2 + x²)`) and [`search_x8`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn search_group(t: &Tables, x: &[[f32; 32]; LANES], weights: Option<&GroupWeights<LANES>>) -> [f32; LANES] {
    let xt = transpose_x32(x);
    let w: [__m256; 32] = match weights {
        Some(gw) => {
            let qt = transpose_x32(&gw.qw);
            // SAFETY: `sigma2` is 8 readable floats.
            let sigma2 = unsafe { _mm256_loadu_ps(gw.sigma2.as_ptr()) };
            std::array::from_fn(|j| {
                _mm256_mul_ps(qt[j], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xt[j], xt[j]))))
            })
        }
        None => xt.map(|x| _mm256_mul_ps(x, x)),
    };
    let mut scales = [0f32; LANES];
    // SAFETY: `scales` is 8 writable floats.
    unsafe { _mm256_storeu_ps(scales.as_mut_ptr(), search_x8(t, &xt, &w)) };
    scales
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_iq4_avx2<B: Iq4Block>(src: &[f32], dst: &mut [u8], imatrix: Option<(usize, &[f32])>) {
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
// As at AVX-512 (see the end of `avx512/iquants.rs`): along the elements, one scale per block,
// NaN/Inf blocks and ternary blocks whose inverse scale overflows through the scalar reference.

/// The largest lane of `v` (NaN-free input).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn max_lane(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// 32 bytes in order from the low bytes of 4 vectors of 8 values in 0..=255.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack_u8x32(v: [__m256i; 4]) -> __m256i {
    let b = _mm256_packus_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    // dwords are v0[0..4], v1[0..4], v2[0..4], v3[0..4], v0[4..8], v1[4..8], ...
    _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// A ternary block's 32 vectors of codes (`lroundf(x * id) + 1`: 2 from 0.5 up, 0 from -0.5
/// down, ties away from zero) and fp16 scale, or `None` for the scalar reference.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn ternary_codes(x: &[f32; 256]) -> Option<([__m256i; 32], [u8; 2])> {
    if any_non_finite_avx2(x) {
        return None;
    }
    // SAFETY: `x` is 256 readable floats, read 8 at a time.
    let v: [__m256; 32] = std::array::from_fn(|k| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) });
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    // `MAX(amax, fabsf(x))` over finite values is the largest |x|, whatever the order.
    let d = max_lane(v.iter().fold(_mm256_setzero_ps(), |m, &v| _mm256_max_ps(m, _mm256_and_ps(v, abs_mask))));
    let id = inverse_or_zero(d);
    if !id.is_finite() {
        return None;
    }
    let idv = _mm256_set1_ps(id);
    let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_epi32(1));
    let trit = |v: __m256| -> __m256i {
        let v = _mm256_mul_ps(v, idv);
        // masks are -1: 1 - up + down
        let up = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(v, half));
        let down = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(v, _mm256_xor_ps(half, _mm256_set1_ps(-0.0))));
        _mm256_add_epi32(_mm256_sub_epi32(one, up), down)
    };
    Some((v.map(trit), fp32_to_fp16(d).to_le_bytes()))
}

/// `quantize_row_tq2_0_ref`: byte `j*32 + m` holds the codes of elements `j*128 + n*32 + m` at bits
/// `2n..2n+2`.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_tq2_0_avx2(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockTq2_0] = bytemuck::cast_slice_mut(dst);
    let (xs, rest) = src.as_chunks::<256>();
    assert!(rest.is_empty() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        let Some((t, d)) = ternary_codes(x) else {
            BlockTq2_0::quantize_block(x, y);
            continue;
        };
        y.d = d;
        // Vector k holds elements 8k..8k+8: element j*128 + n*32 + m is vector 16j + 4n + m/8.
        for (j, out) in y.qs.chunks_exact_mut(32).enumerate() {
            let q: [__m256i; 4] = std::array::from_fn(|c| {
                let at = |n: usize| t[16 * j + 4 * n + c];
                _mm256_or_si256(
                    _mm256_or_si256(at(0), _mm256_slli_epi32::<2>(at(1))),
                    _mm256_or_si256(_mm256_slli_epi32::<4>(at(2)), _mm256_slli_epi32::<6>(at(3))),
                )
            });
            // SAFETY: `out` is 32 writable bytes.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), pack_u8x32(q)) }
        }
    }
}

/// `((uint16_t)q * 256 + 242) / 243` of 5 trits `q` (at most 242); the division in floats is
/// exact here (a quotient just below an integer is at least 1/243 below it, far more than an ulp).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn ceil_div_243_x8(q: __m256i) -> __m256i {
    let n = _mm256_add_epi32(_mm256_slli_epi32::<8>(q), _mm256_set1_epi32(242));
    _mm256_cvttps_epi32(_mm256_div_ps(_mm256_cvtepi32_ps(n), _mm256_set1_ps(243.0)))
}

/// `q = q*3 + t` over the trits `ts`, the first the most significant (no wrap: at most 242).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn base3_x8(ts: impl Iterator<Item = __m256i>) -> __m256i {
    ts.fold(_mm256_setzero_si256(), |q, t| _mm256_add_epi32(_mm256_add_epi32(q, _mm256_add_epi32(q, q)), t))
}

/// TQ1_0's last 4 bytes from the codes of its last 16 elements: byte j holds elements 240 + j + 4m
/// (m = 0..4, the first the most significant trit), times 3 once more, as a fraction of 243.
pub(in crate::simd::x86_64) fn tq1_0_qh(codes: &[i32; 16]) -> [u8; 4] {
    std::array::from_fn(|j| {
        let q = (0..4).fold(0u32, |q, m| q * 3 + codes[j + 4 * m] as u32) * 3;
        (q * 256).div_ceil(243) as u8
    })
}

/// `quantize_row_tq1_0_ref`: 5 trits per byte (elements m + 32n of 0..160 in bytes 0..32, 160 + m +
/// 16n in bytes 32..48), 4 per byte of `qh` (elements 240 + j + 4m), each scaled to a fraction of
/// 243.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_tq1_0_avx2(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockTq1_0] = bytemuck::cast_slice_mut(dst);
    let (xs, rest) = src.as_chunks::<256>();
    assert!(rest.is_empty() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        let Some((t, d)) = ternary_codes(x) else {
            BlockTq1_0::quantize_block(x, y);
            continue;
        };
        y.d = d;
        // Bytes 0..32: element 32n + m is vector 4n + m/8. Bytes 32..48: element 160 + 16n + m is
        // vector 20 + 2n + m/8.
        let first = pack_u8x32(std::array::from_fn(|c| ceil_div_243_x8(base3_x8((0..5).map(|n| t[4 * n + c])))));
        let second = pack_u8x32(std::array::from_fn(|c| {
            if c < 2 {
                ceil_div_243_x8(base3_x8((0..5).map(|n| t[20 + 2 * n + c])))
            } else {
                _mm256_setzero_si256()
            }
        }));
        // SAFETY: `qs` is 48 writable bytes: 32 at 0, 16 at 32.
        unsafe {
            _mm256_storeu_si256(y.qs.as_mut_ptr().cast(), first);
            _mm_storeu_si128(y.qs.as_mut_ptr().add(32).cast(), _mm256_castsi256_si128(second));
        }
        // qh: the codes of elements 240..256 are vectors 30 and 31.
        let mut last = [0i32; 16];
        // SAFETY: `last` is 16 writable ints.
        unsafe {
            _mm256_storeu_si256(last.as_mut_ptr().cast(), t[30]);
            _mm256_storeu_si256(last.as_mut_ptr().add(8).cast(), t[31]);
        }
        y.qh = tq1_0_qh(&last);
    }
}

/// `quantize_row_mxfp4_ref`: the block's exponent by the scalar code (libm `log2f`, as ggml), then
/// each element's code: the first of the 16 table values `kvalues_mxfp4[i] * d` nearest to it.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_mxfp4_avx2(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockMxfp4] = bytemuck::cast_slice_mut(dst);
    let (xs, rest) = src.as_chunks::<32>();
    assert!(rest.is_empty() && xs.len() == blocks.len(), "partial blocks");
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    for (x, y) in xs.iter().zip(blocks) {
        if any_non_finite_avx2(x) {
            BlockMxfp4::quantize_block(x, y);
            continue;
        }
        // SAFETY: `x` is 32 readable floats, read 8 at a time.
        let v: [__m256; 4] = std::array::from_fn(|k| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) });
        let amax = max_lane(v.iter().fold(_mm256_setzero_ps(), |m, &v| _mm256_max_ps(m, _mm256_and_ps(v, abs_mask))));
        y.e = mxfp4_exponent(amax);
        let d = e8m0_to_fp32_half(y.e);
        // err = |kv*d - x| (kv*d is exact: a small integer times a power of two), updated on a
        // strictly smaller error, table order.
        let code = |v: __m256| -> __m256i {
            let err_of = |k: i8| _mm256_and_ps(_mm256_sub_ps(_mm256_set1_ps(k as f32 * d), v), abs_mask);
            let mut best = _mm256_setzero_si256();
            let mut best_err = err_of(KVALUES_MXFP4[0]);
            for (i, &k) in KVALUES_MXFP4.iter().enumerate().skip(1) {
                let err = err_of(k);
                let better = _mm256_cmp_ps::<_CMP_LT_OQ>(err, best_err);
                best = _mm256_blendv_epi8(best, _mm256_set1_epi32(i as i32), _mm256_castps_si256(better));
                best_err = _mm256_blendv_ps(best_err, err, better);
            }
            best
        };
        // SAFETY: `qs` is 16 writable bytes.
        unsafe { _mm_storeu_si128(y.qs.as_mut_ptr().cast(), pack_nibbles(v.map(code))) }
    }
}
