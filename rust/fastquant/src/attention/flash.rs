//! The tiled flash-attention driver.
//!
//! Work unit: one (batch, kv head, query tile), holding the query rows of *every* query head that
//! shares the kv head (GQA), so each key/value tile is loaded, converted and transposed once for
//! the whole group. Per unit, key tiles of [`KEY_TILE`] keys run through the online softmax: the
//! scores `S = Q·Kᵀ` of the tile, each row's running max `m` and sum `l`, `P = exp(S - m)`, the
//! output rows rescaled by `exp(m_old - m_new)` and `O += P·V`, all in f32. Only the key range some
//! row of the unit can see (causal, window) is visited, so causal attention does about half the
//! work; a tile where a row sees nothing costs that row nothing.
//!
//! Decode units (at most `FEW_ROWS` query rows) skip the f32 tiles for F16 and Q8_0 K/V, whose
//! conversion and transpose would cost more than the few rows' products. F16 keys and values are
//! widened in registers inside the products ([`TileKernels::qk_f16`], [`TileKernels::pv_f16`]),
//! exact as the f32 path. For Q8_0 keys, as ggml does, the scaled query rows are rounded to Q8_0
//! once per unit and the scores are integer dots with the raw key blocks ([`TileKernels::qk_q8`]);
//! Q8_0 values are widened and scaled in registers while accumulating ([`TileKernels::pv_q8`]).
//! The query rounding moves each scaled query element by at most half its block's step
//! (amax/127), the one extra error of this path (bounds in `tests/attention.rs` and
//! `tests/test_attention.py`).
//!
//! When there are fewer units than threads (decode: one query, long keys), each unit's key range is
//! split into chunks run as separate tasks, whose partial `(m, l, O)` are merged afterwards with
//! the log-sum-exp rule. Extra memory is one scratch set per worker plus the partials of split
//! units: O(threads x tile), independent of the number of keys.

use super::{AttentionOptions, AttentionShape, KvData, MaskView, QueryData, TileKernels};
use crate::error::Result;
use crate::formats::{DequantizeFn, QuantizeFn};
use crate::parallel::{for_each_task, num_threads};
use crate::simd::{codec_for, Level};
use crate::types::QuantType;

/// Keys per tile: the transposed key tile (D x 64 f32, 32 KiB at D = 128) stays in L1 while every
/// row block of the unit multiplies it.
pub const KEY_TILE: usize = 64;
/// Units with at most this many query rows (decode) spend more on converting K/V tiles than on
/// the products, so their key tiles are smaller: the converted K rows, their transpose and the
/// converted V rows then stay in L1 together (16 keys measured ~35% faster than 64 for F16/Q8_0).
const FEW_ROWS: usize = 16;
const DECODE_KEY_TILE: usize = 16;
/// Decode units whose K and V are both read in place convert nothing, so their key tiles are long
/// enough to amortise the per-row softmax bookkeeping of a tile (max, exp, rescale calls).
const DIRECT_KEY_TILE: usize = 128;
/// Query rows per unit (over all heads of a GQA group): enough rows to amortise converting and
/// transposing each key tile (with 64 rows the transpose took ~8% of prefill time, with 256 ~3%),
/// few enough that Q, O and S (~320 KiB at D = 128) stay in a 1 MiB L2.
const ROWS_PER_UNIT: usize = 256;
/// A split decode task gets at least this many keys, so the merge stays negligible.
const MIN_KEYS_PER_SPLIT: usize = 512;

