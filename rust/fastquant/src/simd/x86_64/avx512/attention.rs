//! AVX-512 attention tile kernels (see `attention::TileKernels` for what each computes and
//! `attention::kernels` for the scalar reference they must match up to reassociation).
//!
//! * `qk`: register-blocked GEMM over the transposed key tile: 8 query rows x 32 keys in 16 zmm
//!   accumulators; each step loads 2 key vectors and broadcasts 8 query values.
//! * `pv`: 6 output rows x 64 columns in 24 accumulators, loaded once per key tile and stored back
//!   (each key's 4 value vectors feed 24 FMAs; 4 rows x 64 ran ~3% slower at D = 128).
//! * `exp`: Cephes' degree-5 polynomial on a range-reduced argument, `vscalefps` for the power of
//!   two (which also underflows to exactly 0 for very negative inputs), about 1 ulp.
//! * `transpose`: 16 x 16 blocks in registers.
//! * `qk_q8` with VNNI: keys in lanes. 16 keys' codes are transposed in registers into vectors of
//!   4-byte groups, so each query row's block dot is 8 `vpdpbusd` (`k xor 0x80` times the row's
//!   broadcast groups, started from `-128·Σq`), exact in i32 with one lane per key: no horizontal
//!   sums, and the float part is the scalar reference's order lane-wise (bit-identical scores).
//! * `qk_q8` without VNNI: integer dots of Q8_0 query and key blocks, two blocks per zmm: `|k|`
//!   (unsigned) times `q` with `k`'s sign (`vpmaddubsw`, no saturation: |q| <= 127 as our quantizer
//!   writes it), pairs summed by `vpmaddwd`, then scaled per block in f32; 4 query rows (held in
//!   registers, codes and scales) share each key's loads, and their 4 scores are reduced together.
//! * `pv_q8`: 4 output rows x 64 columns (two V blocks) in 16 accumulators; each key's blocks are
//!   widened int8 -> f32 and scaled in registers once for the 4 rows.
//! * `qk_f16`: 4 query rows x 4 F16 keys in 16 accumulators, 16 head dims per step (each key chunk
//!   widened by `vcvtph2ps` once for the 4 rows); the 4 rows' 4 scores reduced together.
//! * `pv_f16`: 4 output rows x 64 columns in 16 accumulators, each key's F16 chunk widened once.
//!
//! Soundness: every kernel is a `#[target_feature]` function called only from the safe wrappers
//! in the table [`attention_kernels`] hands out for an [`Avx512`] token. Pointer reads and writes
//! stay inside the bounds the `check_*` asserts establish, as each `SAFETY` comment says.

use std::arch::x86_64::*;

use super::legacy::{broadcast_fp16, dequantize_q8_codes};
use crate::attention::kernels::{
    check_pv, check_pv_f16, check_pv_q8, check_qk, check_qk_f16, check_qk_q8, check_transpose, q8_0_scale,
    transpose_edges, Q8_0_BLOCK_BYTES,
};
use crate::attention::TileKernels;
use crate::simd::x86_64::Avx512;
use crate::simd::Level;

/// The AVX-512 tile kernels; with `vnni` (the `avx512vnni` level) the Q8_0 scores use `vpdpbusd`
/// when the CPU has it.
pub fn attention_kernels(_token: Avx512, vnni: bool) -> TileKernels {
    let vnni = vnni && std::arch::is_x86_feature_detected!("avx512vnni");
    TileKernels {
        level: if vnni { Level::Avx512Vnni } else { Level::Avx512 },
        qk,
        pv,
        max,
        exp_sum,
        softcap,
        scale,
        transpose,
        qk_q8: if vnni { qk_q8_vnni } else { qk_q8 },
        pv_q8,
        qk_f16,
        pv_f16,
    }
}

/// The VNNI `qk_q8` entry point.
fn qk_q8_vnni(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &mut [f32], ld: usize) {
    // SAFETY: only reachable through the table `attention_kernels` returns for an `Avx512` token
    // after detecting `avx512vnni`, so the CPU has every feature the kernel enables.
    unsafe { qk_q8_avx512vnni(q8, rows, k, n, row_bytes, s, ld) }
}

/// Safe entry points for the table: each calls the `#[target_feature]` kernel of the same shape.
macro_rules! entry_points {
    ($($name:ident => $kernel:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {$(
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: only reachable through the table `attention_kernels` returns for an `Avx512`
            // token, which proves the CPU has every feature the kernel enables.
            unsafe { $kernel($($arg),*) }
        }
    )*};
}

entry_points! {
    qk => qk_avx512(q: &[f32], rows: usize, d_len: usize, kt: &[f32], ld: usize, s: &mut [f32]);
    pv => pv_avx512(p: &[f32], rows: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &mut [f32]);
    max => max_avx512(x: &[f32]) -> f32;
    exp_sum => exp_sum_avx512(x: &mut [f32], m: f32) -> f32;
    softcap => softcap_avx512(x: &mut [f32], cap: f32);
    scale => scale_avx512(x: &mut [f32], a: f32);
    transpose => transpose_avx512(k: &[f32], n: usize, d_len: usize, kt: &mut [f32], ld: usize);
    qk_q8 => qk_q8_avx512(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &mut [f32], ld: usize);
    pv_q8 => pv_q8_avx512(
        p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], row_bytes: usize, o: &mut [f32], dp: usize
    );
    qk_f16 => qk_f16_avx512(q: &[f32], rows: usize, d_len: usize, k: &[u8], n: usize, s: &mut [f32], ld: usize);
    pv_f16 => pv_f16_avx512(
        p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], d_len: usize, o: &mut [f32], dp: usize
    );
}

/// The 32 int8 codes of the Q8_0 block at `b`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn q8_codes(b: &[u8]) -> __m256i {
    let codes: &[u8; 32] = b[2..34].try_into().expect("a Q8_0 block");
    // SAFETY: `codes` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(codes.as_ptr().cast()) }
}

/// Query rows per pass of `qk_q8_avx512`: they share each key block's loads and sign masks.
const Q8_ROWS: usize = 4;

