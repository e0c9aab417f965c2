//! MXFP4 (OCP microscaling FP4): 32 E2M1 values sharing one E8M0 power-of-two scale.
//!
//! `quantize_block` ports ggml's `quantize_row_mxfp4_ref` (what `quantize_mxfp4` and so
//! `ggml_quantize_chunk` run; ggml ignores the imatrix), `dequantize_block` ports
//! `dequantize_row_mxfp4`. ggml stores the E2M1 values doubled (`kvalues_mxfp4`, integers) and
//! halves the scale instead (`GGML_E8M0_TO_FP32_HALF`), which gives the same products.
//!
//! The exponent is `floorf(log2f(amax)) - 2 + 127`. `log2f` is not exactly rounded everywhere and
//! near a power of two it can round up to the next integer, so which exponent a block gets depends
//! on the C library's `log2f`: `f32::log2` calls the same libm `log2f` at run time, as ggml does.
//! The float-to-`uint8_t` cast follows x86 (`cvttss2si`, then the low byte).

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::legacy::c_float_to_int;
use super::BlockFormat;
use crate::types::QuantType;

/// Elements per MXFP4 block (ggml's QK_MXFP4).
pub const QK_MXFP4: usize = 32;

/// ggml's `kvalues_mxfp4` (`ggml-common.h`): E2M1 values times two, indexed by the 4-bit code
/// (bit 3 the sign; code 8 is -0, which decodes as +0 here).
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// ggml's `ggml_e8m0_to_fp32_half`: 2^(e - 128) by bits (e = 0 and 1 are the subnormals 2^-128 and
/// 2^-127; e = 255 is 2^127, not NaN).
#[inline(always)]
pub fn e8m0_to_fp32_half(e: u8) -> f32 {
    let bits = if e < 2 { 0x0020_0000u32 << e } else { ((e - 1) as u32) << 23 };
    f32::from_bits(bits)
}

/// ggml's `best_index_mxfp4`: the code whose `kvalues_mxfp4[i] * e` is nearest to `x`, the first on
/// ties (so +0 before -0, and a NaN `x` gives code 0).
#[inline(always)]
fn best_index_mxfp4(x: f32, e: f32) -> u8 {
    let mut best_index = 0u8;
    let mut best_err = (KVALUES_MXFP4[0] as f32 * e - x).abs();
    for i in 1..16 {
        let err = (KVALUES_MXFP4[i] as f32 * e - x).abs();
        if err < best_err {
            best_index = i as u8;
            best_err = err;
        }
    }
    best_index
}

/// The E8M0 exponent of a block whose largest |x| is `amax`: `floorf(log2f(amax)) - 2 + 127` as
/// C's float -> `uint8_t` (0 for `amax` = 0; shared with the SIMD kernels).
#[inline(always)]
pub(crate) fn mxfp4_exponent(amax: f32) -> u8 {
    if amax > 0.0 {
        c_float_to_int(amax.log2().floor() - 2.0 + 127.0) as u8
    } else {
        0
    }
}

/// ggml `block_mxfp4`: the E8M0 exponent byte, then 16 bytes whose low nibbles are elements 0..16
/// and whose high nibbles are elements 16..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockMxfp4 {
    /// The shared E8M0 exponent: the block scale is `2^(e - 127)` (ggml halves it to fit its doubled FP4 table).
    pub e: u8,
    /// The 4-bit E2M1 codes: byte `j` holds element `j` (low nibble) and `j + 16` (high nibble).
    pub qs: [u8; QK_MXFP4 / 2],
}
const _: () = assert!(std::mem::size_of::<BlockMxfp4>() == 17);

impl BlockFormat for BlockMxfp4 {
    const TYPE: QuantType = QuantType::MXFP4;
    const ELEMS: usize = QK_MXFP4;

    fn quantize_block(x: &[f32], y: &mut Self) {
        // Largest |x|, updated only on a strictly larger value: NaN never enters.
        let mut amax = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
            }
        }
        // The largest doubled E2M1 value is 12 = 1.5 * 2^3, so amax ~ 2^floor(log2 amax) takes the
        // scale 2^(floor(log2 amax) - 2) (doubled values, halved scale). Inf gives e = 0.
        let e = mxfp4_exponent(amax);
        let d = e8m0_to_fp32_half(e);
        y.e = e;
        for j in 0..QK_MXFP4 / 2 {
            let x0 = best_index_mxfp4(x[j], d);
            let x1 = best_index_mxfp4(x[QK_MXFP4 / 2 + j], d);
            y.qs[j] = x0 | (x1 << 4);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = e8m0_to_fp32_half(self.e);
        for j in 0..QK_MXFP4 / 2 {
            y[j] = KVALUES_MXFP4[(self.qs[j] & 0x0f) as usize] as f32 * d;
            y[j + QK_MXFP4 / 2] = KVALUES_MXFP4[(self.qs[j] >> 4) as usize] as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e8m0_half_is_two_to_the_e_minus_128() {
        assert_eq!(e8m0_to_fp32_half(0), 2f32.powi(-128));
        assert_eq!(e8m0_to_fp32_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_to_fp32_half(2), 2f32.powi(-126));
        assert_eq!(e8m0_to_fp32_half(128), 1.0);
        assert_eq!(e8m0_to_fp32_half(255), 2f32.powi(127));
    }

    #[test]
    fn values_on_the_grid_round_trip_exactly() {
        // amax = 6 -> floor(log2 6) = 2 -> e = 127 -> d = 0.5: the doubled table halves back.
        let grid = [0.0f32, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0, 0.0];
        let x: Vec<f32> = (0..QK_MXFP4).map(|i| grid[i % 16]).collect();
        let mut b = BlockMxfp4::zeroed();
        BlockMxfp4::quantize_block(&x, &mut b);
        assert_eq!(b.e, 127);
        let mut y = vec![0f32; QK_MXFP4];
        b.dequantize_block(&mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn zero_and_nan_blocks() {
        let mut b = BlockMxfp4::zeroed();
        BlockMxfp4::quantize_block(&[0.0; QK_MXFP4], &mut b);
        assert_eq!((b.e, b.qs), (0, [0; 16]));
        BlockMxfp4::quantize_block(&[f32::NAN; QK_MXFP4], &mut b);
        assert_eq!((b.e, b.qs), (0, [0; 16]));
    }
}
