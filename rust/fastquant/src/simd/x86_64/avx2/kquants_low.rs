//! AVX2 quantize kernels for Q2_K and Q3_K (plain path, no imatrix): the AVX-512 kernels' method
//! (see `avx512/kquants_low.rs`) with 8 lanes, each super-block's 16 sub-blocks in two halves.
//!
//! Lane s of every vector runs sub-block s's `make_qkx2_quants` (Q2_K, the generic lane search of
//! `kquants.rs`) or `make_q3_quants` (Q3_K) with exactly the scalar code's float operations in
//! exactly its order, branches as blends under the scalar code's own comparisons, no FMA. The
//! Q3_K coordinate descent runs on eight halves (four super-blocks) at once, a half stopping when
//! a sweep changed none of its lanes; Q2_K's two halves are searched together. The sub-block
//! scales are picked by the scalar code's own epilogue. Blocks with a NaN or an infinity go to the
//! scalar reference.

use std::arch::x86_64::*;

use super::kquants::{abs_x8, clamp_x8, nearest_int_x8, search_qkx2_x8, select, Qkx2};
use super::safe_wrappers;
use crate::formats::float::fp16_to_fp32;
use crate::formats::kquants::q2_k::set_scales_ref as set_q2_k_scales;
use crate::formats::kquants::q3_k::set_scales_ref as set_q3_k_scales;
use crate::formats::kquants::search::GROUP_MAX_EPS;
use crate::formats::kquants::{BlockQ2K, BlockQ3K, QK_K};
use crate::formats::BlockFormat;
use crate::simd::x86_64::any_non_finite_avx2;

safe_wrappers! {
    quantize_q2_k(src: &[f32], dst: &mut [u8]) => quantize_q2_k_avx2;
    quantize_q3_k(src: &[f32], dst: &mut [u8]) => quantize_q3_k_avx2;
}

/// `quantize_row_q2_K_ref`'s `make_qkx2_quants` parameters (its weights are `|x|`).
const Q2_K: Qkx2 = Qkx2 { nmax: 3, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true };

/// A super-block as 16 sub-blocks of 16.
pub(super) type Rows = [[f32; 16]; 16];

/// Super-blocks processed together by the Q3_K coordinate descent (independent dependency chains).
const Q3_GROUP: usize = 4;

// ---- helpers -------------------------------------------------------------------------------------

/// Half `h` (sub-blocks 8h..8h + 8) of a super-block, transposed: vector i is element i of each.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn transposed_half(x: &Rows, h: usize) -> [__m256; 16] {
    let idx = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);
    let base = x[8 * h..].as_flattened().as_ptr();
    // SAFETY: lane s reads x[8h + s][i], s < 8 and i < 16: inside `x`.
    std::array::from_fn(|i| unsafe { _mm256_i32gather_ps::<4>(base.add(i), idx) })
}

/// Loads elements 8e..8e + 8 of a sub-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_half_row(row: &[f32; 16], e: usize) -> __m256 {
    // SAFETY: `row[8e..8e + 8]` is in bounds for e < 2; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(row.as_ptr().add(8 * e)) }
}

/// A sub-block's 16 codes (two vectors of 8 i32) as 16 i16 lanes in element order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn row_i16(codes: [__m256i; 2]) -> __m256i {
    // packs interleaves per 128-bit lane: a0..3 b0..3 | a4..7 b4..7; the permute restores order.
    _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(codes[0], codes[1]))
}

/// Two vectors of 16 i16 lanes (each 0..256) as 32 bytes, `a`'s first.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_bytes(out: &mut [u8; 32], a: __m256i, b: __m256i) {
    let v = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(a, b));
    // SAFETY: `out` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
}

/// Packs 2-bit codes (row j: sub-block j's 16 codes in i16 lanes) in the Q2_K / Q3_K `qs` layout:
/// byte `32*h + k` holds elements `128*h + 32*s + k` (s = 0..4) at bits 2s, and that element is
/// element k % 16 of sub-block `8*h + 2*s + k / 16`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack_2bit(rows: &[__m256i; 16], qs: &mut [u8; QK_K / 4]) {
    for (h, out) in qs.as_chunks_mut::<32>().0.iter_mut().enumerate() {
        let half = |half: usize| {
            let r = |s: usize| rows[8 * h + 2 * s + half];
            _mm256_or_si256(
                _mm256_or_si256(r(0), _mm256_slli_epi16::<2>(r(1))),
                _mm256_or_si256(_mm256_slli_epi16::<4>(r(2)), _mm256_slli_epi16::<6>(r(3))),
            )
        };
        store_bytes(out, half(0), half(1));
    }
}

