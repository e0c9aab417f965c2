//! AVX-512 quantize kernels for Q4_K, Q5_K and Q6_K (plain path, no imatrix).
//!
//! Almost all of their time is ggml's scale search, run once per sub-block: `make_qkx2_quants`
//! per 32 elements for Q4_K/Q5_K (21 or 16 candidate scales, each a least-squares fit and an
//! error sum), `make_qx_quants` per 16 elements for Q6_K (19 candidates).
//! Vectorising one search would reorder its sums and change the bytes, so the kernels vectorise
//! ACROSS sub-blocks instead: lane s of every vector is sub-block s of two super-blocks (Q4_K,
//! Q5_K) or of one (Q6_K), and each lane performs exactly the scalar search's float operations in
//! exactly its order (`formats::kquants::search`), so each lane's result equals the scalar one bit
//! for bit:
//! * the inputs are transposed (vector `xt[i]` holds element i of every sub-block), so the
//!   scalar code's left-to-right sums over i are plain lane-wise accumulations;
//! * multiply and add stay separate instructions (no FMA: ggml's x86 build has none), and every
//!   product keeps the scalar grouping (`w * l * x` is `(w * l) * x`);
//! * branches are masked selects with the comparison the scalar code makes (ordered compares:
//!   false on NaN, as in C), and `vminps`/`vmaxps` with the operand order of `if x < min`;
//! * `nearest_int` is the same magic-number bit trick on integer lanes, or, where the values are
//!   proven to lie well inside its exact range, the equivalent float round trip
//!   `(v + 1.5*2^23) - 1.5*2^23` with the clamp in floats; divisions and square roots are
//!   correctly rounded in both.
//!
//! The per-super-block epilogue (6- or 8-bit scales against the largest scale, fp16 super-scales)
//! is the scalar code's, then the codes are recomputed against the stored scales 16 at a time and
//! packed with 32-byte vectors (Q4_K/Q5_K by the AVX2 kernels' packers).
//!
//! Blocks (pairs for Q4_K/Q5_K) with a NaN or an infinity anywhere go to the scalar reference, as
//! does an odd last Q4_K/Q5_K block: not because the lanes would differ (they compute the same
//! IEEE operations), but so that nothing here has to argue about them.

use std::arch::x86_64::*;

use bytemuck::Zeroable;

use super::{entry_points, load_f32x32, store_u8x16};
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::kquants::q4_k::MinBlock;
use crate::formats::kquants::search::{get_scale_min_k4, nearest_int, pack_scale_min_k4, GROUP_MAX_EPS};
use crate::formats::kquants::{BlockQ4K, BlockQ5K, BlockQ6K, QK_K};
use crate::formats::BlockFormat;
use crate::simd::x86_64::avx2::kquants::{pack_q4_k, pack_q5_k, pack_q6_k};

entry_points! {
    quantize_q4_k => quantize_q4_k_avx512(&[f32], &mut [u8]);
    quantize_q5_k => quantize_q5_k_avx512(&[f32], &mut [u8]);
    quantize_q6_k => quantize_q6_k_avx512(&[f32], &mut [u8]);
}

/// Sub-blocks of 32 in a super-block.
const SUBS: usize = QK_K / 32;

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

/// Whether any lane of the (transposed) vectors is NaN or ±Inf; such blocks take the scalar
/// reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn any_non_finite_x16(vs: &[__m512]) -> bool {
    // fpclass categories: 0x01 QNaN, 0x08 +Inf, 0x10 -Inf, 0x80 SNaN.
    vs.iter().fold(0u16, |acc, &v| acc | _mm512_fpclass_ps_mask::<0x99>(v)) != 0
}

/// ggml's `nearest_int` on each lane: add 1.5 * 2^23, read the low mantissa bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn nearest_int_x16(v: __m512) -> __m512i {
    let bits = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(12_582_912.0)));
    _mm512_sub_epi32(_mm512_and_si512(bits, _mm512_set1_epi32(0x007f_ffff)), _mm512_set1_epi32(0x0040_0000))
}

/// `0.max(l.min(nmax))` on each lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn clamp_x16(l: __m512i, nmax: __m512i) -> __m512i {
    _mm512_max_epi32(_mm512_setzero_si512(), _mm512_min_epi32(l, nmax))
}

