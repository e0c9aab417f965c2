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
//!   `kquants.rs` with 16-element sub-blocks;
//! * Q3_K: `make_q3_quants(4, x, L, true)`: a rounding, then up to 5 sweeps of coordinate descent
//!   that visit the elements in order and may change one code at a time, each change feeding the
//!   running sums the next element sees. A lane's sweep is a pure function of its codes and sums,
//!   so a sweep that changed nothing in a lane would change nothing again: running every lane
//!   until no lane changed (at most 5 sweeps, as the scalar loop) gives each lane exactly the
//!   sweeps the scalar code makes. The sweep is one long dependency chain per element (a
//!   division on it), so four super-blocks go through it together to keep the units busy.
//!
//! The per-super-block epilogue (4- or 6-bit sub-block scales against the largest, fp16 `d`) is
//! the scalar code's; the codes are then recomputed against the stored scales one sub-block (one
//! zmm) at a time and bit-packed with vectors. Super-blocks with a NaN or an infinity go to the
//! scalar reference, so that nothing here has to argue about them.

use std::arch::x86_64::*;

use super::kquants::{any_non_finite_x16, clamp_x16, nearest_int_x16, search_qkx2_x16, transpose16, Qkx2};
use super::{entry_points, store_u8x16};
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::kquants::q3_k::pack_scales;
use crate::formats::kquants::search::{nearest_int, GROUP_MAX_EPS};
use crate::formats::kquants::{BlockQ2K, BlockQ3K, QK_K};
use crate::formats::BlockFormat;

entry_points! {
    quantize_q2_k => quantize_q2_k_avx512(&[f32], &mut [u8]);
    quantize_q3_k => quantize_q3_k_avx512(&[f32], &mut [u8]);
}

/// `quantize_row_q2_K_ref`'s `make_qkx2_quants` parameters (its weights are `|x|`).
const Q2_K: Qkx2 = Qkx2 { nmax: 3, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true };

/// A super-block as 16 sub-blocks of 16.
type Rows = [[f32; 16]; 16];

/// Super-blocks processed together by the Q3_K coordinate descent (independent dependency chains).
const Q3_GROUP: usize = 4;

/// The 16 sub-blocks of `x` as vectors (untransposed: vector j is sub-block j).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_rows(x: &Rows) -> [__m512; 16] {
    // SAFETY: each row is 16 readable floats; `loadu` has no alignment requirement.
    x.map(|r| unsafe { _mm512_loadu_ps(r.as_ptr()) })
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

/// `quantize_row_q2_K_ref` for one NaN- and infinity-free super-block (`rows` its sub-blocks,
/// `xt` their transpose).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_q2_k_block(rows: &[__m512; 16], xt: &[__m512; 16], y: &mut BlockQ2K) {
    const Q4SCALE: f32 = 15.0;
    let w = xt.map(|x| _mm512_abs_ps(x));
    let s = search_qkx2_x16(xt, &w, Q2_K);
    let mut scales = [0f32; 16];
    let mut mins = [0f32; 16];
    // SAFETY: each destination is 16 writable floats.
    unsafe {
        _mm512_storeu_ps(scales.as_mut_ptr(), s.scale);
        _mm512_storeu_ps(mins.as_mut_ptr(), s.the_min);
    }
    // The scalar epilogue: 4-bit scales and mins against the largest of each (NaN never wins).
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for (sc, &scale) in y.scales.iter_mut().zip(&scales) {
            // `y->scales[j] = l`: the int's low byte.
            *sc = nearest_int(iscale * scale) as u8;
        }
        y.d = fp32_to_fp16(max_scale / Q4SCALE).to_le_bytes();
    } else {
        y.scales = [0; 16];
        y.d = fp32_to_fp16(0.0).to_le_bytes();
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for (sc, &min) in y.scales.iter_mut().zip(&mins) {
            *sc |= (nearest_int(iscale * min) << 4) as u8;
        }
        y.dmin = fp32_to_fp16(max_min / Q4SCALE).to_le_bytes();
    } else {
        y.dmin = fp32_to_fp16(0.0).to_le_bytes();
    }
    // `requantize`: clamp(nearest_int((x + m) / d), 0, 3) per sub-block; a zero d keeps the
    // search's codes.
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

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q2_k_avx512(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [BlockQ2K] = bytemuck::cast_slice_mut(dst);
    let (xs, x_rest) = src.as_chunks::<16>();
    let (xs, _) = xs.as_chunks::<16>();
    assert!(x_rest.is_empty() && xs.len() * QK_K == src.len() && xs.len() == blocks.len(), "partial blocks");
    for (x, y) in xs.iter().zip(blocks) {
        let rows = load_rows(x);
        let xt = transpose16(rows);
        if any_non_finite_x16(&xt) {
            BlockQ2K::quantize_block(x.as_flattened(), y);
        } else {
            quantize_q2_k_block(&rows, &xt, y);
        }
    }
}

