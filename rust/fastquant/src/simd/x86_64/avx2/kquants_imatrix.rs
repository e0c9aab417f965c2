//! AVX2 importance-weighted quantize kernels for Q2_K..Q6_K: the AVX-512 kernels'
//! method (see `avx512/kquants_imatrix.rs`) with 8 lanes, one Q4_K/Q5_K super-block's 8
//! sub-blocks per search (half a Q2_K/Q3_K/Q6_K super-block's 16; Q2_K searches the four halves
//! of two super-blocks together), on the plain AVX2 kernels' lane searches
//! (`kquants.rs`) given the weighted path's weights. The scalar parts both levels share (the
//! block's sigma2, the 6-bit scales by `make_qp_quants`, the shape checks) are here.
//!
//! A row whose imatrix holds a NaN or an infinity goes to the scalar reference whole, and so does
//! a block with a NaN or an infinity in its data.

use std::arch::x86_64::*;

use super::kquants::{
    pack_q4_k, pack_q5_k, quantize_q6_k_block, requantize, search_qkx2_x8, search_qx_x8, transpose_sub_blocks, Qkx2,
};
use super::kquants_low::{requantize_pack_q2_k, requantize_pack_q3_k, store_half, transposed_half, Rows};
use crate::formats::float::fp32_to_fp16;
use crate::formats::kquants::q3_k::{
    set_scales_weighted as set_q3_k_scales_weighted, store_scales as store_q3_k_scales,
};
use crate::formats::kquants::q4_k::MinBlock;
use crate::formats::kquants::search::{pack_scale_min_k4, GROUP_MAX_EPS};
use crate::formats::kquants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use crate::formats::{quantize_rows_imatrix_ref, BlockFormat};
use crate::simd::x86_64::any_non_finite_avx2;
use bytemuck::Zeroable;

/// Defines the safe entry points of the table (`QuantizeImatrixFn`) around `#[target_feature]`
/// kernels.
macro_rules! imatrix_entry_points {
    ($($name:ident => $kernel:ident;)*) => {$(
        pub(super) fn $name(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
            // SAFETY: only reachable through the table `avx2::kernels` returns for an `Avx2`
            // token, which exists only after run-time detection found AVX2, FMA and F16C, all
            // that `$kernel` enables.
            unsafe { $kernel(src, dst, n_per_row, imatrix) }
        }
    )*};
}

imatrix_entry_points! {
    quantize_q4_k_imatrix => quantize_q4_k_imatrix_avx2;
    quantize_q5_k_imatrix => quantize_q5_k_imatrix_avx2;
    quantize_q6_k_imatrix => quantize_q6_k_imatrix_avx2;
    quantize_q2_k_imatrix => quantize_q2_k_imatrix_avx2;
    quantize_q3_k_imatrix => quantize_q3_k_imatrix_avx2;
}

/// `make_qkx3_quants(15, .., -0.9, 0.05, 36, false)` of `quantize_row_q4_K_impl`, run by the
/// `make_qkx2_quants` lanes: the two differ only in the empty-range test (`max <= min` against
/// `max == min`), and after `if (min > 0) min = 0` a NaN-free sub-block's range is never
/// negative, so both tests agree.
const Q4_K: Qkx2 = Qkx2 { nmax: 15, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };
/// `make_qkx3_quants(31, .., -0.9, 0.05, 36, false)` of `quantize_row_q5_K_impl`, as [`Q4_K`].
const Q5_K: Qkx2 = Qkx2 { nmax: 31, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };

/// `make_qkx3_quants(3, .., -0.9, 0.05, 36, false)` of `quantize_row_q2_K_impl`, as [`Q4_K`].
const Q2_K: Qkx2 = Qkx2 { nmax: 3, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };

/// Checks the shapes every imatrix kernel relies on (the codec guarantees them; a violation is a
/// bug, not bad input) and returns the number of blocks per row.
pub(in crate::simd::x86_64) fn blocks_per_row(
    src: &[f32],
    dst_len: usize,
    block_bytes: usize,
    n_per_row: usize,
    imatrix: &[f32],
) -> usize {
    assert!(
        n_per_row > 0
            && n_per_row.is_multiple_of(QK_K)
            && imatrix.len() == n_per_row
            && src.len().is_multiple_of(n_per_row)
            && dst_len == src.len() / QK_K * block_bytes,
        "partial blocks or rows"
    );
    n_per_row / QK_K
}

