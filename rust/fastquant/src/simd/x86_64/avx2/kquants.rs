//! AVX2 quantize kernels for Q4_K, Q5_K and Q6_K (plain path, no imatrix): the AVX-512 kernels'
//! method (see `avx512/kquants.rs`) with 8 lanes: one Q4_K/Q5_K super-block's 8 sub-blocks per
//! search, half a Q6_K super-block's 16.
//!
//! Lane s of every vector runs sub-block s's `make_qkx2_quants` (or `make_qx_quants`) with exactly the scalar code's
//! float operations in exactly its order: inputs transposed so the scalar sums over elements are
//! lane-wise accumulations, multiply and add kept separate (no FMA, although this level enables
//! it: every product and sum below is an explicit `mul`/`add` intrinsic, which Rust never fuses),
//! branches as blends under the scalar code's own (ordered) comparisons, `vminps`/`vmaxps` with
//! the operand order of `if (x < min)`, and ggml's `nearest_int` bit trick on integer lanes (or
//! its float equivalent where the values are proven well inside its exact range). Blocks with a
//! NaN or an infinity go to the scalar reference.

use std::arch::x86_64::*;

use bytemuck::Zeroable;

use super::safe_wrappers;
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::kquants::q4_k::MinBlock;
use crate::formats::kquants::search::{get_scale_min_k4, nearest_int, pack_scale_min_k4, GROUP_MAX_EPS};
use crate::formats::kquants::{BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use crate::formats::BlockFormat;
use crate::simd::x86_64::any_non_finite_avx2;

safe_wrappers! {
    quantize_q4_k(src: &[f32], dst: &mut [u8]) => quantize_q4_k_avx2;
    quantize_q5_k(src: &[f32], dst: &mut [u8]) => quantize_q5_k_avx2;
    quantize_q6_k(src: &[f32], dst: &mut [u8]) => quantize_q6_k_avx2;
}

/// The parameters of one format's `make_qkx2_quants` call.
#[derive(Clone, Copy)]
pub(super) struct Qkx2 {
    pub(super) nmax: i32,
    pub(super) rmin: f32,
    pub(super) rdelta: f32,
    pub(super) nstep: i32,
    /// Absolute instead of squared errors (ggml's `use_mad`).
    pub(super) use_mad: bool,
}

const Q4_K: Qkx2 = Qkx2 { nmax: 15, rmin: -1.0, rdelta: 0.1, nstep: 20, use_mad: false };
const Q5_K: Qkx2 = Qkx2 { nmax: 31, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: false };

/// ggml's `nearest_int` on each lane: add 1.5 * 2^23, read the low mantissa bits.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn nearest_int_x8(v: __m256) -> __m256i {
    let bits = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12_582_912.0)));
    _mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)), _mm256_set1_epi32(0x0040_0000))
}

/// `0.max(l.min(nmax))` on each lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn clamp_x8(l: __m256i, nmax: __m256i) -> __m256i {
    _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(l, nmax))
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn abs_x8(v: __m256) -> __m256 {
    _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)))
}

/// `mask ? b : a` per lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn select(a: __m256, mask: __m256, b: __m256) -> __m256 {
    _mm256_blendv_ps(a, b, mask)
}

