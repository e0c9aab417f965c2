//! Block formats: layouts and the scalar reference codecs.
//!
//! Every quantized format is a `#[repr(C)]` block struct implementing [`BlockFormat`], in one file
//! per family. The scalar functions here are the specification (ports of ggml's reference code);
//! `simd` holds faster kernels that must give the same bytes. [`scalar_codec`] is the one place
//! that maps a [`QuantType`] to its scalar code.

pub mod float;
pub mod iquants;
pub mod kquants;
pub mod legacy;
pub mod mxfp4;
pub mod ternary;

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

    /// Whether ggml's quantizer for this type uses importance weights at all (Q8_0, TQ1_0, TQ2_0
    /// and MXFP4 ignore them).
    const USES_IMATRIX: bool = false;

    /// Encodes one whole row `x` with per-column importance weights `qw` (same length), as ggml's
    /// `quantize_<type>(src, dst, 1, n_per_row, imatrix)` does. Rows, not blocks: the weighted
    /// searches of the legacy types use statistics of the whole row. Types that ignore the weights
    /// keep this default.
    fn quantize_row_imatrix(x: &[f32], y: &mut [Self], qw: &[f32]) {
        let _ = qw;
        for (x, y) in x.chunks_exact(Self::ELEMS).zip(y.iter_mut()) {
            Self::quantize_block(x, y);
        }
    }
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

/// Quantizes whole rows of `n_per_row` elements of `src` with importance weights `qw` (length
/// `n_per_row`) with the scalar reference.
pub fn quantize_rows_imatrix_ref<B: BlockFormat>(src: &[f32], dst: &mut [u8], n_per_row: usize, qw: &[f32]) {
    let blocks: &mut [B] = bytemuck::cast_slice_mut(dst);
    assert_eq!(blocks.len() * B::ELEMS, src.len());
    assert_eq!(qw.len(), n_per_row);
    for (x, y) in src.chunks_exact(n_per_row).zip(blocks.chunks_exact_mut(n_per_row / B::ELEMS)) {
        B::quantize_row_imatrix(x, y, qw);
    }
}

/// Encodes whole rows with importance weights: (src, dst, n_per_row, weights of one row).
pub type QuantizeImatrixFn = fn(&[f32], &mut [u8], usize, &[f32]);

/// Encodes whole blocks: `src.len()` is a multiple of the block size, `dst` holds exactly the bytes.
pub type QuantizeFn = fn(&[f32], &mut [u8]);
/// Decodes whole blocks: the inverse shape of [`QuantizeFn`].
pub type DequantizeFn = fn(&[u8], &mut [f32]);

/// The scalar decoder of a type fastquant can read but not write (the lattice I-quants), or the
/// decoder of [`scalar_codec`] for the others; `None` for a type fastquant cannot read.
pub fn scalar_dequantizer(qtype: QuantType) -> Option<DequantizeFn> {
    if let Some((_, dq)) = scalar_codec(qtype) {
        return Some(dq);
    }
    use iquants::{iq1, iq2, iq3};
    match qtype {
        QuantType::IQ2_XXS => Some(iq2::dequantize_row_iq2_xxs),
        QuantType::IQ2_XS => Some(iq2::dequantize_row_iq2_xs),
        QuantType::IQ2_S => Some(iq2::dequantize_row_iq2_s),
        QuantType::IQ3_XXS => Some(iq3::dequantize_row_iq3_xxs),
        QuantType::IQ3_S => Some(iq3::dequantize_row_iq3_s),
        QuantType::IQ1_S => Some(iq1::dequantize_row_iq1_s),
        QuantType::IQ1_M => Some(iq1::dequantize_row_iq1_m),
        _ => None,
    }
}

