//! Q5_K: Q4_K with a fifth bit per code, `x = d*sc*q - dmin*m`, q in 0..32; 5.5 bits per weight.
//!
//! Ports of ggml's `quantize_row_q5_K_ref`, `quantize_row_q5_K_impl` (with quant weights) and
//! `dequantize_row_q5_K`; the scale/min search is Q4_K's ([`super::q4_k`]) with nmax 31.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::q4_k::{min_block_imatrix, min_block_ref, MinBlock};
use super::search::get_scale_min_k4;
use super::{K_SCALE_SIZE, QK_K};
use crate::formats::float::fp16_to_fp32;
use crate::formats::BlockFormat;
use crate::types::QuantType;

/// ggml `block_q5_K`: fp16 d, fp16 dmin, 12 bytes of packed 6-bit scales and mins, 32 bytes of
/// fifth bits (bit 2c of `qh[i]` is element i of 64-element chunk c, bit 2c+1 element 32+i), and
/// 128 bytes of low nibbles laid out as Q4_K's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ5K {
    /// The super-block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// The super-block scale of the mins, `dmin`, fp16 bits (little-endian).
    pub dmin: [u8; 2],
    /// The eight 6-bit sub-block scales and mins, packed as in Q4_K.
    pub scales: [u8; K_SCALE_SIZE],
    /// The fifth bits of the codes (layout in the struct docs).
    pub qh: [u8; QK_K / 8],
    /// The low 4 bits of the codes, laid out as Q4_K's `qs`.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

impl BlockQ5K {
    fn pack(b: &MinBlock, y: &mut Self) {
        y.d = b.d.to_le_bytes();
        y.dmin = b.dmin.to_le_bytes();
        y.scales = b.scales;
        y.qh = [0; QK_K / 8];
        let (mut m1, mut m2) = (1u8, 2u8);
        for (chunk, ql) in y.qs.chunks_exact_mut(32).enumerate() {
            let n = 64 * chunk;
            for j in 0..32 {
                let mut l1 = b.l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    y.qh[j] |= m1;
                }
                let mut l2 = b.l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    y.qh[j] |= m2;
                }
                ql[j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }
}

impl BlockFormat for BlockQ5K {
    const TYPE: QuantType = QuantType::Q5_K;
    const ELEMS: usize = QK_K;
    const USES_IMATRIX: bool = true;

    fn quantize_block(x: &[f32], y: &mut Self) {
        Self::pack(&min_block_ref(x, 31, -0.5, 0.1, 15), y);
    }

    /// ggml's `quantize_row_q5_K_impl` (blocks are independent: `sigma2` is per 256-block).
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        for ((x, qw), y) in x.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K)).zip(y.iter_mut()) {
            Self::pack(&min_block_imatrix(x, qw, 31, true), y);
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let min = fp16_to_fp32(u16::from_le_bytes(self.dmin));
        let (mut u1, mut u2) = (1u8, 2u8);
        for (chunk, ql) in self.qs.chunks_exact(32).enumerate() {
            let (sc, m) = get_scale_min_k4(2 * chunk, &self.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * chunk + 1, &self.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let y = &mut y[64 * chunk..64 * chunk + 64];
            for l in 0..32 {
                let h1 = if self.qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if self.qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0xf) as i32 + h1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) as i32 + h2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}
