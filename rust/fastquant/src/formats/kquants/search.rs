//! ggml's shared scale searches for the K-quants and the importance-weighted legacy quantizers.
//!
//! Faithful ports of the static helpers at the top of ggml's "2-6 bit quantization in super-blocks"
//! section of `ggml-quants.c`, with ggml's names. What makes them byte-exact:
//!
//! * every float expression keeps ggml's evaluation order: `w*x[i]*l` is `(w*x)*l`, sums
//!   accumulate left to right, no FMA (ggml-base on x86 is built without it);
//! * an `int` in a float expression is converted to f32 first (`w*l*l` is `(w*(float)l)*(float)l`);
//! * comparisons are written so that NaN takes the same branch as in C (`if (x < min)` never
//!   updates on NaN; `MAX(a, b)` is `a > b ? a : b`; `suml2 ? .. : ..` is true for NaN);
//! * [`nearest_int`] is ggml's magic-number bit trick, not a rounding function, so values outside
//!   its intended range (|x| > 2^22, inf, NaN) give ggml's (garbage but deterministic) results;
//! * stores into `int8_t` / `uint8_t` arrays wrap like C integer conversions (`as i8` / `as u8`).
//!
//! C's out-parameters (`the_min`) are returned in tuples; the `L` output arrays stay `&mut` slices,
//! and `n` is the length of `x`. The `Laux` scratch buffer of `make_qkx2_quants` /
//! `make_qkx3_quants` is internal here (it carries no state between calls).

// Loops index by element like ggml's C so each line can be checked against the reference.
#![allow(clippy::needless_range_loop)]

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is treated as all zero.
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// Largest group any helper here accepts (the `Laux` scratch size); ggml's groups are 16 or 32.
const MAX_GROUP: usize = 256;

/// ggml's `nearest_int`: adds 1.5 * 2^23 so the FPU's round-to-nearest-even puts the integer in the
/// low mantissa bits, then reads them back. Exact (ties to even) for |x| < 2^22; outside that
/// range, and for inf/NaN, it returns whatever the bits say, as ggml does.
#[inline(always)]
pub fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

/// C's `MAX(a, b)` macro for floats: `a > b ? a : b` (so a NaN `b` wins, a NaN `a` loses).
#[inline(always)]
pub fn c_max(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// C's `MIN(a, b)` macro for floats: `a < b ? a : b`.
#[inline(always)]
pub fn c_min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// The element of largest magnitude and that magnitude, as ggml's `if (ax > amax) { amax = ax;
/// max = x[i]; }` loop finds them (first one on ties, NaN never taken; (0, 0) for an all-NaN group).
#[inline(always)]
fn signed_max(x: &[f32]) -> (f32, f32) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (max, amax)
}

