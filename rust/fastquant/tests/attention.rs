//! Flash attention against a naive f64 reference, at every SIMD level this CPU has, and the tile
//! kernels of every level against the scalar ones.

use fastquant::attention::{tile_kernels_for, KvData, MaskView, QueryData};
use fastquant::simd::available_levels;
use fastquant::{attention, quantize, AttentionOptions, AttentionShape, FloatSlice, QuantType, QuantizeOptions};

/// A small deterministic generator (xorshift), values in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * amp).collect()
    }
}

/// softmax(q kᵀ·scale (+cap, +mask, causal/window)) v in f64, the definition written out.
fn naive(s: &AttentionShape, q: &[f32], k: &[f32], v: &[f32], o: &AttentionOptions<'_>) -> (Vec<f32>, Vec<f32>) {
    let d = s.head_dim;
    let g = s.q_heads / s.kv_heads;
    let scale = o.scale.unwrap_or(1.0 / (d as f32).sqrt()) as f64;
    let off = s.n_keys as i64 - s.n_queries as i64;
    let mut out = vec![0f32; s.batch * s.q_heads * s.n_queries * d];
    let mut lse = vec![0f32; s.batch * s.q_heads * s.n_queries];
    for b in 0..s.batch {
        for h in 0..s.q_heads {
            let kvh = b * s.kv_heads + h / g;
            for i in 0..s.n_queries {
                let row = (b * s.q_heads + h) * s.n_queries + i;
                let qr = &q[row * d..(row + 1) * d];
                let mut sc = vec![f64::NEG_INFINITY; s.n_keys];
                for (j, x) in sc.iter_mut().enumerate() {
                    let pos = i as i64 + off;
                    if (o.causal && j as i64 > pos) || o.window.is_some_and(|w| j as i64 <= pos - w as i64) {
                        continue;
                    }
                    let kr = &k[(kvh * s.n_keys + j) * d..(kvh * s.n_keys + j + 1) * d];
                    let mut dot: f64 = qr.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale;
                    if let Some(c) = o.softcap {
                        dot = c as f64 * (dot / c as f64).tanh();
                    }
                    if let Some(m) = &o.mask {
                        let idx = [b, h, i, j];
                        let mut flat = 0;
                        for (dim, i) in m.dims.iter().zip(idx) {
                            flat = flat * dim + if *dim == 1 { 0 } else { i };
                        }
                        dot += m.data[flat] as f64;
                    }
                    *x = dot;
                }
                let mx = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if mx == f64::NEG_INFINITY {
                    lse[row] = f32::NEG_INFINITY;
                    continue;
                }
                let w: Vec<f64> = sc.iter().map(|x| (x - mx).exp()).collect();
                let sum: f64 = w.iter().sum();
                lse[row] = (mx + sum.ln()) as f32;
                for c in 0..d {
                    let acc: f64 = (0..s.n_keys).map(|j| w[j] * v[(kvh * s.n_keys + j) * d + c] as f64).sum();
                    out[row * d + c] = (acc / sum) as f32;
                }
            }
        }
    }
    (out, lse)
}

fn max_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| if x == y { 0.0 } else { (x - y).abs() }).fold(0.0, f32::max)
}

