//! Packed GEMM: for the legacy types (the K-quants' and float types' kernels have their own tests,
//! `packed_kquants.rs` and `packed_float.rs`), every level's `gemm` gives the scalar `gemm`'s bits
//! and the scalar `gemm` agrees with an f64 dot of the dequantized operands; for every type with a
//! `PackedKernel`, the driver (a weight packed once, and packed on the fly inside `matmul`) gives
//! the kernel's bits.

use fastquant::formats::scalar_codec;
use fastquant::matmul::dot::activation_type;
use fastquant::matmul::packed::{packed_kernel_for, PackedKernel, PANEL_ROWS};
use fastquant::matmul::packed_driver::{has_packed_kernel, matmul_packed, PackedWeight};
use fastquant::matmul::{matmul, MatmulWeight};
use fastquant::simd::{available_levels, Level};
use fastquant::{Error, QuantType, TYPE_TABLE};

mod common;
use common::Rng32 as Rng;

/// Every type the packed table covers.
fn packed_types() -> Vec<QuantType> {
    TYPE_TABLE.iter().map(|t| t.qtype).filter(|&t| has_packed_kernel(t)).collect()
}

/// The Q8_0/Q8_1-paired legacy types, whose kernels (`packed_legacy.rs`) this file's generators
/// know.
const LEGACY: [QuantType; 7] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::IQ4_NL,
    QuantType::MXFP4,
];

/// Elements of K per "block" of the shapes below: 32, or a K-quant's 256-element super-block.
fn k_unit(qtype: QuantType) -> usize {
    qtype.block_elems().max(32)
}

/// Weight rows for the driver test: random legacy blocks, or for the other types their own
/// quantizer's rows of normal data (every byte pattern of a K-quant or float is not a valid weight).
fn driver_weight(rng: &mut Rng, qtype: QuantType, rows: usize, k: usize) -> Vec<u8> {
    if LEGACY.contains(&qtype) {
        return random_weight(rng, qtype, rows, k);
    }
    let wf: Vec<f32> = (0..rows * k).map(|_| rng.normal() * 0.1).collect();
    let mut w = vec![0u8; rows * qtype.row_bytes(k).unwrap()];
    (scalar_codec(qtype).unwrap().0)(&wf, &mut w);
    w
}

fn scalar_kernel(qtype: QuantType) -> PackedKernel {
    packed_kernel_for(qtype, Level::Scalar).unwrap()
}

/// Random valid weight rows: random bytes, finite fp16 scales of every magnitude (zeros and
/// subnormals too), 8-bit codes in -127..=127; some blocks all zero, some at the code extremes.
/// MXFP4's exponents are mostly moderate (2^-28..2^22), one in eight at the ends of E8M0 (0 and 1,
/// subnormal halves; 254 and 255, which overflow against most activations).
fn random_weight(rng: &mut Rng, qtype: QuantType, rows: usize, k: usize) -> Vec<u8> {
    let row_bytes = qtype.row_bytes(k).unwrap();
    let mut w: Vec<u8> = (0..rows * row_bytes).map(|_| rng.next_u32() as u8).collect();
    let block = qtype.block_bytes();
    if qtype == QuantType::MXFP4 {
        for blk in w.chunks_exact_mut(block) {
            blk[0] = match rng.next_u32() % 32 {
                0 => 0,
                1 => 1,
                2 => 254,
                3 => 255,
                _ => 100 + (rng.next_u32() % 51) as u8,
            };
            match rng.next_u32() % 8 {
                0 => blk[1..].fill(0),
                1 => blk[1..].fill(0xff), // every code -12
                2 => blk[1..].fill(0x77), // every code +12
                _ => {}
            }
        }
        return w;
    }
    let halves = if matches!(qtype, QuantType::Q4_1 | QuantType::Q5_1) { 2 } else { 1 };
    let scale_bytes = 2 * halves;
    for blk in w.chunks_exact_mut(block) {
        for h in 0..halves {
            let v = rng.fp16();
            blk[2 * h..2 * h + 2].copy_from_slice(&v);
        }
        match rng.next_u32() % 8 {
            0 => blk.fill(0),
            1 => blk[scale_bytes..].fill(if qtype == QuantType::Q8_0 { 0x81 } else { 0x00 }),
            2 => blk[scale_bytes..].fill(if qtype == QuantType::Q8_0 { 0x7f } else { 0xff }),
            3 => blk[..scale_bytes].copy_from_slice(&[0xff, 0x7b, 0xff, 0x7b][..scale_bytes]), // 65504
            _ => {}
        }
        if qtype == QuantType::Q8_0 {
            for c in &mut blk[2..] {
                if *c == 0x80 {
                    *c = 0x81;
                }
            }
        }
    }
    w
}

