//! Flash attention on the CPU: `softmax(q kᵀ · scale + mask) v` without materialising the
//! `Nq x Nk` score matrix.
//!
//! * This file: the public API ([`attention`], [`AttentionShape`], [`AttentionOptions`]), argument
//!   validation, and the table of tile kernels ([`TileKernels`]) per SIMD level.
//! * [`flash`]: the tiled driver (query tiles x key tiles, online softmax, threads, split-K decode).
//! * [`kernels`]: the scalar reference of every tile kernel; the AVX2 and AVX-512 versions live in
//!   `simd/x86_64/{avx2,avx512}/attention.rs` and must agree with it up to float reassociation.
//!
//! Layouts are numpy's: q `[B, Hq, Nq, D]`, k and v `[B, Hkv, Nk, D]` (one head's keys may sit
//! `kv_head_stride` rows apart, which lets a paged cache attend to a partly filled page), output
//! `[B, Hq, Nq, D]`, log-sum-exp `[B, Hq, Nq]`. K and V may be f32, f16 bits, or any block type
//! fastquant can dequantize (F16, Q8_0, Q4_0 are the KV-cache types llama.cpp offers).

pub mod flash;
pub mod kernels;

use crate::error::{Error, Result};
use crate::simd::{self, Level};
use crate::types::QuantType;

/// Query input: f32, or f16 bit patterns.
#[derive(Clone, Copy, Debug)]
pub enum QueryData<'a> {
    /// f32 values, `[B, Hq, Nq, D]` row-major.
    F32(&'a [f32]),
    /// f16 bit patterns (little-endian u16 as in memory), `[B, Hq, Nq, D]` row-major.
    F16(&'a [u16]),
}

/// Key or value input: f32, f16 bit patterns, or rows of ggml blocks (one row = one key of
/// `head_dim` elements).
#[derive(Clone, Copy, Debug)]
pub enum KvData<'a> {
    /// f32 values, `[B, Hkv, Nk, D]` row-major.
    F32(&'a [f32]),
    /// f16 bit patterns, `[B, Hkv, Nk, D]` row-major.
    F16(&'a [u16]),
    /// ggml blocks of `qtype` (F16, Q8_0 or Q4_0), one row of `D` elements per key, rows in `[B, Hkv, Nk]` order.
    Blocks {
        /// The block type.
        qtype: QuantType,
        /// The blocks, `B * Hkv * Nk` rows of `qtype.row_bytes(D)` bytes.
        data: &'a [u8],
    },
}

/// The dimensions of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// `B`: independent sequences.
    pub batch: usize,
    /// `Hq`: query heads; a multiple of `kv_heads`.
    pub q_heads: usize,
    /// `Hkv`: key/value heads (GQA: each serves `Hq / Hkv` query heads; MQA when 1).
    pub kv_heads: usize,
    /// `Nq`: query positions per head.
    pub n_queries: usize,
    /// `Nk`: key/value positions per head.
    pub n_keys: usize,
    /// `D`: elements per head vector (query, key and value alike).
    pub head_dim: usize,
}

/// An additive f32 mask broadcastable to `[B, Hq, Nq, Nk]`: `dims[a]` is either 1 (broadcast) or
/// the full size of axis `a`, and `data` holds `prod(dims)` values, row-major.
#[derive(Clone, Copy, Debug)]
pub struct MaskView<'a> {
    /// The mask values, `dims.iter().product()` of them, row-major; `-inf` drops a key.
    pub data: &'a [f32],
    /// Size of each axis of `[B, Hq, Nq, Nk]`: 1 (broadcast) or the full size.
    pub dims: [usize; 4],
}

/// Everything about an attention call besides the tensors.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionOptions<'a> {
    /// Query `i` sees keys `j <= i + offset` (offset = `Nk - Nq` unless `query_offset` says).
    pub causal: bool,
    /// Multiplies `q kᵀ`; `1/sqrt(D)` when `None`.
    pub scale: Option<f32>,
    /// Additive mask added to the scores (after `scale` and `softcap`).
    pub mask: Option<MaskView<'a>>,
    /// Sliding window: query `i` sees only keys `j > i + offset - window` (with `causal`, the last
    /// `window` keys up to and including its own position).
    pub window: Option<usize>,
    /// Logit cap: scores become `softcap * tanh(score / softcap)` before the mask is added.
    pub softcap: Option<f32>,
    /// Run at this SIMD level instead of the process-wide one.
    pub level: Option<Level>,
    /// Rows between the first keys of consecutive (batch, kv head) pairs in k and v; `Nk` if `None`.
    pub kv_head_stride: Option<usize>,
    /// The key position of query 0 for `causal` and `window`; `Nk - Nq` if `None`. A paged cache
    /// passes each page's own offset (possibly negative: the page lies entirely in the future).
    pub query_offset: Option<i64>,
}

