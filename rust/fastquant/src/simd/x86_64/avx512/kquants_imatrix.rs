//! AVX-512 importance-weighted quantize kernels for Q2_K..Q6_K: ggml's
//! `quantize_row_q{2,3,4,5,6}_K_impl` with quant weights, byte for byte.
//!
//! The method is the plain kernels' (`kquants.rs`): lane s of every vector is sub-block s, the
//! inputs (and the imatrix, with them) are transposed, and each lane runs exactly the scalar
//! search's float operations in its order, so every lane's result equals the scalar one bit for
//! bit. What the weighted path adds:
//! * Q4_K/Q5_K weights are `qw * sqrtf(sigma2 + x*x)` with `sigma2 = 2 * mean(x^2)` over the
//!   256-block. That mean is one left-to-right sum over the block, which no lane layout turns
//!   into lane-wise sums, so it is a scalar loop (the two blocks of a pair interleaved);
//!   everything per element after it is lane-wise.
//! * The search is `make_qkx3_quants(nmax, .., -0.9, 0.05, 36, false)`, run by the plain kernels'
//!   weighted `make_qkx2_quants` lanes: the two differ only in the empty-range test (`max <= min`
//!   against `max == min`), and after `if (min > 0) min = 0` the range of a NaN-free sub-block is
//!   never negative, so both tests agree.
//! * The 8 sub-block scales and mins of each block are quantized by `make_qp_quants` with the
//!   sub-blocks' total weights: the pair's four runs in the lanes of one vector (the AVX2
//!   module's `weighted_scales`; scalar, they cost a tenth of the search).
//! * Q6_K is the plain kernel's `make_qx_quants` lanes with the raw imatrix as weights (ggml
//!   passes no sigma2 term there).
//!
//! * Q2_K: weights with `sigma2 = mean(x^2)` (factor 1), the same qkx2 lanes with nmax 3 on 16
//!   sub-blocks of 16 per vector, four super-blocks searched together (the search's dependency
//!   chain, as in the plain kernel), the 4-bit scales and mins by the 4-lane `make_qp_quants`
//!   (scales and mins of two blocks in one vector), then `kquants_low.rs`'s requantize and packing.
//! * Q3_K: `make_qx_quants(4, .., 1, weights)` lanes (Q6_K's search with nmax 4); the 6-bit scales,
//!   `make_qx_quants(32, ..)` over each block's 16 sub-block scales, by the same search with 16
//!   blocks of a row in the lanes (scalar, it cost as much as the block's own search); then
//!   `kquants_low.rs`'s requantize and packing.
//!
//! A row whose imatrix holds a NaN or an infinity goes to the scalar reference whole, and so
//! does a block (Q4_K/Q5_K: a pair) with a NaN or an infinity in its data. An odd last Q4_K/Q5_K
//! block of a row runs as a pair with itself.

use std::arch::x86_64::*;

use super::kquants::{
    any_non_finite_x16, finish_q6_k_block, quantize_q6_k_block, requantize, search_qkx2_x16, search_qx_x16,
    search_qx_x16s, transpose16, transpose16_in_place, transpose_q6_k, Qkx2,
};
use super::kquants_low::{load_rows, requantize_pack_q2_k, requantize_pack_q3_k, Rows, Q2_GROUP};
use super::load_f32x32;
use crate::formats::kquants::q3_k::{
    set_scales_weighted as set_q3_k_scales_weighted, store_scales as store_q3_k_scales,
};
use crate::formats::kquants::q4_k::MinBlock;
use crate::formats::kquants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use crate::formats::{quantize_rows_imatrix_ref, BlockFormat};
use crate::simd::x86_64::any_non_finite_avx512;
use crate::simd::x86_64::avx2::kquants::{pack_q4_k, pack_q5_k};
use crate::simd::x86_64::avx2::kquants_imatrix::{
    blocks_per_row, q2_k_weighted_scales, row_sigma2, sub_block_rows, weighted_scales,
};

