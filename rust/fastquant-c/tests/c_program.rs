//! Builds `tests/c/test_fastquant.c` with gcc against `include/fastquant.h` and the static library
//! cargo built for this test run, and runs it. The GGUF file it reads is written here by the Rust
//! writer, into a scratch directory under cargo's target tmp dir (the C program writes only there).

use std::path::{Path, PathBuf};
use std::process::Command;

use fastquant::gguf::{GgufWriter, TensorSpec, Value, ValueType};
use fastquant::{quantize, FloatSlice, QuantType, QuantizeOptions};

/// The static library cargo built for this test run: beside this test binary in
/// `target/<profile>/deps/` (the copy in `target/<profile>/` is only refreshed by `cargo build`).
fn static_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent().expect("target/<profile>/deps").join("libfastquant_c.a")
}

/// The weight values the C program recomputes (`weight_value` there): exact in binary.
fn weight_value(i: usize) -> f32 {
    ((i % 17) as i32 - 8) as f32 / 4.0
}

fn write_fixture(path: &Path) {
    let w: Vec<f32> = (0..256).map(weight_value).collect();
    let mut q = vec![0u8; 4 * QuantType::Q8_0.row_bytes(64).unwrap()];
    quantize(QuantType::Q8_0, FloatSlice::F32(&w), 64, &mut q, &QuantizeOptions::default()).unwrap();
    let metadata = vec![
        ("general.name".to_string(), Value::String("cabi-test".into())),
        ("test.answer".to_string(), Value::U32(42)),
        ("test.pi".to_string(), Value::F32(3.25)),
    ];
    let tensors = [TensorSpec { name: "w".into(), dims: vec![64, 4], qtype: QuantType::Q8_0 }];
    let mut writer = GgufWriter::create(path, &metadata, &tensors).unwrap();
    writer.write_tensor("w", &q).unwrap();
    writer.finish().unwrap();
}

#[test]
fn c_program_passes() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fastquant-c-test-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let gguf = scratch.join("fixture.gguf");
    write_fixture(&gguf);

    let lib = static_library();
    assert!(lib.exists(), "{} missing: cargo builds it with the crate's lib target", lib.display());
    let exe = scratch.join("test_fastquant");
    let gcc = Command::new(std::env::var("CC").unwrap_or_else(|_| "gcc".into()))
        .args(["-std=c11", "-O1", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/test_fastquant.c"))
        .arg(&lib)
        // What the Rust standard library needs from libc on Linux (`rustc --print native-static-libs`).
        .args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"])
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("gcc runs (the C ABI test needs a C compiler)");
    assert!(gcc.status.success(), "gcc failed:\n{}", String::from_utf8_lossy(&gcc.stderr));

    let run = Command::new(&exe).arg(&scratch).arg(&gguf).output().expect("the C test runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "C test failed ({}):\n{stdout}\n{stderr}", run.status);
    assert!(stdout.contains("all C ABI tests passed"), "{stdout}");
    print!("{stdout}");
    check_written_by_c(&scratch);
    std::fs::remove_dir_all(&scratch).ok();
}

/// What the C program's `test_gguf_writer` wrote, read with the Rust reader (array values the C
/// reader does not expose), and no temporary file left by its failed and abandoned writers.
fn check_written_by_c(scratch: &Path) {
    let f = fastquant::gguf::GgufFile::open(scratch.join("written.gguf")).expect("the C-written file opens");
    let get = |key: &str| f.header.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(get("cabi.ids"), Some(Value::Array(ValueType::I32, [3, 1, 4, 1].map(Value::I32).to_vec())));
    let tokens = ["<s>", "hello", "world"].map(|t| Value::String(t.into())).to_vec();
    assert_eq!(get("tokenizer.ggml.tokens"), Some(Value::Array(ValueType::String, tokens)));
    assert_eq!(get("cabi.flag"), Some(Value::Bool(true)));
    assert_eq!(get("cabi.offset"), Some(Value::I64(-7)));
    assert_eq!(get("cabi.eps"), Some(Value::F32(1e-5)));
    let mut left: Vec<String> =
        std::fs::read_dir(scratch).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert!(!left.iter().any(|n| n.ends_with(".tmp") || n.starts_with("aborted")), "left behind: {left:?}");
}