/// Activations of every magnitude per row (1e-6..1e6), zero blocks, and values at a block's
/// maximum (codes ±127).
fn random_acts(rng: &mut Rng, rows: usize, k: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(rows * k);
    for _ in 0..rows {
        let scale = 10f32.powi(rng.next_u32() as i32 % 13 - 6);
        for b in 0..k / 32 {
            let kind = rng.next_u32() % 6;
            for j in 0..32 {
                x.push(match kind {
                    0 => 0.0,
                    1 => scale * if (b + j) % 2 == 0 { 1.0 } else { -1.0 },
                    _ => scale * rng.normal(),
                });
            }
        }
    }
    x
}

fn pack_all(kernel: &PackedKernel, w: &[u8], rows: usize, k: usize, row_bytes: usize) -> Vec<u8> {
    let panel_bytes = (kernel.panel_bytes)(k);
    let n_panels = rows.div_ceil(PANEL_ROWS);
    let mut panels = vec![0xa5u8; n_panels * panel_bytes];
    for (p, panel) in panels.chunks_exact_mut(panel_bytes).enumerate() {
        let rows_here = &w[p * PANEL_ROWS * row_bytes..((p + 1) * PANEL_ROWS).min(rows) * row_bytes];
        (kernel.pack_panel)(k, rows_here, row_bytes, panel);
    }
    panels
}

fn prepare(kernel: &PackedKernel, x: &[f32], k: usize) -> Vec<u8> {
    let mut acts = vec![0u8; x.len() / k * (kernel.act_row_bytes)(k)];
    (kernel.prepare_acts)(x, k, &mut acts);
    acts
}

/// Runs a kernel's gemm into an output of `out_stride` columns pre-filled with a sentinel.
fn run_gemm(kernel: &PackedKernel, k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize) -> Vec<f32> {
    let out_stride = cols + 3;
    const SENTINEL: u32 = 0x7fc0_1234; // a NaN no arithmetic produces
    let mut out = vec![f32::from_bits(SENTINEL); m * out_stride];
    (kernel.gemm)(k, panels, acts, m, cols, &mut out, out_stride);
    for (r, row) in out.chunks_exact(out_stride).enumerate() {
        assert!(row[cols..].iter().all(|v| v.to_bits() == SENTINEL), "gemm wrote past column {cols} in row {r}");
    }
    out.chunks_exact(out_stride).flat_map(|row| row[..cols].iter().copied()).collect()
}

/// Bit patterns, every NaN as one (Q4_1's offset term may meet inf - inf at extreme scales, and
/// which NaN an invalid operation gives is not part of the contract).
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| if x.is_nan() { f32::NAN.to_bits() } else { x.to_bits() }).collect()
}

#[test]
fn every_level_gives_the_scalar_bits() {
    let types = packed_types();
    for t in LEGACY {
        assert!(types.contains(&t), "{t} has a packed kernel");
    }
    let mut rng = Rng(0x5eed_1234);
    for qtype in LEGACY {
        let scalar = scalar_kernel(qtype);
        for &(m, n, blocks) in &[
            (1, 1, 1),
            (1, 100, 3),
            (1, 130, 1),
            (3, 17, 1),
            (7, 16, 2),
            (5, 33, 3),
            (13, 50, 9),
            (2, 70, 16),
            (9, 5, 31),
        ] {
            let k = 32 * blocks;
            let row_bytes = qtype.row_bytes(k).unwrap();
            let w = random_weight(&mut rng, qtype, n, k);
            let x = random_acts(&mut rng, m, k);
            let panels = pack_all(&scalar, &w, n, k, row_bytes);
            let acts = prepare(&scalar, &x, k);
            let want = run_gemm(&scalar, k, &panels, &acts, m, n);
            for level in available_levels() {
                let kernel = packed_kernel_for(qtype, level).unwrap();
                assert!(kernel.level <= level);
                if matches!(
                    qtype,
                    QuantType::Q4_0
                        | QuantType::IQ4_NL
                        | QuantType::MXFP4
                        | QuantType::Q8_0
                        | QuantType::Q4_1
                        | QuantType::Q5_0
                        | QuantType::Q5_1
                ) && level >= Level::Avx2
                {
                    assert!(kernel.level >= Level::Avx2, "{qtype} has a SIMD kernel at {level}");
                }
                // Layouts belong to the type: every level packs and prepares the same bytes.
                assert_eq!(pack_all(&kernel, &w, n, k, row_bytes), panels, "{qtype} {level} panels");
                assert_eq!(prepare(&kernel, &x, k), acts, "{qtype} {level} activations");
                let got = run_gemm(&kernel, k, &panels, &acts, m, n);
                assert_eq!(bits(&got), bits(&want), "{qtype} {level} (kernel {}) m {m} n {n} k {k}", kernel.level);
                // Fewer columns than the panels hold: nothing written past them.
                if n > 1 {
                    let got = run_gemm(&kernel, k, &panels, &acts, m, n - 1);
                    let want_cols: Vec<f32> = want.chunks_exact(n).flat_map(|r| r[..n - 1].to_vec()).collect();
                    assert_eq!(bits(&got), bits(&want_cols), "{qtype} {level} n - 1 columns");
                }
            }
        }
    }
}

