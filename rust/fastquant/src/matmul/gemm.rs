//! The matmul drivers: shape checks, activation preparation, and the split of the work over
//! threads and cache tiles. The arithmetic is the dot kernels'; the drivers only decide which
//! weight row meets which activation rows when, and this order is the same at every level.

use crate::error::{Error, Result};
use std::sync::Mutex;

use crate::parallel::{for_each_task, split_work};
use crate::simd::{self, Level};
use crate::types::QuantType;

use super::activation::prepare_activations;
use super::dot::{dot_kernel_for, VecDotFn, MAX_ROWS};
use super::packed::packed_kernel_for;
use super::packed_driver::{self, Panels};

/// A weight matrix as GGUF stores it: `rows` output rows (N) of `k` elements (K) of `qtype`, each
/// row its blocks, rows one after another.
#[derive(Clone, Copy, Debug)]
pub struct MatmulWeight<'a> {
    /// The blocks, `rows * qtype.row_bytes(k)` bytes, row after row.
    pub data: &'a [u8],
    /// The block type of every row.
    pub qtype: QuantType,
    /// `N`: output rows (out_features).
    pub rows: usize,
    /// `K`: elements per row (in_features), a multiple of the type's block size.
    pub k: usize,
}

/// Rows from which `matmul` packs a GGUF-layout weight on the fly for the packed GEMM rather than
/// run the dot kernels. Measured on Zen 5, W [4096 x 14336], one thread: Q4_0 is faster packed from
/// 2 rows (4 rows: 4.6 ms against 9.4), Q8_0 (twice the bytes to repack) breaks even at 4-6 and is
/// faster from 8 (8.9 ms against 12.1).
const PACK_ON_THE_FLY_MIN_ROWS: usize = 5;

/// The same for a weight whose panels are larger than its GGUF rows (Q5_0/Q5_1 keep a byte per
/// code): packing decodes every code, which only pays with more rows. Measured, Q5_0 on W [4096 x
/// 14336], one thread: 8 rows 31 ms packed on the fly against 11 by the dot kernels, 512 rows 123
/// ms against 663; 32 rows is about where the two meet.
const PACK_EXPANDED_ON_THE_FLY_MIN_ROWS: usize = 32;

/// Each GEMV task streams at least this many weight bytes, so a hand-off to another thread pays.
const GEMV_MIN_TASK_BYTES: usize = 256 << 10;

/// Weight bytes of one GEMM tile: the tile stays in a core's L2 (1 MiB on this machine's Zen 5;
/// 512 KiB or more on every AVX2 CPU) beside the 8 activation rows it meets, and is reused by every
/// group of 8 activation rows of the task before the next tile is read.
const GEMM_TILE_BYTES: usize = 384 << 10;

/// With more than one activation row, K goes in pieces whose 8 activation rows take about this
/// many bytes (Q8_0: 2816 elements; f32: 768), so a group's piece stays in L1 (48 KiB on Zen 4 and 5,
/// 32 KiB on older cores) while many weight rows meet it; streaming whole rows instead read the
/// activations from L2 for every weight row (measured: F16 at 64 rows 28% slower, Q4_0 at 8 rows
/// 23%). Each output is the sum of its pieces' dot products, added in order.
const PIECE_BYTES: usize = 24 << 10;

