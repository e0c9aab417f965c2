//! AVX2 matmul dot kernels: the legacy types and IQ4_NL against Q8_0/Q8_1 (`maddubs` + `madd`), and
//! F32/F16/BF16 weights against f32 activations (FMA, F16C).
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
    legacy::kernel(weight).or_else(|| float::kernel(weight))
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
    use crate::matmul::dot::{act_rows, VecDotFn, BLOCK_LANES, BLOCK_SLOTS};
    use crate::types::QuantType;

    /// How a block's codes come out of its bytes (a constant in each kernel).
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Kind {
        Q4_0,
        Q5_0,
        Q8_0,
        Iq4Nl,
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
    /// third of the kernel's time on Zen 4).
    #[target_feature(enable = "avx2,fma,f16c")]
    #[inline]
    pub(crate) fn fp16_lanes<const B: usize>(group: &[[u8; B]; BLOCK_LANES], at: usize) -> __m256 {
        let h = |j: usize| u16::from_le_bytes([group[j][at], group[j][at + 1]]) as u64;
        let lo = h(0) | (h(1) << 16) | (h(2) << 32) | (h(3) << 48);
        let hi = h(4) | (h(5) << 16) | (h(6) << 32) | (h(7) << 48);
        _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
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
            let dw = fp16_lanes(w, 0);
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

// ---- float weights ------------------------------------------------------------------------------

/// Defines the float-weight kernels (module `float`, with `kernel(QuantType) -> Option<VecDotFn>`)
/// for the target features `$features`. AVX-512 builds them too: the same 256-bit code, but with
/// 32 registers the 16 accumulators of 8 rows no longer spill.
macro_rules! float_dot_kernels {
    ($features:literal) => {
        mod float {
            use std::arch::x86_64::*;

            use crate::matmul::dot::{act_rows, VecDotFn, FLOAT_LANES};
            use crate::types::QuantType;

            pub(crate) fn kernel(weight: QuantType) -> Option<VecDotFn> {
                Some(match weight {
                    QuantType::F32 => vec_dot_f32,
                    QuantType::F16 => vec_dot_f16,
                    QuantType::BF16 => vec_dot_bf16,
                    _ => return None,
                })
            }

            /// The element type of a float weight row.
            #[derive(Clone, Copy, PartialEq, Eq)]
            enum FloatKind {
                F32,
                F16,
                Bf16,
            }

            /// Sixteen weights as floats (`CB` bytes: 64 for F32, 32 for F16/BF16).
            #[target_feature(enable = $features)]
            #[inline]
            fn load16<const CB: usize>(kind: FloatKind, w: &[u8; CB]) -> [__m256; 2] {
                match kind {
                    FloatKind::F32 => load_f32x16(&w.as_chunks::<64>().0[0]),
                    FloatKind::F16 => load_f16x16(&w.as_chunks::<32>().0[0]),
                    FloatKind::Bf16 => load_bf16x16(&w.as_chunks::<32>().0[0]),
                }
            }

            /// Dot of one float weight row with `R` f32 rows: element j in lane j % 16 (two registers). `CB`
            /// is the bytes of 16 weights.
            #[target_feature(enable = $features)]
            #[inline]
            fn float_rows<const CB: usize, const R: usize>(
                kind: FloatKind,
                n: usize,
                weight: &[u8],
                acts: &[u8],
                act_row_bytes: usize,
                out: &mut [f32],
            ) {
                let elem_bytes = CB / FLOAT_LANES;
                let (chunks, tail) = weight[..n * elem_bytes].as_chunks::<CB>();
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
                let rows = act_rows(acts, act_row_bytes, n * 4, R);
                for (row, acc) in rows.zip(acc.iter_mut()) {
                    let (xs, x_tail) = row.as_chunks::<64>();
                    for (w, x) in chunks.iter().zip(xs) {
                        let w = load16(kind, w);
                        let x = load_f32x16(x);
                        acc[0] = _mm256_fmadd_ps(w[0], x[0], acc[0]);
                        acc[1] = _mm256_fmadd_ps(w[1], x[1], acc[1]);
                    }
                    if !tail.is_empty() {
                        // Zero padding adds +0.0 products, which leave every lane as it is.
                        let mut wbuf = [0u8; CB];
                        wbuf[..tail.len()].copy_from_slice(tail);
                        let mut xbuf = [0u8; 64];
                        xbuf[..x_tail.len()].copy_from_slice(x_tail);
                        let w = load16(kind, &wbuf);
                        let x = load_f32x16(&xbuf);
                        acc[0] = _mm256_fmadd_ps(w[0], x[0], acc[0]);
                        acc[1] = _mm256_fmadd_ps(w[1], x[1], acc[1]);
                    }
                }
                for (o, acc) in out.iter_mut().zip(acc) {
                    // Halving: lane i + lane i + 8 is the sum of the two registers, then eight lanes.
                    *o = crate::simd::x86_64::avx2::dot::reduce_halving_8(_mm256_add_ps(acc[0], acc[1]));
                }
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn load_f32x16(w: &[u8; 64]) -> [__m256; 2] {
                // SAFETY: 64 bytes are sixteen floats.
                unsafe { [_mm256_loadu_ps(w.as_ptr().cast()), _mm256_loadu_ps(w.as_ptr().add(32).cast())] }
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn load_f16x16(w: &[u8; 32]) -> [__m256; 2] {
                // SAFETY: 32 bytes are sixteen fp16 values; `vcvtph2ps` is exact.
                unsafe {
                    [
                        _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().cast())),
                        _mm256_cvtph_ps(_mm_loadu_si128(w.as_ptr().add(16).cast())),
                    ]
                }
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn load_bf16x16(w: &[u8; 32]) -> [__m256; 2] {
                let p = w.as_ptr();
                // SAFETY: 32 bytes are sixteen bf16 values; a bf16 is the high half of its f32.
                let (lo, hi) = unsafe { (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(16).cast())) };
                let widen = |h: __m128i| _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)));
                [widen(lo), widen(hi)]
            }

            /// Runs [`float_rows`] with the number of activation rows as a constant.
            fn run_float<const CB: usize>(
                kind: FloatKind,
                n: usize,
                weight: &[u8],
                acts: &[u8],
                act_row_bytes: usize,
                out: &mut [f32],
            ) {
                // SAFETY: only reachable through `kernel`, which the ISA module hands out only with a proof
                // token of the features `float_rows` enables.
                unsafe {
                    match out.len() {
                        1 => float_rows::<CB, 1>(kind, n, weight, acts, act_row_bytes, out),
                        2 => float_rows::<CB, 2>(kind, n, weight, acts, act_row_bytes, out),
                        3 => float_rows::<CB, 3>(kind, n, weight, acts, act_row_bytes, out),
                        4 => float_rows::<CB, 4>(kind, n, weight, acts, act_row_bytes, out),
                        5 => float_rows::<CB, 5>(kind, n, weight, acts, act_row_bytes, out),
                        6 => float_rows::<CB, 6>(kind, n, weight, acts, act_row_bytes, out),
                        7 => float_rows::<CB, 7>(kind, n, weight, acts, act_row_bytes, out),
                        8 => float_rows::<CB, 8>(kind, n, weight, acts, act_row_bytes, out),
                        r => panic!("{r} activation rows: a kernel call takes 1..=8"),
                    }
                }
            }

            fn vec_dot_f32(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
                run_float::<64>(FloatKind::F32, n, weight, acts, act_row_bytes, out)
            }

            fn vec_dot_f16(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
                run_float::<32>(FloatKind::F16, n, weight, acts, act_row_bytes, out)
            }

            fn vec_dot_bf16(n: usize, weight: &[u8], acts: &[u8], act_row_bytes: usize, out: &mut [f32]) {
                run_float::<32>(FloatKind::Bf16, n, weight, acts, act_row_bytes, out)
            }
        }
    };
}
pub(crate) use float_dot_kernels;

float_dot_kernels!("avx2,fma,f16c");
