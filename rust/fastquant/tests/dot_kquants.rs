//! The K-quant / IQ4_XS x Q8_K dot kernels: every level against the scalar reference bit for bit,
//! the scalar reference against an f64 "dequantize, then dot", and against ggml's own `vec_dot`
//! (through ggml-python, when a Python with it is at hand).

use fastquant::formats::float::fp32_to_fp16;
use fastquant::formats::scalar_dequantizer;
use fastquant::matmul::dot_kquants::{dot_kquant_kernel, kquant_layout, superblock_sums, Q8K_BYTES};
use fastquant::simd::{available_levels, Level};
use fastquant::QuantType;

mod common;
use common::Rng;

const TYPES: [QuantType; 8] = [
    QuantType::Q2_K,
    QuantType::Q3_K,
    QuantType::Q4_K,
    QuantType::Q5_K,
    QuantType::Q6_K,
    QuantType::IQ4_XS,
    QuantType::TQ1_0,
    QuantType::TQ2_0,
];

/// Where the fp16 scales (d, and dmin where there is one) of a super-block sit.
fn scale_offsets(qtype: QuantType) -> &'static [usize] {
    match qtype {
        QuantType::Q2_K => &[80, 82],
        QuantType::Q3_K => &[108],
        QuantType::Q4_K | QuantType::Q5_K => &[0, 2],
        QuantType::Q6_K => &[208],
        QuantType::IQ4_XS => &[0],
        QuantType::TQ1_0 => &[52],
        QuantType::TQ2_0 => &[64],
        _ => unreachable!(),
    }
}

/// A random fp16 scale: mostly ordinary magnitudes of either sign, sometimes 0, -0, the largest
/// and smallest (subnormal) fp16; `extremes: false` keeps to finite products the f64 check can
/// bound.
fn fp16_scale(rng: &mut Rng, extremes: bool) -> u16 {
    match rng.below(if extremes { 8 } else { 5 }) {
        0 => 0,
        1 => fp32_to_fp16(-0.0),
        5 => 0x7bff, // 65504
        6 => 0xfbff, // -65504
        7 => 0x0001, // the smallest subnormal
        _ => fp32_to_fp16((rng.uniform() * 2.0 - 1.0) * 0.01 * (1 << rng.below(8)) as f32),
    }
}

/// `rows` of random weight super-blocks: random code and scale bytes, random fp16 scales.
fn weight_row(rng: &mut Rng, qtype: QuantType, n: usize, extremes: bool) -> Vec<u8> {
    let bytes = kquant_layout(qtype).unwrap().block_bytes;
    let mut w = vec![0u8; n / 256 * bytes];
    rng.bytes(&mut w);
    for block in w.chunks_exact_mut(bytes) {
        for &at in scale_offsets(qtype) {
            block[at..at + 2].copy_from_slice(&fp16_scale(rng, extremes).to_le_bytes());
        }
    }
    w
}

/// Random Q8_K rows, `row_bytes` apart: codes anywhere in -128..=127 (often at the ends), an f32
/// scale, consistent bsums.
fn act_rows(rng: &mut Rng, n: usize, rows: usize, row_bytes: usize) -> Vec<u8> {
    let mut a = vec![0u8; rows * row_bytes];
    rng.bytes(&mut a);
    for r in 0..rows {
        for block in a[r * row_bytes..][..n / 256 * Q8K_BYTES].chunks_exact_mut(Q8K_BYTES) {
            let d = match rng.below(10) {
                0 => 0.0,
                _ => (rng.uniform() + 0.01) * 0.02,
            };
            block[..4].copy_from_slice(&f32::to_le_bytes(d));
            let ends = rng.below(3) == 0;
            for q in &mut block[4..260] {
                if ends {
                    *q = [0x80, 0x7f, 0x81, 0][rng.below(4)];
                }
            }
            for j in 0..16 {
                let sum: i32 = block[4 + 16 * j..][..16].iter().map(|&q| q as i8 as i32).sum();
                block[260 + 2 * j..][..2].copy_from_slice(&(sum as i16).to_le_bytes());
            }
        }
    }
    a
}

/// A shape: n, rows, the activation row stride (sometimes padded).
fn shape(rng: &mut Rng) -> (usize, usize, usize) {
    let n = 256 * (1 + rng.below(16));
    let rows = 1 + rng.below(8);
    let row_bytes = n / 256 * Q8K_BYTES + if rng.below(2) == 0 { 0 } else { rng.below(300) };
    (n, rows, row_bytes)
}

