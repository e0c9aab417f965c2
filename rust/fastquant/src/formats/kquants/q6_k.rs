//! Q6_K: 256 elements as 16 sub-blocks of 16, `x = d*sc*(q - 32)`, q in 0..64, with signed 8-bit
//! sub-block scales; 6.5625 bits per weight.
//!
//! Ports of ggml's `quantize_row_q6_K_ref`, `quantize_row_q6_K_impl` with quant weights (which,
//! unlike the other K-quants, passes the raw imatrix weights to `make_qx_quants`: no sigma2
//! term) and `dequantize_row_q6_K`.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use super::search::{make_qx_quants, nearest_int, GROUP_MAX_EPS};
use super::QK_K;
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::BlockFormat;
use crate::types::QuantType;

/// ggml `block_q6_K`: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 signed scales,
/// fp16 d (last). Per 128-element half: `ql[l]` holds elements l (low nibble) and l+64 (high),
/// `ql[l+32]` elements l+32 and l+96, `qh[l]` the top two bits of l, l+32, l+64, l+96.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockQ6K {
    /// The low 4 bits of the codes (layout in the struct docs).
    pub ql: [u8; QK_K / 2],
    /// The high 2 bits of the codes, four elements per byte.
    pub qh: [u8; QK_K / 4],
    /// One signed 8-bit scale per 16-element sub-block.
    pub scales: [i8; QK_K / 16],
    /// The super-block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// The shared body of `quantize_row_q6_K_ref` (`qw` None) and `quantize_row_q6_K_impl`.
fn quantize(x: &[f32], y: &mut BlockQ6K, qw: Option<&[f32]>) {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; QK_K / 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..QK_K / 16 {
        let r = 16 * ib..16 * ib + 16;
        let scale = make_qx_quants(32, &x[r.clone()], &mut l[r.clone()], 1, qw.map(|w| &w[r]));
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = BlockQ6K::zeroed();
        y.d = fp32_to_fp16(0.0).to_le_bytes();
        return;
    }
    let iscale = -128.0 / max_scale;
    y.d = fp32_to_fp16(1.0 / iscale).to_le_bytes();
    for ib in 0..QK_K / 16 {
        // MIN(127, nearest_int(..)) stored in an int8_t: the int's low byte.
        y.scales[ib] = 127.min(nearest_int(iscale * scales[ib])) as i8;
    }
    let d_all = fp16_to_fp32(u16::from_le_bytes(y.d));
    for j in 0..QK_K / 16 {
        let d = d_all * y.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let q = nearest_int(x[16 * j + ii] / d);
            l[16 * j + ii] = ((-32).max(q.min(31)) + 32) as i8;
        }
    }
    // C shifts the int8_t codes as ints (arithmetic shift) and stores the low byte.
    let lv = |i: usize| l[i] as i32;
    for half in 0..2 {
        let j = 128 * half;
        let ql = &mut y.ql[64 * half..64 * half + 64];
        let qh = &mut y.qh[32 * half..32 * half + 32];
        for i in 0..32 {
            let q1 = lv(j + i) & 0xf;
            let q2 = lv(j + i + 32) & 0xf;
            let q3 = lv(j + i + 64) & 0xf;
            let q4 = lv(j + i + 96) & 0xf;
            ql[i] = (q1 | (q3 << 4)) as u8;
            ql[i + 32] = (q2 | (q4 << 4)) as u8;
            qh[i] = ((lv(j + i) >> 4)
                | ((lv(j + i + 32) >> 4) << 2)
                | ((lv(j + i + 64) >> 4) << 4)
                | ((lv(j + i + 96) >> 4) << 6)) as u8;
        }
    }
}

impl BlockFormat for BlockQ6K {
    const TYPE: QuantType = QuantType::Q6_K;
    const ELEMS: usize = QK_K;
    const USES_IMATRIX: bool = true;

    fn quantize_block(x: &[f32], y: &mut Self) {
        quantize(x, y, None);
    }

    /// ggml's `quantize_row_q6_K_impl`: `make_qx_quants(16, 32, .., rmse_type 1, qw)`.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        for ((x, qw), y) in x.chunks_exact(QK_K).zip(qw.chunks_exact(QK_K)).zip(y.iter_mut()) {
            quantize(x, y, Some(qw));
        }
    }

    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for half in 0..2 {
            let ql = &self.ql[64 * half..64 * half + 64];
            let qh = &self.qh[32 * half..32 * half + 32];
            let sc = &self.scales[8 * half..8 * half + 8];
            let y = &mut y[128 * half..128 * half + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * sc[is] as f32 * q1 as f32;
                y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}
