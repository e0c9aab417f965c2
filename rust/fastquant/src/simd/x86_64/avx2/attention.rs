//! AVX2 + FMA attention tile kernels (see `attention::TileKernels` for what each computes and
//! `attention::kernels` for the scalar reference they must match up to reassociation).
//!
//! * `qk`: 6 query rows x 16 keys in 12 ymm accumulators (of 16 registers).
//! * `pv`: 6 output rows x 16 columns in 12 accumulators.
//! * `exp`: Cephes' degree-5 polynomial, the power of two built in the exponent bits; inputs
//!   below -87.3 give exactly 0 (a normal power of two cannot go lower).
//! * `transpose`: 8 x 8 blocks in registers.
//! * `qk_q8`: integer dots of Q8_0 query and key blocks, one block per ymm: `|k|` times `q` with
//!   `k`'s sign (`vpmaddubsw`, no saturation as |q| <= 127), pairs summed by `vpmaddwd`, scaled per
//!   block in f32; 4 query rows (held in registers, codes and scales) share each key block's
//!   loads, and their 4 scores are reduced together.
//! * `pv_q8`: 4 output rows x 16 columns (half a V block) in 8 accumulators; each key's codes are
//!   widened int8 -> f32 and scaled in registers once for the 4 rows.
//! * `qk_f16`: 2 query rows x 4 F16 keys in 8 accumulators, 8 head dims per step (`vcvtph2ps`),
//!   the last `D % 8` in scalar.
//! * `pv_f16`: 4 output rows x 16 columns in 8 accumulators, each key's F16 chunk widened once.
//!
//! Soundness: every kernel is a `#[target_feature]` function called only from the safe wrappers
//! in the table [`attention_kernels`] hands out for an [`Avx2`] token. Pointer reads and writes
//! stay inside the bounds the `check_*` asserts establish, as each `SAFETY` comment says.

use std::arch::x86_64::*;

use super::broadcast_fp16;
use super::legacy::{hmax, load_i8x8_as_i32};
use crate::attention::kernels::{
    check_pv, check_pv_f16, check_pv_q8, check_qk, check_qk_f16, check_qk_q8, check_transpose, f16_at, transpose_edges,
    Q8_0_BLOCK_BYTES,
};
use crate::attention::TileKernels;
use crate::simd::x86_64::Avx2;
use crate::simd::Level;

/// The AVX2 tile kernels.
pub fn attention_kernels(_token: Avx2) -> TileKernels {
    TileKernels { level: Level::Avx2, qk, pv, max, exp_sum, softcap, scale, transpose, qk_q8, pv_q8, qk_f16, pv_f16 }
}

/// Safe entry points for the table: each calls the `#[target_feature]` kernel of the same shape.
macro_rules! entry_points {
    ($($name:ident => $kernel:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {$(
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) $(-> $ret)? {
            // SAFETY: only reachable through the table `attention_kernels` returns for an `Avx2`
            // token, which proves the CPU has every feature the kernel enables.
            unsafe { $kernel($($arg),*) }
        }
    )*};
}

entry_points! {
    qk => qk_avx2(q: &[f32], rows: usize, d_len: usize, kt: &[f32], ld: usize, s: &mut [f32]);
    pv => pv_avx2(p: &[f32], rows: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &mut [f32]);
    max => max_avx2(x: &[f32]) -> f32;
    exp_sum => exp_sum_avx2(x: &mut [f32], m: f32) -> f32;
    softcap => softcap_avx2(x: &mut [f32], cap: f32);
    scale => scale_avx2(x: &mut [f32], a: f32);
    qk_q8 => qk_q8_avx2(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &mut [f32], ld: usize);
    pv_q8 => pv_q8_avx2(
        p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], row_bytes: usize, o: &mut [f32], dp: usize
    );
    transpose => transpose_avx2(k: &[f32], n: usize, d_len: usize, kt: &mut [f32], ld: usize);
    qk_f16 => qk_f16_avx2(q: &[f32], rows: usize, d_len: usize, k: &[u8], n: usize, s: &mut [f32], ld: usize);
    pv_f16 => pv_f16_avx2(
        p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], d_len: usize, o: &mut [f32], dp: usize
    );
}

