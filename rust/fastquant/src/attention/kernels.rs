//! The scalar reference of the attention tile kernels ([`TileKernels`]): plain loops in the order
//! the definitions read. The SIMD versions must agree with these up to float reassociation (and
//! their exp/tanh approximations, within a few ulp).

use super::TileKernels;
use crate::formats::float::fp16_to_fp32;
use crate::simd::Level;

/// The scalar tile kernels: the reference every SIMD level is tested against.
pub const SCALAR: TileKernels = TileKernels {
    level: Level::Scalar,
    qk: qk_scalar,
    pv: pv_scalar,
    max: max_scalar,
    exp_sum: exp_sum_scalar,
    softcap: softcap_scalar,
    scale: scale_scalar,
    transpose: transpose_scalar,
    qk_q8: qk_q8_scalar,
    pv_q8: pv_q8_scalar,
    qk_f16: qk_f16_scalar,
    pv_f16: pv_f16_scalar,
};

/// Bytes of one Q8_0 block: f16 scale, 32 int8 codes.
pub const Q8_0_BLOCK_BYTES: usize = 34;

/// The scale of the Q8_0 block at `b` (its first two bytes, little-endian f16).
#[inline]
pub fn q8_0_scale(b: &[u8]) -> f32 {
    fp16_to_fp32(u16::from_le_bytes([b[0], b[1]]))
}

/// Asserts the sizes every `qk_q8` kernel relies on.
pub fn check_qk_q8(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &[f32], ld: usize) {
    assert!(row_bytes.is_multiple_of(Q8_0_BLOCK_BYTES), "Q8_0 row of {row_bytes} bytes");
    assert!(n <= ld && q8.len() >= rows * row_bytes && k.len() >= n * row_bytes, "qk_q8 tile sizes");
    assert!(rows == 0 || s.len() >= (rows - 1) * ld + n, "qk_q8 score sizes");
}

/// Asserts the sizes every `pv_q8` kernel relies on.
#[allow(clippy::too_many_arguments)]
pub fn check_pv_q8(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], row_bytes: usize, o: &[f32], dp: usize) {
    assert!(row_bytes.is_multiple_of(Q8_0_BLOCK_BYTES), "Q8_0 row of {row_bytes} bytes");
    let d_len = row_bytes / Q8_0_BLOCK_BYTES * 32;
    assert!(d_len <= dp && n <= ld, "pv_q8 widths");
    assert!(p.len() >= rows * ld && v.len() >= n * row_bytes && o.len() >= rows * dp, "pv_q8 tile sizes");
}