/// `qk(q, rows, d_len, kt, ld, s)`; see [`TileKernels::qk`].
pub type QkFn = fn(&[f32], usize, usize, &[f32], usize, &mut [f32]);
/// `pv(p, rows, ld, n, v, dp, o)`; see [`TileKernels::pv`].
pub type PvFn = fn(&[f32], usize, usize, usize, &[f32], usize, &mut [f32]);
/// `qk_q8(q8, rows, k, n, row_bytes, s, ld)`; see [`TileKernels::qk_q8`].
pub type QkQ8Fn = fn(&[u8], usize, &[u8], usize, usize, &mut [f32], usize);
/// `pv_q8(p, rows, ld, n, v, row_bytes, o, dp)`; see [`TileKernels::pv_q8`].
pub type PvQ8Fn = fn(&[f32], usize, usize, usize, &[u8], usize, &mut [f32], usize);
/// `qk_f16(q, rows, d_len, k, n, s, ld)`; see [`TileKernels::qk_f16`].
pub type QkF16Fn = fn(&[f32], usize, usize, &[u8], usize, &mut [f32], usize);
/// `pv_f16(p, rows, ld, n, v, d_len, o, dp)`; see [`TileKernels::pv_f16`].
pub type PvF16Fn = fn(&[f32], usize, usize, usize, &[u8], usize, &mut [f32], usize);

/// The tile kernels of one SIMD level. Every kernel is safe to call with any slices that satisfy
/// the documented sizes (they assert them).
#[derive(Clone, Copy)]
pub struct TileKernels {
    /// The level these kernels are written for.
    pub level: Level,
    /// `s[r*ld + j] = Σ_d q[r*d_len + d] · kt[d*ld + j]` for `r < rows`, `j < ld` (`ld % 16 == 0`).
    pub qk: QkFn,
    /// `o[r*dp + c] += Σ_{j<n} p[r*ld + j] · v[j*dp + c]` for `r < rows`, `c < dp` (`dp % 16 == 0`).
    pub pv: PvFn,
    /// The largest element (`-inf` for an empty or all `-inf` slice; no NaN expected).
    pub max: fn(x: &[f32]) -> f32,
    /// `x[i] = exp(x[i] - m)` for finite `m`; returns the sum of the new values.
    pub exp_sum: fn(x: &mut [f32], m: f32) -> f32,
    /// `x[i] = cap · tanh(x[i] / cap)`.
    pub softcap: fn(x: &mut [f32], cap: f32),
    /// `x[i] *= a`.
    pub scale: fn(x: &mut [f32], a: f32),
    /// `kt[d*ld + j] = k[j*d_len + d]` for `j < n`, `d < d_len` (`n <= ld`).
    pub transpose: fn(k: &[f32], n: usize, d_len: usize, kt: &mut [f32], ld: usize),
    /// Scores from Q8_0 rows of `row_bytes` bytes (`D / 32` blocks): `s[r*ld + j] =
    /// Σ_blocks d_q·d_k · Σ_i q_i·k_i` (ggml's `vec_dot_q8_0_q8_0`) for query rows `r < rows` of `q8`
    /// and key rows `j < n` of `k`; `s[r*ld + j]` for `j >= n` is left alone.
    pub qk_q8: QkQ8Fn,
    /// `o[r*dp + c] += Σ_{j<n} p[r*ld + j] · d_{j, c/32} · v_{j, c}` for `r < rows`, `c < D`, with `v` the
    /// Q8_0 rows (`row_bytes` bytes each) decoded while accumulating.
    pub pv_q8: PvQ8Fn,
    /// Scores from F16 key rows (`d_len` little-endian f16 each, `2·d_len` bytes), widened in
    /// registers: `s[r*ld + j] = Σ_d q[r*d_len + d] · k_{j, d}` for `r < rows`, `j < n`; `s[r*ld + j]`
    /// for `j >= n` is left alone.
    pub qk_f16: QkF16Fn,
    /// `o[r*dp + c] += Σ_{j<n} p[r*ld + j] · v_{j, c}` for `r < rows`, `c < d_len`, with `v` the F16
    /// rows (`d_len` each) widened while accumulating; columns `d_len..dp` of `o` are left alone.
    pub pv_f16: PvF16Fn,
}

/// The tile kernels at `level`; `None` when the CPU lacks it.
pub fn tile_kernels_for(level: Level) -> Option<TileKernels> {
    if level > simd::detected_level() {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::x86_64::{avx2, avx512, Avx2, Avx512};
        if level >= Level::Avx512 {
            if let Some(token) = Avx512::try_new() {
                return Some(avx512::attention_kernels(token, level >= Level::Avx512Vnni));
            }
        }
        if level >= Level::Avx2 {
            if let Some(token) = Avx2::try_new() {
                return Some(avx2::attention_kernels(token));
            }
        }
    }
    Some(kernels::SCALAR)
}

