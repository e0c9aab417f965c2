//! Packed GEMM of Q4_K, Q5_K, Q6_K, IQ4_XS, Q2_K and Q3_K weights with Q8_K activations: the panel
//! and activation layouts, the scalar reference `gemm`, and the [`PackedKernel`]s of every level.
//!
//! All these types share one layout, shaped for `vpdpbusd` (u8 weight x i8 activation, 4 bytes
//! into one i32 lane) and about the size of the GGUF blocks: a super-block of a panel (16 weight
//! rows x 256 elements) is
//!
//! | bytes | what |
//! |---|---|
//! | 2048 (Q4_K, Q5_K, Q6_K, IQ4_XS) | codes (their low 4 bits) as nibbles: 64-byte chunk `h` holds group `2h` (4 elements) in the low nibbles and group `2h + 1` in the high nibbles, row (lane) `c` at `+4 c` |
//! | 1024 (Q2_K, Q3_K) | codes (their low 2 bits) as crumbs: 64-byte vector `t` holds groups `4t..4t + 4` (sub-block `t`), group `4t + i` at bits `2i, 2i + 1` of byte `4 c + e` (lane `c`, element `4 g + e`) |
//! | 512 (Q5_K, Q3_K) | the codes' fifth (Q5_K) or third (Q3_K) bits: group `g` as a little-endian u64 at `8 g`, bit `4 c + e` for lane `c`, element `4 g + e` |
//! | 1024 (Q6_K) | the codes' top two bits as crumbs, arranged as Q2_K's low ones |
//! | `16 * nsub` | sub-block scales as i8, sub-block `j` at `16 j`, lane `c` at `+c` |
//! | `16 * nsub` (min types) | sub-block mins as i8 pairs: pair `q` (sub-blocks `2q`, `2q + 1`) at `32 q + 2 c` |
//! | 32 | `d` of each lane as f16 (GGUF's value) |
//! | 32 (min types) | `dmin` of each lane as f16 |
//!
//! `nsub` is 8 (sub-blocks of 32: Q4_K, Q5_K, IQ4_XS) or 16 (sub-blocks of 16: Q6_K, Q2_K, Q3_K). A
//! Q4_K panel super-block takes 2368 bytes for 16 x 256 weights (4.625 bits a weight, GGUF 4.5),
//! Q5_K 2880 (5.625 against 5.5), Q6_K 3360 (6.5625, exactly GGUF's), IQ4_XS 2208 (4.31 against
//! 4.25), Q2_K 1600 (3.125 against 2.625), Q3_K 1824 (3.5625 against 3.4375), so a single
//! activation row, which streams the weight once, reads about the GGUF bytes here too. The codes
//! are the [`Superblock`] codes: Q2_K 0..4, Q3_K 0..8, Q4_K 0..16, Q5_K 0..32, Q6_K 0..64 (the `-4`
//! of Q3_K and `-32` of Q6_K go through the activation sums); IQ4_XS keeps the 4-bit index into
//! `KVALUES_IQ4NL`, which the kernels look up with one byte shuffle (as `value + 128` for
//! `vpdpbusd`, as the signed value otherwise). A nibble chunk gives its two groups' weight vectors
//! with `and 0x0f` and `srli 4 + and` (Q5_K then adds 16 where its bit plane says, one masked add
//! with AVX-512; Q6_K shifts its crumb vector so the group's crumbs land on bits 4, 5 - the 16-bit
//! shift's carries from the next byte fall outside - and ors them in under `0x30`); a crumb vector
//! gives its four groups' weight vectors with `srli 2i + and 3` (Q3_K then adds 4 as Q5_K adds 16).
//! The scales, mins and `d` are widened once per panel and sub-block (`vpmovsxbd`, `vpmovsxbw`,
//! `vcvtph2ps`, all exact), so the integers and floats are those of the wide layout the kernels
//! used before.
//!
//! An activation super-block ([`ACT_BLOCK_BYTES`]) is the Q8_K block of the GEMV path (the same
//! codes and `d`) rearranged: f32 `d`, the 256 i8 codes, then 64 bytes of per-type sums of codes
//! (`extras`): for the min types the `nsub` sums of a sub-block's codes as i16 (the partners of the
//! i16 mins); for the bias types the `nsub` values `-bias_factor * (sum of the sub-block's codes)`
//! as i32 (Q6_K `-32 * bsum16_j`, Q3_K `-4 * bsum16_j`, IQ4_XS `-128 * bsum32_j`).
//!
//! # The integers of one super-block (exact)
//!
//! Per lane and sub-block `j`: `sb_j = extra_j + sum_e u_e * a_e` for the bias types, where `u_e`
//! is the code as an unsigned byte (IQ4_XS: the signed code plus 128, which the `extra` takes off
//! again; the kernels without `vpdpbusd` may use the signed codes and no extra, the same integer);
//! `sb_j = sum_e u_e * a_e` for the min types. Then `isum = sum_j scale_j * sb_j`, and for the min
//! types `msum = sum_j min_j * bsum_j` (the sum of the sub-block's activation codes). With the
//! activation codes in -127..=127 (ggml's Q8_K never writes -128) nothing here overflows i32 or the
//! i16 pair sums of `maddubs`.
//!
//! # Float order (every level gives these bits)
//!
//! Per output (activation row, weight row): `acc = +0.0`, then super-block by super-block
//! * min types (Q2_K, Q4_K, Q5_K): `acc = fma(d_w * d_a, isum as f32, acc)`, then
//!   `acc = fma(-(dmin_w * d_a), msum as f32, acc)`;
//! * bias types (Q3_K, Q6_K, IQ4_XS): `acc = fma(d_w * d_a, isum as f32, acc)` (the bias is in `isum`).
//!
//! `d_w * d_a` is a plain f32 product rounded before the fma; `as f32` rounds to nearest even. The
//! GEMV ([`super::dot_kquants`]) sums the same terms into 8 partials, so the two paths differ only
//! in the last bits.