#[target_feature(enable = "avx2,fma,f16c")]
fn qk_avx2(q: &[f32], rows: usize, d_len: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
    check_qk(q, rows, d_len, kt, ld, s);
    let mut r = 0;
    while r + 6 <= rows {
        qk_rows::<6>(q, r, d_len, kt, ld, s);
        r += 6;
    }
    match rows - r {
        0 => {}
        1 => qk_rows::<1>(q, r, d_len, kt, ld, s),
        2 => qk_rows::<2>(q, r, d_len, kt, ld, s),
        3 => qk_rows::<3>(q, r, d_len, kt, ld, s),
        4 => qk_rows::<4>(q, r, d_len, kt, ld, s),
        _ => qk_rows::<5>(q, r, d_len, kt, ld, s),
    }
}

/// Rows `r0..r0 + MR` of `S = Q·Kᵀ`, 16 keys at a time (ld is a multiple of 16).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn qk_rows<const MR: usize>(q: &[f32], r0: usize, d_len: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
    let qp = q[r0 * d_len..(r0 + MR) * d_len].as_ptr();
    let kp = kt.as_ptr();
    let sp = s[r0 * ld..(r0 + MR) * ld].as_mut_ptr();
    for j in (0..ld).step_by(16) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for d in 0..d_len {
            // SAFETY: d < d_len and j + 16 <= ld: kt[d*ld + j..+16] is in bounds (check_qk); q rows
            // r0..r0 + MR are the slice `qp` points into.
            unsafe {
                let k0 = _mm256_loadu_ps(kp.add(d * ld + j));
                let k1 = _mm256_loadu_ps(kp.add(d * ld + j + 8));
                for (i, a) in acc.iter_mut().enumerate() {
                    let qv = _mm256_broadcast_ss(&*qp.add(i * d_len + d));
                    a[0] = _mm256_fmadd_ps(qv, k0, a[0]);
                    a[1] = _mm256_fmadd_ps(qv, k1, a[1]);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: row i of the MR rows `sp` points to has ld >= j + 16 floats.
            unsafe {
                _mm256_storeu_ps(sp.add(i * ld + j), a[0]);
                _mm256_storeu_ps(sp.add(i * ld + j + 8), a[1]);
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn pv_avx2(p: &[f32], rows: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &mut [f32]) {
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

/// Rows `r0..r0 + MR` of `O += P·V`, 16 columns at a time (dp is a multiple of 16).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn pv_rows<const MR: usize>(p: &[f32], r0: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &mut [f32]) {
    let pp = p[r0 * ld..(r0 + MR) * ld].as_ptr();
    let vp = v.as_ptr();
    let op = o[r0 * dp..(r0 + MR) * dp].as_mut_ptr();
    for c in (0..dp).step_by(16) {
        // SAFETY (this loop): `pp` and `op` point to MR rows of ld and dp floats, v holds n rows of
        // dp floats (check_pv), n <= ld and c + 16 <= dp.
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: within the bounds stated at the top of this function.
            unsafe {
                a[0] = _mm256_loadu_ps(op.add(i * dp + c));
                a[1] = _mm256_loadu_ps(op.add(i * dp + c + 8));
            }
        }
        for j in 0..n {
            // SAFETY: within the bounds stated at the top of this function.
            let (v0, v1) = unsafe { (_mm256_loadu_ps(vp.add(j * dp + c)), _mm256_loadu_ps(vp.add(j * dp + c + 8))) };
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: within the bounds stated at the top of this function.
                let pj = unsafe { _mm256_broadcast_ss(&*pp.add(i * ld + j)) };
                a[0] = _mm256_fmadd_ps(pj, v0, a[0]);
                a[1] = _mm256_fmadd_ps(pj, v1, a[1]);
            }
        }
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: within the bounds stated at the top of this function.
            unsafe {
                _mm256_storeu_ps(op.add(i * dp + c), a[0]);
                _mm256_storeu_ps(op.add(i * dp + c + 8), a[1]);
            }
        }
    }
}

/// The sum of the lanes of `v`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn max_avx2(x: &[f32]) -> f32 {
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    let (chunks, rest) = x.as_chunks::<8>();
    for c in chunks {
        // SAFETY: c is 8 readable floats.
        m = _mm256_max_ps(m, unsafe { _mm256_loadu_ps(c.as_ptr()) });
    }
    rest.iter().copied().fold(hmax(m), f32::max)
}

