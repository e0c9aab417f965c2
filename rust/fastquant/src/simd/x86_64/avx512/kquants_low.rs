//! AVX-512 quantize kernels for Q2_K and Q3_K (plain path, no imatrix).
//!
//! Both formats split a super-block into 16 sub-blocks of 16, so one zmm holds one super-block's
//! 16 sub-blocks, one per lane, after a 16x16 transpose (vector `xt[i]` is element i of every
//! sub-block). Each lane runs exactly the scalar search's float operations in exactly its order,
//! as the Q4_K..Q6_K kernels do (see `kquants.rs` for the rules: no FMA, products grouped as in
//! the scalar code, masked selects under the scalar code's own comparisons, ggml's `nearest_int`
//! bit trick on integer lanes), so every lane's result equals the scalar one bit for bit:
//!
//! * Q2_K: `make_qkx2_quants(3, x, |x|, L, -0.5, 0.1, 15, use_mad)`, the generic lane search of
//!   `kquants.rs` with 16-element sub-blocks. Each candidate scale starts from the best fit's
//!   `min` so far, so one super-block's 16 candidates form a dependency chain: four super-blocks
//!   are searched together, their chains interleaved;
//! * Q3_K: `make_q3_quants(4, x, L, true)`: a rounding, then up to 5 sweeps of coordinate descent
//!   that visit the elements in order and may change one code at a time, each change feeding the
//!   running sums the next element sees. A lane's sweep is a pure function of its codes and sums,
//!   so a sweep that changed nothing in a lane would change nothing again: running every lane
//!   until no lane changed (at most 5 sweeps, as the scalar loop) gives each lane exactly the
//!   sweeps the scalar code makes. The sweep is one long dependency chain per element (a
//!   division on it), so eight super-blocks go through it together to keep the units busy, and a
//!   super-block none of whose lanes changed in a sweep skips the rest. (Packing the few lanes
//!   still moving after the first sweep into whole vectors was tried: no faster, as the packed
//!   vectors are too few to hide the chain's latency.)
//!
//! The per-super-block epilogue (4- or 6-bit sub-block scales against the largest, fp16 `d`) is
//! the scalar code's; the codes are then recomputed against the stored scales one sub-block (one
//! zmm) at a time and bit-packed with vectors. Super-blocks with a NaN or an infinity go to the
//! scalar reference, so that nothing here has to argue about them.

use std::arch::x86_64::*;

use super::kquants::{
    any_non_finite_x16, clamp_x16, nearest_int_x16, search_qkx2_x16, transpose16_in_place, Qkx2, Searched,
};
use super::{entry_points, store_u8x16};
use crate::formats::float::fp16_to_fp32;
use crate::formats::kquants::q2_k::set_scales_ref as set_q2_k_scales;
use crate::formats::kquants::q3_k::set_scales_ref as set_q3_k_scales;
use crate::formats::kquants::search::GROUP_MAX_EPS;
use crate::formats::kquants::{BlockQ2K, BlockQ3K, QK_K};
use crate::formats::BlockFormat;

entry_points! {
    quantize_q2_k => quantize_q2_k_avx512(&[f32], &mut [u8]);
    quantize_q3_k => quantize_q3_k_avx512(&[f32], &mut [u8]);
}

/// `quantize_row_q2_K_ref`'s `make_qkx2_quants` parameters (its weights are `|x|`).
const Q2_K: Qkx2 = Qkx2 { nmax: 3, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true };

/// A super-block as 16 sub-blocks of 16.
pub(super) type Rows = [[f32; 16]; 16];

/// Super-blocks searched together by the Q2_K kernel (independent dependency chains).
pub(super) const Q2_GROUP: usize = 4;

/// Super-blocks processed together by the Q3_K coordinate descent (independent dependency chains).
const Q3_GROUP: usize = 8;

/// The 16 sub-blocks of `x` as vectors (untransposed: vector j is sub-block j).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn load_rows(x: &Rows) -> [__m512; 16] {
    // SAFETY: each row is 16 readable floats; `loadu` has no alignment requirement.
    std::array::from_fn(|j| unsafe { _mm512_loadu_ps(x[j].as_ptr()) })
}

