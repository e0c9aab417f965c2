//! Dot products of weight rows with activation rows: the kernel table of the quantized matmul.
//!
//! A weight row of a quantized type is multiplied with activation rows quantized to the 8-bit type
//! ggml pairs it with ([`activation_type`]): Q4_0, Q5_0, Q8_0, IQ4_NL, MXFP4 with Q8_0; Q4_1, Q5_1 with
//! Q8_1; the K-quants and IQ4_XS with Q8_K (their kernels live in `dot_kquants.rs`). Float weights
//! (F32, F16, BF16) are multiplied with f32 activations. One call takes 1..=8 activation rows so a
//! kernel can decode a weight block once and use it for every row.
//!
//! # One result at every level
//!
//! The scalar functions here are the specification; every SIMD kernel gives the same bits. The
//! integer part of a block's dot product is exact, so only the float accumulation has to agree,
//! and the order below is chosen to be the one a SIMD kernel follows at no cost:
//!
//! * **Quantized weights** (blocks of 32): block `b` of the row gives eight exact integer sums of
//!   four consecutive products each, `s_b[i] = sum(q[j] * a[j] for j in 4i..4i+4)` (what
//!   `vpdpbusd` leaves in the eight i32 lanes of a block), and the product of the weight and
//!   activation scales `d_b = d_w * d_a` (both come from fp16 values, so the product is exact in
//!   f32; MXFP4's `d_w` is its E8M0 power of two halved, ggml's `E8M0_TO_FP32_HALF`, and the
//!   product is the same plain f32 multiplication at every level). There are [`BLOCK_SLOTS`] slots of eight lanes; block `b` goes to slot `b % 4`, lane
//!   `i` of it: `acc[8 * (b % 4) + i] = (s_b[i] as f32).mul_add(d_b, acc)`. So the kernel keeps the
//!   integer lanes of a block, converts and scales them and accumulates lane-wise, and reduces
//!   once per row: an AVX-512 register holds two slots (blocks `b`, `b + 1`), two of them hold all
//!   four; AVX2 keeps the four slots in four registers. The Q8_1 pairs add their offset term per
//!   block into eight more lanes, `off[b % 8] = m_w.mul_add(s_a, off)` (eight blocks' fp16 values
//!   are one register). At the end the 32 lanes are halved to 8 (lane `i` plus lane `i + 16`,
//!   then lane `i` plus lane `i + 8`: slots 0+2 and 1+3, then their sum), `off` is added lane by
//!   lane, and the eight lanes are summed by halving.
//! * **Float weights**: element `j` goes into lane `j % 64` of sixty-four partial sums,
//!   `acc[j % 64] = w_j.mul_add(x_j, acc)`. Sixty-four lanes are four AVX-512 (eight AVX2)
//!   registers, so one activation row is four independent FMA chains, enough to hide the FMA
//!   latency while the weight row streams from memory (one chain held the F16 GEMV at half of it).
//! * **The end**: lanes are summed by halving, lane `i` plus lane `i + P/2` until one is left
//!   ([`reduce_halving`]); that is the usual register reduction (high half plus low half).
//!
//! The partial sums start at +0.0 and can never become -0.0 (an exact-zero sum rounds to +0.0), so
//! a SIMD kernel may pad a short last group of blocks or elements with zeros. Integer sums are
//! exact for every code ggml's quantizers write; an 8-bit code of -128 (which no quantizer writes)
//! may saturate the AVX2 `maddubs` path, as it does in ggml.
//! The K-quant kernels follow the same pattern with their own block size (see `dot_kquants.rs`).

use super::dot_kquants;
use crate::error::{Error, Result};
use crate::formats::float::{bf16_to_fp32, fp16_to_fp32};
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::formats::mxfp4::{e8m0_to_fp32_half, KVALUES_MXFP4};
use crate::simd::Level;
use crate::types::QuantType;

/// Dot products of one weight row (n elements, `weight` = its blocks) with `out.len()` activation rows
/// (1..=8) stored one after another in `acts`, each `act_row_bytes` bytes of the paired activation type;
/// `out[r] = dot(weight, act row r)`. n is a multiple of the weight's block size.
pub type VecDotFn = fn(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]);

