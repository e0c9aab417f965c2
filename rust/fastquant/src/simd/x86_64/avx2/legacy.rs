//! AVX2 kernels for the legacy 32-element blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! A block's 32 floats live in four ymm registers (elements 0..8, 8..16, 16..24, 24..32). The
//! scalar references in `formats::legacy` are the specification; the rules that make the bytes
//! identical are:
//!
//! * C's `(int8_t)(float)` is `vcvttps2dq` (truncation; NaN and out-of-range give `0x80000000`,
//!   exactly like the scalar `cvttss2si`) followed by the low byte. Where ggml then applies
//!   `MIN(15, .)` the low byte is sign-extended first ([`min_int8`]). Narrowing to bytes packs
//!   either such values (-128..=127) or values masked to their low byte, so the saturating packs
//!   never saturate.
//! * Codes are `x * id + 8.5` as a multiply then an add, never an FMA: fusing skips the rounding
//!   of the product and moves values that sit on a .5 boundary to the other code.
//! * Reductions ignore NaN as ggml's comparisons do, using the fact that `vmaxps`/`vminps` return
//!   their second operand when either is NaN. Q8_0/Q8_1's `MAX(amax, fabsf(v))` fold depends on
//!   where a NaN sits, so blocks with a NaN go to the scalar reference (rare; the check is two
//!   compares and a movemask).
//! * A lane-parallel reduction does not know element order, so where ggml's loop keeps the first
//!   of equal candidates (the sign of the Q4_0/Q5_0 scale when +max and -max both occur, the sign
//!   of a zero min or max of Q4_1/Q5_1) the kernels find the first element equal to the result.
//!   Those cases are detected cheaply and are rare, so the search stays off the common path.
//! * Q8_0/Q8_1 round with C's `roundf` (ties away from zero): see [`c_int8_roundf`].

use std::arch::x86_64::*;

use crate::formats::legacy::{inverse_or_zero, BlockQ4_1, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK};
use crate::formats::BlockFormat;

use super::{broadcast_fp16, fp32_to_fp16, fp32x2_to_fp16, safe_wrappers};

// ---- loading, reductions, conversions ----------------------------------------------------------

/// One block's 32 floats: elements 0..8, 8..16, 16..24, 24..32.
type Block = [__m256; 4];

/// Views a row as whole blocks of `QK` floats and whole blocks of `N` bytes; panics unless both
/// sides hold the same number of whole blocks (the kernel contract, as in the scalar references).
fn quantize_blocks<'a, const N: usize>(src: &'a [f32], dst: &'a mut [u8]) -> (&'a [[f32; QK]], &'a mut [[u8; N]]) {
    let (x, x_tail) = src.as_chunks::<QK>();
    let (y, y_tail) = dst.as_chunks_mut::<N>();
    assert!(x_tail.is_empty() && y_tail.is_empty() && x.len() == y.len(), "not whole blocks");
    (x, y)
}

/// The dequantize direction of [`quantize_blocks`].
fn dequantize_blocks<'a, const N: usize>(src: &'a [u8], dst: &'a mut [f32]) -> (&'a [[u8; N]], &'a mut [[f32; QK]]) {
    let (x, x_tail) = src.as_chunks::<N>();
    let (y, y_tail) = dst.as_chunks_mut::<QK>();
    assert!(x_tail.is_empty() && y_tail.is_empty() && x.len() == y.len(), "not whole blocks");
    (x, y)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_block(x: &[f32; QK]) -> Block {
    let p = x.as_ptr();
    // SAFETY: the four 8-float loads cover exactly the 32 floats of `x`; `loadu` needs no alignment.
    unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))] }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_f32x8(y: &mut [f32; QK], i: usize, v: __m256) {
    assert!(i <= QK - 8);
    // SAFETY: elements i..i+8 are inside `y` (checked above; `i` is a constant after inlining).
    unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(i), v) }
}

/// Stores 16 bytes at `y[at..at + 16]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_u8x16<const N: usize>(y: &mut [u8; N], at: usize, v: __m128i) {
    assert!(at + 16 <= N);
    // SAFETY: bytes at..at+16 are inside `y` (checked above, a constant after inlining).
    unsafe { _mm_storeu_si128(y.as_mut_ptr().add(at).cast(), v) }
}

