"""Element counts of the packed encodings Redis dumps as one string: ziplist, listpack, intset,
zipmap. The header holds the count unless it saturated (65535 or more), then the entries are
walked."""

from __future__ import annotations

_SATURATED = 0xFFFF


def ziplist_count(blob: bytes) -> int:
    """Entries of a ziplist (zlbytes u32, zltail u32, zllen u16, entries, 0xFF)."""
    count = int.from_bytes(blob[8:10], "little")
    if count < _SATURATED:
        return count
    pos, count = 10, 0
    while blob[pos] != 0xFF:
        pos += 5 if blob[pos] == 0xFE else 1  # previous entry's length
        first = blob[pos]
        kind = first >> 6
        if kind == 0:
            pos += 1 + (first & 0x3F)
        elif kind == 1:
            pos += 2 + (((first & 0x3F) << 8) | blob[pos + 1])
        elif kind == 2:
            pos += 5 + int.from_bytes(blob[pos + 1 : pos + 5], "big")
        else:
            pos += 1 + _ZIPLIST_INT_BYTES.get(first, 0)
        count += 1
    return count


_ZIPLIST_INT_BYTES = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}


def listpack_count(blob: bytes) -> int:
    """Entries of a listpack (total u32, count u16, entries each followed by its back-length)."""
    count = int.from_bytes(blob[4:6], "little")
    if count < _SATURATED:
        return count
    pos, count = 6, 0
    while blob[pos] != 0xFF:
        first = blob[pos]
        if first < 0x80:
            size = 1
        elif first < 0xC0:
            size = 1 + (first & 0x3F)
        elif first < 0xE0:
            size = 2
        elif first < 0xF0:
            size = 2 + (((first & 0x0F) << 8) | blob[pos + 1])
        elif first == 0xF0:
            size = 5 + int.from_bytes(blob[pos + 1 : pos + 5], "little")
        else:
            size = {0xF1: 3, 0xF2: 4, 0xF3: 5, 0xF4: 9}[first]
        pos += size + _backlen_bytes(size)
        count += 1
    return count


def _backlen_bytes(size: int) -> int:
    # lpEncodeBacklen in listpack.c: 7 bits of the length per byte
    if size <= 127:
        return 1
    if size < 16383:
        return 2
    if size < 2097151:
        return 3
    return 4 if size < 268435455 else 5


def intset_count(blob: bytes) -> int:
    """Members of an intset (encoding u32, length u32, members)."""
    return int.from_bytes(blob[4:8], "little")


def zipmap_count(blob: bytes) -> int:
    """Pairs of a zipmap (Redis 2.x small hashes): the first byte unless it saturated (254)."""
    if blob[0] < 254:
        return blob[0]
    pos, count = 1, 0
    while blob[pos] != 0xFF:
        for is_value in (False, True):  # a value's length is followed by its count of free bytes
            size = blob[pos]
            if size == 254:
                size = int.from_bytes(blob[pos + 1 : pos + 5], "little")
                pos += 5
            else:
                pos += 1
            if is_value:
                size += 1 + blob[pos]
            pos += size
        count += 1
    return count
