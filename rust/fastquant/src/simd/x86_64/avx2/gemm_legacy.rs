//! AVX2 packed-GEMM microkernels for Q4_0, Q5_0, IQ4_NL, MXFP4, Q8_0, Q4_1 and Q5_1 (layouts and float order:
//! `matmul::packed_legacy`).
//!
//! A panel's 64-byte chunk is two ymm of 8 columns x 4 code bytes; 4 broadcast activation bytes
//! of a row meet them through `maddubs` + `madd` (u8 x s8 pairs summed to i16, then to i32).
//! `maddubs` saturates above 32767, so only the 4- and 5-bit codes (<= 31) go in unsigned (Q4_0
//! and Q5_0 with the activations' `BIAS * sum(a)` subtracted after, Q4_1's and Q5_1's are their
//! codes); the Q8_0, IQ4_NL and MXFP4 codes (up to 255 biased)
//! are turned back into signed codes `q` and multiplied as `|q| x (a with q's sign)`, every pair
//! within ±2·127·127. Both give each block's exact integer dot, so the float sequence is the
//! scalar one.
// Register tiles are indexed by (row, panel) as the math is written.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use crate::matmul::packed::PANEL_ROWS;
use crate::matmul::packed_legacy::{checked_shapes, Kind, ACT_BLOCK_BYTES, QK, SCALE_BYTES};
use crate::simd::x86_64::avx2::dot::legacy::e8m0_to_fp32_half_x8;

/// Rows of a register tile (one panel wide: two ymm of columns per row).
const TILE_ROWS: usize = 2;

// The AVX2 gemm of each kind; the caller holds an `Avx2` token.
crate::matmul::packed_legacy::gemm_entry_points!();

#[allow(clippy::too_many_arguments)]
fn gemm(kind: Kind, k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize) {
    let (nb, panel_bytes, act_row_bytes) = checked_shapes(kind, k, panels, acts, m, cols, out, out_stride);
    for r0 in (0..m).step_by(TILE_ROWS) {
        let rows = TILE_ROWS.min(m - r0);
        for p in 0..cols.div_ceil(PANEL_ROWS) {
            let panel = &panels[p * panel_bytes..(p + 1) * panel_bytes];
            let acts = &acts[r0 * act_row_bytes..(r0 + rows) * act_row_bytes];
            // SAFETY: `kernel` is only handed out with an `Avx2` token (AVX2, FMA, F16C), the
            // features `tile` enables.
            let tile = unsafe {
                if rows == 2 {
                    tile::<2>(kind, nb, panel, acts, act_row_bytes)
                } else {
                    let [t] = tile::<1>(kind, nb, panel, acts, act_row_bytes);
                    [t, t]
                }
            };
            let first = p * PANEL_ROWS;
            let valid = (cols - first).min(PANEL_ROWS);
            for (r, lanes) in tile.iter().enumerate().take(rows) {
                let at = (r0 + r) * out_stride + first;
                out[at..at + valid].copy_from_slice(&lanes[..valid]);
            }
        }
    }
}

/// Four activation bytes at `at` of `acts`, broadcast.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn broadcast4(acts: &[u8], at: usize) -> __m256i {
    _mm256_set1_epi32(i32::from_le_bytes([acts[at], acts[at + 1], acts[at + 2], acts[at + 3]]))
}

/// Sums of four adjacent u8 x s8 products into eight i32 lanes added to `acc`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_add(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
}

