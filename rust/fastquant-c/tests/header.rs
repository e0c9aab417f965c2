//! `include/fastquant.h` must be what cbindgen makes of the current source. It is checked in so C
//! users need no Rust tooling; this test regenerates it and fails on any difference
//! (`FASTQUANT_BLESS=1` rewrites the file instead).

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::generate_with_config(crate_dir, config).expect("cbindgen generates the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("the header is UTF-8");
    let path = crate_dir.join("include/fastquant.h");
    if std::env::var_os("FASTQUANT_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/fastquant.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is stale: run `FASTQUANT_BLESS=1 cargo test -p fastquant-c --test header` and commit it",
        path.display()
    );
}
