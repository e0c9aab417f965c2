//! The legacy 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q8_1.
//!
//! Each `quantize_block` is a port of ggml's `quantize_row_*_ref` (`ggml-quants.c`, ggml d99724f),
//! the function `ggml_quantize_chunk` and so llama-quantize use when no importance matrix is
//! given; each `dequantize_block` is a port of `dequantize_row_*`. They are the specification the
//! SIMD kernels in `simd::x86_64` must reproduce byte for byte, so they keep ggml's exact operation
//! order and its C conversion rules:
//!
//! * the scale is computed in f32 and its inverse from that f32 value; the codes are **not**
//!   recomputed after the scale is rounded to fp16;
//! * `(int8_t)(x + 8.5f)` truncates toward zero, and an out-of-range or NaN float gives the
//!   x86 "integer indefinite" value (see [`c_float_to_int`]);
//! * Q8_0 uses `roundf` (ties away from zero), not the ties-to-even of `nearest_int`;
//! * x86 builds of ggml-base have no FMA, so `x*d + m` is a multiply then an add.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::float::{fp16_to_fp32, fp32_to_fp16};
use super::kquants::search::{make_qkx3_quants, make_qx_quants};
use super::BlockFormat;
use crate::types::QuantType;

/// Elements per legacy block (ggml's QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK8_1).
pub const QK: usize = 32;

/// C's float -> int conversion as x86 compilers emit it (`cvttss2si`): truncate toward zero, and
/// produce `INT_MIN` for NaN or a value outside the i32 range. Rust's `as` saturates instead, which
/// would give different bytes for blocks with infinities or subnormal scales.
#[inline(always)]
pub fn c_float_to_int(x: f32) -> i32 {
    if x.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

/// C's `(int8_t)x` for a float: the low byte of [`c_float_to_int`].
#[inline(always)]
fn c_float_to_i8(x: f32) -> i8 {
    c_float_to_int(x) as i8
}

/// The element with the largest magnitude, keeping the first one on ties (ggml's loop updates only
/// on a strictly larger |x|), and 0.0 when every element is zero or NaN.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// ggml's `MAX(amax, fabsf(v))` fold; the C macro's argument order decides how a NaN propagates.
#[inline(always)]
pub(crate) fn absmax_fold(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |amax, v| if amax > v.abs() { amax } else { v.abs() })
}

/// min and max of a block as ggml's Q4_1/Q5_1 loops find them (NaN never updates either).
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `q*d + m` as ggml's x86 build computes it: when both operands are NaN, SSE's `addss` returns the
/// first one (the product). Rust leaves the operand order of `+` to LLVM, so pin it explicitly.
#[inline(always)]
fn scale_add(product: f32, m: f32) -> f32 {
    if product.is_nan() {
        product
    } else {
        product + m
    }
}