/// Stores 16 vectors of 16 lanes; `out[i][s]` is lane s of `v[i]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn store_lanes(v: &[__m512i; 16]) -> [[i32; 16]; 16] {
    let mut out = [[0i32; 16]; 16];
    for (o, &v) in out.iter_mut().zip(v) {
        // SAFETY: `o` is 16 writable ints.
        unsafe { _mm512_storeu_si512(o.as_mut_ptr().cast(), v) };
    }
    out
}

/// Sub-block `j`'s 16 codes from the transposed codes `lanes` (lane j of every vector), as a row.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn lane_as_row(lanes: &[[i32; 16]; 16], j: usize) -> __m512i {
    let row: [i32; 16] = std::array::from_fn(|i| lanes[i][j]);
    // SAFETY: `row` is 16 readable ints.
    unsafe { _mm512_loadu_si512(row.as_ptr().cast()) }
}

/// Packs 2-bit codes (row j = sub-block j's 16 codes, each 0..4 in an i32 lane) in the Q2_K /
/// Q3_K `qs` layout: byte `32*h + k` holds elements `128*h + k + 32*s` (s = 0..4) at bits 2s,
/// and element `128*h + 32*s + k` is element k % 16 of sub-block `8*h + 2*s + k / 16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pack_2bit(rows: &[__m512i; 16], qs: &mut [u8; QK_K / 4]) {
    for h in 0..2 {
        for half in 0..2 {
            let r = |s: usize| rows[8 * h + 2 * s + half];
            let v = _mm512_or_si512(
                _mm512_or_si512(r(0), _mm512_slli_epi32::<2>(r(1))),
                _mm512_or_si512(_mm512_slli_epi32::<4>(r(2)), _mm512_slli_epi32::<6>(r(3))),
            );
            store_u8x16(&mut qs[32 * h + 16 * half..], _mm512_cvtepi32_epi8(v));
        }
    }
}

// ---- Q2_K ---------------------------------------------------------------------------------------

/// The rest of `quantize_row_q2_K_ref` for one super-block (`rows` its sub-blocks) after its
/// search: the scales as the scalar code sets them, the codes recomputed against them, and the packing.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn finish_q2_k_block(rows: &[__m512; 16], s: &Searched<16>, y: &mut BlockQ2K) {
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    // SAFETY: each destination is 16 writable floats.
    unsafe {
        _mm512_storeu_ps(scales.as_mut_ptr(), s.scale);
        _mm512_storeu_ps(mins.as_mut_ptr(), s.the_min);
    }
    set_q2_k_scales(&scales, &mins, y);
    requantize_pack_q2_k(rows, s, y);
}

/// The end of both Q2_K quantizers once `y`'s scales are set: the codes of every sub-block
/// (`rows[j]`) recomputed against them, `clamp(nearest_int((x + m) / d), 0, 3)`, a zero d keeping
/// the search's codes, and the packing.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn requantize_pack_q2_k(rows: &[__m512; 16], s: &Searched<16>, y: &mut BlockQ2K) {
    let dm = fp16_to_fp32(u16::from_le_bytes(y.d));
    let mm = fp16_to_fp32(u16::from_le_bytes(y.dmin));
    let three = _mm512_set1_epi32(3);
    let mut search = None;
    let mut l = [_mm512_setzero_si512(); 16];
    for j in 0..16 {
        let d = dm * (y.scales[j] & 0xF) as f32;
        if d == 0.0 {
            let lanes = search.get_or_insert_with(|| store_lanes(&s.l.map(|v| _mm512_cvtps_epi32(v))));
            l[j] = lane_as_row(lanes, j);
            continue;
        }
        let m = mm * (y.scales[j] >> 4) as f32;
        let q = _mm512_div_ps(_mm512_add_ps(rows[j], _mm512_set1_ps(m)), _mm512_set1_ps(d));
        l[j] = clamp_x16(nearest_int_x16(q), three);
    }
    pack_2bit(&l, &mut y.qs);
}