/// Checks that every block type used for K/V can be read and that rows are whole blocks.
fn check_kv(what: &'static str, kv: &KvData<'_>, shape: &AttentionShape, head_stride: usize) -> Result<()> {
    let rows = shape
        .batch
        .checked_mul(shape.kv_heads)
        .and_then(|bh| bh.checked_sub(1))
        .map(|last| last * head_stride + shape.n_keys)
        .unwrap_or(0);
    let (got, expected) = match kv {
        KvData::F32(x) => (x.len(), rows * shape.head_dim),
        KvData::F16(x) => (x.len(), rows * shape.head_dim),
        KvData::Blocks { qtype, data } => {
            if !qtype.can_dequantize() {
                return Err(Error::Unsupported { qtype: qtype.name(), what: "attention keys/values" });
            }
            if !shape.head_dim.is_multiple_of(qtype.block_elems()) {
                return Err(Error::BlockMultiple {
                    qtype: qtype.name(),
                    len: shape.head_dim,
                    block: qtype.block_elems(),
                });
            }
            (data.len(), rows * qtype.row_bytes(shape.head_dim)?)
        }
    };
    // With a head stride larger than Nk the buffer may be longer than the last head's keys.
    let min_ok = if head_stride == shape.n_keys { got == expected } else { got >= expected };
    if !min_ok {
        return Err(Error::Size { what, expected, got });
    }
    Ok(())
}

fn check_shape(shape: &AttentionShape, head_stride: usize) -> Result<()> {
    let s = shape;
    if s.head_dim == 0 {
        return Err(Error::Invalid("attention: head dimension D must be at least 1".into()));
    }
    if s.kv_heads == 0 || !s.q_heads.is_multiple_of(s.kv_heads) {
        return Err(Error::Invalid(format!(
            "attention: the number of query heads ({}) must be a multiple of the number of key/value heads ({})",
            s.q_heads, s.kv_heads
        )));
    }
    if head_stride < s.n_keys {
        return Err(Error::Invalid(format!(
            "attention: kv_head_stride {head_stride} is smaller than the number of keys {}",
            s.n_keys
        )));
    }
    let total = [s.batch, s.q_heads.max(s.kv_heads), s.n_queries.max(head_stride), s.head_dim]
        .iter()
        .try_fold(1usize, |acc, &x| acc.checked_mul(x));
    if total.is_none() {
        return Err(Error::TooLarge(usize::MAX));
    }
    Ok(())
}

fn check_mask(mask: &MaskView<'_>, shape: &AttentionShape) -> Result<()> {
    let full = [shape.batch, shape.q_heads, shape.n_queries, shape.n_keys];
    for (axis, (&got, &want)) in mask.dims.iter().zip(&full).enumerate() {
        if got != 1 && got != want {
            return Err(Error::Invalid(format!(
                "attention: mask axis {axis} has size {got}, which does not broadcast to [B, Hq, Nq, Nk] = {full:?}"
            )));
        }
    }
    let n: usize = mask.dims.iter().product();
    if mask.data.len() != n {
        return Err(Error::Size { what: "mask values", expected: n, got: mask.data.len() });
    }
    Ok(())
}

/// Computes attention into `out` (`[B, Hq, Nq, D]` f32) and, if given, the log-sum-exp of each
/// query row's scaled (and capped, masked) scores into `lse` (`[B, Hq, Nq]`; `-inf` for a row
/// with every key masked, whose output is zeros).
pub fn attention(
    shape: &AttentionShape,
    q: QueryData<'_>,
    k: KvData<'_>,
    v: KvData<'_>,
    options: &AttentionOptions<'_>,
    out: &mut [f32],
    lse: Option<&mut [f32]>,
) -> Result<()> {
    let head_stride = options.kv_head_stride.unwrap_or(shape.n_keys);
    check_shape(shape, head_stride)?;
    let q_len = shape.batch * shape.q_heads * shape.n_queries * shape.head_dim;
    let got = match q {
        QueryData::F32(x) => x.len(),
        QueryData::F16(x) => x.len(),
    };
    if got != q_len {
        return Err(Error::Size { what: "query elements (B*Hq*Nq*D)", expected: q_len, got });
    }
    check_kv("key elements or bytes (B*Hkv*Nk rows of D)", &k, shape, head_stride)?;
    check_kv("value elements or bytes (B*Hkv*Nk rows of D)", &v, shape, head_stride)?;
    if out.len() != q_len {
        return Err(Error::Size { what: "output elements (B*Hq*Nq*D)", expected: q_len, got: out.len() });
    }
    if let Some(l) = &lse {
        let n = shape.batch * shape.q_heads * shape.n_queries;
        if l.len() != n {
            return Err(Error::Size { what: "log-sum-exp elements (B*Hq*Nq)", expected: n, got: l.len() });
        }
    }
    if let Some(m) = &options.mask {
        check_mask(m, shape)?;
    }
    if let Some(c) = options.softcap {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::Invalid(format!("attention: softcap must be a positive finite number, got {c}")));
        }
    }
    if let Some(s) = options.scale {
        if !s.is_finite() {
            return Err(Error::Invalid(format!("attention: scale must be finite, got {s}")));
        }
    }
    if options.window == Some(0) {
        return Err(Error::Invalid("attention: window must be at least 1 key".into()));
    }
    let level = match options.level {
        Some(l) => l,
        None => simd::active_level()?,
    };
    let kernels = tile_kernels_for(level)
        .ok_or(Error::SimdUnavailable { requested: level.name(), best: simd::detected_level().name() })?;
    flash::run(shape, q, k, v, options, head_stride, level, &kernels, out, lse)
}
