//! Matmul dot kernels and drivers: every weight type at every SIMD level gives the scalar
//! reference's bits; the scalar reference agrees with an f64 dot of the dequantized operands; the
//! drivers agree across levels and with an f64 matmul of the dequantized weight.

use fastquant::formats::float::{fp16_to_fp32, fp32_to_fp16};
use fastquant::formats::mxfp4::KVALUES_MXFP4;
use fastquant::formats::scalar_codec;
use fastquant::matmul::dot::{activation_type, dot_kernel_for, scalar_vec_dot};
use fastquant::matmul::{matmul, MatmulWeight};
use fastquant::simd::{available_levels, Level};
use fastquant::{Error, QuantType};

mod common;
use common::Rng32 as Rng;

/// The weight types the dot table covers here (the K-quants come with their own tests).
const TYPES: [QuantType; 10] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::IQ4_NL,
    QuantType::MXFP4,
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
];

fn quantize(qtype: QuantType, x: &[f32]) -> Vec<u8> {
    let (q, _) = scalar_codec(qtype).unwrap();
    let mut out = vec![0u8; qtype.row_bytes(x.len()).unwrap()];
    q(x, &mut out);
    out
}

fn dequantize(qtype: QuantType, bytes: &[u8], n: usize) -> Vec<f32> {
    let (_, dq) = scalar_codec(qtype).unwrap();
    let mut out = vec![0f32; n];
    dq(bytes, &mut out);
    out
}

/// Random bytes of `nb` blocks, made valid the way ggml's quantizers keep them: finite fp16 scales
/// (random magnitudes, zeros and subnormals too) and Q8 codes in -127..=127. MXFP4 exponents stay
/// where no product overflows (2^-28..2^22, plus the subnormal halves e = 0 and 1), and some of
/// its blocks have all-zero codes; [`mxfp4_special_blocks`] takes e = 254.
fn random_blocks(rng: &mut Rng, qtype: QuantType, n: usize) -> Vec<u8> {
    let bytes = qtype.row_bytes(n).unwrap();
    let mut b: Vec<u8> = (0..bytes).map(|_| rng.next_u32() as u8).collect();
    match qtype {
        QuantType::F32 => {
            for c in b.chunks_exact_mut(4) {
                c.copy_from_slice(&(rng.normal() * 4.0).to_le_bytes());
            }
        }
        QuantType::F16 => {
            for c in b.chunks_exact_mut(2) {
                c.copy_from_slice(&rng.fp16());
            }
        }
        QuantType::BF16 => {
            for c in b.chunks_exact_mut(2) {
                c.copy_from_slice(&(((rng.normal() * 8.0).to_bits() >> 16) as u16).to_le_bytes());
            }
        }
        QuantType::MXFP4 => {
            for blk in b.chunks_exact_mut(qtype.block_bytes()) {
                blk[0] = match rng.next_u32() % 16 {
                    0 => 0,
                    1 => 1,
                    _ => 100 + (rng.next_u32() % 51) as u8,
                };
                if rng.next_u32().is_multiple_of(8) {
                    blk[1..].fill(0);
                }
            }
        }
        _ => {
            let block = qtype.block_bytes();
            let halves = if matches!(qtype, QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q8_1) { 2 } else { 1 };
            for blk in b.chunks_exact_mut(block) {
                for h in 0..halves {
                    let v = rng.fp16();
                    blk[2 * h..2 * h + 2].copy_from_slice(&v);
                }
                if matches!(qtype, QuantType::Q8_0 | QuantType::Q8_1) {
                    for c in &mut blk[2 * halves..] {
                        if *c == 0x80 {
                            *c = 0x81;
                        }
                    }
                }
                if qtype == QuantType::Q8_1 {
                    // s = d * sum(q), as the quantizer writes it (d small enough for s to be finite).
                    let d = fp16_to_fp32(u16::from_le_bytes([blk[0], blk[1]])).clamp(-8.0, 8.0);
                    blk[0..2].copy_from_slice(&fp32_to_fp16(d).to_le_bytes());
                    let sum: i32 = blk[4..].iter().map(|&c| c as i8 as i32).sum();
                    blk[2..4].copy_from_slice(&fp32_to_fp16(sum as f32 * d).to_le_bytes());
                }
            }
        }
    }
    b
}

