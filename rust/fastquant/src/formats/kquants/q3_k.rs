//! Q3_K: 256-element super-blocks of 16 sub-blocks of 16, x = d*(sc - 32)*(q - 4), q in 0..8,
//! sc a 6-bit sub-block scale; 3.4375 bits per weight.
//!
//! `quantize_block` ports ggml's `quantize_row_q3_K_ref` (what `ggml_quantize_chunk` uses without
//! an importance matrix), `quantize_row_imatrix` ports `quantize_row_q3_K_impl` with weights (what
//! it uses with one) and `dequantize_block` ports `dequantize_row_q3_K` (`ggml-quants.c`).
//! Operation order and C conversions are kept: products are not fused, `(int8_t)` stores of ints
//! keep the low byte.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::search::{make_q3_quants, make_qx_quants, nearest_int};
use super::QK_K;
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::BlockFormat;
use crate::types::QuantType;

/// ggml `block_q3_K`: 32 bytes of high code bits, 64 bytes of low 2-bit codes, 12 bytes of 6-bit
/// sub-block scales, then the fp16 super-block scale `d`.
///
/// Element `e` has its low two bits in byte `32*(e/128) + e%32` of `qs` at bit `2*((e%128)/32)`
/// (as Q2_K) and its high bit in byte `e%32` of `hmask` at bit `e/32`. Scale `j` has its low
/// nibble in `scales[j%8]` (low nibble for j < 8, high for j >= 8) and its top two bits in
/// `scales[8 + j%4]` at bit `2*(j/4)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ3K {
    /// The third (high) bit of each code: element `e` in byte `e % 32`, bit `e / 32`.
    pub hmask: [u8; QK_K / 8],
    /// The low 2 bits of each code, laid out as in [`super::q2_k::BlockQ2K::qs`].
    pub qs: [u8; QK_K / 4],
    /// The sixteen 6-bit sub-block scales, packed into 12 bytes (layout in the struct docs).
    pub scales: [u8; 12],
    /// The super-block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ3K>() == 110);

/// Sub-block scale `j` as stored (0..64, the bias 32 not yet removed).
#[inline(always)]
pub(crate) fn stored_scale(scales: &[u8; 12], j: usize) -> i8 {
    let low = if j < 8 { scales[j] & 0xF } else { scales[j - 8] >> 4 };
    (low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i8
}

/// Stores the biased 6-bit scales `ls` (each 0..64) into the 12 scale bytes.
fn pack_scales(ls: &[i8; QK_K / 16], scales: &mut [u8; 12]) {
    *scales = [0; 12];
    for j in 0..QK_K / 16 {
        let l = ls[j] as u8;
        if j < 8 {
            scales[j] = l & 0xF;
        } else {
            scales[j - 8] |= (l & 0xF) << 4;
        }
        // C shifts the signed value; the callers' values are 0..64, so this is the same.
        scales[j % 4 + 8] |= ((ls[j] >> 4) as u8) << (2 * (j / 4));
    }
}

/// The tail both ggml quantizers share: codes recomputed in [-4, 3] from the fp16 `d` times each
/// stored scale (a sub-block whose scale product is 0 keeps the codes of its search), the high bit
/// moved to `hmask`, the low two bits packed as in Q2_K.
fn finish_block(x: &[f32], y: &mut BlockQ3K, l: &mut [i8; QK_K]) {
    let d_all = fp16_to_fp32(u16::from_le_bytes(y.d));
    for j in 0..QK_K / 16 {
        let sc = stored_scale(&y.scales, j).wrapping_sub(32);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d);
            l[16 * j + ii] = (q.clamp(-4, 3) + 4) as i8;
        }
    }

    y.hmask = [0; QK_K / 8];
    for j in 0..QK_K {
        if l[j] > 3 {
            y.hmask[j % 32] |= 1 << (j / 32);
            l[j] -= 4;
        }
    }
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            y.qs[j / 4 + k] = (l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6)) as u8;
        }
    }
}

/// The 6-bit sub-block scales (stored with their bias 32) and the fp16 `d` of
/// `quantize_row_q3_K_ref` from its 16 searches' scales, against the one of largest magnitude.
/// Returns the stored scales (all 0 when the block's are zeroed). Shared with the SIMD kernels,
/// whose searches give the same scales.
pub(crate) fn set_scales_ref(scales: &[f32; QK_K / 16], y: &mut BlockQ3K) -> [i8; QK_K / 16] {
    // The sub-block scale of largest magnitude, signed; the first of equal ones wins.
    let mut max_scale = 0f32;
    let mut amax = 0f32;
    for j in 0..QK_K / 16 {
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }
    let mut ls = [0i8; QK_K / 16];
    // `if (max_scale)`: NaN counts as true.
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..QK_K / 16 {
            // `int8_t l = nearest_int(...)` keeps the low byte before clamping.
            let q = nearest_int(iscale * scales[j]) as i8;
            ls[j] = q.clamp(-32, 31) + 32;
        }
        pack_scales(&ls, &mut y.scales);
        y.d = fp32_to_fp16(1.0 / iscale).to_le_bytes();
    } else {
        y.scales = [0; 12];
        y.d = fp32_to_fp16(0.0).to_le_bytes();
    }
    ls
}

impl BlockFormat for BlockQ3K {
    const TYPE: QuantType = QuantType::Q3_K;
    const ELEMS: usize = QK_K;
    const USES_IMATRIX: bool = true;