/// ggml's `make_qx_quants`: symmetric quantization of `x` to `L[i] = l + nmax` with `l` in
/// `-nmax..nmax`, returning the scale (`x ~ scale * l`).
///
/// `rmse_type` 0 is plain rounding with `scale = max / -nmax`; otherwise a least-squares fit with
/// weights `qw` (or, without `qw`, x^2 / 1 / |x| / sqrt|x| for rmse_type 1 / 2 / 3 / other), and for
/// a positive `rmse_type` a search over 18 nearby inverse scales. A negative `rmse_type` returns
/// early with the mean of the fitted and the plain scale.
pub fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8], rmse_type: i32, qw: Option<&[f32]>) -> f32 {
    let n = x.len();
    assert!(l_out.len() >= n && qw.is_none_or(|w| w.len() >= n));
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for i in 0..n {
            let l = nearest_int(iscale * x[i]);
            l_out[i] = (nmax + (-nmax).max(l.min(nmax - 1))) as i8;
        }
        return 1.0 / iscale;
    }
    let mut rmse_type = rmse_type;
    let mut return_early = false;
    if rmse_type < 0 {
        rmse_type = -rmse_type;
        return_early = true;
    }
    let weight = |i: usize| -> f32 {
        match qw {
            Some(qw) => qw[i],
            None => match rmse_type {
                1 => x[i] * x[i],
                2 => 1.0,
                3 => x[i].abs(),
                _ => x[i].abs().sqrt(),
            },
        }
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = (-nmax).max(nearest_int(iscale * x[i]).min(nmax - 1));
        l_out[i] = (l + nmax) as i8;
        let w = weight(i);
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    // `suml2 ? a : b` in C: NaN counts as true.
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 { 0.5 * (scale + 1.0 / iscale) } else { 1.0 / iscale };
    }
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let l = (-nmax).max(nearest_int(iscale * x[i]).min(nmax - 1));
            let w = weight(i);
            let lf = l as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]);
                l_out[i] = (nmax + (-nmax).max(l.min(nmax - 1))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants`: symmetric quantization to `L[i] = l + nmax`, `l` in `-nmax..nmax`, with
/// (if `do_rmse`) up to 5 rounds of coordinate descent on the x^2-weighted error. Returns the scale.
pub fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8], do_rmse: bool) -> f32 {
    let n = x.len();
    assert!(l_out.len() >= n);
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for i in 0..n {
            let l = (-nmax).max(nearest_int(iscale * x[i]).min(nmax - 1));
            l_out[i] = l as i8;
            let w = x[i] * x[i];
            let lf = l as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        for _itry in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l_out[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = (-nmax).max(nearest_int(x[i] * sl2 / slx).min(nmax - 1));
                    if new_l != l_out[i] as i32 {
                        let nf = new_l as f32;
                        slx += w * x[i] * nf;
                        sl2 += w * nf * nf;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l_out[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for i in 0..n {
            l_out[i] = l_out[i].wrapping_add(nmax as i8);
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for i in 0..n {
        let l = (-nmax).max(nearest_int(iscale * x[i]).min(nmax - 1));
        l_out[i] = (l + nmax) as i8;
    }
    1.0 / iscale
}

/// The shared body of [`make_qkx2_quants`] and [`make_qkx3_quants`]; `qkx3` selects the latter's
/// two differences (the empty-range test is `max <= min` instead of `max == min`, and weights
/// default to x^2).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn make_qkx_quants(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
    qkx3: bool,
) -> (f32, f32) {
    let n = x.len();
    assert!((1..=MAX_GROUP).contains(&n) && l_out.len() >= n && weights.is_none_or(|w| w.len() >= n));
    let weight = |i: usize| -> f32 {
        match weights {
            Some(w) => w[i],
            None => x[i] * x[i],
        }
    };
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weight(0);
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weight(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    let empty = if qkx3 { max <= min } else { max == min };
    if empty {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = 0.max(l.min(nmax)) as u8;
        let diff = scale * l_out[i] as f32 + min - x[i];
        best_error += weight(i) * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; MAX_GROUP];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let l = 0.max(nearest_int(iscale * (x[i] - min)).min(nmax));
            laux[i] = l as u8;
            let w = weight(i);
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weight(i) * err(diff);
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qkx2_quants`: asymmetric quantization `x ~ scale * L - the_min`, `L` in
/// `0..=nmax`, searching `nstep + 1` inverse scales `(rmin + rdelta*is + nmax) / (max - min)` for
/// the least weighted squared (or, with `use_mad`, absolute) error. Returns `(scale, the_min)`;
/// `the_min >= 0` is the negated minimum.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    make_qkx_quants(nmax, x, Some(weights), l_out, rmin, rdelta, nstep, use_mad, false)
}

/// ggml's `make_qkx3_quants`: [`make_qkx2_quants`] with optional weights (x^2 when `None`) and an
/// empty-range test of `max <= min`. Returns `(scale, the_min)`.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx3_quants(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    make_qkx_quants(nmax, x, weights, l_out, rmin, rdelta, nstep, use_mad, true)
}

