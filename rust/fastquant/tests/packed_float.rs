//! Packed float GEMM (F32, F16, BF16 weights): every level gives the scalar reference's bits, the
//! scalar reference is the f64 product within the rounding of one FMA chain, and the layouts
//! (short last panel, missing rows, odd m and K, output stride) hold at every level.

use fastquant::formats::float::{bf16_to_fp32, fp16_to_fp32};
use fastquant::matmul::packed::{packed_kernel_for, PackedKernel, PANEL_ROWS};
use fastquant::simd::{available_levels, Level};
use fastquant::QuantType;

mod common;
use common::Rng32 as Rng;

const TYPES: [QuantType; 3] = [QuantType::F32, QuantType::F16, QuantType::BF16];

/// How a weight set's values are drawn.
#[derive(Clone, Copy, Debug)]
enum Values {
    Normal,
    /// Normal times 2^-20 (F16: subnormals).
    Tiny,
    /// Normal times 2^12 (F16: near its largest finite values; products far from f32 overflow).
    Huge,
    /// Every fourth value a zero of either sign.
    Zeros,
    /// Normal times 2^-130: f32 and bf16 subnormals (F16: zeros); their products underflow.
    Subnormal,
}

fn weight_value(rng: &mut Rng, values: Values, i: usize) -> f32 {
    let v = rng.normal();
    match values {
        Values::Normal => v,
        Values::Tiny => v * 2f32.powi(-20),
        Values::Huge => v * 2f32.powi(12),
        Values::Zeros if i.is_multiple_of(4) => [0.0, -0.0][i / 4 % 2],
        Values::Zeros => v,
        Values::Subnormal => v * 2f32.powi(-130),
    }
}

/// `n` weight rows of `k` elements of `qtype` (GGUF layout) and their values as f32.
fn weights(rng: &mut Rng, qtype: QuantType, n: usize, k: usize, values: Values) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = Vec::new();
    let mut exact = Vec::new();
    for i in 0..n * k {
        let v = weight_value(rng, values, i);
        match qtype {
            QuantType::F32 => {
                bytes.extend(v.to_le_bytes());
                exact.push(v);
            }
            QuantType::F16 => {
                let h = fastquant::formats::float::fp32_to_fp16(v);
                bytes.extend(h.to_le_bytes());
                exact.push(fp16_to_fp32(h));
            }
            _ => {
                let h = (v.to_bits() >> 16) as u16;
                bytes.extend(h.to_le_bytes());
                exact.push(bf16_to_fp32(h));
            }
        }
    }
    (bytes, exact)
}

/// Packs `n` rows into panels with `kernel`.
fn pack(kernel: &PackedKernel, rows: &[u8], n: usize, k: usize) -> Vec<u8> {
    let row_bytes = rows.len() / n;
    let panel_bytes = (kernel.panel_bytes)(k);
    let mut panels = vec![0xa5u8; n.div_ceil(PANEL_ROWS) * panel_bytes];
    for (chunk, panel) in rows.chunks(PANEL_ROWS * row_bytes).zip(panels.chunks_exact_mut(panel_bytes)) {
        (kernel.pack_panel)(k, chunk, row_bytes, panel);
    }
    panels
}

fn prepare(kernel: &PackedKernel, x: &[f32], k: usize) -> Vec<u8> {
    let mut acts = vec![0u8; x.len() / k * (kernel.act_row_bytes)(k)];
    (kernel.prepare_acts)(x, k, &mut acts);
    acts
}

/// Runs `kernel.gemm` into an output with a stride wider than `n` and checks it wrote nothing
/// outside `m x n`.
fn run(kernel: &PackedKernel, k: usize, panels: &[u8], acts: &[u8], m: usize, n: usize) -> Vec<f32> {
    let stride = n + 3;
    let mut out = vec![f32::NAN; m * stride];
    (kernel.gemm)(k, panels, acts, m, n, &mut out, stride);
    for (i, v) in out.iter().enumerate() {
        assert_eq!(i % stride >= n, v.is_nan(), "output {i} (stride {stride}, n {n}) written or not as it should");
    }
    out.chunks(stride).flat_map(|r| r[..n].to_vec()).collect()
}

