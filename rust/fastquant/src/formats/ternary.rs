//! The ternary formats TQ1_0 and TQ2_0 (BitNet b1.58, TriLMs): x = d * t, t in {-1, 0, 1}, one fp16
//! scale d = max|x| per 256 elements.
//!
//! `quantize_block` ports ggml's `quantize_row_tq1_0_ref` / `quantize_row_tq2_0_ref` (what
//! `quantize_tq1_0` / `quantize_tq2_0` and so `ggml_quantize_chunk` run; ggml ignores the imatrix),
//! `dequantize_block` ports `dequantize_row_tq1_0` / `dequantize_row_tq2_0`. C's conversions are
//! kept: `lroundf` (ties away from zero; NaN, Inf and |x| >= 2^63 give `LONG_MIN`) whose `long`
//! result is narrowed to `int`, and `uint8_t` arithmetic that wraps.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::float::{fp16_to_fp32, fp32_to_fp16};
use super::legacy::{absmax_fold, inverse_or_zero};
use super::BlockFormat;
use crate::types::QuantType;

/// Elements per ternary block (ggml's QK_K).
pub const QK_K: usize = 256;

/// glibc's `lroundf` on x86-64: round half away from zero; out of the `long` range (and NaN/Inf)
/// it returns `(long) x`, which `cvttss2si` makes `LONG_MIN`.
#[inline(always)]
fn c_lroundf(x: f32) -> i64 {
    if x.is_nan() || x.abs() >= 9_223_372_036_854_775_808.0 {
        i64::MIN
    } else {
        x.round() as i64
    }
}

/// `int xi = lroundf(v) + 1;`: -1, 0, 1 -> 0, 1, 2 (the `long` sum narrowed to `int`).
#[inline(always)]
fn trit(v: f32) -> i32 {
    c_lroundf(v).wrapping_add(1) as i32
}

/// `((uint16_t)q * 256 + (243 - 1)) / 243` stored in a `uint8_t`: turns 5 trits q = sum t_n 3^(4-n)
/// into a fixed-point fraction of 3^5 that the decoder reads trit by trit by multiplying by 3.
#[inline(always)]
fn ceil_div_243(q: u8) -> u8 {
    (q as u32 * 256).div_ceil(243) as u8
}

// ================================================================================================
// TQ1_0: 5 trits per byte (3^5 = 243 <= 256); 1.6875 bits per weight.
// ================================================================================================