#[test]
fn every_level_gives_the_scalar_bits() {
    let mut rng = Rng(0x5eed_0001);
    for qtype in TYPES {
        let scalar = dot_kquant_kernel(qtype, Level::Scalar).unwrap();
        for case in 0..60 {
            let (n, rows, row_bytes) = shape(&mut rng);
            // At any byte offset: the kernels may not assume aligned rows.
            let (w_at, a_at) = (rng.below(64), rng.below(64));
            let mut w = vec![0u8; w_at];
            w.extend(weight_row(&mut rng, qtype, n, true));
            let mut a = vec![0u8; a_at];
            a.extend(act_rows(&mut rng, n, rows, row_bytes));
            let (w, a) = (&w[w_at..], &a[a_at..]);
            let mut want = vec![0f32; rows];
            scalar(n, w, a, row_bytes, &mut want);
            for level in available_levels() {
                let kernel = dot_kquant_kernel(qtype, level).unwrap();
                let mut got = vec![f32::NAN; rows];
                kernel(n, w, a, row_bytes, &mut got);
                for r in 0..rows {
                    assert_eq!(
                        got[r].to_bits(),
                        want[r].to_bits(),
                        "{} at {level}, case {case}: n {n}, row {r} of {rows}: {} != {}",
                        qtype.name(),
                        got[r],
                        want[r]
                    );
                }
            }
        }
    }
}

#[test]
fn every_level_computes_each_row_as_if_alone() {
    // A row's result must not depend on the other rows of the call.
    let mut rng = Rng(0x5eed_0002);
    for qtype in TYPES {
        for level in available_levels() {
            let kernel = dot_kquant_kernel(qtype, level).unwrap();
            let (n, rows, row_bytes) = (256 * 11, 8, 11 * Q8K_BYTES);
            let w = weight_row(&mut rng, qtype, n, false);
            let a = act_rows(&mut rng, n, rows, row_bytes);
            let mut all = vec![0f32; rows];
            kernel(n, &w, &a, row_bytes, &mut all);
            for r in 0..rows {
                let mut one = [0f32];
                kernel(n, &w, &a[r * row_bytes..(r + 1) * row_bytes], row_bytes, &mut one);
                assert_eq!(one[0].to_bits(), all[r].to_bits(), "{} at {level}, row {r}", qtype.name());
            }
        }
    }
}

#[test]
fn scalar_matches_an_f64_dot_of_the_dequantized_values() {
    let mut rng = Rng(0x5eed_0003);
    for qtype in TYPES {
        let layout = kquant_layout(qtype).unwrap();
        let scalar = dot_kquant_kernel(qtype, Level::Scalar).unwrap();
        let dequantize = scalar_dequantizer(qtype).unwrap();
        for _ in 0..40 {
            let (n, rows, row_bytes) = shape(&mut rng);
            let w = weight_row(&mut rng, qtype, n, false);
            let a = act_rows(&mut rng, n, rows, row_bytes);
            let mut x = vec![0f32; n];
            dequantize(&w, &mut x);
            let mut got = vec![0f32; rows];
            scalar(n, &w, &a, row_bytes, &mut got);
            for r in 0..rows {
                let mut exact = 0f64;
                // The magnitude the float steps round against: per super-block |d d_a isum| and
                // |dmin d_a msum| (or |d d_a (isum - msum)|), plus the dequantized products.
                let mut magnitude = 0f64;
                for (i, block) in w.chunks_exact(layout.block_bytes).enumerate() {
                    let act = &a[r * row_bytes + i * Q8K_BYTES..][..Q8K_BYTES];
                    let d_a = f32::from_le_bytes(act[..4].try_into().unwrap()) as f64;
                    for e in 0..256 {
                        let term = x[256 * i + e] as f64 * d_a * act[4 + e] as i8 as f64;
                        exact += term;
                        magnitude += term.abs();
                    }
                    let sb = (layout.unpack)(block);
                    let (isum, msum) = superblock_sums(&sb, act);
                    magnitude += if layout.separate_min {
                        (sb.d as f64 * d_a * isum as f64).abs() + (sb.dmin as f64 * d_a * msum as f64).abs()
                    } else {
                        (sb.d as f64 * d_a * (isum - msum) as f64).abs()
                    };
                }
                // A few roundings of 2^-24 each on every path (f32 dequantized values, the
                // int -> f32 conversions, the products, the partial sums).
                let bound = 8.0 * f32::EPSILON as f64 * magnitude + 1e-30;
                assert!(
                    (got[r] as f64 - exact).abs() <= bound,
                    "{}: n {n} row {r}: {} vs {exact} (bound {bound})",
                    qtype.name(),
                    got[r]
                );
            }
        }
    }
}

#[test]
fn other_types_have_no_kernel_here() {
    for qtype in [QuantType::Q4_0, QuantType::Q8_0, QuantType::F32, QuantType::IQ4_NL, QuantType::Q8_K] {
        assert!(dot_kquant_kernel(qtype, Level::Scalar).is_none(), "{}", qtype.name());
        assert!(kquant_layout(qtype).is_none());
    }
}

#[test]
#[should_panic(expected = "multiple of 256")]
fn partial_super_blocks_are_refused() {
    let kernel = dot_kquant_kernel(QuantType::Q4_K, Level::Avx512Vnni).unwrap();
    kernel(300, &[0u8; 144], &[0u8; Q8K_BYTES], Q8K_BYTES, &mut [0f32]);
}