fn check_case(s: AttentionShape, causal: bool, window: Option<usize>, softcap: Option<f32>, with_mask: bool) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (s.n_keys * 31 + s.n_queries * 7 + s.head_dim) as u64);
    let q = rng.vec(s.batch * s.q_heads * s.n_queries * s.head_dim, 2.0);
    let k = rng.vec(s.batch * s.kv_heads * s.n_keys * s.head_dim, 2.0);
    let v = rng.vec(s.batch * s.kv_heads * s.n_keys * s.head_dim, 1.0);
    // A per-(query, key) mask with some -inf, broadcast over batch and heads.
    let mask_data: Vec<f32> =
        (0..s.n_queries * s.n_keys).map(|t| if t % 7 == 3 { f32::NEG_INFINITY } else { rng.next() }).collect();
    let mask = with_mask.then_some(MaskView { data: &mask_data, dims: [1, 1, s.n_queries, s.n_keys] });
    for level in available_levels() {
        let opts = AttentionOptions { causal, window, softcap, mask, level: Some(level), ..Default::default() };
        let (want, want_lse) = naive(&s, &q, &k, &v, &opts);
        let mut out = vec![f32::NAN; want.len()];
        let mut lse = vec![f32::NAN; want_lse.len()];
        attention(&s, QueryData::F32(&q), KvData::F32(&k), KvData::F32(&v), &opts, &mut out, Some(&mut lse)).unwrap();
        let e = max_err(&out, &want);
        assert!(e <= 2e-5, "{s:?} causal={causal} window={window:?} cap={softcap:?} mask={with_mask} {level}: {e}");
        let e = max_err(&lse, &want_lse);
        assert!(e <= 1e-4, "lse {s:?} {level}: {e}");
    }
}

fn shape(
    batch: usize,
    q_heads: usize,
    kv_heads: usize,
    n_queries: usize,
    n_keys: usize,
    head_dim: usize,
) -> AttentionShape {
    AttentionShape { batch, q_heads, kv_heads, n_queries, n_keys, head_dim }
}

#[test]
fn matches_naive_reference_at_every_level() {
    for (s, causal, window, cap, mask) in [
        (shape(1, 1, 1, 1, 1, 1), false, None, None, false),
        (shape(2, 4, 2, 7, 13, 5), false, None, None, false),
        (shape(1, 8, 2, 33, 70, 64), true, None, None, false),
        (shape(1, 3, 1, 70, 40, 17), false, None, Some(5.0), true),
        (shape(2, 2, 2, 65, 130, 128), true, Some(20), None, true),
        (shape(1, 6, 3, 5, 200, 80), true, None, Some(30.0), false),
        (shape(1, 2, 1, 100, 100, 96), true, Some(1), None, false),
        // Nq > Nk, causal: the first rows see no key and must come out as zeros.
        (shape(1, 2, 2, 20, 6, 32), true, None, None, false),
    ] {
        check_case(s, causal, window, cap, mask);
    }
}

#[test]
fn split_decode_matches_reference() {
    fastquant::set_num_threads(2).unwrap();
    // One query, one kv head, many keys: fewer units than threads, so the keys are split.
    check_case(shape(1, 1, 1, 1, 3000, 64), false, None, None, false);
    check_case(shape(1, 4, 1, 1, 2500, 32), true, Some(1500), None, true);
}

#[test]
fn quantized_kv_is_close_to_dequantized_reference() {
    let s = shape(1, 4, 2, 9, 150, 64);
    let mut rng = Rng(7);
    let q = rng.vec(s.batch * s.q_heads * s.n_queries * s.head_dim, 2.0);
    let k = rng.vec(s.batch * s.kv_heads * s.n_keys * s.head_dim, 2.0);
    let v = rng.vec(s.batch * s.kv_heads * s.n_keys * s.head_dim, 1.0);
    for qtype in [QuantType::F16, QuantType::Q8_0, QuantType::Q4_0] {
        let enc = |x: &[f32]| {
            let mut b = vec![0u8; s.batch * s.kv_heads * s.n_keys * qtype.row_bytes(s.head_dim).unwrap()];
            quantize(qtype, FloatSlice::F32(x), s.head_dim, &mut b, &QuantizeOptions::default()).unwrap();
            let mut back = vec![0f32; x.len()];
            fastquant::dequantize(qtype, &b, s.head_dim, fastquant::FloatSliceMut::F32(&mut back), None).unwrap();
            (b, back)
        };
        let ((kb, kd), (vb, vd)) = (enc(&k), enc(&v));
        let opts = AttentionOptions { causal: true, ..Default::default() };
        let (want, _) = naive(&s, &q, &kd, &vd, &opts);
        for level in available_levels() {
            let opts = AttentionOptions { level: Some(level), ..opts };
            let mut out = vec![0f32; want.len()];
            let (kq, vq) = (KvData::Blocks { qtype, data: &kb }, KvData::Blocks { qtype, data: &vb });
            attention(&s, QueryData::F32(&q), kq, vq, &opts, &mut out, None).unwrap();
            // The same values as the dequantized reference: only f32 rounding differs.
            let e = max_err(&out, &want);
            assert!(e <= 2e-5, "{qtype:?} {level}: {e}");
        }
    }
}

