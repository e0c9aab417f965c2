//! AVX-512 packed GEMM of Q2_K..Q6_K and IQ4_XS (`matmul::packed_kquants` has the layouts
//! and the float order). One zmm holds 4 code bytes of each of a panel's 16 weight rows, so one
//! broadcast of 4 activation codes meets 64 weights: with VNNI in one `vpdpbusd`, without it in
//! `vpmaddubsw` + `vpmaddwd` + `vpaddd`. A tile of `MR` activation rows x `NP` panels keeps per
//! output one i32 sub-block sum and one i32 super-block sum in registers (`MR = 4`, `NP = 3`: 24
//! zmm, 12 independent `vpdpbusd` chains; 6 x 2 measured the same) and adds each super-block's floats into the output, which is the accumulator between
//! super-blocks: the loop over super-blocks is the outer one, so a panel super-block stays in L1
//! while every activation row passes it; the next tile's activation blocks, an activation row
//! apart, are prefetched.
//!
//! Q4_K, Q5_K, Q6_K and IQ4_XS keep their codes as nibbles: one 64-byte chunk gives two groups'
//! weight vectors (`and 0x0f`, `srli 4 + and`; Q5_K's fifth bits, a u64 mask per group, add 16 in
//! one masked add; Q6_K's top two bits, one 64-byte crumb vector per 4 groups, come in with a
//! shift and one ternary-logic op); Q2_K and Q3_K as crumbs, one vector giving four groups
//! (`srli 2i + and`; Q3_K's third bits add 4 as Q5_K's add 16). IQ4_XS's nibbles are table indices, looked up with one
//! `vpshufb` per weight vector: with VNNI as `value + 128` (the activation extras take the
//! `128 * sum(a)` off again); without VNNI as the signed value, and the kernel multiplies `|value|`
//! by the activation negated where the value is negative (a masked subtract). The scales, mins
//! and `d` are widened from i8/f16 once per panel and sub-block.

use std::arch::x86_64::*;

use super::super::avx2::gemm_kquants::{load16, load32, prefetch_acts, prefetch_lines};
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::matmul::packed::PackedGemmFn;
use crate::matmul::packed_kquants::{
    act_row_bytes, check_gemm_args, panel_bytes, PackedFormat, ACT_BLOCK_BYTES, ACT_CODES, ACT_EXTRAS, FORMATS, IQ4_XS,
    IQ4_XS_BIASED, PANEL_CODES_BYTES, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,
};

/// Activation rows per tile.
const MR: usize = 4;
/// Panels per tile.
const NP: usize = 3;
/// From this many activation rows on, each panel super-block's nibble codes are decoded once
/// (for IQ4_XS looked up) into byte codes on the stack, which every full row tile then reads as
/// the byte types' codes: the `vpshufb` per weight vector would otherwise compete with
/// `vpdpbusd` in every tile (IQ4_XS at 512 rows lost about a tenth).
const DECODE_MIN_ROWS: usize = 4 * MR;
/// How far ahead of the super-block a tile reads the first row tile prefetches each panel, in
/// panel super-blocks: with one activation row the tile is memory-bound and the hardware
/// prefetchers, following `NP` streams, fall behind.
const PREFETCH_SUPERBLOCKS: usize = 2;

/// 4 bytes at `p` broadcast to every i32 lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn broadcast4(p: *const u8) -> __m512i {
    // SAFETY: the callers pass a pointer into a block whose bounds the tile checked on entry;
    // `read_unaligned` has no alignment requirement.
    _mm512_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
}

/// 64 bytes at `p`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load64(p: *const u8) -> __m512i {
    // SAFETY: as in `broadcast4`: in a panel super-block checked on entry; `loadu` is unaligned.
    unsafe { _mm512_loadu_si512(p.cast()) }
}