/// `sigma2 = factor*sum_x2/QK_K` of `quantize_row_q{4,5}_K_impl` (factor 2) and
/// `quantize_row_q2_K_impl` (factor 1, where `1*sum_x2` is exactly `sum_x2`) for every block of a row: one
/// left-to-right sum per block (no lane layout turns it into lane-wise sums), 8 blocks at a time
/// interleaved so that their chains of dependent adds overlap.
#[allow(clippy::needless_range_loop)] // element i of every block in turn: the index is the point
pub(in crate::simd::x86_64) fn row_sigma2(row: &[f32], factor: f32) -> Vec<f32> {
    fn sums<const K: usize>(x: &[f32], factor: f32, out: &mut Vec<f32>) {
        let mut sum = [0.0f32; K];
        for i in 0..QK_K {
            for k in 0..K {
                let v = x[QK_K * k + i];
                sum[k] += v * v;
            }
        }
        out.extend(sum.map(|s| factor * s / QK_K as f32));
    }
    let mut out = Vec::with_capacity(row.len() / QK_K);
    let mut groups = row.chunks_exact(8 * QK_K);
    for g in &mut groups {
        sums::<8>(g, factor, &mut out);
    }
    for b in groups.remainder().chunks_exact(QK_K) {
        sums::<1>(b, factor, &mut out);
    }
    out
}

/// ggml's `nearest_int` on each of 4 lanes: add 1.5 * 2^23, read the low mantissa bits.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nearest_int_x4(v: __m128) -> __m128i {
    let bits = _mm_castps_si128(_mm_add_ps(v, _mm_set1_ps(12_582_912.0)));
    _mm_sub_epi32(_mm_and_si128(bits, _mm_set1_epi32(0x007f_ffff)), _mm_set1_epi32(0x0040_0000))
}