//! # For the driver
//!
//! A SIMD `gemm` goes panel group by panel group (3 panels with AVX-512, 2 with AVX2), then super-
//! block by super-block, then over every activation row in tiles of 4 (AVX-512) or 2 (AVX2) rows,
//! prefetching the next tile's activation blocks; the first row tile of a super-block also
//! prefetches the panels two super-blocks ahead (one activation row is memory-bound). From 16 rows
//! the AVX-512 kernel decodes a nibble super-block's codes once into byte codes for its full row
//! tiles (AVX2 from 8 rows, for the pass's two panels). Each panel is read from memory once per
//! call and the activations once per panel group, so a call should get many rows (all of a thread's
//! rows) and as many panels as the thread owns; splitting panels over threads needs no
//! synchronisation.

// Loops index by lane and element so each line can be checked against the layout table above.
#![allow(clippy::needless_range_loop)]

use super::dot_kquants::{
    kquant_layout, unpack_iq4_xs_header, unpack_q4_k_header, Superblock, Q8K_BSUMS, Q8K_BYTES, Q8K_QS,
};
use super::packed::{PackedKernel, PANEL_ROWS};
use crate::codec::{quantize, FloatSlice, QuantizeOptions};
use crate::formats::float::{fp16_to_fp32, fp32_to_fp16};
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::formats::kquants::QK_K;
use crate::simd::Level;
use crate::types::QuantType;

/// Bytes of one activation super-block: f32 d, 256 codes, 64 bytes of sums.
pub const ACT_BLOCK_BYTES: usize = 324;
/// Offset of the codes in an activation super-block.
pub const ACT_CODES: usize = 4;
/// Offset of the per-type sums in an activation super-block.
pub const ACT_EXTRAS: usize = 260;
/// IQ4_XS's table values plus 128, the unsigned bytes `vpdpbusd` takes (the activation extras
/// take the 128 off again).
pub const IQ4_XS_BIASED: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = (KVALUES_IQ4NL[i] as i16 + 128) as u8;
        i += 1;
    }
    t
};
/// Bytes of a panel super-block's codes as bytes, as the kernels decode them (the panels keep
/// 1/4 of that (Q2_K), 3/8 (Q3_K), 1/2 (Q4_K, IQ4_XS), 5/8 (Q5_K) or 3/4 (Q6_K)).
pub const PANEL_CODES_BYTES: usize = QK_K * PANEL_ROWS;

