//! Timing of the packed float GEMM kernels on the weight shape (W 4096 x 14336: 4096
//! output rows of K = 14336) on one thread: one `gemm` call over every panel and all activation
//! rows, per type and level; beside it, for up to 8 rows, the GEMV dot kernels streaming the
//! GGUF-layout rows (one thread, every weight row against all the rows in one call).
//!
//! `cargo run --release -p fastquant --example bench_packed_float [reps] [type,...] [level,...] [rows,...]`
//! (defaults: 5, f16,bf16,f32, every level, 512,8). Prints the packing time once per type and
//! GFLOP/s (2 * rows * N * K / time) of the median wall time and of the least on-core time.

use std::time::Instant;

use fastquant::formats::float::fp32_to_fp16;
use fastquant::matmul::dot::dot_kernel_for;
use fastquant::matmul::packed::{packed_kernel_for, PANEL_ROWS};
use fastquant::simd::available_levels;
use fastquant::QuantType;

const N: usize = 4096;
const K: usize = 14336;

/// Small pseudo-random values (the timing does not depend on them).
fn values(len: usize, seed: &mut u64) -> Vec<f32> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn weight_bytes(qtype: QuantType, w: &[f32]) -> Vec<u8> {
    match qtype {
        QuantType::F32 => w.iter().flat_map(|v| v.to_le_bytes()).collect(),
        QuantType::F16 => w.iter().flat_map(|v| fp32_to_fp16(*v).to_le_bytes()).collect(),
        _ => w.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect(),
    }
}

/// Median wall seconds and least on-core seconds of `reps` timed runs after one warm-up. On a
/// machine shared with other work the on-core time leaves out the time the thread waited for a core.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (mut wall, mut on_core): (Vec<f64>, Vec<f64>) = (0..reps.max(1))
        .map(|_| {
            let (start, cpu) = (Instant::now(), thread_cpu_seconds());
            f();
            (start.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu)
        })
        .unzip();
    wall.sort_by(f64::total_cmp);
    on_core.sort_by(f64::total_cmp);
    (wall[wall.len() / 2], on_core[0])
}

/// Seconds this thread has run on a core (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`).
fn thread_cpu_seconds() -> f64 {
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut [i64; 2]) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = [0i64; 2];
    // SAFETY: `ts` is a valid, writable `struct timespec` (two 64-bit fields on x86-64 Linux).
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts[0] as f64 + ts[1] as f64 * 1e-9
}

fn main() {
    let mut args = std::env::args().skip(1);
    let reps: usize = args.next().map(|s| s.parse().expect("reps")).unwrap_or(5);
    let types: Vec<QuantType> = match args.next() {
        Some(list) => list.split(',').map(|t| QuantType::from_name(t).expect("a type name")).collect(),
        None => vec![QuantType::F16, QuantType::BF16, QuantType::F32],
    };
    let levels: Vec<_> = match args.next() {
        Some(list) => list.split(',').map(|l| fastquant::Level::from_name(l).expect("a level name")).collect(),
        None => available_levels(),
    };
    let row_counts: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(|r| r.parse().expect("a row count")).collect(),
        None => vec![512, 8],
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let gflop = |rows: usize, secs: f64| 2.0 * (rows * N * K) as f64 / secs / 1e9;
    println!("W {N} x {K}, one thread");
    println!("| weight | path | level | rows | ms | GFLOP/s | GFLOP/s on-core |");
    println!("|---|---|---|---|---|---|---|");
    for qtype in types {
        let w = weight_bytes(qtype, &values(N * K, &mut seed));
        let row_bytes = w.len() / N;
        let scalar = packed_kernel_for(qtype, fastquant::Level::Scalar).expect("a float type");
        let panel_bytes = (scalar.panel_bytes)(K);
        let mut panels = vec![0u8; N.div_ceil(PANEL_ROWS) * panel_bytes];
        let start = Instant::now();
        for (rows, panel) in w.chunks(PANEL_ROWS * row_bytes).zip(panels.chunks_exact_mut(panel_bytes)) {
            (scalar.pack_panel)(K, rows, row_bytes, panel);
        }
        println!("| {qtype} | pack | - | - | {:.1} | - | - |", start.elapsed().as_secs_f64() * 1e3);
        for &rows in &row_counts {
            let x = values(rows * K, &mut seed);
            let act_bytes = rows * (scalar.act_row_bytes)(K);
            // Activation rows on a cache-line boundary (a 16-byte aligned buffer, as the allocator
            // gives, cost the 8-row AVX-512 GEMV 15-25%: most of its 64-byte loads split lines).
            let mut act_buffer = vec![0u8; act_bytes + 64];
            let at = act_buffer.as_ptr().align_offset(64);
            let acts = &mut act_buffer[at..at + act_bytes];
            (scalar.prepare_acts)(&x, K, acts);
            let acts = &*acts;
            let mut out = vec![0f32; rows * N];
            for &level in &levels {
                let kernel = packed_kernel_for(qtype, level).unwrap();
                if level != fastquant::Level::Scalar {
                    let (median, best) = time(reps, || (kernel.gemm)(K, &panels, acts, rows, N, &mut out, N));
                    let (g, b) = (gflop(rows, median), gflop(rows, best));
                    println!("| {qtype} | packed | {level} | {rows} | {:.1} | {g:.1} | {b:.1} |", median * 1e3);
                }
                if rows <= 8 {
                    let dot = dot_kernel_for(qtype, level).unwrap().unwrap();
                    let (median, best) = time(reps, || {
                        for (row, o) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(rows)) {
                            (dot.vec_dot)(K, row, acts, 4 * K, o);
                        }
                    });
                    let (g, b) = (gflop(rows, median), gflop(rows, best));
                    println!("| {qtype} | gemv | {level} | {rows} | {:.1} | {g:.1} | {b:.1} |", median * 1e3);
                }
            }
        }
    }
}