/// Rows of `d` values of `x` encoded as `qtype` (Q8_0: `D / 32` blocks of 34 bytes; F16: 2 bytes a
/// value), and their dequantized values.
fn encoded_rows(qtype: QuantType, x: &[f32], d: usize) -> (Vec<u8>, Vec<f32>) {
    let mut b = vec![0u8; x.len() / d * qtype.row_bytes(d).unwrap()];
    quantize(qtype, FloatSlice::F32(x), d, &mut b, &QuantizeOptions::default()).unwrap();
    let mut back = vec![0f32; x.len()];
    fastquant::dequantize(qtype, &b, d, fastquant::FloatSliceMut::F32(&mut back), None).unwrap();
    (b, back)
}

fn q8_0_rows(x: &[f32], d: usize) -> (Vec<u8>, Vec<f32>) {
    encoded_rows(QuantType::Q8_0, x, d)
}

/// Decode (few query rows per unit) with F16 K/V reads the f16 rows directly (`qk_f16`, `pv_f16`):
/// no query rounding, so the result is the dequantized reference up to f32 rounding, at every level,
/// for head dims with and without a 16-wide tail, GQA groups of 1 to 8 rows and split keys.
#[test]
fn f16_decode_matches_dequantized_reference() {
    fastquant::set_num_threads(2).unwrap();
    for s in [
        shape(1, 8, 2, 1, 700, 128),
        shape(2, 4, 1, 2, 1500, 80),
        shape(1, 2, 2, 1, 33, 17),
        shape(1, 8, 1, 1, 90, 100),
        shape(1, 3, 3, 3, 1030, 64),
    ] {
        let d = s.head_dim;
        let mut rng = Rng(0xf16 ^ (s.n_keys as u64));
        let q = rng.vec(s.batch * s.q_heads * s.n_queries * d, 2.0);
        let (kb, kd) = encoded_rows(QuantType::F16, &rng.vec(s.batch * s.kv_heads * s.n_keys * d, 2.0), d);
        let (vb, vd) = encoded_rows(QuantType::F16, &rng.vec(s.batch * s.kv_heads * s.n_keys * d, 1.0), d);
        let kh: Vec<u16> = kb.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
        for causal in [false, true] {
            let opts = AttentionOptions { causal, ..Default::default() };
            let (want, _) = naive(&s, &q, &kd, &vd, &opts);
            for level in available_levels() {
                let opts = AttentionOptions { level: Some(level), ..opts };
                let mut out = vec![f32::NAN; want.len()];
                let vq = KvData::Blocks { qtype: QuantType::F16, data: &vb };
                attention(&s, QueryData::F32(&q), KvData::F16(&kh), vq, &opts, &mut out, None).unwrap();
                let e = max_err(&out, &want);
                assert!(e <= 2e-5, "{s:?} causal={causal} {level}: {e}");
            }
        }
    }
}

