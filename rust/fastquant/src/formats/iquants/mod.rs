//! The I-quants: non-linear and lattice ("importance") quantization types.
//!
//! IQ4_NL / IQ4_XS are written and read ([`iq4`]); the lattice types IQ1_S..IQ3_S are read only
//! ([`iq1`], [`iq2`], [`iq3`], with grids measured from ggml in [`grids`]). The helpers below are
//! the pieces of `ggml-quants.c` that the I-quant quantizers share.

pub mod grids;
pub mod iq1;
pub mod iq2;
pub mod iq3;
pub mod iq4;

pub use iq4::{BlockIq4Nl, BlockIq4Xs};

/// ggml's `nearest_int`: add 1.5 * 2^23 so the FPU rounds to an integer (round half to even), then
/// read the integer back from the mantissa bits. Exact for |x| < 2^22; outside that range (and for
/// NaN/Inf) ggml's value is whatever the bit trick gives, and so is ours: do not replace it with
/// `round_ties_even() as i32`, which saturates instead.
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

#[cfg(test)]
mod tests {
    use super::nearest_int;

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
