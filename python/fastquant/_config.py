"""Process-wide settings: which SIMD kernels run and how many threads they use."""

from __future__ import annotations

import contextlib
import platform
from typing import Iterator, List, Optional

from . import _core

__all__ = [
    "simd_level",
    "detected_simd_level",
    "available_simd_levels",
    "set_simd_level",
    "simd_override",
    "get_num_threads",
    "set_num_threads",
    "show_config",
]


def simd_level() -> str:
    """The SIMD level kernels run at: ``"scalar"``, ``"avx2"``, ``"avx512"`` or ``"avx512vnni"``.

    The best level the CPU supports, unless ``FASTQUANT_SIMD`` or :func:`set_simd_level` caps it.
    Raises :class:`~fastquant.errors.SimdError` if ``FASTQUANT_SIMD`` asks for a level this CPU
    lacks or names none.
    """
    return _core.simd_level()


def detected_simd_level() -> str:
    """The best SIMD level this CPU supports, whatever the override."""
    return _core.detected_simd_level()


def available_simd_levels() -> List[str]:
    """Every SIMD level this CPU can run, lowest first (tests run each of them)."""
    return list(_core.available_simd_levels())


def set_simd_level(level: Optional[str]) -> None:
    """Forces a SIMD level for the whole process; ``None`` goes back to the default."""
    _core.set_simd_level(level)


@contextlib.contextmanager
def simd_override(level: Optional[str]) -> Iterator[None]:
    """``with fastquant.simd_override("avx2"): ...`` runs the block at that level, then restores
    the default (process-wide: do not use it concurrently from several threads)."""
    set_simd_level(level)
    try:
        yield
    finally:
        set_simd_level(None)


def get_num_threads() -> int:
    """Threads fastquant's kernels use (``FASTQUANT_NUM_THREADS``, else the number of CPUs)."""
    return _core.num_threads()


def set_num_threads(n: int) -> None:
    """Sets the number of threads fastquant's kernels use (at least 1)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError("the number of threads must be an int")
    if n < 1:
        from .errors import FastquantError

        raise FastquantError("the number of threads must be at least 1")
    _core.set_num_threads(n)


def show_config() -> str:
    """A short report of the version, CPU features in use and thread count (also printed)."""
    lines = [
        f"fastquant {_core.__version__}",
        f"machine: {platform.machine()} {platform.processor() or ''}".rstrip(),
        f"simd: {simd_level()} (detected {detected_simd_level()}; available {', '.join(available_simd_levels())})",
        f"threads: {get_num_threads()}",
    ]
    text = "\n".join(lines)
    print(text)
    return text
