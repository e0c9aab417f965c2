//! Timing of the packed GEMM microkernels of Q2_K..Q6_K and IQ4_XS (`matmul::packed_kquants`)
//! next to the GEMV dot kernels on the same data: W = 4096 x 14336 (random normal data quantized
//! with the crate's quantizer), 512 and 8 activation rows.
//!
//! `cargo run --release -p fastquant --example bench_packed_kquants [reps] [type,...] [level,...] [rows,...] [threads,...]`
//! (threads default 1; with 2, each thread takes every other tile and the slowest thread's on-core
//! time counts).
//!
//! Packed: the weight packed once (the packing time is printed), then per tile of `PANELS_PER_TILE`
//! panels one `gemm` over every activation row (a `gemm` goes super-block by super-block, so a
//! panel super-block is read into L1 once and every activation row meets it there). GEMV: per tile of 64 weight
//! rows (L2) and group of 8 activation rows, one dot call per weight row. Times are the on-core
//! time of this thread (`/proc/thread-self/schedstat`, so other work on the machine does not count)
//! and wall time; the medians of `reps` passes; GFLOP/s = 2 * rows * N * K / time.

use std::time::Instant;

use fastquant::matmul::packed::{packed_kernel_for, PackedKernel, PANEL_ROWS};
use fastquant::matmul::{dot_kernel_for, DotKernel};
use fastquant::simd::{available_levels, Level};
use fastquant::{quantize, FloatSlice, QuantType, QuantizeOptions};

const K: usize = 14336;
/// Panels per `gemm` call: a multiple of the kernels' panels per pass (2 for AVX2, 3 for AVX-512).
const PANELS_PER_TILE: usize = 6;
/// Weight rows per GEMV tile.
const GEMV_TILE: usize = 64;

fn n_rows() -> usize {
    std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(4096)
}

/// Roughly normal floats (sum of 4 uniforms) from a xorshift generator.
fn normal_data(seed: &mut u64, n: usize) -> Vec<f32> {
    let mut uniform = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 40) as f32 / (1u64 << 24) as f32
    };
    (0..n).map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0).collect()
}

/// Nanoseconds this thread has run on a CPU (the first field of its schedstat).
fn on_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Median (on-core seconds, wall seconds) per run of `reps` samples of `threads` threads each
/// running `f(thread, out)` (an output buffer of its own, made before its clock starts); a
/// sample repeats `f` for at least 0.2 s of wall time, since the schedstat clock only moves at
/// scheduler ticks. A sample's on-core time is its slowest thread's.
fn time<F: Fn(usize, &mut [f32]) + Sync>(reps: usize, threads: usize, out_len: usize, f: F) -> (f64, f64) {
    let sample = |inner: usize| {
        let w0 = Instant::now();
        let cpu = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let f = &f;
                    s.spawn(move || {
                        let mut out = vec![0f32; out_len];
                        let c0 = on_cpu_ns();
                        for _ in 0..inner {
                            f(t, &mut out);
                        }
                        on_cpu_ns() - c0
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).max().unwrap_or(0)
        });
        (cpu as f64 * 1e-9 / inner as f64, w0.elapsed().as_secs_f64() / inner as f64)
    };
    let inner = ((0.2 / sample(1).1).ceil() as usize).max(1);
    let (mut cpu, mut wall): (Vec<f64>, Vec<f64>) = (0..reps).map(|_| sample(inner)).unzip();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut cpu), median(&mut wall))
}

fn pack(kernel: &PackedKernel, w: &[u8], row_bytes: usize, panels: &mut [u8]) {
    let pb = (kernel.panel_bytes)(K);
    for (rows, panel) in w.chunks(PANEL_ROWS * row_bytes).zip(panels.chunks_exact_mut(pb)) {
        (kernel.pack_panel)(K, rows, row_bytes, panel);
    }
}

/// Thread `thread` of `threads` takes every `threads`-th tile of panels.
fn packed_pass(
    kernel: &PackedKernel,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    thread: usize,
    threads: usize,
    out: &mut [f32],
) {
    let (n, pb) = (n_rows(), (kernel.panel_bytes)(K));
    for (t, tile) in panels.chunks(PANELS_PER_TILE * pb).enumerate().skip(thread).step_by(threads) {
        let c0 = t * PANELS_PER_TILE * PANEL_ROWS;
        let cols = (n - c0).min(PANELS_PER_TILE * PANEL_ROWS);
        (kernel.gemm)(K, tile, acts, m, cols, &mut out[c0..], n);
    }
}