/// Activation rows for `weight`: half from the crate's quantizer, half random valid blocks.
fn activations(rng: &mut Rng, weight: QuantType, n: usize, rows: usize) -> (Vec<u8>, usize) {
    let act = activation_type(weight).unwrap();
    let row_bytes = act.row_bytes(n).unwrap();
    let mut out = Vec::with_capacity(rows * row_bytes);
    for r in 0..rows {
        if r % 2 == 0 || act == QuantType::F32 {
            let scale = [1.0, 1e-3, 40.0][r % 3];
            let x: Vec<f32> = (0..n).map(|_| rng.normal() * scale).collect();
            out.extend(quantize(act, &x));
        } else {
            out.extend(random_blocks(rng, act, n));
        }
    }
    (out, row_bytes)
}

fn lengths(qtype: QuantType) -> Vec<usize> {
    if qtype.block_elems() == 1 {
        vec![1, 15, 16, 17, 64, 100, 256 + 13, 2500, 4096]
    } else {
        // Every count of blocks modulo the 4 slots and the groups of 8, short rows and long ones.
        vec![32, 64, 96, 32 * 5, 32 * 7, 32 * 8, 32 * 9, 32 * 13, 32 * 18, 32 * 37, 4096, 32 * 449]
    }
}

#[test]
fn every_level_gives_the_scalar_bits() {
    let mut rng = Rng(0x1234_5678);
    for qtype in TYPES {
        let scalar = scalar_vec_dot(qtype).unwrap();
        for n in lengths(qtype) {
            for rows in 1..=8 {
                let weight = if rows % 2 == 0 && qtype.block_elems() > 1 {
                    random_blocks(&mut rng, qtype, n)
                } else {
                    quantize(qtype, &(0..n).map(|_| rng.normal()).collect::<Vec<_>>())
                };
                let (acts, row_bytes) = activations(&mut rng, qtype, n, rows);
                let mut want = vec![0f32; rows];
                scalar(n, &weight, &acts, row_bytes, &mut want);
                for level in available_levels() {
                    let kernel = dot_kernel_for(qtype, level).unwrap().unwrap();
                    // The code that runs at each level (so no level is silently the scalar one):
                    // the quantized types have AVX2 and VNNI kernels, the float ones AVX2 and AVX-512.
                    let expected = match (level, qtype.block_elems() > 1) {
                        (Level::Avx512, true) => Level::Avx2,
                        (Level::Avx512Vnni, false) => Level::Avx512,
                        _ => level,
                    };
                    assert_eq!(kernel.level, expected, "{qtype} at {level}");
                    let mut got = vec![f32::NAN; rows];
                    (kernel.vec_dot)(n, &weight, &acts, row_bytes, &mut got);
                    let (w, g): (Vec<u32>, Vec<u32>) =
                        (want.iter().map(|v| v.to_bits()).collect(), got.iter().map(|v| v.to_bits()).collect());
                    assert_eq!(g, w, "{qtype} at {level} ({:?} code), n={n}, rows={rows}", kernel.level);
                }
            }
        }
    }
}

#[test]
fn scalar_reference_is_the_dot_of_the_dequantized_operands() {
    let mut rng = Rng(0xdead_beef);
    for qtype in TYPES {
        let scalar = scalar_vec_dot(qtype).unwrap();
        let act = activation_type(qtype).unwrap();
        for n in lengths(qtype) {
            let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
            let weight = quantize(qtype, &x);
            let (acts, row_bytes) = activations(&mut rng, qtype, n, 3);
            let mut got = [0f32; 3];
            scalar(n, &weight, &acts, row_bytes, &mut got);
            let w = dequantize(qtype, &weight, n);
            for (r, g) in got.iter().enumerate() {
                let a = dequantize(act, &acts[r * row_bytes..(r + 1) * row_bytes], n);
                let exact: f64 = w.iter().zip(&a).map(|(&w, &a)| w as f64 * a as f64).sum();
                let magnitude: f64 = w.iter().zip(&a).map(|(&w, &a)| (w as f64 * a as f64).abs()).sum();
                // f32 accumulation of n terms, plus Q8_1's fp16 s = d * sum(q) (relative 2^-11).
                let offset_term = if act == QuantType::Q8_1 { 1e-3 * magnitude } else { 0.0 };
                let bound = 1e-5 * magnitude + offset_term + 1e-30;
                assert!((*g as f64 - exact).abs() <= bound, "{qtype} n={n} row {r}: {g} vs {exact} (bound {bound})");
            }
        }
    }
}