/// Sub-block `j`'s codes from the transposed search codes (`codes[i][j]` element i), as i16 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn search_row(codes: &[[i32; 16]; 16], j: usize) -> __m256i {
    let row: [i32; 16] = std::array::from_fn(|i| codes[i][j]);
    // SAFETY: `row` is 16 readable ints.
    row_i16(unsafe { [_mm256_loadu_si256(row.as_ptr().cast()), _mm256_loadu_si256(row.as_ptr().add(8).cast())] })
}

/// Stores 8 lanes of each of 16 vectors into lanes `8h..8h + 8` of `out[i]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn store_half(out: &mut [[i32; 16]; 16], h: usize, v: &[__m256i; 16]) {
    for (o, &v) in out.iter_mut().zip(v) {
        // SAFETY: `o[8h..8h + 8]` is 8 writable ints for h < 2.
        unsafe { _mm256_storeu_si256(o.as_mut_ptr().add(8 * h).cast(), v) };
    }
}

// ---- Q2_K ---------------------------------------------------------------------------------------

/// `quantize_row_q2_K_ref` for one NaN- and infinity-free super-block.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q2_k_block(x: &Rows, y: &mut BlockQ2K) {
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    let mut codes = [[0i32; 16]; 16];
    // The two halves' searches interleaved (independent dependency chains).
    let xt = [transposed_half(x, 0), transposed_half(x, 1)];
    let w = xt.map(|xt| xt.map(|x| abs_x8(x)));
    for (h, (scale, the_min, l)) in search_qkx2_x8(&xt, &w, Q2_K).into_iter().enumerate() {
        // SAFETY: `scales[8h..]` and `mins[8h..]` are 8 writable floats for h < 2.
        unsafe {
            _mm256_storeu_ps(scales.as_mut_ptr().add(8 * h), scale);
            _mm256_storeu_ps(mins.as_mut_ptr().add(8 * h), the_min);
        }
        store_half(&mut codes, h, &l.map(|v| _mm256_cvtps_epi32(v)));
    }
    set_q2_k_scales(&scales, &mins, y);
    requantize_pack_q2_k(x, &codes, y);
}

/// The end of both Q2_K quantizers once `y`'s scales are set: the codes of every sub-block
/// recomputed against them, `clamp(nearest_int((x + m) / d), 0, 3)`, a zero d keeping the
/// search's codes (`codes[i][j]`: element i of sub-block j), and the packing.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn requantize_pack_q2_k(x: &Rows, codes: &[[i32; 16]; 16], y: &mut BlockQ2K) {
    let dm = fp16_to_fp32(u16::from_le_bytes(y.d));
    let mm = fp16_to_fp32(u16::from_le_bytes(y.dmin));
    let three = _mm256_set1_epi32(3);
    let l: [__m256i; 16] = std::array::from_fn(|j| {
        let d = dm * (y.scales[j] & 0xF) as f32;
        if d == 0.0 {
            return search_row(codes, j);
        }
        let (m, d) = (_mm256_set1_ps(mm * (y.scales[j] >> 4) as f32), _mm256_set1_ps(d));
        row_i16([0, 1].map(|e| {
            let q = _mm256_div_ps(_mm256_add_ps(load_half_row(&x[j], e), m), d);
            clamp_x8(nearest_int_x8(q), three)
        }))
    });
    pack_2bit(&l, &mut y.qs);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q2_k_avx2(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ2K] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<16>();
    let (xs, _) = xs.as_chunks::<16>();
    assert!(x_rest.is_empty() && xs.len() * QK_K == src.len() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        // Blocks with NaN or infinity take the scalar reference (ggml's C semantics there).
        if any_non_finite_avx2(x.as_flattened()) {
            BlockQ2K::quantize_block(x.as_flattened(), y);
        } else {
            quantize_q2_k_block(x, y);
        }
    }
}

// ---- Q3_K ---------------------------------------------------------------------------------------

/// `make_q3_quants(4, x, L, true)` in progress for 8 sub-blocks (lane s: sub-block s), as the
/// AVX-512 kernel's `Q3Lanes`: weights, codes `l` (-4..4, as floats), running sums.
struct Q3Lanes {
    w: [__m256; 16],
    wx: [__m256; 16],
    l: [__m256; 16],
    sumlx: __m256,
    suml2: __m256,
    /// All-ones in lanes with amax < GROUP_MAX_EPS (codes and scale 0 in the end).
    empty: __m256,
}