/// `d ? 1.0f/d : 0.0f`: the inverse scale every legacy quantizer multiplies by (the SIMD kernels
/// use it too, so the rule lives once).
#[inline(always)]
pub(crate) fn inverse_or_zero(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// The per-element weights of ggml's importance-weighted legacy quantizers
/// (`quantize_row_q4_0_impl` etc.): `qw[j] * sqrtf(sigma2 + x[j]^2)` with `sigma2` the mean square
/// of the WHOLE row (`sum_x2 / n_per_row`, summed left to right), so blocks are not independent.
#[inline(always)]
fn row_sigma2(x: &[f32]) -> f32 {
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    sum_x2 / x.len() as f32
}

/// `weight[j] = qw[j] * sqrtf(sigma2 + xb[j]*xb[j])` for one block.
#[inline(always)]
fn block_weights(xb: &[f32], qw: &[f32], sigma2: f32) -> [f32; QK] {
    std::array::from_fn(|j| qw[j] * (sigma2 + xb[j] * xb[j]).sqrt())
}

/// Packs 32 five-bit codes as ggml's Q5_0/Q5_1 quantizers do: low nibbles of elements j and
/// j + 16 in byte j, the fifth bits in the little-endian u32 `qh`.
#[inline(always)]
fn pack_q5(l: &[u8; QK], qs: &mut [u8; QK / 2]) -> [u8; 4] {
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let xi0 = l[j];
        let xi1 = l[j + QK / 2];
        qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
        qh |= (((xi0 & 0x10) >> 4) as u32) << j;
        qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    qh.to_le_bytes()
}

// ================================================================================================
// Q4_0: x = d * (q - 8), q in 0..16; 4.5 bits per weight.
// ================================================================================================

/// ggml `block_q4_0`: fp16 scale, then 16 bytes whose low nibbles are elements 0..16 and whose
/// high nibbles are elements 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ4_0 {
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * (code_i - 8)`.
    pub d: [u8; 2],
    /// The 4-bit codes: byte `j` holds element `j` (low nibble) and `j + 16` (high nibble).
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

impl BlockFormat for BlockQ4_0 {
    const TYPE: QuantType = QuantType::Q4_0;
    const ELEMS: usize = QK;
    const USES_IMATRIX: bool = true;

    /// ggml's `quantize_row_q4_0_impl`: a weighted least-squares scale search
    /// (`make_qx_quants(32, 8, .., rmse_type 1, weight)`); codes are `l + 8`.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        let sigma2 = row_sigma2(x);
        for ((xb, qw), y) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)).zip(y.iter_mut()) {
            let weight = block_weights(xb, qw, sigma2);
            let mut l = [0i8; QK];
            let d = make_qx_quants(8, xb, &mut l, 1, Some(&weight));
            y.d = fp32_to_fp16(d).to_le_bytes();
            for j in 0..QK / 2 {
                y.qs[j] = (l[j] as u8) | ((l[j + QK / 2] as u8) << 4);
            }
        }
    }

    fn quantize_block(x: &[f32], y: &mut Self) {
        let max = signed_absmax(x);
        let d = max / -8.0;
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();
        for j in 0..QK / 2 {
            let xi0 = 15.min(c_float_to_i8(x[j] * id + 8.5) as i32) as u8;
            let xi1 = 15.min(c_float_to_i8(x[QK / 2 + j] * id + 8.5) as i32) as u8;
            y.qs[j] = xi0 | (xi1 << 4);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for j in 0..QK / 2 {
            y[j] = ((self.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((self.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

// ================================================================================================
// Q4_1: x = d * q + m, q in 0..16; 5 bits per weight.
// ================================================================================================

/// ggml `block_q4_1`: fp16 scale d, fp16 minimum m, 16 bytes of nibbles (as Q4_0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ4_1 {
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * code_i + m`.
    pub d: [u8; 2],
    /// The block minimum `m`, fp16 bits (little-endian).
    pub m: [u8; 2],
    /// The 4-bit codes, laid out as in [`BlockQ4_0::qs`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

impl BlockFormat for BlockQ4_1 {
    const TYPE: QuantType = QuantType::Q4_1;
    const ELEMS: usize = QK;
    const USES_IMATRIX: bool = true;

    /// ggml's `quantize_row_q4_1_impl`: `make_qkx3_quants(32, 15, .., -0.9, 0.05, 36, false)`.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        let sigma2 = row_sigma2(x);
        for ((xb, qw), y) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)).zip(y.iter_mut()) {
            let weight = block_weights(xb, qw, sigma2);
            let mut l = [0u8; QK];
            let (d, min) = make_qkx3_quants(15, xb, Some(&weight), &mut l, -0.9, 0.05, 36, false);
            y.d = fp32_to_fp16(d).to_le_bytes();
            y.m = fp32_to_fp16(-min).to_le_bytes();
            for j in 0..QK / 2 {
                y.qs[j] = l[j] | (l[j + QK / 2] << 4);
            }
        }
    }

    fn quantize_block(x: &[f32], y: &mut Self) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();
        y.m = fp32_to_fp16(min).to_le_bytes();
        for j in 0..QK / 2 {
            let xi0 = 15.min(c_float_to_i8((x[j] - min) * id + 0.5) as i32) as u8;
            let xi1 = 15.min(c_float_to_i8((x[QK / 2 + j] - min) * id + 0.5) as i32) as u8;
            y.qs[j] = xi0 | (xi1 << 4);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let m = fp16_to_fp32(u16::from_le_bytes(self.m));
        for j in 0..QK / 2 {
            y[j] = scale_add((self.qs[j] & 0x0f) as f32 * d, m);
            y[j + QK / 2] = scale_add((self.qs[j] >> 4) as f32 * d, m);
        }
    }
}

// ================================================================================================
// Q5_0: x = d * (q - 16), q in 0..32; 5.5 bits per weight.
// ================================================================================================

