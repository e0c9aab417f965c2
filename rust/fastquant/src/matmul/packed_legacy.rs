//! Packed GEMM for the legacy weight types Q4_0, Q5_0, IQ4_NL, MXFP4 and Q8_0 (with Q8_0 activations) and
//! Q4_1, Q5_1 (with Q8_1). The layouts, the scalar reference `gemm` (the specification of the float order),
//! and the table arms; the SIMD microkernels are in `simd/x86_64/{avx2,avx512}/gemm_legacy.rs`.
//!
//! # Layouts
//!
//! Every weight code is stored **unsigned**, `u = q + BIAS`: a Q4_0 nibble as it is (`BIAS` 8),
//! a Q8_0 code with its sign bit flipped and an IQ4_NL or MXFP4 code as its 4-bit index (all
//! `BIAS` 128, the 4-bit ones through a table of `kvalue + 128`), a Q5_0 code as its 5 bits (`BIAS` 16). The
//! activation codes stay signed, which is what
//! `vpdpbusd` (u8 x s8) wants, and each activation block carries `BIAS * sum(a)`, so a block's
//! exact integer dot is `sum(u * a) - BIAS * sum(a) = sum(q * a)`. Q4_1's and Q5_1's 4/5 bits are
//! their codes (the weight is `d * q + m`, `BIAS` 0); their activations are Q8_1 and carry
//! `s = d_a * sum(a)`.
//!
//! * **Activation row**: per block of 32, [`ACT_BLOCK_BYTES`] bytes: the scale as f32, then the
//!   i32 `BIAS * sum(a)` (Q8_0 pairs) or Q8_1's `s` as f32 (Q4_1), then the 32 signed codes
//!   (those of the crate's Q8_0 / Q8_1 quantizer).
//! * **Panel**: blocks go in pairs, each pair a whole number of 64-byte lines:
//!   `[codes of block 2i][codes of block 2i+1][scales of 2i][scales of 2i+1]`, the scales 16 fp16
//!   `d` (Q4_1: then 16 fp16 `m`; MXFP4: the 16 E8M0 exponent bytes, then 16 zero bytes, which
//!   the kernels widen to ggml's `E8M0_TO_FP32_HALF` in registers: fp16 cannot hold those powers of
//!   two, and f32 would make the panels larger than the rows); an odd last block leaves its partner's codes and scales zero. A block's codes are
//!   `CODE_BYTES / 64` chunks of 64 bytes; chunk `t` holds, for column `c`, 4 bytes at `64 t + 4 c`:
//!   - 4-bit types (256 code bytes): bytes `4t..4t+4` of the column's GGUF block, so the low
//!     nibbles are elements `4t..4t+4` and the high nibbles elements `16+4t..16+4t+4`;
//!   - Q8_0 (512 code bytes): elements `4t..4t+4`, sign bit flipped;
//!   - Q5_0, Q5_1 (512 code bytes): elements `4t..4t+4`, one byte each (nibble | fifth bit << 4),
//!     so a panel is larger than the GGUF rows (34 bytes per block and row against 22/24): the
//!     5-bit types trade memory for the 8-bit path.
//!
//!   A 64-byte chunk is one zmm of 16 columns x 4 bytes, so one broadcast of 4 activation bytes
//!   meets 16 columns in one `vpdpbusd`. A panel is as large as the 16 GGUF rows (Q4_0 and IQ4_NL
//!   288 bytes per block, Q8_0 544) plus at most one zero block; MXFP4 takes IQ4_NL's 288 bytes
//!   per block against its rows' 272.
//!
//! # Float order (the same at every level)
//!
//! Output `(r, c)` has one f32 accumulator starting at +0.0; block by block
//! `acc = (d_w * d_a).mul_add(isum as f32, acc)`, with `d_w * d_a` a plain f32 product (MXFP4: `d_w` the
//! halved E8M0 power of two) and `isum`
//! the block's exact integer dot; Q4_1 and Q5_1 then add their offset term, `acc = m_w.mul_add(s_a, acc)`.
//! `out = acc`. A SIMD kernel keeps 16 columns in the lanes of a
//! register and runs the same sequence per lane.

