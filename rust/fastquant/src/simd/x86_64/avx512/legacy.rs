//! AVX-512 kernels for the legacy 32-element blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! A block's 32 floats are two zmm registers, elements 0..16 and 16..32, which is exactly how the
//! nibble formats pair elements (byte j holds elements j and j + 16), so packing is `lo | hi << 4`
//! narrowed by `vpmovdb`. Quantizing computes the scales of 16 blocks at once (see
//! [`quantize_rows`]); dequantizing is one block per iteration, through the shared store path of
//! `super::dequantize_blocks`.
//!
//! Byte-exactness with `formats::legacy` rests on:
//! * the scales computed from the same values with the same IEEE operations (a vector division
//!   rounds like a scalar one), and the codes from the unrounded f32 scale, as ggml does;
//! * multiply and add kept separate (no FMA): ggml's x86 build rounds the product before the add,
//!   and a fused add would move values that sit on a .5 boundary;
//! * C's float -> int8 conversion reproduced by `vcvttps2dq` + sign extension of the low byte;
//! * ggml's first-wins ties (signed max, signed zeros) settled exactly where a reduction loses
//!   the order;
//! * blocks containing a NaN going to the scalar reference: ggml's max loops give a NaN an
//!   order-dependent role (Q8's `MAX()` fold keeps a NaN only in some positions) that a tree
//!   reduction cannot reproduce cheaply, and such blocks are too rare to be worth it. One unordered
//!   compare of the two halves per block finds them.

use std::arch::x86_64::*;

use super::{
    broadcast_max, broadcast_min, c_float_to_i8, dequantize_blocks, entry_points, fp16_ggml_x16, fp16_ggml_x4,
    load_f32x32, load_u8x16, prefetch, store_u8x16, PREFETCH_BYTES,
};
use crate::formats::legacy::{inverse_or_zero, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK};
use crate::formats::BlockFormat;

entry_points! {
    quantize_q4_0 => quantize_q4_0_avx512(&[f32], &mut [u8]);
    dequantize_q4_0 => dequantize_q4_0_avx512(&[u8], &mut [f32]);
    quantize_q4_1 => quantize_q4_1_avx512(&[f32], &mut [u8]);
    dequantize_q4_1 => dequantize_q4_1_avx512(&[u8], &mut [f32]);
    quantize_q5_0 => quantize_q5_0_avx512(&[f32], &mut [u8]);
    dequantize_q5_0 => dequantize_q5_0_avx512(&[u8], &mut [f32]);
    quantize_q5_1 => quantize_q5_1_avx512(&[f32], &mut [u8]);
    dequantize_q5_1 => dequantize_q5_1_avx512(&[u8], &mut [f32]);
    quantize_q8_0 => quantize_q8_0_avx512(&[f32], &mut [u8]);
    dequantize_q8_0 => dequantize_q8_0_avx512(&[u8], &mut [f32]);
    quantize_q8_1 => quantize_q8_1_avx512(&[f32], &mut [u8]);
    dequantize_q8_1 => dequantize_q8_1_avx512(&[u8], &mut [f32]);
}

// ---- block iteration ----------------------------------------------------------------------------

/// Blocks per group on the batched path of the quantize kernels.
const GROUP: usize = 16;

