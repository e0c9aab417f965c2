//! The packed GEMM of Q2_K..Q6_K and IQ4_XS (`matmul::packed_kquants`): every level against
//! the scalar reference bit for bit, the scalar reference against an f64 dot of the dequantized
//! weight and the dequantized Q8_K activation, and against the GEMV kernels.

use fastquant::formats::float::{fp16_to_fp32, fp32_to_fp16};
use fastquant::formats::iquants::iq4::KVALUES_IQ4NL;
use fastquant::matmul::dot_kernel_for;
use fastquant::matmul::dot_kquants::{kquant_layout, superblock_sums, Q8K_BYTES};
use fastquant::matmul::packed::{packed_kernel_for, PackedKernel, PANEL_ROWS};
use fastquant::matmul::packed_kquants::{ACT_BLOCK_BYTES, ACT_CODES, FORMATS};
use fastquant::simd::{available_levels, Level};
use fastquant::{dequantize, quantize, FloatSlice, FloatSliceMut, QuantType, QuantizeOptions};

mod common;
use common::Rng;

const TYPES: [QuantType; 6] =
    [QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::IQ4_XS, QuantType::Q2_K, QuantType::Q3_K];

/// Where the fp16 scales (d, and dmin where there is one) of a super-block sit.
fn scale_offsets(qtype: QuantType) -> &'static [usize] {
    match qtype {
        QuantType::Q4_K | QuantType::Q5_K => &[0, 2],
        QuantType::Q2_K => &[80, 82],
        QuantType::Q3_K => &[108],
        QuantType::Q6_K => &[208],
        _ => &[0],
    }
}

/// Roughly normal data with occasional spikes (codes at the ends of their ranges) and, per
/// super-block, sometimes all zeros.
fn data(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    for block in x.chunks_mut(256) {
        match rng.below(8) {
            0 => block.fill(0.0),
            1 => block.iter_mut().for_each(|v| *v = if rng.below(2) == 0 { 50.0 } else { -50.0 }),
            2 => block[rng.below(256)] *= 100.0,
            _ => {}
        }
    }
    x
}

/// `rows` weight rows of `k` elements: quantized data (plain or with an imatrix), or random bytes
/// with random fp16 scales (every code and sub-block scale at both ends; `extremes` adds
/// the largest and subnormal d/dmin, which the f64 check cannot bound).
fn weights(rng: &mut Rng, qtype: QuantType, k: usize, rows: usize, extremes: bool) -> Vec<u8> {
    let row_bytes = qtype.row_bytes(k).unwrap();
    let mut w = vec![0u8; rows * row_bytes];
    match rng.below(3) {
        0 => rng.bytes(&mut w),
        kind => {
            let x = data(rng, rows * k);
            let imatrix: Vec<f32> = (0..k).map(|_| rng.uniform() + 0.1).collect();
            let options =
                QuantizeOptions { imatrix: (kind == 2).then_some(&imatrix[..]), ..QuantizeOptions::default() };
            quantize(qtype, FloatSlice::F32(&x), k, &mut w, &options).unwrap();
            return w;
        }
    }
    let block_bytes = kquant_layout(qtype).unwrap().block_bytes;
    for block in w.chunks_exact_mut(block_bytes) {
        if rng.below(10) == 0 {
            block.fill(0);
        }
        for &at in scale_offsets(qtype) {
            let h = match rng.below(if extremes { 8 } else { 5 }) {
                0 => 0,
                1 => fp32_to_fp16(-0.0),
                5 => 0x7bff,
                6 => 0xfbff,
                7 => 0x0001,
                _ => fp32_to_fp16((rng.uniform() * 2.0 - 1.0) * 0.01 * (1 << rng.below(8)) as f32),
            };
            block[at..at + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    w
}

/// All panels of `rows` weight rows.
fn pack(kernel: &PackedKernel, k: usize, w: &[u8], row_bytes: usize) -> Vec<u8> {
    let rows = w.len() / row_bytes;
    let pb = (kernel.panel_bytes)(k);
    let mut panels = vec![0xAAu8; rows.div_ceil(PANEL_ROWS) * pb];
    for (chunk, panel) in w.chunks(PANEL_ROWS * row_bytes).zip(panels.chunks_exact_mut(pb)) {
        (kernel.pack_panel)(k, chunk, row_bytes, panel);
    }
    panels
}

fn prepare(kernel: &PackedKernel, x: &[f32], k: usize) -> Vec<u8> {
    let mut acts = vec![0u8; x.len() / k * (kernel.act_row_bytes)(k)];
    (kernel.prepare_acts)(x, k, &mut acts);
    acts
}

/// `gemm` into an output of `m` rows of `stride` floats, NaN where nothing may be written.
fn run(kernel: &PackedKernel, k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, stride: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; m * stride];
    (kernel.gemm)(k, panels, acts, m, cols, &mut out, stride);
    out
}

#[test]
fn every_level_gives_the_scalar_bits() {
    let mut rng = Rng(0x9e44_0001);
    for qtype in TYPES {
        let scalar = packed_kernel_for(qtype, Level::Scalar).unwrap();
        assert_eq!(scalar.level, Level::Scalar);
        for case in 0..40 {
            let k = 256 * (1 + rng.below(5));
            let cols = 1 + rng.below(3 * PANEL_ROWS);
            // Up to 13 rows, and every fourth case 16..24 (where the AVX-512 kernel decodes the
            // nibble codes once for its full row tiles).
            let m = if case % 4 == 0 { 16 + rng.below(9) } else { 1 + rng.below(13) };
            let stride = cols + rng.below(3);
            let row_bytes = qtype.row_bytes(k).unwrap();
            let w = weights(&mut rng, qtype, k, cols, true);
            let panels = pack(&scalar, k, &w, row_bytes);
            let acts = prepare(&scalar, &data(&mut rng, m * k), k);
            let want = run(&scalar, k, &panels, &acts, m, cols, stride);
            for level in available_levels() {
                let kernel = packed_kernel_for(qtype, level).unwrap();
                assert!(kernel.level <= level);
                let got = run(&kernel, k, &panels, &acts, m, cols, stride);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                        "{} at {level}, case {case}: k {k} m {m} cols {cols}, out[{}][{}]: {g} != {w}",
                        qtype.name(),
                        i / stride,
                        i % stride
                    );
                }
            }
        }
    }
}

