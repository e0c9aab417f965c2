//! Single-thread throughput of every implemented type's kernels at every SIMD level this CPU has.
//!
//! `cargo bench -p fastquant --bench kernels [-- FILTER...]` prints, for 16M and 256K floats, the
//! median of 7 timed runs as GB/s of f32 (the input of quantize, the output of dequantize), so the
//! numbers of different types compare directly. FILTER words select types by name (`q4_0 bf16`).
//! The kernels are called through `codec_for`, so a level without its own kernel for a type shows
//! the kernel it falls back to, marked with the level that kernel really is.

use std::hint::black_box;
use std::time::Instant;

use fastquant::formats::scalar_codec;
use fastquant::simd::{codec_for, Level};
use fastquant::{QuantType, TYPE_TABLE};

const SIZES: [usize; 2] = [16 << 20, 256 << 10];
const RUNS: usize = 7;

/// Median wall time of `RUNS` calls of `f`, after one warm-up call (page faults, caches).
fn median_seconds(mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(|a, b| a.total_cmp(b));
    times[RUNS / 2]
}

/// Normal-ish data from a xorshift32 (sum of uniforms), reproducible without a dependency.
fn test_data(n: usize) -> Vec<f32> {
    let mut state = 0x9e37_79b9_u32;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state >> 8) as f32 / (1u32 << 24) as f32
    };
    (0..n).map(|_| (0..4).map(|_| uniform()).sum::<f32>() - 2.0).collect()
}

fn main() {
    let filters: Vec<String> =
        std::env::args().skip(1).filter(|a| !a.starts_with("--")).map(|a| a.to_lowercase()).collect();
    let types: Vec<QuantType> = TYPE_TABLE
        .iter()
        .map(|t| t.qtype)
        .filter(|&t| scalar_codec(t).is_some())
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.name().to_lowercase() == *f))
        .collect();

    println!("{:<6} {:>6} {:<11} {:>13} {:>13}", "type", "floats", "level", "quantize GB/s", "dequant GB/s");
    for &n in &SIZES {
        let x = test_data(n);
        let mut y = vec![0f32; n];
        for &qtype in &types {
            let mut q = vec![0u8; qtype.row_bytes(n).expect("n is a whole number of blocks")];
            for level in Level::ALL {
                let Some(codec) = codec_for(qtype, level).expect("implemented type") else { continue };
                let gbps = |s: f64| (n * 4) as f64 / s / 1e9;
                let encode = codec.quantize.expect("types with a scalar codec can be quantized");
                let tq = median_seconds(|| encode(black_box(&x), black_box(&mut q)));
                let tdq = median_seconds(|| (codec.dequantize)(black_box(&q), black_box(&mut y)));
                let label = |l: Level| if l == level { l.name().to_string() } else { format!("({l})") };
                println!(
                    "{:<6} {:>5}K {:<11} {:>13.2} {:>13.2}{}",
                    qtype.name(),
                    n >> 10,
                    level.name(),
                    gbps(tq),
                    gbps(tdq),
                    if codec.quantize_level == level && codec.dequantize_level == level {
                        String::new()
                    } else {
                        format!("   kernels: q {} dq {}", label(codec.quantize_level), label(codec.dequantize_level))
                    }
                );
            }
        }
    }
}
