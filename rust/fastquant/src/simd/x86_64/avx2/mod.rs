//! Avx2 kernels. Same file stems as `formats/`: `legacy.rs` for Q4_0..Q8_1, `float.rs` for
//! F16/BF16.

use crate::simd::IsaKernels;
use crate::types::QuantType;

use super::Avx2;

/// The Avx2 kernels for `qtype`; fields left `None` fall back to the next lower level.
pub fn kernels(_token: Avx2, qtype: QuantType) -> IsaKernels {
    let _ = qtype;
    IsaKernels::default()
}
