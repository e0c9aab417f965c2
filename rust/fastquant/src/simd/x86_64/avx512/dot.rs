//! AVX-512 matmul dot kernels: the legacy types, IQ4_NL and MXFP4 against Q8_0/Q8_1 with VNNI, two blocks
//! per 512-bit register. The float weights' kernels are in `dot_float.rs`.

use crate::matmul::dot::VecDotFn;
use crate::types::QuantType;

/// The VNNI kernel for `weight`, or `None` where there is none or the CPU lacks VNNI.
pub(super) fn kernel_vnni(weight: QuantType) -> Option<VecDotFn> {
    if !std::arch::is_x86_feature_detected!("avx512vnni") {
        return None;
    }
    legacy::kernel(weight)
}

/// The legacy types with `vpdpbusd`: the order `matmul::dot` specifies, with slots 0 and 1 in one
/// register (blocks `b`, `b + 1` of a pair) and slots 2 and 3 in another.
mod legacy {
    use std::arch::x86_64::*;

    use crate::formats::iquants::iq4::KVALUES_IQ4NL;
    use crate::formats::mxfp4::KVALUES_MXFP4;
    use crate::matmul::dot::{VecDotFn, BLOCK_LANES};
    use crate::simd::x86_64::avx2::dot::legacy::{fp16_lanes, weight_scales, Groups, Kind};
    use crate::simd::x86_64::avx2::dot::reduce_halving_8;
    use crate::types::QuantType;

    /// A 4-bit lookup table's values plus 128, as unsigned bytes (`vpdpbusd` takes the weight
    /// side unsigned).
    const fn biased_table(values: &[i8; 16]) -> [u8; 16] {
        let mut t = [0u8; 16];
        let mut i = 0;
        while i < 16 {
            t[i] = (values[i] as u8) ^ 0x80;
            i += 1;
        }
        t
    }
    const KVALUES_IQ4NL_U8: [u8; 16] = biased_table(&KVALUES_IQ4NL);
    const KVALUES_MXFP4_U8: [u8; 16] = biased_table(&KVALUES_MXFP4);

    impl Kind {
        /// What the unsigned codes of [`pair_codes`] exceed the true codes by.
        fn code_offset(self) -> i8 {
            match self {
                Kind::Q4_0 => 8,
                Kind::Q5_0 => 16,
                Kind::Q8_0 | Kind::Iq4Nl | Kind::Mxfp4 => 0x80u8 as i8,
                Kind::Q4_1 | Kind::Q5_1 => 0,
            }
        }
    }

