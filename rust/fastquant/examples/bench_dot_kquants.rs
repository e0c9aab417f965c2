//! Timing of the K-quant / IQ4_XS x Q8_K dot kernels on the weight shape (4096 output rows
//! of K = 14336): every weight row against 1 or 8 activation rows, the weight streamed from memory
//! once per pass, on 1 and 2 threads (each thread a contiguous half of the weight rows).
//!
//! `cargo run --release -p fastquant --example bench_dot_kquants [reps] [type,...] [level,...] [rows,...]`
//! With `BENCH_N=64` (output rows) the weight fits in L2: the kernels' compute speed without the
//! memory stream. Prints GFLOP/s (2 * rows * N * K / time) and the weight GB/s of the median pass, and GFLOP/s of
//! the fastest pass (on a machine shared with other work the fastest is the least disturbed).

use std::time::Instant;

use fastquant::formats::float::fp32_to_fp16;
use fastquant::matmul::dot_kquants::{dot_kquant_kernel, kquant_layout, VecDotFn, Q8K_BYTES};
use fastquant::simd::available_levels;
use fastquant::QuantType;

/// Output rows (weight rows): the 4096, or `BENCH_N`.
fn n_rows() -> usize {
    std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(4096)
}
const K: usize = 14336;

fn fill(seed: &mut u64, out: &mut [u8]) {
    for b in out {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *b = *seed as u8;
    }
}

/// Random blocks whose every 16-bit word that could be an fp16 scale is a small finite value:
/// the timing does not depend on the values, only on them not being NaN/Inf.
fn weight(qtype: QuantType, seed: &mut u64) -> Vec<u8> {
    let bytes = kquant_layout(qtype).unwrap().block_bytes;
    let mut w = vec![0u8; n_rows() * K / 256 * bytes];
    fill(seed, &mut w);
    let offsets: &[usize] = match qtype {
        QuantType::Q2_K => &[80, 82],
        QuantType::Q3_K => &[108],
        QuantType::Q6_K => &[208],
        QuantType::IQ4_XS => &[0],
        _ => &[0, 2],
    };
    let h = fp32_to_fp16(0.01).to_le_bytes();
    for block in w.chunks_exact_mut(bytes) {
        for &at in offsets {
            block[at..at + 2].copy_from_slice(&h);
        }
    }
    w
}

fn acts(rows: usize, seed: &mut u64) -> Vec<u8> {
    let mut a = vec![0u8; rows * K / 256 * Q8K_BYTES];
    fill(seed, &mut a);
    for block in a.chunks_exact_mut(Q8K_BYTES) {
        block[..4].copy_from_slice(&0.01f32.to_le_bytes());
    }
    a
}

/// One pass: every weight row against the `rows` activation rows, the output rows split over
/// `threads` threads.
fn pass(kernel: VecDotFn, w: &[u8], a: &[u8], rows: usize, threads: usize, out: &mut [f32]) {
    let n_rows = out.len() / rows;
    let row_w = w.len() / n_rows;
    let row_a = a.len() / rows;
    let per_thread = n_rows.div_ceil(threads);
    if threads == 1 {
        for (n, o) in out.chunks_mut(rows).enumerate() {
            kernel(K, &w[n * row_w..(n + 1) * row_w], a, row_a, o);
        }
        return;
    }
    std::thread::scope(|s| {
        for (t, out) in out.chunks_mut(per_thread * rows).enumerate() {
            s.spawn(move || {
                for (i, o) in out.chunks_mut(rows).enumerate() {
                    let n = t * per_thread + i;
                    kernel(K, &w[n * row_w..(n + 1) * row_w], a, row_a, o);
                }
            });
        }
    });
}

fn main() {
    let mut args = std::env::args().skip(1);
    let reps: usize = args.next().map(|s| s.parse().expect("reps")).unwrap_or(5);
    let types: Vec<QuantType> = match args.next() {
        Some(list) => list.split(',').map(|t| QuantType::from_name(t).expect("a type name")).collect(),
        None => {
            vec![QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::IQ4_XS, QuantType::Q2_K, QuantType::Q3_K]
        }
    };
    let levels: Vec<_> = match args.next() {
        Some(list) => list.split(',').map(|l| fastquant::Level::from_name(l).expect("a level name")).collect(),
        None => available_levels(),
    };
    let row_counts: Vec<usize> = match args.next() {
        Some(list) => list.split(',').map(|r| r.parse().expect("a row count")).collect(),
        None => vec![1, 8],
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    println!("| weight | level | rows | threads | ms | GFLOP/s | weight GB/s | GFLOP/s best |");
    println!("|---|---|---|---|---|---|---|---|");
    for qtype in types {
        let w = weight(qtype, &mut seed);
        for &rows in &row_counts {
            let a = acts(rows, &mut seed);
            let mut out = vec![0f32; n_rows() * rows];
            for &level in &levels {
                let kernel = dot_kquant_kernel(qtype, level).unwrap();
                for threads in [1usize, 2] {
                    let mut times: Vec<f64> = (0..reps.max(1) + 1)
                        .map(|_| {
                            let t = Instant::now();
                            pass(kernel, &w, &a, rows, threads, &mut out);
                            t.elapsed().as_secs_f64()
                        })
                        .skip(1) // warm-up
                        .collect();
                    times.sort_by(f64::total_cmp);
                    let t = times[times.len() / 2];
                    let gflops = 2.0 * (rows * n_rows() * K) as f64 / t / 1e9;
                    let gbs = w.len() as f64 / t / 1e9;
                    println!(
                        "| {} | {level} | {rows} | {threads} | {:.2} | {gflops:.1} | {gbs:.1} | {:.1} |",
                        qtype.name(),
                        t * 1e3,
                        2.0 * (rows * n_rows() * K) as f64 / times[0] / 1e9
                    );
                }
            }
        }
    }
}