/// Block pairs of the query rows kept in registers while the keys stream past; longer rows are
/// done in chunks of this many pairs, the later chunks adding to the scores.
const HOISTED_PAIRS: usize = 4;

/// The codes of blocks `2p` and `2p + 1` of a Q8_0 row (zeros for a missing second block) and
/// their scales as lanes (8 x the first, 8 x the second, matching `vpmaddwd`'s lane order).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn q8_pair(row: &[u8], p: usize, blocks: usize) -> (__m512i, __m512) {
    let first = &row[2 * p * Q8_0_BLOCK_BYTES..(2 * p + 1) * Q8_0_BLOCK_BYTES];
    let lo = _mm512_castsi256_si512(q8_codes(first));
    let d_lo = _mm_set1_epi16(i16::from_le_bytes([first[0], first[1]]));
    if 2 * p + 1 < blocks {
        let second = &row[(2 * p + 1) * Q8_0_BLOCK_BYTES..(2 * p + 2) * Q8_0_BLOCK_BYTES];
        let d_hi = _mm_set1_epi16(i16::from_le_bytes([second[0], second[1]]));
        let codes = _mm512_inserti64x4::<1>(lo, q8_codes(second));
        (codes, _mm512_cvtph_ps(_mm256_set_m128i(d_hi, d_lo)))
    } else {
        (_mm512_zextsi256_si512(q8_codes(first)), _mm512_cvtph_ps(_mm256_zextsi128_si256(d_lo)))
    }
}

/// The sums of the 16 lanes of each of `acc[0..4]`, in that order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn reduce_add_4(acc: &[__m512; Q8_ROWS]) -> __m128 {
    let half = |v: __m512| _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let h01 = _mm256_hadd_ps(half(acc[0]), half(acc[1]));
    let h23 = _mm256_hadd_ps(half(acc[2]), half(acc[3]));
    let h = _mm256_hadd_ps(h01, h23);
    _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
}

/// A `qk_q8` kernel: 4 query rows' codes and scales (and a per-lane bias) held in registers while
/// the keys stream past, one block pair per zmm, the rows' 4 scores reduced together. The int8 dot
/// itself is the macro's argument: `key` prepares a key pair's codes once for the rows, `bias`
/// makes the accumulator start of a query pair, `dot` gives 16 i32 lanes (8 per block) of k·q.
macro_rules! qk_q8_kernel {
    ($name:ident, $features:literal,key: |$kv:ident| $key:expr,bias: |$qb:ident| $bias:expr,dot: |$kp:ident, $qc:ident, $start:ident| $dot:expr) => {
        #[target_feature(enable = $features)]
        fn $name(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &mut [f32], ld: usize) {
            check_qk_q8(q8, rows, k, n, row_bytes, s, ld);
            let blocks = row_bytes / Q8_0_BLOCK_BYTES;
            let pairs = blocks.div_ceil(2);
            for r0 in (0..rows).step_by(Q8_ROWS) {
                let mr = Q8_ROWS.min(rows - r0);
                for p0 in (0..pairs).step_by(HOISTED_PAIRS) {
                    let np = HOISTED_PAIRS.min(pairs - p0);
                    // The query side of this chunk, loaded once for all n keys.
                    let mut qv = [[(_mm512_setzero_si512(), _mm512_setzero_ps()); HOISTED_PAIRS]; Q8_ROWS];
                    let mut starts = [[_mm512_setzero_si512(); HOISTED_PAIRS]; Q8_ROWS];
                    for (i, (qr, st)) in qv.iter_mut().zip(starts.iter_mut()).enumerate().take(mr) {
                        let qrow = &q8[(r0 + i) * row_bytes..(r0 + i + 1) * row_bytes];
                        for t in 0..np {
                            qr[t] = q8_pair(qrow, p0 + t, blocks);
                            let $qb = qr[t].0;
                            st[t] = $bias;
                        }
                    }
                    for j in 0..n {
                        if r0 == 0 && p0 == 0 {
                            prefetch_row(k.as_ptr().wrapping_add((j + PREFETCH_ROWS) * row_bytes), row_bytes);
                        }
                        let krow = &k[j * row_bytes..(j + 1) * row_bytes];
                        let mut acc = [_mm512_setzero_ps(); Q8_ROWS];
                        for t in 0..np {
                            let ($kv, dk) = q8_pair(krow, p0 + t, blocks);
                            let $kp = $key;
                            for ((a, qr), st) in acc.iter_mut().zip(&qv).zip(&starts).take(mr) {
                                let (($qc, dq), $start) = (qr[t], st[t]);
                                let dots: __m512i = $dot;
                                *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), _mm512_mul_ps(dq, dk), *a);
                            }
                        }
                        let mut sums = [0f32; Q8_ROWS];
                        // SAFETY: `sums` is 4 writable floats; `storeu` has no alignment requirement.
                        unsafe { _mm_storeu_ps(sums.as_mut_ptr(), reduce_add_4(&acc)) };
                        for (i, x) in sums.iter().enumerate().take(mr) {
                            let y = &mut s[(r0 + i) * ld + j];
                            *y = if p0 == 0 { *x } else { *y + x };
                        }
                    }
                }
            }
        }
    };
}

// |k| (unsigned) times q with k's sign (`vpmaddubsw`; no saturation as |q| <= 127, which our
// quantizer guarantees), pairs summed by `vpmaddwd`.
qk_q8_kernel!(
    qk_q8_avx512,
    "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c",
    key: |kv| (_mm512_abs_epi8(kv), _mm512_movepi8_mask(kv)),
    bias: |_qc| _mm512_setzero_si512(),
    dot: |kp, qc, _start| {
        let q_signed = _mm512_mask_sub_epi8(qc, kp.1, _mm512_setzero_si512(), qc);
        _mm512_madd_epi16(_mm512_maddubs_epi16(kp.0, q_signed), _mm512_set1_epi16(1))
    }
);

/// Keys per pass of the VNNI `qk_q8`: one zmm lane per key.
const Q8_KEYS: usize = 16;

/// Q8_0 blocks of a row whose per-row constants (`-128·Σq`, `d_q`) one pass keeps on the stack;
/// longer rows are done in chunks of this many blocks, the later chunks adding to the scores.
const Q8_CHUNK: usize = 8;