/// `vpermt2ps` indices of the transpose stage that swaps `d`-wide blocks: output row i (bit d of
/// i clear) takes lane c of row i where bit d of c is clear, else lane c - d of row i + d; output
/// row i + d takes lane c + d of row i, else lane c of row i + d (16 + c addresses the second
/// source).
const fn swap_blocks_index(d: usize, upper: bool) -> [i32; 16] {
    let mut idx = [0i32; 16];
    let mut c = 0;
    while c < 16 {
        idx[c] = match (c & d == 0, upper) {
            (true, false) => c as i32,
            (false, false) => (16 + c - d) as i32,
            (true, true) => (c + d) as i32,
            (false, true) => (16 + c) as i32,
        };
        c += 1;
    }
    idx
}

const SWAP_INDEX: [[[i32; 16]; 2]; 4] = [
    [swap_blocks_index(8, false), swap_blocks_index(8, true)],
    [swap_blocks_index(4, false), swap_blocks_index(4, true)],
    [swap_blocks_index(2, false), swap_blocks_index(2, true)],
    [swap_blocks_index(1, false), swap_blocks_index(1, true)],
];

/// The transpose of a 16x16 matrix of floats (`rows[r]` lane c becomes `out[c]` lane r): for each
/// block width 8, 4, 2, 1, the off-diagonal blocks swap, which moves element (r, c) to (c, r).
/// 64 two-source permutes, where 16 gathers (one per column) cost several times as much.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn transpose16(rows: [__m512; 16]) -> [__m512; 16] {
    let mut m = rows;
    transpose16_in_place(&mut m);
    m
}

/// [`transpose16`] in place (large callers keep their matrices where they are).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn transpose16_in_place(m: &mut [__m512; 16]) {
    for (stage, d) in [8usize, 4, 2, 1].into_iter().enumerate() {
        // SAFETY: each index table is 16 readable ints.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(SWAP_INDEX[stage][0].as_ptr().cast()),
                _mm512_loadu_si512(SWAP_INDEX[stage][1].as_ptr().cast()),
            )
        };
        for i in 0..16 {
            if i & d == 0 {
                let (a, b) = (m[i], m[i + d]);
                m[i] = _mm512_permutex2var_ps(a, lo, b);
                m[i + d] = _mm512_permutex2var_ps(a, hi, b);
            }
        }
    }
}

/// The result of 16 searches over sub-blocks of `N`: lane s is sub-block s.
pub(super) struct Searched<const N: usize> {
    pub(super) scale: __m512,
    pub(super) the_min: __m512,
    /// Element i's code (as a float) of every sub-block.
    pub(super) l: [__m512; N],
}

/// One candidate of the search for each of `K` sets of sub-blocks, interleaved element by
/// element (independent dependency chains): the codes `clamp(nearest_int(iscale * (x - min)), 0,
/// nmax)` of every element into `laux`, and the sums `sum_l += w*l`, `sum_l2 += (w*l)*l`, `sum_xl
/// += (w*l)*x`. `IN_RANGE` promises |iscale * (x - min)| < 2^21 for every element, lane and set.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the sets
fn candidate_sums<const N: usize, const K: usize, const IN_RANGE: bool>(
    xt: &[[__m512; N]; K],
    w: &[[__m512; N]; K],
    iscale: &[__m512; K],
    min: &[__m512; K],
    nmax: i32,
    laux: &mut [[__m512; N]; K],
) -> [[__m512; 3]; K] {
    let zero = _mm512_setzero_ps();
    let magic = _mm512_set1_ps(12_582_912.0);
    let nmaxf = _mm512_set1_ps(nmax as f32);
    let nmaxi = _mm512_set1_epi32(nmax);
    let mut sums = [[zero; 3]; K];
    for i in 0..N {
        for k in 0..K {
            let v = _mm512_mul_ps(iscale[k], _mm512_sub_ps(xt[k][i], min[k]));
            let l = if IN_RANGE {
                // `vmaxps` and `vminps` never see a NaN here; the difference is +0.0 for code 0.
                _mm512_min_ps(_mm512_max_ps(_mm512_sub_ps(_mm512_add_ps(v, magic), magic), zero), nmaxf)
            } else {
                _mm512_cvtepi32_ps(clamp_x16(nearest_int_x16(v), nmaxi))
            };
            laux[k][i] = l;
            let wl = _mm512_mul_ps(w[k][i], l);
            let [sum_l, sum_l2, sum_xl] = &mut sums[k];
            *sum_l = _mm512_add_ps(*sum_l, wl);
            *sum_l2 = _mm512_add_ps(*sum_l2, _mm512_mul_ps(wl, l));
            *sum_xl = _mm512_add_ps(*sum_xl, _mm512_mul_ps(wl, xt[k][i]));
        }
    }
    sums
}