/// `make_qp_quants(nmax, x, L, quant_weights)` of `formats::kquants::search` for 4 groups of `N`
/// at once, lane k running group k with exactly the scalar operations: element i of every group
/// is vector i. Integers stay integers where the scalar code keeps them (the `int` l in the sums,
/// the `uint8_t` L, which wraps, in the coordinate descent). The descent stops when no lane
/// changed a code: a lane whose sweep changed nothing would change nothing in any further sweep
/// (its state is what the sweep started from), so running it on does what the scalar `break`
/// does. Returns the scales and the codes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn make_qp_quants_x4<const N: usize>(
    nmax: i32,
    x: &[[f32; N]; 4],
    qw: &[[f32; N]; 4],
) -> ([f32; 4], [[u8; N]; 4]) {
    let zero = _mm_setzero_ps();
    let xs: [__m128; N] = std::array::from_fn(|i| _mm_setr_ps(x[0][i], x[1][i], x[2][i], x[3][i]));
    let ws: [__m128; N] = std::array::from_fn(|i| _mm_setr_ps(qw[0][i], qw[1][i], qw[2][i], qw[3][i]));
    let nmaxi = _mm_set1_epi32(nmax);
    let nmaxf = nmax as f32;
    let byte = |l: __m128i| _mm_and_si128(l, _mm_set1_epi32(0xff));
    // max = MAX(max, x[i]): `_mm_max_ps(a, b)` is `a > b ? a : b`, C's macro.
    let mut max = zero;
    for &x in &xs {
        max = _mm_max_ps(max, x);
    }
    // max < GROUP_MAX_EPS: all codes 0, scale 0 (applied at the end).
    let empty = _mm_cmplt_ps(max, _mm_set1_ps(GROUP_MAX_EPS));
    let mut iscale = _mm_div_ps(_mm_set1_ps(nmaxf), max);
    let scale = _mm_div_ps(_mm_set1_ps(1.0), iscale);
    // L[i] = nearest_int(iscale * x[i]) into a uint8_t; best_mse from the stored bytes.
    let mut best_mse = zero;
    for i in 0..N {
        let l = _mm_cvtepi32_ps(byte(nearest_int_x4(_mm_mul_ps(iscale, xs[i]))));
        let diff = _mm_sub_ps(xs[i], _mm_mul_ps(scale, l));
        best_mse = _mm_add_ps(best_mse, _mm_mul_ps(_mm_mul_ps(ws[i], diff), diff));
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = _mm_div_ps(_mm_set1_ps(0.1 * is as f32 + nmaxf), max);
        let scale_is = _mm_div_ps(_mm_set1_ps(1.0), iscale_is);
        let mut mse = zero;
        for i in 0..N {
            let l = _mm_cvtepi32_ps(_mm_min_epi32(nearest_int_x4(_mm_mul_ps(iscale_is, xs[i])), nmaxi));
            let diff = _mm_sub_ps(xs[i], _mm_mul_ps(scale_is, l));
            mse = _mm_add_ps(mse, _mm_mul_ps(_mm_mul_ps(ws[i], diff), diff));
        }
        let better = _mm_cmplt_ps(mse, best_mse);
        best_mse = _mm_blendv_ps(best_mse, mse, better);
        iscale = _mm_blendv_ps(iscale, iscale_is, better);
    }
    // The codes of the best scale; the sums use the int l, L keeps its low byte.
    let mut codes = [_mm_setzero_si128(); N];
    let mut sumlx = zero;
    let mut suml2 = zero;
    for i in 0..N {
        let l = _mm_min_epi32(nearest_int_x4(_mm_mul_ps(iscale, xs[i])), nmaxi);
        codes[i] = byte(l);
        let lf = _mm_cvtepi32_ps(l);
        sumlx = _mm_add_ps(sumlx, _mm_mul_ps(_mm_mul_ps(ws[i], xs[i]), lf));
        suml2 = _mm_add_ps(suml2, _mm_mul_ps(_mm_mul_ps(ws[i], lf), lf));
    }
    for _itry in 0..5 {
        let mut changed = _mm_setzero_si128();
        for i in 0..N {
            let (w, x) = (ws[i], xs[i]);
            let li = _mm_cvtepi32_ps(codes[i]);
            let mut slx = _mm_sub_ps(sumlx, _mm_mul_ps(_mm_mul_ps(w, x), li));
            let mut sl2 = _mm_sub_ps(suml2, _mm_mul_ps(_mm_mul_ps(w, li), li));
            let try_it = _mm_and_ps(_mm_cmpgt_ps(slx, zero), _mm_cmpgt_ps(sl2, zero));
            let new_l = _mm_min_epi32(nearest_int_x4(_mm_div_ps(_mm_mul_ps(x, sl2), slx)), nmaxi);
            let differs = _mm_andnot_si128(_mm_cmpeq_epi32(new_l, codes[i]), _mm_set1_epi32(-1));
            let nf = _mm_cvtepi32_ps(new_l);
            slx = _mm_add_ps(slx, _mm_mul_ps(_mm_mul_ps(w, x), nf));
            sl2 = _mm_add_ps(sl2, _mm_mul_ps(_mm_mul_ps(w, nf), nf));
            let gain = _mm_cmpgt_ps(_mm_mul_ps(_mm_mul_ps(slx, slx), suml2), _mm_mul_ps(_mm_mul_ps(sumlx, sumlx), sl2));
            let take = _mm_and_ps(_mm_and_ps(try_it, _mm_castsi128_ps(differs)), gain);
            codes[i] = _mm_castps_si128(_mm_blendv_ps(_mm_castsi128_ps(codes[i]), _mm_castsi128_ps(byte(new_l)), take));
            sumlx = _mm_blendv_ps(sumlx, slx, take);
            suml2 = _mm_blendv_ps(suml2, sl2, take);
            changed = _mm_or_si128(changed, _mm_castps_si128(take));
        }
        if _mm_testz_si128(changed, changed) != 0 {
            break;
        }
    }
    let d = _mm_and_ps(_mm_cmpgt_ps(suml2, zero), _mm_div_ps(sumlx, suml2));
    let mut scales = [0f32; 4];
    // SAFETY: `scales` is 4 writable floats.
    unsafe { _mm_storeu_ps(scales.as_mut_ptr(), _mm_andnot_ps(empty, d)) };
    let mut lanes = [[0i32; 4]; N];
    for (lane, &c) in lanes.iter_mut().zip(&codes) {
        // SAFETY: `lane` is 4 writable ints.
        unsafe { _mm_storeu_si128(lane.as_mut_ptr().cast(), _mm_andnot_si128(_mm_castps_si128(empty), c)) };
    }
    (scales, std::array::from_fn(|k| std::array::from_fn(|i| lanes[i][k] as u8)))
}

