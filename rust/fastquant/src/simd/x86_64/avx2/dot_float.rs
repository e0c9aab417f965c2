//! AVX2 GEMV kernels of float weights (F32, F16, BF16) against f32 activations (FMA, F16C).
//!
//! `matmul::dot` puts element `j` in lane `j % 64`: here eight ymm accumulators per activation row,
//! register `i` holding elements `64 s + 8 i ..`. Sixteen registers hold one row's accumulators and
//! the weights of a step, so several activation rows take turns over K chunks of [`CHUNK`]
//! elements, each row's accumulators kept in memory between chunks, while the weight chunk stays
//! in L1.

use std::arch::x86_64::*;

use crate::matmul::dot::{act_rows, FloatKind, VecDotFn, FLOAT_LANES};
use crate::types::QuantType;

/// Elements per K chunk with more than one row: 2 KiB of F16 weights, read from L1 by every row.
const CHUNK: usize = 1024;

/// How far ahead of its loads a float GEMV prefetches the weight row (both levels): 4 KiB and more
/// measured alike, less ahead slower (at 1 row, F16, AVX-512: 2 KiB -10%, none -20%).
pub(crate) const PREFETCH_BYTES: usize = 8 << 10;

/// The kernel for `weight`, or `None` where this level has none.
pub(super) fn kernel(weight: QuantType) -> Option<VecDotFn> {
    Some(match weight {
        QuantType::F32 => vec_dot_f32,
        QuantType::F16 => vec_dot_f16,
        QuantType::BF16 => vec_dot_bf16,
        _ => return None,
    })
}

/// Eight weights at `p` as floats.
///
/// # Safety
/// `p` points to 8 readable weights of `kind`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) unsafe fn load_weights8(kind: FloatKind, p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 8 readable weights (32 bytes of F32, 16 of F16/BF16).
    unsafe {
        match kind {
            FloatKind::F32 => _mm256_loadu_ps(p.cast()),
            FloatKind::F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
            FloatKind::Bf16 => {
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))))
            }
        }
    }
}

/// `steps` steps of 64 elements of one activation row `x` against the weights at `w`.
///
/// # Safety
/// `w` has `64 * steps` readable weights of `kind`, and `x` `64 * steps` floats.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn steps<const KIND: usize>(w: *const u8, x: *const f32, steps: usize, acc: &mut [__m256; 8]) {
    let kind = FloatKind::ALL[KIND];
    let step_bytes = FLOAT_LANES * kind.bytes();
    let mut a = *acc;
    for s in 0..steps {
        // SAFETY: step `s < steps` is in bounds (the caller's guarantee); a prefetch of any
        // address is harmless.
        unsafe {
            let ws = w.add(s * step_bytes);
            for line in (0..step_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ws.wrapping_add(PREFETCH_BYTES + line).cast());
            }
            let xs = x.add(s * FLOAT_LANES);
            for (i, a) in a.iter_mut().enumerate() {
                let wv = load_weights8(kind, ws.add(8 * i * kind.bytes()));
                *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xs.add(8 * i)), *a);
            }
        }
    }
    *acc = a;
}

/// `matmul::dot`'s halving sum of 64 lanes held in eight registers.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn reduce_halving_64(a: [__m256; 8]) -> f32 {
    let a4: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(a[i], a[i + 4]));
    let a2 = [_mm256_add_ps(a4[0], a4[2]), _mm256_add_ps(a4[1], a4[3])];
    super::dot::reduce_halving_8(_mm256_add_ps(a2[0], a2[1]))
}

/// One weight row with `R` activation rows, K in chunks the rows take turns over.
#[target_feature(enable = "avx2,fma,f16c")]
fn float_rows<const KIND: usize, const R: usize>(
    n: usize,
    weight: &[u8],
    acts: &[u8],
    act_row_bytes: usize,
    out: &mut [f32],
) {
    let kind = FloatKind::ALL[KIND];
    let bytes = kind.bytes();
    assert!(weight.len() >= n * bytes, "weight row shorter than n");
    let mut rows = [&[][..]; R];
    for (slot, row) in rows.iter_mut().zip(act_rows(acts, act_row_bytes, n * 4, R)) {
        *slot = row;
    }
    let full_steps = n / FLOAT_LANES;
    let mut acc = [[_mm256_setzero_ps(); 8]; R];
    let chunk_steps = if R == 1 { full_steps.max(1) } else { CHUNK / FLOAT_LANES };
    for s0 in (0..full_steps).step_by(chunk_steps) {
        let s1 = (s0 + chunk_steps).min(full_steps);
        let w = &weight[s0 * FLOAT_LANES * bytes..s1 * FLOAT_LANES * bytes];
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let x = &row[s0 * 256..s1 * 256];
            // SAFETY: `w` and `x` are `s1 - s0` whole steps (sliced above).
            unsafe { steps::<KIND>(w.as_ptr(), x.as_ptr().cast(), s1 - s0, acc) }
        }
    }
    let full = full_steps * FLOAT_LANES;
    if full < n {
        // The zero-padded last partial step: padding adds +0.0 products, which leave every lane
        // as it is.
        let mut wbuf = [0u8; FLOAT_LANES * 4];
        wbuf[..(n - full) * bytes].copy_from_slice(&weight[full * bytes..n * bytes]);
        for (acc, row) in acc.iter_mut().zip(&rows) {
            let mut xbuf = [0f32; FLOAT_LANES];
            for (v, x) in xbuf.iter_mut().zip(row[full * 4..].as_chunks::<4>().0) {
                *v = f32::from_le_bytes(*x);
            }
            // SAFETY: one step of weights and of floats in the buffers.
            unsafe { steps::<KIND>(wbuf.as_ptr(), xbuf.as_ptr(), 1, acc) }
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = reduce_halving_64(acc);
    }
}

/// Runs [`float_rows`] with the number of activation rows as a constant.
fn run_float<const KIND: usize>(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    // SAFETY: only reachable through `kernel`, which the ISA module hands out only with a proof
    // token of the features `float_rows` enables.
    unsafe {
        match out.len() {
            1 => float_rows::<KIND, 1>(n, weight, acts, act_row_bytes, out),
            2 => float_rows::<KIND, 2>(n, weight, acts, act_row_bytes, out),
            3 => float_rows::<KIND, 3>(n, weight, acts, act_row_bytes, out),
            4 => float_rows::<KIND, 4>(n, weight, acts, act_row_bytes, out),
            5 => float_rows::<KIND, 5>(n, weight, acts, act_row_bytes, out),
            6 => float_rows::<KIND, 6>(n, weight, acts, act_row_bytes, out),
            7 => float_rows::<KIND, 7>(n, weight, acts, act_row_bytes, out),
            8 => float_rows::<KIND, 8>(n, weight, acts, act_row_bytes, out),
            r => panic!("{r} activation rows: a kernel call takes 1..=8"),
        }
    }
}

fn vec_dot_f32(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    run_float::<{ FloatKind::F32.id() }>(n, weight, acts, act_row_bytes, out)
}

fn vec_dot_f16(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    run_float::<{ FloatKind::F16.id() }>(n, weight, acts, act_row_bytes, out)
}

fn vec_dot_bf16(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    run_float::<{ FloatKind::Bf16.id() }>(n, weight, acts, act_row_bytes, out)
}