/// K or V rows that decode units read straight from their encoding, widening in registers,
/// instead of converting each tile to f32 (and transposing K) for the GEMM kernels: with a few
/// query rows per unit the conversions and transposes cost more than the products.
#[derive(Clone, Copy)]
enum DirectRows<'a> {
    /// Q8_0 rows, for [`TileKernels::qk_q8`] and [`TileKernels::pv_q8`].
    Q8_0(&'a [u8]),
    /// Little-endian F16 rows, for [`TileKernels::qk_f16`] and [`TileKernels::pv_f16`].
    F16(&'a [u8]),
}

/// The rows of a K or V source the decode kernels read directly; `None` for other sources or
/// units with many rows.
fn direct_rows(kv: KvData<'_>, decode: bool) -> Option<DirectRows<'_>> {
    if !decode {
        return None;
    }
    match kv {
        KvData::Blocks { qtype: QuantType::Q8_0, data } => Some(DirectRows::Q8_0(data)),
        KvData::Blocks { qtype: QuantType::F16, data } => Some(DirectRows::F16(data)),
        KvData::F16(x) => Some(DirectRows::F16(bytemuck::cast_slice(x))),
        _ => None,
    }
}

/// A K or V source with per-row addressing.
#[derive(Clone, Copy)]
enum KvRows<'a> {
    F32(&'a [f32]),
    /// Raw rows of `row_bytes` and the dequantizer for them (F16 bits are F16 "blocks").
    Blocks {
        data: &'a [u8],
        row_bytes: usize,
        dequantize: DequantizeFn,
    },
}

impl<'a> KvRows<'a> {
    fn new(kv: KvData<'a>, d: usize, level: Level) -> Result<Self> {
        let blocks = |qtype: QuantType, data: &'a [u8]| -> Result<Self> {
            let codec = codec_for(qtype, level)?.expect("the level was checked by the caller");
            Ok(KvRows::Blocks { data, row_bytes: qtype.row_bytes(d)?, dequantize: codec.dequantize })
        };
        match kv {
            KvData::F32(x) => Ok(KvRows::F32(x)),
            KvData::F16(x) => blocks(QuantType::F16, bytemuck::cast_slice(x)),
            KvData::Blocks { qtype, data } => blocks(qtype, data),
        }
    }

    /// Rows `first..first + n` as f32, row-major with `d` columns: borrowed when they already are,
    /// else decoded into `scratch`.
    fn rows<'s>(&'s self, first: usize, n: usize, d: usize, scratch: &'s mut [f32]) -> &'s [f32] {
        match *self {
            KvRows::F32(x) => &x[first * d..(first + n) * d],
            KvRows::Blocks { data, row_bytes, dequantize } => {
                dequantize(&data[first * row_bytes..(first + n) * row_bytes], &mut scratch[..n * d]);
                &scratch[..n * d]
            }
        }
    }

    /// Rows `first..first + n` as f32 rows of `dp >= d` columns (padding columns untouched) in
    /// `scratch`.
    fn rows_padded(&self, first: usize, n: usize, d: usize, dp: usize, scratch: &mut [f32]) {
        for j in 0..n {
            let dst = &mut scratch[j * dp..j * dp + d];
            match *self {
                KvRows::F32(x) => dst.copy_from_slice(&x[(first + j) * d..(first + j + 1) * d]),
                KvRows::Blocks { data, row_bytes, dequantize } => {
                    dequantize(&data[(first + j) * row_bytes..(first + j + 1) * row_bytes], dst)
                }
            }
        }
    }
}

/// The mask as strides: element (b, h, i, j) is `data[b*sb + h*sh + i*si + j*sj]`.
#[derive(Clone, Copy)]
struct Mask<'a> {
    data: &'a [f32],
    strides: [usize; 4],
}

impl<'a> Mask<'a> {
    fn new(m: &MaskView<'a>) -> Self {
        let mut strides = [0; 4];
        let mut step = 1;
        for a in (0..4).rev() {
            strides[a] = if m.dims[a] == 1 { 0 } else { step };
            step *= m.dims[a];
        }
        Mask { data: m.data, strides }
    }
}

/// Everything a unit needs, shared by all tasks.
struct Job<'a> {
    shape: AttentionShape,
    group: usize,
    q_per_tile: usize,
    key_tile: usize,
    n_qtiles: usize,
    n_splits: usize,
    dp: usize,
    q: QueryData<'a>,
    q_dequantize: DequantizeFn,
    scale: f32,
    k: KvRows<'a>,
    v: KvRows<'a>,
    /// Keys read straight from their encoding (decode only); Q8_0 keys take integer dots with the
    /// query rows quantized to Q8_0.
    k_direct: Option<DirectRows<'a>>,
    /// Values accumulated straight from their encoding (decode only).
    v_direct: Option<DirectRows<'a>>,
    q8_row_bytes: usize,
    q8_quantize: QuantizeFn,
    head_stride: usize,
    mask: Option<Mask<'a>>,
    causal: bool,
    window: Option<usize>,
    softcap: Option<f32>,
    offset: i64,
    kernels: TileKernels,
}

