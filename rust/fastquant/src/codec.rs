//! Whole-tensor quantize and dequantize: argument checks, input/output element types, the finite
//! check, and the split over threads. The per-block work is the dispatched kernels' (`simd`).

use crate::error::{Error, Result};
use crate::formats::{ggml_uses_imatrix, QuantizeImatrixFn};
use crate::parallel::split_work;
use crate::simd::{self, Codec, Level};
use crate::types::QuantType;

/// Float input in any of the element types ggml tensors come in. F16 and BF16 are raw bit patterns.
#[derive(Clone, Copy, Debug)]
pub enum FloatSlice<'a> {
    /// IEEE single precision.
    F32(&'a [f32]),
    /// IEEE half precision, as bit patterns.
    F16(&'a [u16]),
    /// bfloat16, as bit patterns.
    BF16(&'a [u16]),
}

/// Float output; see [`FloatSlice`].
#[derive(Debug)]
pub enum FloatSliceMut<'a> {
    /// IEEE single precision.
    F32(&'a mut [f32]),
    /// IEEE half precision, as bit patterns.
    F16(&'a mut [u16]),
    /// bfloat16, as bit patterns.
    BF16(&'a mut [u16]),
}

impl FloatSlice<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            FloatSlice::F32(s) => s.len(),
            FloatSlice::F16(s) | FloatSlice::BF16(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FloatSliceMut<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            FloatSliceMut::F32(s) => s.len(),
            FloatSliceMut::F16(s) | FloatSliceMut::BF16(s) => s.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Options of [`quantize`].
#[derive(Clone, Copy, Debug)]
pub struct QuantizeOptions<'a> {
    /// Refuse NaN and ±Inf input with [`Error::NonFinite`] naming the first bad element. When false,
    /// non-finite input is encoded exactly as ggml encodes it.
    pub check_finite: bool,
    /// Per-column importance weights (length = row length), as llama.cpp's imatrix holds them.
    pub imatrix: Option<&'a [f32]>,
    /// Run at this SIMD level instead of the process-wide one (tests compare levels with it).
    pub level: Option<Level>,
}

impl Default for QuantizeOptions<'_> {
    fn default() -> Self {
        QuantizeOptions { check_finite: true, imatrix: None, level: None }
    }
}

/// Elements converted, checked and encoded per step when the input is staged through an f32
/// buffer (f16/bf16 input, 16-bit output): small enough for the buffer to stay in L1, and a
/// multiple of every block size (32, 64, 128, 256).
const STEP_ELEMS: usize = 4096;

/// Elements encoded per kernel call for f32 input, which needs no staging. Larger than
/// `STEP_ELEMS` because the kernels prefetch ahead within a call and lose that at every call
/// boundary (measured: 12 GB/s for Q4_0 with 4096-element steps, 17 with these), yet small enough
/// (256 KiB) that the finite check after each call still reads from L2.
const F32_STEP_ELEMS: usize = 1 << 16;

/// Below this many elements per thread a hand-off to the pool costs more than it saves.
const MIN_ELEMS_PER_TASK: usize = 1 << 18;

fn codec_at(qtype: QuantType, level: Option<Level>) -> Result<Codec> {
    match level {
        None => simd::codec(qtype),
        Some(l) => simd::codec_for(qtype, l)?
            .ok_or(Error::SimdUnavailable { requested: l.name(), best: simd::detected_level().name() }),
    }
}

/// The F16/BF16 decoder that stages 16-bit input into f32, or `None` for f32 input.
fn staging_codec(src: FloatSlice<'_>, level: Option<Level>) -> Result<Option<Codec>> {
    Ok(match src {
        FloatSlice::F32(_) => None,
        FloatSlice::F16(_) => Some(codec_at(QuantType::F16, level)?),
        FloatSlice::BF16(_) => Some(codec_at(QuantType::BF16, level)?),
    })
}

/// [`split_work`] over a float input of any element type, for encoders that report the first
/// non-finite element they meet; returns the first one over all pieces as the error.
fn split_float_work<F>(
    src: FloatSlice<'_>,
    dst: &mut [u8],
    in_per_unit: usize,
    out_per_unit: usize,
    min_units: usize,
    run: F,
) -> Result<()>
where
    F: Fn(usize, FloatSlice<'_>, &mut [u8]) -> Option<(usize, f32)> + Sync,
{
    let (i, o, m) = (in_per_unit, out_per_unit, min_units);
    let bad = match src {
        FloatSlice::F32(s) => split_work(s, dst, i, o, m, |f, s, d| run(f, FloatSlice::F32(s), d))?,
        FloatSlice::F16(s) => split_work(s, dst, i, o, m, |f, s, d| run(f, FloatSlice::F16(s), d))?,
        FloatSlice::BF16(s) => split_work(s, dst, i, o, m, |f, s, d| run(f, FloatSlice::BF16(s), d))?,
    };
    match bad.into_iter().flatten().next() {
        Some((index, value)) => Err(Error::NonFinite { index, value }),
        None => Ok(()),
    }
}

/// Checks a row-major `[rows, n_per_row]` tensor of `n_elems` elements against `qtype` and returns
/// the number of rows.
fn check_shape(qtype: QuantType, n_elems: usize, n_per_row: usize) -> Result<usize> {
    if n_per_row == 0 {
        return if n_elems == 0 {
            Ok(0)
        } else {
            Err(Error::Invalid("row length is 0 but the input is not empty".into()))
        };
    }
    if !n_elems.is_multiple_of(n_per_row) {
        return Err(Error::Size { what: "elements (a whole number of rows)", expected: n_per_row, got: n_elems });
    }
    qtype.row_bytes(n_per_row)?;
    Ok(n_elems / n_per_row)
}

/// Index and value of the first non-finite element, if any.
#[inline]
fn first_non_finite(level: Level, x: &[f32]) -> Option<(usize, f32)> {
    if !simd::has_non_finite(level, x) {
        return None;
    }
    x.iter().position(|v| !v.is_finite()).map(|i| (i, x[i]))
}

/// Quantizes a row-major `[rows, n_per_row]` float tensor to `qtype`, writing `rows *
/// qtype.row_bytes(n_per_row)` bytes into `dst`. Bytes are identical to ggml's
/// `ggml_quantize_chunk`.
pub fn quantize(
    qtype: QuantType,
    src: FloatSlice<'_>,
    n_per_row: usize,
    dst: &mut [u8],
    options: &QuantizeOptions<'_>,
) -> Result<()> {
    let rows = check_shape(qtype, src.len(), n_per_row)?;
    if !qtype.can_quantize() {
        return Err(Error::Unsupported { qtype: qtype.name(), what: "quantization" });
    }
    let row_bytes = qtype.row_bytes(n_per_row)?;
    let expected = rows.checked_mul(row_bytes).ok_or(Error::TooLarge(src.len()))?;
    if dst.len() != expected {
        return Err(Error::Size { what: "output bytes", expected, got: dst.len() });
    }
    if let Some(w) = options.imatrix {
        if w.len() != n_per_row {
            return Err(Error::Size { what: "imatrix length (row length)", expected: n_per_row, got: w.len() });
        }
        if let Some(weighted) = codec_at(qtype, options.level)?.quantize_imatrix {
            return quantize_imatrix(qtype, weighted, src, n_per_row, dst, w, options);
        }
        if ggml_uses_imatrix(qtype) {
            return Err(Error::Unsupported { qtype: qtype.name(), what: "importance-matrix quantization" });
        }
        // Otherwise ggml ignores the weights for this type: the plain path gives its bytes.
    }
    let codec = codec_at(qtype, options.level)?;
    let encode = codec.quantize.ok_or(Error::Unsupported { qtype: qtype.name(), what: "quantization" })?;
    let check_level = codec.quantize_level;
    let staging = staging_codec(src, options.level)?;

    // Without an importance matrix every block stands alone, so the unit of work is a block and a
    // single long row splits across threads as well as many short ones.
    let block = qtype.block_elems();
    let block_bytes = qtype.block_bytes();
    let min_blocks = MIN_ELEMS_PER_TASK / block;
    let step_blocks = match src {
        FloatSlice::F32(_) => F32_STEP_ELEMS / block,
        FloatSlice::F16(_) | FloatSlice::BF16(_) => STEP_ELEMS / block,
    };

    let run = |first_block: usize, src: FloatSlice<'_>, dst: &mut [u8]| -> Option<(usize, f32)> {
        let mut buf = [0f32; STEP_ELEMS];
        let n = src.len();
        let mut start = 0;
        for out in dst.chunks_mut(step_blocks * block_bytes) {
            let len = out.len() / block_bytes * block;
            let x: &[f32] = match src {
                FloatSlice::F32(s) => &s[start..start + len],
                FloatSlice::F16(s) | FloatSlice::BF16(s) => {
                    let stage = staging.expect("set for 16-bit input");
                    (stage.dequantize)(bytemuck::cast_slice(&s[start..start + len]), &mut buf[..len]);
                    &buf[..len]
                }
            };
            // Encode first, then check the step while it is still in cache: checking first would
            // take the memory stalls outside the kernel and halve large-input throughput. A bad
            // step's output is thrown away with the error.
            encode(x, out);
            if options.check_finite {
                if let Some((i, v)) = first_non_finite(check_level, x) {
                    return Some((first_block * block + start + i, v));
                }
            }
            start += len;
        }
        debug_assert_eq!(start, n);
        None
    };

    split_float_work(src, dst, block, block_bytes, min_blocks, run)
}

/// The importance-weighted path: whole rows per task, since the weighted searches use whole-row
/// statistics.
fn quantize_imatrix(
    qtype: QuantType,
    weighted: QuantizeImatrixFn,
    src: FloatSlice<'_>,
    n_per_row: usize,
    dst: &mut [u8],
    imatrix: &[f32],
    options: &QuantizeOptions<'_>,
) -> Result<()> {
    let row_bytes = qtype.row_bytes(n_per_row)?;
    let staging = staging_codec(src, options.level)?;
    let check_level = match options.level {
        Some(l) => l,
        None => simd::active_level()?,
    };
    // Weighted searches cost far more per element than the plain path: one row per task is enough.
    let min_rows = (MIN_ELEMS_PER_TASK / 16 / n_per_row).max(1);
    let run = |first_row: usize, src: FloatSlice<'_>, dst: &mut [u8]| -> Option<(usize, f32)> {
        let mut buf = Vec::new();
        for (r, out) in dst.chunks_mut(row_bytes).enumerate() {
            let range = r * n_per_row..(r + 1) * n_per_row;
            let x: &[f32] = match src {
                FloatSlice::F32(s) => &s[range],
                FloatSlice::F16(s) | FloatSlice::BF16(s) => {
                    let stage = staging.expect("set for 16-bit input");
                    buf.resize(n_per_row, 0.0);
                    (stage.dequantize)(bytemuck::cast_slice(&s[range]), &mut buf);
                    &buf
                }
            };
            if options.check_finite {
                if let Some((i, v)) = first_non_finite(check_level, x) {
                    return Some(((first_row + r) * n_per_row + i, v));
                }
            }
            weighted(x, out, n_per_row, imatrix);
        }
        None
    };
    split_float_work(src, dst, n_per_row, row_bytes, min_rows, run)
}

/// Dequantizes `rows * qtype.row_bytes(n_per_row)` bytes of `qtype` blocks into `dst`
/// (`rows * n_per_row` floats), with values identical to ggml's `to_float`.
pub fn dequantize(
    qtype: QuantType,
    src: &[u8],
    n_per_row: usize,
    dst: FloatSliceMut<'_>,
    level: Option<Level>,
) -> Result<()> {
    let rows = check_shape(qtype, dst.len(), n_per_row)?;
    if !qtype.can_dequantize() {
        return Err(Error::Unsupported { qtype: qtype.name(), what: "dequantization" });
    }
    let expected = rows.checked_mul(qtype.row_bytes(n_per_row)?).ok_or(Error::TooLarge(dst.len()))?;
    if src.len() != expected {
        return Err(Error::Size { what: "input bytes", expected, got: src.len() });
    }
    let codec = codec_at(qtype, level)?;
    let block = qtype.block_elems();
    let block_bytes = qtype.block_bytes();
    let min_blocks = MIN_ELEMS_PER_TASK / block;
    let step_blocks = STEP_ELEMS / block;

    let narrow_into = |narrow_type: QuantType, out: &mut [u16]| -> Result<()> {
        let narrow = codec_at(narrow_type, level)?;
        split_work(src, out, block_bytes, block, min_blocks, |_, s, d| {
            narrow_steps(codec, narrow, step_blocks * block_bytes, s, d)
        })?;
        Ok(())
    };
    match dst {
        FloatSliceMut::F32(out) => {
            split_work(src, out, block_bytes, block, min_blocks, |_, s, d| (codec.dequantize)(s, d))?;
        }
        // Same 16-bit type in and out: the bits are the answer (and NaN payloads survive).
        FloatSliceMut::F16(out) if qtype == QuantType::F16 => {
            bytemuck::cast_slice_mut::<u16, u8>(out).copy_from_slice(src)
        }
        FloatSliceMut::BF16(out) if qtype == QuantType::BF16 => {
            bytemuck::cast_slice_mut::<u16, u8>(out).copy_from_slice(src)
        }
        FloatSliceMut::F16(out) => narrow_into(QuantType::F16, out)?,
        FloatSliceMut::BF16(out) => narrow_into(QuantType::BF16, out)?,
    }
    Ok(())
}

/// Dequantizes `src` one step at a time into an f32 buffer kept in L1 and narrows each step into
/// `dst` with `narrow` (the F16 or BF16 encoder).
fn narrow_steps(codec: Codec, narrow: Codec, step_bytes: usize, src: &[u8], dst: &mut [u16]) {
    let mut buf = [0f32; STEP_ELEMS];
    let mut start = 0;
    for inp in src.chunks(step_bytes) {
        let len = if inp.len() == step_bytes { STEP_ELEMS } else { dst.len() - start };
        (codec.dequantize)(inp, &mut buf[..len]);
        let encode = narrow.quantize.expect("F16 and BF16 always have an encoder");
        encode(&buf[..len], bytemuck::cast_slice_mut(&mut dst[start..start + len]));
        start += len;
    }
}