/// How many key rows ahead the VNNI `qk_q8` and `pv_q8` prefetch Q8_0 K/V rows: at 16 (one key
/// group) Q8_0 decode waited on memory at Nk = 32768 (~130 GFLOP/s); 64 gave ~155, 128 no more.
const Q8_PREFETCH_KEYS: usize = 64;

/// The VNNI `qk_q8`: keys in lanes. For each 16 keys and each block, the keys' 32 code bytes are
/// transposed in registers into 8 vectors of 4-byte groups (vector `g` lane `j` = bytes `4g..4g+4`
/// of key `j`), so each query row's block dot is 8 `vpdpbusd` with the row's 4-byte groups
/// broadcast, exact in i32 and already one lane per key: no horizontal sums. `vpdpbusd` wants an
/// unsigned operand: `k xor 0x80` (= k + 128) times q, started from `-128·Σq`, is exactly `Σ k·q`.
/// The float part is the scalar reference's, lane-wise: `s = s + dot·(d_q·d_k)` block by block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
fn qk_q8_avx512vnni(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &mut [f32], ld: usize) {
    check_qk_q8(q8, rows, k, n, row_bytes, s, ld);
    let blocks = row_bytes / Q8_0_BLOCK_BYTES;
    if n == 0 || blocks == 0 {
        return;
    }
    for r0 in (0..rows).step_by(Q8_ROWS) {
        for b0 in (0..blocks).step_by(Q8_CHUNK) {
            let nb = Q8_CHUNK.min(blocks - b0);
            let args = (q8, r0, k, n, row_bytes, b0, nb);
            match ((rows - r0).min(Q8_ROWS), nb) {
                (4, 4) => qk_q8_vnni_rows::<4, 4>(args, s, ld),
                (1, _) => qk_q8_vnni_rows::<1, 0>(args, s, ld),
                (2, _) => qk_q8_vnni_rows::<2, 0>(args, s, ld),
                (3, _) => qk_q8_vnni_rows::<3, 0>(args, s, ld),
                _ => qk_q8_vnni_rows::<4, 0>(args, s, ld),
            }
        }
    }
}

/// The query side and key range of one `qk_q8_vnni_rows` pass: `(q8, r0, k, n, row_bytes, b0, nb)`.
type Q8Pass<'a> = (&'a [u8], usize, &'a [u8], usize, usize, usize, usize);

/// Scores of query rows `r0..r0 + MR` over blocks `b0..b0 + nb` (`NB` when it is not 0: D = 128
/// gets a fully unrolled block loop), 16 keys at a time; chunks after the first add to `s`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
#[inline]
fn qk_q8_vnni_rows<const MR: usize, const NB: usize>(pass: Q8Pass, s: &mut [f32], ld: usize) {
    let (q8, r0, k, n, row_bytes, b0, nb) = pass;
    let nb = if NB == 0 { nb } else { NB };
    // Per row and block: the vpdpbusd start -128·Σq and the scale d_q.
    let mut bias = [[0i32; Q8_CHUNK]; MR];
    let mut dq = [[0f32; Q8_CHUNK]; MR];
    for i in 0..MR {
        let qrow = &q8[(r0 + i) * row_bytes..(r0 + i + 1) * row_bytes];
        for t in 0..nb {
            let qb = &qrow[(b0 + t) * Q8_0_BLOCK_BYTES..(b0 + t + 1) * Q8_0_BLOCK_BYTES];
            bias[i][t] = -128 * qb[2..].iter().map(|&c| c as i8 as i32).sum::<i32>();
            dq[i][t] = q8_0_scale(qb);
        }
    }
    let flip = _mm512_set1_epi8(i8::MIN);
    for j0 in (0..n).step_by(Q8_KEYS) {
        // Lanes past the last key repeat it (in bounds; their scores are not stored).
        let last = n - 1 - j0;
        let live = tail_mask((n - j0).min(Q8_KEYS));
        let key = |t: usize| k[(j0 + t.min(last)) * row_bytes..].as_ptr();
        if r0 == 0 && b0 == 0 {
            prefetch_row(k.as_ptr().wrapping_add((j0 + Q8_PREFETCH_KEYS) * row_bytes), Q8_KEYS * row_bytes);
        }
        // The keys' block scales, gathered by scalar loads (`vpgatherdd` took ~40% of the time on Zen 5).
        let mut dk_bits = [[0u16; Q8_KEYS]; Q8_CHUNK];
        for t in 0..Q8_KEYS {
            let row = key(t).wrapping_add(b0 * Q8_0_BLOCK_BYTES);
            for (b, bits) in dk_bits.iter_mut().enumerate().take(nb) {
                // SAFETY: the first two bytes (the f16 scale) of block b0 + b < blocks of a key row.
                bits[t] = u16::from_le(unsafe { row.add(b * Q8_0_BLOCK_BYTES).cast::<u16>().read_unaligned() });
            }
        }
        let mut sums = [_mm512_setzero_ps(); MR];
        if b0 > 0 {
            for (i, x) in sums.iter_mut().enumerate() {
                // SAFETY: the live lanes are keys j0.. < n <= ld of row r0 + i < rows (check_qk_q8).
                *x = unsafe { _mm512_maskz_loadu_ps(live, s.as_ptr().add((r0 + i) * ld + j0)) };
            }
        }
        for t in 0..nb {
            let at = (b0 + t) * Q8_0_BLOCK_BYTES;
            // Key j of this pass sits in 256-bit half h of z[i] for (i, h) as laid out here, so that
            // after the three shuffle stages lane j of every vector belongs to key j.
            let z: [__m512i; 8] = std::array::from_fn(|i| {
                let lo_key = if i < 4 { i } else { i + 4 };
                // SAFETY: `key` points at a whole key row (index clamped to n - 1), whose block t
                // codes are the 32 bytes at at + 2.
                let (lo, hi) = unsafe {
                    (
                        _mm256_loadu_si256(key(lo_key).add(at + 2).cast()),
                        _mm256_loadu_si256(key(lo_key + 4).add(at + 2).cast()),
                    )
                };
                _mm512_xor_si512(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi), flip)
            });
            let kt = transpose_8x16_groups(z);
            // SAFETY: dk_bits[t] is 16 readable u16; `loadu` has no alignment requirement.
            let dk = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(dk_bits[t].as_ptr().cast()) });
            for i in 0..MR {
                let qcodes = q8[(r0 + i) * row_bytes + at + 2..(r0 + i) * row_bytes + at + 34].as_ptr();
                let mut acc = [_mm512_set1_epi32(bias[i][t]), _mm512_setzero_si512()];
                for (g, kv) in kt.iter().enumerate() {
                    // SAFETY: bytes 4g..4g + 4 of the block's 32 codes.
                    let qg = _mm512_set1_epi32(unsafe { qcodes.add(4 * g).cast::<i32>().read_unaligned() });
                    acc[g % 2] = _mm512_dpbusd_epi32(acc[g % 2], *kv, qg);
                }
                let dot = _mm512_cvtepi32_ps(_mm512_add_epi32(acc[0], acc[1]));
                sums[i] = _mm512_add_ps(sums[i], _mm512_mul_ps(dot, _mm512_mul_ps(_mm512_set1_ps(dq[i][t]), dk)));
            }
        }
        for (i, x) in sums.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm512_mask_storeu_ps(s.as_mut_ptr().add((r0 + i) * ld + j0), live, *x) };
        }
    }
}

