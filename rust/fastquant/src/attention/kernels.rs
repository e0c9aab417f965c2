//! The scalar reference of the attention tile kernels ([`TileKernels`]): plain loops in the order
//! the definitions read. The SIMD versions must agree with these up to float reassociation (and
//! their exp/tanh approximations, within a few ulp).

use super::TileKernels;
use crate::simd::Level;

pub const SCALAR: TileKernels = TileKernels {
    level: Level::Scalar,
    qk: qk_scalar,
    pv: pv_scalar,
    max: max_scalar,
    exp_sum: exp_sum_scalar,
    softcap: softcap_scalar,
    scale: scale_scalar,
    transpose: transpose_scalar,
};

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