/// Per-worker scratch, allocated once per worker.
struct Scratch {
    q: Vec<f32>,
    q8: Vec<u8>,
    kt: Vec<f32>,
    k_rows: Vec<f32>,
    v_rows: Vec<f32>,
    s: Vec<f32>,
    o: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
    range: Vec<(usize, usize)>,
}

impl Scratch {
    fn new(job: &Job<'_>) -> Self {
        let rows = job.group * job.q_per_tile;
        let d = job.shape.head_dim;
        Scratch {
            q: vec![0.0; rows * d],
            q8: vec![0; if matches!(job.k_direct, Some(DirectRows::Q8_0(_))) { rows * job.q8_row_bytes } else { 0 }],
            kt: vec![0.0; d * job.key_tile],
            k_rows: vec![0.0; job.key_tile * d],
            v_rows: vec![0.0; job.key_tile * job.dp],
            s: vec![0.0; rows * job.key_tile],
            o: vec![0.0; rows * job.dp],
            m: vec![0.0; rows],
            l: vec![0.0; rows],
            range: vec![(0, 0); rows],
        }
    }
}

/// Output rows written by several tasks at once, each task to its own rows.
struct SharedRows {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the pointer comes from a `&mut [f32]` that outlives every task, and tasks write disjoint
// ranges (see `SharedRows::range`), so sharing it between threads is like splitting the slice.
unsafe impl Sync for SharedRows {}

impl SharedRows {
    fn new(x: &mut [f32]) -> Self {
        SharedRows { ptr: x.as_mut_ptr(), len: x.len() }
    }

    /// `x[start..start + n]`.
    ///
    /// # Safety
    /// No two live slices from this function may overlap (each task writes only its own rows).
    #[allow(clippy::mut_from_ref)] // the whole point: disjoint rows of one output from many tasks
    unsafe fn range(&self, start: usize, n: usize) -> &mut [f32] {
        assert!(start + n <= self.len, "output row out of bounds");
        // SAFETY: in bounds (asserted); exclusive by the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), n) }
    }
}

/// A unit's result before normalisation: the running max, sum and unnormalised output per row.
struct Partial<'s> {
    m: &'s [f32],
    l: &'s [f32],
    o: &'s [f32],
}

impl<'a> Job<'a> {
    fn rows(&self) -> usize {
        self.group * self.q_per_tile
    }

    /// (batch*kv head index, query tile, split) of a task.
    fn unit(&self, task: usize) -> (usize, usize, usize) {
        let split = task % self.n_splits;
        let rest = task / self.n_splits;
        (rest / self.n_qtiles, rest % self.n_qtiles, split)
    }

    /// The queries of query tile `qt`.
    fn queries(&self, qt: usize) -> (usize, usize) {
        let q0 = qt * self.q_per_tile;
        (q0, (q0 + self.q_per_tile).min(self.shape.n_queries))
    }

    /// The keys query `i` may see, `lo..hi` (empty when lo >= hi).
    fn visible(&self, i: usize) -> (usize, usize) {
        let nk = self.shape.n_keys as i64;
        let pos = i as i64 + self.offset;
        let hi = if self.causal { (pos + 1).clamp(0, nk) } else { nk };
        let lo = match self.window {
            Some(w) => (pos - w as i64 + 1).clamp(0, nk),
            None => 0,
        };
        (lo as usize, hi as usize)
    }