/// One candidate for each of `K` sets of sub-blocks, interleaved element by element (independent
/// dependency chains): codes into `laux` and the sums `sum_l += w*l`, `sum_l2 += (w*l)*l`, `sum_xl
/// += (w*l)*x`. `IN_RANGE` promises |iscale * (x - min)| < 2^21 for every element, lane and set,
/// where nearest_int is exactly `(v + 1.5*2^23) - 1.5*2^23` and the clamp can stay in floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the sets
fn candidate_sums<const N: usize, const K: usize, const IN_RANGE: bool>(
    xt: &[[__m256; N]; K],
    w: &[[__m256; N]; K],
    iscale: &[__m256; K],
    min: &[__m256; K],
    nmax: i32,
    laux: &mut [[__m256; N]; K],
) -> [[__m256; 3]; K] {
    let zero = _mm256_setzero_ps();
    let magic = _mm256_set1_ps(12_582_912.0);
    let nmaxf = _mm256_set1_ps(nmax as f32);
    let nmaxi = _mm256_set1_epi32(nmax);
    let mut sums = [[zero; 3]; K];
    for i in 0..N {
        for k in 0..K {
            let v = _mm256_mul_ps(iscale[k], _mm256_sub_ps(xt[k][i], min[k]));
            let l = if IN_RANGE {
                _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_add_ps(v, magic), magic), zero), nmaxf)
            } else {
                _mm256_cvtepi32_ps(clamp_x8(nearest_int_x8(v), nmaxi))
            };
            laux[k][i] = l;
            let wl = _mm256_mul_ps(w[k][i], l);
            let [sum_l, sum_l2, sum_xl] = &mut sums[k];
            *sum_l = _mm256_add_ps(*sum_l, wl);
            *sum_l2 = _mm256_add_ps(*sum_l2, _mm256_mul_ps(wl, l));
            *sum_xl = _mm256_add_ps(*sum_xl, _mm256_mul_ps(wl, xt[k][i]));
        }
    }
    sums
}

/// `quantize_row_q{4,5}_K_ref`'s weights `av_x + |x|` (`av_x` the rms of the sub-block) of the
/// 8 sub-blocks of 32 whose element i is lane s of `xt[i]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn rms_plus_abs_weights(xt: &[__m256; 32]) -> [__m256; 32] {
    let mut sum_x2 = _mm256_setzero_ps();
    for &x in xt {
        sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(x, x));
    }
    let av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.0)));
    xt.map(|x| _mm256_add_ps(av_x, abs_x8(x)))
}

/// The error term of one element: `diff * diff`, or `fabsf(diff)` with `use_mad`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn error_term(diff: __m256, use_mad: bool) -> __m256 {
    if use_mad {
        abs_x8(diff)
    } else {
        _mm256_mul_ps(diff, diff)
    }
}

