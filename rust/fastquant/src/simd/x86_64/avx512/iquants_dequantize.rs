//! AVX-512 dequantize kernels for the 4-bit lookup-table formats: IQ4_NL, IQ4_XS and MXFP4 (MXFP4
//! has its own `formats/mxfp4.rs` but decodes exactly like IQ4_NL, with another table and scale).
//!
//! The nibbles index a 16-entry table of small integers; `vpshufb` looks up 16 or 32 of them at
//! once, then they are widened to i32, converted to f32 and multiplied by the block scale. Each
//! output is one product of the scalar code's two operands (the table value converts exactly), and
//! a product with one NaN operand gives that NaN's bits, quieted, in either order; the scale is the
//! only operand that can be NaN (an fp16 NaN, converted by `vcvtph2ps` with its payload as `half`
//! does; MXFP4's E8M0 scale is always a finite power of two).

use std::arch::x86_64::*;

use super::kquants_dequantize::dequantize_superblocks;
use super::{dequantize_blocks, entry_points};
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::formats::mxfp4::{e8m0_to_fp32_half, KVALUES_MXFP4};

entry_points! {
    dequantize_iq4_nl => dequantize_iq4_nl_avx512(&[u8], &mut [f32]);
    dequantize_iq4_xs => dequantize_iq4_xs_avx512(&[u8], &mut [f32]);
    dequantize_mxfp4 => dequantize_mxfp4_avx512(&[u8], &mut [f32]);
}

/// A 16-entry i8 table in an xmm, for `vpshufb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn table(values: &[i8; 16]) -> __m128i {
    // SAFETY: `values` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(values.as_ptr().cast()) }
}

/// Loads 16 bytes from `b[at..at + 16]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_u8x16(b: &[u8], at: usize) -> __m128i {
    let b: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// The table values of the low and the high nibbles of 16 bytes, as f32 (elements 0..16 from the
/// low nibbles, 16..32 from the high ones).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn lookup_nibbles(t: __m128i, q: __m128i) -> (__m512, __m512) {
    let m4 = _mm_set1_epi8(0x0f);
    let lo = _mm_shuffle_epi8(t, _mm_and_si128(q, m4));
    let hi = _mm_shuffle_epi8(t, _mm_and_si128(_mm_srli_epi16::<4>(q), m4));
    (_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)))
}

/// `dequantize_row_iq4_nl`: `d * kvalues_iq4nl[q]`, byte j holding elements j and j + 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_iq4_nl_avx512(src: &[u8], dst: &mut [f32]) {
    let t = table(&KVALUES_IQ4NL);
    dequantize_blocks::<18>(src, dst, |b| {
        let d = _mm512_cvtph_ps(_mm256_set1_epi16(i16::from_le_bytes([b[0], b[1]])));
        let (lo, hi) = lookup_nibbles(t, load_u8x16(b, 2));
        (_mm512_mul_ps(d, lo), _mm512_mul_ps(d, hi))
    });
}

/// `dequantize_row_mxfp4`: `kvalues_mxfp4[q] * (2^(e - 128))`, byte j holding elements j, j + 16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_mxfp4_avx512(src: &[u8], dst: &mut [f32]) {
    let t = table(&KVALUES_MXFP4);
    dequantize_blocks::<17>(src, dst, |b| {
        let d = _mm512_set1_ps(e8m0_to_fp32_half(b[0]));
        let (lo, hi) = lookup_nibbles(t, load_u8x16(b, 1));
        (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
    });
}

/// `dequantize_row_iq4_xs`: 8 sub-blocks of 32 laid out as IQ4_NL blocks, each with the scale
/// `dl = d * (ls - 32)` (`ls` 6 bits: low 4 in `scales_l`, high 2 in `scales_h`); `dl * kvalue`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_iq4_xs_avx512(src: &[u8], dst: &mut [f32]) {
    let t = table(&KVALUES_IQ4NL);
    dequantize_superblocks::<136>(src, dst, |b| {
        let scales_h = u16::from_le_bytes([b[2], b[3]]);
        let ls: [i32; 8] = std::array::from_fn(|ib| {
            ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xf) as i32 | ((((scales_h >> (2 * ib)) & 3) as i32) << 4)
        });
        let d = _mm256_cvtph_ps(_mm_set1_epi16(i16::from_le_bytes([b[0], b[1]])));
        // SAFETY: `ls` is 8 readable i32; `loadu` has no alignment requirement.
        let ls = unsafe { _mm256_loadu_si256(ls.as_ptr().cast()) };
        let dl = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(ls, _mm256_set1_epi32(32))));
        let mut dls = [0f32; 8];
        // SAFETY: `dls` is 8 writable floats; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_ps(dls.as_mut_ptr(), dl) };
        let mut v = [_mm512_setzero_ps(); 16];
        for ib in 0..8 {
            let (lo, hi) = lookup_nibbles(t, load_u8x16(b, 8 + 16 * ib));
            let dl = _mm512_set1_ps(dls[ib]);
            v[2 * ib] = _mm512_mul_ps(dl, lo);
            v[2 * ib + 1] = _mm512_mul_ps(dl, hi);
        }
        v
    });
}

