//! AVX-512 quantize kernels for IQ4_NL and IQ4_XS, plain and importance-weighted.
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
//! through the shared [`iq4_xs_sub_scales`]; then the codes are re-picked 16 elements at a time
//! against the broadcast inverse scale and packed two per byte. Groups with a NaN or an infinity
//! in the input (or any when the imatrix has one) go to the scalar reference; a short last group
//! runs with zero-padded lanes, which the search treats as empty blocks and nothing stores.

use std::arch::x86_64::*;

use super::kquants::transpose16;
use crate::formats::float::fp32_to_fp16;
use crate::formats::iquants::iq4::{iq4_xs_sub_scales, IQ4NL_MIDPOINTS, KVALUES_IQ4NL, QK4_NL, QK_K};
use crate::formats::iquants::{BlockIq4Nl, BlockIq4Xs};
use crate::formats::BlockFormat;
use crate::simd::x86_64::any_non_finite_avx2;

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

const KVALUES_F32: [f32; 16] = {
    let mut t = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = KVALUES_IQ4NL[i] as f32;
        i += 1;
    }
    t
};

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
            values: _mm512_loadu_ps(KVALUES_F32.as_ptr()),
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
    let d0 = _mm512_div_ps(_mm512_xor_ps(max, _mm512_set1_ps(-0.0)), _mm512_set1_ps(KVALUES_F32[0]));
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

/// What differs between the two formats: how a block is finished from its sub-blocks' scales.
trait Iq4Block: BlockFormat {
    /// Writes the block of sub-blocks `x` (1 or 8) whose searched scales are `scales`.
    fn finish(t: &Tables, x: &[[f32; 32]], scales: &[f32], y: &mut Self);
}

impl Iq4Block for BlockIq4Nl {
    /// The scale as is (fp16), codes re-picked with `1/scale` (0 for a zero scale).
    #[inline(always)]
    fn finish(t: &Tables, x: &[[f32; 32]], scales: &[f32], y: &mut Self) {
        y.d = fp32_to_fp16(scales[0]).to_le_bytes();
        let id = if scales[0] != 0.0 { 1.0 / scales[0] } else { 0.0 };
        // SAFETY: `finish` is only called from the kernel below, which runs with its features
        // (the trait is private to this file).
        unsafe { pack_codes(t, id, &x[0], &mut y.qs) }
    }
}

impl Iq4Block for BlockIq4Xs {
    /// The scalar epilogue's sub-scales, codes re-picked with each sub-block's `1/(d*l)`.
    #[inline(always)]
    fn finish(t: &Tables, x: &[[f32; 32]], scales: &[f32], y: &mut Self) {
        let scales: &[f32; 8] = scales.try_into().expect("8 sub-blocks");
        let idl = iq4_xs_sub_scales(scales, &mut y.d, &mut y.scales_h, &mut y.scales_l);
        let (q4, _) = y.qs.as_chunks_mut::<16>();
        for ((q4, &idl), x) in q4.iter_mut().zip(&idl).zip(x) {
            // SAFETY: as for IQ4_NL.
            unsafe { pack_codes(t, idl, x, q4) }
        }
    }
}

/// Both formats, with (`imatrix = Some((n_per_row, qw))`) or without importance weights: groups of
/// 16 sub-blocks through [`search_x16`], NaN/Inf groups through the scalar reference.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_iq4_avx512<B: Iq4Block>(src: &[f32], dst: &mut [u8], imatrix: Option<(usize, &[f32])>) {
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
    let t = tables();
    for (g, (xs, ys)) in subs.chunks(LANES).zip(blocks.chunks_mut(LANES / subs_per_block)).enumerate() {
        // The column of this group's first element within its row, for the imatrix.
        let col = |k: usize, n_per_row: usize| (g * LANES + k) * QK4_NL % n_per_row;
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
        // Rows of 16 sub-blocks, zero-padded at the end of the input.
        let mut x = [[0f32; 32]; LANES];
        x[..xs.len()].copy_from_slice(xs);
        let xt = transpose_x32(&x);
        let w: [__m512; 32] = match imatrix {
            // weight = qw * sqrt(sigma2 + x²), sigma2 = 2*mean(x²) over the super-block.
            Some((n, qw)) => {
                let mut q = [[0f32; 32]; LANES];
                for (k, q) in q.iter_mut().enumerate().take(xs.len()) {
                    let c = col(k, n);
                    q.copy_from_slice(&qw[c..c + QK4_NL]);
                }
                let qt = transpose_x32(&q);
                let sigma2 = if subs_per_block == 1 {
                    let mut s = _mm512_setzero_ps();
                    for &x in &xt {
                        s = _mm512_add_ps(s, _mm512_mul_ps(x, x));
                    }
                    _mm512_mul_ps(s, _mm512_set1_ps(2.0 / QK4_NL as f32))
                } else {
                    // A sum over 256 elements in order: scalar, per super-block of 8 lanes.
                    let mut s = [0f32; LANES];
                    for (sb, s) in x.chunks_exact(QK_K / QK4_NL).zip(s.chunks_exact_mut(QK_K / QK4_NL)) {
                        let mut sum = 0.0f32;
                        for &v in sb.as_flattened() {
                            sum += v * v;
                        }
                        s.fill(sum * (2.0 / QK_K as f32));
                    }
                    // SAFETY: `s` is 16 readable floats.
                    unsafe { _mm512_loadu_ps(s.as_ptr()) }
                };
                std::array::from_fn(|j| {
                    _mm512_mul_ps(qt[j], _mm512_sqrt_ps(_mm512_add_ps(sigma2, _mm512_mul_ps(xt[j], xt[j]))))
                })
            }
            None => xt.map(|x| _mm512_mul_ps(x, x)),
        };
        let mut scales = [0f32; LANES];
        // SAFETY: `scales` is 16 writable floats.
        unsafe { _mm512_storeu_ps(scales.as_mut_ptr(), search_x16(&t, &xt, &w)) };
        for ((x, s), y) in xs.chunks_exact(subs_per_block).zip(scales.chunks_exact(subs_per_block)).zip(ys) {
            B::finish(&t, x, s, y);
        }
    }
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
