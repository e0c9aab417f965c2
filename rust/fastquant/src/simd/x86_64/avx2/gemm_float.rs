//! AVX2 packed GEMM of float weights (`matmul::packed_float` has the layouts and the float order):
//! a register tile of up to 6 activation rows x 1 panel (12 ymm accumulators, two per panel row
//! of 16 columns, one output per lane), per `k` the panel's 16 weights widened from F16/BF16 in
//! registers and one broadcast activation per row.

use std::arch::x86_64::*;

use super::dot_float::load_weights8;
use crate::matmul::dot::FloatKind;
use crate::matmul::packed::PackedGemmFn;
use crate::matmul::packed_float::{drive, gemm_of_kind, MicroTile, PANEL_PREFETCH_BYTES};

/// Activation rows per register tile.
const MR: usize = 6;

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
    drive(FloatKind::ALL[KIND], k, panels, acts, m, cols, out, out_stride, MR, 1, micro::<KIND>);
}

/// Runs the register tile of the tile's shape.
fn micro<const KIND: usize>(t: &mut MicroTile<'_>) {
    t.check(FloatKind::ALL[KIND].bytes());
    // SAFETY: only reachable through `gemm`, which the ISA module hands out only with a proof token
    // of the features `tile` enables; `check` above proved the tile's slices hold what it reads
    // and writes.
    unsafe {
        match t.mr {
            1 => tile::<KIND, 1>(t),
            2 => tile::<KIND, 2>(t),
            3 => tile::<KIND, 3>(t),
            4 => tile::<KIND, 4>(t),
            5 => tile::<KIND, 5>(t),
            6 => tile::<KIND, 6>(t),
            mr => unreachable!("register tile of {mr} rows"),
        }
    }
}

/// `R` rows x one panel over the tile's K range (see [`MicroTile`]).
///
/// # Safety
/// `t` passed [`MicroTile::check`], `t.mr == R` and `t.nr == 1`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile<const KIND: usize, const R: usize>(t: &mut MicroTile<'_>) {
    let kind = FloatKind::ALL[KIND];
    let step = 16 * kind.bytes();
    let out = t.out.as_mut_ptr();
    // SAFETY: every access below is in bounds: `check` proved one panel of K >= k1 rows of `step` bytes, `mr`
    // activation rows of k1 floats and `mr` output rows of 16 floats.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        if t.k0 > 0 {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (h, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_loadu_ps(out.add(r * t.out_stride + 8 * h));
                }
            }
        }
        let w = t.panels.as_ptr();
        let x: [*const f32; R] = std::array::from_fn(|r| t.acts.as_ptr().add(r * t.act_row_bytes).cast());
        for k in t.k0..t.k1 {
            let wk = w.add(k * step);
            _mm_prefetch::<_MM_HINT_T0>(wk.wrapping_add(PANEL_PREFETCH_BYTES).cast());
            let wv = [load_weights8(kind, wk), load_weights8(kind, wk.add(step / 2))];
            for (acc, x) in acc.iter_mut().zip(x) {
                let xb = _mm256_set1_ps(x.add(k).read_unaligned());
                acc[0] = _mm256_fmadd_ps(wv[0], xb, acc[0]);
                acc[1] = _mm256_fmadd_ps(wv[1], xb, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (h, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(r * t.out_stride + 8 * h), *a);
            }
        }
    }
}
