//! Quantize, dequantize, matmul and attention for C.

use std::ffi::c_void;

use fastquant::matmul::{matmul, MatmulWeight};
use fastquant::{
    attention, dequantize, quantize, AttentionOptions, AttentionShape, FloatSlice, FloatSliceMut, KvData, QuantType,
    QuantizeOptions, QueryData,
};

use crate::ffi::{byte_range, check_disjoint, guard, in_ref, in_slice, out_slice, CError};
use crate::FqStatus;

/// `fq_quantize` flag: encode NaN and infinity as ggml does instead of failing with
/// `FQ_STATUS_NON_FINITE`.
pub const FQ_QUANTIZE_ALLOW_NON_FINITE: u32 = 1;

/// The float element type of a buffer: F32, F16 or BF16 (16-bit types as `uint16_t` bits).
fn float_type(what: &str, type_id: u32) -> Result<QuantType, CError> {
    match QuantType::from_id(type_id)? {
        t @ (QuantType::F32 | QuantType::F16 | QuantType::BF16) => Ok(t),
        t => Err(CError::new(
            FqStatus::Unsupported,
            format!("{what}: element type {t} is not a float type (expected FQ_TYPE_F32, FQ_TYPE_F16 or FQ_TYPE_BF16)"),
        )),
    }
}

/// Element size in bytes of a float type from [`float_type`].
fn float_size(t: QuantType) -> usize {
    if t == QuantType::F32 {
        4
    } else {
        2
    }
}

/// Quantizes `n_elements` floats (rows of `n_per_row`) of element type `src_type`
/// (`FQ_TYPE_F32`, `FQ_TYPE_F16` or `FQ_TYPE_BF16`) to ggml type `type_id`, writing exactly
/// `dst_bytes = (n_elements / n_per_row) * fq_type_row_bytes(type_id, n_per_row)` bytes to `dst`.
/// The bytes are those ggml's `ggml_quantize_chunk` writes.
///
/// `imatrix` is NULL or `n_per_row` importance weights (llama.cpp's imatrix for this tensor).
/// `flags`: 0 or `FQ_QUANTIZE_ALLOW_NON_FINITE`; without it NaN/infinity input fails with
/// `FQ_STATUS_NON_FINITE` naming the first bad element.
///
/// Ownership: all buffers are the caller's; nothing is kept after the call. `dst` must not overlap
/// the inputs. Threading: safe to call from several threads at once; the work itself runs on
/// fastquant's pool (`fq_set_num_threads`).
///
/// # Safety
/// `src` must point to `n_elements` elements of `src_type`, `imatrix` (if not NULL) to `n_per_row`
/// floats, `dst` to `dst_bytes` writable bytes, all suitably aligned (checked) and valid for the call.
#[no_mangle]
pub unsafe extern "C" fn fq_quantize(
    type_id: u32,
    src_type: u32,
    src: *const c_void,
    n_elements: usize,
    n_per_row: usize,
    imatrix: *const f32,
    dst: *mut u8,
    dst_bytes: usize,
    flags: u32,
) -> FqStatus {
    guard(|| {
        let qtype = QuantType::from_id(type_id)?;
        let elem = float_type("src_type", src_type)?;
        if flags & !FQ_QUANTIZE_ALLOW_NON_FINITE != 0 {
            return Err(CError::invalid(format!("fq_quantize: unknown flags {flags:#x}")));
        }
        // SAFETY: the buffer's contents and lifetime are the caller's contract; the helpers check
        // null, alignment and size.
        let src_slice = unsafe {
            match elem {
                QuantType::F32 => FloatSlice::F32(in_slice("src", src.cast::<f32>(), n_elements)?),
                QuantType::F16 => FloatSlice::F16(in_slice("src", src.cast::<u16>(), n_elements)?),
                _ => FloatSlice::BF16(in_slice("src", src.cast::<u16>(), n_elements)?),
            }
        };
        let imatrix = if imatrix.is_null() {
            None
        } else {
            // SAFETY: see above.
            Some(unsafe { in_slice("imatrix", imatrix, n_per_row) }?)
        };
        check_disjoint(
            byte_range(dst, dst_bytes),
            &[
                ("src", byte_range(src.cast::<u8>(), n_elements.saturating_mul(float_size(elem)))),
                ("imatrix", byte_range(imatrix.map_or(std::ptr::null(), |m| m.as_ptr()), n_per_row)),
            ],
        )?;
        // SAFETY: see above; disjointness from the inputs was just checked.
        let dst = unsafe { out_slice("dst", dst, dst_bytes) }?;
        let options = QuantizeOptions { check_finite: flags & FQ_QUANTIZE_ALLOW_NON_FINITE == 0, imatrix, level: None };
        quantize(qtype, src_slice, n_per_row, dst, &options)?;
        Ok(())
    })
}

