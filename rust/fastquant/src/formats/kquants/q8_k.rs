//! Q8_K: the activation partner of the K-quants in dot products: f32 scale, 256 signed bytes and
//! 16 sums of 16 codes; 9.125 bits per weight.
//!
//! Port of ggml's `quantize_row_q8_K_ref`. ggml has no `to_float` for Q8_K (it is never stored in
//! a model file); the values are `d * q` as in ggml's `dequantize_row_q8_K`.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::search::nearest_int;
use super::QK_K;
use crate::formats::BlockFormat;
use crate::types::QuantType;

/// ggml `block_q8_K`: f32 d, 256 signed codes, 16 little-endian i16 sums of 16 codes each.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ8K {
    /// The scale `d` as f32 bits (little-endian). Element `i` decodes to `d * qs[i]`.
    pub d: [u8; 4],
    /// The 256 signed 8-bit codes, in element order.
    pub qs: [i8; QK_K],
    /// Sixteen little-endian i16 sums, each of 16 consecutive codes (the K-quant dot products use them for the mins).
    pub bsums: [u8; 2 * (QK_K / 16)],
}
const _: () = assert!(std::mem::size_of::<BlockQ8K>() == 292);

impl BlockFormat for BlockQ8K {
    const TYPE: QuantType = QuantType::Q8_K;
    const ELEMS: usize = QK_K;

    fn quantize_block(x: &[f32], y: &mut Self) {
        let mut max = 0.0f32;
        let mut amax = 0.0f32;
        for &v in &x[..QK_K] {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            // ggml zeroes d and qs and leaves bsums as they were; fastquant writes zeros there
            // (what ggml's bsums hold in any zero-initialised destination).
            *y = Self::zeroed();
            return;
        }
        // -127, not -128: ggml's comment says IQ2_XXS's AVX code needs the symmetric range.
        let iscale = -127.0 / max;
        for j in 0..QK_K {
            // MIN(127, v) stored in an int8_t: the int's low byte.
            y.qs[j] = 127.min(nearest_int(iscale * x[j])) as i8;
        }
        for j in 0..QK_K / 16 {
            let sum: i32 = y.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            y.bsums[2 * j..2 * j + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        }
        y.d = (1.0 / iscale).to_le_bytes();
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = f32::from_le_bytes(self.d);
        for j in 0..QK_K {
            y[j] = d * self.qs[j] as f32;
        }
    }
}
