//! AVX-512 kernels (F, BW, VL, DQ; Skylake-X, Zen 4). Same file stems as `formats/`: `legacy.rs`
//! for Q4_0..Q8_1, `float.rs` for F16/BF16, `kquants.rs` for quantizing Q4_K/Q5_K/Q6_K. F32 keeps
//! the scalar copy, which is already a memcpy.
//!
//! Every kernel is a safe `#[target_feature]` function: the only thing that makes calling one
//! unsafe is the CPU features, and the safe wrappers in the table below are only handed out in
//! exchange for an [`Avx512`] token, which only detection can make. Inside the kernels, `unsafe`
//! is limited to loads and stores: through pointers from fixed-size arrays, or at the offsets of
//! the streaming stores, whose bounds are argued where they are made.
//!
//! The kernels must give the scalar references' bytes and bits for every input, so the shared
//! helpers here reproduce ggml's conversions exactly (fp16 NaN encoding, C's float -> int8).
//! Large inputs are about memory: the quantize kernels prefetch (`PREFETCH_BYTES`) and large
//! outputs of f32 or 16-bit values go out with non-temporal stores (`STREAM_MIN_BYTES`).

mod attention;
mod dot;
mod dot_float;
mod dot_kquants;
mod float;
mod gemm_float;
mod gemm_kquants;
mod gemm_legacy;
mod iquants;
mod iquants_dequantize;
mod kquants;
pub(super) mod kquants_dequantize; // its scale unpacking is shared with AVX2
mod kquants_imatrix;
mod kquants_low;
mod legacy;
mod ternary_dequantize;
#[cfg(test)]
mod tests;

use std::arch::x86_64::*;

use crate::formats::{DequantizeFn, QuantizeFn, QuantizeImatrixFn};
use crate::simd::IsaKernels;
use crate::types::QuantType;

use super::Avx512;

pub use attention::attention_kernels;

/// The AVX-512 kernels for `qtype`; fields left `None` fall back to the next lower level.
pub fn kernels(_token: Avx512, qtype: QuantType) -> IsaKernels {
    let (quantize, dequantize) = plain_kernels(qtype);
    IsaKernels { quantize, dequantize, quantize_imatrix: imatrix_kernel(qtype) }
}

/// The matmul dot kernel for `weight` with AVX-512 but without VNNI: the float kernels of
/// `dot_float.rs`, the K-quant and IQ4_XS ones of `dot_kquants.rs` (the legacy types fall back to AVX2).
/// `matmul::dot` has the contract.
pub fn dot_kernel(_token: Avx512, weight: QuantType) -> Option<crate::matmul::VecDotFn> {
    dot_float::kernel(weight).or_else(|| dot_kquants::kernel(weight, false))
}

/// The packed float GEMM of `kind` at this level (`matmul::packed_float` has the contract).
pub fn packed_float_gemm(_token: Avx512, kind: crate::matmul::dot::FloatKind) -> crate::matmul::packed::PackedGemmFn {
    gemm_float::gemm(kind)
}

/// The matmul dot kernel for `weight` with AVX-512 VNNI (`vpdpbusd`); the caller has checked that
/// the CPU has VNNI (`Level::Avx512Vnni` detected).
pub fn dot_kernel_vnni(_token: Avx512, weight: QuantType) -> Option<crate::matmul::VecDotFn> {
    dot::kernel_vnni(weight).or_else(|| dot_kquants::kernel(weight, true))
}

/// The VNNI packed-GEMM microkernel of a legacy type or IQ4_NL (`matmul::packed_legacy`), or
/// `None` without VNNI.
pub fn packed_gemm_legacy_vnni(
    _token: Avx512,
    kind: crate::matmul::packed_legacy::Kind,
) -> Option<crate::matmul::packed::PackedGemmFn> {
    std::arch::is_x86_feature_detected!("avx512vnni").then(|| gemm_legacy::kernel(kind))
}

/// The packed-GEMM microkernel of format `index` of `matmul::packed_kquants` (Q2_K..Q6_K,
/// IQ4_XS), with VNNI when `vnni` and the CPU has it.
pub fn packed_kquant_gemm(_token: Avx512, index: usize, vnni: bool) -> crate::matmul::packed::PackedGemmFn {
    gemm_kquants::kernel(index, vnni)
}