/// The quantize loop shared by all six formats, with the per-format parts as arguments.
///
/// Each block needs its scales before its codes, and a scale is a reduction over the block: done
/// block by block, that is a long dependency chain (horizontal max, compare, scalar division) that
/// keeps too many waiting instructions in the scheduler to overlap the next blocks. So blocks go
/// in groups of [`GROUP`]: `group_scales` computes the scales of all of them at once with
/// vertical operations (see [`group_min_max`]), then `encode` writes each block. A group with a
/// NaN anywhere (`group_scales` gives `None`) and the last blocks of a row go block by block:
/// `block_scales` for a NaN-free block, else the `scalar` reference.
///
/// `src` must be whole blocks and `dst` exactly their bytes (else this panics, like the scalar
/// references).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn quantize_rows<const B: usize, S: Copy>(
    src: &[f32],
    dst: &mut [u8],
    group_scales: impl Fn(&[[f32; QK]; GROUP]) -> Option<[S; GROUP]>,
    block_scales: impl Fn(&[f32; QK], __m512, __m512) -> S,
    encode: impl Fn(__m512, __m512, S, &mut [u8; B]),
    scalar: fn(&[f32; QK], &mut [u8; B]),
) {
    let (xs, x_rest) = src.as_chunks::<QK>();
    let (ys, y_rest) = dst.as_chunks_mut::<B>();
    assert!(x_rest.is_empty() && y_rest.is_empty() && xs.len() == ys.len(), "partial blocks");
    let one_by_one = |xs: &[[f32; QK]], ys: &mut [[u8; B]]| {
        for (x, y) in xs.iter().zip(ys) {
            let (lo, hi) = load_f32x32(x);
            if has_nan(lo, hi) {
                scalar(x, y);
            } else {
                encode(lo, hi, block_scales(x, lo, hi), y);
            }
        }
    };
    let (x_groups, x_rest) = xs.as_chunks::<GROUP>();
    let (y_groups, y_rest) = ys.as_chunks_mut::<GROUP>();
    for (g, (xg, yg)) in x_groups.iter().zip(y_groups).enumerate() {
        // The group PREFETCH_BYTES ahead, one 16-float cache line at a time.
        if let Some(ahead) = x_groups.get(g + PREFETCH_BYTES / size_of::<[[f32; QK]; GROUP]>()) {
            let ahead = ahead.as_flattened();
            for line in (0..ahead.len()).step_by(16) {
                prefetch(ahead, line);
            }
        }
        match group_scales(xg) {
            Some(scales) => {
                for ((x, y), s) in xg.iter().zip(yg).zip(scales) {
                    let (lo, hi) = load_f32x32(x);
                    encode(lo, hi, s, y);
                }
            }
            None => one_by_one(xg, yg),
        }
    }
    one_by_one(x_rest, y_rest);
}

/// Reduces 16 vectors with `op` (associative and commutative) into one whose lane b is the
/// reduction of `v[b]`: 15 shuffle pairs instead of 4 dependent ones per vector.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn transpose_reduce(v: &[__m512; GROUP], op: impl Fn(__m512, __m512) -> __m512) -> __m512 {
    // (`from_fn` would take `op` out of this function's target features, and so out of line.)
    // 16 -> 8: lanes 0..8 hold v[2k]'s 8 partials, lanes 8..16 v[2k + 1]'s.
    let mut halves = [_mm512_setzero_ps(); 8];
    for (k, h) in halves.iter_mut().enumerate() {
        let (a, b) = (v[2 * k], v[2 * k + 1]);
        *h = op(_mm512_shuffle_f32x4::<0b01_00_01_00>(a, b), _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b));
    }
    // 8 -> 4: 128-bit quarter q holds v[4k + q]'s 4 partials.
    let mut quarters = [_mm512_setzero_ps(); 4];
    for (k, q) in quarters.iter_mut().enumerate() {
        let (a, b) = (halves[2 * k], halves[2 * k + 1]);
        *q = op(_mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b));
    }
    // 4 -> 2: quarter q holds 2 partials of v[q] then of v[q + 4] (first pair), v[q + 8] and
    // v[q + 12] (second pair).
    let mut pairs = [_mm512_setzero_ps(); 2];
    for (k, p) in pairs.iter_mut().enumerate() {
        let (a, b) = (quarters[2 * k], quarters[2 * k + 1]);
        *p = op(_mm512_shuffle_ps::<0b01_00_01_00>(a, b), _mm512_shuffle_ps::<0b11_10_11_10>(a, b));
    }
    // 2 -> 1: lane 4q + j holds v[q + 4j]; the permute puts v[b] in lane b.
    let (a, b) = (pairs[0], pairs[1]);
    let done = op(_mm512_shuffle_ps::<0b10_00_10_00>(a, b), _mm512_shuffle_ps::<0b11_01_11_01>(a, b));
    _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), done)
}

