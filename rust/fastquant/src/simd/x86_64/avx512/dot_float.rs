//! AVX-512 GEMV kernels of float weights (F32, F16, BF16) against f32 activations.
//!
//! `matmul::dot` puts element `j` in lane `j % 64`: here four zmm accumulators per activation row,
//! register `i` holding elements `64 s + 16 i ..`, so one row is four independent FMA chains. F16 is
//! widened with `vcvtph2ps` and BF16 with a 16-bit shift, both exact. With several activation rows
//! each weight vector meets every row while it is in a register; K goes in chunks of [`CHUNK`]
//! elements so that, beyond four rows (16 accumulators), the second group of rows finds the weight
//! chunk still in L1.

use std::arch::x86_64::*;

use crate::matmul::dot::{act_rows, FloatKind, VecDotFn, FLOAT_LANES};
use crate::simd::x86_64::avx2::dot_float::PREFETCH_BYTES;
use crate::types::QuantType;

/// Elements per K chunk with more than four rows: 2 KiB of F16 weights, in L1 for both row groups.
const CHUNK: usize = 1024;

/// The kernel for `weight`, or `None` where this level has none.
pub(super) fn kernel(weight: QuantType) -> Option<VecDotFn> {
    Some(match weight {
        QuantType::F32 => vec_dot_f32,
        QuantType::F16 => vec_dot_f16,
        QuantType::BF16 => vec_dot_bf16,
        _ => return None,
    })
}

/// Sixteen weights at `p` as floats.
///
/// # Safety
/// `p` points to 16 readable weights of `kind`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) unsafe fn load_weights16(kind: FloatKind, p: *const u8) -> __m512 {
    // SAFETY: the caller guarantees 16 readable weights (64 bytes of F32, 32 of F16/BF16).
    unsafe {
        match kind {
            FloatKind::F32 => _mm512_loadu_ps(p.cast()),
            FloatKind::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
            FloatKind::Bf16 => {
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
            }
        }
    }
}

/// `steps` steps of 64 elements of `G` activation rows against the weights at `w`: lane `j % 64`
/// of row `g` is `acc[g][(j % 64) / 16]`.
///
/// # Safety
/// `w` has `64 * steps` readable weights of `kind`, and every `x[g]` `64 * steps` floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
unsafe fn steps<const KIND: usize, const G: usize>(
    w: *const u8,
    x: [*const f32; G],
    steps: usize,
    acc: &mut [[__m512; 4]; G],
) {
    let kind = FloatKind::ALL[KIND];
    let step_bytes = FLOAT_LANES * kind.bytes();
    for s in 0..steps {
        // SAFETY: the weights and floats of step `s < steps` are in bounds (the caller's
        // guarantee); a prefetch of any address is harmless.
        unsafe {
            let ws = w.add(s * step_bytes);
            for line in (0..step_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ws.wrapping_add(PREFETCH_BYTES + line).cast());
            }
            let wv: [__m512; 4] = std::array::from_fn(|i| load_weights16(kind, ws.add(16 * i * kind.bytes())));
            for (acc, x) in acc.iter_mut().zip(x) {
                let xs = x.add(s * FLOAT_LANES);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(wv[i], _mm512_loadu_ps(xs.add(16 * i)), *a);
                }
            }
        }
    }
}

/// Rows `first..first + G` of `rows` over the 64-element steps `s0..s1`, then (when `tail` holds
/// the zero-padded last partial step) that step too.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn group<const KIND: usize, const G: usize>(
    weight: &[u8],
    rows: &[&[u8]],
    first: usize,
    (s0, s1): (usize, usize),
    acc: &mut [[__m512; 4]; G],
) {
    let bytes = FloatKind::ALL[KIND].bytes();
    assert!(weight.len() >= s1 * FLOAT_LANES * bytes && rows[first..first + G].iter().all(|r| r.len() >= s1 * 256));
    let x: [*const f32; G] = std::array::from_fn(|g| rows[first + g][s0 * 256..].as_ptr().cast());
    // SAFETY: asserted above: `s1 - s0` steps of weights and floats from step `s0` on.
    unsafe { steps::<KIND, G>(weight[s0 * FLOAT_LANES * bytes..].as_ptr(), x, s1 - s0, acc) }
}

