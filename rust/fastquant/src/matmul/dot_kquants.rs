//! Dot products of K-quant (Q2_K..Q6_K), IQ4_XS and ternary (TQ1_0, TQ2_0) weight rows with Q8_K activation rows: the
//! scalar references, and [`dot_kquant_kernel`], which hands out the fastest kernel for a level.
//!
//! Semantics are ggml's `ggml_vec_dot_*_q8_K`: per super-block, the integer products of weight
//! codes and activation codes are summed per sub-block, times the sub-block's integer scale, in
//! exact int32; the weight's offset (the min of Q2_K/Q4_K/Q5_K, the fixed bias of Q3_K/Q6_K) goes
//! through the activation's `bsums` and costs no per-element work. Only then come floats.
//!
//! Every kernel, at every level, sees a super-block the same way ([`Superblock`]): 256 small
//! integer codes `q`, 16 signed scales `s` (one per 16 elements), 16 biases `b`, and the float
//! scales `d`, `dmin`; the weight is `x_e = d * s[e/16] * q_e - dmin * b[e/16]`. With the
//! activation's codes `a` and sums `bsums`, the two exact integers of a super-block are
//! `isum = sum_e s[e/16] * q_e * a_e` and `msum = sum_j b_j * bsums_j`.
//!
//! **Float order (the same at every level, so all levels give the same bits).** Each activation row
//! keeps 8 f32 partial sums `p[0..8]`, all +0.0 at the start. Super-block `i` adds to `p[i % 8]`:
//! * types with a separate min scale (Q2_K, Q4_K, Q5_K):
//!   `p = fma(d_w * d_a, isum as f32, p)` then `p = fma(-(dmin_w * d_a), msum as f32, p)`;
//! * the others (Q3_K, Q6_K, IQ4_XS, TQ1_0, TQ2_0, whose bias has the scale `d` itself): the bias is taken off in
//!   integers first, `p = fma(d_w * d_a, (isum - msum) as f32, p)`.
//!
//! `d_w * d_a` is a plain f32 product, rounded before the fma; `as f32` rounds to nearest even.
//! The result is `((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7))`, the tree of an 8-lane vector
//! halved twice. The SIMD kernels compute 8 consecutive super-blocks' integers, reduce them into
//! the lanes of one vector and do the same operations lane-wise; a missing super-block at the end
//! is a lane with `d_w = d_a = isum = 0`, which adds +0.0 (`p` is never -0.0).

// Loops index by element and sub-block like ggml's C so each line can be checked against it.
#![allow(clippy::needless_range_loop)]

use crate::formats::float::fp16_to_fp32;
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::formats::kquants::q3_k::stored_scale;
use crate::formats::kquants::search::get_scale_min_k4;
use crate::formats::kquants::QK_K;
use crate::simd::Level;
use crate::types::QuantType;

pub use super::dot::VecDotFn;

/// Bytes of one Q8_K activation block: f32 d, 256 i8 codes, 16 i16 sums of 16 codes.
pub const Q8K_BYTES: usize = 292;
/// Offset of the codes in a Q8_K block.
pub const Q8K_QS: usize = 4;
/// Offset of the 16 `bsums` in a Q8_K block.
pub const Q8K_BSUMS: usize = 260;

/// Most activation rows one kernel call takes.
pub const MAX_ROWS: usize = 8;

/// The f32 partial sums per activation row (see the module docs).
pub const PARTIALS: usize = 8;

/// One weight super-block as every kernel computes with it (module docs):
/// `x_e = d * scales[e/16] * codes[e] - dmin * biases[e/16]`.
#[derive(Clone, Copy, Debug)]
pub struct Superblock {
    /// `q`: the 256 small integer codes, in element order.
    pub codes: [i8; QK_K],
    /// `s`: one signed integer scale per 16 elements.
    pub scales: [i8; 16],
    /// `b`: one integer bias per 16 elements (the min of Q2_K/Q4_K/Q5_K, the fixed offset of the others).
    pub biases: [i16; 16],
    /// The float scale of `s * q` (the block's fp16 `d` widened).
    pub d: f32,
    /// The float scale of the biases: the block's `dmin` where [`KquantLayout::separate_min`], else `d`.
    pub dmin: f32,
}