/// The max and min of each block of a group (lane b for block b), or `None` if any has a NaN.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn group_min_max(xs: &[[f32; QK]; GROUP]) -> Option<(__m512, __m512)> {
    let mut maxes = [_mm512_setzero_ps(); GROUP];
    let mut mins = [_mm512_setzero_ps(); GROUP];
    let mut nan: __mmask16 = 0;
    for (b, x) in xs.iter().enumerate() {
        let (lo, hi) = load_f32x32(x);
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(lo, hi);
        maxes[b] = _mm512_max_ps(lo, hi);
        mins[b] = _mm512_min_ps(lo, hi);
    }
    if nan != 0 {
        return None;
    }
    Some((transpose_reduce(&maxes, |a, b| _mm512_max_ps(a, b)), transpose_reduce(&mins, |a, b| _mm512_min_ps(a, b))))
}

/// `1 / d`, or 0 where `d` is zero, on every lane (IEEE division, as the scalar code's).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn inverse_or_zero_x16(d: __m512) -> __m512 {
    let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(d, _mm512_setzero_ps());
    _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0), d)
}

/// The lanes of a vector as an array.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn lanes(v: __m512) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    // SAFETY: `out` is 16 writable floats; `storeu` has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// The inverse of [`lanes`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn from_lanes(values: &[f32; GROUP]) -> __m512 {
    // SAFETY: `values` is 16 readable floats; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_ps(values.as_ptr()) }
}

/// The 16 fp16 values of `fp16_ggml_x16` as an array.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn fp16_lanes(v: __m512) -> [u16; GROUP] {
    let mut out = [0u16; GROUP];
    // SAFETY: `out` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), fp16_ggml_x16(v)) };
    out
}

/// Whether the block has a NaN: one unordered compare covers both halves.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn has_nan(lo: __m512, hi: __m512) -> bool {
    _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(lo, hi) != 0
}

/// The scalar reference for one block that the fast path does not take.
fn quantize_block_ref<B: BlockFormat, const N: usize>(x: &[f32; QK], y: &mut [u8; N]) {
    B::quantize_block(x, bytemuck::from_bytes_mut(y));
}

/// Bit j set where element j's lane in `lo` (j < 16) or `hi` (j >= 16) is set in the two masks.
#[inline]
fn join_masks(lo: __mmask16, hi: __mmask16) -> u32 {
    lo as u32 | (hi as u32) << 16
}

/// The first element (in element order) among those whose mask bit is set; `mask` is nonzero.
#[inline]
fn first_marked(x: &[f32; QK], mask: u32) -> f32 {
    // `& 31` is a no-op for a nonzero mask and spares a bounds check.
    x[mask.trailing_zeros() as usize & 31]
}

/// ggml's signed absolute maximum of a NaN-free block: the first element with the largest |x|,
/// or +0.0 when all are zero (the loop's initial value, which a -0.0 element does not replace).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn signed_absmax(x: &[f32; QK], lo: __m512, hi: __m512) -> f32 {
    let (alo, ahi) = (_mm512_abs_ps(lo), _mm512_abs_ps(hi));
    let amax = broadcast_max(_mm512_max_ps(alo, ahi));
    if _mm512_cvtss_f32(amax) == 0.0 {
        return 0.0;
    }
    let at_max = join_masks(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(alo, amax), _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(ahi, amax));
    first_marked(x, at_max)
}

/// ggml's `min`/`max` of a NaN-free block for Q4_1/Q5_1, starting from `f32::MAX`/`-f32::MAX`.
///
/// The tree reduction finds the values; only a zero result needs care, since `vminps` picks
/// between +0.0 and -0.0 by operand order while ggml keeps the first zero of the block (its `<` and
/// `>` never replace an equal value). The sign shows in the stored `m` and in `d`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn min_max(x: &[f32; QK], lo: __m512, hi: __m512) -> (f32, f32) {
    let mut min = _mm512_cvtss_f32(broadcast_min(_mm512_min_ps(_mm512_min_ps(lo, hi), _mm512_set1_ps(f32::MAX))));
    let mut max = _mm512_cvtss_f32(broadcast_max(_mm512_max_ps(_mm512_max_ps(lo, hi), _mm512_set1_ps(-f32::MAX))));
    if min == 0.0 || max == 0.0 {
        let zero = _mm512_setzero_ps();
        let first_zero = first_marked(
            x,
            join_masks(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(lo, zero), _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(hi, zero)),
        );
        if min == 0.0 {
            min = first_zero;
        }
        if max == 0.0 {
            max = first_zero;
        }
    }
    (min, max)
}