/// Dequantizes `src_bytes` bytes of ggml type `type_id` (rows of `n_per_row` elements) into
/// `n_elements` floats of element type `dst_type` (`FQ_TYPE_F32`, `FQ_TYPE_F16` or
/// `FQ_TYPE_BF16`), with the values ggml's `to_float` gives.
///
/// Ownership: all buffers are the caller's; `dst` must not overlap `src`. Threading: as
/// `fq_quantize`.
///
/// # Safety
/// `src` must point to `src_bytes` bytes and `dst` to `n_elements` writable elements of
/// `dst_type` (aligned for it; checked), valid for the call.
#[no_mangle]
pub unsafe extern "C" fn fq_dequantize(
    type_id: u32,
    src: *const u8,
    src_bytes: usize,
    n_per_row: usize,
    dst_type: u32,
    dst: *mut c_void,
    n_elements: usize,
) -> FqStatus {
    guard(|| {
        let qtype = QuantType::from_id(type_id)?;
        let elem = float_type("dst_type", dst_type)?;
        // SAFETY: the buffers are the caller's contract; the helper checks null and size.
        let src = unsafe { in_slice("src", src, src_bytes) }?;
        check_disjoint(
            byte_range(dst.cast::<u8>(), n_elements.saturating_mul(float_size(elem))),
            &[("src", byte_range(src.as_ptr(), src.len()))],
        )?;
        // SAFETY: as above; disjointness from `src` was just checked.
        let dst = unsafe {
            match elem {
                QuantType::F32 => FloatSliceMut::F32(out_slice("dst", dst.cast::<f32>(), n_elements)?),
                QuantType::F16 => FloatSliceMut::F16(out_slice("dst", dst.cast::<u16>(), n_elements)?),
                _ => FloatSliceMut::BF16(out_slice("dst", dst.cast::<u16>(), n_elements)?),
            }
        };
        dequantize(qtype, src, n_per_row, dst, None)?;
        Ok(())
    })
}

/// `out = x @ dequantize(w)^T`, without dequantizing `w`: `w` is `n` rows of `k` elements of ggml
/// type `weight_type` as GGUF stores a weight (`weight_bytes = n * fq_type_row_bytes(type, k)`),
/// `x` is `m = x_len / k` rows of `k` floats, `out` is `m` rows of `n` floats (`out_len = m * n`).
/// Activations are quantized per row to the weight's paired 8-bit type first, as ggml does.
///
/// Ownership: all buffers are the caller's; `out` must not overlap the inputs. Threading: as
/// `fq_quantize`.
///
/// # Safety
/// Each pointer must point to the number of elements its length argument says (floats aligned
/// to 4 bytes; checked), valid for the call.
#[no_mangle]
pub unsafe extern "C" fn fq_matmul(
    weight_type: u32,
    weight: *const u8,
    weight_bytes: usize,
    n: usize,
    k: usize,
    x: *const f32,
    x_len: usize,
    out: *mut f32,
    out_len: usize,
) -> FqStatus {
    guard(|| {
        let qtype = QuantType::from_id(weight_type)?;
        // SAFETY: the buffers are the caller's contract; the helpers check null, alignment, size.
        let data = unsafe { in_slice("weight", weight, weight_bytes) }?;
        // SAFETY: as above.
        let x = unsafe { in_slice("x", x, x_len) }?;
        check_disjoint(
            byte_range(out, out_len),
            &[("weight", byte_range(data.as_ptr(), data.len())), ("x", byte_range(x.as_ptr(), x.len()))],
        )?;
        // SAFETY: as above; disjointness from the inputs was just checked.
        let out = unsafe { out_slice("out", out, out_len) }?;
        matmul(&MatmulWeight { data, qtype, rows: n, k }, x, out, None)?;
        Ok(())
    })
}

/// The dimensions of one attention call. Layouts are row-major: q and out `[batch, q_heads,
/// n_queries, head_dim]`, k and v `[batch, kv_heads, n_keys, head_dim]` (`q_heads` a multiple of
/// `kv_heads`: grouped-query attention).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FqAttentionShape {
    /// Independent sequences.
    pub batch: usize,
    /// Query heads (a multiple of `kv_heads`).
    pub q_heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Queries per head.
    pub n_queries: usize,
    /// Keys (and values) per head.
    pub n_keys: usize,
    /// Elements per query, key and value row.
    pub head_dim: usize,
}

/// The options of `fq_attention`; zero-initialise it for the defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FqAttentionOptions {
    /// Non-zero: query `i` sees keys `j <= i + n_keys - n_queries` (the last query sees every key).
    pub causal: i32,
    /// Multiplies `q . k`; 0 means `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Sliding window: query `i` sees only its last `window` keys; 0 means no window.
    pub window: usize,
    /// Logit cap: scores become `softcap * tanh(score / softcap)`; 0 means none.
    pub softcap: f32,
}

