//! The 2-bit lattice I-quants, read only: IQ2_XXS, IQ2_XS and IQ2_S.
//!
//! Ports of ggml's `dequantize_row_iq2_xxs` / `_iq2_xs` / `_iq2_s` (`ggml-quants.c`; layouts from
//! `ggml-common.h`). Each group of 8 weights is one row of a lattice grid (magnitudes 8, 25 or 43)
//! times a sub-block scale, with 8 signs. Writing these types needs ggml's grid searches and is not
//! done here; reading must give ggml's `to_float` bits for every input, so the float operations
//! keep ggml's order: `db = d * (0.5f + s) * 0.25f` is `(d * (0.5 + s)) * 0.25`, and a value is
//! `db * grid` with its sign flipped for a set sign bit (see `apply_sign` for why a flip).
//!
//! This file also holds the two sign tables the IQ3 types share and the block-row loop.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::grids::{IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID};
use crate::formats::float::fp16_to_fp32;

/// Elements per super-block (ggml's QK_K).
pub const QK_K: usize = 256;

/// ggml's `ksigns_iq2xs`: 7 stored sign bits `i` plus an eighth bit that makes the number of set
/// bits even (the quantizer only ever emits an even number of minus signs per 8 weights).
pub static KSIGNS_IQ2XS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = i as u8 | (((i as u8).count_ones() as u8 & 1) << 7);
        i += 1;
    }
    t
};

/// ggml's `kmask_iq2xs`: the bit of a sign byte that belongs to element j of a group of 8.
pub static KMASK_IQ2XS: [u8; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// ggml's `v * (signs & kmask_iq2xs[j] ? -1.f : 1.f)`. For every non-NaN `v` a multiplication by
/// ±1.0 and a conditional negation agree (zeros and infinities included). For a NaN `v` (a NaN
/// scale) they do not: `mulss` by -1.0 would return the NaN unchanged, but the compiled ggml flips
/// its sign bit (measured: ggml-python's `to_float` on blocks with NaN scales, see
/// tests/test_iquants_read.py), i.e. the compiler emitted a sign flip. So this is a negation.
#[inline(always)]
pub(crate) fn apply_sign(v: f32, signs: u8, j: usize) -> f32 {
    if signs & KMASK_IQ2XS[j] != 0 {
        -v
    } else {
        v
    }
}

/// The 8 grid bytes of a u64 grid row, in element order (ggml reads the row as `uint8_t *` on a
/// little-endian machine).
#[inline(always)]
pub(crate) fn row8(grid: &[u64], idx: usize) -> [u8; 8] {
    grid[idx].to_le_bytes()
}

/// Decodes whole blocks of `src` into `dst` with `decode`; `src` holds exactly
/// `dst.len() / QK_K` blocks (callers check this).
#[inline(always)]
pub(crate) fn dequantize_blocks<B: Pod>(src: &[u8], dst: &mut [f32], decode: fn(&B, &mut [f32])) {
    let blocks: &[B] = bytemuck::cast_slice(src);
    assert_eq!(blocks.len() * QK_K, dst.len());
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(QK_K)) {
        decode(b, y);
    }
}

// ================================================================================================
// IQ2_XXS: 2.0625 bits per weight.
// ================================================================================================

/// ggml `block_iq2_xxs`: fp16 scale, then 32 little-endian u16 seen as 8 groups of two u32 per 32
/// weights: the first u32 holds four 8-bit `iq2xxs_grid` indices, the second four 7-bit sign
/// indices (into `ksigns_iq2xs`) in bits 0..28 and the 4-bit sub-block scale in bits 28..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq2Xxs {
    /// The block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// Per 32 weights two u32 (as 4 u16): four 8-bit grid indices, then sign indices and the sub-block scale.
    pub qs: [u8; QK_K / 4],
}
const _: () = assert!(std::mem::size_of::<BlockIq2Xxs>() == 66);

impl BlockIq2Xxs {
    /// Port of `dequantize_row_iq2_xxs` for one block.
    pub fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for ib32 in 0..QK_K / 32 {
            let q = &self.qs[8 * ib32..8 * ib32 + 8];
            let aux1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
            let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
            for l in 0..4 {
                let grid = row8(&IQ2XXS_GRID, q[l] as usize);
                let signs = KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                let out = &mut y[32 * ib32 + 8 * l..32 * ib32 + 8 * l + 8];
                for j in 0..8 {
                    out[j] = apply_sign(db * grid[j] as f32, signs, j);
                }
            }
        }
    }
}