#[test]
fn f16_tile_kernels_agree_with_scalar() {
    let scalar = tile_kernels_for(fastquant::Level::Scalar).unwrap();
    let mut rng = Rng(4321);
    for level in available_levels() {
        let kern = tile_kernels_for(level).unwrap();
        for (rows, d, n) in
            [(1, 1, 1usize), (7, 33, 17), (4, 128, 16), (5, 80, 64), (8, 17, 5), (3, 256, 9), (2, 96, 3)]
        {
            let ld = n.next_multiple_of(16);
            let q = rng.vec(rows * d, 2.0);
            let (k16, _) = encoded_rows(QuantType::F16, &rng.vec(n * d, 2.0), d);
            let (mut sa, mut sb) = (vec![7f32; rows * ld], vec![7f32; rows * ld]);
            (scalar.qk_f16)(&q, rows, d, &k16, n, &mut sa, ld);
            (kern.qk_f16)(&q, rows, d, &k16, n, &mut sb, ld);
            assert!(max_err(&sa, &sb) <= 1e-5 * d as f32, "qk_f16 {level} {rows}x{d}x{n}");
            let dp = d.next_multiple_of(16);
            let (v16, _) = encoded_rows(QuantType::F16, &rng.vec(n * d, 1.0), d);
            let p = rng.vec(rows * ld, 1.0);
            let o0 = rng.vec(rows * dp, 1.0);
            let (mut oa, mut ob) = (o0.clone(), o0);
            (scalar.pv_f16)(&p, rows, ld, n, &v16, d, &mut oa, dp);
            (kern.pv_f16)(&p, rows, ld, n, &v16, d, &mut ob, dp);
            assert!(max_err(&oa, &ob) <= 1e-5 * n as f32, "pv_f16 {level} {rows}x{d}x{n}");
        }
    }
}

/// Decode (few query rows per unit) with Q8_0 keys quantizes the scaled query rows to Q8_0 as
/// ggml does and takes integer dots; Q8_0 values are read straight from their blocks. Beyond f32
/// rounding, the only extra error is the query rounding: each scaled query element moves by at
/// most half its block's step amax/127 (plus the f16 rounding of that step, < 2^-11 relative), so
/// a score moves by at most `delta = Σ_blocks (amax_b/254 + amax_b·2^-11) · Σ_{i∈b} |k_i|`; every
/// softmax weight then moves by a factor within e^{±2·delta}, so the output by at most
/// `(e^{2·delta} - 1) · max|v|`. That bound, computed from the data, is what this checks.
#[test]
fn q8_0_decode_is_within_the_query_rounding_bound() {
    fastquant::set_num_threads(2).unwrap();
    for s in [shape(1, 8, 2, 1, 700, 128), shape(2, 4, 1, 2, 1500, 64), shape(1, 2, 2, 1, 33, 96)] {
        let d = s.head_dim;
        let mut rng = Rng(0xdec0de ^ (s.n_keys as u64));
        let q = rng.vec(s.batch * s.q_heads * s.n_queries * d, 2.0);
        let k = rng.vec(s.batch * s.kv_heads * s.n_keys * d, 2.0);
        let v = rng.vec(s.batch * s.kv_heads * s.n_keys * d, 1.0);
        let ((kb, kd), (vb, vd)) = (q8_0_rows(&k, d), q8_0_rows(&v, d));
        let opts = AttentionOptions { causal: true, ..Default::default() };
        let (want, _) = naive(&s, &q, &kd, &vd, &opts);
        let scale = 1.0 / (d as f32).sqrt();
        let v_max = vd.iter().fold(0f32, |m, x| m.max(x.abs()));
        // The largest score shift over every (query row, key) pair of the same (batch, kv head).
        let mut delta = 0f32;
        let g = s.q_heads / s.kv_heads;
        for (qi, qrow) in q.chunks_exact(d).enumerate() {
            let head = qi / s.n_queries % s.q_heads;
            let bh = qi / (s.n_queries * s.q_heads) * s.kv_heads + head / g;
            for krow in kd[bh * s.n_keys * d..(bh + 1) * s.n_keys * d].chunks_exact(d) {
                let shift: f32 = qrow
                    .chunks_exact(32)
                    .zip(krow.chunks_exact(32))
                    .map(|(qb, kb)| {
                        let amax = qb.iter().fold(0f32, |m, x| m.max((x * scale).abs()));
                        (amax / 254.0 + amax / 2048.0) * kb.iter().map(|x| x.abs()).sum::<f32>()
                    })
                    .sum();
                delta = delta.max(shift);
            }
        }
        let bound = ((2.0 * delta).exp() - 1.0) * v_max + 2e-5;
        for level in available_levels() {
            let opts = AttentionOptions { level: Some(level), ..opts };
            let mut out = vec![f32::NAN; want.len()];
            let (kq, vq) = (
                KvData::Blocks { qtype: QuantType::Q8_0, data: &kb },
                KvData::Blocks { qtype: QuantType::Q8_0, data: &vb },
            );
            attention(&s, QueryData::F32(&q), kq, vq, &opts, &mut out, None).unwrap();
            let e = max_err(&out, &want);
            assert!(e <= bound, "{s:?} {level}: {e} > {bound}");
            // The query rounding is visible (the int8 path is taken), but far inside the bound.
            assert!(e > 2e-5, "{s:?} {level}: {e}: the Q8_0 decode path did not quantize the queries");
        }
    }
}