/// Defines the safe entry points of the table (`QuantizeImatrixFn`): each calls the
/// `#[target_feature]` kernel of the same name with `_avx512` appended.
macro_rules! imatrix_entry_points {
    ($($name:ident => $kernel:ident;)*) => {$(
        pub(super) fn $name(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
            // SAFETY: the kernel only needs the CPU features that `Avx512::try_new` checked, and
            // this function is only reachable through `avx512::kernels`, which takes that token.
            unsafe { $kernel(src, dst, n_per_row, imatrix) }
        }
    )*};
}

imatrix_entry_points! {
    quantize_q4_k_imatrix => quantize_q4_k_imatrix_avx512;
    quantize_q5_k_imatrix => quantize_q5_k_imatrix_avx512;
    quantize_q6_k_imatrix => quantize_q6_k_imatrix_avx512;
    quantize_q2_k_imatrix => quantize_q2_k_imatrix_avx512;
    quantize_q3_k_imatrix => quantize_q3_k_imatrix_avx512;
}

/// `make_qkx3_quants(15, .., -0.9, 0.05, 36, false)` of `quantize_row_q4_K_impl`.
const Q4_K: Qkx2 = Qkx2 { nmax: 15, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };
/// `make_qkx3_quants(31, .., -0.9, 0.05, 36, false)` of `quantize_row_q5_K_impl`.
const Q5_K: Qkx2 = Qkx2 { nmax: 31, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };

/// `make_qkx3_quants(3, .., -0.9, 0.05, 36, false)` of `quantize_row_q2_K_impl`.
const Q2_K: Qkx2 = Qkx2 { nmax: 3, rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false };

/// Sub-blocks of 32 in a super-block.
const SUBS: usize = QK_K / 32;

/// The 32 vectors of 16 floats whose lane 8k + j holds element i of sub-block j of `blocks[k]`
/// (vector i for i < 16 is the first half of the sub-blocks, vector 16 + i the second).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn transpose_pair(blocks: [&[[f32; 32]; SUBS]; 2]) -> [__m512; 32] {
    let mut lo = [_mm512_setzero_ps(); 16];
    let mut hi = [_mm512_setzero_ps(); 16];
    for (k, b) in blocks.iter().enumerate() {
        for (j, x) in b.iter().enumerate() {
            (lo[SUBS * k + j], hi[SUBS * k + j]) = load_f32x32(x);
        }
    }
    let mut xt = [_mm512_setzero_ps(); 32];
    xt[..16].copy_from_slice(&transpose16(lo));
    xt[16..].copy_from_slice(&transpose16(hi));
    xt
}