    /// Runs one unit over keys `k_lo..k_hi` (already within what its rows see); leaves the
    /// unnormalised state in the scratch.
    fn run_unit(&self, sc: &mut Scratch, bh: usize, q0: usize, q1: usize, k_lo: usize, k_hi: usize) {
        let d = self.shape.head_dim;
        let dp = self.dp;
        let nq_tile = q1 - q0;
        let rows = self.group * nq_tile;
        let kern = &self.kernels;
        let (b, hkv) = (bh / self.shape.kv_heads, bh % self.shape.kv_heads);

        // Q rows of every head of the group, scaled once here instead of every score.
        for gi in 0..self.group {
            let head = b * self.shape.q_heads + hkv * self.group + gi;
            let src = (head * self.shape.n_queries + q0) * d;
            let dst = &mut sc.q[gi * nq_tile * d..(gi + 1) * nq_tile * d];
            match self.q {
                QueryData::F32(x) => dst.copy_from_slice(&x[src..src + nq_tile * d]),
                QueryData::F16(x) => {
                    (self.q_dequantize)(bytemuck::cast_slice(&x[src..src + nq_tile * d]), dst);
                }
            }
            (kern.scale)(dst, self.scale);
        }
        if let Some(DirectRows::Q8_0(_)) = self.k_direct {
            // As ggml does for quantized keys: the scaled query rows become Q8_0 once per unit.
            (self.q8_quantize)(&sc.q[..rows * d], &mut sc.q8[..rows * self.q8_row_bytes]);
        }
        for r in 0..rows {
            sc.range[r] = self.visible(q0 + r % nq_tile);
        }
        sc.m[..rows].fill(f32::NEG_INFINITY);
        sc.l[..rows].fill(0.0);
        sc.o[..rows * dp].fill(0.0);

        let first_row = bh * self.head_stride;
        let mut k0 = k_lo;
        while k0 < k_hi {
            let n = self.key_tile.min(k_hi - k0);
            let ld = n.next_multiple_of(16);
            match self.k_direct {
                Some(DirectRows::Q8_0(k8)) => {
                    let rb = self.q8_row_bytes;
                    let keys = &k8[(first_row + k0) * rb..(first_row + k0 + n) * rb];
                    (kern.qk_q8)(&sc.q8, rows, keys, n, rb, &mut sc.s, ld);
                }
                Some(DirectRows::F16(kh)) => {
                    let keys = &kh[(first_row + k0) * 2 * d..(first_row + k0 + n) * 2 * d];
                    (kern.qk_f16)(&sc.q, rows, d, keys, n, &mut sc.s, ld);
                }
                None => {
                    let k_rows = self.k.rows(first_row + k0, n, d, &mut sc.k_rows);
                    (kern.transpose)(k_rows, n, d, &mut sc.kt, ld);
                    (kern.qk)(&sc.q, rows, d, &sc.kt, ld, &mut sc.s);
                }
            }

            let mut any = false;
            for r in 0..rows {
                let row = &mut sc.s[r * ld..r * ld + n];
                let (lo, hi) = sc.range[r];
                let a = lo.clamp(k0, k0 + n) - k0;
                let z = hi.clamp(k0, k0 + n) - k0;
                if a >= z {
                    row.fill(0.0);
                    continue;
                }
                row[..a].fill(0.0);
                row[z..].fill(0.0);
                let live = &mut row[a..z];
                if let Some(cap) = self.softcap {
                    (kern.softcap)(live, cap);
                }
                if let Some(mask) = &self.mask {
                    let (gi, i) = (r / nq_tile, q0 + r % nq_tile);
                    let st = mask.strides;
                    let base = b * st[0] + (hkv * self.group + gi) * st[1] + i * st[2] + (k0 + a) * st[3];
                    if st[3] == 0 {
                        let add = mask.data[base];
                        live.iter_mut().for_each(|x| *x += add);
                    } else {
                        let len = live.len();
                        live.iter_mut().zip(&mask.data[base..base + len]).for_each(|(x, m)| *x += m);
                    }
                }
                let m_old = sc.m[r];
                let m_new = m_old.max((kern.max)(live));
                if m_new == f32::NEG_INFINITY {
                    live.fill(0.0); // every key so far masked: nothing to add
                    continue;
                }
                let alpha = (m_old - m_new).exp();
                let sum = (kern.exp_sum)(live, m_new);
                if alpha != 1.0 {
                    (kern.scale)(&mut sc.o[r * dp..(r + 1) * dp], alpha);
                }
                sc.l[r] = sc.l[r] * alpha + sum;
                sc.m[r] = m_new;
                any = true;
            }
            match (any, self.v_direct) {
                (false, _) => {}
                (true, Some(DirectRows::Q8_0(v8))) => {
                    let rb = self.q8_row_bytes;
                    let values = &v8[(first_row + k0) * rb..(first_row + k0 + n) * rb];
                    (kern.pv_q8)(&sc.s, rows, ld, n, values, rb, &mut sc.o, dp);
                }
                (true, Some(DirectRows::F16(vh))) => {
                    let values = &vh[(first_row + k0) * 2 * d..(first_row + k0 + n) * 2 * d];
                    (kern.pv_f16)(&sc.s, rows, ld, n, values, d, &mut sc.o, dp);
                }
                (true, None) => {
                    let v_rows: &[f32] = if dp == d {
                        self.v.rows(first_row + k0, n, d, &mut sc.v_rows)
                    } else {
                        self.v.rows_padded(first_row + k0, n, d, dp, &mut sc.v_rows);
                        &sc.v_rows[..n * dp]
                    };
                    (kern.pv)(&sc.s, rows, ld, n, v_rows, dp, &mut sc.o);
                }
            }
            k0 += n;
        }
    }

