//! Q2_K: 256-element super-blocks of 16 sub-blocks of 16, x = d*sc*q - dmin*m, q in 0..4;
//! 2.625 bits per weight.
//!
//! `quantize_block` ports ggml's `quantize_row_q2_K_ref` (what `ggml_quantize_chunk` uses without
//! an importance matrix), `quantize_row_imatrix` ports `quantize_row_q2_K_impl` (what it uses with
//! one) and `dequantize_block` ports `dequantize_row_q2_K` (`ggml-quants.c`). Operation order and C
//! conversions are kept: products are not fused, `(uint8_t)` stores of ints keep the low byte.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::search::{make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int};
use super::QK_K;
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::BlockFormat;
use crate::types::QuantType;

/// ggml `block_q2_K`: 16 bytes of 4-bit sub-block scales (low nibble) and mins (high nibble),
/// 64 bytes of 2-bit codes, then the fp16 super-block scale `d` and min scale `dmin`.
///
/// Code layout: byte `32*h + l` of `qs` holds elements `128*h + l`, `+32`, `+64`, `+96` in bit
/// pairs 0-1, 2-3, 4-5, 6-7.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ2K {
    /// Per 16-element sub-block: the 4-bit scale (low nibble) and 4-bit min (high nibble).
    pub scales: [u8; QK_K / 16],
    /// The 2-bit codes, four per byte (layout in the struct docs).
    pub qs: [u8; QK_K / 4],
    /// The super-block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// The super-block scale of the mins, `dmin`, fp16 bits (little-endian).
    pub dmin: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ2K>() == 84);

/// Packs 256 codes in 0..4 into `qs` (the tail shared by the ref and imatrix quantizers).
fn pack_codes(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] = l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
}

