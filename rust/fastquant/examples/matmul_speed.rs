//! Quick timing of the matmul drivers on W [4096 x 14336] (the shape), for kernel work:
//! `cargo run --release --example matmul_speed -- q4_0 1,8,64 [level] [packed]` (`packed`: a
//! weight packed once, `PackedWeight`, as `Linear` keeps it). The benchmark that counts,
//! with ggml side by side, is `benches/bench_matmul.py`.

use std::time::Instant;

use fastquant::matmul::packed_driver::{matmul_packed, PackedWeight};
use fastquant::matmul::{matmul, MatmulWeight};
use fastquant::{quantize, FloatSlice, Level, QuantType, QuantizeOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let qtype = QuantType::from_name(args.get(1).map(String::as_str).unwrap_or("q4_0")).unwrap();
    let rows: Vec<usize> =
        args.get(2).map(String::as_str).unwrap_or("1,8").split(',').map(|s| s.parse().unwrap()).collect();
    let level = args.get(3).filter(|s| *s != "-").map(|s| Level::from_name(s).unwrap());
    let packed = args.get(4).is_some_and(|s| s == "packed");
    let (n, k) = (4096, 14336);
    let wf: Vec<f32> = (0..n * k).map(|i| ((i as f32) * 0.618).sin()).collect();
    let mut w = vec![0u8; n * qtype.row_bytes(k).unwrap()];
    quantize(qtype, FloatSlice::F32(&wf), k, &mut w, &QuantizeOptions::default()).unwrap();
    drop(wf);
    let weight = MatmulWeight { data: &w, qtype, rows: n, k };
    let packed = packed.then(|| {
        let (t, c) = (Instant::now(), thread_cpu_seconds());
        let p = PackedWeight::new(&weight).unwrap();
        let (wall, cpu) = (t.elapsed().as_secs_f64(), thread_cpu_seconds() - c);
        println!("{qtype} packed once in {:.3} ms (on-core time of this thread {:.3} ms)", wall * 1e3, cpu * 1e3);
        p
    });
    let run = |x: &[f32], out: &mut [f32]| match &packed {
        Some(p) => matmul_packed(p, x, out, level).unwrap(),
        None => matmul(&weight, x, out, level).unwrap(),
    };
    for m in rows {
        let x: Vec<f32> = (0..m * k).map(|i| ((i as f32) * 0.37).cos()).collect();
        let mut out = vec![0f32; m * n];
        run(&x, &mut out);
        let reps = if m > 64 { 2 } else { 10 };
        let mut best = f64::MAX;
        let mut best_cpu = f64::MAX;
        for _ in 0..reps {
            let (t, c) = (Instant::now(), thread_cpu_seconds());
            run(&x, &mut out);
            best = best.min(t.elapsed().as_secs_f64());
            best_cpu = best_cpu.min(thread_cpu_seconds() - c);
        }
        let flops = 2.0 * (m * n * k) as f64;
        println!(
            "{qtype} rows {m:4}: {:7.3} ms  {:6.1} GFLOP/s  {:5.1} GB/s of weights",
            best * 1e3,
            flops / best / 1e9,
            w.len() as f64 / best / 1e9
        );
        // On a busy machine the wall time includes waiting for a core; with one thread the time
        // this thread spent on a core is the kernel's own.
        println!(
            "               on-core time of this thread: {:7.3} ms  {:6.1} GFLOP/s",
            best_cpu * 1e3,
            flops / best_cpu / 1e9
        );
    }
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