/// The importance-weighted quantizers at this level (whole rows plus the imatrix).
fn imatrix_kernel(qtype: QuantType) -> Option<QuantizeImatrixFn> {
    match qtype {
        QuantType::Q2_K => Some(kquants_imatrix::quantize_q2_k_imatrix),
        QuantType::Q3_K => Some(kquants_imatrix::quantize_q3_k_imatrix),
        QuantType::Q4_K => Some(kquants_imatrix::quantize_q4_k_imatrix),
        QuantType::Q5_K => Some(kquants_imatrix::quantize_q5_k_imatrix),
        QuantType::Q6_K => Some(kquants_imatrix::quantize_q6_k_imatrix),
        QuantType::IQ4_NL => Some(iquants::quantize_iq4_nl_imatrix),
        QuantType::IQ4_XS => Some(iquants::quantize_iq4_xs_imatrix),
        _ => None,
    }
}

/// The plain quantize and dequantize kernels at this level.
fn plain_kernels(qtype: QuantType) -> (Option<QuantizeFn>, Option<DequantizeFn>) {
    let (quantize, dequantize): (QuantizeFn, DequantizeFn) = match qtype {
        QuantType::Q4_0 => (legacy::quantize_q4_0, legacy::dequantize_q4_0),
        QuantType::Q4_1 => (legacy::quantize_q4_1, legacy::dequantize_q4_1),
        QuantType::Q5_0 => (legacy::quantize_q5_0, legacy::dequantize_q5_0),
        QuantType::Q5_1 => (legacy::quantize_q5_1, legacy::dequantize_q5_1),
        QuantType::Q8_0 => (legacy::quantize_q8_0, legacy::dequantize_q8_0),
        QuantType::Q8_1 => (legacy::quantize_q8_1, legacy::dequantize_q8_1),
        QuantType::F16 => (float::quantize_f16, float::dequantize_f16),
        QuantType::BF16 => (float::quantize_bf16, float::dequantize_bf16),
        QuantType::Q2_K => (kquants_low::quantize_q2_k, kquants_dequantize::dequantize_q2_k),
        QuantType::Q3_K => (kquants_low::quantize_q3_k, kquants_dequantize::dequantize_q3_k),
        QuantType::Q4_K => (kquants::quantize_q4_k, kquants_dequantize::dequantize_q4_k),
        QuantType::Q5_K => (kquants::quantize_q5_k, kquants_dequantize::dequantize_q5_k),
        QuantType::Q6_K => (kquants::quantize_q6_k, kquants_dequantize::dequantize_q6_k),
        QuantType::IQ4_NL => (iquants::quantize_iq4_nl, iquants_dequantize::dequantize_iq4_nl),
        QuantType::IQ4_XS => (iquants::quantize_iq4_xs, iquants_dequantize::dequantize_iq4_xs),
        QuantType::TQ1_0 => (iquants::quantize_tq1_0, ternary_dequantize::dequantize_tq1_0),
        QuantType::TQ2_0 => (iquants::quantize_tq2_0, ternary_dequantize::dequantize_tq2_0),
        QuantType::MXFP4 => (iquants::quantize_mxfp4, iquants_dequantize::dequantize_mxfp4),
        // Every other type falls back to the next lower level.
        _ => return (None, None),
    };
    (Some(quantize), Some(dequantize))
}

/// Defines safe entry points for the table: each calls the `#[target_feature]` kernel of the same
/// shape. They are private to this folder, so the only way to reach one is through [`kernels`].
macro_rules! entry_points {
    ($($(#[$doc:meta])* $name:ident => $kernel:ident($src:ty, $dst:ty);)*) => {$(
        $(#[$doc])*
        pub(super) fn $name(src: $src, dst: $dst) {
            // SAFETY: the kernel only needs the CPU features that `Avx512::try_new` checked, and
            // this function is only reachable through `kernels`, which takes that token.
            unsafe { $kernel(src, dst) }
        }
    )*};
}
use entry_points;

// ---- helpers shared by the kernel files ---------------------------------------------------------

/// fp32 -> fp16 bits of each lane exactly as `formats::float::fp32_to_fp16`: `vcvtps2ph` rounds to
/// nearest even as ggml does, but keeps NaN payload bits where ggml writes `sign | 0x7E00`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn fp16_ggml_x16(v: __m512) -> __m256i {
    let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    let quiet = _mm256_or_si256(_mm256_and_si256(h, _mm256_set1_epi16(i16::MIN)), _mm256_set1_epi16(0x7e00));
    _mm256_mask_mov_epi16(h, nan, quiet)
}

/// As [`fp16_ggml_x16`] for four lanes (block scales), the result in the low 64 bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn fp16_ggml_x4(v: __m128) -> __m128i {
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
    let nan = _mm_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
    let quiet = _mm_or_si128(_mm_and_si128(h, _mm_set1_epi16(i16::MIN)), _mm_set1_epi16(0x7e00));
    _mm_mask_mov_epi16(h, nan, quiet)
}