/// How a weight type is read as [`Superblock`]s.
#[derive(Clone, Copy)]
pub struct KquantLayout {
    /// The weight type this layout reads.
    pub qtype: QuantType,
    /// Bytes per super-block.
    pub block_bytes: usize,
    /// Whether `dmin` is its own scale (Q2_K, Q4_K, Q5_K) rather than `d` (the bias folded into
    /// the integer sum).
    pub separate_min: bool,
    /// Decodes one super-block's bytes into a [`Superblock`].
    pub unpack: UnpackFn,
}

/// Reads one super-block of a type's bytes.
pub type UnpackFn = fn(&[u8]) -> Superblock;

/// The layouts of the types with K-quant dot kernels.
pub fn kquant_layout(qtype: QuantType) -> Option<KquantLayout> {
    let (block_bytes, separate_min, unpack): (usize, bool, UnpackFn) = match qtype {
        QuantType::Q2_K => (84, true, unpack_q2_k),
        QuantType::Q3_K => (110, false, unpack_q3_k),
        QuantType::Q4_K => (144, true, unpack_q4_k),
        QuantType::Q5_K => (176, true, unpack_q5_k),
        QuantType::Q6_K => (210, false, unpack_q6_k),
        QuantType::IQ4_XS => (136, false, unpack_iq4_xs),
        QuantType::TQ1_0 => (54, false, unpack_tq1_0),
        QuantType::TQ2_0 => (66, false, unpack_tq2_0),
        _ => return None,
    };
    Some(KquantLayout { qtype, block_bytes, separate_min, unpack })
}

fn fp16_at(b: &[u8], at: usize) -> f32 {
    fp16_to_fp32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// ggml `block_q2_K`: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin; byte
/// `32h + l` holds elements `128h + 32s + l` in bits `2s..2s + 2`.
fn unpack_q2_k(b: &[u8]) -> Superblock {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let mut w =
        Superblock { codes: [0; QK_K], scales: [0; 16], biases: [0; 16], d: fp16_at(b, 80), dmin: fp16_at(b, 82) };
    // Loops over whole runs of 32 bytes (rather than a formula per element) so they vectorize.
    for (h, run) in qs.chunks_exact(32).enumerate() {
        for s in 0..4 {
            for (code, &q) in w.codes[128 * h + 32 * s..][..32].iter_mut().zip(run) {
                *code = ((q >> (2 * s)) & 3) as i8;
            }
        }
    }
    for j in 0..16 {
        w.scales[j] = (scales[j] & 0xF) as i8;
        w.biases[j] = (scales[j] >> 4) as i16;
    }
    w
}

/// ggml `block_q3_K`: hmask[32], qs[64] (Q2_K's layout), 12 bytes of 6-bit scales, d. Element `e`
/// is `d * (sc - 32) * (low2 - 4 * !hbit)`; here `q = low2 + 4 * hbit` (0..8) and the bias is
/// `4 * (sc - 32)` with scale `d`.
fn unpack_q3_k(b: &[u8]) -> Superblock {
    let (hmask, qs) = (&b[..32], &b[32..96]);
    let packed: &[u8; 12] = b[96..108].try_into().expect("12 scale bytes");
    let mut w = Superblock { codes: [0; QK_K], scales: [0; 16], biases: [0; 16], d: fp16_at(b, 108), dmin: 0.0 };
    for (h, run) in qs.chunks_exact(32).enumerate() {
        for s in 0..4 {
            let codes = w.codes[128 * h + 32 * s..][..32].iter_mut();
            for ((code, &q), &m) in codes.zip(run).zip(hmask) {
                *code = (((q >> (2 * s)) & 3) | (((m >> (4 * h + s)) & 1) << 2)) as i8;
            }
        }
    }
    for j in 0..16 {
        let s = stored_scale(packed, j) - 32;
        w.scales[j] = s;
        w.biases[j] = 4 * s as i16;
    }
    w
}

/// The 6-bit scales and mins of a Q4_K/Q5_K block, each repeated for both halves of its
/// 32-element sub-block.
fn min_block_scales(packed: &[u8], w: &mut Superblock) {
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, packed);
        w.scales[2 * j..2 * j + 2].fill(sc as i8);
        w.biases[2 * j..2 * j + 2].fill(m as i16);
    }
}