use crate::codec::{quantize, FloatSlice, QuantizeOptions};
use crate::formats::float::fp16_to_fp32;
use crate::formats::iquants::iq4::KVALUES_IQ4NL;
use crate::formats::mxfp4::{e8m0_to_fp32_half, KVALUES_MXFP4};
use crate::simd::Level;
use crate::types::QuantType;

use super::packed::{PackedKernel, PANEL_ROWS};

/// Elements per block.
pub const QK: usize = 32;
/// Bytes of one activation block: d (f32), `BIAS * sum(a)` (i32), 32 codes.
pub const ACT_BLOCK_BYTES: usize = 8 + QK;
/// Bytes of 16 fp16 values (one block's `d` or `m` in a panel).
pub const SCALE_BYTES: usize = 2 * PANEL_ROWS;

/// How a type's codes sit in a panel (a constant of each kernel).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// Q4_0: nibble codes, bias 8.
    Q4_0,
    /// IQ4_NL: nibble indices into the non-linear table.
    Iq4Nl,
    /// MXFP4: nibble indices into the doubled E2M1 table, E8M0 exponent bytes as the scales.
    Mxfp4,
    /// Q8_0: 8-bit signed codes.
    Q8_0,
    /// Q4_1: nibble codes with a min (Q8_1 activations).
    Q4_1,
    /// Q5_0: 5-bit codes, bias 16.
    Q5_0,
    /// Q5_1: 5-bit codes with a min (Q8_1 activations).
    Q5_1,
}

impl Kind {
    /// Code bytes of one block of 16 columns.
    pub const fn code_bytes(self) -> usize {
        match self {
            Kind::Q4_0 | Kind::Iq4Nl | Kind::Mxfp4 | Kind::Q4_1 => 256,
            Kind::Q8_0 | Kind::Q5_0 | Kind::Q5_1 => 512,
        }
    }

    /// What the stored unsigned codes exceed the signed ones by.
    pub const fn bias(self) -> i32 {
        match self {
            Kind::Q4_0 => 8,
            Kind::Iq4Nl | Kind::Mxfp4 | Kind::Q8_0 => 128,
            Kind::Q5_0 => 16,
            Kind::Q4_1 | Kind::Q5_1 => 0,
        }
    }

