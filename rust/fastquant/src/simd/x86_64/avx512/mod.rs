//! Avx512 kernels. Same file stems as `formats/`: `legacy.rs` for Q4_0..Q8_1, `float.rs` for
//! F16/BF16.

use crate::simd::IsaKernels;
use crate::types::QuantType;

use super::Avx512;

/// The Avx512 kernels for `qtype`; fields left `None` fall back to the next lower level.
pub fn kernels(_token: Avx512, qtype: QuantType) -> IsaKernels {
    let _ = qtype;
    IsaKernels::default()
}