/// `quantize_row_q{4,5}_K_ref`'s weights `av_x + |x|` (`av_x` the rms of the sub-block) of the
/// 16 sub-blocks of 32 whose element i is lane s of `xt[i]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn rms_plus_abs_weights(xt: &[__m512; 32]) -> [__m512; 32] {
    // sum_x2 += x * x; av_x = sqrtf(sum_x2 / 32); weights[i] = av_x + fabsf(x[i]).
    let mut sum_x2 = _mm512_setzero_ps();
    for &x in xt {
        sum_x2 = _mm512_add_ps(sum_x2, _mm512_mul_ps(x, x));
    }
    let av_x = _mm512_sqrt_ps(_mm512_div_ps(sum_x2, _mm512_set1_ps(32.0)));
    xt.map(|x| _mm512_add_ps(av_x, _mm512_abs_ps(x)))
}

/// The error term of one element: `diff * diff`, or `fabsf(diff)` with `use_mad`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn error_term(diff: __m512, use_mad: bool) -> __m512 {
    if use_mad {
        _mm512_abs_ps(diff)
    } else {
        _mm512_mul_ps(diff, diff)
    }
}

/// `make_qkx2_quants(nmax, x, weights, L, rmin, rdelta, nstep, use_mad)` of ggml for `K` sets
/// of 16 sub-blocks of `N`: in set k, element i of sub-block s is lane s of `xt[k][i]`, its weight
/// lane s of `w[k][i]`. Every line mirrors a line of the scalar search (see the module comment);
/// the sets only share the loop, so that their dependency chains (each candidate starts from the
/// best fit's `min` so far) overlap.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the sets
pub(super) fn search_qkx2_x16<const N: usize, const K: usize>(
    xt: &[[__m512; N]; K],
    w: &[[__m512; N]; K],
    p: Qkx2,
) -> [Searched<N>; K] {
    let zero = _mm512_setzero_ps();
    let nmax = _mm512_set1_epi32(p.nmax);
    let mut min = [zero; K];
    let mut max = [zero; K];
    let mut sum_w = [zero; K];
    let mut sum_x = [zero; K];
    let mut x_lo = [zero; K];
    let mut empty = [0 as __mmask16; K];
    let mut scale = [zero; K];
    let mut best_error = [zero; K];
    let mut best = [[zero; N]; K];
    for k in 0..K {
        let (xt, w) = (&xt[k], &w[k]);
        // min, max, sum_w, sum_x; `vminps a, b` is `a < b ? a : b`, the scalar `if (x < min)`.
        let mut mn = xt[0];
        let mut mx = xt[0];
        let mut sw = w[0];
        let mut sx = _mm512_mul_ps(sw, xt[0]);
        for i in 1..N {
            mn = _mm512_min_ps(xt[i], mn);
            mx = _mm512_max_ps(xt[i], mx);
            sw = _mm512_add_ps(sw, w[i]);
            sx = _mm512_add_ps(sx, _mm512_mul_ps(w[i], xt[i]));
        }
        // The smallest element, for the range check of the candidates below.
        x_lo[k] = mn;
        // if (min > 0) min = 0; (a select, so that -0.0 stays -0.0)
        mn = _mm512_mask_mov_ps(mn, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(mn, zero), zero);
        // if (max == min): all codes 0, scale 0; the lanes compute on and are overwritten at the end.
        empty[k] = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(mx, mn);
        let iscale = _mm512_div_ps(_mm512_set1_ps(p.nmax as f32), _mm512_sub_ps(mx, mn));
        scale[k] = _mm512_div_ps(_mm512_set1_ps(1.0), iscale);
        let mut err = zero;
        for i in 0..N {
            let l =
                _mm512_cvtepi32_ps(clamp_x16(nearest_int_x16(_mm512_mul_ps(iscale, _mm512_sub_ps(xt[i], mn))), nmax));
            best[k][i] = l;
            let diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale[k], l), mn), xt[i]);
            err = _mm512_add_ps(err, _mm512_mul_ps(w[i], error_term(diff, p.use_mad)));
        }
        (min[k], max[k], sum_w[k], sum_x[k], best_error[k]) = (mn, mx, sw, sx, err);
    }
    let nmaxf = p.nmax as f32;
    let limit = _mm512_set1_ps(2_097_152.0);
    let mut laux = [[zero; N]; K];
    for is in 0..=p.nstep {
        // The scalar `(rmin + rdelta*is + nmax) / (max - min)`: the numerator is the same f32
        // expression, evaluated once for all lanes; `min` is the best fit's so far, as in ggml.
        let numerator = _mm512_set1_ps(p.rmin + p.rdelta * is as f32 + nmaxf);
        let mut iscale = [zero; K];
        let mut in_range = true;
        for k in 0..K {
            iscale[k] = _mm512_div_ps(numerator, _mm512_sub_ps(max[k], min[k]));
            // `iscale * (x - min)` is monotonic in x (each rounding is), so its values lie
            // between those of the smallest and the largest element. When both are within 2^21 in
            // every lane, nearest_int is exactly `(v + 1.5*2^23) - 1.5*2^23` (the rounded sum is
            // an integer strictly inside (2^23, 2^24), whose mantissa bits are the result; 2^22
            // would not do: a v just below it rounds up to 2^24, where the exponent changes) and
            // the clamp can stay in floats: 3 vector operations instead of 5. Otherwise (huge
            // ranges, a fitted min above the data, NaN) the integer bit trick gives ggml's
            // out-of-range values.
            let v_lo = _mm512_abs_ps(_mm512_mul_ps(iscale[k], _mm512_sub_ps(x_lo[k], min[k])));
            let v_hi = _mm512_abs_ps(_mm512_mul_ps(iscale[k], _mm512_sub_ps(max[k], min[k])));
            in_range &=
                _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v_lo, limit) & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v_hi, limit) == 0xffff;
        }
        let sums = if in_range {
            candidate_sums::<N, K, true>(xt, w, &iscale, &min, p.nmax, &mut laux)
        } else {
            candidate_sums::<N, K, false>(xt, w, &iscale, &min, p.nmax, &mut laux)
        };
        let mut fit = [0 as __mmask16; K];
        let mut this_scale = [zero; K];
        let mut this_min = [zero; K];
        for k in 0..K {
            let [sum_l, sum_l2, sum_xl] = sums[k];
            let d = _mm512_sub_ps(_mm512_mul_ps(sum_w[k], sum_l2), _mm512_mul_ps(sum_l, sum_l));
            fit[k] = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d, zero);
            let ts = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_w[k], sum_xl), _mm512_mul_ps(sum_x[k], sum_l)), d);
            let tm = _mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(sum_l2, sum_x[k]), _mm512_mul_ps(sum_l, sum_xl)), d);
            // if (this_min > 0) { this_min = 0; this_scale = sum_xl / sum_l2; }
            let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(tm, zero);
            this_min[k] = _mm512_mask_mov_ps(tm, positive, zero);
            this_scale[k] = _mm512_mask_mov_ps(ts, positive, _mm512_div_ps(sum_xl, sum_l2));
        }
        if fit.iter().all(|&f| f == 0) {
            continue;
        }
        let mut cur_error = [zero; K];
        for i in 0..N {
            for k in 0..K {
                let diff =
                    _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(this_scale[k], laux[k][i]), this_min[k]), xt[k][i]);
                cur_error[k] = _mm512_add_ps(cur_error[k], _mm512_mul_ps(w[k][i], error_term(diff, p.use_mad)));
            }
        }
        for k in 0..K {
            let better = fit[k] & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(cur_error[k], best_error[k]);
            if better == 0 {
                continue;
            }
            for i in 0..N {
                best[k][i] = _mm512_mask_mov_ps(best[k][i], better, laux[k][i]);
            }
            best_error[k] = _mm512_mask_mov_ps(best_error[k], better, cur_error[k]);
            scale[k] = _mm512_mask_mov_ps(scale[k], better, this_scale[k]);
            min[k] = _mm512_mask_mov_ps(min[k], better, this_min[k]);
        }
    }
    std::array::from_fn(|k| {
        // Empty lanes return (0, -min) with all codes 0, as the scalar early exit does.
        let l = best[k].map(|b| _mm512_mask_mov_ps(b, empty[k], zero));
        let the_min = _mm512_xor_ps(min[k], _mm512_set1_ps(-0.0));
        Searched { scale: _mm512_mask_mov_ps(scale[k], empty[k], zero), the_min, l }
    })
}