/// `quantize_row_q{4,5}_K_impl` up to the bit packing for two NaN- and infinity-free blocks
/// (`min_block_imatrix` of `formats::kquants::q4_k`); `None` when the data is not finite.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn min_block_pair(
    x: [&[[f32; 32]; SUBS]; 2],
    qw: [&[[f32; 32]; SUBS]; 2],
    sigma2: [f32; 2],
    p: Qkx2,
    clamp63: bool,
) -> Option<[MinBlock; 2]> {
    let xt = transpose_pair(x);
    if any_non_finite_x16(&xt) {
        return None;
    }
    let qt = transpose_pair(qw);
    let sigma2 = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(sigma2[0]), _mm512_set1_ps(sigma2[1]));
    // weights[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i]); sumw = the left-to-right sum of a sub-block's.
    let mut w = [_mm512_setzero_ps(); 32];
    let mut sum_w = _mm512_setzero_ps();
    for i in 0..32 {
        w[i] = _mm512_mul_ps(qt[i], _mm512_sqrt_ps(_mm512_add_ps(sigma2, _mm512_mul_ps(xt[i], xt[i]))));
        sum_w = _mm512_add_ps(sum_w, w[i]);
    }
    let [s] = search_qkx2_x16(std::array::from_ref(&xt), std::array::from_ref(&w), p);
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    let mut sw = [0f32; 16];
    let mut codes = [[0f32; 16]; 32];
    // SAFETY: each destination is 16 writable floats.
    unsafe {
        _mm512_storeu_ps(scales.as_mut_ptr(), s.scale);
        _mm512_storeu_ps(mins.as_mut_ptr(), s.the_min);
        _mm512_storeu_ps(sw.as_mut_ptr(), sum_w);
        for (c, &l) in codes.iter_mut().zip(&s.l) {
            _mm512_storeu_ps(c.as_mut_ptr(), l);
        }
    }
    let half = |v: &[f32; 16], k: usize| -> [f32; 8] { v[SUBS * k..SUBS * k + SUBS].try_into().expect("8 floats") };
    let (s, m, w) =
        ([half(&scales, 0), half(&scales, 1)], [half(&mins, 0), half(&mins, 1)], [half(&sw, 0), half(&sw, 1)]);
    let mut blocks = weighted_scales([&s[0], &s[1]], [&m[0], &m[1]], [&w[0], &w[1]], clamp63);
    for (k, b) in blocks.iter_mut().enumerate() {
        requantize(x[k], b, &codes, SUBS * k, p.nmax);
    }
    Some(blocks)
}

