//! Every implemented type at every SIMD level this CPU has must give the scalar reference's bytes
//! (quantize) and bits (dequantize), on random, adversarial and odd-length data.

#![allow(clippy::vec_init_then_push)] // the data sets read best as a list of pushes

use fastquant::formats::scalar_codec;
use fastquant::simd::{codec_for, Level};
use fastquant::{QuantType, TYPE_TABLE};

mod common;
use common::Rng32 as Rng;

/// Named data sets, each a whole number of 256-element super-blocks long.
fn data_sets() -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng(0x9e37_79b9);
    let n = 256 * 37;
    let mut sets: Vec<(&'static str, Vec<f32>)> = Vec::new();
    sets.push(("normal", (0..n).map(|_| rng.normal()).collect()));
    sets.push(("ggml ramp", (0..n).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect()));
    sets.push(("zeros", vec![0.0; n]));
    sets.push(("negative zeros", vec![-0.0; n]));
    sets.push(("constant", vec![0.731; n]));
    sets.push(("negative constant", vec![-3.25; n]));
    let mut outlier: Vec<f32> = (0..n).map(|_| rng.normal() * 0.01).collect();
    for i in (5..n).step_by(97) {
        outlier[i] = if i % 2 == 0 { 300.0 } else { -300.0 };
    }
    sets.push(("outliers", outlier));
    sets.push(("fp16 edge", (0..n).map(|i| [65504.0, -65504.0, 65520.0, -1e6, 1e-8][i % 5]).collect()));
    sets.push(("huge", (0..n).map(|i| [3e38f32, -3.4e38, 1e30, -2e37][i % 4] * rng.uniform()).collect()));
    sets.push(("subnormal", (0..n).map(|_| f32::from_bits(rng.next_u32() & 0x807f_ffff)).collect()));
    sets.push(("tiny", (0..n).map(|_| rng.normal() * 1e-38).collect()));
    sets.push(("alternating", (0..n).map(|i| if i % 2 == 0 { 1.5 } else { -1.5 }).collect()));
    // The extreme value appears with both signs in each block: the first one decides the sign.
    sets.push((
        "max both signs",
        (0..n)
            .map(|i| match i % 32 {
                3 => -2.0,
                17 => 2.0,
                30 => -2.0,
                _ => rng.normal() * 0.5,
            })
            .collect(),
    ));
    sets.push((
        "max both signs reversed",
        (0..n)
            .map(|i| match i % 32 {
                3 => 2.0,
                17 => -2.0,
                _ => rng.normal() * 0.5,
            })
            .collect(),
    ));
    let mut special: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    for i in (0..n).step_by(41) {
        special[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN][i % 4];
    }
    sets.push(("nan and inf", special));
    let mut one_nan: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    for i in (31..n).step_by(64) {
        one_nan[i] = f32::NAN; // last element of a block: where ggml's MAX() fold keeps NaN
    }
    sets.push(("nan last in block", one_nan));
    sets.push(("random bits", (0..n).map(|_| f32::from_bits(rng.next_u32())).collect()));
    sets
}

fn implemented_types() -> Vec<QuantType> {
    TYPE_TABLE.iter().filter(|t| scalar_codec(t.qtype).is_some()).map(|t| t.qtype).collect()
}