/// The end of `min_block_imatrix` of `formats::kquants::q4_k` for up to two blocks, from their
/// searched scales, mins and sub-block weight totals (8 each): `make_qp_quants` for the 6-bit
/// scales and mins (the four runs in the lanes of one vector; Q5_K's extra `MIN(63, ..)` with
/// `clamp63`), the fp16 super-scales, the packed scales. The codes are left for the caller's
/// requantize.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn weighted_scales<const K: usize>(
    scales: [&[f32; 8]; K],
    mins: [&[f32; 8]; K],
    sw: [&[f32; 8]; K],
    clamp63: bool,
) -> [MinBlock; K] {
    const { assert!(K == 1 || K == 2) };
    // Lanes: the scales of block 0, of block 1, the mins of block 0, of block 1.
    let at = |k: usize| k.min(K - 1);
    let x = [*scales[0], *scales[at(1)], *mins[0], *mins[at(1)]];
    let w = [*sw[0], *sw[at(1)], *sw[0], *sw[at(1)]];
    let (d, mut l) = make_qp_quants_x4(63, &x, &w);
    if clamp63 {
        l = l.map(|l| l.map(|v| v.min(63)));
    }
    std::array::from_fn(|k| MinBlock {
        d: fp32_to_fp16(d[k]),
        dmin: fp32_to_fp16(d[2 + k]),
        scales: pack_scale_min_k4(&l[k], &l[2 + k]),
        l: [0; QK_K],
    })
}

/// The scales of `quantize_row_q2_K_impl` for up to two blocks from their 16 searched scales,
/// mins and sub-block weight totals each: `make_qp_quants(15, ..)` of the scales and of the mins
/// (the four runs in the lanes of one vector), the fp16 `d` and `dmin`, and the packed
/// `Ls | Lm << 4`. The codes are left for the caller's requantize.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn q2_k_weighted_scales<const K: usize>(
    scales: [&[f32; 16]; K],
    mins: [&[f32; 16]; K],
    sw: [&[f32; 16]; K],
    y: [&mut BlockQ2K; K],
) {
    const { assert!(K == 1 || K == 2) };
    // Lanes: the scales of block 0, its mins, the scales of block 1, its mins.
    let at = |k: usize| k.min(K - 1);
    let x = [*scales[0], *mins[0], *scales[at(1)], *mins[at(1)]];
    let w = [*sw[0], *sw[0], *sw[at(1)], *sw[at(1)]];
    let (d, l) = make_qp_quants_x4(15, &x, &w);
    for (k, y) in y.into_iter().enumerate() {
        y.d = fp32_to_fp16(d[2 * k]).to_le_bytes();
        y.dmin = fp32_to_fp16(d[2 * k + 1]).to_le_bytes();
        // `Ls[j] | (Lm[j] << 4)` is an int stored into a uint8_t: the low byte.
        y.scales = std::array::from_fn(|j| l[2 * k][j] | (l[2 * k + 1][j] << 4));
    }
}

/// `quantize_row_q{4,5}_K_impl` up to the bit packing for one NaN- and infinity-free block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn min_block(x: &[[f32; 32]; 8], qw: &[[f32; 32]; 8], sigma2: f32, p: Qkx2, clamp63: bool) -> MinBlock {
    let xt = transpose_sub_blocks(x);
    let qt = transpose_sub_blocks(qw);
    let sigma2 = _mm256_set1_ps(sigma2);
    // weights[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i]); sumw = the left-to-right sum of a sub-block's.
    let mut w = [_mm256_setzero_ps(); 32];
    let mut sum_w = _mm256_setzero_ps();
    for i in 0..32 {
        w[i] = _mm256_mul_ps(qt[i], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xt[i], xt[i]))));
        sum_w = _mm256_add_ps(sum_w, w[i]);
    }
    let [(scale, the_min, l)] = search_qkx2_x8(std::array::from_ref(&xt), std::array::from_ref(&w), p);
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut sw = [0f32; 8];
    let mut codes = [[0f32; 8]; 32];
    // SAFETY: each destination is 8 writable floats.
    unsafe {
        _mm256_storeu_ps(scales.as_mut_ptr(), scale);
        _mm256_storeu_ps(mins.as_mut_ptr(), the_min);
        _mm256_storeu_ps(sw.as_mut_ptr(), sum_w);
        for (c, &l) in codes.iter_mut().zip(&l) {
            _mm256_storeu_ps(c.as_mut_ptr(), l);
        }
    }
    let [mut b] = weighted_scales([&scales], [&mins], [&sw], clamp63);
    requantize(x, &mut b, &codes, p.nmax);
    b
}