/// fp16 bits of one scale, as `fp32_to_fp16`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn fp16_bits(d: f32) -> u16 {
    _mm_cvtsi128_si32(fp16_ggml_x4(_mm_set_ss(d))) as u16
}

/// fp16 bits of `d` then `m` (the `d, m` header of Q4_1/Q5_1 and `d, s` of Q8_1).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn fp16_pair_bytes(d: f32, m: f32) -> [u8; 4] {
    _mm_cvtsi128_si32(fp16_ggml_x4(_mm_setr_ps(d, m, 0.0, 0.0))).to_le_bytes()
}

/// `(x * id + offset)` rounded the C way to int8 and clamped above by `max_code`: the codes of
/// Q4_0 (offset 8.5, max 15) and Q5_0 (16.5, 31). Not an FMA, see the module comment.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn symmetric_codes(v: __m512, id: __m512, offset: f32, max_code: i32) -> __m512i {
    let scaled = _mm512_add_ps(_mm512_mul_ps(v, id), _mm512_set1_ps(offset));
    _mm512_min_epi32(c_float_to_i8(scaled), _mm512_set1_epi32(max_code))
}

/// `(x - min) * id + 0.5`, the code of Q4_1/Q5_1 before their different conversions to int.
/// Not an FMA, see the module comment.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn affine_scaled(v: __m512, min: __m512, id: __m512) -> __m512 {
    _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, min), id), _mm512_set1_ps(0.5))
}

/// The 16 bytes `lo & 15 | hi << 4` (the nibble layout of all four 4/5-bit formats).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pack_nibbles(lo: __m512i, hi: __m512i) -> __m128i {
    let lo = _mm512_and_si512(lo, _mm512_set1_epi32(0x0f));
    _mm512_cvtepi32_epi8(_mm512_or_si512(lo, _mm512_slli_epi32::<4>(hi)))
}

/// The fifth bits of 32 codes as Q5's `qh`: bit j is bit 4 of element j's code.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn fifth_bits(lo: __m512i, hi: __m512i) -> [u8; 4] {
    let bit4 = _mm512_set1_epi32(0x10);
    join_masks(_mm512_test_epi32_mask(lo, bit4), _mm512_test_epi32_mask(hi, bit4)).to_le_bytes()
}

/// The 16 low-nibble codes (elements 0..16) and high-nibble codes (16..32) of a nibble block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn unpack_nibbles(qs: &[u8]) -> (__m512i, __m512i) {
    let q = _mm512_cvtepu8_epi32(load_u8x16(qs));
    (_mm512_and_si512(q, _mm512_set1_epi32(0x0f)), _mm512_srli_epi32::<4>(q))
}

/// Sets bit 4 of each code whose bit in Q5's `qh` is set.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn add_fifth_bits(lo: __m512i, hi: __m512i, qh: &[u8]) -> (__m512i, __m512i) {
    let qh = u32::from_le_bytes(qh[..4].try_into().expect("4 bytes"));
    let bit4 = _mm512_set1_epi32(0x10);
    (_mm512_mask_or_epi32(lo, qh as __mmask16, lo, bit4), _mm512_mask_or_epi32(hi, (qh >> 16) as __mmask16, hi, bit4))
}

/// `(q - offset) * d` for signed formats (Q4_0, Q5_0), exactly the scalar's int -> f32 -> multiply.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn scale_symmetric(q: __m512i, offset: i32, d: __m512) -> __m512 {
    _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(q, _mm512_set1_epi32(offset))), d)
}