/// Stores 32 bytes at `y[at..at + 32]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_u8x32<const N: usize>(y: &mut [u8; N], at: usize, v: __m256i) {
    assert!(at + 32 <= N);
    // SAFETY: bytes at..at+32 are inside `y` (checked above, a constant after inlining).
    unsafe { _mm256_storeu_si256(y.as_mut_ptr().add(at).cast(), v) }
}

/// Eight bytes at `x[at..at + 8]`, zero-extended to eight u32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load_u8x8_as_u32<const N: usize>(x: &[u8; N], at: usize) -> __m256i {
    assert!(at + 8 <= N);
    // SAFETY: bytes at..at+8 are inside `x` (checked above); `loadl_epi64` needs no alignment.
    _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(x.as_ptr().add(at).cast()) })
}

/// Eight bytes at `x[at..at + 8]`, sign-extended to eight i32 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn load_i8x8_as_i32<const N: usize>(x: &[u8; N], at: usize) -> __m256i {
    assert!(at + 8 <= N);
    // SAFETY: bytes at..at+8 are inside `x` (checked above); `loadl_epi64` needs no alignment.
    _mm256_cvtepi8_epi32(unsafe { _mm_loadl_epi64(x.as_ptr().add(at).cast()) })
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn abs_ps(v: __m256) -> __m256 {
    _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)))
}

/// Horizontal max of eight lanes that hold no NaN.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(super) fn hmax(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// Horizontal min of eight lanes that hold no NaN.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hmin(v: __m256) -> f32 {
    let m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_min_ss(m, _mm_movehdup_ps(m)))
}

/// Bit i set where element i of the block equals `target` (an ordered compare: +0 == -0).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn eq_mask(v: &Block, target: f32) -> u32 {
    let t = _mm256_set1_ps(target);
    let m = |k: usize| _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(v[k], t)) as u32;
    m(0) | (m(1) << 8) | (m(2) << 16) | (m(3) << 24)
}

/// The element of `x` at the lowest set bit of `mask` (which the caller knows is non-zero).
#[inline]
fn first_where(x: &[f32; QK], mask: u32) -> f32 {
    // `& 31` only spares a bounds check: the mask is never zero here.
    x[(mask.trailing_zeros() & 31) as usize]
}

/// ggml's `signed_absmax` (Q4_0, Q5_0): the first element of largest |x| in element order, NaN
/// never winning, and +0.0 (C's initial value) when every element is zero or NaN.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn signed_absmax(x: &[f32; QK], v: &Block) -> f32 {
    // The largest element and the smallest, each clamped to include 0. Unless the two have the
    // same magnitude, every element of largest |x| has the sign of the bigger one, so element
    // order only matters on a tie, which real data hardly ever has: that keeps the search for the
    // first such element (movemasks, a dependent load) off the common path.
    //
    // max(a, max(b, 0)): a NaN in `a` or `b` drops out because vmaxps/vminps return their second
    // operand on NaN, and the second operands here are never NaN.
    let zero = _mm256_setzero_ps();
    let hi01 = _mm256_max_ps(v[0], _mm256_max_ps(v[1], zero));
    let hi23 = _mm256_max_ps(v[2], _mm256_max_ps(v[3], zero));
    let lo01 = _mm256_min_ps(v[0], _mm256_min_ps(v[1], zero));
    let lo23 = _mm256_min_ps(v[2], _mm256_min_ps(v[3], zero));
    let hi = hmax(_mm256_max_ps(hi01, hi23));
    let lo = hmin(_mm256_min_ps(lo01, lo23));
    if hi == -lo {
        return first_of_magnitude(x, hi);
    }
    // `if hi > -lo { hi } else { lo }` as a blend: a branch here would mispredict half the time.
    let (hi, lo) = (_mm_set_ss(hi), _mm_set_ss(lo));
    let hi_wins = _mm_cmp_ss::<_CMP_GT_OQ>(hi, _mm_xor_ps(lo, _mm_set_ss(-0.0)));
    _mm_cvtss_f32(_mm_blendv_ps(lo, hi, hi_wins))
}