/// `exp(x)` per lane, about 1 ulp; exactly 0 below -87.3 (including -inf).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn exp_ps(x: __m256) -> __m256 {
    let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.33));
    let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33)), _mm256_set1_ps(88.37));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
    // n is in [-126, 127] after the clamp, so 2^n is a normal float built from its exponent bits.
    let pow2 =
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127))));
    _mm256_andnot_ps(underflow, _mm256_mul_ps(e, pow2))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn exp_sum_avx2(x: &mut [f32], m: f32) -> f32 {
    let mv = _mm256_set1_ps(m);
    let mut sum = _mm256_setzero_ps();
    let (chunks, rest) = x.as_chunks_mut::<8>();
    for c in chunks {
        // SAFETY: c is 8 floats.
        unsafe {
            let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), mv));
            _mm256_storeu_ps(c.as_mut_ptr(), e);
            sum = _mm256_add_ps(sum, e);
        }
    }
    let mut total = hsum(sum);
    if !rest.is_empty() {
        let mut buf = [f32::NEG_INFINITY; 8];
        buf[..rest.len()].copy_from_slice(rest);
        // SAFETY: buf is 8 floats.
        let e = unsafe { exp_ps(_mm256_sub_ps(_mm256_loadu_ps(buf.as_ptr()), mv)) };
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), e) };
        rest.copy_from_slice(&buf[..rest.len()]);
        total += rest.iter().sum::<f32>();
    }
    total
}

