//! The read-only lattice I-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M): every
//! byte pattern decodes without panicking, deterministically, identically at every SIMD level and
//! through the public `dequantize`; NaN/Inf scales propagate as ggml's arithmetic does; writing is
//! refused. Bit equality with ggml's `to_float` is tested from Python (tests/test_iquants_read.py),
//! where ggml is available.

use fastquant::formats::iquants::grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
use fastquant::formats::iquants::iq2::{KMASK_IQ2XS, KSIGNS_IQ2XS};
use fastquant::formats::{scalar_codec, scalar_dequantizer};
use fastquant::simd::{codec_for, Level};
use fastquant::{dequantize, quantize, Error, FloatSlice, FloatSliceMut, QuantType, QuantizeOptions};

const TYPES: [QuantType; 7] = [
    QuantType::IQ2_XXS,
    QuantType::IQ2_XS,
    QuantType::IQ2_S,
    QuantType::IQ3_XXS,
    QuantType::IQ3_S,
    QuantType::IQ1_S,
    QuantType::IQ1_M,
];

/// xorshift32: reproducible bytes without a dependency.
fn random_bytes(n: usize, mut seed: u32) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed >> 24) as u8
        })
        .collect()
}

/// Writes the fp16 bits `h` as the super-block scale of the block at `blk`.
fn set_scale(qtype: QuantType, blk: &mut [u8], h: u16) {
    if qtype == QuantType::IQ1_M {
        // IQ1_M: the top nibble of each of its four scale u16 (bytes 48..56) holds 4 bits of d.
        for k in 0..4 {
            let at = 48 + 2 * k;
            let v = u16::from_le_bytes([blk[at], blk[at + 1]]);
            let v = (v & 0x0fff) | (((h >> (4 * k)) & 0xf) << 12);
            blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    } else {
        blk[0..2].copy_from_slice(&h.to_le_bytes());
    }
}

fn decode(qtype: QuantType, src: &[u8]) -> Vec<f32> {
    let dq = scalar_dequantizer(qtype).expect("registered");
    let mut out = vec![f32::from_bits(0x7fc0_dead); src.len() / qtype.block_bytes() * 256];
    dq(src, &mut out);
    out
}

#[test]
fn registered_read_only() {
    for t in TYPES {
        assert!(t.can_dequantize() && !t.can_quantize(), "{t:?}");
        assert!(scalar_codec(t).is_none() && scalar_dequantizer(t).is_some(), "{t:?}");
        assert_eq!(t.block_elems(), 256);
    }
}

#[test]
fn random_bytes_decode_deterministically_and_identically_at_every_level() {
    for (i, t) in TYPES.into_iter().enumerate() {
        let n_blocks = 512;
        let src = random_bytes(n_blocks * t.block_bytes(), 0x1234_5678 + i as u32);
        let scalar = decode(t, &src);
        assert_eq!(
            scalar.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            decode(t, &src).iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        // Every output written: the poison pattern cannot come out of the decoders.
        assert!(scalar.iter().all(|v| v.to_bits() != 0x7fc0_dead), "{t:?}");
        for level in [Level::Scalar, Level::Avx2, Level::Avx512, Level::Avx512Vnni] {
            let Some(codec) = codec_for(t, level).unwrap() else { continue };
            assert!(codec.quantize.is_none());
            let mut out = vec![0.0f32; scalar.len()];
            (codec.dequantize)(&src, &mut out);
            assert!(out.iter().zip(&scalar).all(|(a, b)| a.to_bits() == b.to_bits()), "{t:?} at {level:?}");
        }
        // The public path (threads, rows of 4 blocks) gives the same bits.
        let mut out = vec![0.0f32; scalar.len()];
        dequantize(t, &src, 1024, FloatSliceMut::F32(&mut out), None).unwrap();
        assert!(out.iter().zip(&scalar).all(|(a, b)| a.to_bits() == b.to_bits()), "{t:?} public");
    }
}

#[test]
fn every_fp16_scale_decodes_and_nan_inf_propagate() {
    for (i, t) in TYPES.into_iter().enumerate() {
        let payload = random_bytes(t.block_bytes(), 0x0bad_f00d + i as u32);
        let mut src = Vec::with_capacity(65536 * t.block_bytes());
        for h in 0..=u16::MAX {
            let mut blk = payload.clone();
            set_scale(t, &mut blk, h);
            src.extend_from_slice(&blk);
        }
        let out = decode(t, &src);
        for (h, y) in out.chunks_exact(256).enumerate() {
            let d = h as u16;
            let (exp, man) = ((d >> 10) & 0x1f, d & 0x3ff);
            if exp == 0x1f && man != 0 {
                assert!(y.iter().all(|v| v.is_nan()), "{t:?} NaN scale {d:#06x}");
            } else if exp == 0x1f {
                // Infinite scale: every factor is non-zero, so every value is infinite.
                assert!(y.iter().all(|v| v.is_infinite()), "{t:?} Inf scale {d:#06x}");
            } else if exp == 0 && man == 0 {
                assert!(y.iter().all(|v| *v == 0.0), "{t:?} zero scale {d:#06x}");
            } else {
                assert!(y.iter().all(|v| v.is_finite() && *v != 0.0), "{t:?} scale {d:#06x}");
            }
        }
    }
}

#[test]
fn quantizing_is_refused() {
    let x = vec![1.0f32; 512];
    for t in TYPES {
        let mut dst = vec![0u8; 2 * t.block_bytes()];
        let err = quantize(
            t,
            FloatSlice::F32(&x),
            256,
            &mut dst,
            &QuantizeOptions { check_finite: true, imatrix: None, level: None },
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{t:?}: {err:?}");
    }
}

#[test]
fn grids_and_sign_tables_have_their_defining_properties() {
    // Sign tables: 7 stored bits plus even parity.
    for (i, &s) in KSIGNS_IQ2XS.iter().enumerate() {
        assert_eq!(s & 0x7f, i as u8);
        assert_eq!(s.count_ones() % 2, 0);
    }
    assert_eq!(KMASK_IQ2XS, [1, 2, 4, 8, 16, 32, 64, 128]);
    // Grid rows are distinct and use only the lattice's magnitudes.
    fn check<T: Copy + Ord + std::fmt::Debug>(g: &[T], bytes: impl Fn(T) -> Vec<u8>, allowed: &[u8]) {
        let mut rows = g.to_vec();
        rows.sort();
        rows.dedup();
        assert_eq!(rows.len(), g.len());
        assert!(g.iter().all(|&r| bytes(r).iter().all(|b| allowed.contains(b))), "{:?}", &g[..2]);
    }
    let le64 = |r: u64| r.to_le_bytes().to_vec();
    let le32 = |r: u32| r.to_le_bytes().to_vec();
    check(&IQ2XXS_GRID, le64, &[0x08, 0x19, 0x2b]);
    check(&IQ2XS_GRID, le64, &[0x08, 0x19, 0x2b]);
    check(&IQ2S_GRID, le64, &[0x08, 0x19, 0x2b]);
    check(&IQ3XXS_GRID, le32, &[4, 12, 20, 28, 36, 44, 52, 62]);
    check(&IQ3S_GRID, le32, &[1, 3, 5, 7, 9, 11, 13, 15]);
    check(&IQ1S_GRID, le64, &[0xff, 0x00, 0x01]);
}
