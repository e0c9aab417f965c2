"""`QuantType`: every ggml tensor type, with the facts of ggml's type table."""

from __future__ import annotations

import enum
from typing import Union

from . import _core
from .errors import QuantTypeError

__all__ = ["QuantType", "QuantTypeLike", "as_quant_type"]

# (id, name, block_elems, block_bytes, can_quantize, can_dequantize), from the Rust core's table:
# the one source of these facts.
_TABLE = {row[1]: row for row in _core.type_table()}


class _QuantTypeBase(str, enum.Enum):
    @property
    def id(self) -> int:
        """ggml's type id, as stored in GGUF tensor infos."""
        return _TABLE[self.value][0]

    @property
    def block_size(self) -> int:
        """Elements per block."""
        return _TABLE[self.value][2]

    @property
    def type_size(self) -> int:
        """Bytes per block."""
        return _TABLE[self.value][3]

    @property
    def bits_per_weight(self) -> float:
        return self.type_size * 8 / self.block_size

    @property
    def can_quantize(self) -> bool:
        """fastquant can encode floats into this type."""
        return _TABLE[self.value][4]

    @property
    def can_dequantize(self) -> bool:
        """fastquant can decode this type back to floats."""
        return _TABLE[self.value][5]

    @property
    def is_quantized(self) -> bool:
        """A block type rather than a plain element type."""
        return self.block_size > 1

    def row_bytes(self, n: int) -> int:
        """Bytes of a row of ``n`` elements (``n`` a multiple of the block size)."""
        if n % self.block_size:
            raise QuantTypeError(f"{self.value}: {n} is not a multiple of the block size {self.block_size}")
        return n // self.block_size * self.type_size

    @classmethod
    def _missing_(cls, value: object) -> "QuantType":
        # QuantType("q4_0") works like as_quant_type("q4_0"); unknown names raise QuantTypeError.
        if isinstance(value, str):
            return as_quant_type(value)
        raise QuantTypeError(f"not a quantization type: {value!r}")

    @classmethod
    def from_id(cls, type_id: int) -> "QuantType":
        """The type with ggml id ``type_id``."""
        for row in _TABLE.values():
            if row[0] == type_id:
                return QuantType(row[1])
        raise QuantTypeError(f"unknown ggml type id {type_id}")

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"QuantType.{self.name}"


QuantType = _QuantTypeBase("QuantType", [(name, name) for name in _TABLE])  # type: ignore[misc]
QuantType.__doc__ = """A ggml tensor type (``QuantType.Q4_0``, ``QuantType["Q8_0"]``, ``QuantType("F16")``).

Members are ``str`` subclasses equal to ggml's upper-case name; ``.id`` is the GGUF type id."""
QuantType.__module__ = __name__

QuantTypeLike = Union["QuantType", str]


def as_quant_type(qtype: QuantTypeLike) -> "QuantType":
    """A :class:`QuantType` from a member or a name in any letter case (``"q4_0"``, ``"Q4_0"``)."""
    if isinstance(qtype, QuantType):
        return qtype
    if isinstance(qtype, str):
        key = qtype.strip().upper()
        if key in _TABLE:
            return QuantType(key)
        known = ", ".join(n for n, row in _TABLE.items() if row[4])
        raise QuantTypeError(f"unknown quantization type {qtype!r}; types fastquant can write: {known}")
    raise TypeError(f"qtype must be a QuantType or a type name, not {type(qtype).__name__}")