/// The first element with |x| == `amax`, or +0.0 if `amax` is zero (ggml never updates from its
/// initial +0.0 then, even for a -0.0 element).
#[cold]
#[target_feature(enable = "avx2,fma,f16c")]
fn first_of_magnitude(x: &[f32; QK], amax: f32) -> f32 {
    if amax == 0.0 {
        return 0.0;
    }
    // Reloaded rather than passed in, so that the caller's registers need not go to memory.
    let v = load_block(x);
    let a = [abs_ps(v[0]), abs_ps(v[1]), abs_ps(v[2]), abs_ps(v[3])];
    first_where(x, eq_mask(&a, amax))
}

/// ggml's Q4_1/Q5_1 `(min, max)`: NaN never updates either, an all-NaN block gives
/// `(f32::MAX, -f32::MAX)`, and among equal values (only ±0 are equal with different bits) the
/// first in element order is kept.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn min_max(x: &[f32; QK], v: &Block) -> (f32, f32) {
    // As in `signed_absmax`: the second operand of every vminps/vmaxps is NaN-free.
    let big = _mm256_set1_ps(f32::MAX);
    let small = _mm256_set1_ps(-f32::MAX);
    let mn01 = _mm256_min_ps(v[0], _mm256_min_ps(v[1], big));
    let mn23 = _mm256_min_ps(v[2], _mm256_min_ps(v[3], big));
    let mx01 = _mm256_max_ps(v[0], _mm256_max_ps(v[1], small));
    let mx23 = _mm256_max_ps(v[2], _mm256_max_ps(v[3], small));
    let mut min = hmin(_mm256_min_ps(mn01, mn23));
    let mut max = hmax(_mm256_max_ps(mx01, mx23));
    // A zero result may have the other zero's sign; the scalar loop keeps the first zero it saw.
    if min == 0.0 || max == 0.0 {
        let first_zero = first_where(x, eq_mask(v, 0.0));
        if min == 0.0 {
            min = first_zero;
        }
        if max == 0.0 {
            max = first_zero;
        }
    }
    (min, max)
}

/// The scalar reference for one block, for the rare blocks whose exact result depends on NaN
/// details the vector code does not reproduce; kept out of line so it does not crowd the loops.
#[cold]
#[inline(never)]
fn quantize_scalar<B: BlockFormat>(x: &[f32; QK], y: &mut [u8]) {
    B::quantize_block(x, bytemuck::from_bytes_mut(y));
}

/// See [`quantize_scalar`].
#[cold]
#[inline(never)]
fn dequantize_scalar<B: BlockFormat>(x: &[u8], y: &mut [f32; QK]) {
    bytemuck::from_bytes::<B>(x).dequantize_block(y);
}

/// True if any element of the block is NaN.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn has_nan(v: &Block) -> bool {
    let n01 = _mm256_cmp_ps::<_CMP_UNORD_Q>(v[0], v[1]);
    let n23 = _mm256_cmp_ps::<_CMP_UNORD_Q>(v[2], v[3]);
    _mm256_movemask_ps(_mm256_or_ps(n01, n23)) != 0
}

/// `MIN(max_code, (int8_t)t)` per i32 lane: C's `(int8_t)` keeps the low byte, sign-extended.
/// `t` comes from `vcvttps2dq`, which gives `0x80000000` for NaN/out of range as scalar
/// `cvttss2si` does (low byte 0).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn min_int8(t: __m256i, max_code: __m256i) -> __m256i {
    _mm256_min_epi32(max_code, _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(t)))
}

/// Codes `MIN(max_code, (int8_t)(x * id + offset))` of Q4_0/Q5_0, multiply and add kept separate.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn codes_symmetric(v: Block, id: f32, offset: f32, max_code: i32) -> [__m256i; 4] {
    let (id, offset, max_code) = (_mm256_set1_ps(id), _mm256_set1_ps(offset), _mm256_set1_epi32(max_code));
    v.map(|x| min_int8(_mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(x, id), offset)), max_code))
}

/// The i32 results of `vcvttps2dq((x - min) * id + 0.5)` of Q4_1/Q5_1, subtract, multiply and
/// add kept separate.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn codes_affine(v: Block, min: f32, id: f32) -> [__m256i; 4] {
    let (min, id, half) = (_mm256_set1_ps(min), _mm256_set1_ps(id), _mm256_set1_ps(0.5));
    v.map(|x| _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(x, min), id), half)))
}