/// Flash attention: `out = softmax(q k^T * scale [causal]) v` without materialising the scores.
/// `q` is `q_len = batch*q_heads*n_queries*head_dim` floats. `k` and `v` are `batch*kv_heads*n_keys`
/// rows of `head_dim` elements of type `kv_type`: `FQ_TYPE_F32`, `FQ_TYPE_F16` (`uint16_t` bits), or
/// any block type fastquant dequantizes (a quantized KV cache: Q8_0, Q4_0, ... one row = one key);
/// `k_bytes` and `v_bytes` are their sizes in bytes. `out` receives `out_len = q_len` floats; `lse`
/// (NULL or `lse_len = batch*q_heads*n_queries` floats) the log-sum-exp of each query's scores
/// (`-inf` for a query that sees no key; its output row is zeros). `options` NULL = defaults.
///
/// Ownership: all buffers are the caller's; `out` and `lse` must not overlap the inputs or each
/// other. Threading: as `fq_quantize`.
///
/// # Safety
/// Each pointer must be NULL (an error, except `options` and `lse`) or point to the bytes or
/// elements its length says (floats aligned to 4 bytes, F16 to 2; checked), valid for the call.
#[no_mangle]
pub unsafe extern "C" fn fq_attention(
    shape: *const FqAttentionShape,
    q: *const f32,
    q_len: usize,
    kv_type: u32,
    k: *const c_void,
    k_bytes: usize,
    v: *const c_void,
    v_bytes: usize,
    options: *const FqAttentionOptions,
    out: *mut f32,
    out_len: usize,
    lse: *mut f32,
    lse_len: usize,
) -> FqStatus {
    guard(|| {
        // SAFETY: the caller passes NULL or a valid FqAttentionShape (function contract).
        let s = unsafe { in_ref("shape", shape) }?;
        let options = if options.is_null() {
            FqAttentionOptions { causal: 0, scale: 0.0, window: 0, softcap: 0.0 }
        } else {
            // SAFETY: as above.
            *unsafe { in_ref("options", options) }?
        };
        let kv_qtype = QuantType::from_id(kv_type)?;
        // SAFETY: the buffers are the caller's contract; the helpers check null, alignment, size.
        let q = unsafe { in_slice("q", q, q_len) }?;
        // SAFETY: as above.
        let k_data = unsafe { kv_data("k", kv_qtype, k, k_bytes) }?;
        // SAFETY: as above.
        let v_data = unsafe { kv_data("v", kv_qtype, v, v_bytes) }?;
        let inputs = [
            ("q", byte_range(q.as_ptr(), q.len())),
            ("k", byte_range(k.cast::<u8>(), k_bytes)),
            ("v", byte_range(v.cast::<u8>(), v_bytes)),
        ];
        check_disjoint(byte_range(out, out_len), &inputs)?;
        if !lse.is_null() {
            check_disjoint(byte_range(lse, lse_len), &inputs)?;
            check_disjoint(byte_range(lse, lse_len), &[("out", byte_range(out, out_len))])?;
        }
        // SAFETY: as above; disjointness from the inputs and from each other was just checked.
        let out = unsafe { out_slice("out", out, out_len) }?;
        let lse = if lse.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { out_slice("lse", lse, lse_len) }?)
        };
        let shape = AttentionShape {
            batch: s.batch,
            q_heads: s.q_heads,
            kv_heads: s.kv_heads,
            n_queries: s.n_queries,
            n_keys: s.n_keys,
            head_dim: s.head_dim,
        };
        let opts = AttentionOptions {
            causal: options.causal != 0,
            scale: (options.scale != 0.0).then_some(options.scale),
            window: (options.window != 0).then_some(options.window),
            softcap: (options.softcap != 0.0).then_some(options.softcap),
            ..AttentionOptions::default()
        };
        attention(&shape, QueryData::F32(q), k_data, v_data, &opts, out, lse)?;
        Ok(())
    })
}

/// A K or V buffer of `bytes` bytes of `qtype` as the core crate's view: non-null, aligned, a
/// whole number of elements.
///
/// # Safety
/// A non-null `ptr` must point to `bytes` bytes that are not written during the call.
unsafe fn kv_data<'a>(what: &str, qtype: QuantType, ptr: *const c_void, bytes: usize) -> Result<KvData<'a>, CError> {
    let whole = |elem: usize| {
        if bytes.is_multiple_of(elem) {
            Ok(bytes / elem)
        } else {
            Err(CError::new(FqStatus::Size, format!("{what}: {bytes} bytes is not a whole number of {qtype} values")))
        }
    };
    if qtype == QuantType::BF16 {
        return Err(CError::new(FqStatus::Unsupported, format!("{what}: BF16 keys/values are not supported")));
    }
    // SAFETY: the buffer is the caller's contract; the helper checks null, alignment and size.
    unsafe {
        Ok(match qtype {
            QuantType::F32 => KvData::F32(in_slice(what, ptr.cast::<f32>(), whole(4)?)?),
            QuantType::F16 => KvData::F16(in_slice(what, ptr.cast::<u16>(), whole(2)?)?),
            qtype => KvData::Blocks { qtype, data: in_slice(what, ptr.cast::<u8>(), bytes)? },
        })
    }
}
