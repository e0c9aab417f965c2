//! AVX-512 VNNI packed-GEMM microkernels for Q4_0, Q5_0, IQ4_NL, MXFP4, Q8_0, Q4_1 and Q5_1 (layouts and float order:
//! `matmul::packed_legacy`).
//!
//! A zmm holds 16 columns x 4 code bytes (one 64-byte chunk of a panel); one `vpdpbusd` with 4
//! broadcast activation bytes of a row adds 4 products into each column's i32 lane. A tile of
//! `R` rows x `P` panels keeps `R x P` integer block sums and as many f32 accumulators in
//! registers; per block the sums lose `BIAS * sum(a)` (exact), become floats, and meet
//! `d_w * d_a` in one FMA per lane, as the scalar reference does.
// Register tiles are indexed by (row, panel) as the math is written.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use crate::matmul::packed::PANEL_ROWS;
use crate::matmul::packed_legacy::{checked_shapes, Kind, ACT_BLOCK_BYTES, QK, SCALE_BYTES};

/// Rows of a register tile.
const TILE_ROWS: usize = 4;
/// Panels of a register tile.
const TILE_PANELS: usize = 2;
/// Panels of a register tile when there is one row.
const SINGLE_ROW_PANELS: usize = 4;

// The VNNI gemm of each kind; the caller has checked that the CPU has AVX-512 F/BW/VL/DQ and VNNI.
crate::matmul::packed_legacy::gemm_entry_points!();

/// What the tiles share: the operands and their strides.
struct Operands<'a> {
    kind: Kind,
    nb: usize,
    panels: &'a [u8],
    panel_bytes: usize,
    acts: &'a [u8],
    act_row_bytes: usize,
}

#[allow(clippy::too_many_arguments)]
fn gemm(kind: Kind, k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize) {
    let (nb, panel_bytes, act_row_bytes) = checked_shapes(kind, k, panels, acts, m, cols, out, out_stride);
    let ops = Operands { kind, nb, panels, panel_bytes, acts, act_row_bytes };
    let n_panels = cols.div_ceil(PANEL_ROWS);
    // A single row (the decode case) is bound by the weight stream: more panels side by side
    // keep more independent loads and sums in flight.
    let tile_panels = if m == 1 { SINGLE_ROW_PANELS } else { TILE_PANELS };
    for r0 in (0..m).step_by(TILE_ROWS) {
        let rows = TILE_ROWS.min(m - r0);
        for p0 in (0..n_panels).step_by(tile_panels) {
            let np = tile_panels.min(n_panels - p0);
            let tile_cols = (cols - p0 * PANEL_ROWS).min(np * PANEL_ROWS);
            // SAFETY: `kernel` hands these functions out only after detecting AVX-512 F/BW/VL/DQ
            // and VNNI, the features `tile` enables; the bounds were checked above.
            unsafe {
                match (rows, np) {
                    (1, 4) => tile::<1, 4>(&ops, r0, p0, tile_cols, out, out_stride),
                    (1, 3) => tile::<1, 3>(&ops, r0, p0, tile_cols, out, out_stride),
                    (4, 2) => tile::<4, 2>(&ops, r0, p0, tile_cols, out, out_stride),
                    (3, 2) => tile::<3, 2>(&ops, r0, p0, tile_cols, out, out_stride),
                    (2, 2) => tile::<2, 2>(&ops, r0, p0, tile_cols, out, out_stride),
                    (1, 2) => tile::<1, 2>(&ops, r0, p0, tile_cols, out, out_stride),
                    (4, _) => tile::<4, 1>(&ops, r0, p0, tile_cols, out, out_stride),
                    (3, _) => tile::<3, 1>(&ops, r0, p0, tile_cols, out, out_stride),
                    (2, _) => tile::<2, 1>(&ops, r0, p0, tile_cols, out, out_stride),
                    _ => tile::<1, 1>(&ops, r0, p0, tile_cols, out, out_stride),
                }
            }
        }
    }
}

/// Four activation bytes at `at` of `acts`, broadcast to every lane.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn broadcast4(acts: &[u8], at: usize) -> __m512i {
    debug_assert!(at + 4 <= acts.len());
    // SAFETY: every caller reads inside an activation block whose row `check_gemm_args` bounded.
    _mm512_set1_epi32(unsafe { std::ptr::read_unaligned(acts.as_ptr().add(at).cast::<i32>()) })
}

/// ggml's `E8M0_TO_FP32_HALF` of the 16 exponent bytes of `e` (byte `j` to lane `j`), as
/// `avx2::dot::legacy::e8m0_to_fp32_half_x8` computes it for eight.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn e8m0_to_fp32_half_x16(e: __m128i) -> __m512 {
    let e = _mm512_cvtepu8_epi32(e);
    let normal = _mm512_slli_epi32::<23>(_mm512_sub_epi32(e, _mm512_set1_epi32(1)));
    let subnormal = _mm512_sllv_epi32(_mm512_set1_epi32(0x0020_0000), e);
    let is_normal = _mm512_cmpgt_epi32_mask(e, _mm512_set1_epi32(1));
    _mm512_castsi512_ps(_mm512_mask_blend_epi32(is_normal, subnormal, normal))
}

