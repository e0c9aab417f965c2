//! The f32 multiply-add peak of one core, for reading the attention and float-matmul figures
//! against what the hardware can do: `cargo run --release --example fma_peak [seconds]`.
//!
//! Twelve independent chains of 512-bit FMAs (AVX-512; 256-bit AVX2 FMAs where there is no
//! AVX-512) keep every FMA pipe busy whatever its latency, with nothing else in the loop; GFLOP/s
//! counts a multiply-add as two operations, as the benchmarks do. The best of several runs is the
//! peak; timings on a shared machine only ever err low.

use std::time::Instant;

/// Independent accumulator chains: more than latency x pipes on every core this targets.
const CHAINS: usize = 12;
/// FMAs per chain between two looks at the clock.
const STEPS: u64 = 1 << 20;

fn main() {
    let seconds: f64 = std::env::args().nth(1).map(|s| s.parse().expect("seconds")).unwrap_or(3.0);
    let Some((lanes, run)) = kernel() else {
        println!("no AVX2/FMA on this CPU");
        return;
    };
    let start = Instant::now();
    let mut best = 0f64;
    let mut sink = 0f32;
    while start.elapsed().as_secs_f64() < seconds {
        let t = Instant::now();
        sink += run(STEPS);
        let flops = 2.0 * (STEPS * CHAINS as u64 * lanes) as f64;
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    println!("one core, f32 FMA, {lanes} lanes: peak {best:.1} GFLOP/s (checksum {sink})");
}

/// A loop of `steps` FMA rounds over the chains, returning a checksum.
type ChainsFn = fn(u64) -> f32;

/// The widest FMA loop this CPU runs, with its lanes per instruction.
fn kernel() -> Option<(u64, ChainsFn)> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F was detected just above.
            return Some((16, |steps| unsafe { x86::chains_avx512(steps) }));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA were detected just above.
            return Some((8, |steps| unsafe { x86::chains_avx2(steps) }));
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// `steps` rounds of one FMA on each of the chains; the multiplier goes through `black_box`
    /// every 1024 rounds so the loop cannot be folded away.
    #[target_feature(enable = "avx512f")]
    pub fn chains_avx512(steps: u64) -> f32 {
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        let mut b = _mm512_set1_ps(0.999_9);
        let c = _mm512_set1_ps(1e-4);
        for _ in 0..steps / 1024 {
            b = std::hint::black_box(b);
            for _ in 0..1024 {
                for a in acc.iter_mut() {
                    *a = _mm512_fmadd_ps(*a, b, c);
                }
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    /// [`chains_avx512`] with 256-bit registers.
    #[target_feature(enable = "avx2,fma")]
    pub fn chains_avx2(steps: u64) -> f32 {
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        let mut b = _mm256_set1_ps(0.999_9);
        let c = _mm256_set1_ps(1e-4);
        for _ in 0..steps / 1024 {
            b = std::hint::black_box(b);
            for _ in 0..1024 {
                for a in acc.iter_mut() {
                    *a = _mm256_fmadd_ps(*a, b, c);
                }
            }
        }
        let mut lanes = [0f32; 8];
        for a in acc {
            let mut v = [0f32; 8];
            // SAFETY: `v` is 8 writable floats; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_ps(v.as_mut_ptr(), a) };
            lanes.iter_mut().zip(v).for_each(|(s, x)| *s += x);
        }
        lanes.iter().sum()
    }
}