    /// The 16 bytes at `at` of blocks `b0` and `b1` as nibbles: bytes 0..16 the low nibbles of
    /// `b0`, 16..32 its high nibbles, then the same for `b1`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
    #[inline]
    fn nibble_pair<const B: usize>(b0: &[u8; B], b1: &[u8; B], at: usize) -> __m512i {
        assert!(at + 16 <= B);
        // SAFETY: bytes at..at+16 lie inside both blocks (checked above).
        let x = unsafe {
            _mm256_set_m128i(_mm_loadu_si128(b1.as_ptr().add(at).cast()), _mm_loadu_si128(b0.as_ptr().add(at).cast()))
        };
        // [b0, b0, b1, b1]; the second copy of each is shifted to its high nibbles.
        let z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(x));
        let z = _mm512_mask_srli_epi16::<4>(z, 0xff00_ff00, z);
        _mm512_and_si512(z, _mm512_set1_epi8(0x0f))
    }

    /// The 32 bits at `at` of `b0` and `b1` as one 64-bit mask (b0's bits low).
    #[inline]
    fn bit_pair<const B: usize>(b0: &[u8; B], b1: &[u8; B], at: usize) -> __mmask64 {
        let bits = |b: &[u8; B]| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64;
        bits(b0) | (bits(b1) << 32)
    }

    /// The codes of blocks `b0`, `b1` (64 bytes, `b0` first) as unsigned bytes: the true codes plus
    /// `kind.code_offset()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
    #[inline]
    fn pair_codes<const WB: usize>(kind: Kind, b0: &[u8; WB], b1: &[u8; WB]) -> __m512i {
        match kind {
            Kind::Q4_0 => nibble_pair(b0, b1, 2),
            Kind::Q4_1 => nibble_pair(b0, b1, 4),
            Kind::Iq4Nl => {
                // SAFETY: the table is 16 bytes; `loadu` needs no alignment.
                let table = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(KVALUES_IQ4NL_U8.as_ptr().cast()) });
                _mm512_shuffle_epi8(table, nibble_pair(b0, b1, 2))
            }
            Kind::Mxfp4 => {
                // SAFETY: the table is 16 bytes; `loadu` needs no alignment.
                let table = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(KVALUES_MXFP4_U8.as_ptr().cast()) });
                _mm512_shuffle_epi8(table, nibble_pair(b0, b1, 1))
            }
            // The fifth bit adds 16 to the nibble.
            Kind::Q5_0 => {
                let z = nibble_pair(b0, b1, 6);
                _mm512_mask_add_epi8(z, bit_pair(b0, b1, 2), z, _mm512_set1_epi8(16))
            }
            Kind::Q5_1 => {
                let z = nibble_pair(b0, b1, 8);
                _mm512_mask_add_epi8(z, bit_pair(b0, b1, 4), z, _mm512_set1_epi8(16))
            }
            Kind::Q8_0 => {
                assert!(WB >= 34);
                // SAFETY: bytes 2..34 lie inside both blocks (checked above).
                let (c0, c1) = unsafe {
                    (_mm256_loadu_si256(b0.as_ptr().add(2).cast()), _mm256_loadu_si256(b1.as_ptr().add(2).cast()))
                };
                _mm512_xor_si512(
                    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(c0), c1),
                    _mm512_set1_epi8(0x80u8 as i8),
                )
            }
        }
    }

    /// Dot of one weight row with `R` activation rows, eight blocks (four pairs) at a time: the
    /// weight pairs are decoded once; for each row and pair `vpdpbusd` gives the sixteen i32 lanes
    /// (minus the code offset times the activation sums), converted, scaled by their block's
    /// `d_w * d_a` and added to the pair's slot register.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
    #[inline]
    fn dot_rows<const WB: usize, const AB: usize, const R: usize>(
        kind: Kind,
        n: usize,
        weight: &[u8],
        acts: &[u8],
        act_row_bytes: usize,
        out: &mut [f32],
    ) {
        const PAIRS: usize = BLOCK_LANES / 2;
        let signed = kind.signed();
        let offset = _mm512_set1_epi8(kind.code_offset());
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        let mut off = [_mm256_setzero_ps(); R];
        // Pair p's scales: lane 2p of the eight, eight times, then lane 2p + 1 eight times.
        let scale_index: [__m512i; PAIRS] = std::array::from_fn(|p| {
            _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi32(2 * p as i32)),
                _mm256_set1_epi32(2 * p as i32 + 1),
            )
        });
        let groups = Groups::<WB, AB, R>::new(n, weight, acts, act_row_bytes);
        for g in 0..groups.len {
            let (w, a_rows) = groups.get(g);
            let codes: [__m512i; PAIRS] = std::array::from_fn(|p| pair_codes(kind, &w[2 * p], &w[2 * p + 1]));
            let dw = weight_scales(kind, w);
            let mw = if signed { _mm256_setzero_ps() } else { fp16_lanes(w, 2) };
            for r in 0..R {
                let a = a_rows[r];
                let d = _mm512_castps256_ps512(_mm256_mul_ps(dw, fp16_lanes(a, 0)));
                for p in 0..PAIRS {
                    // SAFETY: the last 32 bytes of an activation block are its codes.
                    let av = unsafe {
                        let lo = _mm256_loadu_si256(a[2 * p].as_ptr().add(AB - 32).cast());
                        let hi = _mm256_loadu_si256(a[2 * p + 1].as_ptr().add(AB - 32).cast());
                        _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
                    };
                    let mut sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[p], av);
                    if kind.code_offset() != 0 {
                        sums = _mm512_sub_epi32(sums, _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, av));
                    }
                    let scale = _mm512_permutexvar_ps(scale_index[p], d);
                    let slot = &mut acc[r][p % 2];
                    *slot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, *slot);
                }
                if !signed {
                    off[r] = _mm256_fmadd_ps(mw, fp16_lanes(a, 2), off[r]);
                }
            }
        }
        for ((o, acc), off) in out.iter_mut().zip(acc).zip(off) {
            // Slots 0+2 and 1+3, then their sum: the halving of 32 lanes down to 8.
            let v = _mm512_add_ps(acc[0], acc[1]);
            let v = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
            let v = if signed { v } else { _mm256_add_ps(v, off) };
            *o = reduce_halving_8(v);
        }
    }

    crate::simd::x86_64::avx2::dot::legacy_entry_points!();
}
