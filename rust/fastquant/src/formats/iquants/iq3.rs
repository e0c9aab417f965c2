//! The 3-bit lattice I-quants, read only: IQ3_XXS and IQ3_S.
//!
//! Ports of ggml's `dequantize_row_iq3_xxs` / `_iq3_s` (`ggml-quants.c`; layouts from
//! `ggml-common.h`). Each group of 4 weights is one row of a lattice grid (`iq3xxs_grid` /
//! `iq3s_grid`, 4 byte magnitudes) times a sub-block scale; signs come per 8 weights. The float
//! operations keep ggml's order (see `iq2.rs` for the sign multiplication).

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::grids::{IQ3S_GRID, IQ3XXS_GRID};
use super::iq2::{apply_sign, dequantize_blocks, KSIGNS_IQ2XS, QK_K};
use crate::formats::float::fp16_to_fp32;

// ================================================================================================
// IQ3_XXS: 3.0625 bits per weight.
// ================================================================================================

/// ggml `block_iq3_xxs`: fp16 scale; `qs` is 64 bytes of 8-bit `iq3xxs_grid` indices (one per 4
/// weights) followed by 8 little-endian u32, one per 32 weights: four 7-bit sign indices in bits
/// 0..28 and the 4-bit sub-block scale in bits 28..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq3Xxs {
    /// The block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// 64 bytes of 8-bit `iq3xxs_grid` indices, then 8 little-endian u32 of sign indices and scales.
    pub qs: [u8; 3 * QK_K / 8],
}
const _: () = assert!(std::mem::size_of::<BlockIq3Xxs>() == 98);

impl BlockIq3Xxs {
    /// Port of `dequantize_row_iq3_xxs` for one block.
    pub fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let (qs, scales_and_signs) = self.qs.split_at(QK_K / 4);
        for ib32 in 0..QK_K / 32 {
            let a = &scales_and_signs[4 * ib32..4 * ib32 + 4];
            let aux32 = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
            let db = d * (0.5 + (aux32 >> 28) as f32) * 0.5;
            for l in 0..4 {
                let signs = KSIGNS_IQ2XS[((aux32 >> (7 * l)) & 127) as usize];
                let grid1 = IQ3XXS_GRID[qs[8 * ib32 + 2 * l] as usize].to_le_bytes();
                let grid2 = IQ3XXS_GRID[qs[8 * ib32 + 2 * l + 1] as usize].to_le_bytes();
                let out = &mut y[32 * ib32 + 8 * l..32 * ib32 + 8 * l + 8];
                for j in 0..4 {
                    out[j] = apply_sign(db * grid1[j] as f32, signs, j);
                    out[j + 4] = apply_sign(db * grid2[j] as f32, signs, j + 4);
                }
            }
        }
    }
}

/// Decodes whole IQ3_XXS blocks.
pub fn dequantize_row_iq3_xxs(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(src, dst, BlockIq3Xxs::dequantize_block);
}

// ================================================================================================
// IQ3_S: 3.4375 bits per weight.
// ================================================================================================

/// ggml `block_iq3_s`: fp16 scale; `qs` the low 8 bits of 64 9-bit `iq3s_grid` indices (one per 4
/// weights), `qh` their ninth bits (bit i of byte k for index 8k + i), `signs` one explicit sign
/// byte per 8 weights, `scales` two 4-bit odd scales (`1 + 2s`) per 64 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq3S {
    /// The block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// The low 8 bits of the 64 9-bit `iq3s_grid` indices (one per 4 weights).
    pub qs: [u8; QK_K / 4],
    /// The ninth index bits: bit `i` of byte `k` belongs to index `8k + i`.
    pub qh: [u8; QK_K / 32],
    /// One explicit sign byte per 8 weights (bit set = negative).
    pub signs: [u8; QK_K / 8],
    /// Two 4-bit odd scales (`1 + 2s`) per 64 weights.
    pub scales: [u8; QK_K / 64],
}
const _: () = assert!(std::mem::size_of::<BlockIq3S>() == 110);

impl BlockIq3S {
    /// Port of `dequantize_row_iq3_s` for one block. ggml walks 64 weights at a time (one scale
    /// byte, two `qh` bytes); this is the same walk with the two halves as one loop over `half`.
    pub fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for ib32 in 0..QK_K / 32 {
            let s = self.scales[ib32 / 2];
            // 1 + 2*(s & 0xf) is an int, converted to float for the product.
            let db = if ib32 % 2 == 0 {
                d * (1 + 2 * (s & 0xf) as i32) as f32
            } else {
                d * (1 + 2 * (s >> 4) as i32) as f32
            };
            let qh = self.qh[ib32] as usize;
            for l in 0..4 {
                let k = 8 * ib32 + 2 * l;
                let idx1 = self.qs[k] as usize | ((qh << (8 - 2 * l)) & 256);
                let idx2 = self.qs[k + 1] as usize | ((qh << (7 - 2 * l)) & 256);
                let grid1 = IQ3S_GRID[idx1].to_le_bytes();
                let grid2 = IQ3S_GRID[idx2].to_le_bytes();
                let signs = self.signs[4 * ib32 + l];
                let out = &mut y[32 * ib32 + 8 * l..32 * ib32 + 8 * l + 8];
                for j in 0..4 {
                    out[j] = apply_sign(db * grid1[j] as f32, signs, j);
                    out[j + 4] = apply_sign(db * grid2[j] as f32, signs, j + 4);
                }
            }
        }
    }
}

/// Decodes whole IQ3_S blocks.
pub fn dequantize_row_iq3_s(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(src, dst, BlockIq3S::dequantize_block);
}