/// `min_block_ref` of `formats::kquants::q4_k` for block `b` (0 or 1) of a searched pair: the
/// 6-bit scales and fp16 super-scales exactly as the scalar code computes them, then the codes
/// recomputed against the stored scales 16 at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn finish_block(
    x: &[[f32; 32]],
    scales: &[f32],
    mins: &[f32],
    codes: &[[f32; 16]; 32],
    lane0: usize,
    p: Qkx2,
) -> MinBlock {
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..SUBS {
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
    requantize(x, &mut b, codes, lane0, p.nmax);
    b
}

/// `requantize` of `formats::kquants::q4_k`: each sub-block's codes recomputed against the scales
/// as stored in `b`, x -> clamp(nearest_int((x + dm) / d)), 16 at a time; a sub-block whose `d` is
/// zero keeps the search's codes, lane `lane0 + j` of `codes` for sub-block j.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn requantize(x: &[[f32; 32]], b: &mut MinBlock, codes: &[[f32; 16]; 32], lane0: usize, nmax: i32) {
    let d_all = fp16_to_fp32(b.d);
    let dmin_all = fp16_to_fp32(b.dmin);
    let nmax = _mm512_set1_epi32(nmax);
    for j in 0..SUBS {
        let (sc, m) = get_scale_min_k4(j, &b.scales);
        let d = d_all * sc as f32;
        let l = &mut b.l[32 * j..32 * j + 32];
        if d == 0.0 {
            for (i, l) in l.iter_mut().enumerate() {
                *l = codes[i][lane0 + j] as u8;
            }
            continue;
        }
        let dm = _mm512_set1_ps(dmin_all * m as f32);
        let dv = _mm512_set1_ps(d);
        let (lo, hi) = load_f32x32(&x[j]);
        let code = |v: __m512| -> __m128i {
            _mm512_cvtepi32_epi8(clamp_x16(nearest_int_x16(_mm512_div_ps(_mm512_add_ps(v, dm), dv)), nmax))
        };
        store_u8x16(&mut l[..16], code(lo));
        store_u8x16(&mut l[16..], code(hi));
    }
}