/// `make_qkx2_quants(nmax, x, weights, L, rmin, rdelta, nstep, use_mad)` for `K` sets of 8
/// sub-blocks of `N` (in set k, element i of sub-block s is lane s of `xt[k][i]`, weights `w`
/// transposed the same way): per set (scale, the_min, codes as floats). The sets only share the
/// loop, so that their dependency chains (each candidate starts from the best fit's `min` so far)
/// overlap.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the sets
pub(super) fn search_qkx2_x8<const N: usize, const K: usize>(
    xt: &[[__m256; N]; K],
    w: &[[__m256; N]; K],
    p: Qkx2,
) -> [(__m256, __m256, [__m256; N]); K] {
    let zero = _mm256_setzero_ps();
    let nmax = _mm256_set1_epi32(p.nmax);
    let mut min = [zero; K];
    let mut max = [zero; K];
    let mut sum_w = [zero; K];
    let mut sum_x = [zero; K];
    let mut x_lo = [zero; K];
    let mut empty = [zero; K];
    let mut scale = [zero; K];
    let mut best_error = [zero; K];
    let mut best = [[zero; N]; K];
    for k in 0..K {
        let (xt, w) = (&xt[k], &w[k]);
        let mut mn = xt[0];
        let mut mx = xt[0];
        let mut sw = w[0];
        let mut sx = _mm256_mul_ps(sw, xt[0]);
        for i in 1..N {
            mn = _mm256_min_ps(xt[i], mn);
            mx = _mm256_max_ps(xt[i], mx);
            sw = _mm256_add_ps(sw, w[i]);
            sx = _mm256_add_ps(sx, _mm256_mul_ps(w[i], xt[i]));
        }
        x_lo[k] = mn;
        mn = select(mn, _mm256_cmp_ps::<_CMP_GT_OQ>(mn, zero), zero);
        empty[k] = _mm256_cmp_ps::<_CMP_EQ_OQ>(mx, mn);
        let iscale = _mm256_div_ps(_mm256_set1_ps(p.nmax as f32), _mm256_sub_ps(mx, mn));
        scale[k] = _mm256_div_ps(_mm256_set1_ps(1.0), iscale);
        let mut err = zero;
        for i in 0..N {
            let l = _mm256_cvtepi32_ps(clamp_x8(nearest_int_x8(_mm256_mul_ps(iscale, _mm256_sub_ps(xt[i], mn))), nmax));
            best[k][i] = l;
            let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale[k], l), mn), xt[i]);
            err = _mm256_add_ps(err, _mm256_mul_ps(w[i], error_term(diff, p.use_mad)));
        }
        (min[k], max[k], sum_w[k], sum_x[k], best_error[k]) = (mn, mx, sw, sx, err);
    }
    let nmaxf = p.nmax as f32;
    let limit = _mm256_set1_ps(2_097_152.0);
    let mut laux = [[zero; N]; K];
    for is in 0..=p.nstep {
        let numerator = _mm256_set1_ps(p.rmin + p.rdelta * is as f32 + nmaxf);
        let mut iscale = [zero; K];
        let mut in_range = true;
        for k in 0..K {
            iscale[k] = _mm256_div_ps(numerator, _mm256_sub_ps(max[k], min[k]));
            // Monotonic in x: the extreme elements bound every lane's values (see the AVX-512 kernel).
            let v_lo = abs_x8(_mm256_mul_ps(iscale[k], _mm256_sub_ps(x_lo[k], min[k])));
            let v_hi = abs_x8(_mm256_mul_ps(iscale[k], _mm256_sub_ps(max[k], min[k])));
            let ok = _mm256_and_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(v_lo, limit), _mm256_cmp_ps::<_CMP_LT_OQ>(v_hi, limit));
            in_range &= _mm256_movemask_ps(ok) == 0xff;
        }
        let sums = if in_range {
            candidate_sums::<N, K, true>(xt, w, &iscale, &min, p.nmax, &mut laux)
        } else {
            candidate_sums::<N, K, false>(xt, w, &iscale, &min, p.nmax, &mut laux)
        };
        let mut fit = [zero; K];
        let mut this_scale = [zero; K];
        let mut this_min = [zero; K];
        for k in 0..K {
            let [sum_l, sum_l2, sum_xl] = sums[k];
            let d = _mm256_sub_ps(_mm256_mul_ps(sum_w[k], sum_l2), _mm256_mul_ps(sum_l, sum_l));
            fit[k] = _mm256_cmp_ps::<_CMP_GT_OQ>(d, zero);
            let ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w[k], sum_xl), _mm256_mul_ps(sum_x[k], sum_l)), d);
            let tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x[k]), _mm256_mul_ps(sum_l, sum_xl)), d);
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(tm, zero);
            this_min[k] = select(tm, positive, zero);
            this_scale[k] = select(ts, positive, _mm256_div_ps(sum_xl, sum_l2));
        }
        if fit.iter().all(|&f| _mm256_movemask_ps(f) == 0) {
            continue;
        }
        let mut cur_error = [zero; K];
        for i in 0..N {
            for k in 0..K {
                let diff =
                    _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale[k], laux[k][i]), this_min[k]), xt[k][i]);
                cur_error[k] = _mm256_add_ps(cur_error[k], _mm256_mul_ps(w[k][i], error_term(diff, p.use_mad)));
            }
        }
        for k in 0..K {
            let better = _mm256_and_ps(fit[k], _mm256_cmp_ps::<_CMP_LT_OQ>(cur_error[k], best_error[k]));
            if _mm256_movemask_ps(better) == 0 {
                continue;
            }
            for i in 0..N {
                best[k][i] = select(best[k][i], better, laux[k][i]);
            }
            best_error[k] = select(best_error[k], better, cur_error[k]);
            scale[k] = select(scale[k], better, this_scale[k]);
            min[k] = select(min[k], better, this_min[k]);
        }
    }
    std::array::from_fn(|k| {
        let l = best[k].map(|b| select(b, empty[k], zero));
        let the_min = _mm256_xor_ps(min[k], _mm256_set1_ps(-0.0));
        (select(scale[k], empty[k], zero), the_min, l)
    })
}

/// The 32 vectors whose lane s holds element i of sub-block s of a Q4_K/Q5_K super-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn transpose_sub_blocks(x: &[[f32; 32]; 8]) -> [__m256; 32] {
    let idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
    let base = x.as_flattened().as_ptr();
    let mut xt = [_mm256_setzero_ps(); 32];
    for (i, v) in xt.iter_mut().enumerate() {
        // SAFETY: lane s reads x[s][i], s < 8 and i < 32, inside the 256 floats of `x`.
        *v = unsafe { _mm256_i32gather_ps::<4>(base.add(i), idx) };
    }
    xt
}