/// `quantize_row_q2_K_ref` for `K` super-blocks searched together; any with a NaN or an
/// infinity makes the whole group go one block at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_q2_k_group<const K: usize>(x: &[Rows; K], y: &mut [BlockQ2K; K]) {
    let rows: [[__m512; 16]; K] = std::array::from_fn(|k| load_rows(&x[k]));
    let mut xt = rows;
    for xt in &mut xt {
        transpose16_in_place(xt);
    }
    if xt.iter().any(|xt| any_non_finite_x16(xt)) {
        for (x, y) in x.iter().zip(y) {
            if K > 1 {
                quantize_q2_k_group::<1>(std::array::from_ref(x), std::array::from_mut(y));
            } else {
                BlockQ2K::quantize_block(x.as_flattened(), y);
            }
        }
        return;
    }
    let w = xt.map(|xt| xt.map(|x| _mm512_abs_ps(x)));
    let searched = search_qkx2_x16(&xt, &w, Q2_K);
    for k in 0..K {
        finish_q2_k_block(&rows[k], &searched[k], &mut y[k]);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q2_k_avx512(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ2K] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<16>();
    let (xs, _) = xs.as_chunks::<16>();
    assert!(x_rest.is_empty() && xs.len() * QK_K == src.len() && xs.len() == blocks.len(), "partial blocks");
    let (groups, x_tail) = xs.as_chunks::<Q2_GROUP>();
    let (y_groups, y_tail) = blocks.as_chunks_mut::<Q2_GROUP>();
    for (x, y) in groups.iter().zip(y_groups) {
        quantize_q2_k_group(x, y);
    }
    for (x, y) in x_tail.iter().zip(y_tail) {
        quantize_q2_k_group::<1>(std::array::from_ref(x), std::array::from_mut(y));
    }
}

// ---- Q3_K ---------------------------------------------------------------------------------------

/// `make_q3_quants(4, x, L, true)` of ggml in progress for the 16 sub-blocks of one super-block
/// (lane s is sub-block s): the weights, the codes `l` (-4..4, as floats) and the running sums.
/// Every line of [`Q3Lanes::start`], [`Q3Lanes::sweep_element`] and [`Q3Lanes::result`] mirrors
/// a line of `formats::kquants::search::make_q3_quants`.
struct Q3Lanes {
    /// `w = x*x` and `w*x` of element i (lane s: sub-block s).
    w: [__m512; 16],
    wx: [__m512; 16],
    l: [__m512; 16],
    sumlx: __m512,
    suml2: __m512,
    /// Lanes with amax < GROUP_MAX_EPS: all codes 0 and scale 0 in the end; meanwhile they compute
    /// garbage, whose changes do not keep the sweeps going.
    empty: __mmask16,
}

/// `(-nmax).max(nearest_int(v).min(nmax - 1))` for nmax 4, as a float (exact: a small integer).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn q3_code(v: __m512) -> __m512 {
    let l = _mm512_min_epi32(nearest_int_x16(v), _mm512_set1_epi32(3));
    _mm512_cvtepi32_ps(_mm512_max_epi32(_mm512_set1_epi32(-4), l))
}

