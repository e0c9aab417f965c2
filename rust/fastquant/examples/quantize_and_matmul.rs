//! fastquant from Rust, end to end: quantize a weight matrix to Q4_K, check the dequantized values,
//! multiply activations by the quantized weight without dequantizing it, then store the weight in a
//! GGUF file and use it straight from the memory-mapped file.
//!
//! Run with `cargo run --release -p fastquant --example quantize_and_matmul` (`cargo test` builds it).

use fastquant::gguf::{GgufFile, GgufWriter, TensorSpec, Value};
use fastquant::matmul::{matmul, MatmulWeight};
use fastquant::{dequantize, quantize, FloatSlice, FloatSliceMut, QuantType, QuantizeOptions};

fn main() -> fastquant::Result<()> {
    // A weight of N = 64 output rows by K = 512 inputs, row-major as GGUF stores it.
    let (n, k, m) = (64usize, 512usize, 4usize);
    let weight: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
    let x: Vec<f32> = (0..m * k).map(|i| (i * 104_729 % 997) as f32 / 498.5 - 1.0).collect();

    // 1. Quantize: rows * row_bytes(K) bytes, the same bytes ggml's ggml_quantize_chunk writes.
    let qtype = QuantType::Q4_K;
    let mut packed = vec![0u8; n * qtype.row_bytes(k)?];
    quantize(qtype, FloatSlice::F32(&weight), k, &mut packed, &QuantizeOptions::default())?;
    println!(
        "{qtype}: {} floats -> {} bytes ({:.2} bits per weight), SIMD level {}, {} threads",
        weight.len(),
        packed.len(),
        qtype.bits_per_weight(),
        fastquant::simd::active_level()?,
        fastquant::num_threads()
    );

    // 2. Dequantize and measure the quantization error.
    let mut restored = vec![0f32; n * k];
    dequantize(qtype, &packed, k, FloatSliceMut::F32(&mut restored), None)?;
    let rms = |v: &[f32]| (v.iter().map(|a| a * a).sum::<f32>() / v.len() as f32).sqrt();
    let error: Vec<f32> = weight.iter().zip(&restored).map(|(a, b)| a - b).collect();
    println!("relative RMS error of the weight: {:.4}", rms(&error) / rms(&weight));

    // 3. out = x @ dequantize(w)^T straight from the packed bytes, next to the float product.
    let w = MatmulWeight { data: &packed, qtype, rows: n, k };
    let mut out = vec![0f32; m * n];
    matmul(&w, &x, &mut out, None)?;
    let reference: Vec<f32> = (0..m * n)
        .map(|i| {
            let (row, col) = (i / n, i % n);
            x[row * k..(row + 1) * k].iter().zip(&restored[col * k..(col + 1) * k]).map(|(a, b)| a * b).sum()
        })
        .collect();
    let diff: Vec<f32> = out.iter().zip(&reference).map(|(a, b)| a - b).collect();
    println!("matmul [{m}x{k}] x [{n}x{k}]^T: relative RMS difference to f32 {:.5}", rms(&diff) / rms(&reference));

    // 4. Store the weight in a GGUF file (written atomically), then map it and multiply again.
    let path = std::env::temp_dir().join(format!("fastquant-example-{}.gguf", std::process::id()));
    let metadata = vec![("general.name".to_string(), Value::String("example".into()))];
    // GGUF dimensions are in ggml order: the row length first.
    let spec = TensorSpec { name: "blk.0.ffn_up.weight".into(), dims: vec![k as u64, n as u64], qtype };
    let mut writer = GgufWriter::create(&path, &metadata, std::slice::from_ref(&spec))?;
    writer.write_tensor(&spec.name, &packed)?;
    writer.finish()?;

    let file = GgufFile::open(&path)?;
    let name = file.header.get("general.name").and_then(Value::as_str).unwrap_or("?");
    let info = &file.header.tensors[0];
    println!("{}: model '{name}', tensor '{}' {} shape {:?}", path.display(), info.name, info.qtype, info.shape());
    let mapped = MatmulWeight { data: file.tensor_data(0), qtype: info.qtype, rows: info.dims[1] as usize, k };
    let mut out_from_file = vec![0f32; m * n];
    matmul(&mapped, &x, &mut out_from_file, None)?;
    assert_eq!(out, out_from_file, "the mapped tensor is the same weight");
    println!("matmul on the memory-mapped tensor gives the same {} values", out_from_file.len());
    drop(file);
    std::fs::remove_file(&path).map_err(|e| fastquant::Error::Io(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(())
}