/// How one of the types sits in the shared layout (module docs).
#[derive(Clone, Copy, Debug)]
pub struct PackedFormat {
    /// The weight type this format packs.
    pub qtype: QuantType,
    /// Elements per sub-block scale: 32 or 16.
    pub sub: usize,
    /// Whether the type has its own min scale `dmin` (Q2_K, Q4_K, Q5_K); else its bias goes through
    /// the activation extras.
    pub min: bool,
    /// Whether the codes are signed (IQ4_XS): the unsigned byte is the code plus 128.
    pub signed: bool,
    /// The code bits kept first: 4 as nibble chunks (Q4_K, Q5_K, Q6_K, IQ4_XS; IQ4_XS's its table
    /// index) or 2 as crumb vectors (Q2_K, Q3_K).
    pub low_bits: usize,
    /// The code bits above those, kept in a plane after them: 0, 1 (Q5_K's fifth bits, Q3_K's third
    /// bits, as a bit plane) or 2 (Q6_K's top two bits, as crumb vectors).
    pub high_bits: usize,
    /// For the bias types, `extra_j = -bias_factor * (sum of the sub-block's activation codes)`.
    pub bias_factor: i32,
}

impl PackedFormat {
    /// Sub-blocks per super-block.
    pub const fn nsub(&self) -> usize {
        QK_K / self.sub
    }
    /// Offset of the plane of the codes' high bits (Q3_K, Q5_K, Q6_K).
    pub const fn high_bits_at(&self) -> usize {
        PANEL_CODES_BYTES * self.low_bits / 8
    }
    /// Bytes of the codes of a panel super-block: 2048 as nibbles or 1024 as crumbs, plus 512 for
    /// a bit plane or 1024 for a crumb plane.
    pub const fn codes_bytes(&self) -> usize {
        PANEL_CODES_BYTES * (self.low_bits + self.high_bits) / 8
    }
    /// Offset of the i8 scales in a panel super-block.
    pub const fn scales_at(&self) -> usize {
        self.codes_bytes()
    }
    /// Offset of the i8 min pairs (min types).
    pub const fn mins_at(&self) -> usize {
        self.scales_at() + PANEL_ROWS * self.nsub()
    }
    /// Offset of the 16 f16 `d`.
    pub const fn d_at(&self) -> usize {
        self.mins_at() + if self.min { PANEL_ROWS * self.nsub() } else { 0 }
    }
    /// Offset of the 16 f16 `dmin` (min types).
    pub const fn dmin_at(&self) -> usize {
        self.d_at() + 2 * PANEL_ROWS
    }
    /// Bytes of one panel super-block.
    pub const fn superblock_bytes(&self) -> usize {
        self.dmin_at() + if self.min { 2 * PANEL_ROWS } else { 0 }
    }
}

// Index of each type in [`FORMATS`] (the SIMD kernels take it as a const generic).
/// Index of Q4_K in [`FORMATS`].
pub const Q4_K: usize = 0;
/// Index of Q5_K in [`FORMATS`].
pub const Q5_K: usize = 1;
/// Index of Q6_K in [`FORMATS`].
pub const Q6_K: usize = 2;
/// Index of IQ4_XS in [`FORMATS`].
pub const IQ4_XS: usize = 3;
/// Index of Q2_K in [`FORMATS`].
pub const Q2_K: usize = 4;
/// Index of Q3_K in [`FORMATS`].
pub const Q3_K: usize = 5;

/// The types' formats, indexed by [`Q4_K`], [`Q5_K`], [`Q6_K`], [`IQ4_XS`], [`Q2_K`], [`Q3_K`].
pub const FORMATS: [PackedFormat; 6] = [
    PackedFormat {
        qtype: QuantType::Q4_K,
        sub: 32,
        min: true,
        signed: false,
        low_bits: 4,
        high_bits: 0,
        bias_factor: 0,
    },
    PackedFormat {
        qtype: QuantType::Q5_K,
        sub: 32,
        min: true,
        signed: false,
        low_bits: 4,
        high_bits: 1,
        bias_factor: 0,
    },
    PackedFormat {
        qtype: QuantType::Q6_K,
        sub: 16,
        min: false,
        signed: false,
        low_bits: 4,
        high_bits: 2,
        bias_factor: 32,
    },
    PackedFormat {
        qtype: QuantType::IQ4_XS,
        sub: 32,
        min: false,
        signed: true,
        low_bits: 4,
        high_bits: 0,
        bias_factor: 128,
    },
    PackedFormat {
        qtype: QuantType::Q2_K,
        sub: 16,
        min: true,
        signed: false,
        low_bits: 2,
        high_bits: 0,
        bias_factor: 0,
    },
    PackedFormat {
        qtype: QuantType::Q3_K,
        sub: 16,
        min: false,
        signed: false,
        low_bits: 2,
        high_bits: 1,
        bias_factor: 4,
    },
];