fn qk_q8_scalar(q8: &[u8], rows: usize, k: &[u8], n: usize, row_bytes: usize, s: &mut [f32], ld: usize) {
    check_qk_q8(q8, rows, k, n, row_bytes, s, ld);
    for r in 0..rows {
        let qrow = &q8[r * row_bytes..(r + 1) * row_bytes];
        for j in 0..n {
            let krow = &k[j * row_bytes..(j + 1) * row_bytes];
            let mut sum = 0f32;
            for (qb, kb) in qrow.chunks_exact(Q8_0_BLOCK_BYTES).zip(krow.chunks_exact(Q8_0_BLOCK_BYTES)) {
                let dot: i32 = qb[2..].iter().zip(&kb[2..]).map(|(&a, &b)| a as i8 as i32 * b as i8 as i32).sum();
                sum += dot as f32 * (q8_0_scale(qb) * q8_0_scale(kb));
            }
            s[r * ld + j] = sum;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pv_q8_scalar(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], row_bytes: usize, o: &mut [f32], dp: usize) {
    check_pv_q8(p, rows, ld, n, v, row_bytes, o, dp);
    for r in 0..rows {
        let orow = &mut o[r * dp..(r + 1) * dp];
        for j in 0..n {
            let pj = p[r * ld + j];
            let vrow = &v[j * row_bytes..(j + 1) * row_bytes];
            for (ob, vb) in orow.chunks_exact_mut(32).zip(vrow.chunks_exact(Q8_0_BLOCK_BYTES)) {
                let d = q8_0_scale(vb);
                for (oc, &c) in ob.iter_mut().zip(&vb[2..]) {
                    *oc += pj * (d * c as i8 as f32);
                }
            }
        }
    }
}

/// Asserts the sizes every `qk_f16` kernel relies on.
pub fn check_qk_f16(q: &[f32], rows: usize, d_len: usize, k: &[u8], n: usize, s: &[f32], ld: usize) {
    assert!(n <= ld && q.len() >= rows * d_len && k.len() >= n * 2 * d_len, "qk_f16 tile sizes");
    assert!(rows == 0 || s.len() >= (rows - 1) * ld + n, "qk_f16 score sizes");
}

/// Asserts the sizes every `pv_f16` kernel relies on.
#[allow(clippy::too_many_arguments)]
pub fn check_pv_f16(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], d_len: usize, o: &[f32], dp: usize) {
    assert!(dp.is_multiple_of(16) && d_len <= dp && n <= ld, "pv_f16 widths");
    assert!(p.len() >= rows * ld && v.len() >= n * 2 * d_len && o.len() >= rows * dp, "pv_f16 tile sizes");
}

/// Element `i` of a row of little-endian f16 values, as f32.
#[inline]
pub fn f16_at(row: &[u8], i: usize) -> f32 {
    fp16_to_fp32(u16::from_le_bytes([row[2 * i], row[2 * i + 1]]))
}

fn qk_f16_scalar(q: &[f32], rows: usize, d_len: usize, k: &[u8], n: usize, s: &mut [f32], ld: usize) {
    check_qk_f16(q, rows, d_len, k, n, s, ld);
    for r in 0..rows {
        let qrow = &q[r * d_len..(r + 1) * d_len];
        for j in 0..n {
            let krow = &k[j * 2 * d_len..(j + 1) * 2 * d_len];
            s[r * ld + j] = qrow.iter().enumerate().map(|(d, qv)| qv * f16_at(krow, d)).sum();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pv_f16_scalar(p: &[f32], rows: usize, ld: usize, n: usize, v: &[u8], d_len: usize, o: &mut [f32], dp: usize) {
    check_pv_f16(p, rows, ld, n, v, d_len, o, dp);
    for r in 0..rows {
        let orow = &mut o[r * dp..r * dp + d_len];
        for j in 0..n {
            let pj = p[r * ld + j];
            let vrow = &v[j * 2 * d_len..(j + 1) * 2 * d_len];
            for (c, oc) in orow.iter_mut().enumerate() {
                *oc += pj * f16_at(vrow, c);
            }
        }
    }
}

/// Asserts the sizes every `qk` kernel relies on.
pub fn check_qk(q: &[f32], rows: usize, d_len: usize, kt: &[f32], ld: usize, s: &[f32]) {
    assert!(ld.is_multiple_of(16), "key tile width {ld} is not a multiple of 16");
    assert!(q.len() >= rows * d_len && kt.len() >= d_len * ld && s.len() >= rows * ld, "qk tile sizes");
}

/// Asserts the sizes every `pv` kernel relies on.
pub fn check_pv(p: &[f32], rows: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &[f32]) {
    assert!(dp.is_multiple_of(16), "padded head dimension {dp} is not a multiple of 16");
    assert!(n <= ld && p.len() >= rows * ld && v.len() >= n * dp && o.len() >= rows * dp, "pv tile sizes");
}

fn qk_scalar(q: &[f32], rows: usize, d_len: usize, kt: &[f32], ld: usize, s: &mut [f32]) {
    check_qk(q, rows, d_len, kt, ld, s);
    for r in 0..rows {
        let srow = &mut s[r * ld..(r + 1) * ld];
        srow.fill(0.0);
        for d in 0..d_len {
            let qv = q[r * d_len + d];
            for (sj, kj) in srow.iter_mut().zip(&kt[d * ld..(d + 1) * ld]) {
                *sj += qv * kj;
            }
        }
    }
}

fn pv_scalar(p: &[f32], rows: usize, ld: usize, n: usize, v: &[f32], dp: usize, o: &mut [f32]) {
    check_pv(p, rows, ld, n, v, dp, o);
    for r in 0..rows {
        let orow = &mut o[r * dp..(r + 1) * dp];
        for j in 0..n {
            let pj = p[r * ld + j];
            for (oc, vc) in orow.iter_mut().zip(&v[j * dp..(j + 1) * dp]) {
                *oc += pj * vc;
            }
        }
    }
}

fn max_scalar(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

fn exp_sum_scalar(x: &mut [f32], m: f32) -> f32 {
    let mut sum = 0.0;
    for v in x {
        *v = (*v - m).exp();
        sum += *v;
    }
    sum
}

fn softcap_scalar(x: &mut [f32], cap: f32) {
    for v in x {
        *v = cap * (*v / cap).tanh();
    }
}

fn scale_scalar(x: &mut [f32], a: f32) {
    for v in x {
        *v *= a;
    }
}

/// Asserts the sizes every `transpose` kernel relies on.
pub fn check_transpose(k: &[f32], n: usize, d_len: usize, kt: &[f32], ld: usize) {
    assert!(n <= ld && k.len() >= n * d_len && kt.len() >= d_len * ld, "transpose tile sizes");
}

/// The part of a transpose that SIMD blocks left over: every key `j < n_full` from column
/// `d_full` on, and every key from `n_full` on (the scalar reference is the case with no blocks).
pub fn transpose_edges(k: &[f32], n: usize, d_len: usize, kt: &mut [f32], ld: usize, n_full: usize, d_full: usize) {
    check_transpose(k, n, d_len, kt, ld);
    for j in 0..n {
        let d_from = if j < n_full { d_full } else { 0 };
        for d in d_from..d_len {
            kt[d * ld + j] = k[j * d_len + d];
        }
    }
}

fn transpose_scalar(k: &[f32], n: usize, d_len: usize, kt: &mut [f32], ld: usize) {
    transpose_edges(k, n, d_len, kt, ld, 0, 0);
}