/// ggml's `make_qp_quants`: quantization of non-negative values (sub-block scales or mins) to
/// `L` in `0..=nmax` with weights `quant_weights`: 8 nearby inverse scales tried, then up to 5
/// rounds of coordinate descent. Returns the scale.
pub fn make_qp_quants(nmax: i32, x: &[f32], l_out: &mut [u8], quant_weights: &[f32]) -> f32 {
    let n = x.len();
    assert!(l_out.len() >= n && quant_weights.len() >= n);
    let mut max = 0.0f32;
    for i in 0..n {
        max = c_max(max, x[i]);
    }
    if max < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for i in 0..n {
        // Stored in a uint8_t: C's int -> uint8_t conversion keeps the low byte.
        l_out[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * l_out[i] as f32;
        best_mse += quant_weights[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += quant_weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).min(nmax);
        l_out[i] = l as u8;
        let w = quant_weights[i];
        // The sums use the int `l`, not the byte stored in L.
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    for _itry in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = quant_weights[i];
            let li = l_out[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l_out[i] as i32 {
                    let nf = new_l as f32;
                    slx += w * x[i] * nf;
                    sl2 += w * nf * nf;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and 6-bit min of sub-block `j` (0..8) from the 12
/// packed bytes of a Q4_K / Q5_K block. Sub-blocks 0..4 keep theirs in the low 6 bits of bytes
/// `j` and `j + 4`; sub-blocks 4..8 keep the low 4 bits in the nibbles of byte `j + 4` and the top 2
/// bits in the spare top bits of bytes `j - 4` (scale) and `j` (min).
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        let d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        (d, m)
    }
}

/// The inverse of [`get_scale_min_k4`], as ggml's Q4_K / Q5_K quantizers pack it: 8 scales and 8
/// mins (each `<= 63`) into 12 bytes. Sub-blocks 0..4 are stored first so that 4..8 can OR their
/// top bits into the same bytes.
pub fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
            q[j - 4] |= (ls[j] >> 4) << 6;
            q[j] |= (lm[j] >> 4) << 6;
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so the tests need no dependency.
    fn data(seed: u32, n: usize, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    #[test]
    fn nearest_int_rounds_half_to_even_in_range() {
        for &(x, want) in &[(0.5f32, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (3.49, 3), (-7.51, -8)] {
            assert_eq!(nearest_int(x), want, "{x}");
        }
        for i in -4_194_303i32..=4_194_303 {
            if i % 997 == 0 {
                assert_eq!(nearest_int(i as f32), i);
                assert_eq!(nearest_int(i as f32 + 0.25), i);
            }
        }
        // Out of range it is deterministic garbage, not saturation: 2^23 + 1.5*2^23 = 1.25*2^24,
        // whose mantissa bits are 0x200000.
        assert_eq!(nearest_int(8_388_608.0), -2_097_152);
    }

    #[test]
    fn make_qx_quants_codes_in_range_and_zero_groups() {
        for seed in 1..50 {
            let x = data(seed, 32, 10.0);
            for &(nmax, rmse) in &[(8, 1), (16, 1), (4, 1), (32, 1), (8, 0), (8, -2), (8, 3), (8, 4)] {
                let mut l = [0i8; 32];
                let scale = make_qx_quants(nmax, &x, &mut l, rmse, None);
                assert!(scale.is_finite());
                assert!(l.iter().all(|&v| (0..2 * nmax).contains(&(v as i32))));
                // the fitted scale reconstructs x to well within one step
                let err: f32 = x.iter().zip(&l).map(|(&x, &q)| (x - scale * (q as i32 - nmax) as f32).abs()).sum();
                assert!(err / 32.0 < scale.abs() * 1.5, "{err} {scale}");
            }
        }
        let mut l = [5i8; 16];
        assert_eq!(make_qx_quants(8, &[0.0; 16], &mut l, 1, None), 0.0);
        assert_eq!(l, [0; 16]);
        assert_eq!(make_q3_quants(4, &[1e-16; 16], &mut l, true), 0.0);
        assert_eq!(l, [0; 16]);
    }

    #[test]
    fn make_q3_quants_codes_in_range() {
        for seed in 1..50 {
            let x = data(seed, 16, 3.0);
            for do_rmse in [false, true] {
                let mut l = [0i8; 16];
                let s = make_q3_quants(4, &x, &mut l, do_rmse);
                assert!(s.is_finite());
                assert!(l.iter().all(|&v| (0..8).contains(&v)));
            }
        }
    }

    #[test]
    fn make_qkx_quants_search_never_worse_than_plain_rounding() {
        for seed in 1..50 {
            let x = data(seed, 32, 4.0);
            let w: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
            let err = |scale: f32, the_min: f32, l: &[u8]| -> f32 {
                x.iter().zip(l).zip(&w).map(|((&x, &q), &w)| w * (scale * q as f32 - the_min - x).powi(2)).sum()
            };
            let mut l0 = [0u8; 32];
            let (s0, m0) = make_qkx2_quants(15, &x, &w, &mut l0, -1.0, 0.1, 0, false);
            let mut l1 = [0u8; 32];
            let (s1, m1) = make_qkx2_quants(15, &x, &w, &mut l1, -1.0, 0.1, 20, false);
            assert!(m0 >= 0.0 && m1 >= 0.0 && s1 > 0.0);
            assert!(l1.iter().all(|&v| v <= 15));
            assert!(err(s1, m1, &l1) <= err(s0, m0, &l0) * 1.0001);
            let mut l2 = [0u8; 32];
            let (s2, m2) = make_qkx3_quants(15, &x, Some(&w), &mut l2, -1.0, 0.1, 20, false);
            assert_eq!((s1.to_bits(), m1.to_bits(), l1), (s2.to_bits(), m2.to_bits(), l2));
        }
        // constant positive group: min is clamped to 0, range is not empty
        let mut l = [9u8; 16];
        let (s, m) = make_qkx2_quants(3, &[2.0; 16], &[1.0; 16], &mut l, -0.5, 0.1, 15, true);
        assert!(s > 0.0 && m == 0.0 && l.iter().all(|&v| v == 3));
        // all zero: empty range
        let (s, m) = make_qkx3_quants(3, &[0.0; 16], None, &mut l, -0.9, 0.05, 36, false);
        assert_eq!((s, m, l), (0.0, 0.0, [0; 16]));
    }

    #[test]
    fn make_qp_quants_codes_in_range() {
        for seed in 1..50 {
            let x: Vec<f32> = data(seed, 16, 2.0).iter().map(|v| v.abs()).collect();
            let w = data(seed + 100, 16, 1.0).iter().map(|v| v.abs() + 0.01).collect::<Vec<_>>();
            let mut l = [0u8; 16];
            let s = make_qp_quants(15, &x, &mut l, &w);
            assert!(s > 0.0 && l.iter().all(|&v| v <= 15));
        }
        let mut l = [1u8; 8];
        assert_eq!(make_qp_quants(63, &[0.0; 8], &mut l, &[1.0; 8]), 0.0);
        assert_eq!(l, [0; 8]);
    }

    #[test]
    fn scale_min_k4_packing_round_trips() {
        for seed in 0..200u32 {
            let r = data(seed + 1, 16, 2.0);
            let ls: [u8; 8] = std::array::from_fn(|i| ((r[i] + 1.0) * 31.9) as u8 & 63);
            let lm: [u8; 8] = std::array::from_fn(|i| ((r[8 + i] + 1.0) * 31.9) as u8 & 63);
            let q = pack_scale_min_k4(&ls, &lm);
            for j in 0..8 {
                assert_eq!(get_scale_min_k4(j, &q), (ls[j], lm[j]));
            }
        }
        let q = pack_scale_min_k4(&[63; 8], &[63; 8]);
        assert_eq!(q, [0xff; 12]);
    }

    #[test]
    fn nearest_int_rounds_half_to_even_and_wraps_like_the_bit_trick() {
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(3.5), 4);
        assert_eq!(nearest_int(-2.5), -2);
        assert_eq!(nearest_int(-0.4), 0);
        assert_eq!(nearest_int(4_194_303.0), 4_194_303);
        // Out of range: 2^23 + 1.5*2^23 = 1.25 * 2^24, mantissa field 2^21.
        assert_eq!(nearest_int(8_388_608.0), 0x0020_0000 - 0x0040_0000);
        // NaN + c is NaN, 0x7fc00000: mantissa field 0x400000.
        assert_eq!(nearest_int(f32::NAN), 0);
        assert_eq!(nearest_int(f32::INFINITY), -0x0040_0000);
    }
}