/// `q * d + m` for Q4_1/Q5_1: a multiply then an add, as ggml's x86 build (no FMA).
///
/// When both the product and `m` are NaN, x86 returns the first operand's NaN, quieted: the
/// product's, in ggml and in the scalar reference. LLVM treats `fadd` as commutative and may swap
/// `vaddps`'s operands, so the product's NaN is put back explicitly. The product is NaN only when
/// `d` is NaN or infinite, so blocks with a finite `d` skip this.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn scale_affine(q: __m512i, d: __m512, m: __m512, d_is_finite: bool) -> __m512 {
    let product = _mm512_mul_ps(_mm512_cvtepi32_ps(q), d);
    let sum = _mm512_add_ps(product, m);
    if d_is_finite {
        return sum;
    }
    let product_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(product, product);
    let quiet_product = _mm512_or_si512(_mm512_castps_si512(product), _mm512_set1_epi32(0x0040_0000));
    _mm512_castsi512_ps(_mm512_mask_mov_epi32(_mm512_castps_si512(sum), product_nan, quiet_product))
}

/// The fp16 at `b[at..at + 2]` as f32, in every lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn broadcast_fp16(b: &[u8], at: usize) -> __m512 {
    // Broadcast, then convert: converting a scalar first lets LLVM insert the 16 bits into a stale
    // register (`vpinsrw`), a false dependency that chains every block to the one before it.
    _mm512_cvtph_ps(_mm256_set1_epi16(i16::from_le_bytes([b[at], b[at + 1]])))
}

/// Whether the fp16 at `b[at..at + 2]` is finite (its exponent is not all ones).
#[inline]
fn fp16_is_finite(b: &[u8], at: usize) -> bool {
    u16::from_le_bytes([b[at], b[at + 1]]) & 0x7c00 != 0x7c00
}

// ---- Q4_0 ---------------------------------------------------------------------------------------

/// The scales of a Q4_0/Q5_0 block: fp16 bits of `d = max / divisor`, and `1 / d` (or 0).
type SymmetricScales = (u16, f32);

/// [`SymmetricScales`] of a group, `max` being ggml's signed absolute maximum of each block.
///
/// That is max(x) when max(x) > -min(x), min(x) when -min(x) > max(x), and +0.0 when both are zero
/// (ggml's loop starts from +0.0 and never replaces it with an equal |x|). When the largest
/// magnitude appears with both signs the first one in the block decides, which the reductions
/// cannot tell: those rare blocks are settled one by one.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn symmetric_group_scales(xs: &[[f32; QK]; GROUP], divisor: f32) -> Option<[SymmetricScales; GROUP]> {
    let (max, min) = group_min_max(xs)?;
    let neg_min = _mm512_sub_ps(_mm512_setzero_ps(), min);
    let positive_wins = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(max, neg_min);
    let negative_wins = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(neg_min, max);
    let mut signed_max = _mm512_mask_mov_ps(_mm512_maskz_mov_ps(positive_wins, max), negative_wins, min);
    let ties = !(positive_wins | negative_wins) & _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(max, _mm512_setzero_ps());
    if ties != 0 {
        let mut values = lanes(signed_max);
        for (b, (x, v)) in xs.iter().zip(&mut values).enumerate() {
            if ties >> b & 1 != 0 {
                let (lo, hi) = load_f32x32(x);
                *v = signed_absmax(x, lo, hi);
            }
        }
        signed_max = from_lanes(&values);
    }
    let d = _mm512_div_ps(signed_max, _mm512_set1_ps(divisor));
    let (d_bits, id) = (fp16_lanes(d), lanes(inverse_or_zero_x16(d)));
    let mut scales = [(0, 0.0); GROUP];
    for ((s, d_bits), id) in scales.iter_mut().zip(d_bits).zip(id) {
        *s = (d_bits, id);
    }
    Some(scales)
}

