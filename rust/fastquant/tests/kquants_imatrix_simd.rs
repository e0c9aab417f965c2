//! The importance-weighted K-quant kernels (`quantize_imatrix` of each SIMD level) against the
//! scalar `quantize_row_*_impl` ports, block by block: random imatrices with zeros, tiny, huge
//! and negative weights, on data whose sub-blocks each draw their own shape and scale (so the
//! lanes of one vector take different branches of the searches), rows of odd and even block
//! counts, several rows per call, and non-finite data or weights (the scalar fallbacks).

use fastquant::formats::scalar_imatrix_quantizer;
use fastquant::simd::{codec_for, Level};
use fastquant::QuantType;

const TYPES: [QuantType; 5] = [QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K];

/// A counter-based generator (splitmix64 of a running counter): reproducible, no dependency.
struct Source(u64);

impl Source {
    fn bits(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.bits() % n as u64) as usize
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.bits() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Roughly standard normal (sum of 12 uniforms).
    fn gauss(&mut self) -> f32 {
        (0..12).map(|_| self.unit()).sum::<f32>() - 6.0
    }
    /// A scale: 1, a power of two, a power of ten from 1e-30 to 1e30, or an ordinary value.
    fn scale(&mut self) -> f32 {
        match self.pick(4) {
            0 => 1.0,
            1 => 2f32.powi(self.pick(40) as i32 - 20),
            2 => 10f32.powi(self.pick(61) as i32 - 30),
            _ => 0.1 + 3.0 * self.unit(),
        }
    }
}

/// `n` values in 16-element groups of many shapes: zeros, signed zeros, constants, one sign only,
/// values on the rounding grid, a lone outlier, sparse, heavy-tailed (Student-t-like), normal.
fn data(src: &mut Source, n: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(n);
    while x.len() < n {
        let s = src.scale();
        let g: Vec<f32> = match src.pick(11) {
            0 => vec![0.0; 16],
            1 => vec![-0.0; 16],
            2 => vec![s; 16],
            3 => (0..16).map(|_| s * (1.0 + src.unit())).collect(),
            4 => (0..16).map(|_| -s * src.unit()).collect(),
            5 => (0..16).map(|_| s * (src.pick(31) as f32 - 15.0) / 15.0).collect(),
            6 => {
                let mut g: Vec<f32> = (0..16).map(|_| s * 0.01 * src.gauss()).collect();
                g[src.pick(16)] = if src.pick(2) == 0 { 100.0 * s } else { -100.0 * s };
                g
            }
            7 => (0..16).map(|_| if src.pick(3) == 0 { 0.0 } else { s * src.gauss() }).collect(),
            8 => (0..16).map(|_| s * src.gauss() / (0.05 + src.unit())).collect(),
            _ => (0..16).map(|_| s * src.gauss()).collect(),
        };
        x.extend_from_slice(&g);
    }
    x
}

/// An imatrix of `n` weights in one of several styles: llama.cpp-like (positive, log-normal),
/// with runs of zeros, all zero, with tiny or huge entries, with negative entries, or constant.
fn imatrix(src: &mut Source, n: usize) -> Vec<f32> {
    let style = src.pick(7);
    (0..n)
        .map(|i| {
            let typical = (2.0 * src.gauss()).exp();
            match style {
                0 => typical,
                1 => {
                    if (i / 16 + src.pick(2)).is_multiple_of(3) {
                        0.0
                    } else {
                        typical
                    }
                }
                2 => 0.0,
                3 => match src.pick(8) {
                    0 => 1e-30,
                    1 => 1e30,
                    2 => f32::MIN_POSITIVE / 4.0,
                    3 => 3e38,
                    _ => typical,
                },
                4 => {
                    if src.pick(5) == 0 {
                        -typical
                    } else {
                        typical
                    }
                }
                5 => 1.0,
                _ => typical * src.scale(),
            }
        })
        .collect()
}

/// Every level this CPU has against the scalar reference, block by block.
fn check(qtype: QuantType, x: &[f32], n_per_row: usize, qw: &[f32]) {
    let reference = scalar_imatrix_quantizer(qtype).expect("a scalar imatrix quantizer");
    let block_bytes = qtype.block_bytes();
    let bytes = x.len() / 256 * block_bytes;
    let mut want = vec![0u8; bytes];
    reference(x, &mut want, n_per_row, qw);
    for level in Level::ALL {
        let Some(codec) = codec_for(qtype, level).expect("a codec") else { continue };
        let mut got = vec![0xa5u8; bytes];
        (codec.quantize_imatrix.expect("an imatrix quantizer"))(x, &mut got, n_per_row, qw);
        for (b, (w, g)) in want.chunks(block_bytes).zip(got.chunks(block_bytes)).enumerate() {
            let col = (256 * b) % n_per_row;
            assert_eq!(
                w,
                g,
                "{} at {level:?} block {b}: input {:?} weights {:?}",
                qtype.name(),
                &x[256 * b..256 * b + 256],
                &qw[col..col + 256]
            );
        }
    }
}

#[test]
fn this_cpu_has_an_imatrix_kernel_above_scalar() {
    // Without one, the comparisons below would compare the scalar code with itself.
    for qtype in TYPES {
        for level in [Level::Avx2, Level::Avx512] {
            if let Some(codec) = codec_for(qtype, level).expect("a codec") {
                assert_eq!(codec.quantize_imatrix_level, level, "{}", qtype.name());
            }
        }
    }
}

#[test]
fn random_rows_and_weights_match_the_scalar_reference() {
    let mut src = Source(0x5eed_0001);
    for qtype in TYPES {
        for round in 0..250 {
            // 1, 2, 3, 5 and 16 blocks per row: odd counts leave a block to pair with itself
            let n_per_row = 256 * [1, 2, 3, 5, 16][round % 5];
            let rows = 1 + src.pick(3);
            let x = data(&mut src, rows * n_per_row);
            let qw = imatrix(&mut src, n_per_row);
            check(qtype, &x, n_per_row, &qw);
        }
    }
}

#[test]
fn zero_and_constant_data_and_weights() {
    let mut src = Source(99);
    for qtype in TYPES {
        for x in [vec![0.0; 1024], vec![-0.0; 1024], vec![1.5; 1024], vec![-3e-20; 1024]] {
            for qw in [vec![0.0; 512], vec![1.0; 512], imatrix(&mut src, 512)] {
                check(qtype, &x, 512, &qw);
            }
        }
    }
}

#[test]
fn non_finite_data_or_weights_take_the_scalar_path() {
    let mut src = Source(7);
    for qtype in TYPES {
        // 3 blocks a row: pairs and a single block; 4: one full group of the Q6_K kernel.
        for (special, n_per_row) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX]
            .into_iter()
            .flat_map(|s| [(s, 768), (s, 1024)])
        {
            let mut x = data(&mut src, 2 * n_per_row);
            let qw = imatrix(&mut src, n_per_row);
            let at = src.pick(x.len());
            x[at] = special;
            check(qtype, &x, n_per_row, &qw);
            let x = data(&mut src, 2 * n_per_row);
            let mut qw = imatrix(&mut src, n_per_row);
            qw[src.pick(n_per_row)] = special;
            check(qtype, &x, n_per_row, &qw);
        }
    }
}