/// `out = x @ dequantize(w).T`: `x` is `m` rows of `w.k` floats, `out` is `m` rows of `w.rows`.
/// `level` forces a SIMD level (else the active one). Activations are quantized per row to the
/// weight's paired type first (see [`super::dot`]). From `PACK_ON_THE_FLY_MIN_ROWS` rows on
/// (`PACK_EXPANDED_ON_THE_FLY_MIN_ROWS` for Q5_0/Q5_1), a type with a packed kernel goes to the
/// packed GEMM ([`super::packed_driver`], panels packed tile
/// by tile); fewer rows, and the other types, run on the dot kernels.
pub fn matmul(w: &MatmulWeight<'_>, x: &[f32], out: &mut [f32], level: Option<Level>) -> Result<()> {
    let (n, k) = (w.rows, w.k);
    let weight_row_bytes = check_weight(w)?;
    let m = check_shapes(n, k, x, out)?;
    let level = match level {
        Some(l) => l,
        None => simd::active_level()?,
    };
    let kernel = dot_kernel_for(w.qtype, level)?
        .ok_or(Error::SimdUnavailable { requested: level.name(), best: simd::detected_level().name() })?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if m >= PACK_ON_THE_FLY_MIN_ROWS {
        if let Some(packed) = packed_kernel_for(w.qtype, level) {
            if !packed.panels_expand(w.qtype) || m >= PACK_EXPANDED_ON_THE_FLY_MIN_ROWS {
                let panels = Panels::Gguf { data: w.data, row_bytes: weight_row_bytes };
                return packed_driver::run(&packed, panels, n, k, x, m, out, level);
            }
        }
    }
    let (acts, act_row_bytes) = prepare_activations(kernel.act_type, x, k, level)?;
    let job = Job {
        vec_dot: kernel.vec_dot,
        k,
        weight_row_bytes,
        act_row_bytes,
        weight_type: w.qtype,
        act_type: kernel.act_type,
    };
    if m <= MAX_ROWS {
        job.gemv(w.data, &acts, m, out)
    } else {
        job.gemm(w.data, &acts, out)
    }
}

/// The weight's row bytes, after checking that its bytes are `rows` rows of `k` elements.
pub(crate) fn check_weight(w: &MatmulWeight<'_>) -> Result<usize> {
    let row_bytes = w.qtype.row_bytes(w.k)?;
    let expected = w.rows.checked_mul(row_bytes).ok_or(Error::TooLarge(w.rows))?;
    if w.data.len() != expected {
        return Err(Error::Size { what: "weight bytes", expected, got: w.data.len() });
    }
    Ok(row_bytes)
}

/// The number of activation rows, after checking that `x` is whole rows of `k` (> 0) and `out`
/// that many rows of `n`.
pub(crate) fn check_shapes(n: usize, k: usize, x: &[f32], out: &[f32]) -> Result<usize> {
    if k == 0 {
        return Err(Error::Invalid("matmul: the inner dimension K is 0".into()));
    }
    if !x.len().is_multiple_of(k) {
        return Err(Error::Size {
            what: "activation elements (a whole number of rows of K)",
            expected: k,
            got: x.len(),
        });
    }
    let m = x.len() / k;
    let expected = m.checked_mul(n).ok_or(Error::TooLarge(m))?;
    if out.len() != expected {
        return Err(Error::Size { what: "output elements (rows x N)", expected, got: out.len() });
    }
    Ok(m)
}

struct Job {
    vec_dot: VecDotFn,
    k: usize,
    weight_row_bytes: usize,
    act_row_bytes: usize,
    weight_type: QuantType,
    act_type: QuantType,
}

impl Job {
    /// K cut into pieces whose 8 activation rows take about [`PIECE_BYTES`]: (elements, weight
    /// byte offset, activation byte offset, weight bytes) of each. Pieces are whole 256-element
    /// super-blocks (a multiple of every block size) but the last.
    fn pieces(&self) -> Result<Vec<(usize, usize, usize, usize)>> {
        let act_bytes_per_256 = self.act_type.row_bytes(256)?;
        let piece = (PIECE_BYTES / (MAX_ROWS * act_bytes_per_256)).max(1) * 256;
        let mut pieces = Vec::new();
        let mut k0 = 0;
        while k0 < self.k {
            let len = piece.min(self.k - k0);
            pieces.push((
                len,
                self.weight_type.row_bytes(k0)?,
                self.act_type.row_bytes(k0)?,
                self.weight_type.row_bytes(len)?,
            ));
            k0 += len;
        }
        Ok(pieces)
    }

