//! AVX2 matmul dot kernels: the legacy types, IQ4_NL and MXFP4 against Q8_0/Q8_1 (`maddubs` + `madd`).
//! The float weights' kernels are in `dot_float.rs`.
//!
//! The quantized kernels follow the order `matmul::dot` specifies: per block the eight i32 lanes
//! of its byte dot product, converted, scaled by the block's `d_w * d_a` and added to one of four
//! slot registers, the halving reduction once per row at the end. `avx512/dot.rs` has the VNNI
//! kernels (two blocks per 512-bit register) and reuses the block decoding here.

use std::arch::x86_64::*;

use crate::matmul::dot::VecDotFn;
use crate::types::QuantType;

/// The kernel for `weight`, or `None` where this level has none.
pub(super) fn kernel(weight: QuantType) -> Option<VecDotFn> {
    legacy::kernel(weight)
}

/// Sums of adjacent byte products `x[2i] * y[2i] + x[2i+1] * y[2i+1]` (x unsigned, y signed) summed
/// again in fours: eight i32 lanes, lane i the sum of products 4i..4i+4. `maddubs` saturates at
/// ±32767, which codes in ggml's ranges (|x| <= 127 or x <= 31, |y| <= 127) never reach.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn dot_u8_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1))
}

/// Defines, in a module with a `dot_rows::<WB, AB, R>(kind, n, weight, acts, act_row_bytes, out)`
/// kernel, its table `kernel(QuantType) -> Option<VecDotFn>` and the entry points, which pass the
/// number of activation rows as a constant.
macro_rules! legacy_entry_points {
    () => {
        pub(crate) fn kernel(weight: QuantType) -> Option<VecDotFn> {
            Some(match weight {
                QuantType::Q4_0 => |n, w, a, arb, out| run::<18, 34>(Kind::Q4_0, n, w, a, arb, out),
                QuantType::Q5_0 => |n, w, a, arb, out| run::<22, 34>(Kind::Q5_0, n, w, a, arb, out),
                QuantType::Q8_0 => |n, w, a, arb, out| run::<34, 34>(Kind::Q8_0, n, w, a, arb, out),
                QuantType::IQ4_NL => |n, w, a, arb, out| run::<18, 34>(Kind::Iq4Nl, n, w, a, arb, out),
                QuantType::MXFP4 => |n, w, a, arb, out| run::<17, 34>(Kind::Mxfp4, n, w, a, arb, out),
                QuantType::Q4_1 => |n, w, a, arb, out| run::<20, 36>(Kind::Q4_1, n, w, a, arb, out),
                QuantType::Q5_1 => |n, w, a, arb, out| run::<24, 36>(Kind::Q5_1, n, w, a, arb, out),
                _ => return None,
            })
        }

        /// Runs [`dot_rows`] with the number of activation rows as a constant.
        #[inline(always)]
        fn run<const WB: usize, const AB: usize>(
            kind: Kind,
            n: usize,
            weight: &[u8],
            acts: &[u8],
            act_row_bytes: usize,
            out: &mut [f32],
        ) {
            // SAFETY: only reachable through `kernel`, which the ISA module hands out only with a
            // proof token of the features `dot_rows` enables (VNNI only after detecting it).
            unsafe {
                match out.len() {
                    1 => dot_rows::<WB, AB, 1>(kind, n, weight, acts, act_row_bytes, out),
                    2 => dot_rows::<WB, AB, 2>(kind, n, weight, acts, act_row_bytes, out),
                    3 => dot_rows::<WB, AB, 3>(kind, n, weight, acts, act_row_bytes, out),
                    4 => dot_rows::<WB, AB, 4>(kind, n, weight, acts, act_row_bytes, out),
                    5 => dot_rows::<WB, AB, 5>(kind, n, weight, acts, act_row_bytes, out),
                    6 => dot_rows::<WB, AB, 6>(kind, n, weight, acts, act_row_bytes, out),
                    7 => dot_rows::<WB, AB, 7>(kind, n, weight, acts, act_row_bytes, out),
                    8 => dot_rows::<WB, AB, 8>(kind, n, weight, acts, act_row_bytes, out),
                    r => panic!("{r} activation rows: a kernel call takes 1..=8"),
                }
            }
        }
    };
}
pub(crate) use legacy_entry_points;