#[test]
fn simd_levels_use_their_own_kernels() {
    for qtype in TYPES {
        for level in available_levels() {
            assert_eq!(packed_kernel_for(qtype, level).unwrap().level, level, "{}", qtype.name());
        }
    }
}

#[test]
fn missing_rows_of_a_short_panel_give_zeros() {
    let mut rng = Rng(0x9e44_0002);
    for qtype in TYPES {
        let (k, rows) = (512, 5);
        let row_bytes = qtype.row_bytes(k).unwrap();
        let w = weights(&mut rng, qtype, k, rows, false);
        let x = data(&mut rng, 3 * k);
        let scalar = packed_kernel_for(qtype, Level::Scalar).unwrap();
        let (panels, acts) = (pack(&scalar, k, &w, row_bytes), prepare(&scalar, &x, k));
        for level in available_levels() {
            let kernel = packed_kernel_for(qtype, level).unwrap();
            let out = run(&kernel, k, &panels, &acts, 3, PANEL_ROWS, PANEL_ROWS);
            for r in 0..3 {
                assert!(out[r * PANEL_ROWS + rows..][..PANEL_ROWS - rows].iter().all(|v| v.to_bits() == 0));
            }
        }
    }
}

/// The activation rows as the kernels see them: `d * code` per element, from the packed layout.
fn dequantized_acts(acts: &[u8], k: usize, m: usize) -> Vec<f64> {
    let mut y = Vec::with_capacity(m * k);
    for block in acts.chunks_exact(ACT_BLOCK_BYTES) {
        let d = f32::from_le_bytes(block[..4].try_into().unwrap()) as f64;
        y.extend(block[ACT_CODES..ACT_CODES + 256].iter().map(|&q| d * q as i8 as f64));
    }
    y
}

/// The rows of `x` in Q8_K, as the GEMV path takes them.
fn q8_k(x: &[f32], k: usize) -> Vec<u8> {
    let mut q8 = vec![0u8; x.len() / 256 * Q8K_BYTES];
    quantize(QuantType::Q8_K, FloatSlice::F32(x), k, &mut q8, &QuantizeOptions::default()).unwrap();
    q8
}

/// The magnitude the float steps of one output round against: per super-block `|d d_a isum|` and
/// `|dmin d_a msum|` (or `|d d_a (isum - msum)|`), which can be far above the dequantized products
/// where the weight's two terms cancel.
fn step_magnitude(qtype: QuantType, w_row: &[u8], q8_row: &[u8]) -> f64 {
    let layout = kquant_layout(qtype).unwrap();
    let blocks = w_row.chunks_exact(layout.block_bytes).zip(q8_row.chunks_exact(Q8K_BYTES));
    blocks
        .map(|(block, act)| {
            let d_a = f32::from_le_bytes(act[..4].try_into().unwrap()) as f64;
            let sb = (layout.unpack)(block);
            let (isum, msum) = superblock_sums(&sb, act);
            if layout.separate_min {
                (sb.d as f64 * d_a * isum as f64).abs() + (sb.dmin as f64 * d_a * msum as f64).abs()
            } else {
                (sb.d as f64 * d_a * (isum - msum) as f64).abs()
            }
        })
        .sum()
}