/// `min_block_ref` of `formats::kquants::q4_k` for one NaN- and infinity-free super-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn min_block(x: &[[f32; 32]; 8], p: Qkx2) -> MinBlock {
    let xt = transpose_sub_blocks(x);
    let [(scale, the_min, l)] = search_qkx2_x8(std::array::from_ref(&xt), &[rms_plus_abs_weights(&xt)], p);
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let mut codes = [[0f32; 8]; 32];
    // SAFETY: each destination is 8 writable floats.
    unsafe {
        _mm256_storeu_ps(scales.as_mut_ptr(), scale);
        _mm256_storeu_ps(mins.as_mut_ptr(), the_min);
        for (c, &l) in codes.iter_mut().zip(&l) {
            _mm256_storeu_ps(c.as_mut_ptr(), l);
        }
    }
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..8 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls: [u8; 8] = std::array::from_fn(|j| 63.min(nearest_int(inv_scale * scales[j]) as u8));
    let lm: [u8; 8] = std::array::from_fn(|j| 63.min(nearest_int(inv_min * mins[j]) as u8));
    let mut b = MinBlock {
        d: fp32_to_fp16(max_scale / 63.0),
        dmin: fp32_to_fp16(max_min / 63.0),
        scales: pack_scale_min_k4(&ls, &lm),
        l: [0; QK_K],
    };
    requantize(x, &mut b, &codes, p.nmax);
    b
}

/// `requantize` of `formats::kquants::q4_k`: each sub-block's codes recomputed against the scales
/// as stored in `b`, x -> clamp(nearest_int((x + dm) / d)), 8 at a time; a sub-block j whose `d`
/// is zero keeps the search's codes, lane j of `codes`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn requantize(x: &[[f32; 32]; 8], b: &mut MinBlock, codes: &[[f32; 8]; 32], nmax: i32) {
    let d_all = fp16_to_fp32(b.d);
    let dmin_all = fp16_to_fp32(b.dmin);
    let nmax = _mm256_set1_epi32(nmax);
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &b.scales);
        let d = d_all * sc as f32;
        let l = &mut b.l[32 * j..32 * j + 32];
        if d == 0.0 {
            for (i, l) in l.iter_mut().enumerate() {
                *l = codes[i][j] as u8;
            }
            continue;
        }
        let dm = _mm256_set1_ps(dmin_all * m as f32);
        let dv = _mm256_set1_ps(d);
        for k in 0..4 {
            // SAFETY: x[j][8k..8k + 8] is in bounds for k < 4.
            let v = unsafe { _mm256_loadu_ps(x[j].as_ptr().add(8 * k)) };
            let q = clamp_x8(nearest_int_x8(_mm256_div_ps(_mm256_add_ps(v, dm), dv)), nmax);
            let mut out = [0i32; 8];
            // SAFETY: `out` is 8 writable ints.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), q) };
            for (l, &q) in l[8 * k..8 * k + 8].iter_mut().zip(&out) {
                *l = q as u8;
            }
        }
    }
}

// ---- bit packing of Q4_K / Q5_K codes (shared with the AVX-512 kernels) -------------------------

/// Loads 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u8x32(b: &[u8]) -> __m256i {
    let b: &[u8; 32] = b[..32].try_into().expect("32 bytes");
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Stores 32 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_u8x32(b: &mut [u8], v: __m256i) {
    let b: &mut [u8; 32] = (&mut b[..32]).try_into().expect("32 bytes");
    // SAFETY: `b` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
}

/// `BlockQ4K::pack` with 32-byte vectors: per 64-element chunk, byte i is code i | code 32+i << 4
/// (codes are <= 15, so the 16-bit shift never carries into the neighbouring byte).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn pack_q4_k(b: &MinBlock, y: &mut BlockQ4K) {
    y.d = b.d.to_le_bytes();
    y.dmin = b.dmin.to_le_bytes();
    y.scales = b.scales;
    for (chunk, q) in y.qs.chunks_exact_mut(32).enumerate() {
        let lo = load_u8x32(&b.l[64 * chunk..]);
        let hi = load_u8x32(&b.l[64 * chunk + 32..]);
        store_u8x32(q, _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hi)));
    }
}

