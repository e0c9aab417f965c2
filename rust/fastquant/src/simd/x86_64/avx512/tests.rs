//! The AVX-512 kernels against the scalar references on inputs chosen to hit every special case
//! of the kernels: NaN payloads and positions, infinities, subnormals, signed zeros, exact rounding
//! ties, the max magnitude with both signs, and the streamed output at every alignment. The
//! crate-level tests compare all levels on broader data; these go where those cannot reach.
//! Each test passes trivially on a CPU without AVX-512.

use std::arch::x86_64::*;

use super::{kernels, stream_blocks, STREAM_MIN_BYTES};
use crate::formats::scalar_codec;
use crate::simd::x86_64::Avx512;
use crate::types::QuantType;

const TYPES: [QuantType; 8] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q8_1,
    QuantType::F16,
    QuantType::BF16,
];

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn normal(&mut self) -> f32 {
        (0..12).map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32).sum::<f32>() - 6.0
    }
}

const SPECIALS: [f32; 20] = [
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MAX,
    -f32::MAX,
    3e38,
    -3e38,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1e-45,
    -1e-45,
    65504.0,
    65520.0,
    -65520.0,
    1.0,
    -1.0,
    0.5,
    -0.5,
];

/// One 32-float block of a randomly chosen adversarial kind.
fn adversarial_block(rng: &mut Rng) -> [f32; 32] {
    let mut x = [0f32; 32];
    let scale = f32::from_bits(((rng.below(254) as u32 + 1) << 23) | 0x3f_ffff) * 1e-10;
    match rng.below(10) {
        0 => x.iter_mut().for_each(|v| *v = f32::from_bits(rng.next() as u32)),
        1 => x.iter_mut().for_each(|v| *v = SPECIALS[rng.below(SPECIALS.len())]),
        2 => {
            // Mostly ordinary values with a few specials, NaNs with payloads and signs included.
            x.iter_mut().for_each(|v| *v = rng.normal());
            for _ in 0..rng.below(4) {
                let special = match rng.below(3) {
                    0 => f32::from_bits(0x7f80_0000 | rng.next() as u32 | 1),
                    1 => f32::from_bits(0xff80_0001 | rng.next() as u32),
                    _ => SPECIALS[rng.below(SPECIALS.len())],
                };
                x[rng.below(32)] = special;
            }
        }
        3 => {
            // The largest magnitude with both signs, in random order, at any scale.
            x.iter_mut().for_each(|v| *v = rng.normal() * scale);
            let m = 7.0 * scale;
            x[rng.below(32)] = m;
            x[rng.below(32)] = -m;
        }
        4 => {
            // Exact rounding ties: a power-of-two scale with half-integer multiples of it.
            let unit = [1.0f32, 0.5, 0.25, 1.0 / 1024.0][rng.below(4)];
            x.iter_mut().for_each(|v| *v = (rng.below(255) as f32 - 127.0 + 0.5) * unit);
            x[rng.below(32)] = 127.0 * unit * if rng.below(2) == 0 { 1.0 } else { -1.0 };
            x[rng.below(32)] = [8.0, 16.0, 15.0, 31.0][rng.below(4)] * unit;
        }
        5 => {
            // Zeros of both signs, maybe with one sign of ordinary values (min or max is zero).
            let sign = [0.0f32, 1.0, -1.0][rng.below(3)];
            x.iter_mut().for_each(|v| {
                *v = if rng.below(2) == 0 { [0.0, -0.0][rng.below(2)] } else { sign * rng.normal().abs() }
            });
        }
        6 => x.iter_mut().for_each(|v| *v = f32::from_bits(rng.next() as u32 & 0x807f_ffff)),
        7 => x.iter_mut().for_each(|v| *v = rng.normal() * scale),
        8 => {
            // Infinities without NaN: scales of infinity and inf - inf.
            x.iter_mut().for_each(|v| *v = rng.normal());
            x[rng.below(32)] = [f32::INFINITY, f32::NEG_INFINITY][rng.below(2)];
            x[rng.below(32)] = [f32::INFINITY, f32::NEG_INFINITY, f32::MAX][rng.below(3)];
        }
        _ => {
            let c = SPECIALS[rng.below(SPECIALS.len())];
            x.iter_mut().for_each(|v| *v = c);
        }
    }
    x
}