#[test]
fn scalar_gemm_is_the_dot_of_the_dequantized_operands() {
    let mut rng = Rng(0xabc0_0001);
    for qtype in LEGACY {
        let scalar = scalar_kernel(qtype);
        let (m, n, k) = (5, 21, 32 * 12);
        let row_bytes = qtype.row_bytes(k).unwrap();
        // Moderate scales here: the bound is about rounding, not overflow.
        let mut w = vec![0u8; n * row_bytes];
        let wf: Vec<f32> = (0..n * k).map(|_| rng.normal()).collect();
        (scalar_codec(qtype).unwrap().0)(&wf, &mut w);
        let x: Vec<f32> = (0..m * k).map(|_| rng.normal() * 3.0).collect();
        let panels = pack_all(&scalar, &w, n, k, row_bytes);
        let got = run_gemm(&scalar, k, &panels, &prepare(&scalar, &x, k), m, n);
        // The operands the kernel multiplies: the dequantized weight and the activations rounded to
        // the paired Q8_0 / Q8_1.
        let act = activation_type(qtype).unwrap();
        let (q8, dq8) = scalar_codec(act).unwrap();
        let mut xq = vec![0u8; m * act.row_bytes(k).unwrap()];
        q8(&x, &mut xq);
        let mut xd = vec![0f32; m * k];
        dq8(&xq, &mut xd);
        let mut wd = vec![0f32; n * k];
        (scalar_codec(qtype).unwrap().1)(&w, &mut wd);
        for r in 0..m {
            for c in 0..n {
                let (a, b) = (&xd[r * k..(r + 1) * k], &wd[c * k..(c + 1) * k]);
                let exact: f64 = a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum();
                let magnitude: f64 = a.iter().zip(b).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                // f32 rounding of each block's terms and of the sum; Q8_1's s = d * sum(q) is
                // stored as fp16 (relative 2^-11 of the offset term).
                let offset_term = if act == QuantType::Q8_1 { 1e-3 * magnitude } else { 0.0 };
                let bound = (k / 32 + 2) as f64 * f32::EPSILON as f64 * magnitude + offset_term;
                let v = got[r * n + c] as f64;
                assert!((v - exact).abs() <= bound, "{qtype} ({r}, {c}): {v} vs {exact} (bound {bound})");
            }
        }
    }
}