/// [`SymmetricScales`] of one NaN-free block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn symmetric_block_scales(x: &[f32; QK], lo: __m512, hi: __m512, divisor: f32) -> SymmetricScales {
    let d = signed_absmax(x, lo, hi) / divisor;
    (fp16_bits(d), inverse_or_zero(d))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q4_0_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_rows::<18, SymmetricScales>(
        src,
        dst,
        |xs| symmetric_group_scales(xs, -8.0),
        |x, lo, hi| symmetric_block_scales(x, lo, hi, -8.0),
        |lo, hi, (d_bits, id), y| {
            let id = _mm512_set1_ps(id);
            y[..2].copy_from_slice(&d_bits.to_le_bytes());
            let codes = (symmetric_codes(lo, id, 8.5, 15), symmetric_codes(hi, id, 8.5, 15));
            store_u8x16(&mut y[2..], pack_nibbles(codes.0, codes.1));
        },
        quantize_block_ref::<BlockQ4_0, 18>,
    );
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q4_0_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks::<18>(src, dst, |b| {
        let d = broadcast_fp16(b, 0);
        let (lo, hi) = unpack_nibbles(&b[2..]);
        (scale_symmetric(lo, 8, d), scale_symmetric(hi, 8, d))
    });
}

// ---- Q4_1 ---------------------------------------------------------------------------------------

/// The scales of a Q4_1/Q5_1 block: fp16 bits of `d` and `m` as stored (d in the low half),
/// the block's min, and `1 / d` (or 0).
type AffineScales = (u32, f32, f32);

/// [`AffineScales`] of a group, `d = (max - min) / levels`.
///
/// ggml's min and max start from `f32::MAX` and `-f32::MAX` (so an all-infinite block does not
/// reach infinity), and keep the first of equal values: that only shows for zeros, whose sign
/// `vminps`/`vmaxps` do not keep, so blocks whose min or max is zero are settled one by one.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn affine_group_scales(xs: &[[f32; QK]; GROUP], levels: f32) -> Option<[AffineScales; GROUP]> {
    let (max, min) = group_min_max(xs)?;
    let mut max = _mm512_max_ps(max, _mm512_set1_ps(-f32::MAX));
    let mut min = _mm512_min_ps(min, _mm512_set1_ps(f32::MAX));
    let zero = _mm512_setzero_ps();
    let zeros = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(max, zero) | _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(min, zero);
    if zeros != 0 {
        let (mut maxes, mut mins) = (lanes(max), lanes(min));
        for (b, x) in xs.iter().enumerate() {
            if zeros >> b & 1 != 0 {
                let (lo, hi) = load_f32x32(x);
                (mins[b], maxes[b]) = min_max(x, lo, hi);
            }
        }
        (max, min) = (from_lanes(&maxes), from_lanes(&mins));
    }
    let d = _mm512_div_ps(_mm512_sub_ps(max, min), _mm512_set1_ps(levels));
    let (d_bits, m_bits) = (fp16_lanes(d), fp16_lanes(min));
    let (mins, id) = (lanes(min), lanes(inverse_or_zero_x16(d)));
    let mut scales = [(0, 0.0, 0.0); GROUP];
    for (b, s) in scales.iter_mut().enumerate() {
        *s = (d_bits[b] as u32 | (m_bits[b] as u32) << 16, mins[b], id[b]);
    }
    Some(scales)
}

/// [`AffineScales`] of one NaN-free block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn affine_block_scales(x: &[f32; QK], lo: __m512, hi: __m512, levels: f32) -> AffineScales {
    let (min, max) = min_max(x, lo, hi);
    let d = (max - min) / levels;
    (u32::from_le_bytes(fp16_pair_bytes(d, min)), min, inverse_or_zero(d))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q4_1_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_rows::<20, AffineScales>(
        src,
        dst,
        |xs| affine_group_scales(xs, 15.0),
        |x, lo, hi| affine_block_scales(x, lo, hi, 15.0),
        |lo, hi, (header, min, id), y| {
            let (min, id) = (_mm512_set1_ps(min), _mm512_set1_ps(id));
            y[..4].copy_from_slice(&header.to_le_bytes());
            // ggml: MIN(15, (int8_t)(...)).
            let fifteen = _mm512_set1_epi32(15);
            let codes = (
                _mm512_min_epi32(c_float_to_i8(affine_scaled(lo, min, id)), fifteen),
                _mm512_min_epi32(c_float_to_i8(affine_scaled(hi, min, id)), fifteen),
            );
            store_u8x16(&mut y[4..], pack_nibbles(codes.0, codes.1));
        },
        quantize_block_ref::<BlockQ4_1, 20>,
    );
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q4_1_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks::<20>(src, dst, |b| {
        let (d, m, finite) = (broadcast_fp16(b, 0), broadcast_fp16(b, 2), fp16_is_finite(b, 0));
        let (lo, hi) = unpack_nibbles(&b[4..]);
        (scale_affine(lo, d, m, finite), scale_affine(hi, d, m, finite))
    });
}