/// A dot-product kernel for one weight type at one level.
#[derive(Clone, Copy)]
pub struct DotKernel {
    /// The type the activations must be in (F32 for float weights).
    pub act_type: QuantType,
    /// The kernel (see [`VecDotFn`]).
    pub vec_dot: VecDotFn,
    /// The level whose code `vec_dot` is (lower than asked where the type has no faster kernel).
    pub level: Level,
}

/// Most activation rows one [`VecDotFn`] call takes.
pub const MAX_ROWS: usize = 8;

/// Slots of the quantized kernels' partial sums (block `b` goes to slot `b % BLOCK_SLOTS`).
pub const BLOCK_SLOTS: usize = 4;
/// Lanes of one slot: a block's eight sums of four consecutive products.
pub const SLOT_LANES: usize = 8;
/// Lanes of the Q8_1 pairs' offset sums (block `b`'s `m_w * s_a` goes to lane `b % OFFSET_LANES`),
/// and blocks per scale vector of the SIMD kernels.
pub const BLOCK_LANES: usize = 8;
/// Lanes of partial sums of the float kernels (elements `j % FLOAT_LANES`).
pub const FLOAT_LANES: usize = 64;

/// The activation type ggml pairs with `weight` in its dot products; `None` for a type without one.
pub fn activation_type(weight: QuantType) -> Option<QuantType> {
    use QuantType::*;
    Some(match weight {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | MXFP4 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_XS | TQ1_0 | TQ2_0 => Q8_K,
        F32 | F16 | BF16 => F32,
        _ => return None,
    })
}

/// The dot kernel for `weight` at `level`: `None` when `level` is not available on this CPU; falls
/// back level by level to the scalar reference where the type has no kernel at `level`, like
/// `codec_for`. Errors for a weight type with no dot product here.
pub fn dot_kernel_for(weight: QuantType, level: Level) -> Result<Option<DotKernel>> {
    let unsupported = || Error::Unsupported { qtype: weight.name(), what: "matmul" };
    let act_type = activation_type(weight).ok_or_else(unsupported)?;
    let scalar = scalar_vec_dot(weight).ok_or_else(unsupported)?;
    if level > crate::simd::detected_level() {
        return Ok(None);
    }
    let mut kernel = DotKernel { act_type, vec_dot: scalar, level: Level::Scalar };
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::x86_64;
        // Lowest level first, so a higher level's kernel, where there is one, wins.
        if level >= Level::Avx2 {
            if let Some(token) = x86_64::Avx2::try_new() {
                if let Some(f) = x86_64::avx2::dot_kernel(token, weight) {
                    kernel = DotKernel { act_type, vec_dot: f, level: Level::Avx2 };
                }
            }
        }
        if level >= Level::Avx512 {
            if let Some(token) = x86_64::Avx512::try_new() {
                if let Some(f) = x86_64::avx512::dot_kernel(token, weight) {
                    kernel = DotKernel { act_type, vec_dot: f, level: Level::Avx512 };
                }
            }
        }
        if level >= Level::Avx512Vnni && crate::simd::detected_level() >= Level::Avx512Vnni {
            if let Some(token) = x86_64::Avx512::try_new() {
                if let Some(f) = x86_64::avx512::dot_kernel_vnni(token, weight) {
                    kernel = DotKernel { act_type, vec_dot: f, level: Level::Avx512Vnni };
                }
            }
        }
    }
    Ok(Some(kernel))
}