#[test]
fn quantize_every_level_matches_scalar_bytes() {
    for qtype in implemented_types() {
        let (q_ref, _) = scalar_codec(qtype).unwrap();
        for (name, x) in data_sets() {
            // Odd lengths too: kernels must handle a tail of blocks shorter than their unroll.
            for len in [x.len(), qtype.block_elems(), 29 * 32 + 7] {
                let len = len / qtype.block_elems() * qtype.block_elems();
                let x = &x[..len];
                let nbytes = qtype.row_bytes(len).unwrap();
                let mut want = vec![0u8; nbytes];
                q_ref(x, &mut want);
                for level in Level::ALL {
                    let Some(codec) = codec_for(qtype, level).unwrap() else { continue };
                    let mut got = vec![0xAAu8; nbytes];
                    (codec.quantize.unwrap())(x, &mut got);
                    if let Some(pos) = want.iter().zip(&got).position(|(a, b)| a != b) {
                        let block = pos / qtype.block_bytes();
                        panic!(
                            "{qtype} quantize at {level} ({:?} kernel) differs from scalar on '{name}' \
                             len {len}: byte {pos} (block {block}): want {:?} got {:?}; input {:?}",
                            codec.quantize_level,
                            &want[block * qtype.block_bytes()..(block + 1) * qtype.block_bytes()],
                            &got[block * qtype.block_bytes()..(block + 1) * qtype.block_bytes()],
                            &x[block * qtype.block_elems()..(block + 1) * qtype.block_elems()],
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn dequantize_every_level_matches_scalar_bits() {
    let mut rng = Rng(0x1234_5678);
    for qtype in implemented_types() {
        let (_, dq_ref) = scalar_codec(qtype).unwrap();
        let n_blocks = 293;
        let len = n_blocks * qtype.block_elems();
        // Random bytes are valid blocks for every format here (scales may be NaN/Inf/subnormal).
        let bytes: Vec<u8> = (0..qtype.row_bytes(len).unwrap()).map(|_| rng.next_u32() as u8).collect();
        for blocks in [n_blocks, 1, 7] {
            let len = blocks * qtype.block_elems();
            let src = &bytes[..qtype.row_bytes(len).unwrap()];
            let mut want = vec![0f32; len];
            dq_ref(src, &mut want);
            for level in Level::ALL {
                let Some(codec) = codec_for(qtype, level).unwrap() else { continue };
                let mut got = vec![f32::NAN; len];
                (codec.dequantize)(src, &mut got);
                for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{qtype} dequantize at {level} ({:?} kernel): element {i} want {a:e} got {b:e}",
                        codec.dequantize_level
                    );
                }
            }
        }
    }
}

#[test]
fn non_finite_scan_finds_nan_and_inf_anywhere_at_every_level() {
    use fastquant::simd::{available_levels, has_non_finite};
    for len in [0usize, 1, 15, 16, 63, 64, 65, 1000, 4096] {
        let clean: Vec<f32> = (0..len).map(|i| (i as f32).sin() * 1e30).collect();
        for level in available_levels() {
            assert!(!has_non_finite(level, &clean), "{level} len {len}: false positive");
            for pos in [0, len / 3, len.saturating_sub(1)] {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::from_bits(0x7f80_0001)] {
                    if len == 0 {
                        continue;
                    }
                    let mut x = clean.clone();
                    x[pos] = bad;
                    assert!(has_non_finite(level, &x), "{level} len {len}: missed {bad} at {pos}");
                }
            }
        }
    }
}

/// Every fp16 value as the scale `d`, paired with every fp16 value as `m`/`s` (in another order),
/// and random codes: NaN, Inf, subnormal and negative-zero scales all decode as the scalar code does.
#[test]
fn dequantize_every_fp16_scale_at_every_level() {
    let mut rng = Rng(0xdead_beef);
    for qtype in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0, QuantType::Q8_1]
    {
        let (_, dq_ref) = scalar_codec(qtype).unwrap();
        let bb = qtype.block_bytes();
        let n_blocks = 1 << 16;
        let mut bytes: Vec<u8> = (0..n_blocks * bb).map(|_| rng.next_u32() as u8).collect();
        for (i, block) in bytes.chunks_exact_mut(bb).enumerate() {
            block[0..2].copy_from_slice(&(i as u16).to_le_bytes());
            // The second fp16 field (m of Q4_1/Q5_1, s of Q8_1): every value too, scrambled.
            if matches!(qtype, QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q8_1) {
                block[2..4].copy_from_slice(&((i as u16).wrapping_mul(40503)).to_le_bytes());
            }
        }
        let len = n_blocks * qtype.block_elems();
        let mut want = vec![0f32; len];
        dq_ref(&bytes, &mut want);
        for level in Level::ALL {
            let Some(codec) = codec_for(qtype, level).unwrap() else { continue };
            let mut got = vec![0f32; len];
            (codec.dequantize)(&bytes, &mut got);
            if let Some(i) = want.iter().zip(&got).position(|(a, b)| a.to_bits() != b.to_bits()) {
                panic!(
                    "{qtype} at {level}: element {i} (block {}) want {:e} got {:e}",
                    i / qtype.block_elems(),
                    want[i],
                    got[i]
                );
            }
        }
    }
}

/// Outputs of several MiB take the kernels' streaming-store paths; they must agree too, at every
/// alignment of the output the allocator may hand out.
#[test]
fn large_outputs_match_scalar_at_every_level() {
    let mut rng = Rng(0x0bad_cafe);
    let n = 3 << 20; // 12 MiB of f32
    let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    for qtype in implemented_types() {
        let (q_ref, dq_ref) = scalar_codec(qtype).unwrap();
        let mut q = vec![0u8; qtype.row_bytes(n).unwrap()];
        q_ref(&x, &mut q);
        let mut want = vec![0f32; n];
        dq_ref(&q, &mut want);
        for level in Level::ALL {
            let Some(codec) = codec_for(qtype, level).unwrap() else { continue };
            let mut got_q = vec![0u8; q.len()];
            (codec.quantize.unwrap())(&x, &mut got_q);
            assert!(got_q == q, "{qtype} quantize at {level} differs on a large input");
            for offset in [0usize, 1, 3] {
                let mut buf = vec![0f32; n + 4];
                let out = &mut buf[offset..offset + n];
                (codec.dequantize)(&q, out);
                assert!(
                    out.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{qtype} dequantize at {level} differs on a large output at offset {offset}"
                );
            }
        }
    }
}
