//! AVX-512 packed GEMM of float weights (`matmul::packed_float` has the layouts and the float
//! order): a register tile of up to 8 activation rows x 3 panels (24 zmm accumulators, one output
//! per lane), per `k` three panel vectors widened from F16/BF16 in registers and one broadcast
//! activation per row.

use std::arch::x86_64::*;

use super::dot_float::load_weights16;
use crate::matmul::dot::FloatKind;
use crate::matmul::packed::PackedGemmFn;
use crate::matmul::packed_float::{drive, gemm_of_kind, MicroTile, PANEL_PREFETCH_BYTES};

/// Activation rows per register tile.
const MR: usize = 8;
/// Panels (16 columns each) per register tile.
const NR: usize = 3;

/// The gemm of `kind` at this level.
pub(super) fn gemm(kind: FloatKind) -> PackedGemmFn {
    gemm_of_kind!(gemm_float, kind)
}

fn gemm_float<const KIND: usize>(
    k: usize,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    drive(FloatKind::ALL[KIND], k, panels, acts, m, cols, out, out_stride, MR, NR, micro::<KIND>);
}

/// Runs the register tile of the tile's shape.
fn micro<const KIND: usize>(t: &mut MicroTile<'_>) {
    t.check(FloatKind::ALL[KIND].bytes());
    // SAFETY: only reachable through `gemm`, which the ISA module hands out only with a proof token
    // of the features `tile` enables; `check` above proved the tile's slices hold what it reads
    // and writes.
    unsafe {
        match t.nr {
            1 => rows::<KIND, 1>(t),
            2 => rows::<KIND, 2>(t),
            3 => rows::<KIND, 3>(t),
            nr => unreachable!("register tile of {nr} panels"),
        }
    }
}

/// [`tile`] with the tile's number of rows as a constant.
///
/// # Safety
/// As [`tile`], for `t.nr == P`.
unsafe fn rows<const KIND: usize, const P: usize>(t: &mut MicroTile<'_>) {
    // SAFETY: the caller's guarantee, with `t.mr == R` matched here.
    unsafe {
        match t.mr {
            1 => tile::<KIND, 1, P>(t),
            2 => tile::<KIND, 2, P>(t),
            3 => tile::<KIND, 3, P>(t),
            4 => tile::<KIND, 4, P>(t),
            5 => tile::<KIND, 5, P>(t),
            6 => tile::<KIND, 6, P>(t),
            7 => tile::<KIND, 7, P>(t),
            8 => tile::<KIND, 8, P>(t),
            mr => unreachable!("register tile of {mr} rows"),
        }
    }
}

/// `R` rows x `P` panels over the tile's K range (see [`MicroTile`]).
///
/// # Safety
/// `t` passed [`MicroTile::check`], `t.mr == R` and `t.nr == P`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn tile<const KIND: usize, const R: usize, const P: usize>(t: &mut MicroTile<'_>) {
    let kind = FloatKind::ALL[KIND];
    let step = 16 * kind.bytes();
    let out = t.out.as_mut_ptr();
    // SAFETY: every access below is in bounds: `check` proved `nr` panels of K >= k1 rows of `step` bytes,
    // `mr` activation rows of k1 floats and `mr` output rows of `16 * nr` floats.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        if t.k0 > 0 {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (p, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_loadu_ps(out.add(r * t.out_stride + 16 * p));
                }
            }
        }
        let w: [*const u8; P] = std::array::from_fn(|p| t.panels.as_ptr().add(p * t.panel_bytes));
        let x: [*const f32; R] = std::array::from_fn(|r| t.acts.as_ptr().add(r * t.act_row_bytes).cast());
        for k in t.k0..t.k1 {
            for w in w {
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(k * step + PANEL_PREFETCH_BYTES).cast());
            }
            let wv: [__m512; P] = std::array::from_fn(|p| load_weights16(kind, w[p].add(k * step)));
            for (acc, x) in acc.iter_mut().zip(x) {
                let xb = _mm512_set1_ps(x.add(k).read_unaligned());
                for (a, wv) in acc.iter_mut().zip(wv) {
                    *a = _mm512_fmadd_ps(wv, xb, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (p, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * t.out_stride + 16 * p), *a);
            }
        }
    }
}