/// The quantize loop of both formats: pairs of super-blocks through [`search_qkx2_x16`], the rest
/// through the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_min_blocks<B: BlockFormat>(src: &[f32], dst: &mut [u8], p: Qkx2, pack: impl Fn(&MinBlock, &mut B)) {
    let blocks: &mut [B] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<32>();
    assert!(x_rest.is_empty() && xs.len() == SUBS * blocks.len(), "partial blocks");
    let (pairs, _) = xs.as_chunks::<{ 2 * SUBS }>();
    let n_pairs = pairs.len();
    for (pair, ys) in pairs.iter().zip(blocks.chunks_exact_mut(2)) {
        let mut lo = [_mm512_setzero_ps(); 16];
        let mut hi = [_mm512_setzero_ps(); 16];
        for ((lo, hi), x) in lo.iter_mut().zip(&mut hi).zip(pair) {
            (*lo, *hi) = load_f32x32(x);
        }
        let mut xt = [_mm512_setzero_ps(); 32];
        xt[..16].copy_from_slice(&transpose16(lo));
        xt[16..].copy_from_slice(&transpose16(hi));
        if any_non_finite_x16(&xt) {
            for (x, y) in pair.as_flattened().chunks_exact(QK_K).zip(ys) {
                B::quantize_block(x, y);
            }
            continue;
        }
        let [s] = search_qkx2_x16(std::array::from_ref(&xt), &[rms_plus_abs_weights(&xt)], p);
        let mut scales = [0f32; 16];
        let mut mins = [0f32; 16];
        let mut codes = [[0f32; 16]; 32];
        // SAFETY: each destination is 16 writable floats.
        unsafe {
            _mm512_storeu_ps(scales.as_mut_ptr(), s.scale);
            _mm512_storeu_ps(mins.as_mut_ptr(), s.the_min);
            for (c, &l) in codes.iter_mut().zip(&s.l) {
                _mm512_storeu_ps(c.as_mut_ptr(), l);
            }
        }
        for (k, y) in ys.iter_mut().enumerate() {
            let r = SUBS * k..SUBS * k + SUBS;
            let b = finish_block(&pair[r.clone()], &scales[r.clone()], &mins[r], &codes, SUBS * k, p);
            pack(&b, y);
        }
    }
    for (x, y) in src[n_pairs * 2 * QK_K..].chunks_exact(QK_K).zip(&mut blocks[2 * n_pairs..]) {
        B::quantize_block(x, y);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q4_k_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_min_blocks::<BlockQ4K>(src, dst, Q4_K, |b, y| pack_q4_k(b, y));
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q5_k_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_min_blocks::<BlockQ5K>(src, dst, Q5_K, |b, y| pack_q5_k(b, y));
}

