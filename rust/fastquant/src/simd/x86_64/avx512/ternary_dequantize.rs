//! AVX-512 dequantize kernels for the ternary formats TQ1_0 and TQ2_0: `(t - 1) as f32 * d` with
//! t in 0..3. The codes are decoded as 16-bit integers (32 per zmm), widened to i32 and converted;
//! each output is the scalar code's one product, and only `d` can be NaN (a product with one NaN
//! operand gives its bits, quieted, in either operand order).

use std::arch::x86_64::*;

use super::entry_points;
use super::kquants_dequantize::dequantize_superblocks;

entry_points! {
    dequantize_tq1_0 => dequantize_tq1_0_avx512(&[u8], &mut [f32]);
    dequantize_tq2_0 => dequantize_tq2_0_avx512(&[u8], &mut [f32]);
}

/// Loads 32 bytes from `b[at..at + 32]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_u8x32(b: &[u8], at: usize) -> __m256i {
    let b: &[u8; 32] = b[at..at + 32].try_into().expect("32 bytes");
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Loads 16 bytes from `b[at..at + 16]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_u8x16(b: &[u8], at: usize) -> __m128i {
    let b: &[u8; 16] = b[at..at + 16].try_into().expect("16 bytes");
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// 32 codes t - 1 (as i16) times `d`: elements 0..16 and 16..32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn scale_i16x32(t: __m512i, d: __m512) -> (__m512, __m512) {
    let t = _mm512_sub_epi16(t, _mm512_set1_epi16(1));
    let lo = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_castsi512_si256(t)));
    let hi = _mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(_mm512_extracti64x4_epi64::<1>(t)));
    (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
}

/// The top trit of each byte after `n` trits were shifted out: `q = byte * 3^n mod 256`, then
/// `(q * 3) >> 8`, on 16-bit lanes (`pow3` is 3^n per lane).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn top_trit(bytes: __m512i, pow3: __m512i) -> __m512i {
    let q = _mm512_and_si512(_mm512_mullo_epi16(bytes, pow3), _mm512_set1_epi16(0xff));
    _mm512_srli_epi16::<8>(_mm512_mullo_epi16(q, _mm512_set1_epi16(3)))
}

/// `dequantize_row_tq1_0`: 5 trits per byte of `qs[0..32]` (elements 32n + m for trit n of byte
/// m), then of `qs[32..48]` (160 + 16n + m), then 4 trits per byte of `qh[0..4]` (240 + 4n + m).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_tq1_0_avx512(src: &[u8], dst: &mut [f32]) {
    const POW3: [i16; 5] = [1, 3, 9, 27, 81];
    dequantize_superblocks::<54>(src, dst, |b| {
        let d = _mm512_cvtph_ps(_mm256_set1_epi16(i16::from_le_bytes([b[52], b[53]])));
        let mut v = [_mm512_setzero_ps(); 16];
        let q0 = _mm512_cvtepu8_epi16(load_u8x32(b, 0));
        // Bytes 32..48 twice, for trits n and n + 1 at once.
        let q1 = _mm256_cvtepu8_epi16(load_u8x16(b, 32));
        let q1 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q1), q1);
        for (n, p) in POW3.into_iter().enumerate() {
            let (lo, hi) = scale_i16x32(top_trit(q0, _mm512_set1_epi16(p)), d);
            v[2 * n] = lo;
            v[2 * n + 1] = hi;
        }
        for n in [0, 2] {
            let pow3 = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_set1_epi16(POW3[n])),
                _mm256_set1_epi16(POW3[n + 1]),
            );
            let (lo, hi) = scale_i16x32(top_trit(q1, pow3), d);
            v[10 + n] = lo;
            v[11 + n] = hi;
        }
        // Trit 4 of bytes 32..48 (lanes 0..16), then the 16 trits of qh (lanes 16..32: 4 trits of
        // 4 bytes, trit-major).
        let qh = u32::from_le_bytes([b[48], b[49], b[50], b[51]]);
        let qh = _mm256_cvtepu8_epi16(_mm_set1_epi32(qh as i32));
        let last = _mm512_inserti64x4::<1>(q1, qh);
        let pow3 = _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set1_epi16(POW3[4])),
            _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27),
        );
        let (lo, hi) = scale_i16x32(top_trit(last, pow3), d);
        v[14] = lo;
        v[15] = hi;
        v
    });
}

/// `dequantize_row_tq2_0`: 2-bit codes, element 128h + 32l + m being bits 2l..2l + 2 of
/// `qs[32h + m]`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn dequantize_tq2_0_avx512(src: &[u8], dst: &mut [f32]) {
    dequantize_superblocks::<66>(src, dst, |b| {
        let d = _mm512_cvtph_ps(_mm256_set1_epi16(i16::from_le_bytes([b[64], b[65]])));
        let three = _mm512_set1_epi16(3);
        let mut v = [_mm512_setzero_ps(); 16];
        for h in 0..2 {
            let q = _mm512_cvtepu8_epi16(load_u8x32(b, 32 * h));
            let shifted = [q, _mm512_srli_epi16::<2>(q), _mm512_srli_epi16::<4>(q), _mm512_srli_epi16::<6>(q)];
            for (l, q) in shifted.into_iter().enumerate() {
                let (lo, hi) = scale_i16x32(_mm512_and_si512(q, three), d);
                v[8 * h + 2 * l] = lo;
                v[8 * h + 2 * l + 1] = hi;
            }
        }
        v
    });
}

#[cfg(test)]
mod tests {
    use super::super::iquants_dequantize::tests::check;
    use crate::types::QuantType;

    /// Every fp16 value as `d`, random codes (including the byte values above 3^5 that ggml's
    /// quantizer never writes), at every level; and a large output for the streaming path.
    #[test]
    fn dequantize_every_fp16_scale_and_large_outputs() {
        let mut state = 0x1357_9bdf_2468_ace0u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 16) as u8
        };
        for (qtype, d_at) in [(QuantType::TQ1_0, 52), (QuantType::TQ2_0, 64)] {
            let bb = qtype.block_bytes();
            let mut bytes: Vec<u8> = (0..(1 << 16) * bb).map(|_| next()).collect();
            for (i, block) in bytes.chunks_exact_mut(bb).enumerate() {
                block[d_at..d_at + 2].copy_from_slice(&(i as u16).to_le_bytes());
            }
            check(qtype, &bytes, "every fp16 scale");
            let n_blocks = (9 << 20) / 4 / 256;
            let bytes: Vec<u8> = (0..n_blocks * bb).map(|_| next()).collect();
            check(qtype, &bytes, "large");
            check(qtype, &[], "empty");
        }
    }
}