#[cfg(test)]
pub(super) mod tests {
    use crate::formats::scalar_dequantizer;
    use crate::simd::{codec_for, Level};
    use crate::types::QuantType;

    struct Rng(u64);
    impl Rng {
        fn next_u32(&mut self) -> u32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 16) as u32
        }
    }

    /// (type, offset of the fp16 scale if any).
    const TYPES: [(QuantType, Option<usize>); 3] =
        [(QuantType::IQ4_NL, Some(0)), (QuantType::IQ4_XS, Some(0)), (QuantType::MXFP4, None)];

    pub(in crate::simd) fn check(qtype: QuantType, bytes: &[u8], what: &str) {
        let dq_ref = scalar_dequantizer(qtype).unwrap();
        let len = bytes.len() / qtype.block_bytes() * qtype.block_elems();
        let mut want = vec![0f32; len];
        dq_ref(bytes, &mut want);
        for level in Level::ALL {
            let Some(codec) = codec_for(qtype, level).unwrap() else { continue };
            // The kernels under test are registered (at both levels for every type here).
            if level >= Level::Avx2 {
                assert_eq!(codec.dequantize_level, level.min(Level::Avx512), "{qtype}");
            }
            // Outputs at several float offsets from a 64-byte line (the streaming path's head
            // of 0, 1 and 5 floats, and the allocator's), with guard floats on both sides that
            // must stay untouched.
            let mut buf = vec![f32::from_bits(0xdead_beef); len + 32];
            let line = (64 - buf.as_ptr() as usize % 64) % 64 / 4;
            for offset in [0, line, line + 1, line + 11] {
                buf.fill(f32::from_bits(0xdead_beef));
                (codec.dequantize)(bytes, &mut buf[offset..offset + len]);
                let got = &buf[offset..offset + len];
                if let Some(i) = want.iter().zip(got).position(|(a, b)| a.to_bits() != b.to_bits()) {
                    panic!(
                        "{qtype} at {level} ({what}, offset {offset}): element {i} want {:e} got {:e}",
                        want[i], got[i]
                    );
                }
                let guards = buf[..offset].iter().chain(&buf[offset + len..]);
                assert!(guards.into_iter().all(|g| g.to_bits() == 0xdead_beef), "{qtype} at {level}: wrote outside");
            }
        }
    }

    /// Every fp16 value as the scale (every E8M0 value for MXFP4, many times over), random codes.
    #[test]
    fn dequantize_every_scale_at_every_level() {
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        for (qtype, d_at) in TYPES {
            let bb = qtype.block_bytes();
            let n_blocks = 1 << 16;
            let mut bytes: Vec<u8> = (0..n_blocks * bb).map(|_| rng.next_u32() as u8).collect();
            for (i, block) in bytes.chunks_exact_mut(bb).enumerate() {
                match d_at {
                    Some(at) => block[at..at + 2].copy_from_slice(&(i as u16).to_le_bytes()),
                    None => block[0] = i as u8,
                }
            }
            check(qtype, &bytes, "every scale");
        }
    }

    /// Large outputs take the streaming path.
    #[test]
    fn large_random_outputs_match_scalar() {
        let mut rng = Rng(0x0bad_cafe_beef);
        for (qtype, _) in TYPES {
            let n_blocks = (9 << 20) / 4 / qtype.block_elems(); // 9 MiB of f32
            let bytes: Vec<u8> = (0..n_blocks * qtype.block_bytes()).map(|_| rng.next_u32() as u8).collect();
            check(qtype, &bytes, "large");
            check(qtype, &bytes[..3 * qtype.block_bytes()], "small");
            check(qtype, &[], "empty");
        }
    }
}
