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
    pub fn try_new() -> Option<Self> {
        (Avx2::try_new().is_some()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq"))
        .then_some(Avx512(()))
    }
}
