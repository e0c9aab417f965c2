//! Packed GEMM of float weights (F32, F16, BF16) against f32 activations: the
//! [`PackedKernel`]s of the float types.
//!
//! # Layouts (the same at every level)
//!
//! * **Panel**: for each `k` in `0..K`, the 16 weights of the panel's rows at `k`, row 0 first,
//!   in the weight's own format (4 bytes for F32, 2 for F16/BF16): `16 * K * bytes` bytes. F16 and
//!   BF16 stay 16-bit, so a packed weight is no larger than the GGUF one and streams half the bytes
//!   of an f32 panel; the kernels widen them in registers (exact). Missing rows are zeros.
//! * **Activations**: each row its `K` floats, little-endian, as given (4 K bytes per row).
//!
//! # Float order
//!
//! Every output is one fused multiply-add chain over K in order, from +0.0:
//! `acc = w[c][k].mul_add(x[r][k], acc)` for `k = 0, 1, .., K - 1`. A SIMD kernel keeps one output
//! per lane and runs that chain; when it cuts K into chunks (the loop nest [`drive`]) it carries the
//! accumulator over in the output, which changes nothing. The GEMV kernels sum in 64 lanes instead
//! ([`super::dot`]); both are within the usual bound `K * eps * sum |w x|` of the exact product.

use super::dot::FloatKind;
use super::packed::{PackedGemmFn, PackedKernel, PANEL_ROWS};
use crate::simd::Level;
use crate::types::QuantType;

/// Elements of K per chunk of the loop nest: a group of panels' chunk (3 x 16 x 256 x 2 bytes of
/// F16 = 24 KiB) stays in L1 while every group of activation rows meets it, and those rows' chunk
/// (1 KiB each) stays in L2 for the next group of panels.
pub const KC: usize = 1024;

/// How far ahead of its loads a SIMD tile prefetches each of its panels. With few activation rows
/// the panels stream from memory, which the hardware prefetchers follow badly across several
/// panels: at 8 rows (F16, AVX-512) 4 KiB or more ahead doubled the speed (2 KiB: +40%); further
/// ahead changed nothing.
pub const PANEL_PREFETCH_BYTES: usize = 8 << 10;

/// The packed kernel of float `weight` at `level` (`None` for a non-float type).
pub fn kernel(weight: QuantType, level: Level) -> Option<PackedKernel> {
    let kind = FloatKind::of(weight)?;
    let mut kernel = PackedKernel {
        act_row_bytes,
        prepare_acts,
        panel_bytes: match kind {
            FloatKind::F32 => panel_bytes::<4>,
            FloatKind::F16 | FloatKind::Bf16 => panel_bytes::<2>,
        },
        pack_panel: match kind {
            FloatKind::F32 => pack_panel::<4>,
            FloatKind::F16 | FloatKind::Bf16 => pack_panel::<2>,
        },
        gemm: scalar_gemm(kind),
        level: Level::Scalar,
    };
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::x86_64;
        if level >= Level::Avx2 {
            if let Some(token) = x86_64::Avx2::try_new() {
                kernel.gemm = x86_64::avx2::packed_float_gemm(token, kind);
                kernel.level = Level::Avx2;
            }
        }
        if level >= Level::Avx512 {
            if let Some(token) = x86_64::Avx512::try_new() {
                kernel.gemm = x86_64::avx512::packed_float_gemm(token, kind);
                kernel.level = Level::Avx512;
            }
        }
    }
    let _ = level;
    Some(kernel)
}

fn act_row_bytes(k: usize) -> usize {
    4 * k
}

fn prepare_acts(x: &[f32], k: usize, out: &mut [u8]) {
    assert_eq!(out.len(), 4 * x.len(), "activation buffer of {} rows of {k}", x.len() / k.max(1));
    for (o, v) in out.as_chunks_mut::<4>().0.iter_mut().zip(x) {
        *o = v.to_le_bytes();
    }
}