/// The codes of group `g` of the panel super-block at `w`, one byte per weight: as
/// [`decode_codes`] wrote them when `decoded`, else a nibble chunk's half or a crumb vector's
/// quarter with the high bits added (for IQ4_XS looked up in `table`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn group_codes(f: PackedFormat, w: *const u8, g: usize, table: __m512i, decoded: bool) -> __m512i {
    if decoded {
        // SAFETY: group g's 64 bytes are inside the decoded codes checked on entry.
        return load64(unsafe { w.add(64 * g) });
    }
    let low = if f.low_bits == 4 {
        // SAFETY: chunk g / 2's 64 bytes are inside the panel super-block checked on entry.
        let chunk = load64(unsafe { w.add(64 * (g / 2)) });
        let half = if g % 2 == 1 { _mm512_srli_epi16::<4>(chunk) } else { chunk };
        _mm512_and_si512(half, _mm512_set1_epi8(0x0f))
    } else {
        // SAFETY: crumb vector g / 4's 64 bytes are inside the panel super-block checked on entry.
        let crumbs = load64(unsafe { w.add(64 * (g / 4)) });
        // Group g's crumbs (bits 2(g % 4), +1 of each byte) to bits 0, 1; what the 16-bit shifts
        // carry in from the next byte lands above them.
        let shifted = match g % 4 {
            0 => crumbs,
            1 => _mm512_srli_epi16::<2>(crumbs),
            2 => _mm512_srli_epi16::<4>(crumbs),
            _ => _mm512_srli_epi16::<6>(crumbs),
        };
        _mm512_and_si512(shifted, _mm512_set1_epi8(0x03))
    };
    if f.high_bits == 1 {
        // SAFETY: group g's 8 bytes of the bit plane are inside the panel super-block.
        let high: __mmask64 = unsafe { (w.add(f.high_bits_at() + 8 * g) as *const u64).read_unaligned() };
        return _mm512_mask_add_epi8(low, high, low, _mm512_set1_epi8(1 << f.low_bits));
    }
    if f.high_bits == 2 {
        // SAFETY: crumb vector g / 4's 64 bytes are inside the panel super-block.
        let crumbs = load64(unsafe { w.add(f.high_bits_at() + 64 * (g / 4)) });
        // Group g's crumbs (bits 2(g % 4), +1 of each byte) to bits 4, 5; what the 16-bit shifts
        // carry in from the neighbouring byte lands outside 0x30.
        let top = match g % 4 {
            0 => _mm512_slli_epi16::<4>(crumbs),
            1 => _mm512_slli_epi16::<2>(crumbs),
            2 => crumbs,
            _ => _mm512_srli_epi16::<2>(crumbs),
        };
        // low | (top & 0x30) in one ternary-logic op (0xf8 = A | (B & C)).
        return _mm512_ternarylogic_epi32::<0xf8>(low, top, _mm512_set1_epi8(0x30));
    }
    if f.signed {
        _mm512_shuffle_epi8(table, low)
    } else {
        low
    }
}

/// The byte codes of a panel super-block's nibble codes (`panel`, its codes part) in the
/// byte types' layout, IQ4_XS's looked up in `table`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn decode_codes(f: PackedFormat, panel: &[u8], table: __m512i, out: &mut [u8; PANEL_CODES_BYTES]) {
    let panel = &panel[..f.codes_bytes()];
    for (h, pair) in out.as_chunks_mut::<128>().0.iter_mut().enumerate() {
        for (g, dst) in pair.as_chunks_mut::<64>().0.iter_mut().enumerate() {
            let v = group_codes(f, panel.as_ptr(), 2 * h + g, table, false);
            // SAFETY: `dst` is 64 writable bytes; `storeu` is unaligned.
            unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast(), v) };
        }
    }
}

/// The weight vector as the byte product takes it, and the mask of its negative codes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn weights_madd(w: __m512i, signed: bool) -> (__m512i, __mmask64) {
    if signed {
        (_mm512_abs_epi8(w), _mm512_movepi8_mask(w))
    } else {
        (w, 0)
    }
}