/// ggml `block_tq1_0`: 48 bytes of 5 trits (elements 0..160 as 32 bytes x 5, then 160..240 as
/// 16 bytes x 5; trit n of byte m is element m + n*32 (or 160 + m + n*16), the first the most
/// significant), 4 bytes of 4 trits (elements 240 + j + 4n), then the fp16 scale.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockTq1_0 {
    /// Five base-3 digits (trits) per byte for elements 0..240 (layout in the struct docs).
    pub qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
    /// Four trits per byte for elements 240..256.
    pub qh: [u8; QK_K / 64],
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * (trit_i - 1)`.
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockTq1_0>() == 54);

impl BlockFormat for BlockTq1_0 {
    const TYPE: QuantType = QuantType::TQ1_0;
    const ELEMS: usize = QK_K;

    fn quantize_block(x: &[f32], y: &mut Self) {
        let d = absmax_fold(x);
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();

        // 5 elements per byte along 32 bytes, then along 16 bytes.
        let mut off = 0;
        for (j, width) in [(0usize, 32usize), (32, 16)] {
            for m in 0..width {
                let mut q = 0u8;
                for n in 0..5 {
                    let xi = trit(x[off + m + n * width] * id);
                    q = q.wrapping_mul(3);
                    q = (q as i32).wrapping_add(xi) as u8;
                }
                y.qs[j + m] = ceil_div_243(q);
            }
            off += 5 * width;
        }
        // 4 elements per byte; one more *3 puts the first one at the most significant trit.
        let nh = y.qh.len();
        for j in 0..nh {
            let mut q = 0u8;
            for m in 0..4 {
                let xi = trit(x[off + j + m * nh] * id);
                q = q.wrapping_mul(3);
                q = (q as i32).wrapping_add(xi) as u8;
            }
            q = q.wrapping_mul(3);
            y.qh[j] = ceil_div_243(q);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        // Multiplying by 3^n (mod 256) shifts n trits out; the top trit is then (q * 3) >> 8.
        let decode = |byte: u8, n: usize| -> f32 {
            let q = byte.wrapping_mul(POW3[n]);
            let xi = ((q as u16 * 3) >> 8) as i16;
            (xi - 1) as f32 * d
        };
        let mut k = 0;
        for (j, width) in [(0usize, 32usize), (32, 16)] {
            for n in 0..5 {
                for m in 0..width {
                    y[k] = decode(self.qs[j + m], n);
                    k += 1;
                }
            }
        }
        for n in 0..4 {
            for j in 0..self.qh.len() {
                y[k] = decode(self.qh[j], n);
                k += 1;
            }
        }
    }
}

// ================================================================================================
// TQ2_0: 2-bit codes t + 1; 2.0625 bits per weight.
// ================================================================================================

/// ggml `block_tq2_0`: 64 bytes of 2-bit codes (bits 2l..2l+2 of byte j*32+m hold element
/// j*128 + l*32 + m), then the fp16 scale.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockTq2_0 {
    /// The 2-bit codes, four per byte (layout in the struct docs).
    pub qs: [u8; QK_K / 4],
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * (code_i - 1)`.
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockTq2_0>() == 66);

impl BlockFormat for BlockTq2_0 {
    const TYPE: QuantType = QuantType::TQ2_0;
    const ELEMS: usize = QK_K;

    fn quantize_block(x: &[f32], y: &mut Self) {
        let d = absmax_fold(x);
        let id = inverse_or_zero(d);
        y.d = fp32_to_fp16(d).to_le_bytes();
        for j in (0..QK_K / 4).step_by(32) {
            for m in 0..32 {
                let mut q = 0u8;
                for n in 0..4 {
                    let xi = trit(x[4 * j + m + n * 32] * id);
                    q = q.wrapping_add(((xi & 3) << (2 * n)) as u8);
                }
                y.qs[j + m] = q;
            }
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let mut k = 0;
        for j in (0..QK_K / 4).step_by(32) {
            for l in 0..4 {
                for m in 0..32 {
                    let q = ((self.qs[j + m] >> (l * 2)) & 3) as i8;
                    y[k] = (q - 1) as f32 * d;
                    k += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lroundf_rules() {
        assert_eq!(c_lroundf(0.5), 1);
        assert_eq!(c_lroundf(-0.5), -1);
        assert_eq!(c_lroundf(0.49999997), 0);
        assert_eq!(c_lroundf(f32::NAN), i64::MIN);
        assert_eq!(c_lroundf(f32::NEG_INFINITY), i64::MIN);
        assert_eq!(trit(f32::NAN), 1);
        assert_eq!(trit(-1.0), 0);
    }

    #[test]
    fn every_ternary_pattern_round_trips_exactly() {
        // Values already in {-1, 0, 1} * d with d = 1 (a power of two, exact in fp16).
        let x: Vec<f32> = (0..QK_K).map(|i| ((i * 7 + i / 3) % 3) as f32 - 1.0).collect();
        let mut y = vec![0f32; QK_K];
        let mut b1 = BlockTq1_0::zeroed();
        BlockTq1_0::quantize_block(&x, &mut b1);
        b1.dequantize_block(&mut y);
        assert_eq!(x, y);
        let mut b2 = BlockTq2_0::zeroed();
        BlockTq2_0::quantize_block(&x, &mut b2);
        b2.dequantize_block(&mut y);
        assert_eq!(x, y);
    }
}
