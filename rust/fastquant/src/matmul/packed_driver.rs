//! The packed-GEMM driver: runs a [`PackedKernel`] over a weight either packed once
//! ([`PackedWeight`], what a `Linear` keeps) or packed tile by tile on the fly (what [`super::matmul`]
//! does for a GGUF-layout weight from a few activation rows on).
//!
//! Work is split by columns: a task is a tile of consecutive panels (at most `TILE_BYTES`, so it
//! stays in a core's L2) and meets every activation row, so each weight byte is read from memory
//! once whatever the row count; tasks are pulled from a shared counter, so uneven threads balance.
//! On the fly, a task packs its panels into a per-worker scratch of one tile (no allocation
//! proportional to N x K). Rows go in chunks of `ROW_CHUNK` whose results collect in a per-worker
//! buffer and are then copied to their columns of the output (tasks own disjoint columns).

use crate::error::{Error, Result};
use crate::parallel::{for_each_task, split_work};
use crate::simd::{self, Level};
use crate::types::QuantType;

use super::gemm::{check_shapes, check_weight, MatmulWeight};
use super::packed::{packed_kernel_for, PackedKernel, PANEL_ROWS};

/// Weight bytes of one task's tile of panels: it stays in L2 (1 MiB per core on Zen 5, 512 KiB or
/// more on every AVX2 CPU) while every activation row meets it.
const TILE_BYTES: usize = 512 << 10;

/// Activation rows whose results a task collects before copying them to the output.
const ROW_CHUNK: usize = 64;

/// Fewest panels in a tile, whatever their size: the microkernels' register tiles span up to 3
/// panels (48 columns), and a tile of one long panel (F16 at K = 14336: 458 KB) left them a third
/// full (measured, W [4096 x 14336] F16 at 512 rows, one thread: 134 GFLOP/s with one panel per
/// tile).
const MIN_TILE_PANELS: usize = 3;

/// Each activation-preparation task quantizes at least this many rows.
const PREPARE_MIN_ROWS: usize = 8;

/// A weight packed once into its type's panels, page aligned: every panel of 16 rows, one after
/// another (the last one padded with zero rows). The layout is the same at every SIMD level.
pub struct PackedWeight {
    store: PanelStore,
    qtype: QuantType,
    rows: usize,
    k: usize,
}

impl PackedWeight {
    /// Packs `w` (GGUF layout). Errors for a type without a packed kernel or bytes of the wrong size.
    pub fn new(w: &MatmulWeight<'_>) -> Result<Self> {
        let kernel = packed_kernel_for(w.qtype, Level::Scalar)
            .ok_or(Error::Unsupported { qtype: w.qtype.name(), what: "packed matmul" })?;
        let row_bytes = check_weight(w)?;
        let panel_bytes = (kernel.panel_bytes)(w.k);
        let n_panels = w.rows.div_ceil(PANEL_ROWS);
        let bytes = n_panels.checked_mul(panel_bytes).ok_or(Error::TooLarge(w.rows))?;
        let mut store = PanelStore::zeroed(bytes)?;
        if bytes > 0 {
            let packed = store.bytes_mut();
            let rows_per_panel = PANEL_ROWS * row_bytes;
            // A task packs at least 1 MiB of weight; the last panel may be short.
            let min_panels = (1usize << 20).div_ceil(panel_bytes);
            let n_full = w.rows / PANEL_ROWS;
            let (full, last) = packed.split_at_mut(n_full * panel_bytes);
            split_work(
                &w.data[..n_full * rows_per_panel],
                full,
                rows_per_panel,
                panel_bytes,
                min_panels,
                |_, src, dst| {
                    for (rows, panel) in src.chunks_exact(rows_per_panel).zip(dst.chunks_exact_mut(panel_bytes)) {
                        (kernel.pack_panel)(w.k, rows, row_bytes, panel);
                    }
                },
            )?;
            if !last.is_empty() {
                (kernel.pack_panel)(w.k, &w.data[n_full * rows_per_panel..], row_bytes, last);
            }
        }
        Ok(PackedWeight { store, qtype: w.qtype, rows: w.rows, k: w.k })
    }

    /// The packed bytes (all panels).
    pub fn bytes(&self) -> &[u8] {
        self.store.bytes()
    }

    /// Whether the panels take more than a quarter more bytes than the blocks
    /// ([`PackedKernel::panels_expand`]).
    pub fn panels_expand(&self) -> bool {
        packed_kernel_for(self.qtype, Level::Scalar).is_some_and(|kernel| kernel.panels_expand(self.qtype))
    }

    /// The weight's type.
    pub fn qtype(&self) -> QuantType {
        self.qtype
    }

    /// Output features (N).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (K).
    pub fn k(&self) -> usize {
        self.k
    }
}

/// The packed bytes: an anonymous memory map, zero-filled by the kernel as the packing threads
/// first touch its pages, and page aligned (so every panel starts 64-byte aligned). On Linux it
/// asks for transparent huge pages: a 4096 x 14336 K-quant weight is 33 to 60 MB, which in 4 KiB
/// pages costs about 15 000 page faults while packing (slow in a virtual machine) and a TLB miss
/// every 4 KiB while a single activation row streams it.
struct PanelStore {
    map: Option<memmap2::MmapMut>,
}