/// The 8 x 16 transpose of 4-byte groups behind the VNNI `qk_q8`: `z[i]` holds the 8 groups of
/// key `i` (`i + 4` from `i = 4` on) in its low half and of key `i + 4` (`i + 8`) in its high half;
/// the result's vector `g` holds group `g` of keys 0..16 in lane order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn transpose_8x16_groups(z: [__m512i; 8]) -> [__m512i; 8] {
    // Within each 128-bit lane: 32-bit then 64-bit interleaves (a 4 x 4 transpose per 4 vectors).
    let t: [__m512i; 8] = std::array::from_fn(|i| {
        let (a, b) = (z[i & !1], z[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    // u[4h + e], 128-bit lane L: group 4·(L % 2) + e of the four keys of z[4h..4h + 4]'s half L / 2.
    let u: [__m512i; 8] = std::array::from_fn(|i| {
        let (h, e) = (i / 4, i % 4);
        let (a, b) = (t[4 * h + e / 2], t[4 * h + 2 + e / 2]);
        if e % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    // Lanes 0 and 2 (groups 0..4) or 1 and 3 (groups 4..8) of u[e] (keys 0..8) and u[4 + e] (8..16).
    std::array::from_fn(|g| {
        let e = g % 4;
        if g < 4 {
            _mm512_shuffle_i32x4::<0b10_00_10_00>(u[e], u[4 + e])
        } else {
            _mm512_shuffle_i32x4::<0b11_01_11_01>(u[e], u[4 + e])
        }
    })
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn pv_q8_avx512(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], row_bytes: usize, o: &mut [f32], dp: usize) {
    check_pv_q8(p, rows, ld, n, v, row_bytes, o, dp);
    let blocks = row_bytes / Q8_0_BLOCK_BYTES;
    for r0 in (0..rows).step_by(Q8_ROWS) {
        let mut b = 0;
        while b < blocks {
            let two = b + 2 <= blocks;
            match ((rows - r0).min(Q8_ROWS), two) {
                (1, true) => pv_q8_block::<1, 2>(p, r0, ld, n, v, row_bytes, o, dp, b),
                (2, true) => pv_q8_block::<2, 2>(p, r0, ld, n, v, row_bytes, o, dp, b),
                (3, true) => pv_q8_block::<3, 2>(p, r0, ld, n, v, row_bytes, o, dp, b),
                (_, true) => pv_q8_block::<4, 2>(p, r0, ld, n, v, row_bytes, o, dp, b),
                (1, false) => pv_q8_block::<1, 1>(p, r0, ld, n, v, row_bytes, o, dp, b),
                (2, false) => pv_q8_block::<2, 1>(p, r0, ld, n, v, row_bytes, o, dp, b),
                (3, false) => pv_q8_block::<3, 1>(p, r0, ld, n, v, row_bytes, o, dp, b),
                (_, false) => pv_q8_block::<4, 1>(p, r0, ld, n, v, row_bytes, o, dp, b),
            }
            b += if two { 2 } else { 1 };
        }
    }
}

/// Output rows `r0..r0 + MR`, columns of V blocks `b..b + NB` (`NB` is 2 or 1): `2·NB·MR`
/// accumulators kept in registers over the keys (const sizes, so none spills), each key's blocks
/// widened and scaled once for the MR rows.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pv_q8_block<const MR: usize, const NB: usize>(
    p: &[f32],
    r0: usize,
    ld: usize,
    n: usize,
    v: &[u8],
    row_bytes: usize,
    o: &mut [f32],
    dp: usize,
    b: usize,
) {
    let pp = p[r0 * ld..(r0 + MR) * ld].as_ptr();
    let op = o[r0 * dp..(r0 + MR) * dp].as_mut_ptr();
    let c0 = b * 32;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut acc2 = [[_mm512_setzero_ps(); 2]; MR];
    for i in 0..MR {
        // SAFETY: columns c0..c0 + 32·NB <= D <= dp of row r0 + i < rows (check_pv_q8).
        unsafe {
            acc[i][0] = _mm512_loadu_ps(op.add(i * dp + c0));
            acc[i][1] = _mm512_loadu_ps(op.add(i * dp + c0 + 16));
            if NB == 2 {
                acc2[i][0] = _mm512_loadu_ps(op.add(i * dp + c0 + 32));
                acc2[i][1] = _mm512_loadu_ps(op.add(i * dp + c0 + 48));
            }
        }
    }
    for j in 0..n {
        if r0 == 0 && b == 0 {
            prefetch_stream_row(v.as_ptr().wrapping_add((j + Q8_PREFETCH_KEYS) * row_bytes), row_bytes);
        }
        let at = j * row_bytes + b * Q8_0_BLOCK_BYTES;
        let vb = &v[at..at + NB * Q8_0_BLOCK_BYTES];
        let (lo, hi) = dequantize_q8_codes(&vb[2..34], broadcast_fp16(vb, 0));
        let (lo2, hi2) = if NB == 2 { dequantize_q8_codes(&vb[36..68], broadcast_fp16(vb, 34)) } else { (lo, hi) };
        for i in 0..MR {
            // SAFETY: row r0 + i < rows of p has ld >= n entries (check_pv_q8).
            let pj = _mm512_set1_ps(unsafe { *pp.add(i * ld + j) });
            acc[i][0] = _mm512_fmadd_ps(pj, lo, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(pj, hi, acc[i][1]);
            if NB == 2 {
                acc2[i][0] = _mm512_fmadd_ps(pj, lo2, acc2[i][0]);
                acc2[i][1] = _mm512_fmadd_ps(pj, hi2, acc2[i][1]);
            }
        }
    }
    for i in 0..MR {
        // SAFETY: as for the loads above.
        unsafe {
            _mm512_storeu_ps(op.add(i * dp + c0), acc[i][0]);
            _mm512_storeu_ps(op.add(i * dp + c0 + 16), acc[i][1]);
            if NB == 2 {
                _mm512_storeu_ps(op.add(i * dp + c0 + 32), acc2[i][0]);
                _mm512_storeu_ps(op.add(i * dp + c0 + 48), acc2[i][1]);
            }
        }
    }
}

/// Lanes `0..n` set (n <= 16).
#[inline]
fn tail_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// 16 f16 values at `at` widened to f32, lanes outside `lanes` zero (and not read).
///
/// # Safety
/// The lanes of `lanes` must be readable f16 values at `at`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
unsafe fn load_f16x16(at: *const u16, lanes: __mmask16) -> __m512 {
    // Masked 16-bit loads measured ~4x slower than plain ones here (Zen 5): full chunks use plain.
    // SAFETY: only the lanes in `lanes` are read, as the caller guarantees they may be.
    unsafe {
        if lanes == u16::MAX {
            _mm512_cvtph_ps(_mm256_loadu_si256(at.cast()))
        } else {
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, at.cast()))
        }
    }
}

/// 16 floats at `at`, lanes outside `lanes` zero (and not read).
///
/// # Safety
/// The lanes of `lanes` must be readable floats at `at`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
unsafe fn load_f32x16(at: *const f32, lanes: __mmask16) -> __m512 {
    // SAFETY: only the lanes in `lanes` are read, as the caller guarantees they may be.
    unsafe {
        if lanes == u16::MAX {
            _mm512_loadu_ps(at)
        } else {
            _mm512_maskz_loadu_ps(lanes, at)
        }
    }
}

/// How far ahead (in rows) the decode kernels (F16, Q8_0) prefetch their keys and values: decode
/// streams K and V from memory once, and the hardware prefetcher alone kept too few lines in
/// flight (F16 decode with a cold cache: ~11 GB/s without, ~22 GB/s with).
const PREFETCH_ROWS: usize = 16;

/// [`prefetch_row`] for a row of a contiguous stream read row by row: rows of up to 192 bytes get
/// three unconditional prefetches (a line the last one misses starts the next row, which the next
/// call covers) instead of a loop, whose branches cost ~8% of `pv_q8` at D = 128.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn prefetch_stream_row(at: *const u8, bytes: usize) {
    if bytes <= 192 {
        for off in [0, 64, 128] {
            // A prefetch is a hint that reads nothing architecturally and never faults.
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(off).cast());
        }
    } else {
        prefetch_row(at, bytes);
    }
}

/// Asks for the `bytes` bytes at `at` to be brought into L1; `at` may lie past the data (a
/// prefetch never faults), which is why it is a wrapped pointer rather than a slice.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn prefetch_row(at: *const u8, bytes: usize) {
    for off in (0..bytes).step_by(64) {
        // A prefetch is a hint that reads nothing architecturally and never faults (a safe intrinsic).
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(off).cast());
    }
}