/// Narrows four vectors of i32 lanes holding -128..=127 to 32 bytes in element order (the packs
/// saturate, so nothing outside that range may reach them).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pack_i8x32(q: [__m256i; 4]) -> __m256i {
    // packs work per 128-bit lane, giving dwords [q0 0..4, q1 0..4, q2 0..4, q3 0..4 | q0 4..8, ..].
    let b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// The low byte of every i32 lane (C's `(int8_t)`/`(uint8_t)` of an int), 32 bytes in element
/// order. Masking first keeps the saturating packs exact.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn low_bytes(q: [__m256i; 4]) -> __m256i {
    let byte = _mm256_set1_epi32(0xff);
    let [a, b, c, d] = q.map(|q| _mm256_and_si256(q, byte));
    let w = _mm256_packus_epi16(_mm256_packus_epi32(a, b), _mm256_packus_epi32(c, d));
    _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// ggml's nibble bytes `(c[j] & low_mask) | (c[j + 16] << 4) as u8` from 32 code bytes in
/// element order. Q4 passes `low_mask = 0xff` because ggml ORs the whole first code in
/// (`xi0 | (xi1 << 4)`); Q5 keeps its low nibble.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn nibble_bytes(c: __m256i, low_mask: u8) -> __m128i {
    let first = _mm_and_si128(_mm256_castsi256_si128(c), _mm_set1_epi8(low_mask as i8));
    // There is no byte shift: shift 16-bit lanes and drop what crossed into the upper nibble.
    let second = _mm_slli_epi16::<4>(_mm256_extracti128_si256::<1>(c));
    _mm_or_si128(first, _mm_and_si128(second, _mm_set1_epi8(0xf0_u8 as i8)))
}

/// Q5's `qh`: bit j is bit 4 of code byte j (shifted to bit 7, where movemask reads it; the
/// 16-bit shift moves nothing from one byte into another's bit 7).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn fifth_bits(c: __m256i) -> u32 {
    _mm256_movemask_epi8(_mm256_slli_epi16::<3>(c)) as u32
}

/// C's `(int8_t)roundf(x)` as the byte's low 8 bits in an i32 lane (upper bits garbage).
///
/// `roundf` rounds ties away from zero. `trunc(x + copysign(0.49999997, x))` equals it for every
/// float (0.49999997 is the largest float below 0.5; the sum rounds up into the next integer
/// exactly when the fraction is >= 0.5, and is exact or already integral elsewhere; checked
/// against `f32::round` for all 2^32 inputs). NaN and infinities pass through unchanged, so
/// `vcvttps2dq` gives `0x80000000` for them and for |x| >= 2^31, as the scalar conversion does.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn c_int8_roundf(x: __m256) -> __m256i {
    let sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0));
    let almost_half = _mm256_or_ps(sign, _mm256_set1_ps(f32::from_bits(0x3eff_ffff)));
    _mm256_cvttps_epi32(_mm256_add_ps(x, almost_half))
}

/// Q8 codes of a NaN-free block, narrowed to 32 bytes in element order, and the scale `d`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q8_codes(v: &Block) -> (f32, __m256i) {
    let m01 = _mm256_max_ps(abs_ps(v[0]), abs_ps(v[1]));
    let m23 = _mm256_max_ps(abs_ps(v[2]), abs_ps(v[3]));
    let amax = hmax(_mm256_max_ps(m01, m23));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(inverse_or_zero(d));
    (d, low_bytes(v.map(|x| c_int8_roundf(_mm256_mul_ps(x, id)))))
}