/// f64 `x @ dequantize(w).T`.
fn reference(qtype: QuantType, w: &[u8], n_out: usize, k: usize, x: &[f32]) -> Vec<f64> {
    let wf = dequantize(qtype, w, n_out * k);
    let m = x.len() / k;
    let mut out = vec![0f64; m * n_out];
    for i in 0..m {
        for j in 0..n_out {
            out[i * n_out + j] = (0..k).map(|t| x[i * k + t] as f64 * wf[j * k + t] as f64).sum();
        }
    }
    out
}

#[test]
fn matmul_agrees_across_levels_and_with_f64() {
    let mut rng = Rng(0x0bad_cafe);
    for qtype in TYPES {
        for (m, n_out, k) in [
            (1, 1, 32),
            (1, 70, 256),
            (3, 33, 96),
            (8, 17, 640),
            (9, 40, 128),
            (37, 71, 320),
            (13, 11, 4256),
            (5, 9, 6144),
        ] {
            let wf: Vec<f32> = (0..n_out * k).map(|_| rng.normal()).collect();
            let w = quantize(qtype, &wf);
            let x: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
            let weight = MatmulWeight { data: &w, qtype, rows: n_out, k };
            let want = reference(qtype, &w, n_out, k, &x);
            let mut first: Option<Vec<u32>> = None;
            for level in available_levels() {
                let mut out = vec![f32::NAN; m * n_out];
                matmul(&weight, &x, &mut out, Some(level)).unwrap();
                let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                match &first {
                    None => first = Some(bits),
                    Some(f) => assert_eq!(&bits, f, "{qtype} {m}x{n_out}x{k} at {level}"),
                }
                // The 8-bit activation rounding: |x - xq| <= amax/254 per element of each block.
                for i in 0..m {
                    let xa = &x[i * k..(i + 1) * k];
                    let act_err: f64 = if qtype.block_elems() == 1 {
                        1e-5 * xa.iter().map(|v| v.abs() as f64).sum::<f64>()
                    } else {
                        xa.chunks(32).map(|b| b.iter().fold(0f32, |a, v| a.max(v.abs())) as f64 / 254.0 * 32.0).sum()
                    };
                    for j in 0..n_out {
                        let wmax =
                            dequantize(qtype, &w[j * qtype.row_bytes(k).unwrap()..][..qtype.row_bytes(k).unwrap()], k)
                                .iter()
                                .fold(0f32, |a, v| a.max(v.abs())) as f64;
                        let bound = act_err * wmax * 1.01 + 1e-3;
                        let got = out[i * n_out + j] as f64;
                        assert!((got - want[i * n_out + j]).abs() <= bound, "{qtype} at {level} [{i},{j}]");
                    }
                }
            }
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let w = quantize(QuantType::Q4_0, &[0.5; 64]);
    let weight = MatmulWeight { data: &w, qtype: QuantType::Q4_0, rows: 1, k: 64 };
    let mut out = [0f32; 1];
    assert!(matches!(matmul(&weight, &[0.0; 63], &mut out, None), Err(Error::Size { .. })));
    assert!(matches!(matmul(&weight, &[0.0; 64], &mut [0f32; 2], None), Err(Error::Size { .. })));
    let short = MatmulWeight { data: &w[..17], ..weight };
    assert!(matches!(matmul(&short, &[0.0; 64], &mut out, None), Err(Error::Size { .. })));
    let odd_k = MatmulWeight { data: &w, qtype: QuantType::Q4_0, rows: 1, k: 48 };
    assert!(matmul(&odd_k, &[0.0; 48], &mut out, None).is_err());
    let q8k = MatmulWeight { data: &[0u8; 292], qtype: QuantType::Q8_K, rows: 1, k: 256 };
    assert!(matches!(matmul(&q8k, &[0.0; 256], &mut out, None), Err(Error::Unsupported { .. })));
    let mut nan = vec![0.0f32; 64];
    nan[7] = f32::NAN;
    assert!(matches!(matmul(&weight, &nan, &mut out, None), Err(Error::NonFinite { index: 7, .. })));
    assert!(dot_kernel_for(QuantType::Q4_0, Level::Scalar).unwrap().is_some());
}

/// MXFP4 blocks at the ends of the E8M0 range (e = 0 and 1, whose halved scales are f32
/// subnormals, e = 254, the largest a quantizer writes for finite input) and with all-zero codes:
/// every level gives the scalar bits, and the scalar result is the f64 dot of the dequantized
/// operands. The activations are small enough that 2^126 times them stays finite.
#[test]
fn mxfp4_special_blocks() {
    let mut rng = Rng(0x5eed_f0a4);
    let qtype = QuantType::MXFP4;
    let scalar = scalar_vec_dot(qtype).unwrap();
    for n in [32, 64, 96, 32 * 9, 32 * 37] {
        for (case, exponents) in
            [[0u8, 1, 0, 1], [254, 254, 254, 254], [0, 254, 1, 128], [128, 127, 129, 126]].iter().enumerate()
        {
            let mut weight = random_blocks(&mut rng, qtype, n);
            for (b, blk) in weight.chunks_exact_mut(qtype.block_bytes()).enumerate() {
                blk[0] = exponents[b % 4];
                if case == 3 && b % 3 == 0 {
                    blk[1..].fill(0);
                }
            }
            let rows = 3;
            let mut acts = Vec::new();
            for r in 0..rows {
                let scale = [1e-4f32, 1.0, 1e-6][r];
                let x: Vec<f32> = (0..n).map(|_| rng.normal() * scale).collect();
                acts.extend(quantize(QuantType::Q8_0, &x));
            }
            let row_bytes = QuantType::Q8_0.row_bytes(n).unwrap();
            let mut want = vec![0f32; rows];
            scalar(n, &weight, &acts, row_bytes, &mut want);
            // In f64: 12 * 2^126 is past f32::MAX, so the f32 dequantizer would give inf.
            let w: Vec<f64> = weight
                .chunks_exact(qtype.block_bytes())
                .flat_map(|blk| {
                    let d = 2f64.powi(blk[0] as i32 - 128);
                    let code = |j: usize| if j < 16 { blk[1 + j] & 0x0f } else { blk[1 + j - 16] >> 4 };
                    (0..32).map(move |j| KVALUES_MXFP4[code(j) as usize] as f64 * d)
                })
                .collect();
            for (r, g) in want.iter().enumerate() {
                let a = dequantize(QuantType::Q8_0, &acts[r * row_bytes..(r + 1) * row_bytes], n);
                let exact: f64 = w.iter().zip(&a).map(|(&w, &a)| w * a as f64).sum();
                if !g.is_finite() {
                    // e = 254 with activations near 1: a lane passes f32::MAX, so the result is
                    // +-inf or NaN, as in ggml; only a dot that large may do that.
                    assert!(exact.abs() > 2f64.powi(110), "case {case} n={n} row {r}: {g} for {exact}");
                    continue;
                }
                let magnitude: f64 = w.iter().zip(&a).map(|(&w, &a)| (w * a as f64).abs()).sum();
                // Subnormal block scales (e = 0, 1 against small activations) round d_w * d_a to
                // a multiple of 2^-149, an error of at most 2^-150 times the block's |integer sum|.
                let max_block_sum = 12.0 * 127.0 * 32.0;
                let bound = 1e-5 * magnitude + (n / 32) as f64 * 2f64.powi(-150) * max_block_sum;
                assert!((*g as f64 - exact).abs() <= bound, "case {case} n={n} row {r}: {g} vs {exact}");
            }
            for level in available_levels() {
                let kernel = dot_kernel_for(qtype, level).unwrap().unwrap();
                let mut got = vec![f32::NAN; rows];
                (kernel.vec_dot)(n, &weight, &acts, row_bytes, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    // NaN (inf - inf across lanes) in the same place; every other value bit for bit.
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "case {case} at {level}, n={n}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