fn panel_bytes<const B: usize>(k: usize) -> usize {
    PANEL_ROWS * k * B
}

/// The rows of `rows` (`B` bytes per weight) interleaved per `k`; missing rows zeros.
fn pack_panel<const B: usize>(k: usize, rows: &[u8], row_bytes: usize, panel: &mut [u8]) {
    assert!(row_bytes == k * B && rows.len().is_multiple_of(row_bytes), "weight rows of {k} elements");
    let n_rows = rows.len() / row_bytes;
    assert!((1..=PANEL_ROWS).contains(&n_rows) && panel.len() == panel_bytes::<B>(k), "1..=16 rows, one panel");
    let mut row_weights: [&[[u8; B]]; PANEL_ROWS] = [&[]; PANEL_ROWS];
    for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
        row_weights[r] = &row.as_chunks::<B>().0[..k];
    }
    for (kk, column) in panel.as_chunks_mut::<B>().0.chunks_exact_mut(PANEL_ROWS).enumerate() {
        let (present, missing) = column.split_at_mut(n_rows);
        for (w, row) in present.iter_mut().zip(&row_weights) {
            *w = row[kk];
        }
        missing.fill([0; B]);
    }
}

/// `$gemm::<KIND>` (a [`PackedGemmFn`] generic over the kind's [`FloatKind::id`]) for `$kind`.
macro_rules! gemm_of_kind {
    ($gemm:ident, $kind:expr) => {
        match $kind {
            FloatKind::F32 => $gemm::<{ FloatKind::F32.id() }> as PackedGemmFn,
            FloatKind::F16 => $gemm::<{ FloatKind::F16.id() }>,
            FloatKind::Bf16 => $gemm::<{ FloatKind::Bf16.id() }>,
        }
    };
}
pub(crate) use gemm_of_kind;

fn scalar_gemm(kind: FloatKind) -> PackedGemmFn {
    gemm_of_kind!(gemm_scalar, kind)
}

/// The scalar reference: one FMA chain per output over K in order (see the module docs).
fn gemm_scalar<const KIND: usize>(
    k: usize,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    let kind = FloatKind::ALL[KIND];
    let b = kind.bytes();
    let panel_bytes = PANEL_ROWS * k * b;
    check_shapes(k, panels, panel_bytes, acts, m, cols, out, out_stride);
    for r in 0..m {
        let x = &acts[r * 4 * k..(r + 1) * 4 * k];
        for c in 0..cols {
            let panel = &panels[c / PANEL_ROWS * panel_bytes..];
            let mut acc = 0f32;
            for (kk, x) in x.as_chunks::<4>().0.iter().enumerate() {
                let w = kind.to_f32(&panel[(kk * PANEL_ROWS + c % PANEL_ROWS) * b..]);
                acc = w.mul_add(f32::from_le_bytes(*x), acc);
            }
            out[r * out_stride + c] = acc;
        }
    }
}

/// The shape contract of [`PackedGemmFn`], checked once per call (panics, like every kernel).
#[allow(clippy::too_many_arguments)]
fn check_shapes(
    k: usize,
    panels: &[u8],
    panel_bytes: usize,
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &[f32],
    out_stride: usize,
) {
    assert!(k > 0, "K is 0");
    super::packed::check_gemm_args(panels, panel_bytes, acts, 4 * k, m, cols, out, out_stride);
}