/// The scalar reference dot of `weight`, or `None` for a type without one.
///
/// With this, the ISA tables are the only switches on the type.
pub fn scalar_vec_dot(weight: QuantType) -> Option<VecDotFn> {
    Some(match weight {
        QuantType::Q4_0 => vec_dot_q4_0_q8_0,
        QuantType::Q5_0 => vec_dot_q5_0_q8_0,
        QuantType::Q8_0 => vec_dot_q8_0_q8_0,
        QuantType::IQ4_NL => vec_dot_iq4_nl_q8_0,
        QuantType::MXFP4 => vec_dot_mxfp4_q8_0,
        QuantType::Q4_1 => vec_dot_q4_1_q8_1,
        QuantType::Q5_1 => vec_dot_q5_1_q8_1,
        QuantType::F32 => vec_dot_f32,
        QuantType::F16 => vec_dot_f16,
        QuantType::BF16 => vec_dot_bf16,
        QuantType::Q2_K => dot_kquants::dot_q2_k_q8_k,
        QuantType::Q3_K => dot_kquants::dot_q3_k_q8_k,
        QuantType::Q4_K => dot_kquants::dot_q4_k_q8_k,
        QuantType::Q5_K => dot_kquants::dot_q5_k_q8_k,
        QuantType::Q6_K => dot_kquants::dot_q6_k_q8_k,
        QuantType::IQ4_XS => dot_kquants::dot_iq4_xs_q8_k,
        QuantType::TQ1_0 => dot_kquants::dot_tq1_0_q8_k,
        QuantType::TQ2_0 => dot_kquants::dot_tq2_0_q8_k,
        _ => return None,
    })
}

/// Sums `lanes` by halving: lane `i` plus lane `i + len/2`, until one lane is left. `len` is a
/// power of two.
pub fn reduce_halving(lanes: &mut [f32]) -> f32 {
    let mut len = lanes.len();
    debug_assert!(len.is_power_of_two());
    while len > 1 {
        len /= 2;
        for i in 0..len {
            lanes[i] += lanes[i + len];
        }
    }
    lanes[0]
}

/// Checks the shape contract shared by every kernel and returns the rows of `acts` (each exactly
/// `row_len` bytes) and the number of activation rows.
pub fn act_rows<'a>(
    acts: &'a [u8],
    act_row_bytes: usize,
    row_len: usize,
    n_rows: usize,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    assert!((1..=MAX_ROWS).contains(&n_rows), "1..=8 activation rows per call");
    assert!(
        act_row_bytes >= row_len && acts.len() >= (n_rows - 1) * act_row_bytes + row_len,
        "activation rows too short"
    );
    (0..n_rows).map(move |r| &acts[r * act_row_bytes..r * act_row_bytes + row_len])
}

// ---- quantized weights x 8-bit activations ------------------------------------------------------

/// Elements per block of the legacy types, IQ4_NL and MXFP4.
const QK: usize = 32;

/// A legacy weight block decoded to integers: codes `q`, scale `d`, and for the Q8_1 pairs the
/// offset `m` (the weight is `d * q + m`).
struct Decoded {
    q: [i8; QK],
    d: f32,
    m: f32,
}

fn fp16_at(b: &[u8], at: usize) -> f32 {
    fp16_to_fp32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The low and high nibbles of 16 bytes as elements 0..16 and 16..32, mapped through `map`.
fn nibbles(qs: &[u8], map: impl Fn(u8) -> i8) -> [i8; QK] {
    let mut q = [0i8; QK];
    for j in 0..QK / 2 {
        q[j] = map(qs[j] & 0x0f);
        q[j + QK / 2] = map(qs[j] >> 4);
    }
    q
}

/// Nibbles plus the fifth bits of `qh` (bit j belongs to element j), minus `offset`.
fn five_bits(qh: &[u8], qs: &[u8], offset: i8) -> [i8; QK] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = nibbles(qs, |v| v as i8);
    for (j, v) in q.iter_mut().enumerate() {
        *v = (*v | (((qh >> j) & 1) << 4) as i8) - offset;
    }
    q
}

fn decode_q4_0(b: &[u8]) -> Decoded {
    Decoded { q: nibbles(&b[2..18], |v| v as i8 - 8), d: fp16_at(b, 0), m: 0.0 }
}

fn decode_q5_0(b: &[u8]) -> Decoded {
    Decoded { q: five_bits(&b[2..6], &b[6..22], 16), d: fp16_at(b, 0), m: 0.0 }
}