/// The row loop of both formats: block by block through [`min_block`], blocks with non-finite
/// data and rows with a non-finite imatrix through the scalar reference.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_min_rows<B: BlockFormat>(
    src: &[f32],
    dst: &mut [u8],
    n_per_row: usize,
    imatrix: &[f32],
    p: Qkx2,
    clamp63: bool,
    pack: impl Fn(&MinBlock, &mut B),
) {
    let per_row = blocks_per_row(src, dst.len(), size_of::<B>(), n_per_row, imatrix);
    if any_non_finite_avx2(imatrix) {
        return quantize_rows_imatrix_ref::<B>(src, dst, n_per_row, imatrix);
    }
    let blocks: &mut [B] = bytemuck::cast_slice_mut(dst);
    let (qw, _) = imatrix.as_chunks::<32>();
    let (qw, _) = qw.as_chunks::<8>();
    for (x, y) in src.chunks_exact(n_per_row).zip(blocks.chunks_exact_mut(per_row)) {
        let sigma2 = row_sigma2(x, 2.0);
        let (x, _) = x.as_chunks::<32>();
        let (x, _) = x.as_chunks::<8>();
        for (((x, y), qw), &sigma2) in x.iter().zip(y).zip(qw).zip(&sigma2) {
            if any_non_finite_avx2(x.as_flattened()) {
                B::quantize_row_imatrix(x.as_flattened(), std::slice::from_mut(y), qw.as_flattened());
            } else {
                pack(&min_block(x, qw, sigma2, p, clamp63), y);
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q4_k_imatrix_avx2(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    quantize_min_rows::<BlockQ4K>(src, dst, n_per_row, imatrix, Q4_K, false, |b, y| pack_q4_k(b, y));
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q5_k_imatrix_avx2(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    quantize_min_rows::<BlockQ5K>(src, dst, n_per_row, imatrix, Q5_K, true, |b, y| pack_q5_k(b, y));
}

/// `quantize_row_q6_K_impl` with quant weights: `make_qx_quants(32, .., 1, qw)` per sub-block of
/// 16, lane-wise, with the imatrix itself as the weights.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q6_k_imatrix_avx2(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    let per_row = blocks_per_row(src, dst.len(), size_of::<BlockQ6K>(), n_per_row, imatrix);
    if any_non_finite_avx2(imatrix) {
        return quantize_rows_imatrix_ref::<BlockQ6K>(src, dst, n_per_row, imatrix);
    }
    let blocks: &mut [BlockQ6K] = bytemuck::cast_slice_mut(dst);
    let (qw, _) = imatrix.as_chunks::<16>();
    let (qw, _) = qw.as_chunks::<16>();
    for (x, y) in src.chunks_exact(n_per_row).zip(blocks.chunks_exact_mut(per_row)) {
        let (x, _) = x.as_chunks::<16>();
        let (x, _) = x.as_chunks::<16>();
        for ((x, y), qw) in x.iter().zip(y).zip(qw) {
            if any_non_finite_avx2(x.as_flattened()) {
                BlockQ6K::quantize_row_imatrix(x.as_flattened(), std::slice::from_mut(y), qw.as_flattened());
            } else {
                quantize_q6_k_block(x, Some(qw), y);
            }
        }
    }
}

/// The row loop of the Q2_K and Q3_K kernels (both levels): the shape checks, rows with a
/// non-finite imatrix (`any_non_finite`) through the scalar reference, and per row
/// `blocks(x, qw, sigma2, y)`: the row's super-blocks and the imatrix as 16 sub-blocks of 16 each,
/// and each block's `sigma2 = factor * mean(x^2)`.
#[inline]
pub(in crate::simd::x86_64) fn sub_block_rows<B: BlockFormat>(
    (src, dst, n_per_row, imatrix): (&[f32], &mut [u8], usize, &[f32]),
    factor: f32,
    any_non_finite: impl Fn(&[f32]) -> bool,
    mut blocks: impl FnMut(&[Rows], &[Rows], &[f32], &mut [B]),
) {
    let per_row = blocks_per_row(src, dst.len(), size_of::<B>(), n_per_row, imatrix);
    if any_non_finite(imatrix) {
        return quantize_rows_imatrix_ref::<B>(src, dst, n_per_row, imatrix);
    }
    let out: &mut [B] = bytemuck::cast_slice_mut(dst);
    let (qw, _) = imatrix.as_chunks::<16>();
    let (qw, _) = qw.as_chunks::<16>();
    for (x, y) in src.chunks_exact(n_per_row).zip(out.chunks_exact_mut(per_row)) {
        let sigma2 = row_sigma2(x, factor);
        let (x, _) = x.as_chunks::<16>();
        let (x, _) = x.as_chunks::<16>();
        blocks(x, qw, &sigma2, y);
    }
}

/// `quantize_row_q2_K_impl` for two NaN- and infinity-free super-blocks (or one twice): the
/// weights and the searches of the four halves (8 sub-blocks each) in the lanes, their chains
/// interleaved, then the scales of both in one [`q2_k_weighted_scales`].
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q2_k_block_pair(x: [&Rows; 2], qw: [&Rows; 2], sigma2: [f32; 2], y: [&mut BlockQ2K; 2]) {
    // Half 2k + h: sub-blocks 8h..8h + 8 of block k.
    let xt: [[__m256; 16]; 4] = std::array::from_fn(|i| transposed_half(x[i / 2], i % 2));
    let mut w = [[_mm256_setzero_ps(); 16]; 4];
    let mut sw = [[0f32; 16]; 2];
    for i in 0..4 {
        let qt = transposed_half(qw[i / 2], i % 2);
        let sigma2 = _mm256_set1_ps(sigma2[i / 2]);
        // weight[e] = qw[e] * sqrtf(sigma2 + x[e]*x[e]); sw = the left-to-right sum of a sub-block's.
        let mut sum_w = _mm256_setzero_ps();
        for e in 0..16 {
            w[i][e] = _mm256_mul_ps(qt[e], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xt[i][e], xt[i][e]))));
            sum_w = _mm256_add_ps(sum_w, w[i][e]);
        }
        // SAFETY: `sw[k][8h..8h + 8]` is 8 writable floats for h < 2.
        unsafe { _mm256_storeu_ps(sw[i / 2].as_mut_ptr().add(8 * (i % 2)), sum_w) };
    }
    let mut scales = [[0f32; 16]; 2];
    let mut mins = [[0f32; 16]; 2];
    let mut codes = [[[0i32; 16]; 16]; 2];
    for (i, (scale, the_min, l)) in search_qkx2_x8(&xt, &w, Q2_K).into_iter().enumerate() {
        let (k, h) = (i / 2, i % 2);
        // SAFETY: `scales[k][8h..]` and `mins[k][8h..]` are 8 writable floats for h < 2.
        unsafe {
            _mm256_storeu_ps(scales[k].as_mut_ptr().add(8 * h), scale);
            _mm256_storeu_ps(mins[k].as_mut_ptr().add(8 * h), the_min);
        }
        store_half(&mut codes[k], h, &l.map(|v| _mm256_cvtps_epi32(v)));
    }
    let [y0, y1] = y;
    q2_k_weighted_scales([&scales[0], &scales[1]], [&mins[0], &mins[1]], [&sw[0], &sw[1]], [&mut *y0, &mut *y1]);
    requantize_pack_q2_k(x[0], &codes[0], y0);
    requantize_pack_q2_k(x[1], &codes[1], y1);
}

/// `quantize_row_q2_K_impl` with quant weights: pairs of blocks through [`q2_k_block_pair`] (an
/// odd last block, or one of a pair with NaN or infinity in its data, with a scratch copy of
/// the other), non-finite blocks and rows with a non-finite imatrix through the scalar reference.
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q2_k_imatrix_avx2(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    let args = (src, dst, n_per_row, imatrix);
    sub_block_rows::<BlockQ2K>(
        args,
        1.0,
        |v| any_non_finite_avx2(v),
        |x, qw, sigma2, y| {
            let finite: Vec<bool> = x.iter().map(|b| !any_non_finite_avx2(b.as_flattened())).collect();
            for (k, &finite) in finite.iter().enumerate() {
                if !finite {
                    BlockQ2K::quantize_row_imatrix(
                        x[k].as_flattened(),
                        std::slice::from_mut(&mut y[k]),
                        qw[k].as_flattened(),
                    );
                }
            }
            // The finite blocks in pairs.
            let todo: Vec<usize> = (0..x.len()).filter(|&k| finite[k]).collect();
            for pair in todo.chunks(2) {
                let (a, b) = (pair[0], *pair.last().expect("a non-empty chunk"));
                let mut scratch = BlockQ2K::zeroed();
                let (ya, yb) = if a == b {
                    (&mut y[a], &mut scratch)
                } else {
                    let (lo, hi) = y.split_at_mut(b);
                    (&mut lo[a], &mut hi[0])
                };
                q2_k_block_pair([&x[a], &x[b]], [&qw[a], &qw[b]], [sigma2[a], sigma2[b]], [ya, yb]);
            }
        },
    );
}

/// Super-blocks whose 6-bit scale searches run together in the AVX2 Q3_K kernel, one per lane.
const Q3_GROUP: usize = 8;

/// `quantize_row_q3_K_impl` with quant weights for up to 8 super-blocks of a row: the AVX-512
/// kernel's method (`avx512/kquants_imatrix.rs`) with 8 lanes, each block's sub-block search in two
/// halves, then the 6-bit scale searches of the blocks with block k in lane k.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q3_k_imatrix_group(x: &[Rows], qw: &[Rows], sigma2: &[f32], y: &mut [BlockQ3K]) {
    let n = x.len();
    assert!(n <= Q3_GROUP && qw.len() == n && sigma2.len() == n && y.len() == n);
    let mut scales = [[0f32; 16]; Q3_GROUP];
    let mut sw = [[0f32; 16]; Q3_GROUP];
    let mut codes = [[[0i32; 16]; 16]; Q3_GROUP];
    // Blocks that finish here in lanes (the others are done already).
    let mut lanes = [false; Q3_GROUP];
    for k in 0..n {
        if any_non_finite_avx2(x[k].as_flattened()) {
            BlockQ3K::quantize_row_imatrix(x[k].as_flattened(), std::slice::from_mut(&mut y[k]), qw[k].as_flattened());
            continue;
        }
        for h in 0..2 {
            let xt = transposed_half(&x[k], h);
            let qt = transposed_half(&qw[k], h);
            let s2 = _mm256_set1_ps(sigma2[k]);
            // weight[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i]); sw = the left-to-right sum of a sub-block's.
            let mut w = [_mm256_setzero_ps(); 16];
            let mut sum_w = _mm256_setzero_ps();
            for i in 0..16 {
                w[i] = _mm256_mul_ps(qt[i], _mm256_sqrt_ps(_mm256_add_ps(s2, _mm256_mul_ps(xt[i], xt[i]))));
                sum_w = _mm256_add_ps(sum_w, w[i]);
            }
            let (scale, l) = search_qx_x8::<4>(&xt, &w);
            // SAFETY: `scales[k][8h..]` and `sw[k][8h..]` are 8 writable floats for h < 2.
            unsafe {
                _mm256_storeu_ps(scales[k].as_mut_ptr().add(8 * h), scale);
                _mm256_storeu_ps(sw[k].as_mut_ptr().add(8 * h), sum_w);
            }
            let four = _mm256_set1_epi32(4);
            store_half(&mut codes[k], h, &l.map(|v| _mm256_add_epi32(_mm256_cvtps_epi32(v), four)));
        }
        if scales[k].iter().chain(&sw[k]).all(|v| v.is_finite()) {
            lanes[k] = true;
        } else {
            let ls = set_q3_k_scales_weighted(&scales[k], &sw[k], &mut y[k]);
            requantize_pack_q3_k(&x[k], &codes[k], &ls, &mut y[k]);
        }
    }
    if !lanes.contains(&true) {
        return;
    }
    // Lane k of vector j: sub-block scale j of block k (other lanes: zeros, an empty group).
    let lane = |v: &[[f32; 16]; Q3_GROUP], j: usize| -> __m256 {
        let col: [f32; Q3_GROUP] = std::array::from_fn(|k| if lanes[k] { v[k][j] } else { 0.0 });
        // SAFETY: `col` is 8 readable floats.
        unsafe { _mm256_loadu_ps(col.as_ptr()) }
    };
    let xs: [__m256; 16] = std::array::from_fn(|j| lane(&scales, j));
    let ws: [__m256; 16] = std::array::from_fn(|j| lane(&sw, j));
    let (d, l) = search_qx_x8::<32>(&xs, &ws);
    let mut d_block = [0f32; 8];
    let mut ls = [[0f32; 8]; 16];
    // SAFETY: each destination is 8 writable floats.
    unsafe {
        _mm256_storeu_ps(d_block.as_mut_ptr(), d);
        for (o, &v) in ls.iter_mut().zip(&l) {
            _mm256_storeu_ps(o.as_mut_ptr(), v);
        }
    }
    for k in (0..n).filter(|&k| lanes[k]) {
        // `L = l + 32` of `make_qx_quants(32, ..)`: 0..64, an int8_t.
        let lk: [i8; 16] = std::array::from_fn(|j| (ls[j][k] as i32 + 32) as i8);
        store_q3_k_scales(&lk, d_block[k], &mut y[k]);
        requantize_pack_q3_k(&x[k], &codes[k], &lk, &mut y[k]);
    }
}