/// `acc + (4-byte dot products of w and a)` with `vpmaddubsw`; the i16 pair sums stay in range
/// (codes below 64 or |code| <= 127 against |a| <= 127).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn dot4_madd(acc: __m512i, w: (__m512i, __mmask64), a: __m512i, signed: bool) -> __m512i {
    let a = if signed { _mm512_mask_sub_epi8(a, w.1, _mm512_setzero_si512(), a) } else { a };
    _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(w.0, a), _mm512_set1_epi16(1)))
}

/// `acc + (i16 pair products of w and a)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn dot2_madd(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
    _mm512_add_epi32(acc, _mm512_madd_epi16(w, a))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
#[inline]
fn weights_vnni(w: __m512i, _signed: bool) -> (__m512i, __mmask64) {
    // IQ4_XS's table lookup already gave `value + 128`.
    (w, 0)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
#[inline]
fn dot4_vnni(acc: __m512i, w: (__m512i, __mmask64), a: __m512i, _signed: bool) -> __m512i {
    _mm512_dpbusd_epi32(acc, w.0, a)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni")]
#[inline]
fn dot2_vnni(acc: __m512i, w: __m512i, a: __m512i) -> __m512i {
    _mm512_dpwssd_epi32(acc, w, a)
}

/// IQ4_XS's table as the byte product takes it (module docs), in every 128-bit lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn iq4_xs_table(vnni: bool) -> __m512i {
    let table: [u8; 16] = if vnni { IQ4_XS_BIASED } else { KVALUES_IQ4NL.map(|v| v as u8) };
    _mm512_broadcast_i32x4(load16(table.as_ptr()))
}

/// Byte codes of a tile's panels' super-block, decoded once for all its row tiles (64-byte aligned
/// so each group is one cache line).
#[repr(C, align(64))]
struct DecodedCodes([u8; NP * PANEL_CODES_BYTES]);

/// Where a tile reads and writes: the super-block's offset in the first panel and the panel
/// stride, the first activation row's block and the row stride, the output of the first row
/// and column and the output row stride, the valid lanes of each panel, and whether this is the
/// first super-block (the accumulator starts at +0.0), and whether to prefetch the panels ahead.
#[derive(Clone, Copy)]
struct TileAt {
    panel: usize,
    panel_stride: usize,
    act: usize,
    act_stride: usize,
    out: usize,
    out_stride: usize,
    masks: [u16; NP],
    first: bool,
    prefetch: bool,
}

/// Stamps one level's tile and driver; `$weights`/`$dot4`/`$dot2` are its byte and pair products.
macro_rules! gemm_level {
    ($features:literal, $vnni:literal, $tile:ident, $gemm:ident, $weights:ident, $dot4:ident, $dot2:ident) => {
        /// One tile: `R` activation rows x `P` panels of one super-block (module docs). With
        /// `DECODED`, the codes are read from `decoded` (panel `p` at `p * PANEL_CODES_BYTES`, as
        /// [`decode_codes`] wrote them) instead of the panels.
        #[target_feature(enable = $features)]
        #[inline]
        fn $tile<const FMT: usize, const R: usize, const P: usize, const DECODED: bool>(
            panels: &[u8],
            acts: &[u8],
            decoded: &[u8],
            out: &mut [f32],
            at: TileAt,
        ) {
            let f: PackedFormat = FORMATS[FMT];
            let (signed, min) = (f.signed, f.min);
            let sbb = f.superblock_bytes();
            // The bounds every pointer below stays in.
            assert!(at.panel + (P - 1) * at.panel_stride + sbb <= panels.len(), "panel super-block");
            assert!(at.act + (R - 1) * at.act_stride + ACT_BLOCK_BYTES <= acts.len(), "activation block");
            for (p, &mask) in at.masks.iter().enumerate().take(P) {
                let lanes = 16 - mask.leading_zeros() as usize;
                assert!(lanes == 0 || at.out + (R - 1) * at.out_stride + 16 * p + lanes <= out.len(), "output");
            }
            assert!(!DECODED || P * PANEL_CODES_BYTES <= decoded.len(), "decoded codes");
            let wp: [*const u8; P] = std::array::from_fn(|p| panels[at.panel + p * at.panel_stride..].as_ptr());
            let cp: [*const u8; P] =
                std::array::from_fn(|p| if DECODED { decoded[p * PANEL_CODES_BYTES..].as_ptr() } else { wp[p] });
            let ap: [*const u8; R] = std::array::from_fn(|r| acts[at.act + r * at.act_stride..].as_ptr());
            let bias_in_extras = !min && (!signed || $vnni);
            let groups = f.sub / 4;
            let table = iq4_xs_table($vnni);
            let mut isum = [[_mm512_setzero_si512(); P]; R];
            for j in 0..f.nsub() {
                if at.prefetch {
                    // Sub-block j's share of the super-block `PREFETCH_SUPERBLOCKS` ahead.
                    let ahead = at.panel + PREFETCH_SUPERBLOCKS * sbb;
                    for p in 0..P {
                        let start = ahead + p * at.panel_stride;
                        prefetch_lines(panels, start + sbb * j / f.nsub()..start + sbb * (j + 1) / f.nsub());
                    }
                }
                let mut sb = [[_mm512_setzero_si512(); P]; R];
                if bias_in_extras {
                    for r in 0..R {
                        // SAFETY: the extras are inside the activation block checked above.
                        sb[r] = [broadcast4(unsafe { ap[r].add(ACT_EXTRAS + 4 * j) }); P];
                    }
                }
                for g in groups * j..groups * (j + 1) {
                    let w: [_; P] = std::array::from_fn(|p| $weights(group_codes(f, cp[p], g, table, DECODED), signed));
                    for r in 0..R {
                        // SAFETY: codes 4g..4g + 4 are inside the activation block.
                        let a = broadcast4(unsafe { ap[r].add(ACT_CODES + 4 * g) });
                        for p in 0..P {
                            sb[r][p] = $dot4(sb[r][p], w[p], a, signed);
                        }
                    }
                }
                for p in 0..P {
                    // SAFETY: the scales of sub-block j are inside the panel super-block.
                    let scale = _mm512_cvtepi8_epi32(load16(unsafe { wp[p].add(f.scales_at() + 16 * j) }));
                    for r in 0..R {
                        isum[r][p] = _mm512_add_epi32(isum[r][p], _mm512_mullo_epi32(sb[r][p], scale));
                    }
                }
            }
            for r in 0..R {
                // SAFETY: d is the first 4 bytes of the activation block.
                let d_a = _mm512_set1_ps(unsafe { (ap[r] as *const f32).read_unaligned() });
                let mut msum = [_mm512_setzero_si512(); P];
                if min {
                    for q in 0..f.nsub() / 2 {
                        // SAFETY: pair q of the extras and of the mins are inside the blocks.
                        let a = broadcast4(unsafe { ap[r].add(ACT_EXTRAS + 4 * q) });
                        for p in 0..P {
                            // SAFETY: as above.
                            let mins = _mm512_cvtepi8_epi16(load32(unsafe { wp[p].add(f.mins_at() + 32 * q) }));
                            msum[p] = $dot2(msum[p], mins, a);
                        }
                    }
                }
                for p in 0..P {
                    let mask = at.masks[p];
                    let o = at.out + r * at.out_stride + 16 * p;
                    // SAFETY: the lanes under `mask` are inside `out` (checked above); masked-off
                    // lanes are neither read nor written.
                    let optr = unsafe { out.as_mut_ptr().add(o.min(out.len())) };
                    let mut acc = if at.first {
                        _mm512_setzero_ps()
                    } else {
                        // SAFETY: as above.
                        unsafe { _mm512_maskz_loadu_ps(mask, optr) }
                    };
                    // SAFETY: d and dmin are inside the panel super-block.
                    let d_w = _mm512_cvtph_ps(load32(unsafe { wp[p].add(f.d_at()) }));
                    acc = _mm512_fmadd_ps(_mm512_mul_ps(d_w, d_a), _mm512_cvtepi32_ps(isum[r][p]), acc);
                    if min {
                        // SAFETY: as above.
                        let dmin_w = _mm512_cvtph_ps(load32(unsafe { wp[p].add(f.dmin_at()) }));
                        acc = _mm512_fnmadd_ps(_mm512_mul_ps(dmin_w, d_a), _mm512_cvtepi32_ps(msum[p]), acc);
                    }
                    // SAFETY: as above.
                    unsafe { _mm512_mask_storeu_ps(optr, mask, acc) };
                }
            }
        }

        /// The whole `gemm` of one type at this level: panels in pairs, super-blocks, row tiles.
        #[target_feature(enable = $features)]
        fn $gemm<const FMT: usize>(
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
            let n_panels = n_panels.min(cols.div_ceil(16));
            let decode = m >= DECODE_MIN_ROWS;
            let table = iq4_xs_table($vnni);
            let mut decoded = DecodedCodes([0; NP * PANEL_CODES_BYTES]);
            for p0 in (0..n_panels).step_by(NP) {
                let np = NP.min(n_panels - p0);
                let masks = std::array::from_fn(|p| {
                    let lanes = cols.saturating_sub(16 * (p0 + p)).min(16);
                    ((1u32 << lanes) - 1) as u16
                });
                for i in 0..nb {
                    if decode {
                        for (p, out) in decoded.0.as_chunks_mut::<PANEL_CODES_BYTES>().0.iter_mut().take(np).enumerate()
                        {
                            decode_codes(f, &panels[(p0 + p) * pb + i * sbb..][..sbb], table, out);
                        }
                    }
                    for r0 in (0..m).step_by(MR) {
                        prefetch_acts(acts, (r0 + MR..m.min(r0 + 2 * MR)).map(|r| r * arb + i * ACT_BLOCK_BYTES));
                        let at = TileAt {
                            panel: p0 * pb + i * sbb,
                            panel_stride: pb,
                            act: r0 * arb + i * ACT_BLOCK_BYTES,
                            act_stride: arb,
                            out: r0 * out_stride + 16 * p0,
                            out_stride,
                            masks,
                            first: i == 0,
                            prefetch: r0 == 0,
                        };
                        match ((m - r0).min(MR), np) {
                            (MR, 1) if decode => $tile::<FMT, MR, 1, true>(panels, acts, &decoded.0, out, at),
                            (MR, 2) if decode => $tile::<FMT, MR, 2, true>(panels, acts, &decoded.0, out, at),
                            (MR, 3) if decode => $tile::<FMT, MR, 3, true>(panels, acts, &decoded.0, out, at),
                            (1, 1) => $tile::<FMT, 1, 1, false>(panels, acts, &[], out, at),
                            (1, 2) => $tile::<FMT, 1, 2, false>(panels, acts, &[], out, at),
                            (1, 3) => $tile::<FMT, 1, 3, false>(panels, acts, &[], out, at),
                            (2, 1) => $tile::<FMT, 2, 1, false>(panels, acts, &[], out, at),
                            (2, 2) => $tile::<FMT, 2, 2, false>(panels, acts, &[], out, at),
                            (2, 3) => $tile::<FMT, 2, 3, false>(panels, acts, &[], out, at),
                            (3, 1) => $tile::<FMT, 3, 1, false>(panels, acts, &[], out, at),
                            (3, 2) => $tile::<FMT, 3, 2, false>(panels, acts, &[], out, at),
                            (3, 3) => $tile::<FMT, 3, 3, false>(panels, acts, &[], out, at),
                            (4, 1) => $tile::<FMT, 4, 1, false>(panels, acts, &[], out, at),
                            (4, 2) => $tile::<FMT, 4, 2, false>(panels, acts, &[], out, at),
                            (4, 3) => $tile::<FMT, 4, 3, false>(panels, acts, &[], out, at),
                            (5, 1) => $tile::<FMT, 5, 1, false>(panels, acts, &[], out, at),
                            (5, 2) => $tile::<FMT, 5, 2, false>(panels, acts, &[], out, at),
                            (5, 3) => $tile::<FMT, 5, 3, false>(panels, acts, &[], out, at),
                            (6, 1) => $tile::<FMT, 6, 1, false>(panels, acts, &[], out, at),
                            (6, 2) => $tile::<FMT, 6, 2, false>(panels, acts, &[], out, at),
                            (6, 3) => $tile::<FMT, 6, 3, false>(panels, acts, &[], out, at),
                            _ => unreachable!("tiles of at most {MR} rows and {NP} panels"),
                        }
                    }
                }
            }
        }
    };
}

gemm_level!(
    "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c",
    false,
    tile_madd,
    gemm_madd,
    weights_madd,
    dot4_madd,
    dot2_madd
);
gemm_level!(
    "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512vnni",
    true,
    tile_vnni,
    gemm_vnni,
    weights_vnni,
    dot4_vnni,
    dot2_vnni
);

/// Safe entry points: each runs one type's `gemm` at one variant. Private to this folder and
/// handed out only by [`super::packed_kquant_gemm`], which takes the [`super::Avx512`] token.
macro_rules! entry_points {
    ($($name:ident => $gemm:ident::<$fmt:ident>;)*) => {$(
        fn $name(k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize) {
            // SAFETY: the AVX-512 features are proven by the token `packed_kquant_gemm` takes; the
            // VNNI entry points are only handed out after detecting VNNI.
            unsafe { $gemm::<$fmt>(k, panels, acts, m, cols, out, out_stride) }
        }
    )*};
}

entry_points! {
    gemm_q4_k => gemm_madd::<Q4_K>;
    gemm_q5_k => gemm_madd::<Q5_K>;
    gemm_q6_k => gemm_madd::<Q6_K>;
    gemm_iq4_xs => gemm_madd::<IQ4_XS>;
    gemm_q2_k => gemm_madd::<Q2_K>;
    gemm_q3_k => gemm_madd::<Q3_K>;
    gemm_q4_k_vnni => gemm_vnni::<Q4_K>;
    gemm_q5_k_vnni => gemm_vnni::<Q5_K>;
    gemm_q6_k_vnni => gemm_vnni::<Q6_K>;
    gemm_iq4_xs_vnni => gemm_vnni::<IQ4_XS>;
    gemm_q2_k_vnni => gemm_vnni::<Q2_K>;
    gemm_q3_k_vnni => gemm_vnni::<Q3_K>;
}

/// The gemm of format `index` (`packed_kquants::FORMATS`), with `vpdpbusd` when `vnni` and the
/// CPU has it.
pub(super) fn kernel(index: usize, vnni: bool) -> PackedGemmFn {
    let vnni = vnni && std::arch::is_x86_feature_detected!("avx512vnni");
    match (index, vnni) {
        (Q4_K, false) => gemm_q4_k,
        (Q5_K, false) => gemm_q5_k,
        (Q6_K, false) => gemm_q6_k,
        (IQ4_XS, false) => gemm_iq4_xs,
        (Q4_K, true) => gemm_q4_k_vnni,
        (Q5_K, true) => gemm_q5_k_vnni,
        (Q6_K, true) => gemm_q6_k_vnni,
        (IQ4_XS, true) => gemm_iq4_xs_vnni,
        (Q2_K, false) => gemm_q2_k,
        (Q2_K, true) => gemm_q2_k_vnni,
        (_, false) => gemm_q3_k,
        (_, true) => gemm_q3_k_vnni,
    }
}