fn decode_q8_0(b: &[u8]) -> Decoded {
    Decoded { q: std::array::from_fn(|j| b[2 + j] as i8), d: fp16_at(b, 0), m: 0.0 }
}

fn decode_iq4_nl(b: &[u8]) -> Decoded {
    Decoded { q: nibbles(&b[2..18], |v| KVALUES_IQ4NL[v as usize]), d: fp16_at(b, 0), m: 0.0 }
}

/// MXFP4: the E8M0 exponent byte, then the table indices; ggml's doubled E2M1 values meet the
/// halved power of two (`E8M0_TO_FP32_HALF`), as in `ggml_vec_dot_mxfp4_q8_0`.
fn decode_mxfp4(b: &[u8]) -> Decoded {
    Decoded { q: nibbles(&b[1..17], |v| KVALUES_MXFP4[v as usize]), d: e8m0_to_fp32_half(b[0]), m: 0.0 }
}

fn decode_q4_1(b: &[u8]) -> Decoded {
    Decoded { q: nibbles(&b[4..20], |v| v as i8), d: fp16_at(b, 0), m: fp16_at(b, 2) }
}

fn decode_q5_1(b: &[u8]) -> Decoded {
    Decoded { q: five_bits(&b[4..8], &b[8..24], 0), d: fp16_at(b, 0), m: fp16_at(b, 2) }
}

/// The scalar reference of every legacy pair: `WB` weight-block bytes, `AB` activation-block bytes
/// (34 for Q8_0: d, qs; 36 for Q8_1: d, s, qs). The Q8_1 pairs (`AB == 36`) add `m_w * s_a`.
fn vec_dot_blocks<const WB: usize, const AB: usize>(
    n: usize,
    weight: &[u8],
    acts: &[u8],
    act_row_bytes: usize,
    out: &mut [f32],
    decode: fn(&[u8]) -> Decoded,
) {
    let nb = n / QK;
    assert!(n.is_multiple_of(QK) && weight.len() >= nb * WB, "weight row shorter than n");
    let with_offset = AB == 36;
    let qs_at = AB - QK;
    for (row, o) in act_rows(acts, act_row_bytes, nb * AB, out.len()).zip(out.iter_mut()) {
        let mut acc = [0f32; BLOCK_SLOTS * SLOT_LANES];
        let mut off = [0f32; BLOCK_LANES];
        for (b, (wb, ab)) in weight.chunks_exact(WB).zip(row.chunks_exact(AB)).enumerate() {
            let w = decode(wb);
            let d = w.d * fp16_at(ab, 0);
            let slot = &mut acc[SLOT_LANES * (b % BLOCK_SLOTS)..][..SLOT_LANES];
            for (lane, (q, a)) in slot.iter_mut().zip(w.q.chunks_exact(4).zip(ab[qs_at..].chunks_exact(4))) {
                let sum: i32 = q.iter().zip(a).map(|(&q, &a)| q as i32 * a as i8 as i32).sum();
                *lane = (sum as f32).mul_add(d, *lane);
            }
            if with_offset {
                off[b % BLOCK_LANES] = w.m.mul_add(fp16_at(ab, 2), off[b % BLOCK_LANES]);
            }
        }
        *o = reduce_block_lanes(&mut acc, &off);
    }
}

/// The end of a quantized row (see the module docs): the slots halved to eight lanes, the offset
/// lanes added, the eight summed by halving.
fn reduce_block_lanes(acc: &mut [f32; BLOCK_SLOTS * SLOT_LANES], off: &[f32; BLOCK_LANES]) -> f32 {
    let mut len = acc.len();
    while len > SLOT_LANES {
        len /= 2;
        for i in 0..len {
            acc[i] += acc[i + len];
        }
    }
    for (a, o) in acc.iter_mut().zip(off) {
        *a += *o;
    }
    reduce_halving(&mut acc[..SLOT_LANES])
}

macro_rules! legacy_dots {
    ($($name:ident: $wb:literal x $ab:literal, $decode:ident;)*) => {$(
        /// Scalar reference (see the module docs for the accumulation order).
        pub fn $name(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
            vec_dot_blocks::<$wb, $ab>(n, weight, acts, act_row_bytes, out, $decode)
        }
    )*};
}