// ---- Q6_K ---------------------------------------------------------------------------------------

/// `make_qx_quants(NMAX, x, L, 1, qw)` of ggml for the 16 sub-blocks of 16 whose element i is lane
/// s of `xt[i]`, with the weights `w` transposed the same way (x^2 for Q6_K's plain search, the
/// imatrix for its weighted one, Q3_K's weighted weights with NMAX 4): the scale and the codes
/// `L = l + NMAX`. One set of 16 sub-blocks: [`search_qx_x16s`] with `K` 1.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn search_qx_x16<const NMAX: i32>(xt: &[__m512; 16], w: &[__m512; 16]) -> (__m512, [__m512i; 16]) {
    let [searched] = search_qx_x16s::<NMAX, 1>(std::array::from_ref(xt), std::array::from_ref(w));
    searched
}

/// [`search_qx_x16`] for `K` independent sets of 16 sub-blocks (set k: `xt[k]`, `w[k]`). Every
/// line mirrors a line of `formats::kquants::search::make_qx_quants`; the sets only share the
/// loop, so that their dependency chains (each candidate's division, sums and compare) overlap.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the sets
pub(super) fn search_qx_x16s<const NMAX: i32, const K: usize>(
    xt: &[[__m512; 16]; K],
    w: &[[__m512; 16]; K],
) -> [(__m512, [__m512i; 16]); K] {
    let zero = _mm512_setzero_ps();
    let mut max = [zero; K];
    let mut empty = [0 as __mmask16; K];
    // w * x, the same in every candidate.
    let mut wx = [[zero; 16]; K];
    for k in 0..K {
        // The first element of largest magnitude: `if (ax > amax) { amax = ax; max = x; }`.
        let mut mx = zero;
        let mut amax = zero;
        for &x in &xt[k] {
            let ax = _mm512_abs_ps(x);
            let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax);
            amax = _mm512_mask_mov_ps(amax, larger, ax);
            mx = _mm512_mask_mov_ps(mx, larger, x);
        }
        max[k] = mx;
        // amax < GROUP_MAX_EPS: all codes 0, scale 0 (applied at the end).
        empty[k] = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax, _mm512_set1_ps(GROUP_MAX_EPS));
        for i in 0..16 {
            wx[k][i] = _mm512_mul_ps(w[k][i], xt[k][i]);
        }
    }
    // The codes `clamp(nearest_int(iscale * x), -32, 31)`, as floats. In a lane that is not
    // empty, |x| <= |max| = amax >= GROUP_MAX_EPS, so |iscale * x| <= (NMAX + 0.9) * (1 + 2^-23) (iscale
    // is at most (NMAX + 0.9) / max): well inside the range where nearest_int is exactly `vrndscaleps`'s
    // round-half-even, and the clamp can stay in floats. (`vrndscaleps` gives -0.0 where the bit
    // trick gives 0 for v in (-0.5, 0]; a -0.0 code adds ±0 to sums that start at +0.0, which
    // leaves them as they are, and converts to the integer 0.) Empty lanes compute garbage that
    // is dropped.
    let (lo, hi) = (_mm512_set1_ps(-(NMAX as f32)), _mm512_set1_ps((NMAX - 1) as f32));
    // The codes of a candidate are a function of its iscale: keep the best one's iscale and
    // recompute its codes once at the end instead of copying 16 vectors per better candidate.
    let codes_of = |iscale: __m512, x: __m512| {
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(iscale, x));
        _mm512_min_ps(_mm512_max_ps(r, lo), hi)
    };
    let mut best_iscale = [zero; K];
    let mut scale = [zero; K];
    let mut best = [zero; K];
    // The plain rounding first (`is` 0: its `-(nmax + 0.1*0)` is `-nmax`), then the 18 others. One
    // loop with no closures: as closures, LLVM outlined the sums and copied their arrays.
    for is in std::iter::once(0).chain((-9..=9).filter(|&is| is != 0)) {
        // The scalar `-(nmax + 0.1*is) / max`, its numerator evaluated once for all lanes.
        let numerator = _mm512_set1_ps(-(NMAX as f32 + 0.1 * is as f32));
        let iscale: [__m512; K] = std::array::from_fn(|k| _mm512_div_ps(numerator, max[k]));
        // In a lane that is not empty, |iscale * x| <= |iscale * max| < n * (1 + 2^-22) (two
        // roundings), so a clamp side that this bound cannot reach is the identity: left out.
        let reach = (NMAX as f32 + 0.1 * is as f32).abs() * (1.0 + 1.0 / 1_048_576.0);
        let (sumlx, suml2) = match (reach >= NMAX as f32 + 0.5, reach >= NMAX as f32 - 0.5) {
            (false, false) => qx_candidate_sums::<K, false, false>(xt, w, &wx, &iscale, lo, hi),
            (false, true) => qx_candidate_sums::<K, false, true>(xt, w, &wx, &iscale, lo, hi),
            (true, _) => qx_candidate_sums::<K, true, true>(xt, w, &wx, &iscale, lo, hi),
        };
        for k in 0..K {
            let (sumlx, suml2) = (sumlx[k], suml2[k]);
            if is == 0 {
                best_iscale[k] = iscale[k];
                // `suml2 ? sumlx / suml2 : 0`: NaN counts as true, hence the unordered compare.
                scale[k] =
                    _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(suml2, zero), _mm512_div_ps(sumlx, suml2));
                best[k] = _mm512_mul_ps(scale[k], sumlx);
                continue;
            }
            let better = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(suml2, zero)
                & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_mul_ps(sumlx, sumlx), _mm512_mul_ps(best[k], suml2));
            // No `better == 0` early exit: which candidates win varies from block to block, and
            // the mispredicted branch cost more than the masked updates it skipped.
            // ggml recomputes L with the same iscale: the codes of the sums.
            best_iscale[k] = _mm512_mask_mov_ps(best_iscale[k], better, iscale[k]);
            scale[k] = _mm512_mask_mov_ps(scale[k], better, _mm512_div_ps(sumlx, suml2));
            best[k] = _mm512_mask_mov_ps(best[k], better, _mm512_mul_ps(scale[k], sumlx));
        }
    }
    std::array::from_fn(|k| {
        let mut codes = [_mm512_setzero_si512(); 16];
        for (c, &x) in codes.iter_mut().zip(&xt[k]) {
            let l = codes_of(best_iscale[k], x);
            *c = _mm512_maskz_add_epi32(!empty[k], _mm512_cvtps_epi32(l), _mm512_set1_epi32(NMAX));
        }
        (_mm512_mask_mov_ps(scale[k], empty[k], zero), codes)
    })
}

