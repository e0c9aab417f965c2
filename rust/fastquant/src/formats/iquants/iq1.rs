//! The 1-bit lattice I-quants, read only: IQ1_S and IQ1_M.
//!
//! Ports of ggml's `dequantize_row_iq1_s` / `_iq1_m` (`ggml-quants.c`; layouts from
//! `ggml-common.h`). Each group of 8 weights is one row of `iq1s_grid` (values -1, 0, 1) shifted
//! by ±`IQ1S_DELTA` and times an odd sub-block scale: `dl * ((float)grid[j] + delta)`, the add
//! first, then the multiply, as in ggml.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::grids::IQ1S_GRID;
use super::iq2::{dequantize_blocks, row8, QK_K};
use crate::formats::float::fp16_to_fp32;

/// ggml's `IQ1S_DELTA`: the shift of every IQ1 grid value (IQ1_M's dequantizer uses it too).
pub const IQ1S_DELTA: f32 = 0.125;

/// `±IQ1S_DELTA` as ggml picks it from a sign bit.
#[inline(always)]
fn delta(negative: bool) -> f32 {
    if negative {
        -IQ1S_DELTA
    } else {
        IQ1S_DELTA
    }
}

/// `dl * (grid + delta)` for one group of 8: `grid` is the row's int8 values.
#[inline(always)]
fn put_group(out: &mut [f32], dl: f32, grid: [u8; 8], delta: f32) {
    for j in 0..8 {
        out[j] = dl * (grid[j] as i8 as f32 + delta);
    }
}

// ================================================================================================
// IQ1_S: 1.5625 bits per weight.
// ================================================================================================

/// ggml `block_iq1_s`: fp16 scale, 32 low bytes of 11-bit `iq1s_grid` indices (one per 8
/// weights), then 8 little-endian u16 `qh`, one per 32 weights: bits 3l..3l+3 the high index bits
/// of group l, bits 12..15 the 3-bit scale (`2s + 1`), bit 15 the sign of the delta.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq1S {
    /// The block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// The low 8 bits of the 32 11-bit `iq1s_grid` indices (one per 8 weights).
    pub qs: [u8; QK_K / 8],
    /// Eight little-endian u16, one per 32 weights: high index bits, scale and delta sign (struct docs).
    pub qh: [u8; QK_K / 16],
}
const _: () = assert!(std::mem::size_of::<BlockIq1S>() == 50);

impl BlockIq1S {
    /// Port of `dequantize_row_iq1_s` for one block.
    pub fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for ib in 0..QK_K / 32 {
            let qh = u16::from_le_bytes([self.qh[2 * ib], self.qh[2 * ib + 1]]) as usize;
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = delta(qh & 0x8000 != 0);
            for l in 0..4 {
                let k = 4 * ib + l;
                let idx = self.qs[k] as usize | (((qh >> (3 * l)) & 7) << 8);
                put_group(&mut y[8 * k..8 * k + 8], dl, row8(&IQ1S_GRID, idx), delta);
            }
        }
    }
}

/// Decodes whole IQ1_S blocks.
pub fn dequantize_row_iq1_s(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(src, dst, BlockIq1S::dequantize_block);
}

// ================================================================================================
// IQ1_M: 1.75 bits per weight.
// ================================================================================================

/// ggml `block_iq1_m`: no separate scale field. `qs` the low 8 bits of the 32 grid indices, `qh`
/// one byte per two groups (bits 0..3 / 4..7 the high index bits, bits 3 / 7 the delta signs),
/// `scales` as 4 little-endian u16: 3-bit sub-block scales in bits 0..12 and, in the top nibbles of
/// the four, the fp16 super-block scale.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq1M {
    /// The low 8 bits of the 32 grid indices (one per 8 weights).
    pub qs: [u8; QK_K / 8],
    /// One byte per two groups of 8 weights: high index bits and delta signs (struct docs).
    pub qh: [u8; QK_K / 16],
    /// Four little-endian u16: the 3-bit sub-block scales and, in the top nibbles, the fp16 super-block scale.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIq1M>() == 56);

impl BlockIq1M {
    /// Port of `dequantize_row_iq1_m` for one block.
    pub fn dequantize_block(&self, y: &mut [f32]) {
        let sc: [u16; 4] = std::array::from_fn(|i| u16::from_le_bytes([self.scales[2 * i], self.scales[2 * i + 1]]));
        let scale = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let d = fp16_to_fp32(scale);
        for ib in 0..QK_K / 32 {
            let s = sc[ib / 2] as usize;
            let dl1 = d * (2 * ((s >> (6 * (ib % 2))) & 0x7) + 1) as f32;
            let dl2 = d * (2 * ((s >> (6 * (ib % 2) + 3)) & 0x7) + 1) as f32;
            let (qs, qh) = (&self.qs[4 * ib..4 * ib + 4], &self.qh[2 * ib..2 * ib + 2]);
            let (qh0, qh1) = (qh[0] as usize, qh[1] as usize);
            let idx = [
                qs[0] as usize | ((qh0 << 8) & 0x700),
                qs[1] as usize | ((qh0 << 4) & 0x700),
                qs[2] as usize | ((qh1 << 8) & 0x700),
                qs[3] as usize | ((qh1 << 4) & 0x700),
            ];
            let deltas =
                [delta(qh0 & 0x08 != 0), delta(qh0 & 0x80 != 0), delta(qh1 & 0x08 != 0), delta(qh1 & 0x80 != 0)];
            for l in 0..4 {
                let dl = if l < 2 { dl1 } else { dl2 };
                let k = 4 * ib + l;
                put_group(&mut y[8 * k..8 * k + 8], dl, row8(&IQ1S_GRID, idx[l]), deltas[l]);
            }
        }
    }
}

/// Decodes whole IQ1_M blocks.
pub fn dequantize_row_iq1_m(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(src, dst, BlockIq1M::dequantize_block);
}
