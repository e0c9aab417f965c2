//! The K-quant quantize kernels (whose scale searches run one sub-block per SIMD lane) against
//! the scalar reference at every level, on many random super-blocks whose sub-blocks each take
//! their own shape and scale, so that the lanes of one vector go down different branches of the
//! search, and on sub-blocks of the special kinds (all zero, subnormal, huge, constant, one
//! outlier, heavy tails, on the code grid) whole and mixed, in counts that fill the Q3_K kernels'
//! groups of super-blocks and leave tails. `tests/formats.rs` covers the shared adversarial data
//! sets.

use fastquant::formats::scalar_codec;
use fastquant::simd::{codec_for, Level};
use fastquant::QuantType;

mod common;
use common::Rng;

/// The K-quants with SIMD quantize kernels.
const QUANTIZE_KERNELS: [QuantType; 5] =
    [QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K];

/// One 16-element group (half a Q4_K sub-block, a Q6_K sub-block) in one of many shapes, at
/// scale `s`: the search's special cases (empty range, positive-only groups whose min is
/// clamped, exact ties on the rounding grid, lone outliers, signed zeros) at every scale.
fn group(rng: &mut Rng, s: f32) -> [f32; 16] {
    let mut g = [0f32; 16];
    match rng.below(12) {
        0 => {}
        1 => g = [-0.0; 16],
        2 => g = [s; 16],
        3 => g.iter_mut().for_each(|v| *v = s * (1.0 + rng.uniform())),
        4 => g.iter_mut().for_each(|v| *v = s * rng.below(8) as f32 * 0.5),
        5 => g.iter_mut().for_each(|v| *v = s * (rng.below(31) as f32 - 15.0) / 15.0),
        6 => {
            g.iter_mut().for_each(|v| *v = s * 0.01 * rng.normal());
            g[rng.below(16)] = s * if rng.below(2) == 0 { 100.0 } else { -100.0 };
        }
        7 => g.iter_mut().for_each(|v| *v = if rng.below(3) == 0 { 0.0 } else { s * rng.normal() }),
        8 => g.iter_mut().for_each(|v| *v = -s * rng.uniform()),
        9 => {
            let t = rng.normal();
            g.iter_mut().for_each(|v| *v = s * (t / (0.1 + rng.uniform())));
        }
        _ => g.iter_mut().for_each(|v| *v = s * rng.normal()),
    }
    g
}

/// Super-blocks whose groups each draw their own shape and scale (1e-30..1e30, and exact
/// powers of two), so lanes of one vector take different branches.
fn blocks(rng: &mut Rng, n_blocks: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(256 * n_blocks);
    for _ in 0..16 * n_blocks {
        let s = match rng.below(4) {
            0 => 1.0,
            1 => 2f32.powi(rng.below(40) as i32 - 20),
            2 => 10f32.powi(rng.below(61) as i32 - 30),
            _ => 0.1 + 3.0 * rng.uniform(),
        };
        x.extend_from_slice(&group(rng, s));
    }
    x
}

/// Every level this CPU has against the scalar reference, block by block.
fn check(qtype: QuantType, x: &[f32]) {
    let (reference, _) = scalar_codec(qtype).expect("a scalar codec");
    let bytes = x.len() / 256 * qtype.block_bytes();
    let mut want = vec![0u8; bytes];
    reference(x, &mut want);
    for level in Level::ALL {
        let Some(codec) = codec_for(qtype, level).expect("a codec") else { continue };
        let mut got = vec![0xa5u8; bytes];
        (codec.quantize.expect("quantize"))(x, &mut got);
        for (b, (w, g)) in want.chunks(qtype.block_bytes()).zip(got.chunks(qtype.block_bytes())).enumerate() {
            assert_eq!(w, g, "{} at {level:?} block {b}: input {:?}", qtype.name(), &x[256 * b..256 * b + 256]);
        }
    }
}

#[test]
fn random_super_blocks_match_the_scalar_reference() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for qtype in QUANTIZE_KERNELS {
        for round in 0..150 {
            // odd counts leave a last block to the scalar path
            check(qtype, &blocks(&mut rng, 50 + round % 3));
        }
    }
}

#[test]
fn non_finite_pairs_take_the_scalar_path() {
    let mut rng = Rng(7);
    for qtype in QUANTIZE_KERNELS {
        for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX] {
            // 19 blocks: whole groups of the Q3_K kernels (which search several super-blocks
            // together) and a tail, with the special value in one of them
            let mut x = blocks(&mut rng, 19);
            let at = rng.below(x.len());
            x[at] = special;
            check(qtype, &x);
        }
    }
}

/// One 16-element sub-block of the named kind at scale `s`: the cases the brief of the Q2_K and
/// Q3_K kernels names (all zero, tiny and subnormal, huge, constant, one outlier, heavy tails).
fn special_group(rng: &mut Rng, kind: usize, s: f32) -> [f32; 16] {
    let mut g = [0f32; 16];
    match kind {
        0 => {}
        1 => g.iter_mut().for_each(|v| *v = 1e-42 * (rng.below(5) as f32 - 2.0)), // subnormal
        2 => g.iter_mut().for_each(|v| *v = 1e-38 * rng.normal()),
        3 => g.iter_mut().for_each(|v| *v = 3e38 * (rng.uniform() - 0.5)), // products overflow
        4 => g.iter_mut().for_each(|v| *v = 1e19 * rng.normal()),
        5 => g = [-s; 16],
        6 => {
            g.iter_mut().for_each(|v| *v = s * 0.001 * rng.normal());
            g[rng.below(16)] = 1000.0 * s;
        }
        7 => {
            // Student-t with 3 degrees of freedom
            g.iter_mut().for_each(|v| {
                let chi2 = (0..3).map(|_| rng.normal().powi(2)).sum::<f32>() / 3.0;
                *v = s * rng.normal() / chi2.sqrt().max(1e-3);
            })
        }
        8 => g.iter_mut().for_each(|v| *v = s * (rng.below(8) as f32 - 4.0)), // on a Q3_K grid
        9 => g.iter_mut().for_each(|v| *v = s * rng.below(4) as f32),         // on a Q2_K grid
        _ => g.iter_mut().for_each(|v| *v = s * rng.normal()),
    }
    g
}

#[test]
fn special_sub_blocks_match_the_scalar_reference() {
    const KINDS: usize = 11;
    let mut rng = Rng(0x5eed);
    for qtype in QUANTIZE_KERNELS {
        // every sub-block of every block of one kind, then the kinds mixed within blocks
        for kind in 0..KINDS {
            let x: Vec<f32> = (0..16 * 19)
                .flat_map(|_| {
                    let s = 0.5 + rng.uniform();
                    special_group(&mut rng, kind, s)
                })
                .collect();
            check(qtype, &x);
        }
        for n_blocks in [1, 7, 8, 9, 33] {
            let x: Vec<f32> = (0..16 * n_blocks)
                .flat_map(|_| {
                    let (kind, s) = (rng.below(KINDS), 10f32.powi(rng.below(13) as i32 - 6));
                    special_group(&mut rng, kind, s)
                })
                .collect();
            check(qtype, &x);
        }
    }
}