/// The importance-weighted quantizer of a type, or `None` when ggml's quantizer for the type
/// ignores importance weights (the plain path then gives ggml's bytes).
pub fn scalar_imatrix_quantizer(qtype: QuantType) -> Option<QuantizeImatrixFn> {
    fn of<B: BlockFormat>() -> Option<QuantizeImatrixFn> {
        B::USES_IMATRIX.then_some(quantize_rows_imatrix_ref::<B> as QuantizeImatrixFn)
    }
    use legacy::*;
    match qtype {
        QuantType::Q4_0 => of::<BlockQ4_0>(),
        QuantType::Q4_1 => of::<BlockQ4_1>(),
        QuantType::Q5_0 => of::<BlockQ5_0>(),
        QuantType::Q5_1 => of::<BlockQ5_1>(),
        QuantType::Q2_K => of::<kquants::BlockQ2K>(),
        QuantType::Q3_K => of::<kquants::BlockQ3K>(),
        QuantType::Q4_K => of::<kquants::BlockQ4K>(),
        QuantType::Q5_K => of::<kquants::BlockQ5K>(),
        QuantType::Q6_K => of::<kquants::BlockQ6K>(),
        QuantType::IQ4_NL => of::<iquants::BlockIq4Nl>(),
        QuantType::IQ4_XS => of::<iquants::BlockIq4Xs>(),
        _ => None,
    }
}

/// Whether ggml's quantizer for `qtype` takes importance weights into account (everything but
/// plain floats, Q8_0/Q8_1, TQ1_0/TQ2_0, MXFP4 and NVFP4). A type for which this holds but
/// [`scalar_imatrix_quantizer`] has nothing yet must refuse an imatrix rather than ignore it.
pub fn ggml_uses_imatrix(qtype: QuantType) -> bool {
    use QuantType::*;
    matches!(
        qtype,
        Q4_0 | Q4_1
            | Q5_0
            | Q5_1
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | IQ2_XXS
            | IQ2_XS
            | IQ2_S
            | IQ3_XXS
            | IQ3_S
            | IQ1_S
            | IQ1_M
            | IQ4_NL
            | IQ4_XS
            | Q1_0
            | Q2_0
    )
}

/// The scalar reference codec of a type, or `None` for a type without one here yet.
///
/// This and the SIMD tables are the only switches on the type.
pub fn scalar_codec(qtype: QuantType) -> Option<(QuantizeFn, DequantizeFn)> {
    fn blocks<B: BlockFormat>() -> (QuantizeFn, DequantizeFn) {
        (quantize_row_ref::<B>, dequantize_row_ref::<B>)
    }
    use legacy::*;
    Some(match qtype {
        QuantType::F32 => (float::quantize_row_f32, float::dequantize_row_f32),
        QuantType::F16 => (float::quantize_row_f16, float::dequantize_row_f16),
        QuantType::BF16 => (float::quantize_row_bf16, float::dequantize_row_bf16),
        QuantType::Q4_0 => blocks::<BlockQ4_0>(),
        QuantType::Q4_1 => blocks::<BlockQ4_1>(),
        QuantType::Q5_0 => blocks::<BlockQ5_0>(),
        QuantType::Q5_1 => blocks::<BlockQ5_1>(),
        QuantType::Q8_0 => blocks::<BlockQ8_0>(),
        QuantType::Q8_1 => blocks::<BlockQ8_1>(),
        QuantType::Q2_K => blocks::<kquants::BlockQ2K>(),
        QuantType::Q3_K => blocks::<kquants::BlockQ3K>(),
        QuantType::Q4_K => blocks::<kquants::BlockQ4K>(),
        QuantType::Q5_K => blocks::<kquants::BlockQ5K>(),
        QuantType::Q6_K => blocks::<kquants::BlockQ6K>(),
        QuantType::Q8_K => blocks::<kquants::BlockQ8K>(),
        QuantType::IQ4_NL => blocks::<iquants::BlockIq4Nl>(),
        QuantType::IQ4_XS => blocks::<iquants::BlockIq4Xs>(),
        QuantType::TQ1_0 => blocks::<ternary::BlockTq1_0>(),
        QuantType::TQ2_0 => blocks::<ternary::BlockTq2_0>(),
        QuantType::MXFP4 => blocks::<mxfp4::BlockMxfp4>(),
        _ => return None,
    })
}