/// `(-nmax).max(nearest_int(v).min(nmax - 1))` for nmax 4, as a float (exact: a small integer).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q3_code(v: __m256) -> __m256 {
    let l = _mm256_min_epi32(nearest_int_x8(v), _mm256_set1_epi32(3));
    _mm256_cvtepi32_ps(_mm256_max_epi32(_mm256_set1_epi32(-4), l))
}

impl Q3Lanes {
    /// The rounding against `-nmax / max` and its sums (`xt[i]` is element i of every sub-block).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn start(xt: &[__m256; 16]) -> Self {
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
        let iscale = _mm256_div_ps(_mm256_set1_ps(-4.0), max);
        let w = xt.map(|x| _mm256_mul_ps(x, x));
        let wx: [__m256; 16] = std::array::from_fn(|i| _mm256_mul_ps(w[i], xt[i]));
        let l = xt.map(|x| q3_code(_mm256_mul_ps(iscale, x)));
        let mut sumlx = zero;
        let mut suml2 = zero;
        for i in 0..16 {
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], l[i]));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], l[i]), l[i]));
        }
        Self { w, wx, l, sumlx, suml2, empty }
    }

    /// Element i (value `x` in every lane) of one sweep; returns the lanes whose code changed
    /// (all-ones lanes).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn sweep_element(&mut self, i: usize, x: __m256) -> __m256 {
        let zero = _mm256_setzero_ps();
        let (w, wx, li) = (self.w[i], self.wx[i], self.l[i]);
        let slx = _mm256_sub_ps(self.sumlx, _mm256_mul_ps(wx, li));
        let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(slx, zero);
        let sl2 = _mm256_sub_ps(self.suml2, _mm256_mul_ps(_mm256_mul_ps(w, li), li));
        let new_l = q3_code(_mm256_div_ps(_mm256_mul_ps(x, sl2), slx));
        let differs = _mm256_and_ps(positive, _mm256_cmp_ps::<_CMP_NEQ_OQ>(new_l, li));
        let slx = _mm256_add_ps(slx, _mm256_mul_ps(wx, new_l));
        let sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w, new_l), new_l));
        let gain = _mm256_cmp_ps::<_CMP_GT_OQ>(
            _mm256_mul_ps(_mm256_mul_ps(slx, slx), self.suml2),
            _mm256_mul_ps(_mm256_mul_ps(self.sumlx, self.sumlx), sl2),
        );
        let take = _mm256_and_ps(_mm256_and_ps(differs, _mm256_cmp_ps::<_CMP_GT_OQ>(sl2, zero)), gain);
        self.l[i] = select(li, take, new_l);
        self.sumlx = select(self.sumlx, take, slx);
        self.suml2 = select(self.suml2, take, sl2);
        take
    }

    /// The scales `suml2 > 0 ? sumlx / suml2 : 0` and the codes `L = l + 4` (transposed), with
    /// empty lanes' scale and codes 0.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn result(&self) -> (__m256, [__m256i; 16]) {
        let fitted = _mm256_andnot_ps(self.empty, _mm256_cmp_ps::<_CMP_GT_OQ>(self.suml2, _mm256_setzero_ps()));
        let scale = _mm256_and_ps(fitted, _mm256_div_ps(self.sumlx, self.suml2));
        let keep = _mm256_castps_si256(_mm256_andnot_ps(self.empty, _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
        let four = _mm256_set1_epi32(4);
        (scale, self.l.map(|v| _mm256_and_si256(keep, _mm256_add_epi32(_mm256_cvtps_epi32(v), four))))
    }
}

/// The coordinate descent of `make_q3_quants` (up to 5 sweeps) on `H` halves at once; a half
/// none of whose lanes changed in a sweep skips the rest (its lanes would not change again).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the halves, as the scalar sweep
fn q3_sweeps<const H: usize>(lanes: &mut [Q3Lanes; H], xt: &[[__m256; 16]; H]) {
    let mut active = [true; H];
    for _itry in 0..5 {
        let mut changed = [_mm256_setzero_ps(); H];
        for i in 0..16 {
            for k in 0..H {
                if active[k] {
                    changed[k] = _mm256_or_ps(changed[k], lanes[k].sweep_element(i, xt[k][i]));
                }
            }
        }
        for k in 0..H {
            active[k] = _mm256_movemask_ps(_mm256_andnot_ps(lanes[k].empty, changed[k])) != 0;
        }
        if !active.contains(&true) {
            break;
        }
    }
}

