use fastquant::simd::{codec_for, Level};
use fastquant::QuantType;
use std::time::Instant;
fn main() {
    let n = 4usize << 20;
    let mut s = 0x9e37_79b9_u32;
    let x: Vec<f32> = (0..n)
        .map(|_| {
            let mut t = 0.0;
            for _ in 0..4 {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                t += (s >> 8) as f32 / (1u32 << 24) as f32;
            }
            t - 2.0
        })
        .collect();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for t in [QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K] {
        if !args.is_empty() && !args.iter().any(|a| a.eq_ignore_ascii_case(t.name())) {
            continue;
        }
        let mut outs = Vec::new();
        let fast = args.iter().any(|a| a == "fast");
        for lvl in [Level::Scalar, Level::Avx2, Level::Avx512] {
            if fast && lvl == Level::Scalar {
                continue;
            }
            let c = codec_for(t, lvl).unwrap().unwrap();
            let mut y = vec![0u8; n / 256 * t.block_bytes()];
            let reps = if lvl == Level::Scalar { 1 } else { 5 };
            let st = Instant::now();
            for _ in 0..reps {
                (c.quantize.unwrap())(&x, &mut y);
            }
            let dt = st.elapsed().as_secs_f64() / reps as f64;
            println!("{} {:?}: {:.3} GB/s", t.name(), lvl, (n * 4) as f64 / dt / 1e9);
            outs.push(y);
        }
        if !fast {
            assert!(outs.iter().all(|o| *o == outs[0]), "mismatch");
        }
    }
}