#[test]
fn scalar_matches_an_f64_dot_of_the_dequantized_values() {
    let mut rng = Rng(0x9e44_0003);
    for qtype in TYPES {
        let scalar = packed_kernel_for(qtype, Level::Scalar).unwrap();
        for _ in 0..20 {
            let (k, cols, m) = (256 * (1 + rng.below(5)), 1 + rng.below(40), 1 + rng.below(6));
            let row_bytes = qtype.row_bytes(k).unwrap();
            let w = weights(&mut rng, qtype, k, cols, false);
            let mut wf = vec![0f32; cols * k];
            dequantize(qtype, &w, k, FloatSliceMut::F32(&mut wf), None).unwrap();
            let x = data(&mut rng, m * k);
            let (acts, q8) = (prepare(&scalar, &x, k), q8_k(&x, k));
            let af = dequantized_acts(&acts, k, m);
            let got = run(&scalar, k, &pack(&scalar, k, &w, row_bytes), &acts, m, cols, cols);
            let q8_row = k / 256 * Q8K_BYTES;
            for r in 0..m {
                for c in 0..cols {
                    let terms = (0..k).map(|e| wf[c * k + e] as f64 * af[r * k + e]);
                    let (exact, magnitude) = terms.fold((0f64, 0f64), |(s, a), t| (s + t, a + t.abs()));
                    let steps = step_magnitude(qtype, &w[c * row_bytes..][..row_bytes], &q8[r * q8_row..][..q8_row]);
                    // The dequantized f32 weights, the int -> f32 conversions, the products and the
                    // running sum round at 2^-24 a few times per super-block.
                    let bound = 4.0 * f32::EPSILON as f64 * (magnitude + steps) + 1e-30;
                    let g = got[r * cols + c] as f64;
                    assert!(
                        (g - exact).abs() <= bound,
                        "{}: k {k} [{r}][{c}]: {g} vs {exact} (bound {bound})",
                        qtype.name()
                    );
                }
            }
        }
    }
}

#[test]
fn scalar_agrees_with_the_gemv_kernels() {
    let mut rng = Rng(0x9e44_0004);
    for qtype in TYPES {
        let packed = packed_kernel_for(qtype, Level::Scalar).unwrap();
        let gemv = dot_kernel_for(qtype, Level::Scalar).unwrap().unwrap();
        for _ in 0..10 {
            let (k, cols, m) = (256 * (1 + rng.below(12)), 1 + rng.below(20), 1 + rng.below(8));
            let row_bytes = qtype.row_bytes(k).unwrap();
            let w = weights(&mut rng, qtype, k, cols, false);
            let x = data(&mut rng, m * k);
            let got = run(&packed, k, &pack(&packed, k, &w, row_bytes), &prepare(&packed, &x, k), m, cols, cols);
            let q8 = q8_k(&x, k);
            let q8_row = k / 256 * Q8K_BYTES;
            for c in 0..cols {
                let w_row = &w[c * row_bytes..(c + 1) * row_bytes];
                let mut want = vec![0f32; m];
                (gemv.vec_dot)(k, w_row, &q8, q8_row, &mut want);
                for r in 0..m {
                    // The same terms summed in another order: both within a few roundings of the
                    // terms' magnitude.
                    let bound = 4.0 * f32::EPSILON as f64 * step_magnitude(qtype, w_row, &q8[r * q8_row..][..q8_row]);
                    let (g, w) = (got[r * cols + c], want[r]);
                    assert!(
                        ((g - w) as f64).abs() <= bound,
                        "{}: k {k} [{r}][{c}]: packed {g} vs GEMV {w} (bound {bound})",
                        qtype.name()
                    );
                }
            }
        }
    }
}

#[test]
fn empty_calls_write_nothing_and_bad_sizes_are_refused() {
    let qtype = QuantType::Q4_K;
    let kernel = packed_kernel_for(qtype, fastquant::simd::detected_level()).unwrap();
    let k = 256;
    let panels = vec![0u8; (kernel.panel_bytes)(k)];
    let acts = vec![0u8; (kernel.act_row_bytes)(k)];
    let mut out = vec![f32::NAN; 4];
    (kernel.gemm)(k, &panels, &acts, 0, 16, &mut out, 16);
    (kernel.gemm)(k, &panels, &acts, 1, 0, &mut out, 16);
    assert!(out.iter().all(|v| v.is_nan()));
    let too_many_cols = std::panic::catch_unwind(|| {
        let mut out = vec![0f32; 32];
        (kernel.gemm)(k, &panels, &acts, 1, 17, &mut out, 32);
    });
    assert!(too_many_cols.is_err());
}

