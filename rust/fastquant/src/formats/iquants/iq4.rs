//! IQ4_NL and IQ4_XS: 4-bit codes into the non-linear table `kvalues_iq4nl`, with one fp16 scale
//! per 32 elements (IQ4_NL) or one fp16 scale per 256 elements plus a 6-bit scale per 32 (IQ4_XS).
//!
//! Both quantizers are ports of ggml's `quantize_row_iq4_nl_impl` (`ggml-quants.c`) as
//! `quantize_iq4_nl` / `quantize_iq4_xs` call it, which is what `ggml_quantize_chunk` (and so
//! llama-quantize) runs, with or without an importance matrix:
//!
//! * `ntry = 7`, not the `-1` of `quantize_row_iq4_nl_ref`: the initial scale is `max/127` (not
//!   `-max/127`), 15 more inverse scales are tried, and IQ4_NL re-picks its codes with the final
//!   scale. The two give different bytes; only the `ntry = 7` path is what GGUF files hold.
//! * Without an imatrix the weights are `x²`; with one they are `qw * sqrt(sigma2 + x²)` where
//!   `sigma2 = 2 * mean(x²)` over the *super-block* (32 elements for IQ4_NL, 256 for IQ4_XS). So
//!   both paths depend on the block alone, never on the rest of the row.
//! * The float operations keep ggml's order (`w*q*x` is `(w*q)*x`, sums left to right) and x86's
//!   FMA-free evaluation; the table lookups compare floats exactly as `best_index_int8` does.

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

use bytemuck::{Pod, Zeroable};

use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::kquants::search::nearest_int;
use crate::formats::BlockFormat;
use crate::types::QuantType;

/// Elements per IQ4_NL block (ggml's QK4_NL) and per IQ4_XS sub-block.
pub const QK4_NL: usize = 32;
/// Elements per IQ4_XS super-block (ggml's QK_K).
pub const QK_K: usize = 256;

/// ggml's `kvalues_iq4nl` (`ggml-common.h`): the 16 levels a 4-bit code decodes to, times the scale.
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// [`KVALUES_IQ4NL`] as floats, for the SIMD kernels' table lookups.
pub(crate) const KVALUES_IQ4NL_F32: [f32; 16] = {
    let mut t = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = KVALUES_IQ4NL[i] as f32;
        i += 1;
    }
    t
};

/// ggml's `GROUP_MAX_EPS`: a (sub-)block whose largest |x| is below this gets scale 0.
const GROUP_MAX_EPS: f32 = 1e-15;

/// The `ntry` that `quantize_iq4_nl` / `quantize_iq4_xs` pass (and so `ggml_quantize_chunk`).
const NTRY: i32 = 7;