// ---- Q3_K ---------------------------------------------------------------------------------------

/// `make_q3_quants(4, x, L, true)` of ggml for the 16 sub-blocks of each of `K` super-blocks
/// (`xt[k][i]` lane s is element i of sub-block s of super-block k): each super-block's 16
/// scales and its codes `L = l + 4` (transposed; 0 in every code of an empty sub-block). Every
/// line mirrors a line of `formats::kquants::search::make_q3_quants`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn search_q3_x16<const K: usize>(xt: &[[__m512; 16]; K]) -> ([__m512; K], [[__m512i; 16]; K]) {
    const NMAX: i32 = 4;
    let zero = _mm512_setzero_ps();
    let (lo, hi) = (_mm512_set1_epi32(-NMAX), _mm512_set1_epi32(NMAX - 1));
    // `(-nmax).max(nearest_int(v).min(nmax - 1))` as a float (exact: a small integer).
    let code = |v: __m512| _mm512_cvtepi32_ps(_mm512_max_epi32(lo, _mm512_min_epi32(nearest_int_x16(v), hi)));
    let mut empty = [0 as __mmask16; K];
    let mut w = [[zero; 16]; K];
    let mut wx = [[zero; 16]; K];
    let mut l = [[zero; 16]; K];
    let mut sumlx = [zero; K];
    let mut suml2 = [zero; K];
    for k in 0..K {
        // The first element of largest magnitude: `if (ax > amax) { amax = ax; max = x; }`.
        let mut max = zero;
        let mut amax = zero;
        for &x in &xt[k] {
            let ax = _mm512_abs_ps(x);
            let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax);
            amax = _mm512_mask_mov_ps(amax, larger, ax);
            max = _mm512_mask_mov_ps(max, larger, x);
        }
        // amax < GROUP_MAX_EPS: all codes 0, scale 0 (applied at the end; such lanes compute
        // garbage meanwhile, and their changes do not keep the sweeps going).
        empty[k] = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax, _mm512_set1_ps(GROUP_MAX_EPS));
        let iscale = _mm512_div_ps(_mm512_set1_ps(-(NMAX as f32)), max);
        for i in 0..16 {
            let x = xt[k][i];
            // w = x*x; sumlx += w*x*l; suml2 += w*l*l.
            w[k][i] = _mm512_mul_ps(x, x);
            wx[k][i] = _mm512_mul_ps(w[k][i], x);
            let li = code(_mm512_mul_ps(iscale, x));
            l[k][i] = li;
            sumlx[k] = _mm512_add_ps(sumlx[k], _mm512_mul_ps(wx[k][i], li));
            suml2[k] = _mm512_add_ps(suml2[k], _mm512_mul_ps(_mm512_mul_ps(w[k][i], li), li));
        }
    }
    for _itry in 0..5 {
        let mut changed = [0 as __mmask16; K];
        for i in 0..16 {
            for k in 0..K {
                let (x, li) = (xt[k][i], l[k][i]);
                // slx = sumlx - w*x*l; if (slx > 0) { sl2 = suml2 - w*l*l; new_l = ... }
                let slx = _mm512_sub_ps(sumlx[k], _mm512_mul_ps(wx[k][i], li));
                let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(slx, zero);
                let sl2 = _mm512_sub_ps(suml2[k], _mm512_mul_ps(_mm512_mul_ps(w[k][i], li), li));
                let new_l = code(_mm512_div_ps(_mm512_mul_ps(x, sl2), slx));
                // if (new_l != L[i]) { slx += w*x*new_l; sl2 += w*new_l*new_l; ... }
                let differs = positive & _mm512_cmp_ps_mask::<_CMP_NEQ_OQ>(new_l, li);
                let slx = _mm512_add_ps(slx, _mm512_mul_ps(wx[k][i], new_l));
                let sl2 = _mm512_add_ps(sl2, _mm512_mul_ps(_mm512_mul_ps(w[k][i], new_l), new_l));
                // if (sl2 > 0 && slx*slx*suml2 > sumlx*sumlx*sl2) { take it }
                let gain = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(
                    _mm512_mul_ps(_mm512_mul_ps(slx, slx), suml2[k]),
                    _mm512_mul_ps(_mm512_mul_ps(sumlx[k], sumlx[k]), sl2),
                );
                let take = differs & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(sl2, zero) & gain;
                l[k][i] = _mm512_mask_mov_ps(li, take, new_l);
                sumlx[k] = _mm512_mask_mov_ps(sumlx[k], take, slx);
                suml2[k] = _mm512_mask_mov_ps(suml2[k], take, sl2);
                changed[k] |= take;
            }
        }
        if (0..K).all(|k| changed[k] & !empty[k] == 0) {
            break;
        }
    }
    let four = _mm512_set1_epi32(NMAX);
    let scales: [__m512; K] = std::array::from_fn(|k| {
        // `suml2 > 0 ? sumlx / suml2 : 0`, and 0 for an empty sub-block.
        let fitted = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(suml2[k], zero) & !empty[k];
        _mm512_maskz_div_ps(fitted, sumlx[k], suml2[k])
    });
    let codes = std::array::from_fn(|k| l[k].map(|v| _mm512_maskz_add_epi32(!empty[k], _mm512_cvtps_epi32(v), four)));
    (scales, codes)
}