#[test]
fn the_drivers_give_the_kernel_bits() {
    let mut rng = Rng(0x0dd_beef);
    for qtype in packed_types() {
        // 70 rows run in two row chunks.
        for &(m, n, blocks) in &[(9, 37, 3), (70, 100, 5), (1, 48, 2), (20, 300, 40)] {
            let k = k_unit(qtype) * blocks;
            let row_bytes = qtype.row_bytes(k).unwrap();
            let w = driver_weight(&mut rng, qtype, n, k);
            let x = random_acts(&mut rng, m, k);
            let weight = MatmulWeight { data: &w, qtype, rows: n, k };
            let packed = PackedWeight::new(&weight).unwrap();
            assert_eq!((packed.rows(), packed.k(), packed.qtype()), (n, k, qtype));
            assert_eq!(packed.bytes().as_ptr() as usize % 64, 0, "packed weight not 64-byte aligned");
            for level in available_levels() {
                let kernel = packed_kernel_for(qtype, level).unwrap();
                assert_eq!(packed.bytes(), pack_all(&kernel, &w, n, k, row_bytes), "{qtype} packed bytes");
                let want = run_gemm(&kernel, k, packed.bytes(), &prepare(&kernel, &x, k), m, n);
                for threads in [1, 2] {
                    fastquant::set_num_threads(threads).unwrap();
                    let mut out = vec![f32::NAN; m * n];
                    matmul_packed(&packed, &x, &mut out, Some(level)).unwrap();
                    assert_eq!(bits(&out), bits(&want), "{qtype} {level} packed weight, {threads} threads");
                    // `matmul` packs on the fly from 5 rows; types whose panels are larger than
                    // their blocks (Q5_0/Q5_1, the K-quants) from 32.
                    if m > 8 && (m >= 32 || !packed.panels_expand()) {
                        let mut out = vec![f32::NAN; m * n];
                        matmul(&weight, &x, &mut out, Some(level)).unwrap();
                        assert_eq!(bits(&out), bits(&want), "{qtype} {level} packed on the fly, {threads} threads");
                    }
                }
            }
        }
    }
}

#[test]
fn bad_input_is_an_error() {
    let k = 64;
    let w = vec![0u8; 3 * QuantType::Q4_0.row_bytes(k).unwrap()];
    let weight = MatmulWeight { data: &w, qtype: QuantType::Q4_0, rows: 3, k };
    let packed = PackedWeight::new(&weight).unwrap();
    let mut out = vec![0f32; 3 * 2];
    assert!(matches!(matmul_packed(&packed, &[0.0; 100], &mut out, None), Err(Error::Size { .. })));
    assert!(matches!(matmul_packed(&packed, &[0.0; 128], &mut out[..5], None), Err(Error::Size { .. })));
    let mut x = vec![0.5f32; 2 * k];
    x[70] = f32::NAN;
    assert!(matches!(matmul_packed(&packed, &x, &mut out, None), Err(Error::NonFinite { index: 70, .. })));
    let short = MatmulWeight { data: &w[1..], ..weight };
    assert!(matches!(PackedWeight::new(&short), Err(Error::Size { .. })));
    let tq = vec![0u8; QuantType::TQ2_0.row_bytes(256).unwrap()];
    let unsupported = MatmulWeight { data: &tq, qtype: QuantType::TQ2_0, rows: 1, k: 256 };
    assert!(!has_packed_kernel(QuantType::TQ2_0));
    assert!(matches!(PackedWeight::new(&unsupported), Err(Error::Unsupported { .. })));
}

/// MXFP4 rows whose blocks all sit at the ends of E8M0 (e = 0 and 1: subnormal halved scales, which
/// vanish next to ordinary blocks in the random rows above; 254 and 255: overflow), so the
/// exponent widening of each level decides every output: every level gives the scalar bits.
#[test]
fn mxfp4_extreme_exponents_give_the_scalar_bits() {
    let mut rng = Rng(0x00e8_0e8e);
    let qtype = QuantType::MXFP4;
    let scalar = scalar_kernel(qtype);
    for exponents in [[0u8, 1], [254, 255], [1, 254]] {
        for &(m, n, blocks) in &[(1, 33, 3), (5, 20, 4), (9, 40, 7)] {
            let k = 32 * blocks;
            let row_bytes = qtype.row_bytes(k).unwrap();
            let mut w = random_weight(&mut rng, qtype, n, k);
            for (i, blk) in w.chunks_exact_mut(qtype.block_bytes()).enumerate() {
                blk[0] = exponents[i % 2];
            }
            let x = random_acts(&mut rng, m, k);
            let panels = pack_all(&scalar, &w, n, k, row_bytes);
            let acts = prepare(&scalar, &x, k);
            let want = run_gemm(&scalar, k, &panels, &acts, m, n);
            if exponents[0] == 0 {
                // The subnormal scales still give results: the test is not about zeros.
                assert!(want.iter().any(|&v| v != 0.0 && v.is_finite()), "{exponents:?}: every output zero");
            }
            for level in available_levels() {
                let kernel = packed_kernel_for(qtype, level).unwrap();
                let got = run_gemm(&kernel, k, &panels, &acts, m, n);
                assert_eq!(bits(&got), bits(&want), "{exponents:?} at {level} m {m} n {n} k {k}");
            }
        }
    }
}