/// ggml's `best_index_int8(16, values, x)`: the index of the table entry nearest to `x` by binary
/// search. Below the first entry (or equal) gives 0, above the last (or equal) gives 15; between two
/// entries the lower one wins only if strictly nearer, so an exact midpoint goes up. NaN fails every
/// comparison and ends at the top pair, where the final test is false too: index 15.
#[inline(always)]
fn best_index_int8(values: &[i8; 16], x: f32) -> u8 {
    if x <= values[0] as f32 {
        return 0;
    }
    if x >= values[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < values[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (values[mu - 1] as f32) < values[mu] as f32 - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// IQ4_XS's super-block epilogue (the `nblocks > 1` branch of `quantize_row_iq4_nl_impl`): from
/// the eight sub-block scales of the search, the fp16 super-scale `d = -max_scale/32` (max_scale
/// the first scale of largest magnitude), the 6-bit sub-scales `l = clamp(nearest_int(s/d), -32,
/// 31)` stored as `l + 32` (high 2 bits in `scales_h`, low 4 in `scales_l`), and for each
/// sub-block the inverse scale `1/(d*l)` (0 when `d*l` is 0) its codes are re-picked with.
/// Shared with the SIMD kernels, whose searches produce the same `scales`.
pub(crate) fn iq4_xs_sub_scales(
    scales: &[f32; QK_K / QK4_NL],
    dh: &mut [u8; 2],
    scales_h: &mut [u8; 2],
    scales_l: &mut [u8],
) -> [f32; QK_K / QK4_NL] {
    // `if (fabsf(d) > amax_scale)` as the search loop of ggml runs it, block by block.
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    for &d in scales {
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let d = -max_scale / 32.0;
    *dh = fp32_to_fp16(d).to_le_bytes();
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut packed_h = 0u16;
    let mut idl = [0.0f32; QK_K / QK4_NL];
    for (ib, &s) in scales.iter().enumerate() {
        let l = nearest_int(id * s).clamp(-32, 31);
        let dl = d * l as f32;
        idl[ib] = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        let l = (l + 32) as u8;
        if ib % 2 == 0 {
            scales_l[ib / 2] = l & 0xf;
        } else {
            scales_l[ib / 2] |= (l & 0xf) << 4;
        }
        packed_h |= ((l >> 4) as u16) << (2 * (ib % 8));
    }
    *scales_h = packed_h.to_le_bytes();
    idl
}

/// The 15 midpoints between neighbouring `KVALUES_IQ4NL` entries (all halves of integers), for
/// the SIMD kernels: [`best_index_int8`] of `x` is the number of midpoints `m` with `!(x < m)`.
/// Inside the table's range `x - lo < hi - x` (two rounded differences) is `x < (lo + hi)/2`
/// exactly: near a midpoint both differences are exact (|x| >= 4 and they are below 2^(e+1),
/// e = x's exponent), away from it rounding cannot make them equal; an exact midpoint goes up;
/// NaN passes every `!(x < m)` and ends at 15, as in the binary search.
pub(crate) const IQ4NL_MIDPOINTS: [f32; 15] = {
    let mut m = [0.0f32; 15];
    let mut k = 0;
    while k < 15 {
        m[k] = (KVALUES_IQ4NL[k] as f32 + KVALUES_IQ4NL[k + 1] as f32) * 0.5;
        k += 1;
    }
    m
};

/// The outputs of [`quantize_iq4_nl_impl`] for one super-block: the fp16 scale, the packed codes,
/// and (IQ4_XS only) the 6-bit sub-block scales split into high and low bits.
struct Iq4Out<'a> {
    dh: &'a mut [u8; 2],
    q4: &'a mut [u8],
    scales_h: &'a mut [u8; 2],
    scales_l: &'a mut [u8],
}

/// ggml's `quantize_row_iq4_nl_impl(super_block_size = x.len(), block_size = 32, ...)` with the
/// `kvalues_iq4nl` table and `ntry = 7`. `qw` is the slice of importance weights for this
/// super-block (`None`: ggml's `quant_weights == NULL`).
fn quantize_iq4_nl_impl(x: &[f32], qw: Option<&[f32]>, out: Iq4Out<'_>) {
    let values = &KVALUES_IQ4NL;
    let v0 = values[0] as f32;
    let super_block_size = x.len();
    let nblocks = super_block_size / QK4_NL;
    debug_assert!(nblocks == 1 || nblocks == QK_K / QK4_NL);

    // Only read with an imatrix, but computed the same way: sum left to right, then * (2/n).
    let mut sigma2 = 0.0f32;
    for j in 0..super_block_size {
        sigma2 += x[j] * x[j];
    }
    sigma2 *= 2.0 / super_block_size as f32;

    let mut l_codes = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / QK4_NL];
    let mut weight = [0.0f32; QK4_NL];

    for ib in 0..nblocks {
        let xb = &x[ib * QK4_NL..(ib + 1) * QK4_NL];
        let lb = &mut l_codes[ib * QK4_NL..(ib + 1) * QK4_NL];
        match qw {
            Some(qw) => {
                let qw = &qw[ib * QK4_NL..(ib + 1) * QK4_NL];
                for j in 0..QK4_NL {
                    weight[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
                }
            }
            None => {
                for j in 0..QK4_NL {
                    weight[j] = xb[j] * xb[j];
                }
            }
        }
        // The signed element of largest magnitude; the first one on ties, NaN never taken.
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for j in 0..QK4_NL {
            let ax = xb[j].abs();
            if ax > amax {
                amax = ax;
                max = xb[j];
            }
        }
        if amax < GROUP_MAX_EPS {
            scales[ib] = 0.0;
            continue;
        }
        // ntry > 0: d = -max/values[0] = max/127 (the ref's ntry < 0 takes max/-127), so the extreme
        // element lands on the top entry 113; the first codes and sums use id = 1/d.
        let mut d = -max / v0;
        let mut id = 1.0 / d;
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for j in 0..QK4_NL {
            let al = id * xb[j];
            let l = best_index_int8(values, al);
            lb[j] = l;
            let q = values[l as usize] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        // Other inverse scales (itry + values[0]) / max: only the scale is kept, not the codes.
        for itry in -NTRY..=NTRY {
            id = (itry + values[0] as i32) as f32 / max;
            sumqx = 0.0;
            sumq2 = 0.0;
            for j in 0..QK4_NL {
                let al = id * xb[j];
                let l = best_index_int8(values, al);
                let q = values[l as usize] as f32;
                let w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
    }

    if nblocks > 1 {
        // IQ4_XS: every code re-picked with its sub-block's rounded 6-bit scale.
        let scales: &[f32; QK_K / QK4_NL] = &scales;
        let idl = iq4_xs_sub_scales(scales, out.dh, out.scales_h, out.scales_l);
        for ib in 0..nblocks {
            let xb = &x[ib * QK4_NL..(ib + 1) * QK4_NL];
            let lb = &mut l_codes[ib * QK4_NL..(ib + 1) * QK4_NL];
            for j in 0..QK4_NL {
                lb[j] = best_index_int8(values, idl[ib] * xb[j]);
            }
        }
    } else {
        // IQ4_NL: the block scale as is, codes re-picked with it (ntry > 0). A block below
        // GROUP_MAX_EPS has scale 0 and id 0: every code is the one for 0.0 (index 8).
        *out.dh = fp32_to_fp16(scales[0]).to_le_bytes();
        let id = if scales[0] != 0.0 { 1.0 / scales[0] } else { 0.0 };
        for j in 0..super_block_size {
            l_codes[j] = best_index_int8(values, id * x[j]);
        }
    }

    // Low nibbles: elements 0..16 of each 32; high nibbles: elements 16..32.
    for i in 0..super_block_size / 32 {
        for j in 0..16 {
            out.q4[16 * i + j] = l_codes[32 * i + j] | (l_codes[32 * i + 16 + j] << 4);
        }
    }
}

// ================================================================================================
// IQ4_NL: x = d * kvalues_iq4nl[q]; 4.5 bits per weight.
// ================================================================================================

/// ggml `block_iq4_nl`: fp16 scale, then 16 bytes whose low nibbles are elements 0..16 and whose
/// high nibbles are elements 16..32 (as Q4_0).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq4Nl {
    /// The block scale `d`, fp16 bits (little-endian). Element `i` decodes to `d * kvalues_iq4nl[code_i]`.
    pub d: [u8; 2],
    /// The 4-bit codes, laid out as in Q4_0.
    pub qs: [u8; QK4_NL / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Nl>() == 18);

impl BlockFormat for BlockIq4Nl {
    const TYPE: QuantType = QuantType::IQ4_NL;
    const ELEMS: usize = QK4_NL;
    const USES_IMATRIX: bool = true;

    /// `quantize_iq4_nl(x, y, 1, 32, NULL)`: weights x², ntry = 7.
    fn quantize_block(x: &[f32], y: &mut Self) {
        let (mut unused_h, mut unused_l) = ([0u8; 2], [0u8; 0]);
        let out = Iq4Out { dh: &mut y.d, q4: &mut y.qs, scales_h: &mut unused_h, scales_l: &mut unused_l };
        quantize_iq4_nl_impl(x, None, out);
    }

    /// `quantize_iq4_nl(x, y, 1, n_per_row, qw)`: each block sees its own 32 weights.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        for (ib, y) in y.iter_mut().enumerate() {
            let r = ib * QK4_NL..(ib + 1) * QK4_NL;
            let (mut unused_h, mut unused_l) = ([0u8; 2], [0u8; 0]);
            let out = Iq4Out { dh: &mut y.d, q4: &mut y.qs, scales_h: &mut unused_h, scales_l: &mut unused_l };
            quantize_iq4_nl_impl(&x[r.clone()], Some(&qw[r]), out);
        }
    }

    /// `dequantize_row_iq4_nl`: `d * kvalues_iq4nl[q]`.
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        for j in 0..QK4_NL / 2 {
            y[j] = d * KVALUES_IQ4NL[(self.qs[j] & 0xf) as usize] as f32;
            y[j + QK4_NL / 2] = d * KVALUES_IQ4NL[(self.qs[j] >> 4) as usize] as f32;
        }
    }
}

// ================================================================================================
// IQ4_XS: x = d * (ls - 32) * kvalues_iq4nl[q], ls a 6-bit scale per 32; 4.25 bits per weight.
// ================================================================================================

/// ggml `block_iq4_xs`: fp16 super-block scale, the high 2 bits of the eight 6-bit sub-scales
/// (little-endian u16, 2 bits per sub-block), their low 4 bits (two per byte, even sub-block in the
/// low nibble), then 8 x 16 bytes of codes laid out per 32 elements as in IQ4_NL.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq, Eq)]
pub struct BlockIq4Xs {
    /// The super-block scale `d`, fp16 bits (little-endian).
    pub d: [u8; 2],
    /// The high 2 bits of the eight 6-bit sub-scales, as a little-endian u16.
    pub scales_h: [u8; 2],
    /// The low 4 bits of the eight sub-scales, two per byte (even sub-block in the low nibble).
    pub scales_l: [u8; QK_K / 64],
    /// The 4-bit codes, per 32 elements laid out as in IQ4_NL.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockIq4Xs>() == 136);

impl BlockFormat for BlockIq4Xs {
    const TYPE: QuantType = QuantType::IQ4_XS;
    const ELEMS: usize = QK_K;
    const USES_IMATRIX: bool = true;

    /// `quantize_iq4_xs(x, y, 1, 256, NULL)`: weights x², ntry = 7.
    fn quantize_block(x: &[f32], y: &mut Self) {
        let out = Iq4Out { dh: &mut y.d, q4: &mut y.qs, scales_h: &mut y.scales_h, scales_l: &mut y.scales_l };
        quantize_iq4_nl_impl(x, None, out);
    }

    /// `quantize_iq4_xs(x, y, 1, n_per_row, qw)`: each super-block sees its own 256 weights.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        for (ibl, y) in y.iter_mut().enumerate() {
            let r = ibl * QK_K..(ibl + 1) * QK_K;
            let out = Iq4Out { dh: &mut y.d, q4: &mut y.qs, scales_h: &mut y.scales_h, scales_l: &mut y.scales_l };
            quantize_iq4_nl_impl(&x[r.clone()], Some(&qw[r]), out);
        }
    }

    /// `dequantize_row_iq4_xs`: `dl = d * (ls - 32)`, then `dl * kvalues_iq4nl[q]`.
    fn dequantize_block(&self, y: &mut [f32]) {
        let d = fp16_to_fp32(u16::from_le_bytes(self.d));
        let scales_h = u16::from_le_bytes(self.scales_h);
        for ib in 0..QK_K / 32 {
            let ls =
                ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32 | ((((scales_h >> (2 * ib)) & 3) as i32) << 4);
            let dl = d * (ls - 32) as f32;
            let qs = &self.qs[16 * ib..16 * (ib + 1)];
            let yb = &mut y[32 * ib..32 * (ib + 1)];
            for j in 0..16 {
                yb[j] = dl * KVALUES_IQ4NL[(qs[j] & 0xf) as usize] as f32;
                yb[j + 16] = dl * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dequantize_row_ref, quantize_row_ref};

    #[test]
    fn best_index_picks_the_nearest_entry_and_midpoints_go_up() {
        let v = &KVALUES_IQ4NL;
        assert_eq!(best_index_int8(v, -1000.0), 0);
        assert_eq!(best_index_int8(v, -127.0), 0);
        assert_eq!(best_index_int8(v, 113.0), 15);
        assert_eq!(best_index_int8(v, 0.0), 8); // -10 and 1: 1 is nearer
        assert_eq!(best_index_int8(v, -4.5), 8); // exact midpoint of -10 and 1
        assert_eq!(best_index_int8(v, -4.6), 7);
        assert_eq!(best_index_int8(v, f32::NAN), 15);
        for (i, &q) in v.iter().enumerate() {
            assert_eq!(best_index_int8(v, q as f32) as usize, i);
        }
    }

    /// The SIMD kernels' form of the search: how many midpoints `x` is not below.
    #[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(x < m)` is the point: true for NaN
    fn midpoint_count(x: f32) -> u8 {
        IQ4NL_MIDPOINTS.iter().filter(|&&m| !(x < m)).count() as u8
    }

    #[test]
    fn counting_midpoints_is_the_binary_search_near_every_midpoint() {
        let v = &KVALUES_IQ4NL;
        for x in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, f32::MIN_POSITIVE, 1e30, -1e30] {
            assert_eq!(midpoint_count(x), best_index_int8(v, x), "{x}");
        }
        // Every float within 2^16 ulps of each midpoint and of each table entry.
        let centres = IQ4NL_MIDPOINTS.iter().copied().chain(v.iter().map(|&q| q as f32));
        for c in centres {
            for d in -(1i32 << 16)..=(1 << 16) {
                let x = f32::from_bits((c.to_bits() as i32 + d) as u32);
                assert_eq!(midpoint_count(x), best_index_int8(v, x), "{x}");
            }
        }
    }

    /// Every float of the table's range (2 * 10^9 of them): run with `--ignored` after changing
    /// the table or the search.
    #[test]
    #[ignore]
    fn counting_midpoints_is_the_binary_search_for_every_float_in_range() {
        let v = &KVALUES_IQ4NL;
        for sign in [0u32, 0x8000_0000] {
            for bits in 0..0x4300_0000u32 {
                let x = f32::from_bits(bits | sign);
                assert_eq!(midpoint_count(x), best_index_int8(v, x), "{x}");
            }
        }
    }

    fn rel_rmse<B: BlockFormat>(x: &[f32]) -> f32 {
        let mut bytes = vec![0u8; x.len() / B::ELEMS * std::mem::size_of::<B>()];
        quantize_row_ref::<B>(x, &mut bytes);
        let mut y = vec![0f32; x.len()];
        dequantize_row_ref::<B>(&bytes, &mut y);
        let se: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
        let ss: f32 = x.iter().map(|a| a * a).sum();
        (se / ss).sqrt()
    }

    #[test]
    fn round_trip_error_is_that_of_a_4_bit_code() {
        let x: Vec<f32> = (0..4096).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect();
        // 16 levels over the range: relative RMSE well under 10%.
        assert!(rel_rmse::<BlockIq4Nl>(&x) < 0.1, "{}", rel_rmse::<BlockIq4Nl>(&x));
        assert!(rel_rmse::<BlockIq4Xs>(&x) < 0.1, "{}", rel_rmse::<BlockIq4Xs>(&x));
    }

    #[test]
    fn zero_blocks_have_zero_scale_and_the_code_of_zero() {
        let mut b = BlockIq4Nl::zeroed();
        BlockIq4Nl::quantize_block(&[0.0; QK4_NL], &mut b);
        assert_eq!(u16::from_le_bytes(b.d), 0);
        assert!(b.qs.iter().all(|&q| q == 0x88));
        // IQ4_XS: max_scale = 0 so d = -0/32 = -0.0; every sub-scale is l = 0, stored as 32.
        let mut b = BlockIq4Xs::zeroed();
        BlockIq4Xs::quantize_block(&[0.0; QK_K], &mut b);
        assert_eq!(u16::from_le_bytes(b.d), 0x8000);
        assert_eq!(b.scales_h, [0xaa, 0xaa]);
        assert_eq!(b.scales_l, [0; 4]);
        assert!(b.qs.iter().all(|&q| q == 0x88));
    }

    #[test]
    fn imatrix_of_ones_differs_from_no_imatrix_only_through_the_weights() {
        // With qw = 1 the weights are sqrt(sigma2 + x²), not x²: same format, a valid encoding.
        let x: Vec<f32> = (0..QK_K).map(|i| ((i * 7919) % 263) as f32 / 50.0 - 2.6).collect();
        let mut y = [BlockIq4Xs::zeroed()];
        BlockIq4Xs::quantize_row_imatrix(&x, &mut y, &[1.0; QK_K]);
        let mut back = vec![0f32; QK_K];
        y[0].dequantize_block(&mut back);
        let se: f32 = x.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum();
        let ss: f32 = x.iter().map(|a| a * a).sum();
        assert!((se / ss).sqrt() < 0.1);
    }
}