/// ggml `block_q4_K`: d, dmin, 12 bytes of scales/mins, qs[128]: per 64-element chunk 32 bytes,
/// low nibbles the first 32 elements, high nibbles the next 32.
fn unpack_q4_k(b: &[u8]) -> Superblock {
    let qs = &b[16..144];
    let mut w = unpack_q4_k_header(b);
    for (c, run) in qs.chunks_exact(32).enumerate() {
        let (low, high) = w.codes[64 * c..64 * c + 64].split_at_mut(32);
        for ((l, h), &q) in low.iter_mut().zip(high).zip(run) {
            (*l, *h) = ((q & 0xF) as i8, (q >> 4) as i8);
        }
    }
    w
}

/// A Q4_K block's scales, mins (the biases), `d` and `dmin`; the codes left zero (for readers of
/// the nibbles themselves, such as the packed panels).
pub fn unpack_q4_k_header(b: &[u8]) -> Superblock {
    let mut w =
        Superblock { codes: [0; QK_K], scales: [0; 16], biases: [0; 16], d: fp16_at(b, 0), dmin: fp16_at(b, 2) };
    min_block_scales(&b[4..16], &mut w);
    w
}

/// ggml `block_q5_K`: Q4_K's header, qh[32] (bit `k` of `qh[l]` the fifth bit of element
/// `32k + l`), then Q4_K's nibbles.
fn unpack_q5_k(b: &[u8]) -> Superblock {
    let (qh, qs) = (&b[16..48], &b[48..176]);
    let mut w =
        Superblock { codes: [0; QK_K], scales: [0; 16], biases: [0; 16], d: fp16_at(b, 0), dmin: fp16_at(b, 2) };
    for (c, run) in qs.chunks_exact(32).enumerate() {
        let (low, high) = w.codes[64 * c..64 * c + 64].split_at_mut(32);
        for (((l, h), &q), &bits) in low.iter_mut().zip(high).zip(run).zip(qh) {
            let bits = bits >> (2 * c);
            *l = ((q & 0xF) | ((bits & 1) << 4)) as i8;
            *h = ((q >> 4) | (((bits >> 1) & 1) << 4)) as i8;
        }
    }
    min_block_scales(&b[4..16], &mut w);
    w
}

/// ggml `block_q6_K`: ql[128], qh[64], 16 i8 scales, d. Per 128-element half `h`: `ql[64h + l]`
/// holds elements l (low nibble) and l + 64 (high), `ql[64h + 32 + l]` elements l + 32 and l + 96,
/// `qh[32h + l]` their top two bits at bits 0, 2, 4, 6 for l, l + 32, l + 64, l + 96. The value is
/// `d * sc * (q - 32)`: bias `32 * sc` with scale `d`.
fn unpack_q6_k(b: &[u8]) -> Superblock {
    let (ql, qh) = (&b[..128], &b[128..192]);
    let mut w = Superblock { codes: [0; QK_K], scales: [0; 16], biases: [0; 16], d: fp16_at(b, 208), dmin: 0.0 };
    for h in 0..2 {
        let (ql0, ql1, qh) = (&ql[64 * h..][..32], &ql[64 * h + 32..][..32], &qh[32 * h..][..32]);
        let quarters = w.codes[128 * h..128 * h + 128].as_chunks_mut::<32>().0;
        for l in 0..32 {
            let (a, b, bits) = (ql0[l], ql1[l], qh[l]);
            quarters[0][l] = ((a & 0xF) | ((bits & 3) << 4)) as i8;
            quarters[1][l] = ((b & 0xF) | (((bits >> 2) & 3) << 4)) as i8;
            quarters[2][l] = ((a >> 4) | (((bits >> 4) & 3) << 4)) as i8;
            quarters[3][l] = ((b >> 4) | (((bits >> 6) & 3) << 4)) as i8;
        }
    }
    for j in 0..16 {
        let s = b[192 + j] as i8;
        w.scales[j] = s;
        w.biases[j] = 32 * s as i16;
    }
    w
}

/// ggml `block_iq4_xs`: d, scales_h (u16), scales_l[4], qs[128]; sub-block `ib` (32 elements) has
/// the 6-bit scale `ls` (low nibble from scales_l, high 2 bits from scales_h) and value
/// `d * (ls - 32) * KVALUES_IQ4NL[q]`, the codes in `qs[16ib..16ib + 16]` (low nibbles the first 16
/// elements). The codes here are the signed table values; no bias.
fn unpack_iq4_xs(b: &[u8]) -> Superblock {
    let qs = &b[8..136];
    let mut w = unpack_iq4_xs_header(b);
    for e in 0..QK_K {
        let (ib, l) = (e / 32, e % 32);
        let nibble = (qs[16 * ib + l % 16] >> (4 * (l / 16))) & 0xF;
        w.codes[e] = KVALUES_IQ4NL[nibble as usize];
    }
    w
}