/// The row loop of both formats: pairs of blocks through [`min_block_pair`] (an odd last block
/// paired with itself), blocks with non-finite data and rows with a non-finite imatrix through
/// the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
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
    if any_non_finite_avx512(imatrix) {
        return quantize_rows_imatrix_ref::<B>(src, dst, n_per_row, imatrix);
    }
    let blocks: &mut [B] = bytemuck::cast_slice_mut(dst);
    let (qw, _) = imatrix.as_chunks::<32>();
    let (qw, _) = qw.as_chunks::<SUBS>();
    for (x, y) in src.chunks_exact(n_per_row).zip(blocks.chunks_exact_mut(per_row)) {
        let sigma2 = row_sigma2(x, 2.0);
        let (x, _) = x.as_chunks::<32>();
        let (x, _) = x.as_chunks::<SUBS>();
        for k in (0..per_row).step_by(2) {
            let k2 = (k + 1).min(per_row - 1);
            let n = k2 + 1 - k;
            match min_block_pair([&x[k], &x[k2]], [&qw[k], &qw[k2]], [sigma2[k], sigma2[k2]], p, clamp63) {
                Some(pair) => {
                    for (b, y) in pair.iter().zip(&mut y[k..k + n]) {
                        pack(b, y);
                    }
                }
                None => B::quantize_row_imatrix(
                    x[k..k + n].as_flattened().as_flattened(),
                    &mut y[k..k + n],
                    qw[k..k + n].as_flattened().as_flattened(),
                ),
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q4_k_imatrix_avx512(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    quantize_min_rows::<BlockQ4K>(src, dst, n_per_row, imatrix, Q4_K, false, |b, y| pack_q4_k(b, y));
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q5_k_imatrix_avx512(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    quantize_min_rows::<BlockQ5K>(src, dst, n_per_row, imatrix, Q5_K, true, |b, y| pack_q5_k(b, y));
}

/// `quantize_row_q6_K_impl` with quant weights: `make_qx_quants(32, .., 1, qw)` per sub-block of
/// 16, lane-wise, with the imatrix itself as the weights. The imatrix is transposed once per call
/// (it is the same for every row), and four blocks of a row are searched together, their
/// dependency chains interleaved.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q6_k_imatrix_avx512(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    let per_row = blocks_per_row(src, dst.len(), size_of::<BlockQ6K>(), n_per_row, imatrix);
    if any_non_finite_avx512(imatrix) {
        return quantize_rows_imatrix_ref::<BlockQ6K>(src, dst, n_per_row, imatrix);
    }
    let blocks: &mut [BlockQ6K] = bytemuck::cast_slice_mut(dst);
    let (qw, _) = imatrix.as_chunks::<16>();
    let (qw, _) = qw.as_chunks::<16>();
    let qt: Vec<[__m512; 16]> = qw.iter().map(|qw| transpose_q6_k(qw)).collect();
    for (x, y) in src.chunks_exact(n_per_row).zip(blocks.chunks_exact_mut(per_row)) {
        let (x, _) = x.as_chunks::<16>();
        let (x, _) = x.as_chunks::<16>();
        // Four blocks at a time (measured faster than two here; the plain kernel prefers two).
        const G: usize = 4;
        for (((x, y), qw), qt) in x.chunks(G).zip(y.chunks_mut(G)).zip(qw.chunks(G)).zip(qt.chunks(G)) {
            let xt: [[__m512; 16]; G] = std::array::from_fn(|k| transpose_q6_k(&x[k.min(x.len() - 1)]));
            if x.len() == G && !xt.iter().any(|xt| any_non_finite_x16(xt)) {
                let w: [[__m512; 16]; G] = std::array::from_fn(|k| qt[k]);
                let searched = search_qx_x16s::<32, G>(&xt, &w);
                for ((x, y), (scale, l)) in x.iter().zip(y).zip(&searched) {
                    finish_q6_k_block(x, *scale, l, y);
                }
                continue;
            }
            for ((((x, y), qw), qt), xt) in x.iter().zip(y).zip(qw).zip(qt).zip(&xt) {
                if any_non_finite_x16(xt) {
                    BlockQ6K::quantize_row_imatrix(x.as_flattened(), std::slice::from_mut(y), qw.as_flattened());
                } else {
                    quantize_q6_k_block(x, xt, qt, y);
                }
            }
        }
    }
}

/// `quantize_row_q2_K_impl` for `K` super-blocks (the 16 sub-blocks of 16 of each in the lanes)
/// whose searches run together, their dependency chains interleaved; a group with a NaN or an
/// infinity in its data goes one block at a time, such a block through the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_q2_k_imatrix_group<const K: usize>(
    x: &[Rows; K],
    qw: &[Rows; K],
    sigma2: &[f32; K],
    y: &mut [BlockQ2K; K],
) {
    let rows: [[__m512; 16]; K] = std::array::from_fn(|k| load_rows(&x[k]));
    let mut xt = rows;
    for xt in &mut xt {
        transpose16_in_place(xt);
    }
    if xt.iter().any(|xt| any_non_finite_x16(xt)) {
        for ((x, qw), (sigma2, y)) in x.iter().zip(qw).zip(sigma2.iter().zip(y)) {
            if K > 1 {
                quantize_q2_k_imatrix_group::<1>(
                    std::array::from_ref(x),
                    std::array::from_ref(qw),
                    std::array::from_ref(sigma2),
                    std::array::from_mut(y),
                );
            } else {
                BlockQ2K::quantize_row_imatrix(x.as_flattened(), std::slice::from_mut(y), qw.as_flattened());
            }
        }
        return;
    }
    let mut w = [[_mm512_setzero_ps(); 16]; K];
    let mut sw = [[0f32; 16]; K];
    for k in 0..K {
        let mut qt = load_rows(&qw[k]);
        transpose16_in_place(&mut qt);
        // weight[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i]); sw = the left-to-right sum of a sub-block's.
        let sigma2 = _mm512_set1_ps(sigma2[k]);
        let mut sum_w = _mm512_setzero_ps();
        for i in 0..16 {
            w[k][i] = _mm512_mul_ps(qt[i], _mm512_sqrt_ps(_mm512_add_ps(sigma2, _mm512_mul_ps(xt[k][i], xt[k][i]))));
            sum_w = _mm512_add_ps(sum_w, w[k][i]);
        }
        // SAFETY: `sw[k]` is 16 writable floats.
        unsafe { _mm512_storeu_ps(sw[k].as_mut_ptr(), sum_w) };
    }
    let searched = search_qkx2_x16(&xt, &w, Q2_K);
    let mut scales = [[0f32; 16]; K];
    let mut mins = [[0f32; 16]; K];
    for k in 0..K {
        // SAFETY: each destination is 16 writable floats.
        unsafe {
            _mm512_storeu_ps(scales[k].as_mut_ptr(), searched[k].scale);
            _mm512_storeu_ps(mins[k].as_mut_ptr(), searched[k].the_min);
        }
    }
    let mut k = 0;
    while k < K {
        if k + 1 < K {
            let (a, b) = y.split_at_mut(k + 1);
            q2_k_weighted_scales(
                [&scales[k], &scales[k + 1]],
                [&mins[k], &mins[k + 1]],
                [&sw[k], &sw[k + 1]],
                [&mut a[k], &mut b[0]],
            );
            k += 2;
        } else {
            q2_k_weighted_scales([&scales[k]], [&mins[k]], [&sw[k]], [&mut y[k]]);
            k += 1;
        }
    }
    for k in 0..K {
        requantize_pack_q2_k(&rows[k], &searched[k], &mut y[k]);
    }
}

/// `quantize_row_q2_K_impl` with quant weights: groups of super-blocks through
/// [`quantize_q2_k_imatrix_group`], rows with a non-finite imatrix through the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q2_k_imatrix_avx512(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    let args = (src, dst, n_per_row, imatrix);
    sub_block_rows::<BlockQ2K>(
        args,
        1.0,
        |v| any_non_finite_avx512(v),
        |x, qw, sigma2, y| {
            let (xg, x_tail) = x.as_chunks::<Q2_GROUP>();
            let (yg, y_tail) = y.as_chunks_mut::<Q2_GROUP>();
            let (qg, q_tail) = qw.as_chunks::<Q2_GROUP>();
            let (sg, s_tail) = sigma2.as_chunks::<Q2_GROUP>();
            for (((x, y), qw), sigma2) in xg.iter().zip(yg).zip(qg).zip(sg) {
                quantize_q2_k_imatrix_group(x, qw, sigma2, y);
            }
            for (((x, y), qw), sigma2) in x_tail.iter().zip(y_tail).zip(q_tail).zip(s_tail) {
                quantize_q2_k_imatrix_group::<1>(
                    std::array::from_ref(x),
                    std::array::from_ref(qw),
                    std::array::from_ref(sigma2),
                    std::array::from_mut(y),
                );
            }
        },
    );
}

/// Super-blocks whose 6-bit scale searches run together, one per lane.
const Q3_GROUP: usize = 16;

/// `quantize_row_q3_K_impl` with quant weights for up to 16 super-blocks of a row: per block
/// (its 16 sub-blocks in the lanes), weights `qw * sqrtf(sigma2 + x*x)` with sigma2 twice the
/// block's mean square and `make_qx_quants(4, .., 1, weights)` lane-wise; then the 6-bit scales,
/// `make_qx_quants(32, scales, .., 1, sw)`, for all the blocks at once, block k in lane k (a
/// block whose scales or weight totals are not finite takes the scalar function); then the shared
/// requantize and packing. Blocks with non-finite data go through the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_q3_k_imatrix_group(x: &[Rows], qw: &[Rows], sigma2: &[f32], y: &mut [BlockQ3K]) {
    let n = x.len();
    assert!(n <= Q3_GROUP && qw.len() == n && sigma2.len() == n && y.len() == n);
    let zero = _mm512_setzero_ps();
    let mut rows = [[zero; 16]; Q3_GROUP];
    let mut search_l = [[_mm512_setzero_si512(); 16]; Q3_GROUP];
    let mut scales = [zero; Q3_GROUP];
    let mut sw = [zero; Q3_GROUP];
    // Blocks that finish here in lanes (the others are done already).
    let mut lanes = 0u16;
    for k in 0..n {
        rows[k] = load_rows(&x[k]);
        let mut xt = rows[k];
        transpose16_in_place(&mut xt);
        if any_non_finite_x16(&xt) {
            BlockQ3K::quantize_row_imatrix(x[k].as_flattened(), std::slice::from_mut(&mut y[k]), qw[k].as_flattened());
            continue;
        }
        let mut qt = load_rows(&qw[k]);
        transpose16_in_place(&mut qt);
        let s2 = _mm512_set1_ps(sigma2[k]);
        // weight[i] = qw[i] * sqrtf(sigma2 + x[i]*x[i]); sw = the left-to-right sum of a sub-block's.
        let mut w = [zero; 16];
        let mut sum_w = zero;
        for i in 0..16 {
            w[i] = _mm512_mul_ps(qt[i], _mm512_sqrt_ps(_mm512_add_ps(s2, _mm512_mul_ps(xt[i], xt[i]))));
            sum_w = _mm512_add_ps(sum_w, w[i]);
        }
        let (scale, l) = search_qx_x16::<4>(&xt, &w);
        search_l[k] = l;
        if any_non_finite_x16(&[scale, sum_w]) {
            let mut s = [0f32; 16];
            let mut t = [0f32; 16];
            // SAFETY: each destination is 16 writable floats.
            unsafe {
                _mm512_storeu_ps(s.as_mut_ptr(), scale);
                _mm512_storeu_ps(t.as_mut_ptr(), sum_w);
            }
            let ls = set_q3_k_scales_weighted(&s, &t, &mut y[k]);
            requantize_pack_q3_k(&rows[k], &search_l[k], &ls, &mut y[k]);
            continue;
        }
        (scales[k], sw[k]) = (scale, sum_w);
        lanes |= 1 << k;
    }
    if lanes == 0 {
        return;
    }
    // Lane k of vector j: sub-block scale j of block k (other lanes: zeros, an empty group).
    transpose16_in_place(&mut scales);
    transpose16_in_place(&mut sw);
    let (d, codes) = search_qx_x16::<32>(&scales, &sw);
    let mut d_block = [0f32; 16];
    let mut ls = [[0i32; 16]; 16];
    // SAFETY: each destination is 16 writable floats or ints.
    unsafe {
        _mm512_storeu_ps(d_block.as_mut_ptr(), d);
        for (l, &c) in ls.iter_mut().zip(&codes) {
            _mm512_storeu_si512(l.as_mut_ptr().cast(), c);
        }
    }
    for k in (0..n).filter(|&k| lanes & (1 << k) != 0) {
        // `L` of `make_qx_quants(32, ..)`: 0..64, an int8_t.
        let lk: [i8; 16] = std::array::from_fn(|j| ls[j][k] as i8);
        store_q3_k_scales(&lk, d_block[k], &mut y[k]);
        requantize_pack_q3_k(&rows[k], &search_l[k], &lk, &mut y[k]);
    }
}

/// `quantize_row_q3_K_impl` with quant weights: the blocks of a row in groups through
/// [`quantize_q3_k_imatrix_group`], rows with a non-finite imatrix through the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q3_k_imatrix_avx512(src: &[f32], dst: &mut [u8], n_per_row: usize, imatrix: &[f32]) {
    let args = (src, dst, n_per_row, imatrix);
    sub_block_rows::<BlockQ3K>(
        args,
        2.0,
        |v| any_non_finite_avx512(v),
        |x, qw, sigma2, y| {
            let groups = x.chunks(Q3_GROUP).zip(y.chunks_mut(Q3_GROUP)).zip(qw.chunks(Q3_GROUP));
            for (((x, y), qw), sigma2) in groups.zip(sigma2.chunks(Q3_GROUP)) {
                quantize_q3_k_imatrix_group(x, qw, sigma2, y);
            }
        },
    );
}