/// One candidate's `sumlx += (w * x) * l` and `suml2 += (w * l) * l` of [`search_qx_x16s`] for its
/// `K` sets, the codes `l = clamp(nearest_int(iscale * x), lo, hi)`; `CLAMP_LO`/`CLAMP_HI` false
/// leave out a side of the clamp that the caller has shown to be the identity.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the sets
fn qx_candidate_sums<const K: usize, const CLAMP_LO: bool, const CLAMP_HI: bool>(
    xt: &[[__m512; 16]; K],
    w: &[[__m512; 16]; K],
    wx: &[[__m512; 16]; K],
    iscale: &[__m512; K],
    lo: __m512,
    hi: __m512,
) -> ([__m512; K], [__m512; K]) {
    let mut sumlx = [_mm512_setzero_ps(); K];
    let mut suml2 = [_mm512_setzero_ps(); K];
    for i in 0..16 {
        for k in 0..K {
            let mut lf = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
                iscale[k], xt[k][i],
            ));
            if CLAMP_LO {
                lf = _mm512_max_ps(lf, lo);
            }
            if CLAMP_HI {
                lf = _mm512_min_ps(lf, hi);
            }
            sumlx[k] = _mm512_add_ps(sumlx[k], _mm512_mul_ps(wx[k][i], lf));
            suml2[k] = _mm512_add_ps(suml2[k], _mm512_mul_ps(_mm512_mul_ps(w[k][i], lf), lf));
        }
    }
    (sumlx, suml2)
}