/// The rest of `quantize_row_q3_K_ref` for one super-block after the searches of its two halves:
/// the scales as the scalar code sets them, the codes recomputed against them, the high bits into `hmask`
/// and the low two bits into `qs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn finish_q3_k_block(x: &Rows, halves: [&Q3Lanes; 2], y: &mut BlockQ3K) {
    let mut scales = [0f32; 16];
    let mut codes = [[0i32; 16]; 16];
    for (h, lanes) in halves.into_iter().enumerate() {
        let (scale, l) = lanes.result();
        // SAFETY: `scales[8h..]` is 8 writable floats for h < 2.
        unsafe { _mm256_storeu_ps(scales.as_mut_ptr().add(8 * h), scale) };
        store_half(&mut codes, h, &l);
    }
    let ls = set_q3_k_scales(&scales, y);
    requantize_pack_q3_k(x, &codes, &ls, y);
}

/// The end of both Q3_K quantizers once `y`'s scales and `d` are set (`ls` the stored 6-bit
/// scales): the codes recomputed against them, a zero d keeping the search's (`codes[i][j]`:
/// element i of sub-block j, 0..8), their high bits into `hmask` and their low two bits into `qs`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn requantize_pack_q3_k(x: &Rows, codes: &[[i32; 16]; 16], ls: &[i8; 16], y: &mut BlockQ3K) {
    // Codes clamp(nearest_int(x / d), -4, 3) + 4 with d = d_all * (stored scale - 32); a zero d
    // keeps the search's codes.
    let d_all = fp16_to_fp32(u16::from_le_bytes(y.d));
    let (lo, hi, four) = (_mm256_set1_epi32(-4), _mm256_set1_epi32(3), _mm256_set1_epi32(4));
    let l: [__m256i; 16] = std::array::from_fn(|j| {
        let d = d_all * (ls[j] as i32 - 32) as f32;
        if d == 0.0 {
            return search_row(codes, j);
        }
        let d = _mm256_set1_ps(d);
        row_i16([0, 1].map(|e| {
            let q = nearest_int_x8(_mm256_div_ps(load_half_row(&x[j], e), d));
            _mm256_add_epi32(_mm256_max_epi32(lo, _mm256_min_epi32(q, hi)), four)
        }))
    });
    // hmask byte k (16 + k) has at bit b the high bit of element k of sub-block 2b (2b + 1):
    // element 32b + k of the super-block.
    let one = _mm256_set1_epi16(1);
    let high_bits = |half: usize| {
        let mut bits = _mm256_setzero_si256();
        for b in 0..8 {
            let high = _mm256_and_si256(_mm256_srli_epi16::<2>(l[2 * b + half]), one);
            bits = _mm256_or_si256(bits, _mm256_sll_epi16(high, _mm_cvtsi32_si128(b as i32)));
        }
        bits
    };
    store_bytes(&mut y.hmask, high_bits(0), high_bits(1));
    let low = l.map(|v| _mm256_and_si256(v, _mm256_set1_epi16(3)));
    pack_2bit(&low, &mut y.qs);
}

/// `quantize_row_q3_K_ref` for `K` super-blocks (`2K` halves) searched together; any with a NaN
/// or an infinity makes the whole group go one block at a time.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q3_k_group<const K: usize, const H: usize>(x: &[Rows; K], y: &mut [BlockQ3K; K]) {
    if x.iter().any(|x| any_non_finite_avx2(x.as_flattened())) {
        for (x, y) in x.iter().zip(y) {
            if K > 1 {
                quantize_q3_k_group::<1, 2>(std::array::from_ref(x), std::array::from_mut(y));
            } else {
                BlockQ3K::quantize_block(x.as_flattened(), y);
            }
        }
        return;
    }
    let xt: [[__m256; 16]; H] = std::array::from_fn(|h| transposed_half(&x[h / 2], h % 2));
    let mut lanes: [Q3Lanes; H] = std::array::from_fn(|h| Q3Lanes::start(&xt[h]));
    q3_sweeps(&mut lanes, &xt);
    for k in 0..K {
        finish_q3_k_block(&x[k], [&lanes[2 * k], &lanes[2 * k + 1]], &mut y[k]);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q3_k_avx2(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ3K] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<16>();
    let (xs, _) = xs.as_chunks::<16>();
    assert!(x_rest.is_empty() && xs.len() * QK_K == src.len() && xs.len() == blocks.len(), "partial blocks");
    let (groups, x_tail) = xs.as_chunks::<Q3_GROUP>();
    let (y_groups, y_tail) = blocks.as_chunks_mut::<Q3_GROUP>();
    for (x, y) in groups.iter().zip(y_groups) {
        quantize_q3_k_group::<Q3_GROUP, { 2 * Q3_GROUP }>(x, y);
    }
    for (x, y) in x_tail.iter().zip(y_tail) {
        quantize_q3_k_group::<1, 2>(std::array::from_ref(x), std::array::from_mut(y));
    }
}
