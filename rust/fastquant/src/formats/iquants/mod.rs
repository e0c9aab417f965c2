//! The I-quants: non-linear and lattice ("importance") quantization types.
//!
//! IQ4_NL / IQ4_XS are written and read ([`iq4`]); the lattice types IQ1_S..IQ3_S are read only
//! ([`iq1`], [`iq2`], [`iq3`], with grids measured from ggml in [`grids`]). The helpers the I-quant
//! quantizers share with the K-quants (`nearest_int`) live in `kquants::search`.

pub mod grids;
pub mod iq1;
pub mod iq2;
pub mod iq3;
pub mod iq4;

pub use iq4::{BlockIq4Nl, BlockIq4Xs};