/// Rows 0..R of `acts` x the 16 columns of `panel`: each row's 16 outputs.
#[target_feature(enable = "avx2,fma,f16c")]
fn tile<const R: usize>(kind: Kind, nb: usize, panel: &[u8], acts: &[u8], act_row_bytes: usize) -> [[f32; 16]; R] {
    let low = _mm256_set1_epi8(0x0f);
    let lookup = kind.table();
    // SAFETY: a table is 16 bytes; `loadu` needs no alignment.
    let table = lookup.map_or(_mm_setzero_si128(), |t| unsafe { _mm_loadu_si128(t.as_ptr().cast()) });
    let table = _mm256_set_m128i(table, table);
    let load = |at: usize| -> __m256i {
        assert!(at + 32 <= panel.len());
        // SAFETY: bytes at..at+32 lie inside `panel` (checked above).
        unsafe { _mm256_loadu_si256(panel.as_ptr().add(at).cast()) }
    };
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for b in 0..nb {
        let (codes_at, scales_at) = kind.block_at(b);
        let act_at = b * ACT_BLOCK_BYTES + 8;
        let mut isum = [[_mm256_setzero_si256(); 2]; R];
        // One group of 4 elements of the 16 columns (two halves) with the activation bytes at
        // `a_off` of each row's block.
        let mut group = |w: [__m256i; 2], a_off: usize| {
            for r in 0..R {
                let a = broadcast4(acts, r * act_row_bytes + act_at + a_off);
                for h in 0..2 {
                    isum[r][h] = if kind.small_unsigned() {
                        dot_add(isum[r][h], w[h], a)
                    } else {
                        dot_add(isum[r][h], _mm256_sign_epi8(w[h], w[h]), _mm256_sign_epi8(a, w[h]))
                    };
                }
            }
        };
        if kind.code_bytes() == 2 * 256 {
            // One byte per code: Q8_0's sign flipped back (signed), Q5_0/Q5_1 as they are.
            let flip = _mm256_set1_epi8(if kind == Kind::Q8_0 { 0x80u8 as i8 } else { 0 });
            for t in 0..QK / 4 {
                let at = codes_at + 64 * t;
                group([_mm256_xor_si256(load(at), flip), _mm256_xor_si256(load(at + 32), flip)], 4 * t);
            }
        } else {
            for t in 0..4 {
                let at = codes_at + 64 * t;
                let v = [load(at), load(at + 32)];
                let mut lo = v.map(|v| _mm256_and_si256(v, low));
                let mut hi = v.map(|v| _mm256_and_si256(_mm256_srli_epi16::<4>(v), low));
                if lookup.is_some() {
                    lo = lo.map(|v| _mm256_shuffle_epi8(table, v));
                    hi = hi.map(|v| _mm256_shuffle_epi8(table, v));
                }
                group(lo, 4 * t);
                group(hi, 16 + 4 * t);
            }
        }
        let d_w = if kind.e8m0_scales() {
            let e = |at: usize| u64::from_le_bytes(std::array::from_fn(|j| panel[at + j]));
            [e8m0_to_fp32_half_x8(e(scales_at)), e8m0_to_fp32_half_x8(e(scales_at + 8))]
        } else {
            assert!(scales_at + 32 <= panel.len());
            // SAFETY: the 16 fp16 scales of block b lie inside `panel` (checked above).
            unsafe {
                [
                    _mm256_cvtph_ps(_mm_loadu_si128(panel.as_ptr().add(scales_at).cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(panel.as_ptr().add(scales_at + 16).cast())),
                ]
            }
        };
        let m_w = if kind.has_offset() {
            assert!(scales_at + SCALE_BYTES + 32 <= panel.len());
            let at = scales_at + SCALE_BYTES;
            // SAFETY: the 16 fp16 offsets of block b lie inside `panel` (checked above).
            unsafe {
                [
                    _mm256_cvtph_ps(_mm_loadu_si128(panel.as_ptr().add(at).cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(panel.as_ptr().add(at + 16).cast())),
                ]
            }
        } else {
            [_mm256_setzero_ps(); 2]
        };
        for r in 0..R {
            let at = r * act_row_bytes + b * ACT_BLOCK_BYTES;
            let d_a = _mm256_castsi256_ps(broadcast4(acts, at));
            // Q4_0's and Q5_0's unsigned codes exceed the signed ones: take BIAS * sum(a) off.
            let bias_sum = if kind.small_unsigned() && !kind.has_offset() {
                broadcast4(acts, at + 4)
            } else {
                _mm256_setzero_si256()
            };
            for h in 0..2 {
                let exact = _mm256_cvtepi32_ps(_mm256_sub_epi32(isum[r][h], bias_sum));
                acc[r][h] = _mm256_fmadd_ps(_mm256_mul_ps(d_w[h], d_a), exact, acc[r][h]);
                if kind.has_offset() {
                    // Q4_1, Q5_1: the offset term m_w * s_a.
                    let s_a = _mm256_castsi256_ps(broadcast4(acts, at + 4));
                    acc[r][h] = _mm256_fmadd_ps(m_w[h], s_a, acc[r][h]);
                }
            }
        }
    }
    let mut lanes = [[0f32; 16]; R];
    for (l, a) in lanes.iter_mut().zip(acc) {
        // SAFETY: 16 floats hold two ymm.
        unsafe {
            _mm256_storeu_ps(l.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(l.as_mut_ptr().add(8), a[1]);
        }
    }
    lanes
}