    /// Bytes of one GGUF block.
    const fn gguf_block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 | Kind::Iq4Nl => 18,
            Kind::Mxfp4 => 17,
            Kind::Q8_0 => 34,
            Kind::Q4_1 => 20,
            Kind::Q5_0 => 22,
            Kind::Q5_1 => 24,
        }
    }

    /// Whether the weight has an offset `m` (and the activations Q8_1's `s`).
    pub const fn has_offset(self) -> bool {
        matches!(self, Kind::Q4_1 | Kind::Q5_1)
    }

    /// The signed values of a 4-bit lookup type's indices (IQ4_NL, MXFP4).
    pub const fn table(self) -> Option<&'static [i8; 16]> {
        match self {
            Kind::Iq4Nl => Some(&KVALUES_IQ4NL),
            Kind::Mxfp4 => Some(&KVALUES_MXFP4),
            _ => None,
        }
    }

    /// Whether a block's 16 scales in a panel are E8M0 exponent bytes (MXFP4, whose powers of two
    /// reach past fp16's range; `d_w` is their `E8M0_TO_FP32_HALF`) rather than fp16 `d`.
    pub const fn e8m0_scales(self) -> bool {
        matches!(self, Kind::Mxfp4)
    }

    /// Whether the stored codes are small enough (<= 31) for AVX2's `maddubs` as they are.
    pub const fn small_unsigned(self) -> bool {
        matches!(self, Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1)
    }

    /// Bytes of one block's scales in a panel (`d`, and `m` after it for Q4_1; MXFP4's exponent
    /// bytes and as many zeros).
    pub const fn scale_bytes(self) -> usize {
        if self.has_offset() {
            2 * SCALE_BYTES
        } else {
            SCALE_BYTES
        }
    }

    /// The activation type the weight pairs with.
    fn act_type(self) -> QuantType {
        if self.has_offset() {
            QuantType::Q8_1
        } else {
            QuantType::Q8_0
        }
    }

    /// Bytes of a pair of blocks in a panel.
    pub const fn pair_bytes(self) -> usize {
        2 * (self.code_bytes() + self.scale_bytes())
    }

    /// Byte offsets in a panel of block `b`'s codes and of its 16 scales.
    #[inline(always)]
    pub const fn block_at(self, b: usize) -> (usize, usize) {
        let pair = (b / 2) * self.pair_bytes();
        let half = b % 2;
        (pair + half * self.code_bytes(), pair + 2 * self.code_bytes() + half * self.scale_bytes())
    }

    /// The signed code of element `e` (0..32) of column `c` in a block's packed codes.
    fn code(self, codes: &[u8], c: usize, e: usize) -> i32 {
        match self {
            Kind::Q4_0 | Kind::Iq4Nl | Kind::Mxfp4 | Kind::Q4_1 => {
                let j = e % 16;
                let byte = codes[64 * (j / 4) + 4 * c + j % 4];
                let nibble = if e < 16 { byte & 0x0f } else { byte >> 4 };
                match (self, self.table()) {
                    (_, Some(table)) => table[nibble as usize] as i32,
                    (Kind::Q4_0, None) => nibble as i32 - 8,
                    _ => nibble as i32,
                }
            }
            Kind::Q8_0 => (codes[64 * (e / 4) + 4 * c + e % 4] ^ 0x80) as i8 as i32,
            Kind::Q5_0 | Kind::Q5_1 => codes[64 * (e / 4) + 4 * c + e % 4] as i32 - self.bias(),
        }
    }

    /// The weight scale `d_w` of column `c` in a block's panel scales.
    fn weight_scale(self, scales: &[u8], c: usize) -> f32 {
        if self.e8m0_scales() {
            e8m0_to_fp32_half(scales[c])
        } else {
            fp16_to_fp32(u16::from_le_bytes([scales[2 * c], scales[2 * c + 1]]))
        }
    }

    /// Bytes of a panel of `k` elements per row.
    pub fn panel_bytes(self, k: usize) -> usize {
        (k / QK).div_ceil(2) * self.pair_bytes()
    }

    fn pack_panel(self, k: usize, rows: &[u8], row_bytes: usize, panel: &mut [u8]) {
        let nb = k / QK;
        let wb = self.gguf_block_bytes();
        assert!(row_bytes == nb * wb && rows.len().is_multiple_of(row_bytes), "weight rows of the wrong size");
        assert!(rows.len() / row_bytes <= PANEL_ROWS && panel.len() == self.panel_bytes(k), "panel of the wrong size");
        let n_rows = rows.len() / row_bytes;
        if n_rows < PANEL_ROWS || !nb.is_multiple_of(2) {
            panel.fill(0); // missing rows and the odd last block's partner stay zero
        }
        // The Q8_0 sign flip, four codes at a time.
        let flip = if self == Kind::Q8_0 { 0x8080_8080u32 } else { 0 };
        let five_bit = matches!(self, Kind::Q5_0 | Kind::Q5_1);
        let code_bytes = self.code_bytes();
        // Where the codes start in a GGUF block (after d, m or MXFP4's exponent byte).
        let code_at = match self {
            Kind::Mxfp4 => 1,
            _ if self.has_offset() => 4,
            _ => 2,
        };
        // Block by block, so each block's panel bytes are written together.
        for b in 0..nb {
            let (codes_at, scales_at) = self.block_at(b);
            let (codes, scales) = panel.split_at_mut(scales_at);
            let codes = &mut codes[codes_at..codes_at + code_bytes];
            for c in 0..n_rows {
                let block = &rows[c * row_bytes + b * wb..][..wb];
                self.pack_scales(block, c, scales);
                if five_bit {
                    // One byte per element: the nibble plus the fifth bit (bit j of qh).
                    let qh = u32::from_le_bytes([
                        block[code_at],
                        block[code_at + 1],
                        block[code_at + 2],
                        block[code_at + 3],
                    ]);
                    let qs = &block[code_at + 4..code_at + 20];
                    let u = |e: usize| {
                        let nibble = if e < 16 { qs[e] & 0x0f } else { qs[e - 16] >> 4 };
                        nibble | ((((qh >> e) & 1) as u8) << 4)
                    };
                    for (t, chunk) in codes.chunks_exact_mut(64).enumerate() {
                        for i in 0..4 {
                            chunk[4 * c + i] = u(4 * t + i);
                        }
                    }
                    continue;
                }
                for (chunk, four) in codes.chunks_exact_mut(64).zip(block[code_at..].as_chunks::<4>().0) {
                    let v = u32::from_le_bytes(*four) ^ flip;
                    chunk[4 * c..4 * c + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }

    /// Column `c`'s scales in a block's panel `scales`, from its GGUF `block`: fp16 `d` as it is
    /// (and `m` for Q4_1, Q5_1), MXFP4's exponent byte as it is and a zero in the unused half.
    fn pack_scales(self, block: &[u8], c: usize, scales: &mut [u8]) {
        if self.e8m0_scales() {
            scales[c] = block[0];
            scales[PANEL_ROWS + c] = 0;
            return;
        }
        scales[2 * c..2 * c + 2].copy_from_slice(&block[..2]);
        if self.has_offset() {
            scales[SCALE_BYTES + 2 * c..SCALE_BYTES + 2 * c + 2].copy_from_slice(&block[2..4]);
        }
    }

    /// The scalar reference gemm (see the module docs for the float order).
    #[allow(clippy::too_many_arguments)]
    fn gemm(self, k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize) {
        let (_, panel_bytes, act_row_bytes) = checked_shapes(self, k, panels, acts, m, cols, out, out_stride);
        for r in 0..m {
            let act_row = &acts[r * act_row_bytes..(r + 1) * act_row_bytes];
            for c in 0..cols {
                let panel = &panels[(c / PANEL_ROWS) * panel_bytes..][..panel_bytes];
                let col = c % PANEL_ROWS;
                let mut acc = 0f32;
                for (b, ab) in act_row.chunks_exact(ACT_BLOCK_BYTES).enumerate() {
                    let (codes_at, scales_at) = self.block_at(b);
                    let codes = &panel[codes_at..codes_at + self.code_bytes()];
                    let isum: i32 = (0..QK).map(|e| self.code(codes, col, e) * ab[8 + e] as i8 as i32).sum();
                    let d_w = self.weight_scale(&panel[scales_at..], col);
                    let d_a = f32::from_le_bytes([ab[0], ab[1], ab[2], ab[3]]);
                    acc = (d_w * d_a).mul_add(isum as f32, acc);
                    if self.has_offset() {
                        let at = scales_at + SCALE_BYTES + 2 * col;
                        let m_w = fp16_to_fp32(u16::from_le_bytes([panel[at], panel[at + 1]]));
                        acc = m_w.mul_add(f32::from_le_bytes([ab[4], ab[5], ab[6], ab[7]]), acc);
                    }
                }
                out[r * out_stride + c] = acc;
            }
        }
    }
}

/// The shapes of a `gemm` call of `kind` after [`check_gemm_args`](super::packed::check_gemm_args): (blocks, panel bytes,
/// activation row bytes).
#[allow(clippy::too_many_arguments)]
pub fn checked_shapes(
    kind: Kind,
    k: usize,
    panels: &[u8],
    acts: &[u8],
    m: usize,
    cols: usize,
    out: &[f32],
    out_stride: usize,
) -> (usize, usize, usize) {
    let (panel_bytes, act_row_bytes) = (kind.panel_bytes(k), act_row_bytes(k));
    super::packed::check_gemm_args(panels, panel_bytes, acts, act_row_bytes, m, cols, out, out_stride);
    (k / QK, panel_bytes, act_row_bytes)
}

/// Defines, in a SIMD module with a `gemm(kind, k, panels, acts, m, cols, out, out_stride)`,
/// `kernel(Kind) -> PackedGemmFn` and its one entry point per kind.
macro_rules! gemm_entry_points {
    () => {
        pub(super) fn kernel(kind: Kind) -> $crate::matmul::packed::PackedGemmFn {
            match kind {
                Kind::Q4_0 => |k, p, a, m, c, o, s| gemm(Kind::Q4_0, k, p, a, m, c, o, s),
                Kind::Iq4Nl => |k, p, a, m, c, o, s| gemm(Kind::Iq4Nl, k, p, a, m, c, o, s),
                Kind::Mxfp4 => |k, p, a, m, c, o, s| gemm(Kind::Mxfp4, k, p, a, m, c, o, s),
                Kind::Q8_0 => |k, p, a, m, c, o, s| gemm(Kind::Q8_0, k, p, a, m, c, o, s),
                Kind::Q4_1 => |k, p, a, m, c, o, s| gemm(Kind::Q4_1, k, p, a, m, c, o, s),
                Kind::Q5_0 => |k, p, a, m, c, o, s| gemm(Kind::Q5_0, k, p, a, m, c, o, s),
                Kind::Q5_1 => |k, p, a, m, c, o, s| gemm(Kind::Q5_1, k, p, a, m, c, o, s),
            }
        }
    };
}
pub(crate) use gemm_entry_points;

/// Bytes of an activation row of `k` elements.
pub fn act_row_bytes(k: usize) -> usize {
    k / QK * ACT_BLOCK_BYTES
}

/// Quantizes rows of `k` floats to `kind`'s activation type (Q8_0 or Q8_1) and lays them out
/// (see the module docs).
fn prepare_acts(kind: Kind, x: &[f32], k: usize, out: &mut [u8]) {
    let nb = k / QK;
    let rows = x.len().checked_div(k).unwrap_or(0);
    assert!(k.is_multiple_of(QK) && out.len() == rows * nb * ACT_BLOCK_BYTES, "activation buffer of the wrong size");
    let act_type = kind.act_type();
    let q8_bytes = act_type.block_bytes();
    let codes_at = q8_bytes - QK;
    let mut q8 = vec![0u8; nb * q8_bytes];
    // The quantizers give the same bytes at every level, so the best one serves every matmul level
    // (and does not depend on FASTQUANT_SIMD, which the caller may have overridden per call).
    let options = QuantizeOptions { check_finite: false, imatrix: None, level: Some(crate::simd::detected_level()) };
    for (row, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(nb * ACT_BLOCK_BYTES)) {
        // Quantizing a finite row cannot fail; were it to, the row would stay zero and the
        // caller's finite check has already reported the cause.
        if quantize(act_type, FloatSlice::F32(row), k, &mut q8, &options).is_err() {
            q8.fill(0);
        }
        for (src, d) in q8.chunks_exact(q8_bytes).zip(dst.chunks_exact_mut(ACT_BLOCK_BYTES)) {
            let scale = fp16_to_fp32(u16::from_le_bytes([src[0], src[1]]));
            let second = if kind.has_offset() {
                fp16_to_fp32(u16::from_le_bytes([src[2], src[3]])).to_le_bytes()
            } else {
                let sum: i32 = src[codes_at..].iter().map(|&a| a as i8 as i32).sum();
                (kind.bias() * sum).to_le_bytes()
            };
            d[..4].copy_from_slice(&scale.to_le_bytes());
            d[4..8].copy_from_slice(&second);
            d[8..].copy_from_slice(&src[codes_at..]);
        }
    }
}

/// The functions of one type's kernel: the layouts plus the scalar gemm, as plain `fn` items.
macro_rules! legacy_kind_fns {
    ($($kind:ident: $prepare:ident, $panel_bytes:ident, $pack:ident, $gemm:ident;)*) => {$(
        fn $prepare(x: &[f32], k: usize, out: &mut [u8]) {
            prepare_acts(Kind::$kind, x, k, out)
        }
        fn $panel_bytes(k: usize) -> usize {
            Kind::$kind.panel_bytes(k)
        }
        fn $pack(k: usize, rows: &[u8], row_bytes: usize, panel: &mut [u8]) {
            Kind::$kind.pack_panel(k, rows, row_bytes, panel)
        }
        /// Scalar reference gemm (the module docs give its float order).
        pub fn $gemm(k: usize, panels: &[u8], acts: &[u8], m: usize, cols: usize, out: &mut [f32], out_stride: usize) {
            Kind::$kind.gemm(k, panels, acts, m, cols, out, out_stride)
        }
    )*};
}

legacy_kind_fns! {
    Q4_0: prepare_acts_q4_0, panel_bytes_q4_0, pack_panel_q4_0, gemm_q4_0;
    Iq4Nl: prepare_acts_iq4_nl, panel_bytes_iq4_nl, pack_panel_iq4_nl, gemm_iq4_nl;
    Mxfp4: prepare_acts_mxfp4, panel_bytes_mxfp4, pack_panel_mxfp4, gemm_mxfp4;
    Q8_0: prepare_acts_q8_0, panel_bytes_q8_0, pack_panel_q8_0, gemm_q8_0;
    Q4_1: prepare_acts_q4_1, panel_bytes_q4_1, pack_panel_q4_1, gemm_q4_1;
    Q5_0: prepare_acts_q5_0, panel_bytes_q5_0, pack_panel_q5_0, gemm_q5_0;
    Q5_1: prepare_acts_q5_1, panel_bytes_q5_1, pack_panel_q5_1, gemm_q5_1;
}

/// The packed kernel of Q4_0, IQ4_NL, MXFP4, Q8_0, Q4_1, Q5_0 or Q5_1 at `level` (available on this CPU), or `None`
/// for another type.
pub fn packed_kernel(weight: QuantType, level: Level) -> Option<PackedKernel> {
    let (kind, prepare_acts, panel_bytes, pack_panel, scalar): (Kind, _, _, _, super::packed::PackedGemmFn) =
        match weight {
            QuantType::Q4_0 => {
                (Kind::Q4_0, prepare_acts_q4_0 as _, panel_bytes_q4_0 as _, pack_panel_q4_0 as _, gemm_q4_0)
            }
            QuantType::IQ4_NL => {
                (Kind::Iq4Nl, prepare_acts_iq4_nl as _, panel_bytes_iq4_nl as _, pack_panel_iq4_nl as _, gemm_iq4_nl)
            }
            QuantType::MXFP4 => {
                (Kind::Mxfp4, prepare_acts_mxfp4 as _, panel_bytes_mxfp4 as _, pack_panel_mxfp4 as _, gemm_mxfp4)
            }
            QuantType::Q8_0 => {
                (Kind::Q8_0, prepare_acts_q8_0 as _, panel_bytes_q8_0 as _, pack_panel_q8_0 as _, gemm_q8_0)
            }
            QuantType::Q4_1 => {
                (Kind::Q4_1, prepare_acts_q4_1 as _, panel_bytes_q4_1 as _, pack_panel_q4_1 as _, gemm_q4_1)
            }
            QuantType::Q5_0 => {
                (Kind::Q5_0, prepare_acts_q5_0 as _, panel_bytes_q5_0 as _, pack_panel_q5_0 as _, gemm_q5_0)
            }
            QuantType::Q5_1 => {
                (Kind::Q5_1, prepare_acts_q5_1 as _, panel_bytes_q5_1 as _, pack_panel_q5_1 as _, gemm_q5_1)
            }
            _ => return None,
        };
    let (gemm, gemm_level) = simd_gemm(kind, level).unwrap_or((scalar, Level::Scalar));
    Some(PackedKernel { act_row_bytes, prepare_acts, panel_bytes, pack_panel, gemm, level: gemm_level })
}

/// The fastest SIMD gemm of `kind` at or below `level`, or `None` for the scalar one.
fn simd_gemm(kind: Kind, level: Level) -> Option<(super::packed::PackedGemmFn, Level)> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::x86_64;
        if level >= Level::Avx512Vnni {
            if let Some(f) = x86_64::Avx512::try_new().and_then(|t| x86_64::avx512::packed_gemm_legacy_vnni(t, kind)) {
                return Some((f, Level::Avx512Vnni));
            }
        }
        // AVX-512 without VNNI runs the AVX2 kernel.
        if level >= Level::Avx2 {
            if let Some(t) = x86_64::Avx2::try_new() {
                return Some((x86_64::avx2::packed_gemm_legacy(t, kind), Level::Avx2));
            }
        }
    }
    let _ = (kind, level);
    None
}