fn format_index(qtype: QuantType) -> Option<usize> {
    FORMATS.iter().position(|f| f.qtype == qtype)
}

fn read_f32(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i16(b: &[u8], at: usize) -> i16 {
    i16::from_le_bytes([b[at], b[at + 1]])
}

/// Bytes of `k` elements of activations (`k` a multiple of 256).
pub fn act_row_bytes(k: usize) -> usize {
    k / QK_K * ACT_BLOCK_BYTES
}

/// Bytes of a panel of `k` elements of `f`.
pub fn panel_bytes(f: PackedFormat, k: usize) -> usize {
    k / QK_K * f.superblock_bytes()
}

/// Super-blocks quantized per call of the Q8_K quantizer in [`prepare_acts`] (a stack buffer).
const PREPARE_CHUNK: usize = 8;

/// Quantizes the rows of `x` to Q8_K with the crate's quantizer and lays them out for `f`.
pub fn prepare_acts(f: PackedFormat, x: &[f32], k: usize, out: &mut [u8]) {
    assert!(k > 0 && k.is_multiple_of(QK_K), "k = {k} is not a positive multiple of {QK_K}");
    let blocks = x.len() / QK_K;
    assert!(x.len().is_multiple_of(k) && out.len() == blocks * ACT_BLOCK_BYTES, "activation buffer size");
    let mut q8 = [0u8; PREPARE_CHUNK * Q8K_BYTES];
    let options = QuantizeOptions { check_finite: false, imatrix: None, level: None };
    for (src, dst) in x.chunks(PREPARE_CHUNK * QK_K).zip(out.chunks_mut(PREPARE_CHUNK * ACT_BLOCK_BYTES)) {
        let n = src.len() / QK_K;
        let q8 = &mut q8[..n * Q8K_BYTES];
        quantize(QuantType::Q8_K, FloatSlice::F32(src), QK_K, q8, &options).expect("whole Q8_K blocks");
        for (b, a) in q8.chunks_exact(Q8K_BYTES).zip(dst.chunks_exact_mut(ACT_BLOCK_BYTES)) {
            arrange_act_block(f, b, a);
        }
    }
}

/// One Q8_K block into the activation layout (module docs).
fn arrange_act_block(f: PackedFormat, q8: &[u8], a: &mut [u8]) {
    a[..4].copy_from_slice(&q8[..4]);
    a[ACT_CODES..ACT_CODES + QK_K].copy_from_slice(&q8[Q8K_QS..Q8K_QS + QK_K]);
    let extras = &mut a[ACT_EXTRAS..ACT_BLOCK_BYTES];
    extras.fill(0);
    let bsum16 = |j: usize| read_i16(q8, Q8K_BSUMS + 2 * j) as i32;
    let per = f.sub / 16;
    for j in 0..f.nsub() {
        let sum: i32 = (per * j..per * (j + 1)).map(bsum16).sum();
        if f.min {
            // |sum| <= 32 * 127: an i16.
            extras[2 * j..2 * j + 2].copy_from_slice(&(sum as i16).to_le_bytes());
        } else {
            extras[4 * j..4 * j + 4].copy_from_slice(&(-f.bias_factor * sum).to_le_bytes());
        }
    }
}

/// Where a nibble type's GGUF block keeps its codes: `qs` at `at`, in runs of `run` bytes whose
/// low nibbles are `run` consecutive elements and whose high nibbles are the next `run`.
struct GgufNibbles {
    at: usize,
    run: usize,
    /// The block's scales, biases, `d` and `dmin` (codes left zero).
    header: fn(&[u8]) -> Superblock,
}

/// GGUF's nibble layout of a nibble type (ggml `block_q4_K`: qs at 16 in runs of 32;
/// `block_iq4_xs`: qs at 8 in runs of 16).
fn gguf_nibbles(f: PackedFormat) -> Option<GgufNibbles> {
    match f.qtype {
        QuantType::Q4_K => Some(GgufNibbles { at: 16, run: 32, header: unpack_q4_k_header }),
        QuantType::IQ4_XS => Some(GgufNibbles { at: 8, run: 16, header: unpack_iq4_xs_header }),
        _ => None,
    }
}

/// The 32 nibble-chunk words of one lane (module docs: word `h` holds group `2h` in the low
/// nibbles and group `2h + 1` in the high nibbles) straight from a GGUF block's runs: 8 bytes of
/// a run hold groups `2m`, `2m + 1` of the run's first half in their low nibbles and the same
/// groups of its second half in their high nibbles.
fn lane_nibble_words(qs: &[u8], run: usize) -> [u32; QK_K / 8] {
    let mut words = [0u32; QK_K / 8];
    let per_half = run / 8;
    for (r, run_bytes) in qs[..QK_K / 2].chunks_exact(run).enumerate() {
        for (m, eight) in run_bytes.as_chunks::<8>().0.iter().enumerate() {
            let x = u64::from_le_bytes(*eight);
            let low = (x & 0x0f0f_0f0f) | ((x >> 28) & 0xf0f0_f0f0);
            let high = ((x >> 4) & 0x0f0f_0f0f) | ((x >> 32) & 0xf0f0_f0f0);
            words[2 * per_half * r + m] = low as u32;
            words[2 * per_half * r + per_half + m] = high as u32;
        }
    }
    words
}

/// Packs up to 16 weight rows of `f` (GGUF layout) into one panel (module docs).
pub fn pack_panel(f: PackedFormat, k: usize, rows: &[u8], row_bytes: usize, panel: &mut [u8]) {
    let layout = kquant_layout(f.qtype).expect("a K-quant layout");
    let nb = k / QK_K;
    assert!(k.is_multiple_of(QK_K) && row_bytes == nb * layout.block_bytes, "row bytes for k = {k}");
    let n_rows = rows.len().checked_div(row_bytes).unwrap_or(0);
    assert!((1..=PANEL_ROWS).contains(&n_rows) && rows.len() == n_rows * row_bytes, "1..=16 whole rows");
    assert_eq!(panel.len(), panel_bytes(f, k), "panel size");
    let sbb = f.superblock_bytes();
    let empty = Superblock { codes: [0; QK_K], scales: [0; 16], biases: [0; 16], d: 0.0, dmin: 0.0 };
    let mut blocks = [empty; PANEL_ROWS];
    let mut words = [[0u32; QK_K / 8]; PANEL_ROWS];
    let nibbles = gguf_nibbles(f);
    for (i, w) in panel.chunks_exact_mut(sbb).enumerate() {
        for lane in 0..n_rows {
            let block = &rows[lane * row_bytes + i * layout.block_bytes..][..layout.block_bytes];
            match &nibbles {
                Some(n) => {
                    blocks[lane] = (n.header)(block);
                    words[lane] = lane_nibble_words(&block[n.at..], n.run);
                }
                None => blocks[lane] = (layout.unpack)(block),
            }
        }
        let (codes, rest) = w.split_at_mut(f.codes_bytes());
        if nibbles.is_none() {
            // The unpacked codes' low bits as nibbles (Q5_K, Q6_K) or crumbs (Q2_K, Q3_K), the
            // bits above as a plane.
            if f.low_bits == 4 {
                for (lane, s) in blocks.iter().enumerate() {
                    words[lane] = codes_nibble_words(&s.codes);
                }
            } else {
                write_crumbs(&blocks, 0, codes);
            }
            let plane = &mut codes[f.high_bits_at()..];
            match f.high_bits {
                1 => write_high_bits(&blocks, f.low_bits, plane),
                2 => write_crumbs(&blocks, f.low_bits, plane),
                _ => {}
            }
        }
        if f.low_bits == 4 {
            write_nibble_codes(&words, codes);
        }
        write_scales(f, &blocks, rest);
    }
}

/// The 32 nibble-chunk words of one lane from its byte codes (their low 4 bits).
fn codes_nibble_words(codes: &[i8; QK_K]) -> [u32; QK_K / 8] {
    let codes: &[u8; QK_K] = bytemuck::cast_ref(codes);
    std::array::from_fn(|h| {
        let x = u64::from_le_bytes(codes.as_chunks::<8>().0[h]);
        ((x & 0x0f0f_0f0f) | ((x >> 28) & 0xf0f0_f0f0)) as u32
    })
}

/// 16 lanes' code bits `shift` (Q5_K's fifth, Q3_K's third) into the bit plane (module docs):
/// group `g`'s u64 at `8 g`.
fn write_high_bits(blocks: &[Superblock; PANEL_ROWS], shift: usize, plane: &mut [u8]) {
    for (g, word) in plane[..PANEL_CODES_BYTES / 8].as_chunks_mut::<8>().0.iter_mut().enumerate() {
        let mut bits = 0u64;
        for (lane, s) in blocks.iter().enumerate() {
            let codes: &[u8; QK_K] = bytemuck::cast_ref(&s.codes);
            let fifth = (u32::from_le_bytes(codes.as_chunks::<4>().0[g]) >> shift) & 0x0101_0101;
            // Bit 0 of byte e to bit 24 + e (the products land on distinct bits: no carries).
            bits |= (((fifth as u64 * 0x0102_0408) >> 24) & 0xf) << (4 * lane);
        }
        *word = bits.to_le_bytes();
    }
}

/// 16 lanes' code bits `shift, shift + 1` (Q2_K's and Q3_K's low two, Q6_K's top two) as crumb
/// vectors (module docs): the 64-byte vector `t` holds groups `4t..4t + 4`, group `4t + i` at bits
/// `2i, 2i + 1` of each byte.
fn write_crumbs(blocks: &[Superblock; PANEL_ROWS], shift: usize, plane: &mut [u8]) {
    let lane_codes: [&[u8; QK_K]; PANEL_ROWS] = std::array::from_fn(|lane| bytemuck::cast_ref(&blocks[lane].codes));
    for (t, vector) in plane[..PANEL_CODES_BYTES / 4].as_chunks_mut::<{ 4 * PANEL_ROWS }>().0.iter_mut().enumerate() {
        let words: [u32; PANEL_ROWS] = std::array::from_fn(|lane| {
            let groups = &lane_codes[lane].as_chunks::<4>().0[4 * t..4 * t + 4];
            let crumbs =
                groups.iter().enumerate().map(|(i, g)| ((u32::from_le_bytes(*g) >> shift) & 0x0303_0303) << (2 * i));
            crumbs.fold(0, |word, crumb| word | crumb).to_le()
        });
        *vector = bytemuck::cast(words);
    }
}

/// 16 lanes' nibble words into the codes of a panel super-block: one 64-byte store per chunk.
fn write_nibble_codes(words: &[[u32; QK_K / 8]; PANEL_ROWS], codes: &mut [u8]) {
    let nibbles = &mut codes[..PANEL_CODES_BYTES / 2];
    for (h, chunk) in nibbles.as_chunks_mut::<{ 4 * PANEL_ROWS }>().0.iter_mut().enumerate() {
        let chunk_words: [u32; PANEL_ROWS] = std::array::from_fn(|lane| words[lane][h].to_le());
        *chunk = bytemuck::cast(chunk_words);
    }
}

/// The scales, mins, `d` and `dmin` of 16 lanes into `rest`, the part of a panel super-block
/// after the codes.
fn write_scales(f: PackedFormat, blocks: &[Superblock; PANEL_ROWS], rest: &mut [u8]) {
    let at = |offset: usize| offset - f.codes_bytes();
    let per = f.sub / 16;
    for j in 0..f.nsub() {
        let scales = &mut rest[at(f.scales_at()) + PANEL_ROWS * j..][..PANEL_ROWS];
        for (lane, s) in blocks.iter().enumerate() {
            scales[lane] = s.scales[per * j] as u8;
        }
    }
    if f.min {
        for q in 0..f.nsub() / 2 {
            let mins = &mut rest[at(f.mins_at()) + 2 * PANEL_ROWS * q..][..2 * PANEL_ROWS];
            for (lane, s) in blocks.iter().enumerate() {
                // Q2_K/Q4_K/Q5_K mins are 0..63: an i8.
                mins[2 * lane] = s.biases[per * 2 * q] as u8;
                mins[2 * lane + 1] = s.biases[per * (2 * q + 1)] as u8;
            }
        }
    }
    let halves = |offset: usize, value: fn(&Superblock) -> f32, rest: &mut [u8]| {
        for (lane, s) in blocks.iter().enumerate() {
            // `value` is an fp16 widened: back to the same bits.
            rest[at(offset) + 2 * lane..][..2].copy_from_slice(&fp32_to_fp16(value(s)).to_le_bytes());
        }
    };
    halves(f.d_at(), |s| s.d, rest);
    if f.min {
        halves(f.dmin_at(), |s| s.dmin, rest);
    }
}

/// Checks the arguments of a `gemm` call against the contract; returns (super-blocks, panels).
#[allow(clippy::too_many_arguments)]
pub fn check_gemm_args(
    f: PackedFormat,
    k: usize,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &[f32],
    out_stride: usize,
) -> (usize, usize) {
    assert!(k > 0 && k.is_multiple_of(QK_K), "k = {k} is not a positive multiple of {QK_K}");
    let n_panels =
        super::packed::check_gemm_args(panels, panel_bytes(f, k), acts, act_row_bytes(k), m, cols, out, out_stride);
    (k / QK_K, n_panels)
}

/// The code of element `e` of lane `lane` in a panel super-block `w`, as the unsigned byte of the
/// module docs (IQ4_XS: its table value plus 128).
fn code_at(f: PackedFormat, w: &[u8], lane: usize, e: usize) -> i32 {
    let (group, byte) = (e / 4, 4 * lane + e % 4);
    let crumb_at = |at: usize| (w[at + 64 * (group / 4) + byte] >> (2 * (group % 4))) & 3;
    let low = if f.low_bits == 4 { (w[64 * (group / 2) + byte] >> (4 * (group % 2))) & 0x0f } else { crumb_at(0) };
    let high = match f.high_bits {
        1 => (w[f.high_bits_at() + 8 * group + byte / 8] >> (byte % 8)) & 1,
        2 => crumb_at(f.high_bits_at()),
        _ => 0,
    };
    let code = low | (high << f.low_bits);
    if f.signed {
        KVALUES_IQ4NL[code as usize] as i32 + 128
    } else {
        code as i32
    }
}

/// The f16 at `at` widened.
fn read_f16(b: &[u8], at: usize) -> f32 {
    fp16_to_fp32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The exact `(isum, msum)` of lane `lane` of a panel super-block `w` with an activation block.
pub fn superblock_ints(f: PackedFormat, w: &[u8], lane: usize, a: &[u8]) -> (i32, i32) {
    let mut isum = 0i32;
    for j in 0..f.nsub() {
        let mut sb = if f.min { 0 } else { read_i32(a, ACT_EXTRAS + 4 * j) };
        for e in f.sub * j..f.sub * (j + 1) {
            sb += code_at(f, w, lane, e) * a[ACT_CODES + e] as i8 as i32;
        }
        isum += w[f.scales_at() + PANEL_ROWS * j + lane] as i8 as i32 * sb;
    }
    let mut msum = 0i32;
    if f.min {
        for j in 0..f.nsub() {
            let min = w[f.mins_at() + 2 * PANEL_ROWS * (j / 2) + 2 * lane + j % 2] as i8 as i32;
            msum += min * read_i16(a, ACT_EXTRAS + 2 * j) as i32;
        }
    }
    (isum, msum)
}

/// The scalar reference `gemm` (module docs for the float order).
#[allow(clippy::too_many_arguments)]
pub fn gemm_scalar(
    f: PackedFormat,
    k: usize,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let (nb, _) = check_gemm_args(f, k, panels, acts, m, cols, out, out_stride);
    let (pb, arb, sbb) = (panel_bytes(f, k), act_row_bytes(k), f.superblock_bytes());
    for c in 0..cols {
        let (panel, lane) = (&panels[c / PANEL_ROWS * pb..][..pb], c % PANEL_ROWS);
        for r in 0..m {
            let act = &acts[r * arb..][..arb];
            let mut acc = 0f32;
            for (w, a) in panel.chunks_exact(sbb).zip(act.chunks_exact(ACT_BLOCK_BYTES)).take(nb) {
                let (isum, msum) = superblock_ints(f, w, lane, a);
                let d_a = read_f32(a, 0);
                acc = (read_f16(w, f.d_at() + 2 * lane) * d_a).mul_add(isum as f32, acc);
                if f.min {
                    acc = (-(read_f16(w, f.dmin_at() + 2 * lane) * d_a)).mul_add(msum as f32, acc);
                }
            }
            out[r * out_stride + c] = acc;
        }
    }
}

/// Per-type entry points with the contract's plain signatures.
macro_rules! type_entry_points {
    ($($index:ident: $act_row:ident, $prepare:ident, $panel_bytes:ident, $pack:ident, $gemm:ident;)*) => {$(
        fn $act_row(k: usize) -> usize {
            act_row_bytes(k)
        }
        fn $prepare(x: &[f32], k: usize, out: &mut [u8]) {
            prepare_acts(FORMATS[$index], x, k, out)
        }
        fn $panel_bytes(k: usize) -> usize {
            panel_bytes(FORMATS[$index], k)
        }
        fn $pack(k: usize, rows: &[u8], row_bytes: usize, panel: &mut [u8]) {
            pack_panel(FORMATS[$index], k, rows, row_bytes, panel)
        }
        fn $gemm(k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize) {
            gemm_scalar(FORMATS[$index], k, panels, acts, m, cols, out, out_stride)
        }
    )*};
}

type_entry_points! {
    Q4_K: act_row_q4_k, prepare_q4_k, panel_bytes_q4_k, pack_q4_k, gemm_q4_k;
    Q5_K: act_row_q5_k, prepare_q5_k, panel_bytes_q5_k, pack_q5_k, gemm_q5_k;
    Q6_K: act_row_q6_k, prepare_q6_k, panel_bytes_q6_k, pack_q6_k, gemm_q6_k;
    IQ4_XS: act_row_iq4_xs, prepare_iq4_xs, panel_bytes_iq4_xs, pack_iq4_xs, gemm_iq4_xs;
    Q2_K: act_row_q2_k, prepare_q2_k, panel_bytes_q2_k, pack_q2_k, gemm_q2_k;
    Q3_K: act_row_q3_k, prepare_q3_k, panel_bytes_q3_k, pack_q3_k, gemm_q3_k;
}

/// A type's scalar [`PackedKernel`] from its entry points.
macro_rules! scalar_kernel {
    ($act_row:ident, $prepare:ident, $panel_bytes:ident, $pack:ident, $gemm:ident) => {
        PackedKernel {
            act_row_bytes: $act_row,
            prepare_acts: $prepare,
            panel_bytes: $panel_bytes,
            pack_panel: $pack,
            gemm: $gemm,
            level: Level::Scalar,
        }
    };
}

/// The packed kernel of Q2_K..Q6_K or IQ4_XS at `level` (or the best below it); `None`
/// for other types. `level` must be available on this CPU.
pub fn packed_kquant_kernel(weight: QuantType, level: Level) -> Option<PackedKernel> {
    let index = format_index(weight)?;
    let mut kernel = match index {
        Q4_K => scalar_kernel!(act_row_q4_k, prepare_q4_k, panel_bytes_q4_k, pack_q4_k, gemm_q4_k),
        Q5_K => scalar_kernel!(act_row_q5_k, prepare_q5_k, panel_bytes_q5_k, pack_q5_k, gemm_q5_k),
        Q6_K => scalar_kernel!(act_row_q6_k, prepare_q6_k, panel_bytes_q6_k, pack_q6_k, gemm_q6_k),
        IQ4_XS => scalar_kernel!(act_row_iq4_xs, prepare_iq4_xs, panel_bytes_iq4_xs, pack_iq4_xs, gemm_iq4_xs),
        Q2_K => scalar_kernel!(act_row_q2_k, prepare_q2_k, panel_bytes_q2_k, pack_q2_k, gemm_q2_k),
        _ => scalar_kernel!(act_row_q3_k, prepare_q3_k, panel_bytes_q3_k, pack_q3_k, gemm_q3_k),
    };
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::x86_64;
        let level = level.min(crate::simd::detected_level());
        if level >= Level::Avx2 {
            if let Some(token) = x86_64::Avx2::try_new() {
                kernel.gemm = x86_64::avx2::packed_kquant_gemm(token, index);
                kernel.level = Level::Avx2;
            }
        }
        if level >= Level::Avx512 {
            if let Some(token) = x86_64::Avx512::try_new() {
                let vnni = level >= Level::Avx512Vnni;
                kernel.gemm = x86_64::avx512::packed_kquant_gemm(token, index, vnni);
                kernel.level = if vnni { Level::Avx512Vnni } else { Level::Avx512 };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = level;
    Some(kernel)
}