#[test]
fn quantize_matches_scalar_on_adversarial_blocks() {
    let Some(token) = Avx512::try_new() else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let with_nan: Vec<f32> = (0..40_000).flat_map(|_| adversarial_block(&mut rng)).collect();
    // Without NaN, whole groups of blocks take the kernels' batched path.
    let without_nan: Vec<f32> = with_nan.iter().map(|&v| if v.is_nan() { 0.75 } else { v }).collect();
    for (qtype, x) in TYPES.into_iter().flat_map(|t| [(t, &with_nan), (t, &without_nan)]) {
        let quantize = kernels(token, qtype).quantize.expect("every type has a kernel");
        let (quantize_ref, _) = scalar_codec(qtype).expect("implemented");
        // Whole rows, and a short row whose length is not a multiple of the kernels' steps.
        for len in [x.len(), 32 * 3 + if qtype.block_elems() == 1 { 5 } else { 0 }] {
            let x = &x[..len];
            let n = qtype.row_bytes(len).unwrap();
            let (mut want, mut got) = (vec![0u8; n], vec![0x55u8; n]);
            quantize_ref(x, &mut want);
            quantize(x, &mut got);
            if let Some(pos) = want.iter().zip(&got).position(|(a, b)| a != b) {
                let (bb, be) = (qtype.block_bytes(), qtype.block_elems());
                let block = pos / bb;
                let elems = if be == 1 { pos / 2 / 32 * 32 } else { block * be };
                panic!(
                    "{qtype}: byte {pos}: want {:?} got {:?} for {:?}",
                    &want[block * bb..(block + 1) * bb],
                    &got[block * bb..(block + 1) * bb],
                    &x[elems..(elems + 32).min(len)]
                );
            }
        }
    }
}

/// fp16 bit patterns that exercise the scale paths: NaNs (quiet, signalling, both signs),
/// infinities, zeros, subnormals, the largest finite values.
const FP16_SPECIALS: [u16; 12] =
    [0x7e00, 0xfe2d, 0x7d01, 0xfc01, 0x7c00, 0xfc00, 0x0000, 0x8000, 0x0001, 0x83ff, 0x7bff, 0xfbff];

#[test]
fn dequantize_matches_scalar_with_special_scales() {
    let Some(token) = Avx512::try_new() else { return };
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for qtype in TYPES {
        let dequantize = kernels(token, qtype).dequantize.expect("every type has a kernel");
        let (_, dequantize_ref) = scalar_codec(qtype).expect("implemented");
        let len = 32 * 4099;
        let mut src: Vec<u8> = (0..qtype.row_bytes(len).unwrap()).map(|_| rng.next() as u8).collect();
        // Legacy blocks start with one or two fp16 scales (d, then m or s): force special values
        // into them, both at once in some blocks. 16-bit rows get specials anywhere.
        let step = if qtype.block_elems() == 1 { 2 } else { qtype.block_bytes() };
        for at in (0..src.len()).step_by(step) {
            for field in 0..2 {
                if rng.below(3) == 0 {
                    let h = FP16_SPECIALS[rng.below(FP16_SPECIALS.len())];
                    src[at + 2 * field..at + 2 * field + 2].copy_from_slice(&h.to_le_bytes());
                }
                if step == 2 {
                    break;
                }
            }
        }
        for len in [len, 32 * 3 + if qtype.block_elems() == 1 { 7 } else { 0 }] {
            let src = &src[..qtype.row_bytes(len).unwrap()];
            let (mut want, mut got) = (vec![0f32; len], vec![1f32; len]);
            dequantize_ref(src, &mut want);
            dequantize(src, &mut got);
            for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "{qtype}: element {i}: want {a:e} got {b:e}");
            }
        }
    }
}