/// `cap · tanh(x / cap)` per lane (see the AVX-512 version for the two formulas).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn softcap_ps(x: __m256, cap: __m256, inv_cap: __m256) -> __m256 {
    let y = _mm256_mul_ps(x, inv_cap);
    let sign_bit = _mm256_set1_ps(-0.0);
    let ay = _mm256_andnot_ps(sign_bit, y);
    let z = _mm256_mul_ps(y, y);
    let mut p = _mm256_set1_ps(-5.704_988_7e-3);
    for c in [2.063_908_8e-2, -5.373_971_6e-2, 1.333_144_2e-1, -3.333_328e-1] {
        p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(c));
    }
    let small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), y, y);
    let e = exp_ps(_mm256_min_ps(_mm256_add_ps(ay, ay), _mm256_set1_ps(40.0)));
    let one = _mm256_set1_ps(1.0);
    let big_abs = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)));
    let big = _mm256_or_ps(big_abs, _mm256_and_ps(sign_bit, y));
    let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(ay, _mm256_set1_ps(0.625));
    _mm256_mul_ps(_mm256_blendv_ps(big, small, is_small), cap)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn softcap_avx2(x: &mut [f32], cap: f32) {
    let (c, ic) = (_mm256_set1_ps(cap), _mm256_set1_ps(1.0 / cap));
    for ch in x.chunks_mut(8) {
        let mut buf = [0f32; 8];
        buf[..ch.len()].copy_from_slice(ch);
        // SAFETY: buf is 8 floats.
        unsafe { _mm256_storeu_ps(buf.as_mut_ptr(), softcap_ps(_mm256_loadu_ps(buf.as_ptr()), c, ic)) };
        let n = ch.len();
        ch.copy_from_slice(&buf[..n]);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn scale_avx2(x: &mut [f32], a: f32) {
    let av = _mm256_set1_ps(a);
    let (chunks, rest) = x.as_chunks_mut::<8>();
    for c in chunks {
        // SAFETY: c is 8 floats.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), av)) };
    }
    rest.iter_mut().for_each(|v| *v *= a);
}

#[target_feature(enable = "avx2,fma,f16c")]
fn transpose_avx2(k: &[f32], n: usize, d_len: usize, kt: &mut [f32], ld: usize) {
    check_transpose(k, n, d_len, kt, ld);
    let (n8, d8) = (n / 8 * 8, d_len / 8 * 8);
    for j in (0..n8).step_by(8) {
        for d in (0..d8).step_by(8) {
            // SAFETY: rows j..j+8 <= n and columns d..d+8 <= d_len of k; rows d..d+8 <= d_len and
            // columns j..j+8 <= n <= ld of kt: in bounds by the assert.
            unsafe {
                let r: [__m256; 8] = std::array::from_fn(|t| _mm256_loadu_ps(k.as_ptr().add((j + t) * d_len + d)));
                let c = transpose8(r);
                for (t, v) in c.iter().enumerate() {
                    _mm256_storeu_ps(kt.as_mut_ptr().add((d + t) * ld + j), *v);
                }
            }
        }
    }
    transpose_edges(k, n, d_len, kt, ld, n8, d8);
}

/// Transposes an 8 x 8 block held as 8 row vectors.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t: [__m256; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_ps(a, b)
        } else {
            _mm256_unpackhi_ps(a, b)
        }
    });
    // t[2i], t[2i+1]: rows 2i, 2i+1 interleaved (columns 0,1,4,5 and 2,3,6,7 per 128-bit lane).
    let mut u = [_mm256_setzero_ps(); 8];
    for i in 0..2 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        u[4 * i] = _mm256_shuffle_ps::<0b01_00_01_00>(a, c);
        u[4 * i + 1] = _mm256_shuffle_ps::<0b11_10_11_10>(a, c);
        u[4 * i + 2] = _mm256_shuffle_ps::<0b01_00_01_00>(b, d);
        u[4 * i + 3] = _mm256_shuffle_ps::<0b11_10_11_10>(b, d);
    }
    // u[4i + m] lane L: column 4L + m of rows 4i..4i+4.
    let mut w = [_mm256_setzero_ps(); 8];
    for m in 0..4 {
        w[m] = _mm256_permute2f128_ps::<0x20>(u[m], u[4 + m]);
        w[4 + m] = _mm256_permute2f128_ps::<0x31>(u[m], u[4 + m]);
    }
    w
}

/// The 32 int8 codes of the Q8_0 block at `b`.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q8_codes(b: &[u8]) -> __m256i {
    let codes: &[u8; 32] = b[2..34].try_into().expect("a Q8_0 block");
    // SAFETY: `codes` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(codes.as_ptr().cast()) }
}

/// Query (or output) rows per pass of the Q8_0 kernels: they share each key block's loads.
const Q8_ROWS: usize = 4;

/// Query blocks kept in registers while the keys stream past; longer rows are done in chunks of
/// this many blocks, the later chunks adding to the scores.
const HOISTED_BLOCKS: usize = 4;

