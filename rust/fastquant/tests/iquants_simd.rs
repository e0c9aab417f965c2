//! The IQ4_NL / IQ4_XS quantize kernels (one 32-element sub-block's scale search per SIMD lane),
//! plain and importance-weighted, against the scalar reference at every level this CPU has, on
//! sub-blocks that each draw their own shape and scale, so that the lanes of one vector take
//! different branches: empty and sub-threshold blocks, values on the table's exact midpoints,
//! lone outliers, weights that overflow to infinity, zero importance weights. Then the TQ1_0,
//! TQ2_0 and MXFP4 kernels on the same data (ties of their grids included).

use fastquant::formats::{scalar_codec, scalar_imatrix_quantizer};
use fastquant::simd::{codec_for, Level};
use fastquant::QuantType;

mod common;
use common::Rng;

const KVALUES: [f32; 16] = [-127., -104., -83., -65., -49., -35., -22., -10., 1., 13., 25., 38., 53., 69., 89., 113.];

/// One 32-element sub-block in one of many shapes, at scale `s`.
fn sub_block(rng: &mut Rng, s: f32) -> [f32; 32] {
    let mut g = [0f32; 32];
    match rng.below(14) {
        0 => {}
        1 => g = [-0.0; 32],
        2 => g = [s; 32],
        3 => {
            // -127 * s is the element of largest magnitude, so the candidate itry = 0 has
            // id = 1/s: for s a power of two every other element lands exactly on a midpoint
            // between two table entries (or on an entry).
            for v in g.iter_mut() {
                let k = rng.below(15);
                *v = s * if rng.below(2) == 0 { (KVALUES[k] + KVALUES[k + 1]) / 2.0 } else { KVALUES[k] };
            }
            g[rng.below(32)] = -127.0 * s;
        }
        4 => {
            g.iter_mut().for_each(|v| *v = s * 0.01 * rng.normal());
            g[rng.below(32)] = s * if rng.below(2) == 0 { 100.0 } else { -100.0 };
        }
        5 => g.iter_mut().for_each(|v| *v = if rng.below(3) == 0 { 0.0 } else { s * rng.normal() }),
        6 => {
            // heavy-tailed: a normal over a uniform
            let t = rng.normal();
            g.iter_mut().for_each(|v| *v = s * (t / (0.05 + rng.uniform())));
        }
        7 => {
            // around GROUP_MAX_EPS = 1e-15: some blocks below it, some just above
            let m = 1e-15 * (0.5 + rng.uniform());
            g.iter_mut().for_each(|v| *v = m * (2.0 * rng.uniform() - 1.0));
        }
        8 => g.iter_mut().for_each(|v| *v = s * rng.below(5) as f32 - 2.0 * s),
        9 => {
            // quarter steps: ties between neighbouring codes of the ternary and MXFP4 grids
            g.iter_mut().for_each(|v| *v = s * (rng.below(33) as f32 - 16.0) / 4.0);
        }
        _ => g.iter_mut().for_each(|v| *v = s * rng.normal()),
    }
    g
}

/// `n` sub-blocks, each with its own shape and scale (1e-30..1e30 and beyond 1e19, where x²
/// overflows to infinity; exact powers of two).
fn sub_blocks(rng: &mut Rng, n: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(32 * n);
    for _ in 0..n {
        let s = match rng.below(5) {
            0 => 1.0,
            1 => 2f32.powi(rng.below(40) as i32 - 20),
            2 => 10f32.powi(rng.below(61) as i32 - 30),
            3 => 1e19 * 10f32.powi(rng.below(18) as i32),
            _ => 0.1 + 3.0 * rng.uniform(),
        };
        x.extend_from_slice(&sub_block(rng, s));
    }
    x
}

/// Importance weights of one row: random, with zero and negative columns and all-zero sub-blocks.
fn imatrix(rng: &mut Rng, n_per_row: usize) -> Vec<f32> {
    let mut w: Vec<f32> = (0..n_per_row)
        .map(|_| match rng.below(9) {
            0 => 0.0,
            1 => 1e-20 * rng.uniform(),
            2 => 1e6 * rng.uniform(),
            3 => -rng.uniform(), // not what an imatrix holds, but the kernels must agree anyway
            _ => rng.uniform() * rng.uniform() * 10.0,
        })
        .collect();
    for b in w.chunks_mut(32) {
        if rng.below(6) == 0 {
            b.fill(0.0);
        }
    }
    w
}

fn qtypes() -> [QuantType; 2] {
    [QuantType::IQ4_NL, QuantType::IQ4_XS]
}

/// Compares block by block and names the first differing one.
fn assert_same_blocks(qtype: QuantType, level: Level, want: &[u8], got: &[u8], x: &[f32], what: &str) {
    let bb = qtype.block_bytes();
    let ne = qtype.block_elems();
    for (b, (w, g)) in want.chunks(bb).zip(got.chunks(bb)).enumerate() {
        assert_eq!(w, g, "{} {what} at {level:?} block {b}: input {:?}", qtype.name(), &x[ne * b..ne * b + ne]);
    }
}