const SHAPES: [(usize, usize, usize); 9] = [
    // (m, n, k)
    (1, 16, 1),
    (1, 1, 17),
    (3, 5, 15),
    (8, 48, 64),
    (9, 50, 100),
    (13, 33, 300),
    (17, 96, 257),
    (7, 130, 513),
    (24, 64, 1100),
];

#[test]
fn every_level_gives_the_scalar_bits() {
    let mut rng = Rng(0x0bad_cafe);
    for qtype in TYPES {
        let scalar = packed_kernel_for(qtype, Level::Scalar).unwrap();
        for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
            let values = [Values::Normal, Values::Tiny, Values::Huge, Values::Zeros, Values::Subnormal][s % 5];
            let (w, _) = weights(&mut rng, qtype, n, k, values);
            let x: Vec<f32> = (0..m * k).map(|i| rng.normal() * [1.0, 1e-3, 50.0][i % 3]).collect();
            let panels = pack(&scalar, &w, n, k);
            let acts = prepare(&scalar, &x, k);
            let want = run(&scalar, k, &panels, &acts, m, n);
            for level in available_levels() {
                let kernel = packed_kernel_for(qtype, level).unwrap();
                assert_eq!(pack(&kernel, &w, n, k), panels, "{qtype} panel layout at {level}");
                assert_eq!(prepare(&kernel, &x, k), acts, "{qtype} activation layout at {level}");
                let got = run(&kernel, k, &panels, &acts, m, n);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "{qtype} at {level} ({:?} code), {m}x{n}x{k} {values:?}",
                    kernel.level
                );
            }
        }
    }
}

#[test]
fn scalar_reference_is_the_f64_product_within_rounding() {
    let mut rng = Rng(0x5eed_f00d);
    for qtype in TYPES {
        let kernel = packed_kernel_for(qtype, Level::Scalar).unwrap();
        for (s, &(m, n, k)) in SHAPES.iter().enumerate() {
            let values = [Values::Normal, Values::Tiny, Values::Huge, Values::Zeros, Values::Subnormal][s % 5];
            let (w, exact) = weights(&mut rng, qtype, n, k, values);
            let x: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let got = run(&kernel, k, &pack(&kernel, &w, n, k), &prepare(&kernel, &x, k), m, n);
            for r in 0..m {
                for c in 0..n {
                    let terms = exact[c * k..(c + 1) * k].iter().zip(&x[r * k..(r + 1) * k]);
                    let (sum, magnitude) = terms.fold((0f64, 0f64), |(s, a), (&w, &x)| {
                        (s + w as f64 * x as f64, a + (w as f64 * x as f64).abs())
                    });
                    // One FMA chain of k terms: each step rounds once, by at most eps/2 of the
                    // running sum, itself at most the sum of magnitudes.
                    let bound = k as f64 * f32::EPSILON as f64 / 2.0 * magnitude + f64::from(f32::MIN_POSITIVE);
                    let g = got[r * n + c] as f64;
                    assert!((g - sum).abs() <= bound, "{qtype} {m}x{n}x{k} ({r},{c}): {g} vs {sum} (bound {bound})");
                }
            }
        }
    }
}

#[test]
fn float_types_have_a_packed_kernel_at_every_level() {
    for qtype in TYPES {
        for level in available_levels() {
            let kernel = packed_kernel_for(qtype, level).unwrap();
            assert!(kernel.level <= level, "{qtype}: {:?} code asked for {level}", kernel.level);
            if level >= Level::Avx2 {
                assert!(kernel.level >= Level::Avx2, "{qtype} has SIMD code at {level}");
            }
        }
    }
}
