"""The exceptions fastquant raises.

Every error is a :class:`FastquantError`; most are also a built-in exception of the matching kind,
so ``except ValueError`` keeps working for callers that do not know fastquant's classes.
"""

from __future__ import annotations

__all__ = [
    "FastquantError",
    "ShapeError",
    "QuantTypeError",
    "NonFiniteError",
    "UnsupportedError",
    "SimdError",
    "GGUFError",
    "InvalidArgumentError",
    "CopyWarning",
]


class FastquantError(Exception):
    """Base class of every fastquant error."""


class ShapeError(FastquantError, ValueError):
    """A shape, length or buffer size does not fit (e.g. a row length that is not a multiple of
    the block size)."""


class QuantTypeError(FastquantError, ValueError):
    """An unknown quantization type name or ggml type id."""


class NonFiniteError(FastquantError, ValueError):
    """The input holds NaN or ±Inf. ``index`` is the flat index of the first bad element and
    ``value`` its value."""

    def __init__(self, message: str, index: int = -1, value: float = float("nan")) -> None:
        super().__init__(message)
        self.index = index
        self.value = value


class UnsupportedError(FastquantError, NotImplementedError):
    """A known ggml type, or an option, that fastquant cannot handle yet."""


class SimdError(FastquantError, RuntimeError):
    """An unknown SIMD level, or one this CPU does not have."""


class GGUFError(FastquantError, ValueError):
    """A GGUF file that is malformed, truncated or hostile; the message names the field and the
    byte offset."""


class InvalidArgumentError(FastquantError, ValueError):
    """An argument that is wrong in a way no more specific class covers (a thread count of 0, a
    tensor written out of order, ...)."""


class CopyWarning(UserWarning):
    """An input was copied because its memory could not be used as it is (another dtype, a
    non-native byte order, a non-contiguous or unaligned layout). The message names the argument,
    what was copied, why, and how to pass it without a copy. ``out=`` arguments are never copied
    (that is an error instead). Silence it with ``warnings.simplefilter("ignore", CopyWarning)``,
    or make it an error to find every copy in an engine."""