/// Reads the panels byte by byte as the layout table of `packed_kquants` says and compares every
/// lane with the GGUF block decoded by the GEMV path's `unpack`: codes (nibbles or bytes; IQ4_XS's
/// nibble the index of its table value; Q5_K's fifth bits and Q6_K's top crumbs in the plane), i8 scales, i8 min pairs,
/// f16 d and dmin; missing lanes are zeros. The sizes are the documented ones (Q4_K 2368 bytes per
/// super-block).
#[test]
fn panels_hold_the_documented_layout() {
    let mut rng = Rng(0x9e44_0005);
    for f in FORMATS {
        let qtype = f.qtype;
        let layout = kquant_layout(qtype).unwrap();
        let scalar = packed_kernel_for(qtype, Level::Scalar).unwrap();
        let (k, rows) = (512, 1 + rng.below(PANEL_ROWS));
        let row_bytes = qtype.row_bytes(k).unwrap();
        let w = weights(&mut rng, qtype, k, rows, true);
        let panel = pack(&scalar, k, &w, row_bytes);
        let sbb = f.superblock_bytes();
        assert_eq!(panel.len(), 2 * sbb, "{}", qtype.name());
        let expected_sbb = match qtype {
            QuantType::Q4_K => 2368,
            QuantType::IQ4_XS => 2208,
            QuantType::Q5_K => 2880,
            QuantType::Q6_K => 3360,
            QuantType::Q2_K => 1600,
            _ => 1824,
        };
        assert_eq!(sbb, expected_sbb, "{}", qtype.name());
        for (i, sbytes) in panel.chunks_exact(sbb).enumerate() {
            for lane in 0..PANEL_ROWS {
                let want = if lane < rows {
                    Some((layout.unpack)(&w[lane * row_bytes + i * layout.block_bytes..][..layout.block_bytes]))
                } else {
                    None
                };
                for e in 0..256 {
                    let (group, byte) = (e / 4, 4 * lane + e % 4);
                    let crumb_at = |at: usize| (sbytes[at + 64 * (group / 4) + byte] >> (2 * (group % 4))) & 3;
                    let low = if f.low_bits == 4 {
                        (sbytes[64 * (group / 2) + byte] >> (4 * (group % 2))) & 0x0f
                    } else {
                        crumb_at(0)
                    };
                    let high = match f.high_bits {
                        1 => {
                            let plane = &sbytes[f.high_bits_at() + 8 * group..][..8];
                            ((u64::from_le_bytes(plane.try_into().unwrap()) >> byte) & 1) as u8
                        }
                        2 => crumb_at(f.high_bits_at()),
                        _ => 0,
                    };
                    let stored = low | (high << f.low_bits);
                    let code = if f.signed { KVALUES_IQ4NL[stored as usize] } else { stored as i8 };
                    let want_code = want.map_or(if f.signed { KVALUES_IQ4NL[0] } else { 0 }, |s| s.codes[e]);
                    assert_eq!(code, want_code, "{} lane {lane} element {e}", qtype.name());
                }
                for j in 0..f.nsub() {
                    let sub16 = j * f.sub / 16;
                    let scale = sbytes[f.scales_at() + 16 * j + lane] as i8;
                    assert_eq!(scale, want.map_or(0, |s| s.scales[sub16]), "{} scale {j}", qtype.name());
                    if f.min {
                        let min = sbytes[f.mins_at() + 32 * (j / 2) + 2 * lane + j % 2] as i8 as i16;
                        assert_eq!(min, want.map_or(0, |s| s.biases[sub16]), "{} min {j}", qtype.name());
                    }
                }
                let half = |at: usize| fp16_to_fp32(u16::from_le_bytes([sbytes[at], sbytes[at + 1]]));
                let same = |got: f32, want: f32| got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
                assert!(same(half(f.d_at() + 2 * lane), want.map_or(0.0, |s| s.d)), "{} d", qtype.name());
                if f.min {
                    let dmin = half(f.dmin_at() + 2 * lane);
                    assert!(same(dmin, want.map_or(0.0, |s| s.dmin)), "{} dmin", qtype.name());
                }
            }
        }
    }
}

#[test]
fn the_panels_are_about_the_size_of_the_blocks() {
    for qtype in TYPES {
        let kernel = packed_kernel_for(qtype, Level::Scalar).unwrap();
        assert!(!kernel.panels_expand(qtype), "{}", qtype.name());
    }
}