/// The plain kernel of every level against the scalar reference.
fn check_plain(qtype: QuantType, x: &[f32]) {
    let (reference, _) = scalar_codec(qtype).expect("a scalar codec");
    let bytes = x.len() / qtype.block_elems() * qtype.block_bytes();
    let mut want = vec![0u8; bytes];
    reference(x, &mut want);
    for level in Level::ALL {
        let Some(codec) = codec_for(qtype, level).expect("a codec") else { continue };
        let mut got = vec![0xa5u8; bytes];
        (codec.quantize.expect("quantize"))(x, &mut got);
        assert_same_blocks(qtype, level, &want, &got, x, "plain");
    }
}

/// The importance-weighted kernel of every level against the scalar reference.
fn check_imatrix(qtype: QuantType, x: &[f32], n_per_row: usize, qw: &[f32]) {
    let reference = scalar_imatrix_quantizer(qtype).expect("a scalar imatrix quantizer");
    let bytes = x.len() / qtype.block_elems() * qtype.block_bytes();
    let mut want = vec![0u8; bytes];
    reference(x, &mut want, n_per_row, qw);
    for level in Level::ALL {
        let Some(codec) = codec_for(qtype, level).expect("a codec") else { continue };
        let mut got = vec![0xa5u8; bytes];
        (codec.quantize_imatrix.expect("an imatrix quantizer"))(x, &mut got, n_per_row, qw);
        assert_same_blocks(qtype, level, &want, &got, x, "imatrix");
    }
}

#[test]
fn the_simd_levels_have_kernels_of_their_own() {
    // Otherwise the comparisons below would compare the scalar code with itself.
    for qtype in qtypes() {
        for level in [Level::Avx2, Level::Avx512] {
            let Some(codec) = codec_for(qtype, level).expect("a codec") else { continue };
            assert_eq!(codec.quantize_level, level, "{}", qtype.name());
            assert_eq!(codec.quantize_imatrix_level, level, "{}", qtype.name());
        }
    }
}

#[test]
fn random_sub_blocks_match_the_scalar_reference() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for qtype in qtypes() {
        for round in 0..120 {
            // 8 sub-blocks more or less than a multiple of 16: short last groups too
            check_plain(qtype, &sub_blocks(&mut rng, 64 + 8 * (round % 3)));
        }
    }
}

#[test]
fn importance_weighted_rows_match_the_scalar_reference() {
    let mut rng = Rng(0xfeed_beef_1234_5678);
    for qtype in qtypes() {
        // Rows whose groups of 8 or 16 sub-blocks do not line up with them (for IQ4_NL), odd
        // numbers of super-blocks per row, and a single row.
        let widths: &[usize] = if qtype == QuantType::IQ4_NL { &[32, 96, 256, 416, 768] } else { &[256, 768, 1024] };
        for round in 0..40 {
            let n_per_row = widths[round % widths.len()];
            let rows = 1 + rng.below(5);
            let x = sub_blocks(&mut rng, rows * n_per_row / 32);
            let qw = imatrix(&mut rng, n_per_row);
            check_imatrix(qtype, &x, n_per_row, &qw);
            // Weights of one give sqrt(sigma2 + x²), not x²: the other weight formula.
            check_imatrix(qtype, &x, n_per_row, &vec![1.0; n_per_row]);
        }
    }
}

#[test]
fn non_finite_inputs_and_weights_take_the_scalar_path() {
    let mut rng = Rng(7);
    for qtype in qtypes() {
        for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, f32::MIN_POSITIVE] {
            let mut x = sub_blocks(&mut rng, 48);
            let at = rng.below(x.len());
            x[at] = special;
            check_plain(qtype, &x);
            let mut qw = imatrix(&mut rng, 512);
            check_imatrix(qtype, &x, 512, &qw);
            qw[rng.below(512)] = special;
            check_imatrix(qtype, &x, 512, &qw);
        }
    }
}

/// The search-free quantizers with kernels of their own.
const GRID_TYPES: [QuantType; 3] = [QuantType::TQ1_0, QuantType::TQ2_0, QuantType::MXFP4];

#[test]
fn ternary_and_mxfp4_have_kernels_at_each_simd_level() {
    for qtype in GRID_TYPES {
        for level in [Level::Avx2, Level::Avx512] {
            let Some(codec) = codec_for(qtype, level).expect("a codec") else { continue };
            assert_eq!(codec.quantize_level, level, "{}", qtype.name());
        }
    }
}

#[test]
fn ternary_and_mxfp4_blocks_match_the_scalar_reference() {
    let mut rng = Rng(0x7e57_7e57_0000_0001);
    for qtype in GRID_TYPES {
        for _ in 0..150 {
            check_plain(qtype, &sub_blocks(&mut rng, 64));
        }
        for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, 1e-39, -1e-45] {
            let mut x = sub_blocks(&mut rng, 64);
            let at = rng.below(x.len());
            x[at] = special;
            check_plain(qtype, &x);
            // a whole block of tiny values: the ternary inverse scale overflows
            x[..256].iter_mut().for_each(|v| *v = special * 1e-3);
            check_plain(qtype, &x);
        }
    }
}