/// Thread `thread` of `threads` takes every `threads`-th tile of weight rows.
#[allow(clippy::too_many_arguments)]
fn gemv_pass(
    kernel: &DotKernel,
    w: &[u8],
    row_bytes: usize,
    q8: &[u8],
    m: usize,
    thread: usize,
    threads: usize,
    out: &mut [f32],
) {
    let act_row = q8.len() / m;
    let mut col = [0f32; 8];
    for (t, tile) in w.chunks(GEMV_TILE * row_bytes).enumerate().skip(thread).step_by(threads) {
        for r0 in (0..m).step_by(8) {
            let rows = (m - r0).min(8);
            let acts = &q8[r0 * act_row..(r0 + rows) * act_row];
            for (i, wrow) in tile.chunks_exact(row_bytes).enumerate() {
                (kernel.vec_dot)(K, wrow, acts, act_row, &mut col[..rows]);
                let c = t * GEMV_TILE + i;
                for r in 0..rows {
                    out[(r0 + r) * n_rows() + c] = col[r];
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(3);
    let types: Vec<QuantType> = match args.get(2) {
        Some(list) => list.split(',').map(|t| QuantType::from_name(t).expect("a type name")).collect(),
        None => vec![QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::IQ4_XS],
    };
    let levels: Vec<Level> = match args.get(3) {
        Some(list) => list.split(',').map(|l| Level::from_name(l).expect("a level name")).collect(),
        None => available_levels().into_iter().filter(|&l| l > Level::Scalar).collect(),
    };
    let row_counts: Vec<usize> = match args.get(4) {
        Some(list) => list.split(',').map(|r| r.parse().expect("a row count")).collect(),
        None => vec![512, 8],
    };
    let thread_counts: Vec<usize> = match args.get(5) {
        Some(list) => list.split(',').map(|t| t.parse().expect("a thread count")).collect(),
        None => vec![1],
    };
    let n = n_rows();
    let mut seed = 0x5eed_u64;
    let x_w = normal_data(&mut seed, n * K);
    let max_m = row_counts.iter().copied().max().unwrap_or(8);
    let x_a = normal_data(&mut seed, max_m * K);
    println!("W {n} x {K}; GFLOP/s on-core (wall) of the median of {reps} passes\n");
    println!("| type | level | rows | threads | packed | GEMV | packed / GEMV |");
    println!("|---|---|---|---|---|---|---|");
    for &qtype in &types {
        let row_bytes = qtype.row_bytes(K).unwrap();
        let mut w = vec![0u8; n * row_bytes];
        quantize(qtype, FloatSlice::F32(&x_w), K, &mut w, &QuantizeOptions::default()).unwrap();
        for &level in &levels {
            let kernel = packed_kernel_for(qtype, level).expect("a packed kernel");
            let gemv = dot_kernel_for(qtype, level).unwrap().expect("an available level");
            // Packing into fresh memory (its page faults included), then again into the same.
            let (c0, start) = (on_cpu_ns(), Instant::now());
            let mut panels = vec![0u8; n.div_ceil(PANEL_ROWS) * (kernel.panel_bytes)(K)];
            pack(&kernel, &w, row_bytes, &mut panels);
            let (pack_cpu, pack_wall) = ((on_cpu_ns() - c0) as f64 * 1e-9, start.elapsed().as_secs_f64());
            let c0 = on_cpu_ns();
            pack(&kernel, &w, row_bytes, &mut panels);
            let repack_cpu = (on_cpu_ns() - c0) as f64 * 1e-9;
            for &m in &row_counts {
                let mut acts = vec![0u8; m * (kernel.act_row_bytes)(K)];
                (kernel.prepare_acts)(&x_a[..m * K], K, &mut acts);
                let mut q8 = vec![0u8; m * QuantType::Q8_K.row_bytes(K).unwrap()];
                quantize(QuantType::Q8_K, FloatSlice::F32(&x_a[..m * K]), K, &mut q8, &QuantizeOptions::default())
                    .unwrap();
                let flop = 2.0 * (m * n * K) as f64;
                for &threads in &thread_counts {
                    let (p_cpu, p_wall) =
                        time(reps, threads, m * n, |t, out| packed_pass(&kernel, &panels, &acts, m, t, threads, out));
                    let (g_cpu, g_wall) =
                        time(reps, threads, m * n, |t, out| gemv_pass(&gemv, &w, row_bytes, &q8, m, t, threads, out));
                    println!(
                        "| {} | {} | {m} | {threads} | {:.0} ({:.0}) | {:.0} ({:.0}) | {:.2} |",
                        qtype.name(),
                        kernel.level,
                        flop / p_cpu * 1e-9,
                        flop / p_wall * 1e-9,
                        flop / g_cpu * 1e-9,
                        flop / g_wall * 1e-9,
                        g_cpu / p_cpu
                    );
                }
            }
            eprintln!(
                "{} {level}: packing took {:.0} ms on-core ({:.0} wall; {:.0} ms on-core into touched memory)",
                qtype.name(),
                pack_cpu * 1e3,
                pack_wall * 1e3,
                repack_cpu * 1e3
            );
        }
    }
}