/// The rest of `quantize_row_q3_K_ref` for one super-block after its search: the 6-bit scales and
/// fp16 `d` as the scalar code computes them, the codes recomputed against the stored scales,
/// their high bits into `hmask` and their low two bits into `qs`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn finish_q3_k_block(rows: &[__m512; 16], scale: __m512, search_l: &[__m512i; 16], y: &mut BlockQ3K) {
    let mut scales = [0f32; 16];
    // SAFETY: `scales` is 16 writable floats.
    unsafe { _mm512_storeu_ps(scales.as_mut_ptr(), scale) };
    // The sub-block scale of largest magnitude, signed; the first of equal ones wins.
    let mut max_scale = 0f32;
    let mut amax = 0f32;
    for &s in &scales {
        if s.abs() > amax {
            amax = s.abs();
            max_scale = s;
        }
    }
    let mut ls = [0i8; 16];
    // `if (max_scale)`: NaN counts as true.
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (l, &s) in ls.iter_mut().zip(&scales) {
            // `int8_t l = nearest_int(...)` keeps the low byte before clamping.
            *l = (nearest_int(iscale * s) as i8).clamp(-32, 31) + 32;
        }
        pack_scales(&ls, &mut y.scales);
        y.d = fp32_to_fp16(1.0 / iscale).to_le_bytes();
    } else {
        y.scales = [0; 12];
        y.d = fp32_to_fp16(0.0).to_le_bytes();
    }
    // Codes clamp(nearest_int(x / d), -4, 3) + 4 with d = d_all * (stored scale - 32); a zero d
    // keeps the search's codes. `ls` is what `y.scales` stores (all 0 when it is zeroed).
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
    let rows = x.map(|x| load_rows(&x));
    let xt = rows.map(|r| transpose16(r));
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
    let (scales, codes) = search_q3_x16(&xt);
    for k in 0..K {
        finish_q3_k_block(&rows[k], scales[k], &codes[k], &mut y[k]);
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
