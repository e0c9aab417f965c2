//! The K-quant super-block formats (QK_K = 256 elements per block).
//!
//! Ports of ggml's `quantize_row_*_ref` (plain path), `quantize_row_*_impl` (importance-weighted
//! path) and `dequantize_row_*` from `ggml-quants.c`. A K-quant block splits its 256 elements into
//! sub-blocks of 16 or 32 with their own small integer scale (and, for the "min" types, a small
//! integer minimum), which are in turn quantized against one or two fp16 super-scales.
//!
//! [`search`] holds ggml's shared scale searches (`make_qx_quants`, `make_qkx2_quants`, ...) that
//! the K-quants, and the importance-weighted legacy quantizers, are built from. They keep ggml's
//! exact float operation order (no FMA, left-to-right sums), so every caller gives ggml's bytes.

pub mod q2_k;
pub mod q3_k;
pub mod q4_k;
pub mod q5_k;
pub mod q6_k;
pub mod q8_k;
pub mod search;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_k::BlockQ4K;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_k::BlockQ8K;

/// Elements per K-quant super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;

/// Bytes of packed 6-bit scales and mins in a Q4_K / Q5_K block (ggml's `K_SCALE_SIZE`).
pub const K_SCALE_SIZE: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{dequantize_row_ref, quantize_row_ref, quantize_rows_imatrix_ref, BlockFormat};
    use bytemuck::Zeroable;

    fn ramp(n: usize) -> Vec<f32> {
        // ggml's test-quantize-fns generator.
        (0..n).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect()
    }

    fn round_trip<B: BlockFormat>(x: &[f32], qw: Option<&[f32]>) -> Vec<f32> {
        let mut bytes = vec![0u8; x.len() / B::ELEMS * std::mem::size_of::<B>()];
        match qw {
            None => quantize_row_ref::<B>(x, &mut bytes),
            Some(qw) => quantize_rows_imatrix_ref::<B>(x, &mut bytes, x.len(), qw),
        }
        let mut y = vec![0f32; x.len()];
        dequantize_row_ref::<B>(&bytes, &mut y);
        y
    }

    fn rmse(x: &[f32], y: &[f32]) -> f32 {
        (x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn more_bits_give_less_error_and_errors_are_near_rounding_noise() {
        let x = ramp(4096);
        let e4 = rmse(&x, &round_trip::<BlockQ4K>(&x, None));
        let e5 = rmse(&x, &round_trip::<BlockQ5K>(&x, None));
        let e6 = rmse(&x, &round_trip::<BlockQ6K>(&x, None));
        let e8 = rmse(&x, &round_trip::<BlockQ8K>(&x, None));
        assert!(e8 < e6 && e6 < e5 && e5 < e4, "{e8} {e6} {e5} {e4}");
        // the values span 4.0: uniform rounding noise of 15 steps is 4/15/sqrt(12)
        assert!(e4 < 4.0 / 15.0 / 12f32.sqrt(), "{e4}");
    }

    #[test]
    fn weighted_paths_round_trip_and_zero_blocks_stay_zero() {
        let x = ramp(512);
        let qw: Vec<f32> = (0..512).map(|i| 1.0 + (i % 7) as f32).collect();
        for (e, name) in [
            (rmse(&x, &round_trip::<BlockQ4K>(&x, Some(&qw))), "Q4_K"),
            (rmse(&x, &round_trip::<BlockQ5K>(&x, Some(&qw))), "Q5_K"),
            (rmse(&x, &round_trip::<BlockQ6K>(&x, Some(&qw))), "Q6_K"),
        ] {
            assert!(e < 0.1, "{name}: {e}");
        }
        let z = vec![0f32; 256];
        assert!(round_trip::<BlockQ4K>(&z, None).iter().all(|&v| v == 0.0));
        assert!(round_trip::<BlockQ6K>(&z, Some(&qw[..256])).iter().all(|&v| v == 0.0));
        assert!(round_trip::<BlockQ8K>(&z, None).iter().all(|&v| v == 0.0));
    }

    #[test]
    fn q8_k_bsums_are_the_sums_of_16_codes() {
        let x = ramp(256);
        let mut b = BlockQ8K::zeroed();
        BlockQ8K::quantize_block(&x, &mut b);
        for j in 0..16 {
            let sum: i32 = b.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
            assert_eq!(i16::from_le_bytes([b.bsums[2 * j], b.bsums[2 * j + 1]]) as i32, sum);
        }
        assert_eq!(b.qs.iter().map(|q| q.unsigned_abs()).max(), Some(127));
    }
}