/// Runs ggml's `vec_dot` (ggml-python, `ggml_get_type_traits_cpu`) for one weight row against
/// activation rows that ggml's own Q8_K `from_float` makes: args `type_id n rows dir`; reads
/// `dir/weight`, `dir/x` (rows x n f32), writes `dir/q8k` (the activation blocks) and `dir/dots`.
const GGML_VEC_DOT: &str = r#"
import ctypes, sys
import numpy as np
import ggml
ggml.ggml_cpu_init()
type_id, n, rows, d = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
w = np.fromfile(d + "/weight", dtype=np.uint8)
x = np.fromfile(d + "/x", dtype=np.float32).reshape(rows, n)
traits = ggml.ggml_get_type_traits_cpu(type_id).contents
assert traits.vec_dot_type == ggml.GGML_TYPE_Q8_K
q8k = ggml.ggml_get_type_traits_cpu(ggml.GGML_TYPE_Q8_K).contents
row_bytes = ggml.ggml_row_size(ggml.GGML_TYPE_Q8_K, n)
acts = np.zeros((rows, row_bytes), dtype=np.uint8)
dots = np.zeros(rows, dtype=np.float32)
for r in range(rows):
    xr = np.ascontiguousarray(x[r])
    q8k.from_float(xr.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), acts[r].ctypes.data_as(ctypes.c_void_p), n)
    s = (ctypes.c_float * 1)()
    traits.vec_dot(n, s, 0, w.ctypes.data_as(ctypes.c_void_p), 0,
                   acts[r].ctypes.data_as(ctypes.c_void_p), 0, 1)
    dots[r] = s[0]
acts.tofile(d + "/q8k")
dots.tofile(d + "/dots")
"#;

/// A Python that has ggml-python: `FASTQUANT_TEST_PYTHON`, else the repository's `.venv`, else
/// `python3`; `None` if none of them can import ggml.
fn python_with_ggml() -> Option<String> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/python");
    let candidates = [std::env::var("FASTQUANT_TEST_PYTHON").ok(), Some(venv.to_owned()), Some("python3".to_owned())];
    candidates.into_iter().flatten().find(|py| {
        std::process::Command::new(py).args(["-c", "import ggml"]).output().is_ok_and(|o| o.status.success())
    })
}

#[test]
fn matches_ggml_vec_dot() {
    let Some(python) = python_with_ggml() else {
        eprintln!("SKIPPED: no Python with ggml-python (set FASTQUANT_TEST_PYTHON)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("fastquant-dot-kquants-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x5eed_0004);
    for qtype in TYPES {
        for &(n, rows) in &[(256, 3), (4096, 2), (256 * 13, 5)] {
            let w = weight_row(&mut rng, qtype, n, false);
            // Activations with an outlier now and then (the -127 / 127 ends of Q8_K).
            let x: Vec<f32> =
                (0..rows * n).map(|_| (rng.uniform() - 0.5) * if rng.below(50) == 0 { 40.0 } else { 1.0 }).collect();
            std::fs::write(dir.join("weight"), &w).unwrap();
            std::fs::write(dir.join("x"), x.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
            let status = std::process::Command::new(&python)
                .args(["-c", GGML_VEC_DOT, &qtype.id().to_string(), &n.to_string(), &rows.to_string()])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "ggml-python vec_dot failed");
            let acts = std::fs::read(dir.join("q8k")).unwrap();
            let ggml_dots: Vec<f32> = std::fs::read(dir.join("dots"))
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let row_bytes = n / 256 * Q8K_BYTES;
            assert_eq!(acts.len(), rows * row_bytes);
            let layout = kquant_layout(qtype).unwrap();
            for level in available_levels() {
                let mut ours = vec![0f32; rows];
                dot_kquant_kernel(qtype, level).unwrap()(n, &w, &acts, row_bytes, &mut ours);
                for r in 0..rows {
                    // Both sum exact integers; they differ only in the float steps after them.
                    let mut magnitude = 0f64;
                    for (i, block) in w.chunks_exact(layout.block_bytes).enumerate() {
                        let act = &acts[r * row_bytes + i * Q8K_BYTES..][..Q8K_BYTES];
                        let d_a = f32::from_le_bytes(act[..4].try_into().unwrap()) as f64;
                        let sb = (layout.unpack)(block);
                        let (isum, msum) = superblock_sums(&sb, act);
                        magnitude += (sb.d as f64 * d_a * isum as f64).abs()
                            + (if layout.separate_min { sb.dmin } else { sb.d } as f64 * d_a * msum as f64).abs();
                    }
                    let bound = 8.0 * f32::EPSILON as f64 * magnitude + 1e-30;
                    let diff = (ours[r] as f64 - ggml_dots[r] as f64).abs();
                    assert!(
                        diff <= bound,
                        "{} at {level}, n {n} row {r}: ours {} ggml {} (bound {bound})",
                        qtype.name(),
                        ours[r],
                        ggml_dots[r]
                    );
                }
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
