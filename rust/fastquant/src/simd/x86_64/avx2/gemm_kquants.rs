//! AVX2 packed GEMM of Q2_K..Q6_K and IQ4_XS (`matmul::packed_kquants` has the layouts and the
//! float order). A panel is two ymm halves of 8 weight rows; one broadcast of 4 activation codes
//! meets 32 weights per half in `vpmaddubsw` (the i16 pair sums stay in range: codes below 64
//! against |a| <= 127, or IQ4_XS's |code| <= 127 with the activation's sign flipped by `vpsignb`),
//! `vpmaddwd` by ones and `vpaddd`. A tile is up to 2 activation rows x one panel: 8 ymm of i32
//! sums, the rest of the 16 registers for weights and broadcasts; a pass over the activation rows
//! takes two panels, so the second panel's tile reads its rows from L1. As in the AVX-512 kernel,
//! the output is the float accumulator between super-blocks. Q4_K's, Q5_K's, Q6_K's and IQ4_XS's
//! nibble chunks give two groups each (`and 0x0f`, `srli 4 + and`; Q5_K's fifth bits spread from
//! its bit plane by `vpshufb` + compare; Q6_K's top crumbs shifted into bits 4, 5 and or-ed in;
//! IQ4_XS's indices looked up as signed values with `vpshufb`), Q2_K's and Q3_K's crumb vectors
//! four (`srli 2i + and`; Q3_K's third bits spread as Q5_K's fifth); from 8 rows a super-block's
//! codes are decoded once per pass of two panels; scales, mins and `d` are widened from i8/f16 per
//! sub-block.

use std::arch::x86_64::*;

use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::matmul::packed::PackedGemmFn;
use crate::matmul::packed_kquants::{
    act_row_bytes, check_gemm_args, panel_bytes, PackedFormat, ACT_BLOCK_BYTES, ACT_CODES, ACT_EXTRAS, FORMATS, IQ4_XS,
    PANEL_CODES_BYTES, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
};

/// Activation rows per tile.
const MR: usize = 2;
/// From this many activation rows on, each panel super-block's nibble codes are decoded once
/// into byte codes on the stack, which every row tile then reads as the byte types' codes:
/// decoding in every tile of 2 rows cost Q5_K and Q6_K about a third at 512 rows.
const DECODE_MIN_ROWS: usize = 4 * MR;
/// How far ahead the first row tile of a super-block prefetches its panel, in panel super-blocks:
/// with one activation row the tile is memory-bound and the hardware prefetchers fall behind.
const PREFETCH_SUPERBLOCKS: usize = 2;

/// 4 bytes at `p` broadcast to every i32 lane.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn broadcast4(p: *const u8) -> __m256i {
    // SAFETY: the callers pass a pointer into a block whose bounds the tile checked on entry;
    // `read_unaligned` has no alignment requirement.
    _mm256_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
}

/// 32 bytes at `p` (the AVX-512 kernels use it too).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in super::super) fn load32(p: *const u8) -> __m256i {
    // SAFETY: as in `broadcast4`: in a panel super-block checked on entry; `loadu` is unaligned.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// 16 bytes at `p` (the AVX-512 kernels use it too).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in super::super) fn load16(p: *const u8) -> __m128i {
    // SAFETY: as in `broadcast4`: in a panel super-block checked on entry; `loadu` is unaligned.
    unsafe { _mm_loadu_si128(p.cast()) }
}

/// 8 bytes at `p` in the low half.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn load8(p: *const u8) -> __m128i {
    // SAFETY: as in `broadcast4`: in a panel super-block checked on entry; `loadl` is unaligned.
    unsafe { _mm_loadl_epi64(p.cast()) }
}