/// `BlockQ5K::pack` with 32-byte vectors: the low nibbles as Q4_K's, and bit 2c (2c + 1) of
/// `qh[i]` the fifth bit of code i (32 + i) of chunk c. Codes are <= 31, and a fifth bit moved
/// to bit 2c + 1 <= 7 of its byte stays inside it under the 16-bit shifts.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in crate::simd::x86_64) fn pack_q5_k(b: &MinBlock, y: &mut BlockQ5K) {
    y.d = b.d.to_le_bytes();
    y.dmin = b.dmin.to_le_bytes();
    y.scales = b.scales;
    let nib = _mm256_set1_epi8(0x0f);
    let one = _mm256_set1_epi8(1);
    let mut qh = _mm256_setzero_si256();
    for (chunk, ql) in y.qs.chunks_exact_mut(32).enumerate() {
        let l1 = load_u8x32(&b.l[64 * chunk..]);
        let l2 = load_u8x32(&b.l[64 * chunk + 32..]);
        store_u8x32(ql, _mm256_or_si256(_mm256_and_si256(l1, nib), _mm256_slli_epi16::<4>(_mm256_and_si256(l2, nib))));
        let h1 = _mm256_and_si256(_mm256_srli_epi16::<4>(l1), one);
        let h2 = _mm256_and_si256(_mm256_srli_epi16::<4>(l2), one);
        let bits = _mm256_or_si256(h1, _mm256_slli_epi16::<1>(h2));
        qh = _mm256_or_si256(qh, _mm256_sll_epi16(bits, _mm_cvtsi32_si128(2 * chunk as i32)));
    }
    store_u8x32(&mut y.qh, qh);
}

/// The quantize loop of both formats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_min_blocks<B: BlockFormat>(src: &[f32], dst: &mut [u8], p: Qkx2, pack: impl Fn(&MinBlock, &mut B)) {
    let blocks: &mut [B] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<32>();
    let (xs, _) = xs.as_chunks::<8>();
    assert!(x_rest.is_empty() && xs.len() * QK_K == src.len() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        // Blocks with NaN or infinity take the scalar reference (ggml's C semantics there).
        if any_non_finite_avx2(x.as_flattened()) {
            B::quantize_block(x.as_flattened(), y);
        } else {
            pack(&min_block(x, p), y);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q4_k_avx2(src: &[f32], dst: &mut [u8]) {
    quantize_min_blocks::<BlockQ4K>(src, dst, Q4_K, |b, y| pack_q4_k(b, y));
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q5_k_avx2(src: &[f32], dst: &mut [u8]) {
    quantize_min_blocks::<BlockQ5K>(src, dst, Q5_K, |b, y| pack_q5_k(b, y));
}

// ---- Q6_K ---------------------------------------------------------------------------------------

/// `make_qx_quants(NMAX, x, L, 1, qw)` of ggml for the 8 sub-blocks of 16 whose element i is lane
/// s of `xt[i]`, with weights `w` transposed the same way (x^2 for Q6_K's plain path, the imatrix
/// for its weighted one, Q3_K's weighted weights with NMAX 4): the scale and the codes `l`
/// (-NMAX..NMAX, as floats; `L = l + NMAX`). Empty lanes (amax < GROUP_MAX_EPS) get scale 0 and
/// codes -NMAX (`L = 0`). As in the AVX-512 kernel, the codes of a non-empty lane are within
/// NMAX + 1 of zero, where nearest_int is a float round trip.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn search_qx_x8<const NMAX: i32>(xt: &[__m256; 16], w: &[__m256; 16]) -> (__m256, [__m256; 16]) {
    let zero = _mm256_setzero_ps();
    let mut max = zero;
    let mut amax = zero;
    for &x in xt {
        let ax = abs_x8(x);
        let larger = _mm256_cmp_ps::<_CMP_GT_OQ>(ax, amax);
        amax = select(amax, larger, ax);
        max = select(max, larger, x);
    }
    let empty = _mm256_cmp_ps::<_CMP_LT_OQ>(amax, _mm256_set1_ps(GROUP_MAX_EPS));
    let magic = _mm256_set1_ps(12_582_912.0);
    let (lo, hi) = (_mm256_set1_ps(-(NMAX as f32)), _mm256_set1_ps((NMAX - 1) as f32));
    let mut wx = [zero; 16];
    for i in 0..16 {
        wx[i] = _mm256_mul_ps(w[i], xt[i]);
    }
    let mut best_l = [zero; 16];
    let mut scale = zero;
    let mut best = zero;
    let mut laux = [zero; 16];
    // The plain rounding first (`is` 0: its `-(nmax + 0.1*0)` is `-nmax`), then the 18 others, in
    // one loop without closures (see the AVX-512 search).
    for is in std::iter::once(0).chain((-9..=9).filter(|&is| is != 0)) {
        let iscale = _mm256_div_ps(_mm256_set1_ps(-(NMAX as f32 + 0.1 * is as f32)), max);
        let mut sumlx = zero;
        let mut suml2 = zero;
        for i in 0..16 {
            let r = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(iscale, xt[i]), magic), magic);
            let lf = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
            laux[i] = lf;
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], lf));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], lf), lf));
        }
        if is == 0 {
            best_l = laux;
            // `suml2 ? sumlx / suml2 : 0`: NaN counts as true, hence the unordered compare.
            scale = _mm256_and_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(suml2, zero), _mm256_div_ps(sumlx, suml2));
            best = _mm256_mul_ps(scale, sumlx);
            continue;
        }
        let better = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(suml2, zero),
            _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2)),
        );
        if _mm256_movemask_ps(better) == 0 {
            continue;
        }
        for (b, &l) in best_l.iter_mut().zip(&laux) {
            *b = select(*b, better, l);
        }
        scale = select(scale, better, _mm256_div_ps(sumlx, suml2));
        best = select(best, better, _mm256_mul_ps(scale, sumlx));
    }
    for b in &mut best_l {
        *b = select(*b, empty, lo);
    }
    (select(scale, empty, zero), best_l)
}