/// The legacy-type kernels (also the AVX-512 level's without VNNI); the block decoding helpers are
/// shared with the AVX-512 VNNI kernels.
pub(crate) mod legacy {
    use std::arch::x86_64::*;

    use crate::formats::iquants::iq4::KVALUES_IQ4NL;
    use crate::formats::mxfp4::KVALUES_MXFP4;
    use crate::matmul::dot::{act_rows, VecDotFn, BLOCK_LANES, BLOCK_SLOTS};
    use crate::types::QuantType;

    /// How a block's codes come out of its bytes (a constant in each kernel).
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Kind {
        Q4_0,
        Q5_0,
        Q8_0,
        Iq4Nl,
        /// E8M0 exponent byte, then nibble indices into the doubled E2M1 table.
        Mxfp4,
        Q4_1,
        Q5_1,
    }

    impl Kind {
        /// Signed codes meet Q8_0 activations; the unsigned ones (Q4_1, Q5_1) meet Q8_1 and add
        /// `m_w * s_a`.
        pub(crate) fn signed(self) -> bool {
            !matches!(self, Kind::Q4_1 | Kind::Q5_1)
        }
    }

    /// 16 bytes at `b[at..at + 16]` as their low nibbles (bytes 0..16) and high nibbles (bytes
    /// 16..32).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn nibbles<const B: usize>(b: &[u8; B], at: usize) -> __m256i {
        assert!(at + 16 <= B);
        // SAFETY: bytes at..at+16 lie inside `b` (checked above).
        let x = unsafe { _mm_loadu_si128(b.as_ptr().add(at).cast()) };
        let low = _mm_set1_epi8(0x0f);
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16::<4>(x), low), _mm_and_si128(x, low))
    }

    /// Byte j is 0xFF where bit j of the little-endian u32 at `b[at..at + 4]` is set, else 0.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn bytes_from_bits<const B: usize>(b: &[u8; B], at: usize) -> __m256i {
        let bits = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let spread = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
        // Byte j now holds byte j/8 of `bits`; OR-ing every bit but bit j%8 in makes it all ones
        // exactly when bit j was set.
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread);
        let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
        _mm256_cmpeq_epi8(_mm256_or_si256(bytes, others), _mm256_set1_epi8(-1))
    }

    /// The 32 codes of a block: signed `q` for the Q8_0 pairs, unsigned for Q4_1/Q5_1.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn codes<const WB: usize>(kind: Kind, b: &[u8; WB]) -> __m256i {
        match kind {
            Kind::Q4_0 => _mm256_sub_epi8(nibbles(b, 2), _mm256_set1_epi8(8)),
            Kind::Iq4Nl => {
                // SAFETY: the table is 16 bytes; `loadu` needs no alignment.
                let table = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) };
                _mm256_shuffle_epi8(_mm256_set_m128i(table, table), nibbles(b, 2))
            }
            Kind::Mxfp4 => {
                // SAFETY: the table is 16 bytes; `loadu` needs no alignment.
                let table = unsafe { _mm_loadu_si128(KVALUES_MXFP4.as_ptr().cast()) };
                _mm256_shuffle_epi8(_mm256_set_m128i(table, table), nibbles(b, 1))
            }
            Kind::Q4_1 => nibbles(b, 4),
            // q - 16: a nibble whose fifth bit is clear becomes nibble - 16 = nibble | 0xF0.
            Kind::Q5_0 => _mm256_or_si256(
                nibbles(b, 6),
                _mm256_andnot_si256(bytes_from_bits(b, 2), _mm256_set1_epi8(0xf0u8 as i8)),
            ),
            Kind::Q5_1 => {
                _mm256_or_si256(nibbles(b, 8), _mm256_and_si256(bytes_from_bits(b, 4), _mm256_set1_epi8(0x10)))
            }
            Kind::Q8_0 => {
                assert!(WB >= 34);
                // SAFETY: bytes 2..34 lie inside `b` (checked above).
                unsafe { _mm256_loadu_si256(b.as_ptr().add(2).cast()) }
            }
        }
    }

    /// The fp16 values at byte `at` of the eight blocks of `group`, as floats. The halves are
    /// assembled in general-purpose registers, which the kernel leaves idle (a `vpgatherdd` took a
    /// third of the kernel's time on this machine's Zen 5).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn fp16_lanes<const B: usize>(group: &[[u8; B]; BLOCK_LANES], at: usize) -> __m256 {
        let h = |j: usize| u16::from_le_bytes([group[j][at], group[j][at + 1]]) as u64;
        let lo = h(0) | (h(1) << 16) | (h(2) << 32) | (h(3) << 48);
        let hi = h(4) | (h(5) << 16) | (h(6) << 32) | (h(7) << 48);
        _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
    }

    /// The weight scales `d_w` of the eight blocks of `group`: their fp16 `d`, or MXFP4's E8M0
    /// exponent as ggml's `E8M0_TO_FP32_HALF`.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn weight_scales<const B: usize>(kind: Kind, group: &[[u8; B]; BLOCK_LANES]) -> __m256 {
        if kind != Kind::Mxfp4 {
            return fp16_lanes(group, 0);
        }
        let e = u64::from_le_bytes(std::array::from_fn(|j| group[j][0]));
        e8m0_to_fp32_half_x8(e)
    }

    /// ggml's `E8M0_TO_FP32_HALF` of the eight exponent bytes of `e` (byte `j` to lane `j`).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn e8m0_to_fp32_half_x8(e: u64) -> __m256 {
        let e = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(e as i64));
        // 2^(e - 128) by its bits: (e - 1) << 23 for e >= 2, the subnormals 0x200000 << e below
        // (the variable shift gives 0 for counts past 31, and the blend drops those lanes anyway).
        let normal = _mm256_slli_epi32::<23>(_mm256_sub_epi32(e, _mm256_set1_epi32(1)));
        let subnormal = _mm256_sllv_epi32(_mm256_set1_epi32(0x0020_0000), e);
        let is_normal = _mm256_cmpgt_epi32(e, _mm256_set1_epi32(1));
        _mm256_castsi256_ps(_mm256_blendv_epi8(subnormal, normal, is_normal))
    }

    /// The groups of eight blocks of one weight row and of `R` activation rows, with a zero-padded
    /// copy of a short last group (zero blocks add `0 * 0` and leave every lane as it is: the
    /// lanes start at +0.0 and never become -0.0).
    pub(crate) struct Groups<'a, const WB: usize, const AB: usize, const R: usize> {
        weight: &'a [[[u8; WB]; BLOCK_LANES]],
        acts: [&'a [[[u8; AB]; BLOCK_LANES]]; R],
        w_pad: [[u8; WB]; BLOCK_LANES],
        a_pad: [[[u8; AB]; BLOCK_LANES]; R],
        /// Groups in all, the padded one included.
        pub(crate) len: usize,
    }

    impl<'a, const WB: usize, const AB: usize, const R: usize> Groups<'a, WB, AB, R> {
        /// The groups of a row of `n` elements (checks the shapes like every kernel).
        #[inline(always)]
        pub(crate) fn new(n: usize, weight: &'a [u8], acts: &'a [u8], act_row_bytes: usize) -> Self {
            let nb = n / 32;
            let (wgroups, wtail) = weight[..nb * WB].as_chunks::<WB>().0.as_chunks::<BLOCK_LANES>();
            let mut groups = Groups {
                weight: wgroups,
                acts: [&[]; R],
                w_pad: [[0u8; WB]; BLOCK_LANES],
                a_pad: [[[0u8; AB]; BLOCK_LANES]; R],
                len: wgroups.len() + usize::from(!wtail.is_empty()),
            };
            groups.w_pad[..wtail.len()].copy_from_slice(wtail);
            for ((slot, pad), row) in
                groups.acts.iter_mut().zip(groups.a_pad.iter_mut()).zip(act_rows(acts, act_row_bytes, nb * AB, R))
            {
                let (full, tail) = row.as_chunks::<AB>().0.as_chunks::<BLOCK_LANES>();
                *slot = full;
                pad[..tail.len()].copy_from_slice(tail);
            }
            groups
        }

        /// Group `g` of the weight row and of each activation row.
        #[inline(always)]
        pub(crate) fn get(&self, g: usize) -> (&[[u8; WB]; BLOCK_LANES], [&[[u8; AB]; BLOCK_LANES]; R]) {
            if g < self.weight.len() {
                (&self.weight[g], std::array::from_fn(|r| &self.acts[r][g]))
            } else {
                (&self.w_pad, std::array::from_fn(|r| &self.a_pad[r]))
            }
        }
    }

    /// Dot of one weight row with `R` activation rows of `AB`-byte blocks, eight blocks at a time
    /// (one scale vector): the weight blocks are decoded once, then for each row and block the
    /// eight i32 lanes of the byte dot product are converted, scaled and added to the block's slot
    /// `b % 4` (one register each), as `matmul::dot` specifies.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    fn dot_rows<const WB: usize, const AB: usize, const R: usize>(
        kind: Kind,
        n: usize,
        weight: &[u8],
        acts: &[u8],
        act_row_bytes: usize,
        out: &mut [f32],
    ) {
        let signed = kind.signed();
        let mut acc = [[_mm256_setzero_ps(); BLOCK_SLOTS]; R];
        let mut off = [_mm256_setzero_ps(); R];
        let groups = Groups::<WB, AB, R>::new(n, weight, acts, act_row_bytes);
        for g in 0..groups.len {
            let (w, a_rows) = groups.get(g);
            let mut w_abs = [_mm256_setzero_si256(); BLOCK_LANES];
            let mut w_sign = [_mm256_setzero_si256(); BLOCK_LANES];
            for j in 0..BLOCK_LANES {
                let q = codes(kind, &w[j]);
                // Signed codes: |w| * (a with w's sign) = w * a as unsigned x signed bytes.
                w_abs[j] = if signed { _mm256_sign_epi8(q, q) } else { q };
                w_sign[j] = q;
            }
            let dw = weight_scales(kind, w);
            let mw = if signed { _mm256_setzero_ps() } else { fp16_lanes(w, 2) };
            for r in 0..R {
                let a = a_rows[r];
                // The eight blocks' scales go through memory: a broadcast from there is a load,
                // not a shuffle on the vector ports the kernel is short of.
                let mut d = [0f32; BLOCK_LANES];
                // SAFETY: `d` is eight writable floats; `storeu` needs no alignment.
                unsafe { _mm256_storeu_ps(d.as_mut_ptr(), _mm256_mul_ps(dw, fp16_lanes(a, 0))) };
                for j in 0..BLOCK_LANES {
                    // SAFETY: the last 32 bytes of an activation block are its codes.
                    let av = unsafe { _mm256_loadu_si256(a[j].as_ptr().add(AB - 32).cast()) };
                    let av = if signed { _mm256_sign_epi8(av, w_sign[j]) } else { av };
                    let sums = _mm256_cvtepi32_ps(super::dot_u8_i8(w_abs[j], av));
                    let scale = _mm256_broadcast_ss(&d[j]);
                    let slot = &mut acc[r][j % BLOCK_SLOTS];
                    *slot = _mm256_fmadd_ps(sums, scale, *slot);
                }
                if !signed {
                    off[r] = _mm256_fmadd_ps(mw, fp16_lanes(a, 2), off[r]);
                }
            }
        }
        for ((o, acc), off) in out.iter_mut().zip(acc).zip(off) {
            let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
            let v = if signed { v } else { _mm256_add_ps(v, off) };
            *o = super::reduce_halving_8(v);
        }
    }

    super::legacy_entry_points!();
}

/// `matmul::dot`'s halving sum of eight lanes: (high half + low half), then again, then again.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
pub(crate) fn reduce_halving_8(v: __m256) -> f32 {
    let v4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
    _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps::<1>(v2, v2)))
}