// ---- quantize: one block ------------------------------------------------------------------------

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q4_0_block(x: &[f32; QK], y: &mut [u8; 18]) {
    let v = load_block(x);
    let d = signed_absmax(x, &v) / -8.0;
    y[0..2].copy_from_slice(&fp32_to_fp16(d).to_le_bytes());
    let c = pack_i8x32(codes_symmetric(v, inverse_or_zero(d), 8.5, 15));
    store_u8x16(y, 2, nibble_bytes(c, 0xff));
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q4_1_block(x: &[f32; QK], y: &mut [u8; 20]) {
    let v = load_block(x);
    let (min, max) = min_max(x, &v);
    let d = (max - min) / 15.0;
    y[0..4].copy_from_slice(&fp32x2_to_fp16(d, min));
    let t = codes_affine(v, min, inverse_or_zero(d));
    let fifteen = _mm256_set1_epi32(15);
    let c = pack_i8x32(t.map(|t| min_int8(t, fifteen)));
    store_u8x16(y, 4, nibble_bytes(c, 0xff));
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q5_0_block(x: &[f32; QK], y: &mut [u8; 22]) {
    let v = load_block(x);
    let d = signed_absmax(x, &v) / -16.0;
    y[0..2].copy_from_slice(&fp32_to_fp16(d).to_le_bytes());
    let c = pack_i8x32(codes_symmetric(v, inverse_or_zero(d), 16.5, 31));
    y[2..6].copy_from_slice(&fifth_bits(c).to_le_bytes());
    store_u8x16(y, 6, nibble_bytes(c, 0x0f));
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q5_1_block(x: &[f32; QK], y: &mut [u8; 24]) {
    let v = load_block(x);
    let (min, max) = min_max(x, &v);
    let d = (max - min) / 31.0;
    y[0..4].copy_from_slice(&fp32x2_to_fp16(d, min));
    // ggml has no MIN(31, .) here: the code is `(uint8_t)` of the truncated value, whose low byte
    // is all the nibble and qh bit below read.
    let c = low_bytes(codes_affine(v, min, inverse_or_zero(d)));
    y[4..8].copy_from_slice(&fifth_bits(c).to_le_bytes());
    store_u8x16(y, 8, nibble_bytes(c, 0x0f));
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q8_0_block(x: &[f32; QK], y: &mut [u8; 34]) {
    let v = load_block(x);
    if has_nan(&v) {
        // ggml's MAX(amax, fabsf(v)) fold keeps or drops a NaN depending on its position.
        return quantize_scalar::<BlockQ8_0>(x, y);
    }
    let (d, q) = q8_codes(&v);
    y[0..2].copy_from_slice(&fp32_to_fp16(d).to_le_bytes());
    store_u8x32(y, 2, q);
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn quantize_q8_1_block(x: &[f32; QK], y: &mut [u8; 36]) {
    let v = load_block(x);
    if has_nan(&v) {
        // As in Q8_0.
        return quantize_scalar::<BlockQ8_1>(x, y);
    }
    let (d, q) = q8_codes(&v);
    // Sum of the signed bytes: bias them to unsigned (xor 0x80 adds 128), sum with vpsadbw.
    let biased = _mm256_xor_si256(q, _mm256_set1_epi8(i8::MIN));
    let sad = _mm256_sad_epu8(biased, _mm256_setzero_si256());
    let s2 = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256::<1>(sad));
    let total = _mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2)));
    let sum = total as i32 - 128 * QK as i32;
    y[0..2].copy_from_slice(&fp32_to_fp16(d).to_le_bytes());
    y[2..4].copy_from_slice(&fp32_to_fp16(sum as f32 * d).to_le_bytes());
    store_u8x32(y, 4, q);
}

// ---- dequantize: one block ----------------------------------------------------------------------

/// The 32 low-nibble/high-nibble codes of `qs = x[at..at + 16]` in element order (element j < 16
/// is the low nibble of byte j, element j + 16 its high nibble).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_nibbles<const N: usize>(x: &[u8; N], at: usize) -> [__m256i; 4] {
    let b0 = load_u8x8_as_u32(x, at);
    let b1 = load_u8x8_as_u32(x, at + 8);
    let low4 = _mm256_set1_epi32(0x0f);
    [_mm256_and_si256(b0, low4), _mm256_and_si256(b1, low4), _mm256_srli_epi32::<4>(b0), _mm256_srli_epi32::<4>(b1)]
}