/// The zero-padded last partial step of rows `first..first + G`. Padding adds +0.0 products, which
/// leave every lane as it is.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn tail_step<const KIND: usize, const G: usize>(
    n: usize,
    weight: &[u8],
    rows: &[&[u8]],
    first: usize,
    acc: &mut [[__m512; 4]; G],
) {
    let full = n / FLOAT_LANES * FLOAT_LANES;
    if full == n || G == 0 {
        return;
    }
    let bytes = FloatKind::ALL[KIND].bytes();
    let mut wbuf = [0u8; FLOAT_LANES * 4];
    wbuf[..(n - full) * bytes].copy_from_slice(&weight[full * bytes..n * bytes]);
    let mut xbuf = [[0f32; FLOAT_LANES]; G];
    for (b, row) in xbuf.iter_mut().zip(&rows[first..first + G]) {
        for (v, x) in b.iter_mut().zip(row[full * 4..n * 4].as_chunks::<4>().0) {
            *v = f32::from_le_bytes(*x);
        }
    }
    let x: [*const f32; G] = std::array::from_fn(|g| xbuf[g].as_ptr());
    // SAFETY: one step of weights and of floats in the buffers.
    unsafe { steps::<KIND, G>(wbuf.as_ptr(), x, 1, acc) }
}

/// `matmul::dot`'s halving sum of 64 lanes held in four registers.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
pub(super) fn reduce_halving_64(acc: [__m512; 4]) -> f32 {
    let v = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
    let v8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    crate::simd::x86_64::avx2::dot::reduce_halving_8(v8)
}

/// One weight row with `A + B` activation rows: rows `0..A` and `A..A + B` as two register groups,
/// K in chunks when there is a second group.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn float_rows<const KIND: usize, const A: usize, const B: usize>(
    n: usize,
    weight: &[u8],
    acts: &[u8],
    act_row_bytes: usize,
    out: &mut [f32],
) {
    let kind = FloatKind::ALL[KIND];
    assert!(weight.len() >= n * kind.bytes(), "weight row shorter than n");
    let mut rows = [&[][..]; 8];
    for (slot, row) in rows.iter_mut().zip(act_rows(acts, act_row_bytes, n * 4, A + B)) {
        *slot = row;
    }
    let rows = &rows[..A + B];
    let full_steps = n / FLOAT_LANES;
    let mut acc_a = [[_mm512_setzero_ps(); 4]; A];
    let mut acc_b = [[_mm512_setzero_ps(); 4]; B];
    let chunk_steps = if B == 0 { full_steps.max(1) } else { CHUNK / FLOAT_LANES };
    for s0 in (0..full_steps).step_by(chunk_steps) {
        let range = (s0, (s0 + chunk_steps).min(full_steps));
        group::<KIND, A>(weight, rows, 0, range, &mut acc_a);
        if B > 0 {
            group::<KIND, B>(weight, rows, A, range, &mut acc_b);
        }
    }
    tail_step::<KIND, A>(n, weight, rows, 0, &mut acc_a);
    tail_step::<KIND, B>(n, weight, rows, A, &mut acc_b);
    for (o, acc) in out.iter_mut().zip(acc_a.into_iter().chain(acc_b)) {
        *o = reduce_halving_64(acc);
    }
}

/// Runs [`float_rows`] with the activation rows split into at most two groups of at most four.
fn run_float<const KIND: usize>(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
    // SAFETY: only reachable through `kernel`, which the ISA module hands out only with a proof
    // token of the features `float_rows` enables.
    unsafe {
        match out.len() {
            1 => float_rows::<KIND, 1, 0>(n, weight, acts, act_row_bytes, out),
            2 => float_rows::<KIND, 2, 0>(n, weight, acts, act_row_bytes, out),
            3 => float_rows::<KIND, 3, 0>(n, weight, acts, act_row_bytes, out),
            4 => float_rows::<KIND, 4, 0>(n, weight, acts, act_row_bytes, out),
            5 => float_rows::<KIND, 3, 2>(n, weight, acts, act_row_bytes, out),
            6 => float_rows::<KIND, 3, 3>(n, weight, acts, act_row_bytes, out),
            7 => float_rows::<KIND, 4, 3>(n, weight, acts, act_row_bytes, out),
            8 => float_rows::<KIND, 4, 4>(n, weight, acts, act_row_bytes, out),
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