/// One register tile's work: rows `0..mr` of `acts` against panels `0..nr` of `panels` over K range
/// `k0..k1`, into `out[r * out_stride + c]` for `c < 16 * nr` (every column valid). With `k0 > 0`
/// the chain continues from the values in `out`; with `k0 == 0` it starts at +0.0.
pub struct MicroTile<'a> {
    /// First element of the K range.
    pub k0: usize,
    /// End (exclusive) of the K range.
    pub k1: usize,
    /// `nr` whole panels, `panel_bytes` each.
    pub panels: &'a [u8],
    /// Bytes of one panel.
    pub panel_bytes: usize,
    /// Panels in the tile (16 columns each).
    pub nr: usize,
    /// `mr` activation rows, `act_row_bytes` apart, from the first.
    pub acts: &'a [u8],
    /// Bytes from one activation row to the next.
    pub act_row_bytes: usize,
    /// Activation rows in the tile.
    pub mr: usize,
    /// The tile's outputs: row `r`, column `c` at `r * out_stride + c`.
    pub out: &'a mut [f32],
    /// Elements from one output row to the next.
    pub out_stride: usize,
}

impl MicroTile<'_> {
    /// Panics unless the tile's slices hold what it names (the microkernels read through pointers
    /// after this).
    pub fn check(&self, bytes_per_weight: usize) {
        assert!(self.k0 < self.k1 && self.panel_bytes >= PANEL_ROWS * self.k1 * bytes_per_weight);
        assert!(self.panels.len() >= self.nr * self.panel_bytes);
        assert!(
            self.act_row_bytes >= 4 * self.k1 && self.acts.len() >= (self.mr - 1) * self.act_row_bytes + 4 * self.k1
        );
        assert!(self.out.len() >= (self.mr - 1) * self.out_stride + PANEL_ROWS * self.nr);
    }
}

/// The loop nest of the SIMD levels: K in chunks of [`KC`], groups of `nr_max` panels, groups of
/// `mr_max` activation rows, each (rows, panels, chunk) one `micro` call. A tile whose last panel
/// has columns past `cols` runs on a copy of its valid outputs, so `micro` always writes whole
/// panels. `mr_max * nr_max <= 8 * 4`.
#[allow(clippy::too_many_arguments)]
pub fn drive(
    kind: FloatKind,
    k: usize,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &mut [f32],
    out_stride: usize,
    mr_max: usize,
    nr_max: usize,
    micro: impl Fn(&mut MicroTile<'_>),
) {
    let panel_bytes = PANEL_ROWS * k * kind.bytes();
    check_shapes(k, panels, panel_bytes, acts, m, cols, out, out_stride);
    assert!(mr_max * nr_max <= 32);
    let n_panels = cols.div_ceil(PANEL_ROWS);
    let act_row_bytes = 4 * k;
    // One group of rows reuses nothing across panel groups: K whole, each panel one long stream.
    let kc = if m <= mr_max { k } else { KC };
    for k0 in (0..k).step_by(kc) {
        let k1 = (k0 + kc).min(k);
        for p0 in (0..n_panels).step_by(nr_max) {
            let nr = nr_max.min(n_panels - p0);
            let c0 = p0 * PANEL_ROWS;
            let valid = (cols - c0).min(nr * PANEL_ROWS);
            let panels = &panels[p0 * panel_bytes..(p0 + nr) * panel_bytes];
            for r0 in (0..m).step_by(mr_max) {
                let mr = mr_max.min(m - r0);
                let acts = &acts[r0 * act_row_bytes..];
                let tile = |out: &mut [f32], out_stride: usize| {
                    micro(&mut MicroTile { k0, k1, panels, panel_bytes, nr, acts, act_row_bytes, mr, out, out_stride })
                };
                let out = &mut out[r0 * out_stride + c0..];
                if valid == nr * PANEL_ROWS {
                    tile(out, out_stride);
                } else {
                    let staged_stride = nr * PANEL_ROWS;
                    let mut staged = [0f32; 32 * PANEL_ROWS];
                    for r in 0..mr {
                        staged[r * staged_stride..][..valid].copy_from_slice(&out[r * out_stride..][..valid]);
                    }
                    tile(&mut staged, staged_stride);
                    for r in 0..mr {
                        out[r * out_stride..][..valid].copy_from_slice(&staged[r * staged_stride..][..valid]);
                    }
                }
            }
        }
    }
}