/// Query rows (and keys) per block of `qk_f16_avx512`: 4 x 4 accumulators, each key chunk widened
/// once for the 4 rows, each query chunk loaded once for the 4 keys.
const F16_ROWS: usize = 4;

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn qk_f16_avx512(q: &[f32], rows: usize, d_len: usize, k: &[u8], n: usize, s: &mut [f32], ld: usize) {
    check_qk_f16(q, rows, d_len, k, n, s, ld);
    for r0 in (0..rows).step_by(F16_ROWS) {
        match (rows - r0).min(F16_ROWS) {
            1 => qk_f16_rows::<1>(q, r0, d_len, k, n, s, ld),
            2 => qk_f16_rows::<2>(q, r0, d_len, k, n, s, ld),
            3 => qk_f16_rows::<3>(q, r0, d_len, k, n, s, ld),
            _ => qk_f16_rows::<4>(q, r0, d_len, k, n, s, ld),
        }
    }
}

/// Scores of query rows `r0..r0 + MR` against F16 keys `0..n`, 4 keys at a time (then 1).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn qk_f16_rows<const MR: usize>(q: &[f32], r0: usize, d_len: usize, k: &[u8], n: usize, s: &mut [f32], ld: usize) {
    let q = &q[r0 * d_len..(r0 + MR) * d_len];
    let s = &mut s[r0 * ld..];
    let mut j = 0;
    while j + F16_ROWS <= n {
        qk_f16_block::<MR, F16_ROWS>(q, d_len, k, j, s, ld);
        j += F16_ROWS;
    }
    while j < n {
        qk_f16_block::<MR, 1>(q, d_len, k, j, s, ld);
        j += 1;
    }
}