/// An IQ4_XS block's scales and `d`; the codes left zero (for readers of the nibbles themselves,
/// such as the packed panels).
pub fn unpack_iq4_xs_header(b: &[u8]) -> Superblock {
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let scales_l = &b[4..8];
    let mut w = Superblock { codes: [0; QK_K], scales: [0; 16], biases: [0; 16], d: fp16_at(b, 0), dmin: 0.0 };
    for ib in 0..8 {
        let low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
        let high = ((scales_h >> (2 * ib)) & 3) as u8;
        w.scales[2 * ib..2 * ib + 2].fill((low | (high << 4)) as i8 - 32);
    }
    w
}

/// The ternary types' view: codes `q` (0..4; a trit is 0..3), scale 1 and bias 1 everywhere, so
/// `x = d * (q - 1)`.
fn ternary(d: f32) -> Superblock {
    Superblock { codes: [0; QK_K], scales: [1; 16], biases: [1; 16], d, dmin: 0.0 }
}

/// ggml `block_tq1_0`: qs[48] (5 trits a byte), qh[4] (4 trits a byte), d. Trit `n` of byte `b` is
/// `((b * 3^n) mod 256) * 3 >> 8`; bytes `qs[0..32]` hold elements `32n + m`, `qs[32..48]`
/// elements `160 + 16n + m`, `qh[j]` elements `240 + 4n + j`.
fn unpack_tq1_0(b: &[u8]) -> Superblock {
    const POW3: [u8; 5] = [1, 3, 9, 27, 81];
    let trit = |byte: u8, n: usize| ((byte.wrapping_mul(POW3[n]) as u16 * 3) >> 8) as i8;
    let mut w = ternary(fp16_at(b, 52));
    for n in 0..5 {
        for m in 0..32 {
            w.codes[32 * n + m] = trit(b[m], n);
        }
        for m in 0..16 {
            w.codes[160 + 16 * n + m] = trit(b[32 + m], n);
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            w.codes[240 + 4 * n + j] = trit(b[48 + j], n);
        }
    }
    w
}