/// ggml `block_q5_0`: fp16 scale, 32 fifth bits (bit j of the little-endian u32 belongs to element
/// j), 16 bytes of low nibbles laid out as in Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ5_0 {
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * (code_i - 16)`.
    pub d: [u8; 2],
    /// The fifth (high) bits: bit `j` of this little-endian u32 belongs to element `j`.
    pub qh: [u8; 4],
    /// The low 4 bits of the codes, laid out as in [`BlockQ4_0::qs`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);

impl BlockFormat for BlockQ5_0 {
    const TYPE: QuantType = QuantType::Q5_0;
    const ELEMS: usize = QK;
    const USES_IMATRIX: bool = true;

    /// ggml's `quantize_row_q5_0_impl`: `make_qx_quants(32, 16, .., rmse_type 1, weight)`.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        let sigma2 = row_sigma2(x);
        for ((xb, qw), y) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)).zip(y.iter_mut()) {
            let weight = block_weights(xb, qw, sigma2);
            let mut l = [0i8; QK];
            let d = make_qx_quants(16, xb, &mut l, 1, Some(&weight));
            y.d = fp32_to_fp16(d).to_le_bytes();
            y.qh = pack_q5(&l.map(|v| v as u8), &mut y.qs);
        }
    }

    fn quantize_block(x: &[f32], y: &mut Self) {
        let max = signed_absmax(x);
        let d = max / -16.0;
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            let xi0 = 31.min(c_float_to_i8(x[j] * id + 16.5) as i32) as u8;
            let xi1 = 31.min(c_float_to_i8(x[QK / 2 + j] * id + 16.5) as i32) as u8;
            y.qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        y.qh = qh.to_le_bytes();
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = ((((self.qs[j] & 0x0f) as u32) | xh0) as i32 - 16) as f32 * d;
            y[j + QK / 2] = ((((self.qs[j] >> 4) as u32) | xh1) as i32 - 16) as f32 * d;
        }
    }
}

// ================================================================================================
// Q5_1: x = d * q + m, q in 0..32; 6 bits per weight.
// ================================================================================================

/// ggml `block_q5_1`: fp16 d, fp16 m, 32 fifth bits, 16 bytes of low nibbles.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ5_1 {
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * code_i + m`.
    pub d: [u8; 2],
    /// The block minimum `m`, fp16 bits (little-endian).
    pub m: [u8; 2],
    /// The fifth (high) bits, as in [`BlockQ5_0::qh`].
    pub qh: [u8; 4],
    /// The low 4 bits of the codes, laid out as in [`BlockQ4_0::qs`].
    pub qs: [u8; QK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

impl BlockFormat for BlockQ5_1 {
    const TYPE: QuantType = QuantType::Q5_1;
    const ELEMS: usize = QK;
    const USES_IMATRIX: bool = true;

    /// ggml's `quantize_row_q5_1_impl`: `make_qkx3_quants(32, 31, .., -0.9, 0.05, 36, false)`.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        let sigma2 = row_sigma2(x);
        for ((xb, qw), y) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)).zip(y.iter_mut()) {
            let weight = block_weights(xb, qw, sigma2);
            let mut l = [0u8; QK];
            let (d, min) = make_qkx3_quants(31, xb, Some(&weight), &mut l, -0.9, 0.05, 36, false);
            y.d = fp32_to_fp16(d).to_le_bytes();
            y.m = fp32_to_fp16(-min).to_le_bytes();
            y.qh = pack_q5(&l, &mut y.qs);
        }
    }

    fn quantize_block(x: &[f32], y: &mut Self) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();
        y.m = fp32_to_fp16(min).to_le_bytes();
        let mut qh = 0u32;
        for j in 0..QK / 2 {
            // ggml has no MIN(31, ..) here: (uint8_t) of the truncated value, as is.
            let xi0 = c_float_to_int((x[j] - min) * id + 0.5) as u8;
            let xi1 = c_float_to_int((x[QK / 2 + j] - min) * id + 0.5) as u8;
            y.qs[j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
            qh |= (((xi0 & 0x10) >> 4) as u32) << j;
            qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
        }
        y.qh = qh.to_le_bytes();
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let m = fp16_to_fp32(u16::from_le_bytes(self.m));
        let qh = u32::from_le_bytes(self.qh);
        for j in 0..QK / 2 {
            let xh0 = ((qh >> j) << 4) & 0x10;
            let xh1 = (qh >> (j + 12)) & 0x10;
            y[j] = scale_add((((self.qs[j] & 0x0f) as u32) | xh0) as f32 * d, m);
            y[j + QK / 2] = scale_add((((self.qs[j] >> 4) as u32) | xh1) as f32 * d, m);
        }
    }
}

// ================================================================================================
// Q8_0: x = d * q, q in -127..=127; 8.5 bits per weight.
// ================================================================================================