/// The largest lane of `v`, in every lane. Only for NaN-free input (`vmaxps` is not commutative
/// with NaN) whose equal maxima have equal bits, so the order of the tree does not matter.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn broadcast_max(v: __m512) -> __m512 {
    let v = _mm512_max_ps(v, _mm512_shuffle_f32x4::<0b01_00_11_10>(v, v));
    let v = _mm512_max_ps(v, _mm512_shuffle_f32x4::<0b10_11_00_01>(v, v));
    let v = _mm512_max_ps(v, _mm512_permute_ps::<0b01_00_11_10>(v));
    _mm512_max_ps(v, _mm512_permute_ps::<0b10_11_00_01>(v))
}

/// The smallest lane of `v`, in every lane; the same caveats as [`broadcast_max`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn broadcast_min(v: __m512) -> __m512 {
    let v = _mm512_min_ps(v, _mm512_shuffle_f32x4::<0b01_00_11_10>(v, v));
    let v = _mm512_min_ps(v, _mm512_shuffle_f32x4::<0b10_11_00_01>(v, v));
    let v = _mm512_min_ps(v, _mm512_permute_ps::<0b01_00_11_10>(v));
    _mm512_min_ps(v, _mm512_permute_ps::<0b10_11_00_01>(v))
}

/// C's `(int8_t)x` of a float as x86 compilers emit it, widened back to i32: `vcvttps2dq`
/// truncates and gives `0x80000000` for NaN or out-of-range values, exactly like `cvttss2si`,
/// and the shifts keep the low byte, sign-extended.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn c_float_to_i8(v: __m512) -> __m512i {
    _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(_mm512_cvttps_epi32(v)))
}

/// Loads a 32-float block as elements 0..16 and 16..32.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_f32x32(x: &[f32; 32]) -> (__m512, __m512) {
    // SAFETY: `x` is 32 readable floats; `loadu` has no alignment requirement.
    unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))) }
}

/// Stores 32 floats.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn store_f32x32(y: &mut [f32; 32], lo: __m512, hi: __m512) {
    // SAFETY: `y` is 32 writable floats; `storeu` has no alignment requirement.
    unsafe {
        _mm512_storeu_ps(y.as_mut_ptr(), lo);
        _mm512_storeu_ps(y.as_mut_ptr().add(16), hi);
    }
}

/// How far ahead of their loads the quantize kernels prefetch their input. They spend many
/// instructions per cache line, and the hardware prefetchers alone left them at half the memory
/// bandwidth on large inputs; 8 KiB ahead measured best (4 and 16 KiB less well). Dequantize
/// kernels read a third as many bytes and did not gain from it.
const PREFETCH_BYTES: usize = 8 << 10;

/// Outputs at least this large are written with non-temporal stores. Ordinary stores first read
/// each output line into the cache (read-for-ownership), which costs a third of the memory traffic
/// of a dequantize, and an output this size does not stay in a core's share of L3 anyway. Smaller
/// outputs stay in the cache for whatever reads them next.
const STREAM_MIN_BYTES: usize = 8 << 20;