/// The codes of a Q5 block: nibbles plus bit j of `qh` as bit 4 of code j.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn unpack_q5<const N: usize>(x: &[u8; N], qh_at: usize, qs_at: usize) -> [__m256i; 4] {
    let qh = u32::from_le_bytes([x[qh_at], x[qh_at + 1], x[qh_at + 2], x[qh_at + 3]]);
    let n = unpack_nibbles(x, qs_at);
    // Shift bit j down to bit 4 with per-lane shifts by j - 4. Lanes j < 4 would need a left
    // shift, so elements 0..24 read `qh << 4` shifted right by j instead (bits 28..32 lost are
    // those of elements 24..32, which read `qh` itself).
    let qh4 = _mm256_set1_epi32((qh << 4) as i32);
    let qh0 = _mm256_set1_epi32(qh as i32);
    let bit4 = _mm256_set1_epi32(0x10);
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let high = |src: __m256i, shift: i32| {
        _mm256_and_si256(_mm256_srlv_epi32(src, _mm256_add_epi32(lane, _mm256_set1_epi32(shift))), bit4)
    };
    [
        _mm256_or_si256(n[0], high(qh4, 0)),
        _mm256_or_si256(n[1], high(qh4, 8)),
        _mm256_or_si256(n[2], high(qh4, 16)),
        _mm256_or_si256(n[3], high(qh0, 20)),
    ]
}

/// `y = (q - offset) as f32 * d` for the symmetric formats (Q4_0, Q5_0).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_symmetric(q: [__m256i; 4], offset: i32, d: __m256, y: &mut [f32; QK]) {
    let off = _mm256_set1_epi32(offset);
    for (k, q) in q.into_iter().enumerate() {
        store_f32x8(y, 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, off)), d));
    }
}

/// `y = q as f32 * d + m` for the affine formats (Q4_1, Q5_1): multiply then add as in ggml's
/// x86 build, never an FMA (fusing would change the low bits).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_affine(q: [__m256i; 4], dm: [u8; 4], y: &mut [f32; QK]) {
    // [d, m, 0, 0] from the two fp16 values in one conversion.
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes(dm)));
    let d = _mm256_broadcastss_ps(dm);
    let m = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
    for (k, q) in q.into_iter().enumerate() {
        store_f32x8(y, 8 * k, _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), d), m));
    }
}

