//! AVX2 importance-weighted quantize kernels for Q4_K, Q5_K and Q6_K: the AVX-512 kernels'
//! method (see `avx512/kquants_imatrix.rs`) with 8 lanes, one Q4_K/Q5_K super-block's 8
//! sub-blocks per search (half a Q6_K super-block's 16), on the plain AVX2 kernels' lane searches
//! (`kquants.rs`) given the weighted path's weights. The scalar parts both levels share (the
//! block's sigma2, the 6-bit scales by `make_qp_quants`, the shape checks) are here.
//!
//! A row whose imatrix holds a NaN or an infinity goes to the scalar reference whole, and so does
//! a block with a NaN or an infinity in its data.

use std::arch::x86_64::*;

use super::kquants::{
    pack_q4_k, pack_q5_k, quantize_q6_k_block, requantize, search_qkx2_x8, transpose_sub_blocks, Qkx2,
};
use crate::formats::float::fp32_to_fp16;
use crate::formats::kquants::q4_k::MinBlock;
use crate::formats::kquants::search::{make_qp_quants, pack_scale_min_k4};
use crate::formats::kquants::{BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use crate::formats::{quantize_rows_imatrix_ref, BlockFormat};
use crate::simd::x86_64::any_non_finite_avx2;

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
}

/// `make_qkx3_quants(15, .., -0.9, 0.05, 36, false)` of `quantize_row_q4_K_impl`, run by the
/// `make_qkx2_quants` lanes: the two differ only in the empty-range test (`max <= min` against
/// `max == min`), and after `if (min > 0) min = 0` a NaN-free sub-block's range is never
/// negative, so both tests agree.
const Q4_K: Qkx2 = Qkx2 { nmax: 15, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };
/// `make_qkx3_quants(31, .., -0.9, 0.05, 36, false)` of `quantize_row_q5_K_impl`, as [`Q4_K`].
const Q5_K: Qkx2 = Qkx2 { nmax: 31, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };

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

/// `sigma2 = 2*sum_x2/QK_K` of `quantize_row_q{4,5}_K_impl` for each of `K` blocks: one
/// left-to-right sum per block (no lane layout turns it into lane-wise sums), the K interleaved
/// so that their chains of dependent adds overlap.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // element i of every block in turn: the index is the point
pub(in crate::simd::x86_64) fn sigma2<const K: usize>(x: [&[f32; QK_K]; K]) -> [f32; K] {
    let mut sum = [0.0f32; K];
    for i in 0..QK_K {
        for k in 0..K {
            sum[k] += x[k][i] * x[k][i];
        }
    }
    sum.map(|s| 2.0 * s / QK_K as f32)
}

/// The end of `min_block_imatrix` of `formats::kquants::q4_k` for one block, from its 8
/// searched scales, mins and sub-block weight totals: `make_qp_quants` for the 6-bit scales and
/// mins (Q5_K's extra `MIN(63, ..)` with `clamp63`), the fp16 super-scales, the packed scales.
/// The codes are left for the caller's requantize.
pub(in crate::simd::x86_64) fn weighted_scales(scales: &[f32], mins: &[f32], sw: &[f32], clamp63: bool) -> MinBlock {
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants(63, scales, &mut ls, sw);
    let m_block = make_qp_quants(63, mins, &mut lm, sw);
    if clamp63 {
        ls = ls.map(|v| v.min(63));
        lm = lm.map(|v| v.min(63));
    }
    MinBlock {
        d: fp32_to_fp16(d_block),
        dmin: fp32_to_fp16(m_block),
        scales: pack_scale_min_k4(&ls, &lm),
        l: [0; QK_K],
    }
}

/// `quantize_row_q{4,5}_K_impl` up to the bit packing for one NaN- and infinity-free block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn min_block(x: &[[f32; 32]; 8], qw: &[[f32; 32]; 8], p: Qkx2, clamp63: bool) -> MinBlock {
    let xt = transpose_sub_blocks(x);
    let qt = transpose_sub_blocks(qw);
    let [sigma2] = sigma2([x.as_flattened().try_into().expect("256 floats")]);
    let sigma2 = _mm256_set1_ps(sigma2);
    // weights[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i]); sumw = the left-to-right sum of a sub-block's.
    let mut w = [_mm256_setzero_ps(); 32];
    let mut sum_w = _mm256_setzero_ps();
    for i in 0..32 {
        w[i] = _mm256_mul_ps(qt[i], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xt[i], xt[i]))));
        sum_w = _mm256_add_ps(sum_w, w[i]);
    }
    let (scale, the_min, l) = search_qkx2_x8(&xt, &w, p);
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
    let mut b = weighted_scales(&scales, &mins, &sw, clamp63);
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
        let (x, _) = x.as_chunks::<32>();
        let (x, _) = x.as_chunks::<8>();
        for ((x, y), qw) in x.iter().zip(y).zip(qw) {
            if any_non_finite_avx2(x.as_flattened()) {
                B::quantize_row_imatrix(x.as_flattened(), std::slice::from_mut(y), qw.as_flattened());
            } else {
                pack(&min_block(x, qw, p, clamp63), y);
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
