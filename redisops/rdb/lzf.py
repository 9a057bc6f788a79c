"""LZF decompression, as Redis compresses RDB strings longer than 20 bytes (rdbcompression).

Pure Python, so it is only used where the bytes themselves are needed (keys, collection
headers); sizes come from the string header, which holds the uncompressed length.
"""

from __future__ import annotations


def lzf_decompress(data: bytes, size: int, limit: int | None = None) -> bytes:
    """The `size` bytes `data` expands to, or its first `limit` (or more) bytes when given.

    Raises ValueError when the data is not valid LZF or does not expand to `size` bytes.
    """
    out = bytearray()
    stop = size if limit is None else min(size, limit)
    i, end = 0, len(data)
    while i < end and len(out) < stop:
        ctrl = data[i]
        i += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            run = ctrl + 1
            if i + run > end:
                raise ValueError("LZF literal runs past the data")
            out += data[i : i + run]
            i += run
            continue
        length = ctrl >> 5
        if length == 7:
            length += data[i]
            i += 1
        back = ((ctrl & 0x1F) << 8) + data[i] + 1
        i += 1
        length += 2
        start = len(out) - back
        if start < 0:
            raise ValueError("LZF back reference before the start")
        if back >= length:
            out += out[start : start + length]
        else:  # the copy overlaps what it writes: byte by byte
            for index in range(start, start + length):
                out.append(out[index])
    if limit is None and (len(out) != size or i != end):
        raise ValueError(f"LZF data expands to {len(out)} bytes, the header says {size}")
    return bytes(out)
