//! Activation rows in the form the dot kernels take: quantized to the weight's paired 8-bit type
//! with the crate's own quantizer at the matmul's level (so every level sees the same codes), or
//! the f32 rows themselves for float weights.

use std::borrow::Cow;

use crate::codec::{quantize, FloatSlice, QuantizeOptions};
use crate::error::{Error, Result};
use crate::simd::{self, Level};
use crate::types::QuantType;

/// `rows` rows of `k` floats in `act_type`: `(bytes, bytes per row)`. Non-finite input is an error
/// naming the first bad element (its codes would be meaningless; ggml would return NaN).
pub fn prepare_activations(act_type: QuantType, x: &[f32], k: usize, level: Level) -> Result<(Cow<'_, [u8]>, usize)> {
    if act_type == QuantType::F32 {
        if simd::has_non_finite(level, x) {
            let index = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(Error::NonFinite { index, value: x[index] });
        }
        return Ok((Cow::Borrowed(bytemuck::cast_slice(x)), 4 * k));
    }
    let row_bytes = act_type.row_bytes(k)?;
    let rows = x.len().checked_div(k).unwrap_or(0);
    let mut q = vec![0u8; rows.checked_mul(row_bytes).ok_or(Error::TooLarge(x.len()))?];
    let options = QuantizeOptions { check_finite: true, imatrix: None, level: Some(level) };
    quantize(act_type, FloatSlice::F32(x), k, &mut q, &options)?;
    Ok((Cow::Owned(q), row_bytes))
}