    /// The key range the rows of query tile `q0..q1` see, split `n_splits` ways; chunk `split`.
    fn key_chunk(&self, q0: usize, q1: usize, split: usize) -> (usize, usize) {
        let (mut lo, mut hi) = (usize::MAX, 0);
        for i in q0..q1 {
            let (a, z) = self.visible(i);
            if a < z {
                lo = lo.min(a);
                hi = hi.max(z);
            }
        }
        if lo >= hi {
            return (0, 0);
        }
        let len = hi - lo;
        (lo + len * split / self.n_splits, lo + len * (split + 1) / self.n_splits)
    }

    /// Writes normalised rows (and log-sum-exp) of the unit (bh, q0..q1) from a merged state.
    fn write_rows(
        &self,
        st: &Partial<'_>,
        bh: usize,
        q0: usize,
        q1: usize,
        out: &SharedRows,
        lse: Option<&SharedRows>,
    ) {
        let d = self.shape.head_dim;
        let nq_tile = q1 - q0;
        let (b, hkv) = (bh / self.shape.kv_heads, bh % self.shape.kv_heads);
        for gi in 0..self.group {
            let head = b * self.shape.q_heads + hkv * self.group + gi;
            let row0 = head * self.shape.n_queries + q0;
            // SAFETY: rows row0..row0 + nq_tile of this head belong to this unit only.
            let dst = unsafe { out.range(row0 * d, nq_tile * d) };
            for t in 0..nq_tile {
                let r = gi * nq_tile + t;
                let l = st.l[r];
                let y = &mut dst[t * d..(t + 1) * d];
                if l > 0.0 {
                    let inv = 1.0 / l;
                    y.iter_mut().zip(&st.o[r * self.dp..r * self.dp + d]).for_each(|(y, o)| *y = o * inv);
                } else {
                    y.fill(0.0);
                }
            }
            if let Some(lse) = lse {
                // SAFETY: as above, for the log-sum-exp rows.
                let dst = unsafe { lse.range(row0, nq_tile) };
                for (t, y) in dst.iter_mut().enumerate() {
                    let r = gi * nq_tile + t;
                    *y = if st.l[r] > 0.0 { st.m[r] + st.l[r].ln() } else { f32::NEG_INFINITY };
                }
            }
        }
    }
}