    /// Up to 8 activation rows: weight rows are split over threads and each weight byte is read
    /// once. One row streams whole weight rows; with more quantized rows, K goes in pieces (as in
    /// the GEMM) so the activation rows' piece stays in L1 while every weight row of the task
    /// meets it. The
    /// kernel writes the `m` results of a weight row next to each other, so with more than one
    /// row they go to a transposed buffer first (the size of the output).
    fn gemv(&self, weight: &[u8], acts: &[u8], m: usize, out: &mut [f32]) -> Result<()> {
        let min_rows = GEMV_MIN_TASK_BYTES.div_ceil(self.weight_row_bytes);
        if m == 1 {
            // Many small tasks pulled by the threads rather than one static half each: a thread
            // that starts late (its core busy for a moment) then takes fewer of them, where a
            // static split made the call wait for it (measured, Q4_K at 2 threads: 24 GB/s with
            // two halves, the same as one thread).
            let tasks: Vec<Mutex<(&[u8], &mut [f32])>> =
                weight.chunks(min_rows * self.weight_row_bytes).zip(out.chunks_mut(min_rows)).map(Mutex::new).collect();
            for_each_task(
                tasks.len(),
                || (),
                |_, t| {
                    let mut task = tasks[t].lock().unwrap_or_else(|e| e.into_inner());
                    let (w, o) = &mut *task;
                    for (row, o) in w.chunks_exact(self.weight_row_bytes).zip(o.chunks_exact_mut(1)) {
                        (self.vec_dot)(self.k, row, acts, self.act_row_bytes, o);
                    }
                },
            )?;
            return Ok(());
        }
        // Float weights are 2-4 times the bytes and bound by their stream from memory, which the
        // pieces cut into short runs: they go whole (measured at 8 rows: F16 30% slower in
        // pieces, Q4_0 23% faster).
        let pieces =
            if self.act_type == QuantType::F32 { vec![(self.k, 0, 0, self.weight_row_bytes)] } else { self.pieces()? };
        let n = out.len() / m;
        let mut transposed = vec![0f32; out.len()];
        split_work(weight, &mut transposed, self.weight_row_bytes, m, min_rows, |_first, w, o| {
            let mut results = [0f32; MAX_ROWS];
            let results = &mut results[..m];
            for (p, &(len, w_at, a_at, w_len)) in pieces.iter().enumerate() {
                for (row, o) in w.chunks_exact(self.weight_row_bytes).zip(o.chunks_exact_mut(m)) {
                    (self.vec_dot)(len, &row[w_at..w_at + w_len], &acts[a_at..], self.act_row_bytes, results);
                    for (o, v) in o.iter_mut().zip(results.iter()) {
                        *o = if p == 0 { *v } else { *o + *v };
                    }
                }
            }
        })?;
        for (j, t) in transposed.chunks_exact(m).enumerate() {
            for (r, v) in t.iter().enumerate() {
                out[r * n + j] = *v;
            }
        }
        Ok(())
    }

    /// More than 8 activation rows: the activation rows are split over threads (each task writes
    /// whole output rows); each task walks the weight in L2-sized tiles of rows and K in pieces
    /// (see [`PIECE_BYTES`]), and runs every group of 8 of its activation rows against a
    /// tile's piece before moving on, so weight bytes come from memory once per task and a
    /// group's activation piece stays in L1 across the tile.
    fn gemm(&self, weight: &[u8], acts: &[u8], out: &mut [f32]) -> Result<()> {
        let n = weight.len() / self.weight_row_bytes;
        let tile_rows = (GEMM_TILE_BYTES / self.weight_row_bytes).max(1);
        let pieces = self.pieces()?;
        split_work(acts, out, self.act_row_bytes, n, MAX_ROWS, |_first, acts, out| {
            let mut results = [0f32; MAX_ROWS];
            for (t, tile) in weight.chunks(tile_rows * self.weight_row_bytes).enumerate() {
                let first_col = t * tile_rows;
                for (p, &(len, w_at, a_at, w_len)) in pieces.iter().enumerate() {
                    for (group, out_rows) in
                        acts.chunks(MAX_ROWS * self.act_row_bytes).zip(out.chunks_mut(MAX_ROWS * n))
                    {
                        let results = &mut results[..group.len() / self.act_row_bytes];
                        for (j, row) in tile.chunks_exact(self.weight_row_bytes).enumerate() {
                            (self.vec_dot)(len, &row[w_at..w_at + w_len], &group[a_at..], self.act_row_bytes, results);
                            for (r, v) in results.iter().enumerate() {
                                let o = &mut out_rows[r * n + first_col + j];
                                *o = if p == 0 { *v } else { *o + *v };
                            }
                        }
                    }
                }
            }
        })?;
        Ok(())
    }
}