/// Decodes every `B`-byte block of `src` into 32 floats with `decode` and writes them to `dst` in
/// order. `src` must be whole blocks and `dst` exactly their floats (else this panics, like the
/// scalar references).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn dequantize_blocks<const B: usize>(src: &[u8], dst: &mut [f32], decode: impl Fn(&[u8; B]) -> (__m512, __m512)) {
    let (blocks, rest) = src.as_chunks::<B>();
    assert!(rest.is_empty() && dst.len() == 32 * blocks.len(), "partial blocks");
    if dst.len() * 4 >= STREAM_MIN_BYTES {
        stream_blocks(blocks, dst, decode);
    } else {
        for (b, y) in blocks.iter().zip(dst.as_chunks_mut::<32>().0) {
            let (lo, hi) = decode(b);
            store_f32x32(y, lo, hi);
        }
    }
}

/// [`dequantize_blocks`] with non-temporal stores, which must be 64-byte aligned while `dst` is
/// only 4-byte aligned (a large `Vec<f32>` from malloc is typically 16 bytes past a line). The
/// floats before the first line boundary and after the last are written with masked ordinary
/// stores; every line between is stitched from two consecutive vectors with one `vpermt2ps`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn stream_blocks<const B: usize>(blocks: &[[u8; B]], dst: &mut [f32], decode: impl Fn(&[u8; B]) -> (__m512, __m512)) {
    assert_eq!(dst.len(), 32 * blocks.len());
    let Some((first, rest)) = blocks.split_first() else { return };
    let p = dst.as_mut_ptr();
    // Floats before the first 64-byte boundary (f32 slices are 4-byte aligned).
    let head = (64 - p as usize % 64) % 64 / 4;
    // Line lane i takes lane head + i of the earlier vector if that is < 16, else lane head + i - 16
    // of the later one.
    let stitch = _mm512_add_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(head as i32),
    );
    let head_mask: __mmask16 = ((1u32 << head) - 1) as __mmask16;
    let (lo, hi) = decode(first);
    if head == 0 {
        // SAFETY: block i's floats are dst[32i..32i + 32], in bounds; p is 64-byte aligned and
        // 32 floats are two lines, so every store is aligned.
        unsafe {
            _mm512_stream_ps(p, lo);
            _mm512_stream_ps(p.add(16), hi);
            for (i, b) in rest.iter().enumerate() {
                let (lo, hi) = decode(b);
                _mm512_stream_ps(p.add(32 * (i + 1)), lo);
                _mm512_stream_ps(p.add(32 * (i + 1) + 16), hi);
            }
        }
    } else {
        // Vector t (t = 0..2n) holds floats 16t..16t + 16; line t, stitched from vectors t and
        // t + 1, holds floats head + 16t..head + 16t + 16 and starts on a 64-byte boundary.
        // SAFETY: the last line ends at head + 16(2n - 2) + 16 < 32n = dst.len(), the masked
        // stores write only dst[..head] and dst[32n - 16 + head..], and the lines are aligned by
        // the choice of head.
        unsafe {
            let lines = p.add(head);
            _mm512_mask_storeu_ps(p, head_mask, lo);
            _mm512_stream_ps(lines, _mm512_permutex2var_ps(lo, stitch, hi));
            let mut carry = hi;
            for (i, b) in rest.iter().enumerate() {
                let (lo, hi) = decode(b);
                let t = 2 * (i + 1);
                _mm512_stream_ps(lines.add(16 * (t - 1)), _mm512_permutex2var_ps(carry, stitch, lo));
                _mm512_stream_ps(lines.add(16 * t), _mm512_permutex2var_ps(lo, stitch, hi));
                carry = hi;
            }
            _mm512_mask_storeu_ps(p.add(dst.len() - 16), !head_mask, carry);
        }
    }
    // Non-temporal stores are weakly ordered: make them visible before anything this thread
    // stores next (such as the flag that tells another thread the output is ready).
    _mm_sfence();
}

/// Asks for the cache line holding `items[i]` to be brought into L1, if there is such an item.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn prefetch<T>(items: &[T], i: usize) {
    if let Some(item) = items.get(i) {
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast::<i8>());
    }
}

/// Loads the first 16 bytes of `b`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn load_u8x16(b: &[u8]) -> __m128i {
    let b: &[u8; 16] = b[..16].try_into().expect("16 bytes");
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// Stores 16 bytes into the first 16 of `b`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
#[inline]
fn store_u8x16(b: &mut [u8], v: __m128i) {
    let b: &mut [u8; 16] = (&mut b[..16]).try_into().expect("16 bytes");
    // SAFETY: `b` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
}
