"""Taking arrays from other libraries: one place that turns an argument into the numpy array the
core reads (or writes), without copying when the memory can be shared.

The rule (README, "Passing arrays from other libraries"):

* Anything that exports its memory is viewed, not copied: numpy arrays, objects with
  ``__array_interface__`` / ``__array_struct__``, buffer-protocol objects (``memoryview``,
  ``array.array``, ``bytes``/``bytearray``, ctypes arrays, ``mmap``), ``__dlpack__`` producers
  (torch CPU tensors, JAX, CuPy host arrays...) and, last, ``__array__`` (asked for a view first).
* When the memory cannot be used as it is (another dtype the entry converts, a non-native byte
  order, a non-contiguous or unaligned layout, an ``__array__`` that cannot give a view), the input
  is copied once and a :class:`~fastquant.errors.CopyWarning` says what was copied, why and how to
  avoid it.
* Silent by design: Python lists, tuples and scalars (they have no memory to share; converting them
  is the only way to use them), and conversions an entry documents as its computation (matmul
  widens 16-bit activations to the float32 its kernels read).
* An ``out=`` argument is never copied: one that cannot be written in place (read-only, another
  dtype, strided, unaligned) is an error, so a result can never land in a temporary.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from types import FrameType
from typing import Any, Iterable, Optional, Sequence, Tuple

import numpy as np

from .errors import CopyWarning, ShapeError

__all__ = ["as_input", "view_input", "ready_input", "as_output", "as_bytes"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# How dtypes are named in messages (bfloat16 comes from ml_dtypes, which users may not know).
_DTYPE_NAMES = {"bfloat16": "bfloat16 (ml_dtypes)"}


def _warn_copy(message: str) -> None:
    """Issues a CopyWarning attributed to the first caller outside the fastquant package (the
    depth of fastquant's own frames varies by entry point)."""
    level = 2  # stacklevel 2 names our caller, sys._getframe(1)
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        level += 1
        frame = frame.f_back
    warnings.warn(message, CopyWarning, stacklevel=level)


def _describe(obj: Any) -> str:
    kind = type(obj)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _has_buffer(obj: Any) -> bool:
    try:
        memoryview(obj).release()
        return True
    except TypeError:
        return False


def _view(obj: Any, what: str, sequence_dtype: Optional[np.dtype], kinds: str) -> np.ndarray:
    """``obj`` as a numpy array sharing its memory, or (for a Python sequence, when
    ``sequence_dtype`` is given) a new array of that dtype. ``kinds`` completes the TypeError."""
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, np.generic):
        return np.asarray(obj)  # a numpy scalar owns no shareable memory either
    if hasattr(obj, "__array_interface__") or hasattr(obj, "__array_struct__"):
        return np.asarray(obj)
    if _has_buffer(obj):
        # Through a memoryview so that bytes-likes become uint8 views (np.asarray(b"..") would
        # make a 0-d string array).
        return np.asarray(memoryview(obj))
    dlpack_error: Optional[Exception] = None
    if hasattr(obj, "__dlpack__"):
        try:
            return np.from_dlpack(obj)
        except (BufferError, TypeError, ValueError, RuntimeError) as exc:
            dlpack_error = exc  # e.g. a dtype numpy's DLPack import lacks: try __array__ next
    if hasattr(obj, "__array__"):
        with warnings.catch_warnings():
            # numpy 2 warns about __array__ methods written before its `copy` keyword existed.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return np.asarray(obj, copy=False)
            except ValueError:
                arr = np.asarray(obj)
        _warn_copy(
            f"{what}: copied the {_describe(obj)} ({arr.dtype}, shape {arr.shape}, {arr.nbytes} bytes) because "
            f"its __array__ cannot return a view of its memory; pass a numpy array, or an object exporting "
            f"__dlpack__ or the buffer protocol, to avoid the copy"
        )
        return arr
    if dlpack_error is not None:
        raise TypeError(f"{what}: cannot import this {_describe(obj)} through __dlpack__: {dlpack_error}") from None
    if sequence_dtype is not None and isinstance(obj, (list, tuple, int, float)):
        return np.asarray(obj, dtype=sequence_dtype)  # no memory to share: converting is the only way
    raise TypeError(f"{what} must be {kinds}, not {_describe(obj)}")