/// The codes of group `g`, half `h` (lanes `8h..8h + 8`) of the panel super-block at `w`, one
/// byte per weight: as [`decode_codes`] wrote them when `decoded`, else a nibble chunk's half or a
/// crumb vector's quarter with the high bits added (IQ4_XS's looked up in `table`, the signed
/// values).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn group_codes(f: PackedFormat, w: *const u8, g: usize, h: usize, table: __m256i, decoded: bool) -> __m256i {
    if decoded {
        // SAFETY: group g's 64 bytes are inside the decoded codes checked on entry.
        return load32(unsafe { w.add(64 * g + 32 * h) });
    }
    let low = if f.low_bits == 4 {
        // SAFETY: chunk g / 2's 64 bytes are inside the panel super-block checked on entry.
        let chunk = load32(unsafe { w.add(64 * (g / 2) + 32 * h) });
        let half = if g % 2 == 1 { _mm256_srli_epi16::<4>(chunk) } else { chunk };
        _mm256_and_si256(half, _mm256_set1_epi8(0x0f))
    } else {
        // SAFETY: crumb vector g / 4's 64 bytes are inside the panel super-block checked on entry.
        let crumbs = load32(unsafe { w.add(64 * (g / 4) + 32 * h) });
        // Group g's crumbs (bits 2(g % 4), +1 of each byte) to bits 0, 1; what the 16-bit shifts
        // carry in from the next byte lands above them.
        let shifted = match g % 4 {
            0 => crumbs,
            1 => _mm256_srli_epi16::<2>(crumbs),
            2 => _mm256_srli_epi16::<4>(crumbs),
            _ => _mm256_srli_epi16::<6>(crumbs),
        };
        _mm256_and_si256(shifted, _mm256_set1_epi8(0x03))
    };
    if f.high_bits == 1 {
        // SAFETY: the 4 bytes of group g's bit plane for lanes 8h..8h + 8 are inside the panel
        // super-block.
        let bits =
            _mm256_set1_epi32(unsafe { (w.add(f.high_bits_at() + 8 * g + 4 * h) as *const i32).read_unaligned() });
        // Byte i of the vector gets mask byte i / 8, then its bit i % 8 becomes 1 << low_bits or 0.
        let spread = _mm256_shuffle_epi8(
            bits,
            _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303),
        );
        let select = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
        return _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(1 << f.low_bits)));
    }
    if f.high_bits == 2 {
        // SAFETY: the 32 bytes of crumb vector g / 4 for lanes 8h..8h + 8 are inside the panel
        // super-block.
        let crumbs = load32(unsafe { w.add(f.high_bits_at() + 64 * (g / 4) + 32 * h) });
        // Group g's crumbs (bits 2(g % 4), +1 of each byte) to bits 4, 5; what the 16-bit shifts
        // carry in from the neighbouring byte lands outside 0x30.
        let top = match g % 4 {
            0 => _mm256_slli_epi16::<4>(crumbs),
            1 => _mm256_slli_epi16::<2>(crumbs),
            2 => crumbs,
            _ => _mm256_srli_epi16::<2>(crumbs),
        };
        return _mm256_or_si256(low, _mm256_and_si256(top, _mm256_set1_epi8(0x30)));
    }
    if f.signed {
        _mm256_shuffle_epi8(table, low)
    } else {
        low
    }
}

/// IQ4_XS's signed table values in both 128-bit lanes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn iq4_xs_table() -> __m256i {
    _mm256_broadcastsi128_si256(load16(KVALUES_IQ4NL.as_ptr().cast()))
}

/// The byte codes of a panel super-block's nibble codes (`panel`, its codes part) in the byte
/// types' layout, IQ4_XS's as signed table values.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn decode_codes(f: PackedFormat, panel: &[u8], out: &mut [u8]) {
    let panel = &panel[..f.codes_bytes()];
    let table = iq4_xs_table();
    for (g, group) in out[..PANEL_CODES_BYTES].as_chunks_mut::<64>().0.iter_mut().enumerate() {
        for (h, dst) in group.as_chunks_mut::<32>().0.iter_mut().enumerate() {
            let v = group_codes(f, panel.as_ptr(), g, h, table, false);
            // SAFETY: `dst` is 32 writable bytes; `storeu` is unaligned.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) };
        }
    }
}

/// Byte codes of a pass's two panels' super-block, decoded once for all its row tiles (64-byte
/// aligned so each group is one cache line).
#[repr(C, align(64))]
struct DecodedCodes([u8; 2 * PANEL_CODES_BYTES]);

/// Asks for the activation blocks at `starts` in L1: the rows of the next tile lie an activation
/// row apart, a stride the hardware prefetchers do not follow.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in super::super) fn prefetch_acts(acts: &[u8], starts: impl Iterator<Item = usize>) {
    for start in starts {
        prefetch_lines(acts, start..start + ACT_BLOCK_BYTES);
    }
}

/// Asks for the cache lines of `bytes[range]` (what of it lies inside `bytes`) in L1.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(in super::super) fn prefetch_lines(bytes: &[u8], range: std::ops::Range<usize>) {
    for at in range.step_by(64) {
        // A prefetch never faults, but the pointer must stay inside the allocation to be formed.
        if at < bytes.len() {
            // SAFETY: `at` is inside `bytes`.
            _mm_prefetch::<_MM_HINT_T0>(unsafe { bytes.as_ptr().add(at) }.cast());
        }
    }
}

