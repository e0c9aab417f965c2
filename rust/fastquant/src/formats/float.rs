//! F32, F16 and BF16 rows, with ggml's exact conversion rules.
//!
//! ggml writes F16 tensors with `ggml_compute_fp32_to_fp16` (`ggml-impl.h`), a branch-free
//! round-to-nearest-even conversion that turns every NaN into a quiet NaN `0x7E00` with the sign
//! kept, and BF16 tensors with `ggml_compute_fp32_to_bf16`, which rounds to nearest even by integer
//! addition (so subnormals are kept, unlike `vcvtneps2bf16`) and quiets NaNs by setting bit 6.
//! Both are reproduced here bit for bit; these functions are also the scale conversions that every
//! block format uses.

/// fp32 -> fp16 bits exactly as ggml's `GGML_FP32_TO_FP16`.
#[inline]
pub fn fp32_to_fp16(f: f32) -> u16 {
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return sign | 0x7e00;
    }
    // Round to nearest even at fp16's precision by letting the FPU do it: scale so that the value's
    // ulp lines up with fp16's, add a power of two that pins the exponent, and read the bits back.
    // This is the algorithm of the FP16 library that ggml adopted; the two constant multiplies are
    // there to overflow to infinity / keep subnormal rounding right.
    let scale_to_inf = f32::from_bits(0x7780_0000); // 2^112
    let scale_to_zero = f32::from_bits(0x0880_0000); // 2^-110
    let mut base = (f.abs() * scale_to_inf) * scale_to_zero;
    let shl1_w = bits.wrapping_add(bits);
    let mut bias = shl1_w & 0xff00_0000;
    if bias < 0x7100_0000 {
        bias = 0x7100_0000;
    }
    base += f32::from_bits((bias >> 1) + 0x0780_0000);
    let rbits = base.to_bits();
    let exp_bits = (rbits >> 13) & 0x0000_7c00;
    let mantissa_bits = rbits & 0x0000_0fff;
    sign | (exp_bits + mantissa_bits) as u16
}

/// fp16 bits -> fp32, exact (NaN payloads kept), as ggml's `GGML_FP16_TO_FP32`.
#[inline]
pub fn fp16_to_fp32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// fp32 -> bf16 bits exactly as ggml's `ggml_compute_fp32_to_bf16`.
#[inline]
pub fn fp32_to_bf16(f: f32) -> u16 {
    let u = f.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        // NaN: keep the top bits, force it quiet.
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

/// bf16 bits -> fp32, exact.
#[inline]
pub fn bf16_to_fp32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

// ---- whole rows (the scalar references the SIMD kernels are checked against) -------------------

/// F32 "quantization" is a copy into little-endian bytes.
pub fn quantize_row_f32(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.iter().zip(dst.chunks_exact_mut(4)) {
        out.copy_from_slice(&x.to_le_bytes());
    }
}

/// F32 rows back to floats: `src` holds little-endian f32, 4 bytes per element of `dst`.
pub fn dequantize_row_f32(src: &[u8], dst: &mut [f32]) {
    for (bytes, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        *y = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
}

/// Port of ggml's `ggml_fp32_to_fp16_row` (the F16 branch of `ggml_quantize_chunk`).
pub fn quantize_row_f16(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&fp32_to_fp16(*x).to_le_bytes());
    }
}

/// F16 rows to f32 (exact): `src` holds little-endian fp16, 2 bytes per element of `dst`.
pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) {
    for (bytes, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = fp16_to_fp32(u16::from_le_bytes([bytes[0], bytes[1]]));
    }
}

/// Port of ggml's `ggml_fp32_to_bf16_row_ref` (the BF16 branch of `ggml_quantize_chunk`).
pub fn quantize_row_bf16(src: &[f32], dst: &mut [u8]) {
    for (x, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&fp32_to_bf16(*x).to_le_bytes());
    }
}

/// BF16 rows to f32 (exact, a 16-bit shift): `src` holds little-endian bf16, 2 bytes per element of `dst`.
pub fn dequantize_row_bf16(src: &[u8], dst: &mut [f32]) {
    for (bytes, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = bf16_to_fp32(u16::from_le_bytes([bytes[0], bytes[1]]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp16_conversion_matches_ieee_round_to_nearest_even() {
        // half's conversion is IEEE round-to-nearest-even; ggml's differs only in how NaN is encoded.
        let mut state = 0x1234_5678_u32;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let f = f32::from_bits(state);
            if f.is_nan() {
                assert_eq!(fp32_to_fp16(f) & 0x7fff, 0x7e00);
                continue;
            }
            assert_eq!(fp32_to_fp16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
        }
        for f in [0.0f32, -0.0, 65504.0, 65520.0, 1e-8, -6.0e-8, 5.96e-8, f32::INFINITY, f32::MIN_POSITIVE] {
            assert_eq!(fp32_to_fp16(f), half::f16::from_f32(f).to_bits(), "{f:e}");
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        assert_eq!(fp32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between 1.0 and 1 + 2^-7: even wins.
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(fp32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(bf16_to_fp32(0x3f80), 1.0);
    }
}