/// The sums of the 8 lanes of each of `acc[0..4]`, in that order.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn reduce_add_4(acc: &[__m256; Q8_ROWS]) -> __m128 {
    let h = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
    _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn qk_q8_avx2(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &mut [f32], ld: usize) {
    check_qk_q8(q8, rows, k, n, row_bytes, s, ld);
    let blocks = row_bytes / Q8_0_BLOCK_BYTES;
    let ones = _mm256_set1_epi16(1);
    for r0 in (0..rows).step_by(Q8_ROWS) {
        let mr = Q8_ROWS.min(rows - r0);
        for b0 in (0..blocks).step_by(HOISTED_BLOCKS) {
            let nb = HOISTED_BLOCKS.min(blocks - b0);
            // The query side of this chunk (codes and scales), loaded once for all n keys.
            let mut qv = [[(_mm256_setzero_si256(), _mm256_setzero_ps()); HOISTED_BLOCKS]; Q8_ROWS];
            for (i, qr) in qv.iter_mut().enumerate().take(mr) {
                for (t, x) in qr.iter_mut().enumerate().take(nb) {
                    let at = (r0 + i) * row_bytes + (b0 + t) * Q8_0_BLOCK_BYTES;
                    let qb = &q8[at..at + Q8_0_BLOCK_BYTES];
                    *x = (q8_codes(qb), broadcast_fp16([qb[0], qb[1]]));
                }
            }
            for j in 0..n {
                let mut acc = [_mm256_setzero_ps(); Q8_ROWS];
                for t in 0..nb {
                    let at = j * row_bytes + (b0 + t) * Q8_0_BLOCK_BYTES;
                    let kb = &k[at..at + Q8_0_BLOCK_BYTES];
                    let kv = q8_codes(kb);
                    let k_abs = _mm256_abs_epi8(kv);
                    let dk = broadcast_fp16([kb[0], kb[1]]);
                    for (a, qr) in acc.iter_mut().zip(&qv).take(mr) {
                        let (qc, dq) = qr[t];
                        // q with k's sign, so |k| * signed q = k * q in vpmaddubsw.
                        let dots = _mm256_madd_epi16(_mm256_maddubs_epi16(k_abs, _mm256_sign_epi8(qc, kv)), ones);
                        *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), _mm256_mul_ps(dq, dk), *a);
                    }
                }
                let mut sums = [0f32; Q8_ROWS];
                // SAFETY: `sums` is 4 writable floats; `storeu` has no alignment requirement.
                unsafe { _mm_storeu_ps(sums.as_mut_ptr(), reduce_add_4(&acc)) };
                for (i, x) in sums.iter().enumerate().take(mr) {
                    let y = &mut s[(r0 + i) * ld + j];
                    *y = if b0 == 0 { *x } else { *y + x };
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn pv_q8_avx2(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], row_bytes: usize, o: &mut [f32], dp: usize) {
    check_pv_q8(p, rows, ld, n, v, row_bytes, o, dp);
    let d_len = row_bytes / Q8_0_BLOCK_BYTES * 32;
    for r0 in (0..rows).step_by(Q8_ROWS) {
        let mr = Q8_ROWS.min(rows - r0);
        for c in (0..d_len).step_by(16) {
            let (b, half) = (c / 32, c % 32);
            let mut acc = [[_mm256_setzero_ps(); 2]; Q8_ROWS];
            for (i, a) in acc.iter_mut().enumerate().take(mr) {
                let at = (r0 + i) * dp + c;
                // SAFETY: columns c..c + 16 <= D <= dp of row r0 + i < rows (check_pv_q8).
                unsafe {
                    a[0] = _mm256_loadu_ps(o.as_ptr().add(at));
                    a[1] = _mm256_loadu_ps(o.as_ptr().add(at + 8));
                }
            }
            for j in 0..n {
                let at = j * row_bytes + b * Q8_0_BLOCK_BYTES;
                let vb: &[u8; Q8_0_BLOCK_BYTES] = v[at..at + Q8_0_BLOCK_BYTES].try_into().expect("a Q8_0 block");
                let d = broadcast_fp16([vb[0], vb[1]]);
                let lo = _mm256_mul_ps(_mm256_cvtepi32_ps(load_i8x8_as_i32(vb, 2 + half)), d);
                let hi = _mm256_mul_ps(_mm256_cvtepi32_ps(load_i8x8_as_i32(vb, 2 + half + 8)), d);
                for (i, a) in acc.iter_mut().enumerate().take(mr) {
                    let pj = _mm256_set1_ps(p[(r0 + i) * ld + j]);
                    a[0] = _mm256_fmadd_ps(pj, lo, a[0]);
                    a[1] = _mm256_fmadd_ps(pj, hi, a[1]);
                }
            }
            for (i, a) in acc.iter().enumerate().take(mr) {
                let at = (r0 + i) * dp + c;
                // SAFETY: as for the loads above.
                unsafe {
                    _mm256_storeu_ps(o.as_mut_ptr().add(at), a[0]);
                    _mm256_storeu_ps(o.as_mut_ptr().add(at + 8), a[1]);
                }
            }
        }
    }
}

/// Keys per block of `qk_f16_avx2` (2 query rows x 4 keys in 8 accumulators; their 4 scores per row
/// are reduced together).
const F16_KEYS: usize = 4;

/// 8 f16 values at `at`, widened.
///
/// # Safety
/// `at` must point to 8 readable f16 values.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
unsafe fn load_f16x8(at: *const u16) -> __m256 {
    // SAFETY: 16 readable bytes by the caller's contract; `loadu` has no alignment requirement.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(at.cast()) })
}

#[target_feature(enable = "avx2,fma,f16c")]
fn qk_f16_avx2(q: &[f32], rows: usize, d_len: usize, k: &[u8], n: usize, s: &mut [f32], ld: usize) {
    check_qk_f16(q, rows, d_len, k, n, s, ld);
    for r0 in (0..rows).step_by(2) {
        if rows - r0 >= 2 {
            qk_f16_rows::<2>(q, r0, d_len, k, n, s, ld);
        } else {
            qk_f16_rows::<1>(q, r0, d_len, k, n, s, ld);
        }
    }
}

/// Scores of query rows `r0..r0 + MR` against F16 keys `0..n`, 4 keys at a time (then 1).
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn qk_f16_rows<const MR: usize>(q: &[f32], r0: usize, d_len: usize, k: &[u8], n: usize, s: &mut [f32], ld: usize) {
    let q = &q[r0 * d_len..(r0 + MR) * d_len];
    let s = &mut s[r0 * ld..];
    let mut j = 0;
    while j + F16_KEYS <= n {
        qk_f16_block::<MR, F16_KEYS>(q, d_len, k, j, s, ld);
        j += F16_KEYS;
    }
    while j < n {
        qk_f16_block::<MR, 1>(q, d_len, k, j, s, ld);
        j += 1;
    }
}

/// Scores of the MR query rows of `q` against F16 keys `j..j + NJ` (`NJ` is 4 or 1) into columns
/// `j..j + NJ` of the rows of `s`: 8 head dimensions per step, the last `d_len % 8` in scalar.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let d8 = d_len / 8 * 8;
    let qp = q.as_ptr();
    let kp = k.as_ptr().cast::<u16>();
    let mut acc = [[_mm256_setzero_ps(); NJ]; MR];
    for c in (0..d8).step_by(8) {
        // SAFETY: keys j..j + NJ have d_len >= c + 8 f16 each in k and the MR query rows d_len
        // floats in q (asserted).
        unsafe {
            let kv: [__m256; NJ] = std::array::from_fn(|t| load_f16x8(kp.add((j + t) * d_len + c)));
            for (i, a) in acc.iter_mut().enumerate() {
                let qv = _mm256_loadu_ps(qp.add(i * d_len + c));
                for (x, kt) in a.iter_mut().zip(&kv) {
                    *x = _mm256_fmadd_ps(qv, *kt, *x);
                }
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        let qrow = &q[i * d_len..(i + 1) * d_len];
        let mut sums = [0f32; NJ];
        if let Ok(four) = <&[__m256; F16_KEYS]>::try_from(&a[..]) {
            let mut all = [0f32; F16_KEYS];
            // SAFETY: `all` is 4 writable floats; `storeu` has no alignment requirement.
            unsafe { _mm_storeu_ps(all.as_mut_ptr(), reduce_add_4(four)) };
            sums.copy_from_slice(&all[..NJ]);
        } else {
            sums[0] = hsum(a[0]);
        }
        for (t, sum) in sums.iter().enumerate() {
            let krow = &k[(j + t) * 2 * d_len..(j + t + 1) * 2 * d_len];
            let tail: f32 = (d8..d_len).map(|d| qrow[d] * f16_at(krow, d)).sum();
            s[i * ld + j + t] = sum + tail;
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
fn pv_f16_avx2(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], d_len: usize, o: &mut [f32], dp: usize) {
    check_pv_f16(p, rows, ld, n, v, d_len, o, dp);
    let d8 = d_len / 8 * 8;
    for r0 in (0..rows).step_by(4) {
        let mut c = 0;
        while c < d8 {
            let two = c + 16 <= d8;
            match ((rows - r0).min(4), two) {
                (1, true) => pv_f16_block::<1, 2>(p, r0, ld, n, v, d_len, o, dp, c),
                (2, true) => pv_f16_block::<2, 2>(p, r0, ld, n, v, d_len, o, dp, c),
                (3, true) => pv_f16_block::<3, 2>(p, r0, ld, n, v, d_len, o, dp, c),
                (_, true) => pv_f16_block::<4, 2>(p, r0, ld, n, v, d_len, o, dp, c),
                (1, false) => pv_f16_block::<1, 1>(p, r0, ld, n, v, d_len, o, dp, c),
                (2, false) => pv_f16_block::<2, 1>(p, r0, ld, n, v, d_len, o, dp, c),
                (3, false) => pv_f16_block::<3, 1>(p, r0, ld, n, v, d_len, o, dp, c),
                (_, false) => pv_f16_block::<4, 1>(p, r0, ld, n, v, d_len, o, dp, c),
            }
            c += if two { 16 } else { 8 };
        }
    }
    // The last d_len % 8 columns.
    for r in 0..rows {
        for j in 0..n {
            let pj = p[r * ld + j];
            let vrow = &v[j * 2 * d_len..(j + 1) * 2 * d_len];
            for col in d8..d_len {
                o[r * dp + col] += pj * f16_at(vrow, col);
            }
        }
    }
}

/// Columns `c..c + 8·NV` (`<= d_len`) of output rows `r0..r0 + MR` += P·V for F16 values, each
/// key's chunk widened once for the MR rows.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
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
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    for (i, a) in acc.iter_mut().enumerate() {
        for (t, x) in a.iter_mut().enumerate() {
            // SAFETY: c + 8·NV <= d_len <= dp, row r0 + i < rows of o (check_pv_f16).
            *x = unsafe { _mm256_loadu_ps(op.add(i * dp + c + 8 * t)) };
        }
    }
    for j in 0..n {
        // SAFETY: key j < n has d_len >= c + 8·NV f16 in v (check_pv_f16).
        let vv: [__m256; NV] = std::array::from_fn(|t| unsafe { load_f16x8(vp.add(j * d_len + c + 8 * t)) });
        for (i, a) in acc.iter_mut().enumerate() {
            // SAFETY: row r0 + i < rows of p has ld >= n entries.
            let pj = unsafe { _mm256_broadcast_ss(&*pp.add(i * ld + j)) };
            for (x, vt) in a.iter_mut().zip(&vv) {
                *x = _mm256_fmadd_ps(pj, *vt, *x);
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        for (t, x) in a.iter().enumerate() {
            // SAFETY: as for the loads above.
            unsafe { _mm256_storeu_ps(op.add(i * dp + c + 8 * t), *x) };
        }
    }
}