/// Rows `r0..r0 + R` x panels `p0..p0 + P` (the first `cols` columns of them) into `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
fn tile<const R: usize, const P: usize>(
    ops: &Operands<'_>,
    r0: usize,
    p0: usize,
    cols: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let kind = ops.kind;
    let low = _mm512_set1_epi8(0x0f);
    let lookup = kind.table();
    // SAFETY: a table is 16 bytes; `loadu` needs no alignment.
    let table = lookup.map_or(_mm_setzero_si128(), |t| unsafe { _mm_loadu_si128(t.as_ptr().cast()) });
    // IQ4_NL and MXFP4 codes biased by 128 (their values lie in -127..=113, so value + 128 fits a u8).
    let table = _mm512_xor_si512(_mm512_broadcast_i32x4(table), _mm512_set1_epi8(0x80u8 as i8));
    let panel_base: [usize; P] = std::array::from_fn(|p| (p0 + p) * ops.panel_bytes);
    let row_base: [usize; R] = std::array::from_fn(|r| (r0 + r) * ops.act_row_bytes);
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for b in 0..ops.nb {
        let (codes_at, scales_at) = kind.block_at(b);
        let mut isum = [[_mm512_setzero_si512(); P]; R];
        let act_at = b * ACT_BLOCK_BYTES + 8;
        if kind.code_bytes() == 2 * 256 {
            // One byte per code: Q8_0 sign-flipped, Q5_0/Q5_1 their 5 bits.
            for t in 0..QK / 4 {
                let w: [__m512i; P] = std::array::from_fn(|p| {
                    // SAFETY: chunk t of block b lies inside panel p0 + p (check_gemm_args bounded
                    // the panels; `block_at` stays inside a panel of `nb` blocks).
                    unsafe { _mm512_loadu_si512(ops.panels.as_ptr().add(panel_base[p] + codes_at + 64 * t).cast()) }
                });
                for r in 0..R {
                    let a = broadcast4(ops.acts, row_base[r] + act_at + 4 * t);
                    for p in 0..P {
                        isum[r][p] = _mm512_dpbusd_epi32(isum[r][p], w[p], a);
                    }
                }
            }
        } else {
            for t in 0..4 {
                let mut lo = [_mm512_setzero_si512(); P];
                let mut hi = [_mm512_setzero_si512(); P];
                for p in 0..P {
                    // SAFETY: as above, chunk t of block b inside panel p0 + p.
                    let v = unsafe {
                        _mm512_loadu_si512(ops.panels.as_ptr().add(panel_base[p] + codes_at + 64 * t).cast())
                    };
                    lo[p] = _mm512_and_si512(v, low);
                    hi[p] = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                    if lookup.is_some() {
                        lo[p] = _mm512_shuffle_epi8(table, lo[p]);
                        hi[p] = _mm512_shuffle_epi8(table, hi[p]);
                    }
                }
                for r in 0..R {
                    let a_lo = broadcast4(ops.acts, row_base[r] + act_at + 4 * t);
                    let a_hi = broadcast4(ops.acts, row_base[r] + act_at + 16 + 4 * t);
                    for p in 0..P {
                        isum[r][p] = _mm512_dpbusd_epi32(isum[r][p], lo[p], a_lo);
                        isum[r][p] = _mm512_dpbusd_epi32(isum[r][p], hi[p], a_hi);
                    }
                }
            }
        }
        let d_w: [__m512; P] = std::array::from_fn(|p| {
            let at = ops.panels.as_ptr().wrapping_add(panel_base[p] + scales_at);
            // SAFETY: the 16 scales (fp16, or MXFP4's exponent bytes) of block b lie inside panel p0 + p.
            unsafe {
                if kind.e8m0_scales() {
                    e8m0_to_fp32_half_x16(_mm_loadu_si128(at.cast()))
                } else {
                    _mm512_cvtph_ps(_mm256_loadu_si256(at.cast()))
                }
            }
        });
        if kind.has_offset() {
            // Q4_1, Q5_1: unsigned codes as they are, then the offset term m_w * s_a.
            let m_w: [__m512; P] = std::array::from_fn(|p| {
                let at = panel_base[p] + scales_at + SCALE_BYTES;
                // SAFETY: the 16 fp16 offsets of block b lie inside panel p0 + p.
                _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(ops.panels.as_ptr().add(at).cast()) })
            });
            for r in 0..R {
                let at = row_base[r] + b * ACT_BLOCK_BYTES;
                let d_a = _mm512_castsi512_ps(broadcast4(ops.acts, at));
                let s_a = _mm512_castsi512_ps(broadcast4(ops.acts, at + 4));
                for p in 0..P {
                    let exact = _mm512_cvtepi32_ps(isum[r][p]);
                    acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(d_w[p], d_a), exact, acc[r][p]);
                    acc[r][p] = _mm512_fmadd_ps(m_w[p], s_a, acc[r][p]);
                }
            }
            continue;
        }
        for r in 0..R {
            let at = row_base[r] + b * ACT_BLOCK_BYTES;
            let d_a = _mm512_castsi512_ps(broadcast4(ops.acts, at));
            let bias_sum = broadcast4(ops.acts, at + 4);
            for p in 0..P {
                let exact = _mm512_cvtepi32_ps(_mm512_sub_epi32(isum[r][p], bias_sum));
                acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(d_w[p], d_a), exact, acc[r][p]);
            }
        }
    }
    for r in 0..R {
        for p in 0..P {
            let first = p * PANEL_ROWS;
            if first >= cols {
                continue;
            }
            let valid = (cols - first).min(PANEL_ROWS);
            let mask: __mmask16 = if valid == PANEL_ROWS { !0 } else { (1u16 << valid) - 1 };
            let at = (r0 + r) * out_stride + p0 * PANEL_ROWS + first;
            assert!(at + valid <= out.len());
            // SAFETY: the lanes the mask keeps are `out[at..at + valid]`, in bounds (checked);
            // masked-off lanes are not accessed.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), mask, acc[r][p]) };
        }
    }
}