/// Streams `n_blocks` blocks whose block i decodes to the floats 32i..32i + 32 into `dst`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn stream_counting(n_blocks: usize, dst: &mut [f32]) {
    let blocks: Vec<[u8; 4]> = (0..n_blocks as u32).map(|i| i.to_le_bytes()).collect();
    let decode = |b: &[u8; 4]| {
        let base = _mm512_set1_epi32(32 * u32::from_le_bytes(*b) as i32);
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let lo = _mm512_cvtepi32_ps(_mm512_add_epi32(base, lanes));
        (lo, _mm512_add_ps(lo, _mm512_set1_ps(16.0)))
    };
    stream_blocks(&blocks, dst, decode);
}

/// The streaming path only runs on outputs of [`STREAM_MIN_BYTES`] and more; check it at every
/// 4-byte alignment of the output on small inputs, and that it writes nothing outside the output.
#[test]
fn streamed_output_is_exact_at_every_alignment() {
    if Avx512::try_new().is_none() {
        return;
    }
    for n_blocks in [1, 2, 37] {
        for offset in 0..16 {
            let mut buf = vec![-1f32; 32 * n_blocks + 64];
            // Vec<f32> is at least 4-byte aligned: move the start through all 16 lane offsets.
            let base = (16 - buf.as_ptr() as usize % 64 / 4) % 16;
            let start = base + offset;
            let dst = &mut buf[start..start + 32 * n_blocks];
            // SAFETY: the CPU has AVX-512 (checked above), all `stream_counting` needs.
            unsafe { stream_counting(n_blocks, dst) };
            for (i, v) in buf.iter().enumerate() {
                let want = if (start..start + 32 * n_blocks).contains(&i) { (i - start) as f32 } else { -1.0 };
                assert_eq!(*v, want, "{n_blocks} blocks at lane offset {offset}: float {i}");
            }
        }
    }
}

/// A full-size streamed dequantize at an unaligned start, against the scalar reference.
#[test]
fn large_dequantize_streams_and_matches_scalar() {
    let Some(token) = Avx512::try_new() else { return };
    let mut rng = Rng(42);
    let len = STREAM_MIN_BYTES / 4 + 32;
    for qtype in [QuantType::Q4_1, QuantType::BF16] {
        let src: Vec<u8> = (0..qtype.row_bytes(len).unwrap()).map(|_| rng.next() as u8).collect();
        let mut want = vec![0f32; len];
        scalar_codec(qtype).unwrap().1(&src, &mut want);
        let mut buf = vec![0f32; len + 1];
        (kernels(token, qtype).dequantize.unwrap())(&src, &mut buf[1..]);
        assert!(want.iter().zip(&buf[1..]).all(|(a, b)| a.to_bits() == b.to_bits()), "{qtype}");
    }
}

#[test]
fn empty_rows_are_fine() {
    let Some(token) = Avx512::try_new() else { return };
    for qtype in TYPES {
        let k = kernels(token, qtype);
        (k.quantize.unwrap())(&[], &mut []);
        (k.dequantize.unwrap())(&[], &mut []);
    }
}

/// Full-size F16/BF16 quantizes, which stream their output, at several alignments of the output
/// (an odd one takes the ordinary path), against the scalar reference.
#[test]
fn large_16bit_quantize_streams_and_matches_scalar() {
    let Some(token) = Avx512::try_new() else { return };
    let mut rng = Rng(7);
    let len = STREAM_MIN_BYTES / 2 + 37;
    let x: Vec<f32> = (0..len).map(|_| f32::from_bits(rng.next() as u32)).collect();
    for qtype in [QuantType::F16, QuantType::BF16] {
        let mut want = vec![0u8; 2 * len];
        scalar_codec(qtype).unwrap().0(&x, &mut want);
        for offset in [0, 1, 2, 6, 34, 62] {
            let mut buf = vec![0x55u8; 2 * len + 64];
            (kernels(token, qtype).quantize.unwrap())(&x, &mut buf[offset..offset + 2 * len]);
            assert!(buf[..offset].iter().chain(&buf[offset + 2 * len..]).all(|&b| b == 0x55), "{qtype} {offset}");
            assert!(want == buf[offset..offset + 2 * len], "{qtype} at byte offset {offset}");
        }
    }
}