#[test]
fn q8_0_tile_kernels_agree_with_scalar() {
    let scalar = tile_kernels_for(fastquant::Level::Scalar).unwrap();
    let mut rng = Rng(1234);
    for level in available_levels() {
        let kern = tile_kernels_for(level).unwrap();
        for (rows, d, n) in
            [(1, 32, 1usize), (7, 96, 17), (4, 128, 16), (13, 256, 64), (64, 64, 50), (3, 160, 5), (6, 320, 9)]
        {
            let ld = n.next_multiple_of(16);
            let row_bytes = QuantType::Q8_0.row_bytes(d).unwrap();
            let (q8, _) = q8_0_rows(&rng.vec(rows * d, 2.0), d);
            let (mut k8, _) = q8_0_rows(&rng.vec(n * d, 2.0), d);
            k8[2] = 0x80; // a -128 code (a Q8_0 file may hold one) must still multiply exactly
            let (mut sa, mut sb) = (vec![7f32; rows * ld], vec![7f32; rows * ld]);
            (scalar.qk_q8)(&q8, rows, &k8, n, row_bytes, &mut sa, ld);
            (kern.qk_q8)(&q8, rows, &k8, n, row_bytes, &mut sb, ld);
            let s_max = sa.iter().fold(1f32, |m, x| m.max(x.abs()));
            assert!(max_err(&sa, &sb) <= 1e-6 * s_max * (d / 32) as f32, "qk_q8 {level} {rows}x{d}x{n}");
            if kern.level == fastquant::Level::Avx512Vnni {
                // Keys in lanes, exact i32 block dots, the reference's float order lane-wise: the
                // same bits (and the padding past n untouched).
                assert_eq!(sa, sb, "qk_q8 {level} {rows}x{d}x{n}");
            }
            let dp = d.next_multiple_of(16);
            let (v8, _) = q8_0_rows(&rng.vec(n * d, 1.0), d);
            let p = rng.vec(rows * ld, 1.0);
            let o0 = rng.vec(rows * dp, 1.0);
            let (mut oa, mut ob) = (o0.clone(), o0);
            (scalar.pv_q8)(&p, rows, ld, n, &v8, row_bytes, &mut oa, dp);
            (kern.pv_q8)(&p, rows, ld, n, &v8, row_bytes, &mut ob, dp);
            assert!(max_err(&oa, &ob) <= 1e-5 * n as f32, "pv_q8 {level} {rows}x{d}x{n}");
        }
    }
}