legacy_dots! {
    vec_dot_q4_0_q8_0: 18 x 34, decode_q4_0;
    vec_dot_q5_0_q8_0: 22 x 34, decode_q5_0;
    vec_dot_q8_0_q8_0: 34 x 34, decode_q8_0;
    vec_dot_iq4_nl_q8_0: 18 x 34, decode_iq4_nl;
    vec_dot_mxfp4_q8_0: 17 x 34, decode_mxfp4;
    vec_dot_q4_1_q8_1: 20 x 36, decode_q4_1;
    vec_dot_q5_1_q8_1: 24 x 36, decode_q5_1;
}

// ---- float weights x f32 activations ------------------------------------------------------------

/// The element type of a float weight (the GEMV and packed GEMM kernels of every level use it).
/// Kernels take it as a constant, `FloatKind::ALL[KIND]`, so the load is chosen at compile time.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FloatKind {
    /// IEEE binary32, 4 bytes per weight.
    F32,
    /// IEEE binary16, 2 bytes per weight, widened exactly to f32.
    F16,
    /// bfloat16, 2 bytes per weight: the high half of an f32, widened by a shift.
    Bf16,
}

impl FloatKind {
    /// Every kind, indexed by [`FloatKind::id`].
    pub const ALL: [FloatKind; 3] = [FloatKind::F32, FloatKind::F16, FloatKind::Bf16];

    /// The index of `self` in [`FloatKind::ALL`].
    pub const fn id(self) -> usize {
        self as usize
    }

    /// The kind of a float weight type.
    pub fn of(weight: QuantType) -> Option<FloatKind> {
        Some(match weight {
            QuantType::F32 => FloatKind::F32,
            QuantType::F16 => FloatKind::F16,
            QuantType::BF16 => FloatKind::Bf16,
            _ => return None,
        })
    }

    /// Bytes per weight.
    pub const fn bytes(self) -> usize {
        match self {
            FloatKind::F32 => 4,
            FloatKind::F16 | FloatKind::Bf16 => 2,
        }
    }

    /// The weight in the first [`FloatKind::bytes`] bytes of `b`, as f32 (exact).
    pub fn to_f32(self, b: &[u8]) -> f32 {
        match self {
            FloatKind::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            FloatKind::F16 => fp16_to_fp32(u16::from_le_bytes([b[0], b[1]])),
            FloatKind::Bf16 => bf16_to_fp32(u16::from_le_bytes([b[0], b[1]])),
        }
    }
}

fn vec_dot_float<const WB: usize>(
    n: usize,
    weight: &[u8],
    acts: &[u8],
    act_row_bytes: usize,
    out: &mut [f32],
    to_f32: fn([u8; WB]) -> f32,
) {
    assert!(weight.len() >= n * WB, "weight row shorter than n");
    for (row, o) in act_rows(acts, act_row_bytes, n * 4, out.len()).zip(out.iter_mut()) {
        let mut acc = [0f32; FLOAT_LANES];
        for (j, (w, x)) in weight.as_chunks::<WB>().0.iter().zip(row.as_chunks::<4>().0).enumerate() {
            let lane = &mut acc[j % FLOAT_LANES];
            *lane = to_f32(*w).mul_add(f32::from_le_bytes(*x), *lane);
        }
        *o = reduce_halving(&mut acc);
    }
}

/// Scalar reference, F32 weights.
pub fn vec_dot_f32(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    vec_dot_float::<4>(n, weight, acts, act_row_bytes, out, f32::from_le_bytes)
}

/// Scalar reference, F16 weights.
pub fn vec_dot_f16(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    vec_dot_float::<2>(n, weight, acts, act_row_bytes, out, |b| fp16_to_fp32(u16::from_le_bytes(b)))
}

/// Scalar reference, BF16 weights.
pub fn vec_dot_bf16(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    vec_dot_float::<2>(n, weight, acts, act_row_bytes, out, |b| bf16_to_fp32(u16::from_le_bytes(b)))
}
