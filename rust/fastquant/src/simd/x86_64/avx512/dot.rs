//! AVX-512 matmul dot kernels: the legacy types and IQ4_NL against Q8_0/Q8_1 with VNNI, the AVX2
//! kernels' code (`avx2::dot::legacy_dot_kernels`) with `vpdpbusd` as the byte dot product. The
//! float weights' kernels are in `dot_float.rs`.

use std::arch::x86_64::*;

use crate::matmul::dot::VecDotFn;
use crate::types::QuantType;

/// The VNNI kernel for `weight`, or `None` where there is none or the CPU lacks VNNI.
pub(super) fn kernel_vnni(weight: QuantType) -> Option<VecDotFn> {
    if !std::arch::is_x86_feature_detected!("avx512vnni") {
        return None;
    }
    legacy::kernel(weight)
}

/// Eight i32 sums of four adjacent u8 x i8 products, in one instruction and without `maddubs`'
/// 16-bit saturation.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
#[inline]
fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y)
}

super::super::avx2::dot::legacy_dot_kernels!(
    "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c",
    super::dot_u8_i8
);
