//! Q4_K: 256 elements as 8 sub-blocks of 32, `x = d*sc*q - dmin*m`, q in 0..16, with 6-bit
//! sub-block scales `sc` and mins `m`; 4.5 bits per weight.
//!
//! Ports of ggml's `quantize_row_q4_K_ref` (plain path), `quantize_row_q4_K_impl` with quant
//! weights (importance-weighted path) and `dequantize_row_q4_K`. The scale/min selection and the
//! final requantization are shared with Q5_K (`min_block_ref`, `min_block_imatrix`), which
//! differs only in the code range and search parameters.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::search::pack_scale_min_k4;
use super::search::{get_scale_min_k4, make_qkx2_quants, make_qkx3_quants, make_qp_quants, nearest_int};
use super::{K_SCALE_SIZE, QK_K};
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::BlockFormat;
use crate::types::QuantType;

/// ggml `block_q4_K`: fp16 super-scale d, fp16 super-min dmin, 12 bytes of packed 6-bit scales and
/// mins (see [`get_scale_min_k4`]), then 128 bytes: for each 64-element chunk, 32 bytes whose low
/// nibbles are its first 32 elements and high nibbles its last 32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ4K {
    /// The super-block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// The super-block scale of the mins, `dmin`, fp16 bits (little-endian).
    pub dmin: [u8; 2],
    /// The eight 6-bit sub-block scales and eight 6-bit mins, packed into 12 bytes.
    pub scales: [u8; K_SCALE_SIZE],
    /// The 4-bit codes: per 64-element chunk, 32 bytes (first 32 elements in the low nibbles).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// The header and the per-element codes (0..=nmax) of a Q4_K or Q5_K block, before bit packing.
pub(crate) struct MinBlock {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; K_SCALE_SIZE],
    pub l: [u8; QK_K],
}

/// The final pass of both Q4_K/Q5_K quantizers: recompute each sub-block's codes against the
/// rounded scales as stored (fp16 super-scales times 6-bit integers). A sub-block whose scale is
/// zero keeps the codes of its search (`if (!d) continue;`; a NaN scale does not skip).
fn requantize(x: &[f32], b: &mut MinBlock, nmax: i32) {
    let d_all = fp16_to_fp32(b.d);
    let dmin_all = fp16_to_fp32(b.dmin);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &b.scales);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * m as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / d);
            b.l[32 * j + ii] = 0.max(l.min(nmax)) as u8;
        }
    }
}

/// `quantize_row_q{4,5}_K_ref` up to the bit packing: per sub-block a `make_qkx2_quants` search
/// with weights `av_x + |x|` (`av_x` the sub-block's RMS), then the 8 scales and 8 mins are
/// rounded linearly to 6 bits against their maxima.
pub(super) fn min_block_ref(x: &[f32], nmax: i32, rmin: f32, rdelta: f32, nstep: i32) -> MinBlock {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; QK_K / 32];
    let mut mins = [0f32; QK_K / 32];
    let mut max_scale = 0.0f32; // as we are deducting the min, scales are always positive
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(nmax, xs, &weights, &mut l[32 * j..32 * j + 32], rmin, rdelta, nstep, false);
        scales[j] = s;
        mins[j] = m;
        if s > max_scale {
            max_scale = s;
        }
        if m > max_min {
            max_min = m;
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // `uint8_t ls = nearest_int(..)`: the int's low byte, then MIN(63, ls).
    let ls: [u8; 8] = std::array::from_fn(|j| 63.min(nearest_int(inv_scale * scales[j]) as u8));
    let lm: [u8; 8] = std::array::from_fn(|j| 63.min(nearest_int(inv_min * mins[j]) as u8));
    let mut b = MinBlock {
        d: fp32_to_fp16(max_scale / 63.0),
        dmin: fp32_to_fp16(max_min / 63.0),
        scales: pack_scale_min_k4(&ls, &lm),
        l,
    };
    requantize(x, &mut b, nmax);
    b
}

/// `quantize_row_q{4,5}_K_impl` with quant weights, up to the bit packing: weights
/// `qw * sqrt(sigma2 + x^2)` (`sigma2 = 2 * mean(x^2)` over the 256-block), a `make_qkx3_quants`
/// search per sub-block, then the scales and mins quantized to 6 bits by `make_qp_quants`
/// weighted with each sub-block's total weight. `clamp63` is Q5_K's extra `MIN(63, ..)`.
pub(super) fn min_block_imatrix(x: &[f32], qw: &[f32], nmax: i32, clamp63: bool) -> MinBlock {
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; QK_K / 32];
    let mut mins = [0f32; QK_K / 32];
    let mut sw = [0f32; QK_K / 32];
    let mut sum_x2 = 0.0f32;
    for &v in &x[..QK_K] {
        sum_x2 += v * v;
    }
    let sigma2 = 2.0 * sum_x2 / QK_K as f32;
    for j in 0..QK_K / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let q = &qw[32 * j..32 * j + 32];
        let weights: [f32; 32] = std::array::from_fn(|i| q[i] * (sigma2 + xs[i] * xs[i]).sqrt());
        let mut sumw = 0.0f32;
        for &w in &weights {
            sumw += w;
        }
        sw[j] = sumw;
        let (s, m) = make_qkx3_quants(nmax, xs, Some(&weights), &mut l[32 * j..32 * j + 32], -0.9, 0.05, 36, false);
        scales[j] = s;
        mins[j] = m;
    }
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    if clamp63 {
        ls = ls.map(|v| v.min(63));
        lm = lm.map(|v| v.min(63));
    }
    let mut b =
        MinBlock { d: fp32_to_fp16(d_block), dmin: fp32_to_fp16(m_block), scales: pack_scale_min_k4(&ls, &lm), l };
    requantize(x, &mut b, nmax);
    b
}

impl BlockQ4K {
    fn pack(b: &MinBlock, y: &mut Self) {
        y.d = b.d.to_le_bytes();
        y.dmin = b.dmin.to_le_bytes();
        y.scales = b.scales;
        for (chunk, q) in y.qs.chunks_exact_mut(32).enumerate() {
            let j = 64 * chunk;
            for i in 0..32 {
                q[i] = b.l[j + i] | (b.l[j + i + 32] << 4);
            }
        }
    }
}

impl BlockFormat for BlockQ4K {
    const TYPE: QuantType = QuantType::Q4_K;
    const ELEMS: usize = QK_K;
    const USES_IMATRIX: bool = true;

    fn quantize_block(x: &[f32], y: &mut Self) {
        Self::pack(&min_block_ref(x, 15, -1.0, 0.1, 20), y);
    }

    /// ggml's `quantize_row_q4_K_impl` (blocks are independent: `sigma2` is per 256-block).
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        for ((x, qw), y) in x.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K)).zip(y.iter_mut()) {
            Self::pack(&min_block_imatrix(x, qw, 15, false), y);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let min = fp16_to_fp32(u16::from_le_bytes(self.dmin));
        for (chunk, q) in self.qs.chunks_exact(32).enumerate() {
            let (sc, m) = get_scale_min_k4(2 * chunk, &self.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * chunk + 1, &self.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let y = &mut y[64 * chunk..64 * chunk + 64];
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0xf) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}