impl Q3Lanes {
    /// The rounding against `-nmax / max` and its sums (`xt[i]` is element i of every sub-block).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    fn start(xt: &[__m512; 16]) -> Self {
        let zero = _mm512_setzero_ps();
        // The first element of largest magnitude: `if (ax > amax) { amax = ax; max = x; }`.
        let mut max = zero;
        let mut amax = zero;
        for &x in xt {
            let ax = _mm512_abs_ps(x);
            let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax);
            amax = _mm512_mask_mov_ps(amax, larger, ax);
            max = _mm512_mask_mov_ps(max, larger, x);
        }
        let empty = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax, _mm512_set1_ps(GROUP_MAX_EPS));
        let iscale = _mm512_div_ps(_mm512_set1_ps(-4.0), max);
        // w = x*x; sumlx += w*x*l; suml2 += w*l*l.
        let w = xt.map(|x| _mm512_mul_ps(x, x));
        let wx: [__m512; 16] = std::array::from_fn(|i| _mm512_mul_ps(w[i], xt[i]));
        let l = xt.map(|x| q3_code(_mm512_mul_ps(iscale, x)));
        let mut sumlx = zero;
        let mut suml2 = zero;
        for i in 0..16 {
            sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(wx[i], l[i]));
            suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(w[i], l[i]), l[i]));
        }
        Self { w, wx, l, sumlx, suml2, empty }
    }

    /// Element i (value `x` in every lane) of one coordinate-descent sweep; returns the lanes
    /// whose code changed.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    fn sweep_element(&mut self, i: usize, x: __m512) -> __mmask16 {
        let zero = _mm512_setzero_ps();
        let (w, wx, li) = (self.w[i], self.wx[i], self.l[i]);
        // slx = sumlx - w*x*l; if (slx > 0) { sl2 = suml2 - w*l*l; new_l = ... }
        let slx = _mm512_sub_ps(self.sumlx, _mm512_mul_ps(wx, li));
        let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(slx, zero);
        let sl2 = _mm512_sub_ps(self.suml2, _mm512_mul_ps(_mm512_mul_ps(w, li), li));
        let new_l = q3_code(_mm512_div_ps(_mm512_mul_ps(x, sl2), slx));
        // if (new_l != L[i]) { slx += w*x*new_l; sl2 += w*new_l*new_l; ... }
        let differs = positive & _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(new_l, li);
        let slx = _mm512_add_ps(slx, _mm512_mul_ps(wx, new_l));
        let sl2 = _mm512_add_ps(sl2, _mm512_mul_ps(_mm512_mul_ps(w, new_l), new_l));
        // if (sl2 > 0 && slx*slx*suml2 > sumlx*sumlx*sl2) { take it }
        let gain = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(
            _mm512_mul_ps(_mm512_mul_ps(slx, slx), self.suml2),
            _mm512_mul_ps(_mm512_mul_ps(self.sumlx, self.sumlx), sl2),
        );
        let take = differs & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(sl2, zero) & gain;
        self.l[i] = _mm512_mask_mov_ps(li, take, new_l);
        self.sumlx = _mm512_mask_mov_ps(self.sumlx, take, slx);
        self.suml2 = _mm512_mask_mov_ps(self.suml2, take, sl2);
        take
    }

    /// The scales `suml2 > 0 ? sumlx / suml2 : 0` and the codes `L = l + 4` (transposed), with
    /// empty lanes' scale and codes 0.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    #[inline]
    fn result(&self) -> (__m512, [__m512i; 16]) {
        let fitted = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.suml2, _mm512_setzero_ps()) & !self.empty;
        let scale = _mm512_maskz_div_ps(fitted, self.sumlx, self.suml2);
        let four = _mm512_set1_epi32(4);
        (scale, self.l.map(|v| _mm512_maskz_add_epi32(!self.empty, _mm512_cvtps_epi32(v), four)))
    }
}

/// The coordinate descent of `make_q3_quants` (up to 5 sweeps) on `K` super-blocks at once, their
/// independent dependency chains interleaved; a super-block none of whose lanes changed in a sweep
/// skips the rest (its lanes would not change again).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
#[allow(clippy::needless_range_loop)] // element-major over the super-blocks, as the scalar sweep
fn q3_sweeps<const K: usize>(lanes: &mut [Q3Lanes; K], xt: &[[__m512; 16]; K]) {
    let mut active = [true; K];
    for _itry in 0..5 {
        let mut changed = [0 as __mmask16; K];
        for i in 0..16 {
            for k in 0..K {
                if active[k] {
                    changed[k] |= lanes[k].sweep_element(i, xt[k][i]);
                }
            }
        }
        for k in 0..K {
            active[k] = changed[k] & !lanes[k].empty != 0;
        }
        if !active.contains(&true) {
            break;
        }
    }
}

/// The rest of `quantize_row_q3_K_ref` for one super-block after its search: the 6-bit scales and
/// fp16 `d` as the scalar code computes them, the codes recomputed against the stored scales,
/// their high bits into `hmask` and their low two bits into `qs`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn finish_q3_k_block(rows: &[__m512; 16], lanes: &Q3Lanes, y: &mut BlockQ3K) {
    let (scale, search_l) = lanes.result();
    let mut scales = [0f32; 16];
    // SAFETY: `scales` is 16 writable floats.
    unsafe { _mm512_storeu_ps(scales.as_mut_ptr(), scale) };
    let ls = set_q3_k_scales(&scales, y);
    requantize_pack_q3_k(rows, &search_l, &ls, y);
}

