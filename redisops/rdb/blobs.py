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


# Integrity checks as Redis makes them when it loads an RDB (with its default
# sanitize-dump-payload no): ziplists and zipmaps are walked entry by entry (Redis converts
# them, ziplist.c ziplistValidateIntegrity and zipmap.c zipmapValidateIntegrity with deep=1),
# listpacks and intsets have their header checked (listpack.c lpValidateIntegrity,
# intset.c intsetValidateIntegrity with deep=0). Each raises ValueError naming what failed.


def check_listpack(blob: bytes, size: int) -> None:
    """A listpack's header against its length; `blob` may be only its first bytes (then the
    end byte is not checked: the rest is LZF-compressed and not expanded)."""
    if size < 7:
        raise ValueError(
            f"listpack integrity check failed: {size} bytes, shorter than a listpack's header"
        )
    if int.from_bytes(blob[:4], "little") != size:
        raise ValueError(
            f"listpack integrity check failed: its header says {int.from_bytes(blob[:4], 'little')}"
            f" bytes, the value has {size}"
        )
    if len(blob) == size and blob[-1] != 0xFF:
        raise ValueError("listpack integrity check failed: no end byte")


def checked_intset_count(blob: bytes, size: int) -> int:
    """Members of an intset whose header agrees with its length (`blob` may be the header)."""
    width, count = int.from_bytes(blob[:4], "little"), int.from_bytes(blob[4:8], "little")
    if size < 8 or width not in (2, 4, 8) or 8 + count * width != size or not count:
        raise ValueError(
            f"intset integrity check failed: {count} members of {width} bytes in {size} bytes"
        )
    return count


def checked_ziplist_count(blob: bytes, *, pairs: bool = False) -> int:
    """Entries of a ziplist, walked as Redis does before converting it; with `pairs` (a
    hash or sorted set) the count must be even and no field name may repeat."""
    size = len(blob)

    def fail(why: str) -> ValueError:
        return ValueError(f"ziplist integrity check failed: {why}")

    if size < 11:
        raise fail(f"{size} bytes, shorter than a ziplist's header and end")
    if int.from_bytes(blob[:4], "little") != size:
        raise fail(f"its header says {int.from_bytes(blob[:4], 'little')} bytes, it has {size}")
    if blob[-1] != 0xFF:
        raise fail("no end byte")
    tail = int.from_bytes(blob[4:8], "little")
    if tail > size - 1:
        raise fail(f"the tail offset {tail} is past its end")
    end, pos, count, prev_size, last = size - 1, 10, 0, 0, None
    names: set[bytes] = set()
    while blob[pos] != 0xFF:
        start = pos
        if blob[pos] == 0xFE:
            if pos + 5 > end:
                raise fail(f"entry at {start} runs past the end")
            prevlen, pos = int.from_bytes(blob[pos + 1 : pos + 5], "little"), pos + 5
        else:
            prevlen, pos = blob[pos], pos + 1
        if prevlen != prev_size:
            raise fail(f"entry at {start} says the one before it has {prevlen} bytes")
        if pos >= end:
            raise fail(f"entry at {start} runs past the end")
        first = blob[pos]
        kind = first >> 6
        if kind == 0:
            header, length = 1, first & 0x3F
        elif kind == 1:
            header, length = 2, ((first & 0x3F) << 8) | blob[pos + 1]
        elif kind == 2:
            header, length = 5, int.from_bytes(blob[pos + 1 : pos + 5], "big")
        elif first in _ZIPLIST_INT_BYTES:
            header, length = 1, _ZIPLIST_INT_BYTES[first]
        elif 0xF1 <= first <= 0xFD:
            header, length = 1, 0
        else:
            raise fail(f"entry at {start} has an unknown encoding {first:#04x}")
        value_at, pos = pos + header, pos + header + length
        if pos > end:
            raise fail(f"entry at {start} runs past the end")
        if pairs and count % 2 == 0:
            name = blob[value_at:pos] if kind < 3 else bytes((first, *blob[value_at:pos]))
            if name in names:
                raise fail("a field name repeats")
            names.add(name)
        prev_size, last = pos - start, start
        count += 1
    if last is not None and last != tail:
        raise fail(f"the tail offset {tail} is not the last entry's ({last})")
    stated = int.from_bytes(blob[8:10], "little")
    if stated != _SATURATED and stated != count:
        raise fail(f"its header says {stated} entries, it has {count}")
    if pairs and count % 2:
        raise fail(f"an odd number of entries ({count}) for field-value pairs")
    return count


def checked_zipmap_count(blob: bytes) -> int:
    """Pairs of a zipmap, walked as Redis does before converting it (it must hold one)."""
    size = len(blob)

    def fail(why: str) -> ValueError:
        return ValueError(f"zipmap integrity check failed: {why}")

    if size < 2 or blob[-1] != 0xFF:
        raise fail("no end byte" if size >= 2 else f"{size} bytes")
    last, pos, count = size - 1, 1, 0
    names: set[bytes] = set()
    while blob[pos] != 0xFF:
        start = pos
        for is_value in (False, True):
            width = 5 if blob[pos] == 254 else 1
            if pos + width > last:
                raise fail(f"pair at {start} runs past the end")
            length = int.from_bytes(blob[pos + 1 : pos + 5], "little") if width == 5 else blob[pos]
            pos += width
            if is_value:
                length += 1 + blob[pos]  # the free-space byte and the free bytes
            elif blob[pos : pos + length] in names:
                raise fail("a field name repeats")
            else:
                names.add(blob[pos : pos + length])
            pos += length
            if pos > last:
                raise fail(f"pair at {start} runs past the end")
        count += 1
    if not count:
        raise fail("it is empty")
    if blob[0] != 254 and blob[0] != count:
        raise fail(f"its header says {blob[0]} pairs, it has {count}")
    return count


def listpack_items(blob: bytes) -> list[int | bytes]:
    """Every entry of a whole listpack, integers as int, strings as bytes."""
    items: list[int | bytes] = []
    pos = 6
    while blob[pos] != 0xFF:
        first = blob[pos]
        if first < 0x80:
            item, size = first, 1
        elif first < 0xC0:
            size = 1 + (first & 0x3F)
            item = blob[pos + 1 : pos + size]
        elif first < 0xE0:
            item, size = ((first & 0x1F) << 8) | blob[pos + 1], 2
            item -= (1 << 13) if item >= 1 << 12 else 0
        elif first < 0xF0:
            length = ((first & 0x0F) << 8) | blob[pos + 1]
            item, size = blob[pos + 2 : pos + 2 + length], 2 + length
        elif first == 0xF0:
            length = int.from_bytes(blob[pos + 1 : pos + 5], "little")
            item, size = blob[pos + 5 : pos + 5 + length], 5 + length
        else:
            width = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}[first]
            item = int.from_bytes(blob[pos + 1 : pos + 1 + width], "little", signed=True)
            size = 1 + width
        items.append(item)
        pos += size + _backlen_bytes(size)
    return items