/// ggml `block_q8_0`: fp16 scale, 32 signed bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ8_0 {
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * qs[i]`.
    pub d: [u8; 2],
    /// The 32 signed 8-bit codes, in element order.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

impl BlockFormat for BlockQ8_0 {
    const TYPE: QuantType = QuantType::Q8_0;
    const ELEMS: usize = QK;

    fn quantize_block(x: &[f32], y: &mut Self) {
        let amax = absmax_fold(x);
        let d = amax / 127.0;
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();
        for j in 0..QK {
            // roundf: ties away from zero (f32::round), then C's float -> int8 conversion.
            y.qs[j] = c_float_to_i8((x[j] * id).round());
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for j in 0..QK {
            y[j] = self.qs[j] as f32 * d;
        }
    }
}

// ================================================================================================
// Q8_1: Q8_0 plus s = d * sum(q), the activation partner of Q4_1/Q5_1 in dot products.
// ================================================================================================

/// ggml `block_q8_1`: fp16 d, fp16 s = d * Σq, 32 signed bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ8_1 {
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * qs[i]`.
    pub d: [u8; 2],
    /// `d * Σ qs`, fp16 bits: lets dot products with Q4_1/Q5_1 apply the other side's minimum once.
    pub s: [u8; 2],
    /// The 32 signed 8-bit codes, in element order.
    pub qs: [i8; QK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1>() == 36);

impl BlockFormat for BlockQ8_1 {
    const TYPE: QuantType = QuantType::Q8_1;
    const ELEMS: usize = QK;

    fn quantize_block(x: &[f32], y: &mut Self) {
        let amax = absmax_fold(x);
        let d = amax / 127.0;
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();
        let mut sum = 0i32;
        for j in 0..QK {
            y.qs[j] = c_float_to_i8((x[j] * id).round());
            sum += y.qs[j] as i32;
        }
        y.s = fp32_to_fp16(sum as f32 * d).to_le_bytes();
    }

    /// ggml has no `to_float` for Q8_1 (it is only ever an activation); the values are `d * q`.
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for j in 0..QK {
            y[j] = self.qs[j] as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dequantize_row_ref, quantize_row_ref};

    fn ramp(n: usize) -> Vec<f32> {
        // ggml's test-quantize-fns generator.
        (0..n).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect()
    }

    fn rmse<B: BlockFormat>(x: &[f32]) -> f32 {
        let mut bytes = vec![0u8; x.len() / B::ELEMS * std::mem::size_of::<B>()];
        quantize_row_ref::<B>(x, &mut bytes);
        let mut y = vec![0f32; x.len()];
        dequantize_row_ref::<B>(&bytes, &mut y);
        let se: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
        (se / x.len() as f32).sqrt()
    }

    #[test]
    fn round_trip_error_is_near_uniform_rounding_noise() {
        // Values span about [-1.9, 2.1]. Rounding to a grid of step h leaves an RMSE of h/sqrt(12);
        // allow 15% over that for the asymmetric use of the code range.
        let x = ramp(4096);
        let bound = |levels: f32| 4.0 / levels / 12f32.sqrt() * 1.15;
        assert!(rmse::<BlockQ4_0>(&x) < bound(15.0), "{}", rmse::<BlockQ4_0>(&x));
        assert!(rmse::<BlockQ4_1>(&x) < bound(15.0), "{}", rmse::<BlockQ4_1>(&x));
        assert!(rmse::<BlockQ5_0>(&x) < bound(31.0), "{}", rmse::<BlockQ5_0>(&x));
        assert!(rmse::<BlockQ5_1>(&x) < bound(31.0), "{}", rmse::<BlockQ5_1>(&x));
        assert!(rmse::<BlockQ8_0>(&x) < bound(254.0), "{}", rmse::<BlockQ8_0>(&x));
        assert!(rmse::<BlockQ8_1>(&x) < bound(254.0), "{}", rmse::<BlockQ8_1>(&x));
    }

    #[test]
    fn q4_0_extreme_element_gets_code_zero_and_scale_keeps_its_sign() {
        let mut x = [0.5f32; QK];
        x[3] = -2.0;
        x[9] = 2.0; // same magnitude later: the first one wins
        let mut b = BlockQ4_0::zeroed();
        BlockQ4_0::quantize_block(&x, &mut b);
        assert_eq!(fp16_to_fp32(u16::from_le_bytes(b.d)), 0.25);
        assert_eq!(b.qs[3] & 0x0f, 0);
    }

    #[test]
    fn all_zero_blocks_store_negative_zero_scale_like_ggml() {
        // max = +0.0, d = 0.0 / -8 = -0.0.
        let mut b = BlockQ4_0::zeroed();
        BlockQ4_0::quantize_block(&[0.0; QK], &mut b);
        assert_eq!(u16::from_le_bytes(b.d), 0x8000);
        assert!(b.qs.iter().all(|&q| q == 0x88));
    }

    #[test]
    fn c_conversion_rules() {
        assert_eq!(c_float_to_int(f32::NAN), i32::MIN);
        assert_eq!(c_float_to_int(f32::INFINITY), i32::MIN);
        assert_eq!(c_float_to_int(-2.9), -2);
        assert_eq!(c_float_to_i8(200.0), -56);
        assert_eq!((2.5f32).round(), 3.0);
        assert_eq!((-2.5f32).round(), -3.0);
    }
}