// ---- Q5_0 ---------------------------------------------------------------------------------------

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q5_0_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_rows::<22, SymmetricScales>(
        src,
        dst,
        |xs| symmetric_group_scales(xs, -16.0),
        |x, lo, hi| symmetric_block_scales(x, lo, hi, -16.0),
        |lo, hi, (d_bits, id), y| {
            let id = _mm512_set1_ps(id);
            y[..2].copy_from_slice(&d_bits.to_le_bytes());
            let codes = (symmetric_codes(lo, id, 16.5, 31), symmetric_codes(hi, id, 16.5, 31));
            y[2..6].copy_from_slice(&fifth_bits(codes.0, codes.1));
            store_u8x16(&mut y[6..], pack_nibbles(codes.0, codes.1));
        },
        quantize_block_ref::<BlockQ5_0, 22>,
    );
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q5_0_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks::<22>(src, dst, |b| {
        let d = broadcast_fp16(b, 0);
        let (lo, hi) = unpack_nibbles(&b[6..]);
        let (lo, hi) = add_fifth_bits(lo, hi, &b[2..]);
        (scale_symmetric(lo, 16, d), scale_symmetric(hi, 16, d))
    });
}

// ---- Q5_1 ---------------------------------------------------------------------------------------

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q5_1_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_rows::<24, AffineScales>(
        src,
        dst,
        |xs| affine_group_scales(xs, 31.0),
        |x, lo, hi| affine_block_scales(x, lo, hi, 31.0),
        |lo, hi, (header, min, id), y| {
            let (min, id) = (_mm512_set1_ps(min), _mm512_set1_ps(id));
            y[..4].copy_from_slice(&header.to_le_bytes());
            // ggml has no clamp here: `(uint8_t)` of the truncated value keeps its low bits.
            let codes =
                (_mm512_cvttps_epi32(affine_scaled(lo, min, id)), _mm512_cvttps_epi32(affine_scaled(hi, min, id)));
            y[4..8].copy_from_slice(&fifth_bits(codes.0, codes.1));
            store_u8x16(&mut y[8..], pack_nibbles(codes.0, codes.1));
        },
        quantize_block_ref::<BlockQ5_1, 24>,
    );
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q5_1_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks::<24>(src, dst, |b| {
        let (d, m, finite) = (broadcast_fp16(b, 0), broadcast_fp16(b, 2), fp16_is_finite(b, 0));
        let (lo, hi) = unpack_nibbles(&b[8..]);
        let (lo, hi) = add_fifth_bits(lo, hi, &b[4..]);
        (scale_affine(lo, d, m, finite), scale_affine(hi, d, m, finite))
    });
}

// ---- Q8_0 and Q8_1 ------------------------------------------------------------------------------

/// C's `roundf` (ties away from zero), exactly: truncate, then step away from zero when the
/// dropped fraction is at least one half. `x - trunc(x)` is exact for |x| < 2^23, and larger
/// values (and infinities, where it is NaN and compares false) are already integers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn round_half_away(x: __m512) -> __m512 {
    let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(x);
    let round_up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_abs_ps(_mm512_sub_ps(x, t)), _mm512_set1_ps(0.5));
    // copysign(1, x): the sign bit of x on 1.0.
    let step = _mm512_or_ps(_mm512_and_ps(x, _mm512_set1_ps(-0.0)), _mm512_set1_ps(1.0));
    _mm512_mask_add_ps(t, round_up, t, step)
}