/// `quantize_row_q6_K_ref` (`qw` None: weights x^2) or `quantize_row_q6_K_impl` (weights `qw`)
/// for one NaN- and infinity-free block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn quantize_q6_k_block(x: &[[f32; 16]; 16], qw: Option<&[[f32; 16]; 16]>, y: &mut BlockQ6K) {
    let idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
    let mut scales = [0f32; 16];
    let mut search = [[0f32; 16]; 16];
    for half in 0..2 {
        let base = x[8 * half..].as_flattened().as_ptr();
        let mut xt = [_mm256_setzero_ps(); 16];
        for (i, v) in xt.iter_mut().enumerate() {
            // SAFETY: lane s reads x[8 * half + s][i], s < 8 and i < 16: inside `x`.
            *v = unsafe { _mm256_i32gather_ps::<4>(base.add(i), idx) };
        }
        let w = match qw {
            None => xt.map(|x| _mm256_mul_ps(x, x)),
            Some(qw) => {
                let base = qw[8 * half..].as_flattened().as_ptr();
                // SAFETY: as for `x`: lane s reads qw[8 * half + s][i], inside `qw`.
                std::array::from_fn(|i| unsafe { _mm256_i32gather_ps::<4>(base.add(i), idx) })
            }
        };
        let (scale, l) = search_qx_x8::<32>(&xt, &w);
        // SAFETY: each destination is 8 writable floats.
        unsafe {
            _mm256_storeu_ps(scales.as_mut_ptr().add(8 * half), scale);
            for (s, &l) in search.iter_mut().zip(&l) {
                _mm256_storeu_ps(s.as_mut_ptr().add(8 * half), l);
            }
        }
    }
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for &s in &scales {
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = BlockQ6K::zeroed();
        y.d = fp32_to_fp16(0.0).to_le_bytes();
        return;
    }
    let iscale = -128.0 / max_scale;
    y.d = fp32_to_fp16(1.0 / iscale).to_le_bytes();
    for (sc, &s) in y.scales.iter_mut().zip(&scales) {
        // MIN(127, nearest_int(..)) stored in an int8_t: the int's low byte.
        *sc = 127.min(nearest_int(iscale * s)) as i8;
    }
    let d_all = fp16_to_fp32(u16::from_le_bytes(y.d));
    let mut l = [0u8; QK_K];
    for j in 0..16 {
        let d = d_all * y.scales[j] as f32;
        let lj = &mut l[16 * j..16 * j + 16];
        if d == 0.0 {
            // the search's codes stay
            for (i, l) in lj.iter_mut().enumerate() {
                *l = (search[i][j] as i32 + 32) as u8;
            }
            continue;
        }
        for k in 0..2 {
            // SAFETY: x[j][8k..8k + 8] is in bounds for k < 2.
            let v = unsafe { _mm256_loadu_ps(x[j].as_ptr().add(8 * k)) };
            let q = nearest_int_x8(_mm256_div_ps(v, _mm256_set1_ps(d)));
            let q = _mm256_max_epi32(_mm256_set1_epi32(-32), _mm256_min_epi32(q, _mm256_set1_epi32(31)));
            let mut out = [0i32; 8];
            // SAFETY: `out` is 8 writable ints.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), q) };
            for (l, &q) in lj[8 * k..8 * k + 8].iter_mut().zip(&out) {
                *l = (q + 32) as u8;
            }
        }
    }
    pack_q6_k(&l, y);
}