/// `quantize_row_q6_K_ref` (weights `w` = x^2) or `quantize_row_q6_K_impl` (`w` = the imatrix)
/// for one NaN- and infinity-free block: [`search_qx_x16`], the 8-bit scales and fp16 d as the
/// scalar code computes them, the codes recomputed against the stored scales 16 at a time, and
/// ggml's bit layout.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn quantize_q6_k_block(x: &[[f32; 16]; 16], xt: &[__m512; 16], w: &[__m512; 16], y: &mut BlockQ6K) {
    let (scale, search_l) = search_qx_x16::<32>(xt, w);
    finish_q6_k_block(x, scale, &search_l, y);
}

/// The part of [`quantize_q6_k_block`] after the search: the 8-bit scales and fp16 d from the
/// search's `scale`, the codes recomputed against them (a sub-block whose stored scale is 0 keeps
/// the search's codes `search_l`), and ggml's bit layout.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn finish_q6_k_block(x: &[[f32; 16]; 16], scale: __m512, search_l: &[__m512i; 16], y: &mut BlockQ6K) {
    let mut scales = [0f32; 16];
    let mut search = [[0i32; 16]; 16];
    // SAFETY: each destination is 16 writable floats or ints.
    unsafe {
        _mm512_storeu_ps(scales.as_mut_ptr(), scale);
        for (s, &l) in search.iter_mut().zip(search_l) {
            _mm512_storeu_si512(s.as_mut_ptr().cast(), l);
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
                *l = search[i][j] as u8;
            }
            continue;
        }
        // SAFETY: x[j] is 16 readable floats.
        let v = unsafe { _mm512_loadu_ps(x[j].as_ptr()) };
        let q = nearest_int_x16(_mm512_div_ps(v, _mm512_set1_ps(d)));
        let q = _mm512_max_epi32(_mm512_set1_epi32(-32), _mm512_min_epi32(q, _mm512_set1_epi32(31)));
        store_u8x16(lj, _mm512_cvtepi32_epi8(_mm512_add_epi32(q, _mm512_set1_epi32(32))));
    }
    pack_q6_k(&l, y);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q6_k_avx512(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ6K] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<16>();
    let (xs, _) = xs.as_chunks::<16>();
    assert!(x_rest.is_empty() && xs.len() * 256 == src.len() && xs.len() == blocks.len(), "partial blocks");
    // Two blocks at a time, their searches interleaved (four measured slower here).
    const G: usize = 2;
    for (x, y) in xs.chunks(G).zip(blocks.chunks_mut(G)) {
        let xt: [[__m512; 16]; G] = std::array::from_fn(|k| transpose_q6_k(&x[k.min(x.len() - 1)]));
        if x.len() == G && !xt.iter().any(|xt| any_non_finite_x16(xt)) {
            let w = xt.map(|xt| xt.map(|x| _mm512_mul_ps(x, x)));
            let searched = search_qx_x16s::<32, G>(&xt, &w);
            for ((x, y), (scale, l)) in x.iter().zip(y).zip(&searched) {
                finish_q6_k_block(x, *scale, l, y);
            }
            continue;
        }
        for ((x, y), xt) in x.iter().zip(y).zip(&xt) {
            if any_non_finite_x16(xt) {
                BlockQ6K::quantize_block(x.as_flattened(), y);
            } else {
                quantize_q6_k_block(x, xt, &xt.map(|x| _mm512_mul_ps(x, x)), y);
            }
        }
    }
}

/// The 16 vectors whose lane s holds element i of sub-block s of a Q6_K block (or of its imatrix).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn transpose_q6_k(x: &[[f32; 16]; 16]) -> [__m512; 16] {
    let mut rows = [_mm512_setzero_ps(); 16];
    for (r, x) in rows.iter_mut().zip(x) {
        // SAFETY: `x` is 16 readable floats; `loadu` has no alignment requirement.
        *r = unsafe { _mm512_loadu_ps(x.as_ptr()) };
    }
    transpose16(rows)
}