/// One tile: `R` activation rows x one panel of one super-block. `out` is the output of the first
/// row and the panel's first column, `lanes` the panel's valid columns, `first` whether this is
/// the first super-block (the accumulator starts at +0.0). With `DECODED`, the codes are read
/// from `decoded` (as [`decode_codes`] wrote them) instead of the panel.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
#[allow(clippy::too_many_arguments)]
fn tile<const FMT: usize, const R: usize, const DECODED: bool>(
    w: &[u8],
    decoded: &[u8],
    acts: &[u8],
    act_at: usize,
    act_stride: usize,
    out: &mut [f32],
    out_at: usize,
    out_stride: usize,
    lanes: usize,
    first: bool,
) {
    let f: PackedFormat = FORMATS[FMT];
    let (signed, min) = (f.signed, f.min);
    // The bounds every pointer below stays in.
    let w = &w[..f.superblock_bytes()];
    assert!(!DECODED || PANEL_CODES_BYTES <= decoded.len(), "decoded codes");
    assert!(act_at + (R - 1) * act_stride + ACT_BLOCK_BYTES <= acts.len(), "activation block");
    assert!(lanes == 0 || out_at + (R - 1) * out_stride + lanes <= out.len(), "output");
    let wp = w.as_ptr();
    let cp = if DECODED { decoded.as_ptr() } else { wp };
    let ap: [*const u8; R] = std::array::from_fn(|r| acts[act_at + r * act_stride..].as_ptr());
    let ones = _mm256_set1_epi16(1);
    let groups = f.sub / 4;
    let table = iq4_xs_table();
    let mut isum = [[_mm256_setzero_si256(); 2]; R];
    for j in 0..f.nsub() {
        let mut sb = [[_mm256_setzero_si256(); 2]; R];
        if !min && !signed {
            for r in 0..R {
                // SAFETY: the extras are inside the activation block checked above.
                sb[r] = [broadcast4(unsafe { ap[r].add(ACT_EXTRAS + 4 * j) }); 2];
            }
        }
        for g in groups * j..groups * (j + 1) {
            let wv: [__m256i; 2] = std::array::from_fn(|h| group_codes(f, cp, g, h, table, DECODED));
            let wu = if signed { wv.map(|v| _mm256_abs_epi8(v)) } else { wv };
            for r in 0..R {
                // SAFETY: codes 4g..4g + 4 are inside the activation block.
                let a = broadcast4(unsafe { ap[r].add(ACT_CODES + 4 * g) });
                for h in 0..2 {
                    let a = if signed { _mm256_sign_epi8(a, wv[h]) } else { a };
                    let pairs = _mm256_maddubs_epi16(wu[h], a);
                    sb[r][h] = _mm256_add_epi32(sb[r][h], _mm256_madd_epi16(pairs, ones));
                }
            }
        }
        for h in 0..2 {
            // SAFETY: the scales of sub-block j are inside the panel super-block.
            let scale = _mm256_cvtepi8_epi32(load8(unsafe { wp.add(f.scales_at() + 16 * j + 8 * h) }));
            for r in 0..R {
                isum[r][h] = _mm256_add_epi32(isum[r][h], _mm256_mullo_epi32(sb[r][h], scale));
            }
        }
    }
    let lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for r in 0..R {
        // SAFETY: d is the first 4 bytes of the activation block.
        let d_a = _mm256_set1_ps(unsafe { (ap[r] as *const f32).read_unaligned() });
        let mut msum = [_mm256_setzero_si256(); 2];
        if min {
            for q in 0..f.nsub() / 2 {
                // SAFETY: pair q of the extras and of the mins are inside the blocks.
                let a = broadcast4(unsafe { ap[r].add(ACT_EXTRAS + 4 * q) });
                for (h, msum) in msum.iter_mut().enumerate() {
                    // SAFETY: as above.
                    let m = _mm256_cvtepi8_epi16(load16(unsafe { wp.add(f.mins_at() + 32 * q + 16 * h) }));
                    *msum = _mm256_add_epi32(*msum, _mm256_madd_epi16(m, a));
                }
            }
        }
        for h in 0..2 {
            let valid = lanes.saturating_sub(8 * h).min(8);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid as i32), lane_index);
            let o = out_at + r * out_stride + 8 * h;
            // SAFETY: the lanes under `mask` are inside `out` (checked above); masked-off lanes
            // are neither read nor written.
            let optr = unsafe { out.as_mut_ptr().add(o.min(out.len())) };
            let mut acc = if first {
                _mm256_setzero_ps()
            } else {
                // SAFETY: as above.
                unsafe { _mm256_maskload_ps(optr, mask) }
            };
            // SAFETY: d and dmin are inside the panel super-block.
            let d_w = _mm256_cvtph_ps(load16(unsafe { wp.add(f.d_at() + 16 * h) }));
            acc = _mm256_fmadd_ps(_mm256_mul_ps(d_w, d_a), _mm256_cvtepi32_ps(isum[r][h]), acc);
            if min {
                // SAFETY: as above.
                let dmin_w = _mm256_cvtph_ps(load16(unsafe { wp.add(f.dmin_at() + 16 * h) }));
                acc = _mm256_fnmadd_ps(_mm256_mul_ps(dmin_w, d_a), _mm256_cvtepi32_ps(msum[h]), acc);
            }
            // SAFETY: as above.
            unsafe { _mm256_maskstore_ps(optr, mask, acc) };
        }
    }
}