/// `quantize_row_q3_K_impl` with quant weights: the blocks of a row in groups through
/// [`quantize_q3_k_imatrix_group`].
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q3_k_imatrix_avx2(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    let args = (src, dst, n_per_row, imatrix);
    sub_block_rows::<BlockQ3K>(
        args,
        2.0,
        |v| any_non_finite_avx2(v),
        |x, qw, sigma2, y| {
            let groups = x.chunks(Q3_GROUP).zip(y.chunks_mut(Q3_GROUP)).zip(qw.chunks(Q3_GROUP));
            for (((x, y), qw), sigma2) in groups.zip(sigma2.chunks(Q3_GROUP)) {
                quantize_q3_k_imatrix_group(x, qw, sigma2, y);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::make_qp_quants_x4;
    use crate::formats::kquants::search::make_qp_quants;
    use crate::simd::x86_64::Avx2;

    /// The lanes of [`make_qp_quants_x4`] against the scalar `make_qp_quants`, on groups the
    /// searches do not produce but the function must still get right: negative values (codes that
    /// wrap in the uint8_t L), zeros, values at the GROUP_MAX_EPS edge, ties of the rounding grid,
    /// zero and huge weights. The crate-level tests cover the groups the searches produce.
    #[test]
    fn lanes_match_the_scalar_make_qp_quants() {
        if Avx2::try_new().is_none() {
            return;
        }
        // Groups of 8 (Q4_K/Q5_K's sub-blocks) and 16 (Q2_K's).
        lanes_match::<8>();
        lanes_match::<16>();
    }

    fn lanes_match<const N: usize>() {
        let mut s = 0x2545_f491_u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        };
        for round in 0..20_000 {
            let group = |next: &mut dyn FnMut() -> u32| -> [f32; N] {
                let style = next() % 6;
                std::array::from_fn(|_| {
                    let u = (next() >> 8) as f32 / (1 << 24) as f32;
                    match style {
                        0 => u * 3.0,
                        1 => u - 0.2,
                        2 => (next() % 4) as f32 * 0.5,
                        3 => 1e-15 * u,
                        4 => 0.0,
                        _ => u * 10f32.powi((next() % 20) as i32 - 10),
                    }
                })
            };
            let x: [[f32; N]; 4] = std::array::from_fn(|_| group(&mut next));
            let w: [[f32; N]; 4] = std::array::from_fn(|_| {
                std::array::from_fn(|_| match next() % 8 {
                    0 => 0.0,
                    1 => 1e30,
                    _ => (next() >> 8) as f32 / (1 << 20) as f32,
                })
            });
            for nmax in [15, 63] {
                // SAFETY: the caller checked the Avx2 token: AVX2, FMA and F16C are present.
                let (d, l) = unsafe { make_qp_quants_x4(nmax, &x, &w) };
                for k in 0..4 {
                    let mut want = [0u8; N];
                    let dk = make_qp_quants(nmax, &x[k], &mut want, &w[k]);
                    assert_eq!(
                        (d[k].to_bits(), l[k]),
                        (dk.to_bits(), want),
                        "round {round} lane {k}: {:?} {:?}",
                        x[k],
                        w[k]
                    );
                }
            }
        }
    }
}