/// The end of both Q3_K quantizers once `y`'s scales and `d` are set (`ls` the stored 6-bit
/// scales): the codes recomputed against them, a zero d keeping the search's (`search_l`,
/// transposed), their high bits into `hmask` and their low two bits into `qs`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn requantize_pack_q3_k(rows: &[__m512; 16], search_l: &[__m512i; 16], ls: &[i8; 16], y: &mut BlockQ3K) {
    // Codes clamp(nearest_int(x / d), -4, 3) + 4 with d = d_all * (stored scale - 32); a zero d
    // keeps the search's codes.
    let d_all = fp16_to_fp32(u16::from_le_bytes(y.d));
    let (lo, hi, four) = (_mm512_set1_epi32(-4), _mm512_set1_epi32(3), _mm512_set1_epi32(4));
    let mut search = None;
    let mut l = [_mm512_setzero_si512(); 16];
    for j in 0..16 {
        let d = d_all * (ls[j] as i32 - 32) as f32;
        if d == 0.0 {
            let lanes = search.get_or_insert_with(|| store_lanes(search_l));
            l[j] = lane_as_row(lanes, j);
            continue;
        }
        let q = nearest_int_x16(_mm512_div_ps(rows[j], _mm512_set1_ps(d)));
        l[j] = _mm512_add_epi32(_mm512_max_epi32(lo, _mm512_min_epi32(q, hi)), four);
    }
    // hmask byte k (16 + k) has at bit b the high bit of element k of sub-block 2b (2b + 1):
    // element 32b + k of the super-block.
    for half in 0..2 {
        let mut bits = _mm_setzero_si128();
        for b in 0..8 {
            let high = _mm512_cmpgt_epi32_mask(l[2 * b + half], _mm512_set1_epi32(3));
            bits = _mm_mask_add_epi8(bits, high, bits, _mm_set1_epi8(1 << b));
        }
        store_u8x16(&mut y.hmask[16 * half..], bits);
    }
    let low = l.map(|v| _mm512_and_si512(v, _mm512_set1_epi32(3)));
    pack_2bit(&low, &mut y.qs);
}

/// `quantize_row_q3_K_ref` for `K` super-blocks searched together; any with a NaN or an
/// infinity makes the whole group go one block at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_q3_k_group<const K: usize>(x: &[Rows; K], y: &mut [BlockQ3K; K]) {
    let rows: [[__m512; 16]; K] = std::array::from_fn(|k| load_rows(&x[k]));
    let mut xt = rows;
    for xt in &mut xt {
        transpose16_in_place(xt);
    }
    if xt.iter().any(|xt| any_non_finite_x16(xt)) {
        for (x, y) in x.iter().zip(y) {
            if K > 1 {
                quantize_q3_k_group::<1>(&[*x], std::array::from_mut(y));
            } else {
                BlockQ3K::quantize_block(x.as_flattened(), y);
            }
        }
        return;
    }
    let mut lanes: [Q3Lanes; K] = std::array::from_fn(|k| Q3Lanes::start(&xt[k]));
    q3_sweeps(&mut lanes, &xt);
    for k in 0..K {
        finish_q3_k_block(&rows[k], &lanes[k], &mut y[k]);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q3_k_avx512(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ3K] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<16>();
    let (xs, _) = xs.as_chunks::<16>();
    assert!(x_rest.is_empty() && xs.len() * QK_K == src.len() && xs.len() == blocks.len(), "partial blocks");
    let (groups, x_tail) = xs.as_chunks::<Q3_GROUP>();
    let (y_groups, y_tail) = blocks.as_chunks_mut::<Q3_GROUP>();
    for (x, y) in groups.iter().zip(y_groups) {
        quantize_q3_k_group(x, y);
    }
    for (x, y) in x_tail.iter().zip(y_tail) {
        quantize_q3_k_group::<1>(std::array::from_ref(x), std::array::from_mut(y));
    }
}
