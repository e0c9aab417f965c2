"""The hand-written stub of the native module must match the module (mypy's stubtest)."""

import subprocess
import sys

import pytest


def test_core_stub_matches_the_native_module():
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "fastquant._core"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