/// Scores of the MR query rows of `q` against F16 keys `j..j + NJ` (`NJ` is 4 or 1) into columns
/// `j..j + NJ` of the rows of `s`: 16 head dimensions per step, the last step masked.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn qk_f16_block<const MR: usize, const NJ: usize>(
    q: &[f32],
    d_len: usize,
    k: &[u8],
    j: usize,
    s: &mut [f32],
    ld: usize,
) {
    assert!(q.len() >= MR * d_len && k.len() >= (j + NJ) * 2 * d_len && s.len() > (MR - 1) * ld + j + NJ - 1);
    for t in 0..NJ {
        prefetch_row(k.as_ptr().wrapping_add((j + t + PREFETCH_ROWS) * 2 * d_len), 2 * d_len);
    }
    let qp = q.as_ptr();
    let kp = k.as_ptr().cast::<u16>();
    let mut acc = [[_mm512_setzero_ps(); NJ]; MR];
    for c in (0..d_len).step_by(16) {
        let lanes = tail_mask((d_len - c).min(16));
        // SAFETY: keys j..j + NJ have d_len f16 each in k and the MR query rows d_len floats in q
        // (asserted); the loads read only columns c..min(c + 16, d_len).
        unsafe {
            let kv: [__m512; NJ] = std::array::from_fn(|t| load_f16x16(kp.add((j + t) * d_len + c), lanes));
            for (i, a) in acc.iter_mut().enumerate() {
                let qv = load_f32x16(qp.add(i * d_len + c), lanes);
                for (x, kt) in a.iter_mut().zip(&kv) {
                    *x = _mm512_fmadd_ps(qv, *kt, *x);
                }
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        let at = &mut s[i * ld + j..i * ld + j + NJ];
        if NJ == F16_ROWS {
            let four: &[__m512; F16_ROWS] = a[..].try_into().expect("4 accumulators");
            // SAFETY: `at` is 4 writable floats; `storeu` has no alignment requirement.
            unsafe { _mm_storeu_ps(at.as_mut_ptr(), reduce_add_4(four)) };
        } else {
            at[0] = _mm512_reduce_add_ps(a[0]);
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn pv_f16_avx512(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], d_len: usize, o: &mut [f32], dp: usize) {
    check_pv_f16(p, rows, ld, n, v, d_len, o, dp);
    for r0 in (0..rows).step_by(F16_ROWS) {
        let mut c = 0;
        while c < d_len {
            let wide = c + 64 <= dp;
            match ((rows - r0).min(F16_ROWS), wide) {
                (1, true) => pv_f16_block::<1, 4>(p, r0, ld, n, v, d_len, o, dp, c),
                (2, true) => pv_f16_block::<2, 4>(p, r0, ld, n, v, d_len, o, dp, c),
                (3, true) => pv_f16_block::<3, 4>(p, r0, ld, n, v, d_len, o, dp, c),
                (_, true) => pv_f16_block::<4, 4>(p, r0, ld, n, v, d_len, o, dp, c),
                (1, false) => pv_f16_block::<1, 1>(p, r0, ld, n, v, d_len, o, dp, c),
                (2, false) => pv_f16_block::<2, 1>(p, r0, ld, n, v, d_len, o, dp, c),
                (3, false) => pv_f16_block::<3, 1>(p, r0, ld, n, v, d_len, o, dp, c),
                (_, false) => pv_f16_block::<4, 1>(p, r0, ld, n, v, d_len, o, dp, c),
            }
            c += if wide { 64 } else { 16 };
        }
    }
}

/// Columns `c..c + 16·NV` (at most `dp`) of output rows `r0..r0 + MR` += P·V for F16 values: each
/// key's value chunks are widened once for the MR rows; columns past `d_len` load as zeros.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pv_f16_block<const MR: usize, const NV: usize>(
    p: &[f32],
    r0: usize,
    ld: usize,
    n: usize,
    v: &[u8],
    d_len: usize,
    o: &mut [f32],
    dp: usize,
    c: usize,
) {
    let pp = p[r0 * ld..(r0 + MR) * ld].as_ptr();
    let vp = v.as_ptr().cast::<u16>();
    let op = o[r0 * dp..(r0 + MR) * dp].as_mut_ptr();
    let lanes: [__mmask16; NV] = std::array::from_fn(|t| tail_mask(d_len.saturating_sub(c + 16 * t).min(16)));
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    for (i, a) in acc.iter_mut().enumerate() {
        for (t, x) in a.iter_mut().enumerate() {
            // SAFETY: c + 16·NV <= dp (the caller's choice of NV), row r0 + i < rows of o.
            *x = unsafe { _mm512_loadu_ps(op.add(i * dp + c + 16 * t)) };
        }
    }
    for j in 0..n {
        if c == 0 {
            prefetch_row(v.as_ptr().wrapping_add((j + PREFETCH_ROWS) * 2 * d_len), 2 * d_len);
        }
        // SAFETY: key j < n has d_len f16 in v (check_pv_f16) and the masks stop at column d_len,
        // so only its own elements are read (a chunk wholly past d_len reads nothing, which is why
        // its address is formed with `wrapping_add`).
        let vv: [__m512; NV] =
            std::array::from_fn(|t| unsafe { load_f16x16(vp.wrapping_add(j * d_len + c + 16 * t), lanes[t]) });
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: row r0 + i < rows of p has ld >= n entries.
            let pj = _mm512_set1_ps(unsafe { *pp.add(i * ld + j) });
            for (x, vt) in a.iter_mut().zip(&vv) {
                *x = _mm512_fmadd_ps(pj, *vt, *x);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        for (t, x) in a.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm512_storeu_ps(op.add(i * dp + c + 16 * t), *x) };
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn qk_avx512(q: &[f32], rows: usize, d_len: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
    check_qk(q, rows, d_len, kt, ld, s);
    let mut r = 0;
    while r + 8 <= rows {
        qk_rows::<8>(q, r, d_len, kt, ld, s);
        r += 8;
    }
    match rows - r {
        0 => {}
        1 => qk_rows::<1>(q, r, d_len, kt, ld, s),
        2 => qk_rows::<2>(q, r, d_len, kt, ld, s),
        3 => qk_rows::<3>(q, r, d_len, kt, ld, s),
        4 => qk_rows::<4>(q, r, d_len, kt, ld, s),
        5 => qk_rows::<5>(q, r, d_len, kt, ld, s),
        6 => qk_rows::<6>(q, r, d_len, kt, ld, s),
        _ => qk_rows::<7>(q, r, d_len, kt, ld, s),
    }
}

/// Rows `r0..r0 + MR` of `S = Q·Kᵀ`, 32 (then 16) keys at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn qk_rows<const MR: usize>(q: &[f32], r0: usize, d_len: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
    let qp = q[r0 * d_len..(r0 + MR) * d_len].as_ptr();
    let kp = kt.as_ptr();
    let sp = s[r0 * ld..(r0 + MR) * ld].as_mut_ptr();
    let mut j = 0;
    while j + 32 <= ld {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for d in 0..d_len {
            // SAFETY: d < d_len and j + 32 <= ld, so kt[d*ld + j..+32] is in bounds (check_qk);
            // q rows r0..r0 + MR are the slice `qp` points into.
            unsafe {
                let k0 = _mm512_loadu_ps(kp.add(d * ld + j));
                let k1 = _mm512_loadu_ps(kp.add(d * ld + j + 16));
                for (i, a) in acc.iter_mut().enumerate() {
                    let qv = _mm512_set1_ps(*qp.add(i * d_len + d));
                    a[0] = _mm512_fmadd_ps(qv, k0, a[0]);
                    a[1] = _mm512_fmadd_ps(qv, k1, a[1]);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: row i of the MR rows `sp` points to has ld >= j + 32 floats.
            unsafe {
                _mm512_storeu_ps(sp.add(i * ld + j), a[0]);
                _mm512_storeu_ps(sp.add(i * ld + j + 16), a[1]);
            }
        }
        j += 32;
    }
    if j < ld {
        // ld is a multiple of 16: one vector of keys is left.
        let mut acc = [_mm512_setzero_ps(); MR];
        for d in 0..d_len {
            // SAFETY: as above, with j + 16 == ld.
            unsafe {
                let k0 = _mm512_loadu_ps(kp.add(d * ld + j));
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(_mm512_set1_ps(*qp.add(i * d_len + d)), k0, *a);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(sp.add(i * ld + j), *a) };
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn pv_avx512(p: &[f32], rows: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &mut [f32]) {
    check_pv(p, rows, ld, n, v, dp, o);
    let mut r = 0;
    while r + 6 <= rows {
        pv_rows::<6>(p, r, ld, n, v, dp, o);
        r += 6;
    }
    match rows - r {
        0 => {}
        1 => pv_rows::<1>(p, r, ld, n, v, dp, o),
        2 => pv_rows::<2>(p, r, ld, n, v, dp, o),
        3 => pv_rows::<3>(p, r, ld, n, v, dp, o),
        4 => pv_rows::<4>(p, r, ld, n, v, dp, o),
        _ => pv_rows::<5>(p, r, ld, n, v, dp, o),
    }
}

/// Rows `r0..r0 + MR` of `O += P·V`, 64 (then 16) columns at a time.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pv_rows<const MR: usize>(p: &[f32], r0: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &mut [f32]) {
    let pp = p[r0 * ld..(r0 + MR) * ld].as_ptr();
    let vp = v.as_ptr();
    let op = o[r0 * dp..(r0 + MR) * dp].as_mut_ptr();
    let mut c = 0;
    while c < dp {
        let nv = ((dp - c) / 16).min(4);
        if nv == 4 {
            pv_block::<MR, 4>(pp, ld, n, vp, dp, op, c);
        } else {
            pv_block::<MR, 1>(pp, ld, n, vp, dp, op, c);
        }
        c += 16 * if nv == 4 { 4 } else { 1 };
    }
}

/// Columns `c..c + 16·NV` of `MR` output rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn pv_block<const MR: usize, const NV: usize>(
    pp: *const f32,
    ld: usize,
    n: usize,
    vp: *const f32,
    dp: usize,
    op: *mut f32,
    c: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    // SAFETY (all blocks here): the caller passes pointers to MR rows of p (ld floats each, n <= ld)
    // and of o (dp floats each), and v with n rows of dp floats (check_pv); c + 16·NV <= dp.
    for (i, a) in acc.iter_mut().enumerate() {
        for (t, x) in a.iter_mut().enumerate() {
            // SAFETY: within the bounds stated at the top of this function.
            *x = unsafe { _mm512_loadu_ps(op.add(i * dp + c + 16 * t)) };
        }
    }
    for j in 0..n {
        // SAFETY: within the bounds stated at the top of this function.
        let vr: [__m512; NV] = std::array::from_fn(|t| unsafe { _mm512_loadu_ps(vp.add(j * dp + c + 16 * t)) });
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: within the bounds stated at the top of this function.
            let pj = _mm512_set1_ps(unsafe { *pp.add(i * ld + j) });
            for (x, vv) in a.iter_mut().zip(&vr) {
                *x = _mm512_fmadd_ps(pj, *vv, *x);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        for (t, x) in a.iter().enumerate() {
            // SAFETY: within the bounds stated at the top of this function.
            unsafe { _mm512_storeu_ps(op.add(i * dp + c + 16 * t), *x) };
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn max_avx512(x: &[f32]) -> f32 {
    let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
    let (chunks, rest) = x.as_chunks::<16>();
    for c in chunks {
        // SAFETY: c is 16 readable floats.
        m = _mm512_max_ps(m, unsafe { _mm512_loadu_ps(c.as_ptr()) });
    }
    if !rest.is_empty() {
        // SAFETY: the masked load reads only rest.len() floats.
        let t = unsafe { _mm512_maskz_loadu_ps(tail_mask(rest.len()), rest.as_ptr()) };
        m = _mm512_mask_max_ps(m, tail_mask(rest.len()), m, t);
    }
    _mm512_reduce_max_ps(m)
}

/// `exp(x)` per lane for `x <= 88.7` (every caller's argument is: `s - max` or a capped value), about
/// 1 ulp; exactly 0 below about -104 (including -inf).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn exp_ps(x: __m512) -> __m512 {
    // The clamp keeps -inf (masked scores) from turning the range reduction into NaN.
    let x = _mm512_max_ps(x, _mm512_set1_ps(-104.0));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(std::f32::consts::LOG2_E),
    ));
    // x - n·ln2 in two steps (Cody-Waite), exact for the n that occur here.
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    // Cephes' degree-5 polynomial p(r) in e^r ≈ 1 + r + r²·p(r), evaluated as one Horner chain
    // (one FMA per coefficient: this exp is ~8% of prefill time).
    let mut e = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5, 1.0, 1.0] {
        e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(e, n)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn exp_sum_avx512(x: &mut [f32], m: f32) -> f32 {
    let mv = _mm512_set1_ps(m);
    let mut sum = _mm512_setzero_ps();
    let (chunks, rest) = x.as_chunks_mut::<16>();
    for c in chunks {
        // SAFETY: c is 16 floats.
        unsafe {
            let e = exp_ps(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), mv));
            _mm512_storeu_ps(c.as_mut_ptr(), e);
            sum = _mm512_add_ps(sum, e);
        }
    }
    if !rest.is_empty() {
        let k = tail_mask(rest.len());
        // SAFETY: the masked load and store touch only rest.len() floats.
        unsafe {
            let e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, rest.as_ptr()), mv));
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), k, e);
            sum = _mm512_mask_add_ps(sum, k, sum, e);
        }
    }
    _mm512_reduce_add_ps(sum)
}

/// `cap · tanh(x / cap)` per lane: Cephes' odd polynomial below |y| = 0.625, where
/// `1 - 2/(e^{2y} + 1)` would cancel, and that formula above.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn softcap_ps(x: __m512, cap: __m512, inv_cap: __m512) -> __m512 {
    let y = _mm512_mul_ps(x, inv_cap);
    let ay = _mm512_abs_ps(y);
    let z = _mm512_mul_ps(y, y);
    let mut p = _mm512_set1_ps(-5.704_988_7e-3);
    for c in [2.063_908_8e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
        p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(c));
    }
    let small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), y, y);
    let e = exp_ps(_mm512_min_ps(_mm512_add_ps(ay, ay), _mm512_set1_ps(40.0)));
    let big_abs =
        _mm512_sub_ps(_mm512_set1_ps(1.0), _mm512_div_ps(_mm512_set1_ps(2.0), _mm512_add_ps(e, _mm512_set1_ps(1.0))));
    // Copy the sign of y onto the large-|y| result.
    let sign = _mm512_and_si512(_mm512_castps_si512(y), _mm512_set1_epi32(i32::MIN));
    let big = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(big_abs), sign));
    let is_small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(ay, _mm512_set1_ps(0.625));
    _mm512_mul_ps(_mm512_mask_blend_ps(is_small, big, small), cap)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn softcap_avx512(x: &mut [f32], cap: f32) {
    let (c, ic) = (_mm512_set1_ps(cap), _mm512_set1_ps(1.0 / cap));
    let (chunks, rest) = x.as_chunks_mut::<16>();
    for ch in chunks {
        // SAFETY: ch is 16 floats.
        unsafe { _mm512_storeu_ps(ch.as_mut_ptr(), softcap_ps(_mm512_loadu_ps(ch.as_ptr()), c, ic)) };
    }
    if !rest.is_empty() {
        let k = tail_mask(rest.len());
        // SAFETY: masked to rest.len() floats.
        unsafe {
            let y = softcap_ps(_mm512_maskz_loadu_ps(k, rest.as_ptr()), c, ic);
            _mm512_mask_storeu_ps(rest.as_mut_ptr(), k, y);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn scale_avx512(x: &mut [f32], a: f32) {
    let av = _mm512_set1_ps(a);
    let (chunks, rest) = x.as_chunks_mut::<16>();
    for c in chunks {
        // SAFETY: c is 16 floats.
        unsafe { _mm512_storeu_ps(c.as_mut_ptr(), _mm512_mul_ps(_mm512_loadu_ps(c.as_ptr()), av)) };
    }
    rest.iter_mut().for_each(|v| *v *= a);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn transpose_avx512(k: &[f32], n: usize, d_len: usize, kt: &mut [f32], ld: usize) {
    check_transpose(k, n, d_len, kt, ld);
    let (n16, d16) = (n / 16 * 16, d_len / 16 * 16);
    for j in (0..n16).step_by(16) {
        for d in (0..d16).step_by(16) {
            // SAFETY: rows j..j+16 < n and columns d..d+16 <= d_len of k; rows d..d+16 < d_len and
            // columns j..j+16 <= n <= ld of kt: all in bounds by the assert.
            unsafe {
                let rows: [__m512; 16] = std::array::from_fn(|t| _mm512_loadu_ps(k.as_ptr().add((j + t) * d_len + d)));
                let cols = transpose16(rows);
                for (t, c) in cols.iter().enumerate() {
                    _mm512_storeu_ps(kt.as_mut_ptr().add((d + t) * ld + j), *c);
                }
            }
        }
    }
    // Edges: keys past the last full 16 and head-dimension columns past the last full 16.
    transpose_edges(k, n, d_len, kt, ld, n16, d16);
}

/// Transposes a 16 x 16 block held as 16 row vectors.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // 2x2 blocks of 32-bit, then 4x4 blocks of 64-bit, then 128-bit lanes in two steps.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    let mut u = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
        u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
        u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
        u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
    }
    // u[4i + m] holds, in each 128-bit lane L, element m of rows 4i..4i+4 at column 4L + m.
    let mut w = [_mm512_setzero_ps(); 16];
    for m in 0..4 {
        let (a, b, c, d) = (u[m], u[4 + m], u[8 + m], u[12 + m]);
        let ab_lo = _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b); // a.L0 a.L1 b.L0 b.L1
        let ab_hi = _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b); // a.L2 a.L3 b.L2 b.L3
        let cd_lo = _mm512_shuffle_f32x4::<0b01_00_01_00>(c, d);
        let cd_hi = _mm512_shuffle_f32x4::<0b11_10_11_10>(c, d);
        w[m] = _mm512_shuffle_f32x4::<0b10_00_10_00>(ab_lo, cd_lo); // lane 0 of a b c d
        w[4 + m] = _mm512_shuffle_f32x4::<0b11_01_11_01>(ab_lo, cd_lo); // lane 1
        w[8 + m] = _mm512_shuffle_f32x4::<0b10_00_10_00>(ab_hi, cd_hi); // lane 2
        w[12 + m] = _mm512_shuffle_f32x4::<0b11_01_11_01>(ab_hi, cd_hi); // lane 3
    }
    w
}