/// See the module docs; arguments were validated by [`super::attention`].
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    shape: &AttentionShape,
    q: QueryData<'_>,
    k: KvData<'_>,
    v: KvData<'_>,
    options: &AttentionOptions<'_>,
    head_stride: usize,
    level: Level,
    kernels: &TileKernels,
    out: &mut [f32],
    lse: Option<&mut [f32]>,
) -> Result<()> {
    let s = *shape;
    if s.batch * s.q_heads * s.n_queries == 0 {
        return Ok(());
    }
    let d = s.head_dim;
    let group = s.q_heads / s.kv_heads;
    let q_per_tile = (ROWS_PER_UNIT / group).clamp(1, s.n_queries);
    let n_qtiles = s.n_queries.div_ceil(q_per_tile);
    let base_units = s.batch * s.kv_heads * n_qtiles;
    let threads = num_threads();
    let n_splits = if base_units < 2 * threads {
        (2 * threads).div_ceil(base_units).min(s.n_keys / MIN_KEYS_PER_SPLIT).max(1)
    } else {
        1
    };
    let decode = group * q_per_tile <= FEW_ROWS;
    let (k_direct, v_direct) = (direct_rows(k, decode), direct_rows(v, decode));
    let job = Job {
        shape: s,
        group,
        q_per_tile,
        key_tile: match (decode, k_direct.is_some() && v_direct.is_some()) {
            (true, true) => DIRECT_KEY_TILE,
            (true, false) => DECODE_KEY_TILE,
            (false, _) => KEY_TILE,
        },
        n_qtiles,
        n_splits,
        dp: d.next_multiple_of(16),
        q,
        q_dequantize: codec_for(QuantType::F16, level)?.expect("level checked").dequantize,
        scale: options.scale.unwrap_or(1.0 / (d as f32).sqrt()),
        k: KvRows::new(k, d, level)?,
        v: KvRows::new(v, d, level)?,
        k_direct,
        v_direct,
        q8_row_bytes: if d.is_multiple_of(32) { QuantType::Q8_0.row_bytes(d)? } else { 0 },
        q8_quantize: codec_for(QuantType::Q8_0, level)?.and_then(|c| c.quantize).expect("Q8_0 quantizes"),
        head_stride,
        mask: options.mask.as_ref().map(Mask::new),
        causal: options.causal,
        window: options.window,
        softcap: options.softcap,
        offset: options.query_offset.unwrap_or(s.n_keys as i64 - s.n_queries as i64),
        kernels: *kernels,
    };
    let out_rows = SharedRows::new(out);
    let lse_rows = lse.map(SharedRows::new);
    let n_tasks = base_units * n_splits;

    if n_splits == 1 {
        return for_each_task(
            n_tasks,
            || Scratch::new(&job),
            |sc, task| {
                let (bh, qt, _) = job.unit(task);
                let (q0, q1) = job.queries(qt);
                let (k_lo, k_hi) = job.key_chunk(q0, q1, 0);
                job.run_unit(sc, bh, q0, q1, k_lo, k_hi);
                let rows = job.group * (q1 - q0);
                let st = Partial { m: &sc.m[..rows], l: &sc.l[..rows], o: &sc.o[..rows * job.dp] };
                job.write_rows(&st, bh, q0, q1, &out_rows, lse_rows.as_ref());
            },
        );
    }

    // Split keys: every task leaves (m, l, O) of its rows in its slot of `partials`, then each
    // unit's slots are merged. Few units, so this is O(threads x tile) memory.
    let rows = job.rows();
    let slot = rows * (job.dp + 2);
    let mut partials = vec![0f32; n_tasks * slot];
    let partial_rows = SharedRows::new(&mut partials);
    for_each_task(
        n_tasks,
        || Scratch::new(&job),
        |sc, task| {
            let (bh, qt, split) = job.unit(task);
            let (q0, q1) = job.queries(qt);
            let (k_lo, k_hi) = job.key_chunk(q0, q1, split);
            job.run_unit(sc, bh, q0, q1, k_lo, k_hi);
            let n = job.group * (q1 - q0);
            // SAFETY: slot `task` is written by this task only.
            let dst = unsafe { partial_rows.range(task * slot, slot) };
            dst[..n].copy_from_slice(&sc.m[..n]);
            dst[rows..rows + n].copy_from_slice(&sc.l[..n]);
            dst[2 * rows..2 * rows + n * job.dp].copy_from_slice(&sc.o[..n * job.dp]);
        },
    )?;
    let mut m = vec![0f32; rows];
    let mut l = vec![0f32; rows];
    let mut o = vec![0f32; rows * job.dp];
    for unit in 0..base_units {
        let (bh, qt, _) = job.unit(unit * n_splits);
        let (q0, q1) = job.queries(qt);
        let n = job.group * (q1 - q0);
        let slots = &partials[unit * n_splits * slot..(unit + 1) * n_splits * slot];
        for r in 0..n {
            let mx = (0..n_splits).map(|sp| slots[sp * slot + r]).fold(f32::NEG_INFINITY, f32::max);
            m[r] = mx;
            l[r] = 0.0;
            let orow = &mut o[r * job.dp..(r + 1) * job.dp];
            orow.fill(0.0);
            if mx == f32::NEG_INFINITY {
                continue;
            }
            for sp in 0..n_splits {
                let s = &slots[sp * slot..(sp + 1) * slot];
                let w = (s[r] - mx).exp();
                if s[rows + r] == 0.0 {
                    continue;
                }
                l[r] += s[rows + r] * w;
                let src = &s[2 * rows + r * job.dp..2 * rows + (r + 1) * job.dp];
                orow.iter_mut().zip(src).for_each(|(a, b)| *a += b * w);
            }
        }
        let st = Partial { m: &m[..n], l: &l[..n], o: &o[..n * job.dp] };
        job.write_rows(&st, bh, q0, q1, &out_rows, lse_rows.as_ref());
    }
    Ok(())
}
