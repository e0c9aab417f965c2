//! GEMM on weights repacked into panels: the compute-bound path of the matmul.
//!
//! The GGUF layout keeps each weight row's blocks together, which suits a dot product along K but
//! not a register-blocked microkernel: there one vector register holds the same K positions of
//! [`PANEL_ROWS`] different weight rows (output columns), so one broadcast activation value meets 16
//! weights in one instruction and a tile of `MR x 16·P` outputs stays in registers across K. A
//! [`PackedKernel`] is a type's whole recipe for that: the panel layout, the activation layout,
//! and the microkernel.
//!
//! # Contract of a [`PackedKernel`]
//!
//! * **Layouts belong to the type, not the level.** `pack_panel` and `prepare_acts` write the same
//!   bytes at every level, so a weight packed once (a prepared `Linear`) runs at any level, and
//!   each level's `gemm` reads the bytes the scalar one reads.
//! * **Activations** are quantized with the crate's quantizer for the weight's paired type
//!   ([`super::activation_type`]: Q8_0 / Q8_1 / Q8_K codes and scales, the same codes as the GEMV
//!   path), then laid out as the kernel likes (scales as f32 beside the codes, block sums, codes
//!   biased to u8, ...). Float weights take f32 activations.
//! * **Panels**: `pack_panel` takes up to [`PANEL_ROWS`] weight rows in GGUF layout and writes one
//!   panel of `panel_bytes(k)` bytes; the rows missing from a short last panel are packed as
//!   zeros. It allocates nothing.
//! * **`gemm`** computes, for every activation row `r < m` and every valid column `c < cols` of
//!   the panels it is given (column `c` is row `c % 16` of panel `c / 16`),
//!   `out[r * out_stride + c] = dot(activation row r, weight row c)` over the whole K, and writes
//!   nothing else. It blocks registers however it likes; it allocates nothing.
//! * **One result at every level.** The integer part of each block's dot product is exact; the
//!   float accumulation of an output is a fixed sequence of operations defined by the type's
//!   scalar `gemm` (written out in its module docs), and every SIMD `gemm` gives the same bits.
//!   That sequence need not be the GEMV's ([`super::dot`]), so the two paths may differ in the last
//!   bits; both stay within the documented bound of the float product.

use crate::simd::Level;
use crate::types::QuantType;

/// Weight rows (output columns) per panel: the 16 f32/i32 lanes of an AVX-512 register.
pub const PANEL_ROWS: usize = 16;

/// Bytes of one activation row of `k` elements in a kernel's activation layout.
pub type ActRowBytesFn = fn(k: usize) -> usize;
/// Lays out `x.len() / k` activation rows of `k` floats, each in `act_row_bytes(k)` bytes, one
/// after another in `out` (exactly that many bytes). `x` is finite (the caller checks).
pub type PrepareActsFn = fn(x: &[f32], k: usize, out: &mut [u8]);
/// Bytes of one panel of [`PANEL_ROWS`] weight rows of `k` elements.
pub type PanelBytesFn = fn(k: usize) -> usize;
/// Packs the `rows.len() / row_bytes` (1..=16) weight rows of `rows` (GGUF layout) into `panel`
/// (exactly `panel_bytes(k)` bytes); missing rows are zeros.
pub type PackPanelFn = fn(k: usize, rows: &[u8], row_bytes: usize, panel: &mut [u8]);
/// `out[r * out_stride + c] = dot(act row r, weight column c)` for `r < m`, `c < cols`, where the
/// columns are those of the whole panels in `panels` (`cols <= 16 * panels`) and `acts` holds `m`
/// rows of `act_row_bytes(k)` bytes.
pub type PackedGemmFn =
    fn(k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize);

/// A weight type's packed GEMM at one level (see the module docs).
#[derive(Clone, Copy)]
pub struct PackedKernel {
    /// Bytes per activation row in this kernel's layout (see [`ActRowBytesFn`]).
    pub act_row_bytes: ActRowBytesFn,
    /// Lays out float activations (see [`PrepareActsFn`]).
    pub prepare_acts: PrepareActsFn,
    /// Bytes per panel of [`PANEL_ROWS`] weight rows (see [`PanelBytesFn`]).
    pub panel_bytes: PanelBytesFn,
    /// Packs weight rows into a panel (see [`PackPanelFn`]).
    pub pack_panel: PackPanelFn,
    /// Multiplies prepared activations with packed panels (see [`PackedGemmFn`]).
    pub gemm: PackedGemmFn,
    /// The level whose code `gemm` is (lower than asked where the type has no faster kernel).
    pub level: Level,
}

impl PackedKernel {
    /// Whether `weight`'s panels take more than a quarter more bytes than its blocks (Q5_0/Q5_1
    /// and the K-quants keep a byte per code): packing them then decodes every code, and a
    /// single row, which streams the weight once, reads fewer bytes from the blocks.
    pub fn panels_expand(&self, weight: QuantType) -> bool {
        // A K of whole block pairs and super-blocks, so padding does not count.
        const PROBE_K: usize = 512;
        weight.row_bytes(PROBE_K).is_ok_and(|row| (self.panel_bytes)(PROBE_K) > PANEL_ROWS * row * 5 / 4)
    }
}

/// The packed kernel for `weight` at `level`, or `None` where the type has none (the matmul then
/// uses the GEMV kernels for every row count). `level` must be available on this CPU.
pub fn packed_kernel_for(weight: QuantType, level: Level) -> Option<PackedKernel> {
    use super::packed_kquants::packed_kquant_kernel;
    match weight {
        QuantType::Q2_K | QuantType::Q3_K | QuantType::Q4_K | QuantType::Q5_K | QuantType::Q6_K | QuantType::IQ4_XS => {
            packed_kquant_kernel(weight, level)
        }
        QuantType::F32 | QuantType::F16 | QuantType::BF16 => super::packed_float::kernel(weight, level),
        _ => super::packed_legacy::packed_kernel(weight, level),
    }
}

/// The shape contract of [`PackedGemmFn`] that does not depend on the type, checked by every
/// `gemm` before it touches memory (a violation panics, like a slice index; the drivers check
/// shapes first): whole panels of `panel_bytes`, `cols` within them, `m` activation rows of
/// `act_row_bytes`, and room for `m` output rows of `cols` at `out_stride`. Returns the number of
/// panels.
#[allow(clippy::too_many_arguments)]
pub fn check_gemm_args(
    panels: &[u8],
    panel_bytes: usize,
    acts: &[u8],
    act_row_bytes: usize,
    m: usize,
    cols: usize,
    out: &[f32],
    out_stride: usize,
) -> usize {
    assert!(panel_bytes > 0 && panels.len().is_multiple_of(panel_bytes), "panels are not whole panels");
    let n_panels = panels.len() / panel_bytes;
    assert!(cols <= n_panels * PANEL_ROWS, "{cols} columns in {n_panels} panels");
    assert!(acts.len() >= m * act_row_bytes, "fewer than {m} activation rows");
    if m > 0 && cols > 0 {
        assert!(cols <= out_stride, "output stride {out_stride} below {cols} columns");
        assert!(out.len() >= (m - 1) * out_stride + cols, "output too short");
    }
    n_panels
}
