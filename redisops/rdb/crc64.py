"""Redis's CRC64: the Jones polynomial, reflected in and out, initial value 0, no final XOR.

The RDB trailer holds this checksum of everything before it. anycrc computes it at several
GB/s (table-driven Python would manage ~10 MB/s and slow a backup down by an order of
magnitude); it is imported on first use, never by `redisops --help`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import anycrc

# Catalogue name of the model; its check value (CRC of b"123456789") is 0xe9c6d914c4b8d9ca.
MODEL = "CRC64-REDIS"


@cache
def _model() -> anycrc.Model:
    import anycrc

    return anycrc.Model(MODEL)


def crc64(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC64 of `data`, continuing from `crc` (the value over the bytes before it)."""
    return _model().calc(data, crc)


def crc64_function() -> Callable[[bytes], int]:
    """The CRC64 of one bytes object, as a function bound once: for loops calling it per key."""
    return _model().calc
