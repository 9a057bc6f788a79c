"""Memory sizes as Redis writes and reads them in its configuration.

Redis's own rules (`memtoull` in util.c): a bare number is bytes; `k`, `m`, `g` are powers of
1000 and `kb`, `mb`, `gb` powers of 1024, in any case; `b` is bytes. So `1gb` is 1073741824
and `1g` is 1000000000.
"""

from __future__ import annotations

import re

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

_MULTIPLIERS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": KIB,
    "m": 1000**2,
    "mb": MIB,
    "g": 1000**3,
    "gb": GIB,
}
_SIZE = re.compile(r"^(-?\d+)([a-z]*)$", re.IGNORECASE)


def parse_size(text: str) -> int | None:
    """Bytes for a size as Redis reads it ("64mb", "1g", "1024"), None if it is not one."""
    match = _SIZE.match(text.strip())
    if not match:
        return None
    multiplier = _MULTIPLIERS.get(match.group(2).lower())
    return None if multiplier is None else int(match.group(1)) * multiplier


def redis_size(size: int) -> str:
    """A byte count in the largest binary unit that holds it exactly: 268435456 -> "256mb"."""
    for unit, multiplier in (("gb", GIB), ("mb", MIB), ("kb", KIB)):
        if size and size % multiplier == 0:
            return f"{size // multiplier}{unit}"
    return str(size)


def ceil_mib(size: float) -> int:
    """`size` bytes rounded up to a whole MiB (at least 1 MiB), for recommendations."""
    return max(1, -(-int(size) // MIB)) * MIB