/// Decodes whole IQ2_XXS blocks (the `scalar_dequantizer` entry).
pub fn dequantize_row_iq2_xxs(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(src, dst, BlockIq2Xxs::dequantize_block);
}

// ================================================================================================
// IQ2_XS: 2.3125 bits per weight.
// ================================================================================================

/// ggml `block_iq2_xs`: fp16 scale, 32 little-endian u16 (9-bit `iq2xs_grid` index, 7-bit sign
/// index above it), 8 bytes of two 4-bit sub-block scales (low nibble: the first 16 weights of the
/// 32).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq2Xs {
    /// The block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// 32 little-endian u16: a 9-bit `iq2xs_grid` index with a 7-bit sign index above it.
    pub qs: [u8; QK_K / 4],
    /// Two 4-bit sub-block scales per 32 weights (low nibble for the first 16).
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIq2Xs>() == 74);

impl BlockIq2Xs {
    /// Port of `dequantize_row_iq2_xs` for one block.
    pub fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for ib32 in 0..QK_K / 32 {
            let s = self.scales[ib32];
            let db = [d * (0.5 + (s & 0xf) as f32) * 0.25, d * (0.5 + (s >> 4) as f32) * 0.25];
            for l in 0..4 {
                let k = 4 * ib32 + l;
                let q = u16::from_le_bytes([self.qs[2 * k], self.qs[2 * k + 1]]);
                let grid = row8(&IQ2XS_GRID, (q & 511) as usize);
                let signs = KSIGNS_IQ2XS[(q >> 9) as usize];
                let out = &mut y[8 * k..8 * k + 8];
                for j in 0..8 {
                    out[j] = apply_sign(db[l / 2] * grid[j] as f32, signs, j);
                }
            }
        }
    }
}

/// Decodes whole IQ2_XS blocks.
pub fn dequantize_row_iq2_xs(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(src, dst, BlockIq2Xs::dequantize_block);
}

// ================================================================================================
// IQ2_S: 2.5625 bits per weight.
// ================================================================================================

/// ggml `block_iq2_s`: fp16 scale; `qs` is 32 low bytes of 10-bit `iq2s_grid` indices followed by
/// 32 explicit sign bytes (one per 8 weights, no parity trick); `qh` holds the 2 high index bits of
/// the four groups of each 32 weights; `scales` two 4-bit sub-block scales per 32 weights.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq2S {
    /// The block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// 32 low bytes of the 10-bit `iq2s_grid` indices, then 32 explicit sign bytes.
    pub qs: [u8; QK_K / 4],
    /// The 2 high index bits of the four groups of each 32 weights.
    pub qh: [u8; QK_K / 32],
    /// Two 4-bit sub-block scales per 32 weights.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(std::mem::size_of::<BlockIq2S>() == 82);

impl BlockIq2S {
    /// Port of `dequantize_row_iq2_s` for one block.
    pub fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let (qs, signs) = self.qs.split_at(QK_K / 8);
        for ib32 in 0..QK_K / 32 {
            let s = self.scales[ib32];
            let db = [d * (0.5 + (s & 0xf) as f32) * 0.25, d * (0.5 + (s >> 4) as f32) * 0.25];
            for l in 0..4 {
                let k = 4 * ib32 + l;
                // (qh << (8 - 2l)) & 0x300: the two high bits of group l, in int arithmetic.
                let idx = qs[k] as usize | (((self.qh[ib32] as usize) << (8 - 2 * l)) & 0x300);
                let grid = row8(&IQ2S_GRID, idx);
                let out = &mut y[8 * k..8 * k + 8];
                for j in 0..8 {
                    out[j] = apply_sign(db[l / 2] * grid[j] as f32, signs[k], j);
                }
            }
        }
    }
}

/// Decodes whole IQ2_S blocks.
pub fn dequantize_row_iq2_s(src: &[u8], dst: &mut [f32]) {
    dequantize_blocks(src, dst, BlockIq2S::dequantize_block);
}