/// The whole `gemm` of one type: panels, super-blocks, row tiles.
#[target_feature(enable = "avx2,fma,f16c")]
fn gemm<const FMT: usize>(
    k: usize,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let f = FORMATS[FMT];
    let (nb, n_panels) = check_gemm_args(f, k, panels, acts, m, cols, out, out_stride);
    let (pb, arb, sbb) = (panel_bytes(f, k), act_row_bytes(k), f.superblock_bytes());
    // Two panels per pass over the activations: the second reads the tile's rows from L1.
    let n_panels = n_panels.min(cols.div_ceil(16));
    let decode = m >= DECODE_MIN_ROWS;
    let mut decoded = DecodedCodes([0; 2 * PANEL_CODES_BYTES]);
    for p0 in (0..n_panels).step_by(2) {
        for i in 0..nb {
            if decode {
                for p in p0..n_panels.min(p0 + 2) {
                    let dst = &mut decoded.0[(p - p0) * PANEL_CODES_BYTES..][..PANEL_CODES_BYTES];
                    decode_codes(f, &panels[p * pb + i * sbb..][..sbb], dst);
                }
            }
            for r0 in (0..m).step_by(MR) {
                prefetch_acts(acts, (r0 + MR..m.min(r0 + 2 * MR)).map(|r| r * arb + i * ACT_BLOCK_BYTES));
                let act_at = r0 * arb + i * ACT_BLOCK_BYTES;
                for p in p0..n_panels.min(p0 + 2) {
                    if r0 == 0 {
                        let ahead = p * pb + (i + PREFETCH_SUPERBLOCKS) * sbb;
                        prefetch_lines(panels, ahead..ahead + sbb);
                    }
                    let w = &panels[p * pb + i * sbb..][..sbb];
                    let (out_at, lanes) = (r0 * out_stride + 16 * p, cols.saturating_sub(16 * p).min(16));
                    let codes = &decoded.0[(p - p0) * PANEL_CODES_BYTES..][..PANEL_CODES_BYTES];
                    let first = i == 0;
                    match (m - r0 >= 2, decode) {
                        (true, true) => {
                            tile::<FMT, 2, true>(w, codes, acts, act_at, arb, out, out_at, out_stride, lanes, first)
                        }
                        (true, false) => {
                            tile::<FMT, 2, false>(w, &[], acts, act_at, arb, out, out_at, out_stride, lanes, first)
                        }
                        (false, true) => {
                            tile::<FMT, 1, true>(w, codes, acts, act_at, arb, out, out_at, out_stride, lanes, first)
                        }
                        (false, false) => {
                            tile::<FMT, 1, false>(w, &[], acts, act_at, arb, out, out_at, out_stride, lanes, first)
                        }
                    }
                }
            }
        }
    }
}

/// Safe entry points: each runs one type's `gemm`. Private to this folder and handed out only by
/// [`super::packed_kquant_gemm`], which takes the [`super::Avx2`] token.
macro_rules! entry_points {
    ($($name:ident => $fmt:ident;)*) => {$(
        fn $name(k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize) {
            // SAFETY: the AVX2 features are proven by the token `packed_kquant_gemm` takes.
            unsafe { gemm::<$fmt>(k, panels, acts, m, cols, out, out_stride) }
        }
    )*};
}

entry_points! {
    gemm_q4_k => Q4_K;
    gemm_q5_k => Q5_K;
    gemm_q6_k => Q6_K;
    gemm_iq4_xs => IQ4_XS;
    gemm_q2_k => Q2_K;
    gemm_q3_k => Q3_K;
}

/// The gemm of format `index` (`packed_kquants::FORMATS`).
pub(super) fn kernel(index: usize) -> PackedGemmFn {
    match index {
        Q4_K => gemm_q4_k,
        Q5_K => gemm_q5_k,
        Q6_K => gemm_q6_k,
        IQ4_XS => gemm_iq4_xs,
        Q2_K => gemm_q2_k,
        _ => gemm_q3_k,
    }
}