    fn quantize_block(x: &[f32], y: &mut Self) {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16], true);
        }
        set_scales_ref(&scales, y);
        finish_block(x, y, &mut l);
    }

    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        for (i, (x, y)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
            quantize_block_weighted(x, y, &qw[QK_K * i..QK_K * (i + 1)]);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d_all = fp16_to_fp32(u16::from_le_bytes(self.d));
        let mut is = 0;
        let mut out = 0;
        for n in (0..QK_K).step_by(128) {
            let q = &self.qs[n / 4..n / 4 + 32];
            for (j, shift) in [0, 2, 4, 6].into_iter().enumerate() {
                let m = 1u8 << (n / 32 + j);
                for half in [0, 16] {
                    let dl = d_all * (stored_scale(&self.scales, is) as i32 - 32) as f32;
                    is += 1;
                    for k in 0..16 {
                        let high = if self.hmask[half + k] & m != 0 { 0 } else { 4 };
                        y[out] = dl * (((q[half + k] >> shift) & 3) as i32 - high) as f32;
                        out += 1;
                    }
                }
            }
        }
    }
}

/// The 6-bit sub-block scales and fp16 `d` of `quantize_row_q3_K_impl` from its 16 searches'
/// scales and the sub-blocks' total weights: `make_qx_quants(32, .., 1, sw)`. Returns the stored
/// scales. Shared with the SIMD kernels, whose searches give the same scales.
pub(crate) fn set_scales_weighted(
    scales: &[f32; QK_K / 16],
    sw: &[f32; QK_K / 16],
    y: &mut BlockQ3K,
) -> [i8; QK_K / 16] {
    let mut ls = [0i8; QK_K / 16];
    let d_block = make_qx_quants(32, scales, &mut ls, 1, Some(sw));
    store_scales(&ls, d_block, y);
    ls
}

/// Stores the biased 6-bit scales `ls` (each 0..64) and the fp16 of `d_block`: the end of
/// [`set_scales_weighted`], for SIMD kernels that run its `make_qx_quants` in lanes.
pub(crate) fn store_scales(ls: &[i8; QK_K / 16], d_block: f32, y: &mut BlockQ3K) {
    pack_scales(ls, &mut y.scales);
    y.d = fp32_to_fp16(d_block).to_le_bytes();
}

/// One super-block of `quantize_row_q3_K_impl` with importance weights: weights
/// `qw * sqrt(sigma2 + x^2)` with sigma2 twice the mean square of the super-block,
/// `make_qx_quants` (rmse type 1) per sub-block, then the 6-bit scales by `make_qx_quants` over
/// the 16 sub-block scales weighted by each sub-block's total weight.
fn quantize_block_weighted(x: &[f32], y: &mut BlockQ3K, qw: &[f32]) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut sw = [0f32; QK_K / 16];

    let mut sumx2 = 0f32;
    for j in 0..QK_K {
        sumx2 += x[j] * x[j];
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;

    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for k in 0..16 {
            weight[k] = qw[16 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
        }
        let mut sumw = 0f32;
        for k in 0..16 {
            sumw += weight[k];
        }
        sw[j] = sumw;
        scales[j] = make_qx_quants(4, xs, &mut l[16 * j..16 * j + 16], 1, Some(&weight));
    }

    set_scales_weighted(&scales, &sw, y);
    finish_block(x, y, &mut l);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dequantize_row_ref, quantize_row_ref};

    #[test]
    fn all_zero_input_gives_all_zero_bytes_and_values() {
        let mut b = BlockQ3K::zeroed();
        b.hmask = [0xFF; QK_K / 8]; // every field must be written
        b.scales = [0xFF; 12];
        BlockQ3K::quantize_block(&[0.0; QK_K], &mut b);
        assert_eq!(bytemuck::bytes_of(&b), &[0u8; 110][..]);
        let mut y = [1f32; QK_K];
        b.dequantize_block(&mut y);
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn scales_pack_and_unpack() {
        let ls: [i8; 16] = std::array::from_fn(|j| (j as i8 * 7 + 3) % 64);
        let mut packed = [0u8; 12];
        pack_scales(&ls, &mut packed);
        for j in 0..16 {
            assert_eq!(stored_scale(&packed, j), ls[j], "scale {j}");
        }
    }

    #[test]
    fn dequantize_follows_the_layout() {
        // d = 1, sub-block j has scale j - 8; element e has 3-bit code e % 8 (high bit in hmask).
        let mut b = BlockQ3K::zeroed();
        b.d = fp32_to_fp16(1.0).to_le_bytes();
        let ls: [i8; 16] = std::array::from_fn(|j| j as i8 + 24);
        pack_scales(&ls, &mut b.scales);
        let mut codes: [i8; QK_K] = std::array::from_fn(|e| (e % 8) as i8);
        let x: [f32; QK_K] = std::array::from_fn(|e| ((e / 16) as f32 - 8.0) * ((e % 8) as f32 - 4.0));
        finish_block(&x, &mut b, &mut codes);
        let mut y = [0f32; QK_K];
        b.dequantize_block(&mut y);
        assert_eq!(y, x);
    }

    #[test]
    fn round_trip_error_on_a_ramp_is_small() {
        let x: Vec<f32> = (0..4096).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect();
        let mut bytes = vec![0u8; x.len() / QK_K * 110];
        quantize_row_ref::<BlockQ3K>(&x, &mut bytes);
        let mut y = vec![0f32; x.len()];
        dequantize_row_ref::<BlockQ3K>(&bytes, &mut y);
        let mse: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / x.len() as f32;
        // 8 levels over a range of ~4 per sub-block: uniform rounding noise is ~0.16 rms.
        assert!(mse.sqrt() < 0.2, "{}", mse.sqrt());
    }
}