/// Re-derives the codes of every sub-block with a nonzero scale from the fp16-rounded `d * sc`
/// and `dmin * m`, as both ggml quantizers do before packing. A sub-block whose 4-bit scale is 0
/// keeps the codes of its search.
fn requantize(x: &[f32], y: &BlockQ2K, l: &mut [u8; QK_K]) {
    let dm = fp16_to_fp32(u16::from_le_bytes(y.d));
    let mm = fp16_to_fp32(u16::from_le_bytes(y.dmin));
    for j in 0..QK_K / 16 {
        let d = dm * (y.scales[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let m = mm * (y.scales[j] >> 4) as f32;
        for ii in 0..16 {
            let q = nearest_int((x[16 * j + ii] + m) / d);
            l[16 * j + ii] = q.clamp(0, 3) as u8;
        }
    }
}

/// The 4-bit sub-block scales and mins and the fp16 `d` and `dmin` of `quantize_row_q2_K_ref`
/// from its 16 searches' scales and mins (each against the largest; NaN never wins). Shared with
/// the SIMD kernels, whose searches give the same scales and mins.
pub(crate) fn set_scales_ref(scales: &[f32; QK_K / 16], mins: &[f32; QK_K / 16], y: &mut BlockQ2K) {
    const Q4SCALE: f32 = 15.0;
    // Scales are positive as the min is subtracted; NaN never updates either maximum.
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..QK_K / 16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for j in 0..QK_K / 16 {
            // `y->scales[j] = l`: the int's low byte.
            y.scales[j] = nearest_int(iscale * scales[j]) as u8;
        }
        y.d = fp32_to_fp16(max_scale / Q4SCALE).to_le_bytes();
    } else {
        y.scales = [0; QK_K / 16];
        y.d = fp32_to_fp16(0.0).to_le_bytes();
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for j in 0..QK_K / 16 {
            y.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
        }
        y.dmin = fp32_to_fp16(max_min / Q4SCALE).to_le_bytes();
    } else {
        y.dmin = fp32_to_fp16(0.0).to_le_bytes();
    }
}

impl BlockFormat for BlockQ2K {
    const TYPE: QuantType = QuantType::Q2_K;
    const ELEMS: usize = QK_K;
    const USES_IMATRIX: bool = true;

    fn quantize_block(x: &[f32], y: &mut Self) {
        let mut l = [0u8; QK_K];
        let mut weights = [0f32; 16];
        let mut mins = [0f32; QK_K / 16];
        let mut scales = [0f32; QK_K / 16];
        for j in 0..QK_K / 16 {
            let xs = &x[16 * j..16 * j + 16];
            for k in 0..16 {
                weights[k] = xs[k].abs();
            }
            let (scale, min) = make_qkx2_quants(3, xs, &weights, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
            scales[j] = scale;
            mins[j] = min;
        }
        set_scales_ref(&scales, &mins, y);
        requantize(x, y, &mut l);
        pack_codes(&l, &mut y.qs);
    }

    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        for (i, (x, y)) in x.chunks_exact(QK_K).zip(y.iter_mut()).enumerate() {
            quantize_block_weighted(x, y, &qw[QK_K * i..QK_K * (i + 1)]);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let min = fp16_to_fp32(u16::from_le_bytes(self.dmin));
        let mut is = 0;
        let mut out = 0;
        for n in (0..QK_K).step_by(128) {
            let q = &self.qs[n / 4..n / 4 + 32];
            for shift in [0, 2, 4, 6] {
                for half in [0, 16] {
                    let sc = self.scales[is];
                    is += 1;
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for k in 0..16 {
                        y[out] = dl * ((q[half + k] >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

/// One super-block of `quantize_row_q2_K_impl`: weights `qw * sqrt(sigma2 + x^2)` with sigma2 the
/// mean square of the super-block, `make_qkx3_quants` per sub-block, then the 4-bit scales and
/// mins by `make_qp_quants` weighted by each sub-block's total weight (not by max/15 as the ref).
fn quantize_block_weighted(x: &[f32], y: &mut BlockQ2K, qw: &[f32]) {
    let mut l = [0u8; QK_K];
    let mut mins = [0f32; QK_K / 16];
    let mut scales = [0f32; QK_K / 16];
    let mut sw = [0f32; QK_K / 16];
    let mut weight = [0f32; 16];
    let mut ls = [0u8; QK_K / 16];
    let mut lm = [0u8; QK_K / 16];

    let mut sumx2 = 0f32;
    for j in 0..QK_K {
        sumx2 += x[j] * x[j];
    }
    let sigma2 = sumx2 / QK_K as f32;
    for j in 0..QK_K / 16 {
        let xs = &x[16 * j..16 * j + 16];
        for k in 0..16 {
            weight[k] = qw[16 * j + k] * (sigma2 + xs[k] * xs[k]).sqrt();
        }
        for k in 0..16 {
            sw[j] += weight[k];
        }
        let (scale, min) = make_qkx3_quants(3, xs, Some(&weight), &mut l[16 * j..16 * j + 16], -0.9, 0.05, 36, false);
        scales[j] = scale;
        mins[j] = min;
    }

    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    y.d = fp32_to_fp16(dm).to_le_bytes();
    y.dmin = fp32_to_fp16(mm).to_le_bytes();
    for j in 0..QK_K / 16 {
        // `Ls[j] | (Lm[j] << 4)` is an int stored into a uint8_t: the low byte.
        y.scales[j] = ls[j] | (lm[j] << 4);
    }

    requantize(x, y, &mut l);
    pack_codes(&l, &mut y.qs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dequantize_row_ref, quantize_row_ref};

    #[test]
    fn all_zero_input_gives_all_zero_bytes_and_values() {
        let mut b = BlockQ2K::zeroed();
        b.qs = [0xFF; QK_K / 4]; // every field must be written
        BlockQ2K::quantize_block(&[0.0; QK_K], &mut b);
        assert_eq!(bytemuck::bytes_of(&b), &[0u8; 84][..]);
        let mut y = [1f32; QK_K];
        b.dequantize_block(&mut y);
        assert!(y.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn dequantize_follows_the_layout() {
        // d = 1, dmin = 0.5; sub-block j has scale j % 16 and min 1; element e has code e % 4.
        let mut b = BlockQ2K::zeroed();
        b.d = fp32_to_fp16(1.0).to_le_bytes();
        b.dmin = fp32_to_fp16(0.5).to_le_bytes();
        for j in 0..16 {
            b.scales[j] = (j as u8) | (1 << 4);
        }
        let codes: [u8; QK_K] = std::array::from_fn(|e| (e % 4) as u8);
        pack_codes(&codes, &mut b.qs);
        let mut y = [0f32; QK_K];
        b.dequantize_block(&mut y);
        for e in 0..QK_K {
            assert_eq!(y[e], (e / 16) as f32 * (e % 4) as f32 - 0.5, "element {e}");
        }
    }

    #[test]
    fn round_trip_error_on_a_ramp_is_small() {
        let x: Vec<f32> = (0..4096).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect();
        let mut bytes = vec![0u8; x.len() / QK_K * 84];
        quantize_row_ref::<BlockQ2K>(&x, &mut bytes);
        let mut y = vec![0f32; x.len()];
        dequantize_row_ref::<BlockQ2K>(&bytes, &mut y);
        let mse: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / x.len() as f32;
        // 4 levels over a range of ~4 per sub-block: uniform rounding noise is ~0.38 rms.
        assert!(mse.sqrt() < 0.4, "{}", mse.sqrt());
    }
}