/// `y = q as f32 * d` for the Q8 formats, `qs = x[at..at + 32]`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn store_q8<const N: usize>(x: &[u8; N], at: usize, y: &mut [f32; QK]) {
    let d = broadcast_fp16([x[0], x[1]]);
    for k in 0..4 {
        let q = load_i8x8_as_i32(x, at + 8 * k);
        store_f32x8(y, 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
}

// ---- whole rows ---------------------------------------------------------------------------------

/// Defines a row kernel running `$block` over every block of a row, `$split` viewing the row as
/// blocks. Two blocks per iteration, so that two blocks' long dependency chains (reduce, divide,
/// codes) are in flight together. On Zen 5 (this machine) this measured the same as a plain loop for most types
/// and a quarter faster for Q8_1 on rows larger than the caches.
macro_rules! row_kernel {
    ($name:ident($src:ty, $dst:ty) = $split:ident, $block:ident, $bytes:literal) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        fn $name(src: $src, dst: $dst) {
            let (x, y) = $split::<$bytes>(src, dst);
            let (x_pairs, x_last) = x.as_chunks::<2>();
            let (y_pairs, y_last) = y.as_chunks_mut::<2>();
            for ([x0, x1], [y0, y1]) in x_pairs.iter().zip(y_pairs) {
                $block(x0, y0);
                $block(x1, y1);
            }
            if let (Some(x), Some(y)) = (x_last.first(), y_last.first_mut()) {
                $block(x, y);
            }
        }
    };
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_q4_0_block(x: &[u8; 18], y: &mut [f32; QK]) {
    store_symmetric(unpack_nibbles(x, 2), 8, broadcast_fp16([x[0], x[1]]), y);
}

/// True if the fp16 `m` of an affine block (bytes 2..4) is NaN. `q * d + m` with both the product
/// and `m` NaN returns one of the two payloads depending on the add's operand order, which LLVM
/// may swap (`fadd` is commutative to it) in the scalar reference and here alike; such blocks
/// therefore run the scalar reference itself. They never come out of a quantizer.
#[inline]
fn min_is_nan(x: &[u8]) -> bool {
    u16::from_le_bytes([x[2], x[3]]) & 0x7fff > 0x7c00
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_q4_1_block(x: &[u8; 20], y: &mut [f32; QK]) {
    if min_is_nan(x) {
        return dequantize_scalar::<BlockQ4_1>(x, y);
    }
    store_affine(unpack_nibbles(x, 4), [x[0], x[1], x[2], x[3]], y);
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_q5_0_block(x: &[u8; 22], y: &mut [f32; QK]) {
    store_symmetric(unpack_q5(x, 2, 6), 16, broadcast_fp16([x[0], x[1]]), y);
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_q5_1_block(x: &[u8; 24], y: &mut [f32; QK]) {
    if min_is_nan(x) {
        return dequantize_scalar::<BlockQ5_1>(x, y);
    }
    store_affine(unpack_q5(x, 4, 8), [x[0], x[1], x[2], x[3]], y);
}

#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_q8_0_block(x: &[u8; 34], y: &mut [f32; QK]) {
    store_q8(x, 2, y);
}

/// ggml has no `to_float` for Q8_1; like the scalar reference, the values are `d * q` (s unused).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dequantize_q8_1_block(x: &[u8; 36], y: &mut [f32; QK]) {
    store_q8(x, 4, y);
}

row_kernel!(quantize_q4_0_avx2(&[f32], &mut [u8]) = quantize_blocks, quantize_q4_0_block, 18);
row_kernel!(quantize_q4_1_avx2(&[f32], &mut [u8]) = quantize_blocks, quantize_q4_1_block, 20);
row_kernel!(quantize_q5_0_avx2(&[f32], &mut [u8]) = quantize_blocks, quantize_q5_0_block, 22);
row_kernel!(quantize_q5_1_avx2(&[f32], &mut [u8]) = quantize_blocks, quantize_q5_1_block, 24);
row_kernel!(quantize_q8_0_avx2(&[f32], &mut [u8]) = quantize_blocks, quantize_q8_0_block, 34);
row_kernel!(quantize_q8_1_avx2(&[f32], &mut [u8]) = quantize_blocks, quantize_q8_1_block, 36);
row_kernel!(dequantize_q4_0_avx2(&[u8], &mut [f32]) = dequantize_blocks, dequantize_q4_0_block, 18);
row_kernel!(dequantize_q4_1_avx2(&[u8], &mut [f32]) = dequantize_blocks, dequantize_q4_1_block, 20);
row_kernel!(dequantize_q5_0_avx2(&[u8], &mut [f32]) = dequantize_blocks, dequantize_q5_0_block, 22);
row_kernel!(dequantize_q5_1_avx2(&[u8], &mut [f32]) = dequantize_blocks, dequantize_q5_1_block, 24);
row_kernel!(dequantize_q8_0_avx2(&[u8], &mut [f32]) = dequantize_blocks, dequantize_q8_0_block, 34);
row_kernel!(dequantize_q8_1_avx2(&[u8], &mut [f32]) = dequantize_blocks, dequantize_q8_1_block, 36);

safe_wrappers! {
    quantize_q4_0(src: &[f32], dst: &mut [u8]) => quantize_q4_0_avx2;
    quantize_q4_1(src: &[f32], dst: &mut [u8]) => quantize_q4_1_avx2;
    quantize_q5_0(src: &[f32], dst: &mut [u8]) => quantize_q5_0_avx2;
    quantize_q5_1(src: &[f32], dst: &mut [u8]) => quantize_q5_1_avx2;
    quantize_q8_0(src: &[f32], dst: &mut [u8]) => quantize_q8_0_avx2;
    quantize_q8_1(src: &[f32], dst: &mut [u8]) => quantize_q8_1_avx2;
    dequantize_q4_0(src: &[u8], dst: &mut [f32]) => dequantize_q4_0_avx2;
    dequantize_q4_1(src: &[u8], dst: &mut [f32]) => dequantize_q4_1_avx2;
    dequantize_q5_0(src: &[u8], dst: &mut [f32]) => dequantize_q5_0_avx2;
    dequantize_q5_1(src: &[u8], dst: &mut [f32]) => dequantize_q5_1_avx2;
    dequantize_q8_0(src: &[u8], dst: &mut [f32]) => dequantize_q8_0_avx2;
    dequantize_q8_1(src: &[u8], dst: &mut [f32]) => dequantize_q8_1_avx2;
}