def _dtype_names(dtypes: Sequence[np.dtype]) -> str:
    names = [_DTYPE_NAMES.get(d.name, d.name) for d in dtypes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def view_input(
    obj: Any,
    dtypes: Iterable[Any],
    *,
    what: str,
    sequences: bool = True,
    convert: Optional[Any] = None,
    kinds: str = "a numpy array or an array-like exporting its memory",
) -> np.ndarray:
    """``obj``'s memory as a numpy array, not copied (except a Python sequence, converted to
    ``dtypes[0]``, and an ``__array__`` that cannot give a view, announced), after checking that :func:`ready_input` can use its dtype: a TypeError comes
    here, before any copy. Lets a caller check shapes before :func:`ready_input` copies, or work
    on pieces of a strided array that are each contiguous. Arguments as :func:`as_input`."""
    allowed = tuple(np.dtype(d) for d in dtypes)
    arr = _view(obj, what, allowed[0] if sequences else None, kinds)
    _target_dtype(arr, allowed, what, convert)
    return arr


def _target_dtype(arr: np.ndarray, allowed: Tuple[np.dtype, ...], what: str, convert: Optional[Any]) -> Tuple[np.dtype, str]:
    """The dtype ``arr`` is used as, and why that needs a copy ("" when it does not)."""
    if arr.dtype in allowed:
        return arr.dtype, ""
    native = arr.dtype.newbyteorder("=")
    if native in allowed:
        order = "big" if arr.dtype.byteorder == ">" else "little"
        return native, f"it is {order}-endian and the kernels read this machine's {sys.byteorder}-endian order"
    if convert is not None and arr.dtype.kind == "f":
        target = np.dtype(convert)
        return target, f"it is {arr.dtype} and {what} is used as {target}"
    raise TypeError(
        f"{what} must be {_dtype_names(allowed)}, not {arr.dtype}; convert first, e.g. x.astype(np.{allowed[0].name})"
    )


def ready_input(arr: np.ndarray, dtypes: Iterable[Any], *, what: str, convert: Optional[Any] = None) -> np.ndarray:
    """``arr`` (from :func:`view_input`) itself when it is C-contiguous, aligned, native-byte-order
    and of an allowed dtype; otherwise one copy that is, announced by a CopyWarning."""
    target, dtype_reason = _target_dtype(arr, tuple(np.dtype(d) for d in dtypes), what, convert)
    reasons = [dtype_reason] if dtype_reason else []
    if not arr.flags.c_contiguous:
        reasons.append(f"it is not C-contiguous (strides {arr.strides})")
    elif not arr.flags.aligned:
        reasons.append("its data is not aligned to its element size")
    if not reasons:
        return arr
    _warn_copy(
        f"{what}: copied the array ({arr.dtype}, shape {arr.shape}, {arr.nbytes} bytes) because "
        f"{' and '.join(reasons)}; pass a C-contiguous {target} array in native byte order "
        f"(np.ascontiguousarray(x, dtype=np.{target.name})) to avoid the copy"
    )
    return np.array(arr, dtype=target, order="C", copy=True)  # a new allocation is aligned


def as_input(
    obj: Any,
    dtypes: Iterable[Any],
    *,
    what: str,
    sequences: bool = True,
    convert: Optional[Any] = None,
    kinds: str = "a numpy array or an array-like exporting its memory",
) -> np.ndarray:
    """``obj`` as a C-contiguous, aligned, native-byte-order numpy array of one of ``dtypes``:
    a view of its memory when that already fits, else one copy announced by a CopyWarning.

    ``what`` names the argument in messages. ``sequences`` accepts Python lists, tuples and scalars
    (converted silently to ``dtypes[0]``). ``convert``: a dtype that floating-point inputs of other
    dtypes are converted to (with a warning); without it, and for other kinds (ints, bools),
    another dtype is a TypeError. ``kinds`` says what the argument may be, for the TypeError of an
    unusable object.
    """
    dtypes = tuple(dtypes)
    if isinstance(obj, np.ndarray) and obj.dtype in dtypes and obj.flags.c_contiguous and obj.flags.aligned:
        return obj  # the common case, first: per-token calls should not pay for the general path
    arr = view_input(obj, dtypes, what=what, sequences=sequences, convert=convert, kinds=kinds)
    return ready_input(arr, dtypes, what=what, convert=convert)


def as_output(obj: Any, dtype: Any, shape: Tuple[int, ...], *, what: str = "out") -> np.ndarray:
    """A writeable numpy view of ``obj`` with ``shape`` and ``dtype`` that results are written
    through, or ShapeError (a ValueError): an ``out=`` is never replaced by a copy.

    ``obj`` may be any array-like exporting writeable memory (numpy array, memoryview of a
    bytearray, array.array, ctypes array, ``__array_interface__``, ``__dlpack__``); a 1-D buffer
    with exactly as many elements as ``shape`` is accepted and viewed with that shape.
    """
    dtype = np.dtype(dtype)
    want = f"{what} must be a writeable, C-contiguous, aligned {dtype} array of shape {shape}"
    try:
        arr = _view(obj, what, None, "an array-like exporting writeable memory")
    except TypeError:
        raise ShapeError(f"{want} (or an array-like exporting such memory), not a {_describe(obj)}") from None
    if arr.dtype != dtype:
        raise ShapeError(f"{want}; this one is {arr.dtype} (a converted copy would not receive the result)")
    if tuple(arr.shape) != tuple(shape) and not (arr.ndim == 1 and arr.size == math.prod(shape)):
        raise ShapeError(f"{want}; this one has shape {arr.shape}")
    if not arr.flags.writeable:
        raise ShapeError(
            f"{want}; this {_describe(obj)} is read-only, so it cannot be written in place "
            "(fastquant never writes a result into a copy)"
        )
    if not arr.flags.c_contiguous:
        raise ShapeError(f"{want}; this one is strided (strides {arr.strides})")
    if not arr.flags.aligned:
        raise ShapeError(f"{want}; this one's data is not aligned to {dtype.itemsize} bytes")
    return arr if arr.shape == tuple(shape) else arr.reshape(shape)  # contiguous, so a view


def as_bytes(obj: Any, *, what: str, copy: bool = True) -> np.ndarray:
    """The raw bytes of ``obj`` (any buffer, numpy array of any dtype, ``__dlpack__`` producer...)
    as a flat uint8 view. A non-contiguous array is copied with a CopyWarning, or with
    ``copy=False`` refused (ShapeError)."""
    arr = _view(obj, what, None, "a bytes-like object or an array-like exporting its memory")
    if not arr.flags.c_contiguous:
        if not copy:
            raise ShapeError(
                f"{what}: the block data must be contiguous (strides {arr.strides}); "
                "np.ascontiguousarray(data) makes a contiguous copy"
            )
        _warn_copy(
            f"{what}: copied the {_describe(obj)} ({arr.dtype}, shape {arr.shape}, {arr.nbytes} bytes) because "
            f"it is not C-contiguous (strides {arr.strides}); pass contiguous data to avoid the copy"
        )
        arr = np.ascontiguousarray(arr)
    return arr.reshape(-1).view(np.uint8)