/// Packs 256 Q6_K codes (each < 64, offset by 32 already) into `y.ql` / `y.qh` in ggml's layout.
/// Shared by the AVX2 and AVX-512 kernels (it needs only AVX2).
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::simd::x86_64) fn pack_q6_k(l: &[u8; QK_K], y: &mut BlockQ6K) {
    // Per 128-element half: ql[i] = l[i] | l[i+64] << 4 (low nibbles), ql[i+32] = l[i+32] |
    // l[i+96] << 4, qh[i] = the top two bits of l[i], l[i+32], l[i+64], l[i+96]. Codes are < 64,
    // so the 16-bit shifts never carry a bit into the neighbouring byte's field.
    let load = |b: &[u8]| -> __m256i {
        let b: &[u8; 32] = b[..32].try_into().expect("32 bytes");
        // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    };
    let store = |b: &mut [u8], v: __m256i| {
        let b: &mut [u8; 32] = (&mut b[..32]).try_into().expect("32 bytes");
        // SAFETY: `b` is 32 writable bytes; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
    };
    let nib = _mm256_set1_epi8(0x0f);
    for half in 0..2 {
        let j = 128 * half;
        let (a, b, c, e) = (load(&l[j..]), load(&l[j + 32..]), load(&l[j + 64..]), load(&l[j + 96..]));
        let ql = &mut y.ql[64 * half..64 * half + 64];
        store(
            &mut ql[..32],
            _mm256_or_si256(_mm256_and_si256(a, nib), _mm256_slli_epi16::<4>(_mm256_and_si256(c, nib))),
        );
        store(
            &mut ql[32..],
            _mm256_or_si256(_mm256_and_si256(b, nib), _mm256_slli_epi16::<4>(_mm256_and_si256(e, nib))),
        );
        let qh = _mm256_or_si256(
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(a), _mm256_set1_epi8(0x03)),
                _mm256_and_si256(_mm256_srli_epi16::<2>(b), _mm256_set1_epi8(0x0c)),
            ),
            _mm256_or_si256(
                _mm256_and_si256(c, _mm256_set1_epi8(0x30)),
                _mm256_and_si256(_mm256_slli_epi16::<2>(e), _mm256_set1_epi8(-64)),
            ),
        );
        store(&mut y.qh[32 * half..32 * half + 32], qh);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q6_k_avx2(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ6K] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<16>();
    let (xs, _) = xs.as_chunks::<16>();
    assert!(x_rest.is_empty() && xs.len() * QK_K == src.len() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        // Blocks with NaN or infinity take the scalar reference (ggml's C semantics there).
        if any_non_finite_avx2(x.as_flattened()) {
            BlockQ6K::quantize_block(x.as_flattened(), y);
        } else {
            quantize_q6_k_block(x, None, y);
        }
    }
}