#[test]
fn tile_kernels_agree_with_scalar() {
    let scalar = tile_kernels_for(fastquant::Level::Scalar).unwrap();
    let mut rng = Rng(99);
    for level in available_levels() {
        let kern = tile_kernels_for(level).unwrap();
        for (rows, d, n) in [(1, 1, 1usize), (7, 33, 17), (13, 128, 64), (64, 80, 50), (3, 256, 64)] {
            let ld = n.next_multiple_of(16);
            let q = rng.vec(rows * d, 2.0);
            let k = rng.vec(n * d, 2.0);
            let (mut kt_a, mut kt_b) = (vec![0f32; d * ld], vec![0f32; d * ld]);
            (scalar.transpose)(&k, n, d, &mut kt_a, ld);
            (kern.transpose)(&k, n, d, &mut kt_b, ld);
            assert_eq!(kt_a, kt_b, "transpose {level}");
            let (mut sa, mut sb) = (vec![0f32; rows * ld], vec![0f32; rows * ld]);
            (scalar.qk)(&q, rows, d, &kt_a, ld, &mut sa);
            (kern.qk)(&q, rows, d, &kt_a, ld, &mut sb);
            assert!(max_err(&sa, &sb) <= 1e-5 * d as f32, "qk {level}");
            let dp = d.next_multiple_of(16);
            let v = rng.vec(n * dp, 1.0);
            let p = rng.vec(rows * ld, 1.0);
            let o0 = rng.vec(rows * dp, 1.0);
            let (mut oa, mut ob) = (o0.clone(), o0);
            (scalar.pv)(&p, rows, ld, n, &v, dp, &mut oa);
            (kern.pv)(&p, rows, ld, n, &v, dp, &mut ob);
            assert!(max_err(&oa, &ob) <= 1e-5 * n as f32, "pv {level}");
        }
        let mut x = rng.vec(77, 30.0);
        x[5] = f32::NEG_INFINITY;
        x.extend([-90.0, -200.0, 0.0, 1e-6, -1e-6]);
        assert_eq!((scalar.max)(&x), (kern.max)(&x));
        let m = (scalar.max)(&x);
        let (mut ea, mut eb) = (x.clone(), x.clone());
        let (sa, sb) = ((scalar.exp_sum)(&mut ea, m), (kern.exp_sum)(&mut eb, m));
        assert!((sa - sb).abs() <= 1e-6 * sa, "exp_sum {level}");
        for (a, b) in ea.iter().zip(&eb) {
            assert!((a - b).abs() <= 2e-7 * a.max(1e-30) + 1e-37, "exp {level}: {a} vs {b}");
        }
        assert_eq!(eb[5], 0.0, "exp(-inf) must be exactly 0 at {level}");
        let (mut ca, mut cb) = (x.clone(), x.clone());
        ca[5] = 3.0;
        cb[5] = 3.0;
        (scalar.softcap)(&mut ca, 20.0);
        (kern.softcap)(&mut cb, 20.0);
        assert!(max_err(&ca, &cb) <= 20.0 * 3e-7, "softcap {level}: {}", max_err(&ca, &cb));
    }
}

#[test]
fn bad_shapes_are_errors() {
    let s = shape(1, 3, 2, 2, 2, 4);
    let x = vec![0f32; 100];
    let mut out = vec![0f32; 24];
    let r = attention(
        &s,
        QueryData::F32(&x[..24]),
        KvData::F32(&x[..16]),
        KvData::F32(&x[..16]),
        &Default::default(),
        &mut out,
        None,
    );
    assert!(r.unwrap_err().to_string().contains("multiple of the number of key/value heads"));
    let s = shape(1, 2, 1, 2, 3, 4);
    let r = attention(
        &s,
        QueryData::F32(&x[..16]),
        KvData::F32(&x[..11]),
        KvData::F32(&x[..12]),
        &Default::default(),
        &mut out[..16],
        None,
    );
    assert!(r.unwrap_err().to_string().contains("key elements"));
    let blocks = vec![0u8; 100];
    let kq = KvData::Blocks { qtype: QuantType::Q8_0, data: &blocks };
    let r = attention(&s, QueryData::F32(&x[..16]), kq, kq, &Default::default(), &mut out[..16], None);
    assert!(r.unwrap_err().to_string().contains("block size"));
    // No keys at all: zeros, not NaN.
    let s = shape(1, 2, 1, 2, 0, 4);
    let mut out = vec![f32::NAN; 16];
    attention(&s, QueryData::F32(&x[..16]), KvData::F32(&[]), KvData::F32(&[]), &Default::default(), &mut out, None)
        .unwrap();
    assert!(out.iter().all(|v| *v == 0.0));
}
