//! x86-64 kernels, one folder per ISA with the same file stems as `formats/`.
//!
//! The tokens below are zero-sized proofs that the running CPU has an ISA's features: the only
//! safe way to make one is `try_new`, which asks the CPU. Kernel functions are `unsafe
//! #[target_feature]` functions; each ISA module hands out safe function pointers to wrappers
//! only in exchange for a token, so calling them is sound.

pub mod avx2;
pub mod avx512;

/// Proof that the CPU has AVX2, FMA and F16C.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The token if the running CPU has AVX2, FMA and F16C, else `None` (asks the CPU each call).
    pub fn try_new() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c"))
        .then_some(Avx2(()))
    }
}

/// Proof that the CPU has AVX-512 F, BW, VL and DQ (plus everything [`Avx2`] proves).
#[derive(Clone, Copy, Debug)]
pub struct Avx512(());

impl Avx512 {
    /// The token if the running CPU has AVX2 and AVX-512 F/BW/VL/DQ, else `None`.
    pub fn try_new() -> Option<Self> {
        (Avx2::try_new().is_some()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq"))
        .then_some(Avx512(()))
    }
}

/// Whether `x` holds a NaN or ±Inf, with AVX2: the finite check runs on data the quantize kernel
/// just pulled into L1, so it must cost next to nothing beside the kernel. The kernels that fall
/// back to the scalar reference for non-finite blocks call it too.
pub fn has_non_finite_avx2(_token: Avx2, x: &[f32]) -> bool {
    // SAFETY: the token proves the CPU has AVX2.
    unsafe { any_non_finite_avx2(x) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn any_non_finite_avx2(x: &[f32]) -> bool {
    use std::arch::x86_64::*;
    let exp = _mm256_set1_epi32(0x7f80_0000);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut chunks = x.chunks_exact(32);
    for c in &mut chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: c holds 32 floats, so 8 at offset 8k are in bounds.
            let v = unsafe { _mm256_loadu_si256(c.as_ptr().add(8 * k) as *const __m256i) };
            *a = _mm256_max_epu32(*a, _mm256_and_si256(v, exp));
        }
    }
    let m = _mm256_max_epu32(_mm256_max_epu32(acc[0], acc[1]), _mm256_max_epu32(acc[2], acc[3]));
    let all_ones = _mm256_movemask_epi8(_mm256_cmpeq_epi32(m, exp)) != 0;
    all_ones || chunks.remainder().iter().any(|v| !v.is_finite())
}

/// [`has_non_finite_avx2`] with AVX-512 (`vfpclassps` tests for NaN and ±Inf directly).
pub fn has_non_finite_avx512(_token: Avx512, x: &[f32]) -> bool {
    // SAFETY: the token proves the CPU has AVX-512 F and DQ.
    unsafe { any_non_finite_avx512(x) }
}

#[target_feature(enable = "avx512f,avx512dq")]
#[inline]
fn any_non_finite_avx512(x: &[f32]) -> bool {
    use std::arch::x86_64::*;
    // fpclass categories: 0x01 QNaN, 0x08 +Inf, 0x10 -Inf, 0x80 SNaN.
    const NON_FINITE: i32 = 0x99;
    let mut hits: u16 = 0;
    let mut chunks = x.chunks_exact(64);
    for c in &mut chunks {
        // SAFETY: c holds 64 floats; the four 16-float loads are in bounds.
        unsafe {
            let p = c.as_ptr();
            hits |= _mm512_fpclass_ps_mask::<NON_FINITE>(_mm512_loadu_ps(p))
                | _mm512_fpclass_ps_mask::<NON_FINITE>(_mm512_loadu_ps(p.add(16)))
                | _mm512_fpclass_ps_mask::<NON_FINITE>(_mm512_loadu_ps(p.add(32)))
                | _mm512_fpclass_ps_mask::<NON_FINITE>(_mm512_loadu_ps(p.add(48)));
        }
    }
    hits != 0 || chunks.remainder().iter().any(|v| !v.is_finite())
}