impl PanelStore {
    /// `bytes` zero bytes (no mapping for none).
    fn zeroed(bytes: usize) -> Result<Self> {
        if bytes == 0 {
            return Ok(PanelStore { map: None });
        }
        let map = memmap2::MmapMut::map_anon(bytes)
            .map_err(|e| Error::Io(e.kind(), format!("mapping {bytes} bytes for a packed weight: {e}")))?;
        #[cfg(target_os = "linux")]
        // Only advice: where the kernel has no huge pages to give, 4 KiB pages serve as well.
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(PanelStore { map: Some(map) })
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.map.as_deref_mut().unwrap_or(&mut [])
    }
}

/// Whether `qtype` has a packed kernel, so it can be a [`PackedWeight`].
pub fn has_packed_kernel(qtype: QuantType) -> bool {
    packed_kernel_for(qtype, Level::Scalar).is_some()
}

/// `out = x @ dequantize(w).T` for a packed weight: `x` is `m` rows of `w.k()` floats, `out` `m`
/// rows of `w.rows()`. `level` forces a SIMD level (else the active one).
pub fn matmul_packed(w: &PackedWeight, x: &[f32], out: &mut [f32], level: Option<Level>) -> Result<()> {
    let level = match level {
        Some(l) => l,
        None => simd::active_level()?,
    };
    if level > simd::detected_level() {
        return Err(Error::SimdUnavailable { requested: level.name(), best: simd::detected_level().name() });
    }
    let kernel =
        packed_kernel_for(w.qtype, level).ok_or(Error::Unsupported { qtype: w.qtype.name(), what: "packed matmul" })?;
    let m = check_shapes(w.rows, w.k, x, out)?;
    run(&kernel, Panels::Packed(w.bytes()), w.rows, w.k, x, m, out, level)
}

/// Where a task's panels come from.
#[derive(Clone, Copy)]
pub(crate) enum Panels<'a> {
    /// All panels, packed.
    Packed(&'a [u8]),
    /// The GGUF layout, packed tile by tile.
    Gguf { data: &'a [u8], row_bytes: usize },
}

/// Prepares the activations and runs the tasks (shapes already checked; `m` rows).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    kernel: &PackedKernel,
    panels: Panels<'_>,
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    level: Level,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if simd::has_non_finite(level, x) {
        let index = x.iter().position(|v| !v.is_finite()).unwrap_or(0);
        return Err(Error::NonFinite { index, value: x[index] });
    }
    let act_row_bytes = (kernel.act_row_bytes)(k);
    let mut acts = vec![0u8; m.checked_mul(act_row_bytes).ok_or(Error::TooLarge(m))?];
    split_work(x, &mut acts, k, act_row_bytes, PREPARE_MIN_ROWS, |_, x, a| (kernel.prepare_acts)(x, k, a))?;

    let panel_bytes = (kernel.panel_bytes)(k);
    let n_panels = n.div_ceil(PANEL_ROWS);
    let threads = crate::parallel::num_threads();
    let tile_panels =
        (TILE_BYTES / panel_bytes.max(1)).max(MIN_TILE_PANELS).clamp(1, n_panels.div_ceil(threads).max(1));
    let n_tasks = n_panels.div_ceil(tile_panels);
    let chunk_rows = ROW_CHUNK.min(m);
    let tile_cols = tile_panels * PANEL_ROWS;
    let scratch_bytes = if matches!(panels, Panels::Gguf { .. }) { tile_panels * panel_bytes } else { 0 };
    let shared_out = SharedOut { ptr: out.as_mut_ptr(), len: out.len(), stride: n };
    for_each_task(
        n_tasks,
        || (vec![0u8; scratch_bytes], vec![0f32; chunk_rows * tile_cols]),
        |(scratch, results), t| {
            let (p0, p1) = (t * tile_panels, ((t + 1) * tile_panels).min(n_panels));
            let (c0, c1) = (p0 * PANEL_ROWS, (p1 * PANEL_ROWS).min(n));
            let tile: &[u8] = match panels {
                Panels::Packed(all) => &all[p0 * panel_bytes..p1 * panel_bytes],
                Panels::Gguf { data, row_bytes } => {
                    for (p, panel) in (p0..p1).zip(scratch.chunks_exact_mut(panel_bytes)) {
                        let rows = &data[p * PANEL_ROWS * row_bytes..((p + 1) * PANEL_ROWS).min(n) * row_bytes];
                        (kernel.pack_panel)(k, rows, row_bytes, panel);
                    }
                    &scratch[..(p1 - p0) * panel_bytes]
                }
            };
            let cols = c1 - c0;
            for r0 in (0..m).step_by(chunk_rows) {
                let rows = chunk_rows.min(m - r0);
                let acts = &acts[r0 * act_row_bytes..(r0 + rows) * act_row_bytes];
                (kernel.gemm)(k, tile, acts, rows, cols, results, cols);
                shared_out.write(r0, c0, cols, &results[..rows * cols]);
            }
        },
    )
}

/// The output matrix, written by tasks that own disjoint column ranges.
struct SharedOut {
    ptr: *mut f32,
    len: usize,
    stride: usize,
}

// SAFETY: tasks write disjoint elements through `write` (each task owns its columns), and the
// output outlives every task (`for_each_task` returns after all of them).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// Copies `src` (rows of `cols`) to rows `r0..` at columns `c0..c0 + cols`.
    fn write(&self, r0: usize, c0: usize, cols: usize, src: &[f32]) {
        for (i, row) in src.chunks_exact(cols).enumerate() {
            let at = (r0 + i) * self.stride + c0;
            assert!(c0 + cols <= self.stride && at + cols <= self.len, "output block out of bounds");
            // SAFETY: in bounds (checked above); the caller's task is the only writer of these
            // columns, and nothing reads the output while tasks run.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), self.ptr.add(at), cols) };
        }
    }
}
