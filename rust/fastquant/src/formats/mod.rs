//! Block formats: layouts and the scalar reference codecs.
//!
//! Every quantized format is a `#[repr(C)]` block struct implementing [`BlockFormat`], in one file
//! per family. The scalar functions here are the specification (ports of ggml's reference code);
//! `simd` holds faster kernels that must give the same bytes. [`scalar_codec`] is the one place
//! that maps a [`QuantType`] to its scalar code.

pub mod float;
pub mod legacy;

use bytemuck::{Pod, Zeroable};

use crate::types::QuantType;

/// One ggml block format: its layout (the implementing struct, alignment 1 so it can be viewed in
/// any byte buffer) and its scalar reference codec.
pub trait BlockFormat: Pod + Zeroable {
    /// The ggml type this block encodes.
    const TYPE: QuantType;
    /// Elements per block.
    const ELEMS: usize;

    /// Encodes `x` (exactly `ELEMS` values) into `y`, as ggml's reference quantizer does.
    fn quantize_block(x: &[f32], y: &mut Self);

    /// Decodes the block into `y` (exactly `ELEMS` values), as ggml's `dequantize_row_*` does.
    fn dequantize_block(&self, y: &mut [f32]);
}

/// Quantizes whole blocks of `src` into `dst` with the scalar reference.
///
/// `src.len()` must be a multiple of `B::ELEMS` and `dst` exactly the matching number of bytes;
/// callers check this (the public API returns errors; this is an internal invariant).
pub fn quantize_row_ref<B: BlockFormat>(src: &[f32], dst: &mut [u8]) {
    let blocks: &mut [B] = bytemuck::cast_slice_mut(dst);
    assert_eq!(blocks.len() * B::ELEMS, src.len());
    for (x, y) in src.chunks_exact(B::ELEMS).zip(blocks.iter_mut()) {
        B::quantize_block(x, y);
    }
}

/// Dequantizes whole blocks of `src` into `dst` with the scalar reference.
pub fn dequantize_row_ref<B: BlockFormat>(src: &[u8], dst: &mut [f32]) {
    let blocks: &[B] = bytemuck::cast_slice(src);
    assert_eq!(blocks.len() * B::ELEMS, dst.len());
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(B::ELEMS)) {
        b.dequantize_block(y);
    }
}

/// Encodes whole blocks: `src.len()` is a multiple of the block size, `dst` holds exactly the bytes.
pub type QuantizeFn = fn(&[f32], &mut [u8]);
/// Decodes whole blocks: the inverse shape of [`QuantizeFn`].
pub type DequantizeFn = fn(&[u8], &mut [f32]);

/// The scalar reference codec of a type, or `None` for a type without one here yet.
///
/// This and the SIMD tables are the only switches on the type.
pub fn scalar_codec(qtype: QuantType) -> Option<(QuantizeFn, DequantizeFn)> {
    use legacy::*;
    Some(match qtype {
        QuantType::F32 => (float::quantize_row_f32, float::dequantize_row_f32),
        QuantType::F16 => (float::quantize_row_f16, float::dequantize_row_f16),
        QuantType::BF16 => (float::quantize_row_bf16, float::dequantize_row_bf16),
        QuantType::Q4_0 => (quantize_row_ref::<BlockQ4_0>, dequantize_row_ref::<BlockQ4_0>),
        QuantType::Q4_1 => (quantize_row_ref::<BlockQ4_1>, dequantize_row_ref::<BlockQ4_1>),
        QuantType::Q5_0 => (quantize_row_ref::<BlockQ5_0>, dequantize_row_ref::<BlockQ5_0>),
        QuantType::Q5_1 => (quantize_row_ref::<BlockQ5_1>, dequantize_row_ref::<BlockQ5_1>),
        QuantType::Q8_0 => (quantize_row_ref::<BlockQ8_0>, dequantize_row_ref::<BlockQ8_0>),
        QuantType::Q8_1 => (quantize_row_ref::<BlockQ8_1>, dequantize_row_ref::<BlockQ8_1>),
        _ => return None,
    })
}