/// ggml `block_tq2_0`: qs[64] in Q2_K's layout (byte `32h + l`, bits `2s`: element `128h + 32s +
/// l`), d.
fn unpack_tq2_0(b: &[u8]) -> Superblock {
    let mut w = ternary(fp16_at(b, 64));
    for e in 0..QK_K {
        w.codes[e] = ((b[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3) as i8;
    }
    w
}

/// The exact integers `(isum, msum)` of one weight super-block against one Q8_K block.
pub fn superblock_sums(w: &Superblock, act: &[u8]) -> (i32, i32) {
    let qs = &act[Q8K_QS..Q8K_QS + QK_K];
    let mut isum = 0i32;
    let mut msum = 0i32;
    for j in 0..16 {
        let dot: i32 = (0..16).map(|l| w.codes[16 * j + l] as i32 * qs[16 * j + l] as i8 as i32).sum();
        isum += w.scales[j] as i32 * dot;
        let bsum = i16::from_le_bytes([act[Q8K_BSUMS + 2 * j], act[Q8K_BSUMS + 2 * j + 1]]);
        msum += w.biases[j] as i32 * bsum as i32;
    }
    (isum, msum)
}

/// The final sum of the 8 partials: an 8-lane vector halved twice, then the last two lanes.
pub fn reduce_partials(p: &[f32; PARTIALS]) -> f32 {
    let s = [p[0] + p[4], p[1] + p[5], p[2] + p[6], p[3] + p[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// The scalar reference of every type in [`kquant_layout`], in the order the module docs give.
fn dot_scalar(layout: KquantLayout, n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    assert!(n.is_multiple_of(QK_K), "n = {n} is not a multiple of {QK_K}");
    let nb = n / QK_K;
    assert_eq!(weight.len(), nb * layout.block_bytes, "weight row length");
    assert!((1..=MAX_ROWS).contains(&out.len()), "1..=8 activation rows");
    assert!(act_row_bytes >= nb * Q8K_BYTES && acts.len() >= (out.len() - 1) * act_row_bytes + nb * Q8K_BYTES);
    let mut partials = vec![[0f32; PARTIALS]; out.len()];
    for (i, block) in weight.chunks_exact(layout.block_bytes).enumerate() {
        let w = (layout.unpack)(block);
        for (r, p) in partials.iter_mut().enumerate() {
            let act = &acts[r * act_row_bytes + i * Q8K_BYTES..][..Q8K_BYTES];
            let d_a = f32::from_le_bytes(act[..4].try_into().expect("4 bytes"));
            let (isum, msum) = superblock_sums(&w, act);
            let p = &mut p[i % PARTIALS];
            if layout.separate_min {
                *p = (w.d * d_a).mul_add(isum as f32, *p);
                *p = (-(w.dmin * d_a)).mul_add(msum as f32, *p);
            } else {
                *p = (w.d * d_a).mul_add((isum - msum) as f32, *p);
            }
        }
    }
    for (o, p) in out.iter_mut().zip(&partials) {
        *o = reduce_partials(p);
    }
}

macro_rules! scalar_kernels {
    ($($name:ident => $qtype:ident;)*) => {$(
        /// The scalar reference kernel (module docs).
        pub fn $name(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
            let layout = kquant_layout(QuantType::$qtype).expect("a K-quant layout");
            dot_scalar(layout, n, weight, acts, act_row_bytes, out)
        }
    )*};
}

scalar_kernels! {
    dot_q2_k_q8_k => Q2_K;
    dot_q3_k_q8_k => Q3_K;
    dot_q4_k_q8_k => Q4_K;
    dot_q5_k_q8_k => Q5_K;
    dot_q6_k_q8_k => Q6_K;
    dot_iq4_xs_q8_k => IQ4_XS;
    dot_tq1_0_q8_k => TQ1_0;
    dot_tq2_0_q8_k => TQ2_0;
}

/// The best dot kernel for a K-quant, IQ4_XS or ternary `weight` (against Q8_K activations) at
/// `level` or below, through the crate's one table (`dot::dot_kernel_for`); `None` for other types. A level
/// above the detected one gets the best the CPU has.
pub fn dot_kquant_kernel(weight: QuantType, level: Level) -> Option<VecDotFn> {
    // The types of this file are exactly those that pair with Q8_K activations.
    if super::dot::activation_type(weight) != Some(QuantType::Q8_K) {
        return None;
    }
    let level = level.min(crate::simd::detected_level());
    super::dot::dot_kernel_for(weight, level).ok().flatten().map(|k| k.vec_dot)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's element formulas for each code (the unpackers before they were written as runs):
    /// `(qtype, code of element e of block b)`.
    fn element_codes(qtype: QuantType, b: &[u8], e: usize) -> i8 {
        let two_bits = |qs: &[u8]| (qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
        let nibble = |qs: &[u8]| (qs[32 * (e / 64) + e % 32] >> (4 * (e % 64 / 32))) & 0xF;
        (match qtype {
            QuantType::Q2_K => two_bits(&b[16..80]),
            QuantType::Q3_K => two_bits(&b[32..96]) | (((b[e % 32] >> (e / 32)) & 1) << 2),
            QuantType::Q4_K => nibble(&b[16..144]),
            QuantType::Q5_K => nibble(&b[48..176]) | (((b[16 + e % 32] >> (e / 32)) & 1) << 4),
            QuantType::Q6_K => {
                let (h, r) = (e / 128, e % 128);
                let (quarter, l) = (r / 32, r % 32);
                let low = (b[64 * h + 32 * (quarter % 2) + l] >> (4 * (quarter / 2))) & 0xF;
                low | (((b[128 + 32 * h + l] >> (2 * quarter)) & 3) << 4)
            }
            _ => unreachable!(),
        }) as i8
    }

    #[test]
    fn unpackers_give_the_element_formulas_codes() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for qtype in [QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K] {
            let layout = kquant_layout(qtype).unwrap();
            for _ in 0..50 {
                let block: Vec<u8> = (0..layout.block_bytes)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state as u8
                    })
                    .collect();
                let w = (layout.unpack)(&block);
                for e in 0..QK_K {
                    assert_eq!(w.codes[e], element_codes(qtype, &block, e), "{} element {e}", qtype.name());
                }
            }
        }
    }
}