/// The int8 codes of a Q8 block, sign-extended to i32: `(int8_t)roundf(x * id)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn q8_codes(v: __m512, id: __m512) -> __m512i {
    c_float_to_i8(round_half_away(_mm512_mul_ps(v, id)))
}

/// Q8's `d = max|x| / 127`, its fp16 bits, and `1 / d` (or 0).
type Q8Scales = (f32, u16, f32);

/// [`Q8Scales`] of a group. ggml's fold starts at 0.0 and every |x| reaches it, so without NaN
/// it is max(max(x), -min(x)), whose sign `abs` fixes for all-zero blocks (+0.0, like ggml's).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn q8_group_scales(xs: &[[f32; QK]; GROUP]) -> Option<[Q8Scales; GROUP]> {
    let (max, min) = group_min_max(xs)?;
    let amax = _mm512_abs_ps(_mm512_max_ps(max, _mm512_sub_ps(_mm512_setzero_ps(), min)));
    let d = _mm512_div_ps(amax, _mm512_set1_ps(127.0));
    let (ds, d_bits, id) = (lanes(d), fp16_lanes(d), lanes(inverse_or_zero_x16(d)));
    let mut scales = [(0.0, 0, 0.0); GROUP];
    for (b, s) in scales.iter_mut().enumerate() {
        *s = (ds[b], d_bits[b], id[b]);
    }
    Some(scales)
}

/// [`Q8Scales`] of one NaN-free block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn q8_block_scales(lo: __m512, hi: __m512) -> Q8Scales {
    let amax = broadcast_max(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    let d = _mm512_cvtss_f32(amax) / 127.0;
    (d, fp16_bits(d), inverse_or_zero(d))
}

/// Stores 32 int8 codes (two registers of 16 sign-extended codes).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn store_q8_codes(qs: &mut [u8], lo: __m512i, hi: __m512i) {
    store_u8x16(&mut qs[..16], _mm512_cvtepi32_epi8(lo));
    store_u8x16(&mut qs[16..], _mm512_cvtepi32_epi8(hi));
}

/// 32 int8 codes at `qs` as f32 times `d`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn dequantize_q8_codes(qs: &[u8], d: __m512) -> (__m512, __m512) {
    let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load_u8x16(&qs[..16])));
    let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(load_u8x16(&qs[16..])));
    (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q8_0_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_rows::<34, Q8Scales>(
        src,
        dst,
        |xs| q8_group_scales(xs),
        |_, lo, hi| q8_block_scales(lo, hi),
        |lo, hi, (_, d_bits, id), y| {
            let id = _mm512_set1_ps(id);
            y[..2].copy_from_slice(&d_bits.to_le_bytes());
            store_q8_codes(&mut y[2..], q8_codes(lo, id), q8_codes(hi, id));
        },
        quantize_block_ref::<BlockQ8_0, 34>,
    );
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q8_0_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks::<34>(src, dst, |b| dequantize_q8_codes(&b[2..], broadcast_fp16(b, 0)));
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn quantize_q8_1_avx512(src: &[f32], dst: &mut [u8]) {
    quantize_rows::<36, Q8Scales>(
        src,
        dst,
        |xs| q8_group_scales(xs),
        |_, lo, hi| q8_block_scales(lo, hi),
        |lo, hi, (d, d_bits, id), y| {
            let id = _mm512_set1_ps(id);
            let (qlo, qhi) = (q8_codes(lo, id), q8_codes(hi, id));
            // s = d * Σq, the sum of the stored (wrapped) int8 codes, as the scalar code sums them.
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
            y[..2].copy_from_slice(&d_bits.to_le_bytes());
            y[2..4].copy_from_slice(&fp16_bits(sum as f32 * d).to_le_bytes());
            store_q8_codes(&mut y[4..], qlo, qhi);
        },
        quantize_block_ref::<BlockQ8_1, 36>,
    );
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_q8_1_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks::<36>(src, dst, |b| dequantize_q8_codes(&b[4..], broadcast_fp16(b, 0)));
}
