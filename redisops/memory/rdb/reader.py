"""A streaming RDB reader: one pass over the bytes, in chunks, yielding one record per key.

Memory stays bounded by the chunk size and the largest packed blob (a listpack or ziplist is
bounded by Redis' own limits); string payloads whose bytes are not needed are skipped, never
buffered. The raw bytes also go to the RdbChecker `backup verify` uses, so the CRC64 trailer is
checked in the same pass. Anything malformed raises RdbError naming the byte offset.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from redisops.backup.formats import (
    CHECKSUM_SINCE_VERSION,
    NEWEST_KNOWN_RDB_VERSION,
    RDB_MAGIC,
    RdbChecker,
)
from redisops.errors import HostError
from redisops.memory.rdb import estimate
from redisops.memory.rdb.blobs import intset_count, listpack_count, ziplist_count, zipmap_count
from redisops.memory.rdb.lzf import lzf_decompress

# Opcodes (rdb.h)
SLOT_INFO, FUNCTION2, FUNCTION_PRE_GA, MODULE_AUX = 0xF4, 0xF5, 0xF6, 0xF7
IDLE, FREQ, AUX, RESIZEDB = 0xF8, 0xF9, 0xFA, 0xFB
EXPIRETIME_MS, EXPIRETIME, SELECTDB, EOF = 0xFC, 0xFD, 0xFE, 0xFF

# Value types (rdb.h): type name and the encoding OBJECT ENCODING reported when it was saved.
TYPES = {
    0: ("string", None),
    1: ("list", "linkedlist"),
    2: ("set", "hashtable"),
    3: ("zset", "skiplist"),
    4: ("hash", "hashtable"),
    5: ("zset", "skiplist"),
    6: ("module", None),
    7: ("module", None),
    9: ("hash", "zipmap"),
    10: ("list", "ziplist"),
    11: ("set", "intset"),
    12: ("zset", "ziplist"),
    13: ("hash", "ziplist"),
    14: ("list", "quicklist"),
    15: ("stream", "stream"),
    16: ("hash", "listpack"),
    17: ("zset", "listpack"),
    18: ("list", "quicklist"),
    19: ("stream", "stream"),
    20: ("set", "listpack"),
    21: ("stream", "stream"),
    22: ("hash", "hashtable"),
    23: ("hash", "listpack"),
    24: ("hash", "hashtable"),
    25: ("hash", "listpack"),
}
# Bytes kept ahead of the record being read, so most records are parsed from one buffer; a
# bigger collection is given a window up to MAX_WINDOW before it is left to the streaming
# path (a big string never is: that path skips its bytes without buffering them).
WINDOW = 1 << 20
MAX_WINDOW = 4 << 20
BATCH = 4096
_MODULE_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_DOUBLE = struct.Struct("<d")


class RdbError(HostError):
    """The file is not a readable RDB: truncated, corrupted or of an unknown kind."""


class _Truncated(Exception):
    """Raised by the input when the data ends; turned into RdbError with the offset."""


class RdbKey(NamedTuple):
    """One key of the file. `bytes` is the MEMORY USAGE estimate; `ttl_ms` the time it had left
    when the snapshot was taken (-1 without an expiry, 0 if already expired); `elements` what
    HLEN/LLEN/SCARD/ZCARD/XLEN/STRLEN would answer; `expire_ms` absolute (Unix ms) or -1.

    The first six fields are KeyFacts' (memory/scanner.py), so rows feed the report as they are.
    """

    db: int
    key: bytes
    type: str
    bytes: int
    ttl_ms: int
    encoding: str | None
    elements: int
    expire_ms: int


class _Input:
    """Bytes in order from an iterable of chunks; `base` is the file offset of `buf[0]`."""

    def __init__(self, chunks: Iterable[bytes], checker: RdbChecker) -> None:
        self._chunks = iter(chunks)
        self._checker = checker
        self.buf = b""
        self.pos = 0
        self.base = 0

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _next_chunk(self) -> bytes:
        for chunk in self._chunks:
            if chunk:
                self._checker.feed(chunk)
                return chunk
        raise _Truncated

    def _fill(self, need: int) -> None:
        parts = [self.buf[self.pos :]]
        have = len(parts[0])
        self.base += self.pos
        self.pos = 0
        try:
            while have < need:
                chunk = self._next_chunk()
                parts.append(chunk)
                have += len(chunk)
        finally:
            self.buf = b"".join(parts)

    def prefetch(self, size: int) -> None:
        """Have `size` bytes in `buf` from `pos` on, or as many as the data has left."""
        with contextlib.suppress(_Truncated):
            self._fill(size)

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.buf):
            self._fill(1)
            pos = 0
        self.pos = pos + 1
        return self.buf[pos]

    def read(self, size: int) -> bytes:
        pos = self.pos
        end = pos + size
        if end > len(self.buf):
            self._fill(size)
            pos, end = 0, size
        self.pos = end
        return self.buf[pos:end]

    def skip(self, size: int) -> None:
        """Pass over `size` bytes without keeping them."""
        left = len(self.buf) - self.pos
        while size > left:
            size -= left
            self.base += len(self.buf)
            self.buf, self.pos = b"", 0
            self.buf = self._next_chunk()
            left = len(self.buf)
        self.pos += size

    def at_end(self) -> bool:
        if self.pos < len(self.buf):
            return False
        try:
            self._fill(1)
        except _Truncated:
            return True
        return False

    def length(self) -> int:
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte()
        if first == 0x80:
            return int.from_bytes(self.read(4), "big")
        if first == 0x81:
            return int.from_bytes(self.read(8), "big")
        raise ValueError(f"bad length byte {first:#04x}")

    def string(self) -> bytes:
        """A whole string, decoded (integers as decimal text, LZF expanded)."""
        first = self.byte()
        if first < 0xC0:
            return self.read(self._length_rest(first))
        encoding = first & 0x3F
        if encoding == 3:
            compressed, size = self.length(), self.length()
            return lzf_decompress(self.read(compressed), size)
        return str(self._int(encoding)).encode()

    def blob(self, kind: int) -> tuple[int, bytes]:
        """(length, bytes) of a packed blob (listpack, ziplist, intset, zipmap) of type `kind`.

        Of an LZF-compressed blob only the header is expanded (it sits in LZF's first literal
        run) unless the header lacks the element count.
        """
        first = self.byte()
        if first < 0xC0:
            size = self._length_rest(first)
            return size, self.read(size)
        encoding = first & 0x3F
        if encoding != 3:
            raise ValueError(f"a packed value saved as an integer (encoding {encoding})")
        compressed, size = self.length(), self.length()
        return size, _expand_blob(kind, self.read(compressed), size)

    def string_size(self) -> int:
        """The length of a string, its bytes skipped."""
        first = self.byte()
        if first < 0xC0:
            size = self._length_rest(first)
            self.skip(size)
            return size
        encoding = first & 0x3F
        if encoding == 3:
            compressed, size = self.length(), self.length()
            self.skip(compressed)
            return size
        return len(str(self._int(encoding)))

    def _length_rest(self, first: int) -> int:
        if first < 0x40:
            return first
        if first < 0x80:
            return ((first & 0x3F) << 8) | self.byte()
        if first == 0x80:
            return int.from_bytes(self.read(4), "big")
        if first == 0x81:
            return int.from_bytes(self.read(8), "big")
        raise ValueError(f"bad length byte {first:#04x}")

    def _int(self, encoding: int) -> int:
        if encoding > 2:
            raise ValueError(f"unknown string encoding {encoding}")
        return int.from_bytes(self.read(1 << encoding), "little", signed=True)


class RdbReader:
    """Iterate over `records()` (or `batches()`) once; `version`, `aux`, `functions` and
    `offset` fill in as it goes.

    `chunks` are the raw file bytes in order (a file read in chunks, or a decompressed backup).
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._checker = RdbChecker()
        self._in = _Input(chunks, self._checker)
        self.version: int | None = None
        self.aux: dict[str, str] = {}
        self.functions = 0
        self.modules_skipped = 0
        # TTLs are counted from the snapshot's time (its `ctime` aux field, which Redis writes
        # before the keys; files older than Redis 4 have none: then from now).
        self.snapshot_ms = int(time.time() * 1000)
        self._record_start = 0

    @property
    def offset(self) -> int:
        """Bytes read so far."""
        return self._in.offset

    def records(self) -> Iterator[RdbKey]:
        """Every key in file order; raises RdbError with the offset when the file is bad,
        including a CRC64 mismatch found once the last byte is read."""
        for batch in self.batches():
            yield from map(RdbKey._make, batch)

    def batches(self) -> Iterator[list[tuple]]:
        """The keys in file order as lists of plain tuples in RdbKey's field order (cheaper
        than RdbKey when there are millions); raises as `records()` does."""
        try:
            yield from self._batches()
        except _Truncated:
            raise RdbError(
                f"RDB truncated at byte {self._in.base + len(self._in.buf):,}: the file ends "
                f"inside the record that starts at byte {self._record_start:,}"
            ) from None
        except (ValueError, IndexError, KeyError, OverflowError, struct.error) as exc:
            raise RdbError(
                f"RDB corrupted near byte {self._in.offset:,} (record at byte "
                f"{self._record_start:,}): {exc}"
            ) from None

    def _batches(self) -> Iterator[list[tuple]]:
        read = self._in
        header = read.read(9)
        if not header.startswith(RDB_MAGIC):
            raise ValueError("not an RDB file (no REDIS header)")
        try:
            version = int(header[5:])
        except ValueError:
            raise ValueError("RDB header has no version") from None
        if not 1 <= version <= NEWEST_KNOWN_RDB_VERSION:
            raise ValueError(
                f"RDB version {version} is not one this reader knows (1 to "
                f"{NEWEST_KNOWN_RDB_VERSION})"
            )
        self.version = version
        db, expire, byte = 0, -1, read.byte
        value, rows = self._value, []
        while True:
            if len(read.buf) - read.pos < WINDOW // 2:
                read.prefetch(WINDOW)
            origin = self.snapshot_ms
            while True:
                read.pos, expire, cut = _fast_records(read.buf, read.pos, db, expire, origin, rows)
                ahead = len(read.buf) - read.pos
                if not cut or ahead >= MAX_WINDOW:
                    break
                read.prefetch(2 * ahead)
                if len(read.buf) - read.pos == ahead:  # the data ends there
                    break
            if len(rows) >= BATCH:
                yield rows
                rows = []
            self._record_start = read.offset
            kind = byte()
            if kind < SLOT_INFO:
                if kind not in TYPES:
                    raise ValueError(f"unknown value type {kind}")
                key = read.string()
                rows.append(value(db, key, kind, expire, origin))
                expire = -1
            elif kind == EXPIRETIME_MS:
                expire = int.from_bytes(read.read(8), "little", signed=True)
            elif kind == SELECTDB:
                db = read.length()
            elif kind == RESIZEDB:
                read.length()
                read.length()
            elif kind == AUX:
                name, text = read.string(), read.string()
                self.aux[name.decode("utf-8", "replace")] = text.decode("utf-8", "replace")
                if name == b"ctime" and text.isdigit():
                    self.snapshot_ms = int(text) * 1000
            elif kind == EXPIRETIME:
                expire = int.from_bytes(read.read(4), "little", signed=True) * 1000
            elif kind == IDLE:
                read.length()
            elif kind == FREQ:
                read.byte()
            elif kind == FUNCTION2:
                read.string_size()
                self.functions += 1
            elif kind == MODULE_AUX:
                self._module_id(read.length())
                self._skip_module_value()
            elif kind == SLOT_INFO:
                read.length()
                read.length()
                read.length()
            elif kind == FUNCTION_PRE_GA:  # Redis 7.0 release candidates: name, engine,
                read.string_size()  # a description flag and description, then the code
                read.string_size()
                if read.length():
                    read.string_size()
                read.string_size()
                self.functions += 1
            else:  # EOF
                break
        if rows:
            yield rows
        self._record_start = read.offset
        if version >= CHECKSUM_SINCE_VERSION:
            read.read(8)
        if not read.at_end():
            raise ValueError(f"unexpected data after the end of the RDB at byte {read.offset:,}")
        facts = self._checker.finish()
        if facts.problems:
            raise ValueError(f"{'; '.join(facts.problems)} (trailer at byte {read.offset - 8:,})")

    def _value(self, db: int, key: bytes, kind: int, expire: int, origin: int) -> RdbKey:
        type_name, encoding = TYPES[kind]
        read = self._in
        key_bytes = estimate.key_overhead(len(key))
        if kind == 0:
            elements, encoding = self._string_value()
            size = estimate.string_bytes(elements, encoding)
        elif kind in (16, 17, 20, 13, 12, 10, 11, 9):
            blob_bytes, blob = read.blob(kind)
            elements = _BLOB_COUNTS[kind](blob)
            size = estimate.packed_bytes(blob_bytes)
        elif kind == 18 or kind == 14:
            elements, size = self._quicklist(kind)
        elif kind == 4 or kind == 2:
            elements = read.length()
            strings = 0
            string_size, sds = read.string_size, estimate.sds_bytes
            for _ in range(elements * 2 if kind == 4 else elements):
                strings += sds(string_size())
            size = estimate.hashtable_bytes(elements, strings)
        elif kind == 5 or kind == 3:
            elements = read.length()
            members = 0
            string_size, sds = read.string_size, estimate.sds_bytes
            for _ in range(elements):
                members += sds(string_size())
                if kind == 5:
                    read.skip(8)
                else:
                    score = read.byte()
                    if score < 253:
                        read.skip(score)
            size = estimate.skiplist_bytes(elements, members)
        elif kind == 1:
            elements = read.length()
            blobs = sum(estimate.size_class(read.string_size() + 11) for _ in range(elements))
            size = estimate.ROBJ + estimate.QUICKLIST + estimate.QUICKLIST_NODE + blobs
        elif kind in (15, 19, 21):
            elements, size = self._stream(kind)
        elif kind in (22, 23, 24, 25):
            elements, size = self._hash_with_field_expiry(kind)
        elif kind == 7:
            self._module_id(read.length())
            self._skip_module_value()
            self.modules_skipped += 1
            elements, size = 0, 0
        else:  # 6: module values of Redis 4.0 release candidates carry no opcodes
            raise ValueError(
                f"a module value in the pre-4.0 format ({self._module_id(read.length())}) "
                "cannot be skipped without its module"
            )
        if expire < 0:
            ttl = expire = -1
        else:
            ttl = max(0, expire - origin)
        return RdbKey(db, key, type_name, key_bytes + size, ttl, encoding, elements, expire)

    def _string_value(self) -> tuple[int, str]:
        read = self._in
        first = read.byte()
        if first >= 0xC0:
            encoding = first & 0x3F
            if encoding == 3:
                compressed, size = read.length(), read.length()
                read.skip(compressed)
                return size, "embstr" if size <= estimate.EMBSTR_LIMIT else "raw"
            return len(str(read._int(encoding))), "int"
        size = read._length_rest(first)
        if size <= 20:
            text = read.read(size)
            if _is_long(text):
                return size, "int"
        else:
            read.skip(size)
        return size, "embstr" if size <= estimate.EMBSTR_LIMIT else "raw"

    def _quicklist(self, kind: int) -> tuple[int, int]:
        read = self._in
        nodes = read.length()
        elements = blobs = 0
        size_class = estimate.size_class
        for _ in range(nodes):
            if kind == 18 and read.length() == 1:  # a plain node: one big element
                blob_bytes = read.string_size()
                elements += 1
            else:
                blob_bytes, blob = read.blob(kind)
                elements += (listpack_count if kind == 18 else ziplist_count)(blob)
            blobs += size_class(blob_bytes)
        return elements, estimate.quicklist_bytes(blobs, nodes)

    def _stream(self, kind: int) -> tuple[int, int]:
        read = self._in
        listpacks = read.length()
        listpack_bytes = 0
        for _ in range(listpacks):
            read.string_size()  # the master entry id
            listpack_bytes += read.string_size()
        elements = read.length()
        read.length()
        read.length()  # last id
        if kind >= 19:
            for _ in range(5):  # first id, max deleted id, entries added
                read.length()
        groups = read.length()
        pending = consumers = names = 0
        for _ in range(groups):
            read.string_size()
            read.length()
            read.length()  # last delivered id
            if kind >= 19:
                read.length()  # entries read
            nacks = read.length()
            pending += nacks
            for _ in range(nacks):
                read.skip(24)  # id, delivery time
                read.length()  # delivery count
            group_consumers = read.length()
            consumers += group_consumers
            for _ in range(group_consumers):
                names += estimate.sds_bytes(read.string_size())
                read.skip(16 if kind >= 21 else 8)  # seen time (and active time)
                read.skip(16 * read.length())  # its pending ids
        size = estimate.stream_bytes(listpack_bytes, listpacks, groups, pending, consumers, names)
        return elements, size

    def _hash_with_field_expiry(self, kind: int) -> tuple[int, int]:
        """Redis 7.4 hashes whose fields have TTLs (24, 25; 22, 23 from its release candidates)."""
        read = self._in
        if kind in (24, 25):
            read.skip(8)  # the minimum field expiry
        if kind in (23, 25):
            blob_bytes, blob = read.blob(kind)
            return listpack_count(blob) // 3, estimate.packed_bytes(blob_bytes)
        elements = read.length()
        strings = 0
        for _ in range(elements):
            read.length()  # the field's TTL (relative to the minimum in 24, absolute in 22)
            strings += estimate.sds_bytes(read.string_size())
            strings += estimate.sds_bytes(read.string_size())
        return elements, estimate.hashtable_bytes(elements, strings)

    def _module_id(self, module_id: int) -> str:
        """The module's 9-character name, from the 64-bit id (its low 10 bits are a version)."""
        return "".join(_MODULE_CHARSET[(module_id >> (64 - 6 * (i + 1))) & 63] for i in range(9))

    def _skip_module_value(self) -> None:
        """Skip a module value saved with opcodes (RDB_TYPE_MODULE_2 and module aux data)."""
        read = self._in
        while (opcode := read.length()) != 0:
            if opcode in (1, 2):
                read.length()
            elif opcode == 3:
                read.skip(4)
            elif opcode == 4:
                read.skip(8)
            elif opcode == 5:
                read.string_size()
            else:
                raise ValueError(f"unknown module opcode {opcode}")


HEADER = 10  # a ziplist's count ends at byte 10; listpack, intset and zipmap counts before


def _expand_blob(kind: int, data: bytes, size: int) -> bytes:
    """An LZF-compressed packed blob: its header only (HEADER bytes hold every encoding's
    count), or the whole blob when the header lacks the element count."""
    run = data[0] + 1
    if HEADER <= run <= 32 and run < len(data):  # the header is LZF's first literal run, as is
        head = data[1 : 1 + run]
    else:
        head = lzf_decompress(data, size, HEADER)
    return lzf_decompress(data, size) if _saturated(kind, head) else head


def _saturated(kind: int, head: bytes) -> bool:
    """Whether a blob's header lacks its element count (so the entries must be walked)."""
    if kind == 11:
        return False
    if kind == 9:
        return head[0] >= 254
    if kind in (10, 12, 13, 14):
        return head[8:10] == b"\xff\xff"
    return head[4:6] == b"\xff\xff"


def _is_long(text: bytes) -> bool:
    """Whether Redis would store this string as an integer (string2l: canonical form only)."""
    if not text or len(text) > 20:
        return False
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or (digits[:1] == b"0" and len(text) > 1):
        return False
    return -(2**63) <= int(text) < 2**63


def _pairs(count: int) -> int:
    return count // 2


_BLOB_COUNTS = {
    9: zipmap_count,
    10: ziplist_count,
    11: intset_count,
    12: lambda blob: _pairs(ziplist_count(blob)),
    13: lambda blob: _pairs(ziplist_count(blob)),
    16: lambda blob: _pairs(listpack_count(blob)),
    17: lambda blob: _pairs(listpack_count(blob)),
    20: listpack_count,
}


# The fast path: records of the common kinds parsed straight from the buffer, without the
# per-field method calls of _Input (they cost more than the parsing). A record it cannot finish
# inside the buffer (or of a rarer kind, or malformed) is left to the general path in
# RdbReader._batches, which reads across chunks and skips big strings without buffering them.
# Both must give the same record (tests read every file both ways).

_PACKED_KINDS = frozenset((9, 10, 11, 12, 13, 16, 17, 20))
_FAST_KINDS = frozenset((0, 2, 4, 18, *_PACKED_KINDS))
_SHORT = 256  # lengths below this take their estimate from a table
_KEY_BYTES = [estimate.key_overhead(n) for n in range(_SHORT)]
_SDS_BYTES = [estimate.sds_bytes(n) for n in range(_SHORT)]
_TEXT_ENCODING = ["embstr" if n <= estimate.EMBSTR_LIMIT else "raw" for n in range(_SHORT)]
_TEXT_BYTES = [estimate.string_bytes(n, _TEXT_ENCODING[n]) for n in range(_SHORT)]
_PACKED_BYTES = [estimate.packed_bytes(n) for n in range(4096)]


class _GeneralPath(Exception):
    """The fast path met something it leaves to the general path."""


def _length_at(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    if first < 0x40:
        return first, pos + 1
    if first < 0x80:
        return ((first & 0x3F) << 8) | buf[pos + 1], pos + 2
    if first == 0x80:
        return int.from_bytes(buf[pos + 1 : pos + 5], "big"), pos + 5
    if first == 0x81:
        return int.from_bytes(buf[pos + 1 : pos + 9], "big"), pos + 9
    raise _GeneralPath


def _string_at(buf: bytes, pos: int) -> tuple[int, int]:
    """(length, position after) of a string whose bytes are not needed."""
    first = buf[pos]
    if first < 0xC0:
        size, pos = _length_at(buf, pos)
        return size, pos + size
    if first == 0xC3:
        compressed, pos = _length_at(buf, pos + 1)
        size, pos = _length_at(buf, pos)
        return size, pos + compressed
    if first < 0xC3:
        width = 1 << (first & 0x3F)
        number = int.from_bytes(buf[pos + 1 : pos + 1 + width], "little", signed=True)
        return len(str(number)), pos + 1 + width
    raise _GeneralPath


def _text_at(buf: bytes, pos: int) -> tuple[bytes, int]:
    """(bytes, position after) of a string that is not a plain short one (a key, mostly)."""
    first = buf[pos]
    if first == 0xC3:
        compressed, pos = _length_at(buf, pos + 1)
        size, pos = _length_at(buf, pos)
        return lzf_decompress(buf[pos : pos + compressed], size), pos + compressed
    if first < 0xC0:
        size, pos = _length_at(buf, pos)
        return buf[pos : pos + size], pos + size
    if first > 0xC2:
        raise _GeneralPath
    end = pos + 1 + (1 << (first & 0x3F))
    return str(int.from_bytes(buf[pos + 1 : end], "little", signed=True)).encode(), end


def _blob_at(buf: bytes, pos: int, kind: int) -> tuple[int, bytes, int]:
    """(length, bytes or their header, position after) of a packed blob."""
    first = buf[pos]
    if first < 0xC0:
        size, pos = _length_at(buf, pos)
        return size, buf[pos : pos + size], pos + size
    if first != 0xC3:
        raise _GeneralPath
    compressed, pos = _length_at(buf, pos + 1)
    size, pos = _length_at(buf, pos)
    end = pos + compressed
    if end > len(buf):
        raise _GeneralPath
    return size, _expand_blob(kind, buf[pos:end], size), end


def _fast_records(
    buf: bytes, pos: int, db: int, expire: int, origin: int, rows: list
) -> tuple[int, int, bool]:
    """Append the records from `pos` on that lie wholly in `buf` and are of a common kind.

    Returns where it stopped (a record for the general path), the expiry still pending, and
    whether a longer buffer would let it go on (a collection running past the end of `buf`).
    """
    end = len(buf)
    append, kinds, types = rows.append, _FAST_KINDS, TYPES
    key_bytes, sds_bytes, short = _KEY_BYTES, _SDS_BYTES, _SHORT
    packed_bytes, packed_short = _PACKED_BYTES, len(_PACKED_BYTES)
    text_encoding, text_bytes = _TEXT_ENCODING, _TEXT_BYTES
    try:
        while pos < end:
            kind = buf[pos]
            if kind not in kinds:
                if kind != EXPIRETIME_MS or pos + 9 > end:
                    break
                expire = int.from_bytes(buf[pos + 1 : pos + 9], "little", signed=True)
                pos += 9
                continue
            first = buf[pos + 1]
            if first < 0x40:
                at = pos + 2 + first
                key = buf[pos + 2 : at]
            else:
                key, at = _text_at(buf, pos + 1)
            type_name, encoding = types[kind]
            if kind == 0:
                first = buf[at]
                if first < 0x40:
                    elements, after = first, at + 1 + first
                else:
                    elements, after = _string_at(buf, at)
                if 0xC0 <= first < 0xC3 or (
                    first < 0xC0 and elements <= 20 and _is_long(buf[after - elements : after])
                ):
                    encoding, size = "int", estimate.ROBJ
                elif elements < short:
                    encoding, size = text_encoding[elements], text_bytes[elements]
                else:
                    encoding = "raw" if elements > estimate.EMBSTR_LIMIT else "embstr"
                    size = estimate.string_bytes(elements, encoding)
                at = after
            elif kind in _PACKED_KINDS:
                first = buf[at]
                if first < 0x80:
                    if first < 0x40:
                        blob_bytes, at = first, at + 1
                    else:
                        blob_bytes, at = ((first & 0x3F) << 8) | buf[at + 1], at + 2
                    blob = buf[at : at + blob_bytes]
                    at += blob_bytes
                else:
                    blob_bytes, blob, at = _blob_at(buf, at, kind)
                if kind >= 16:  # listpacks: the count is in the header unless it saturated
                    elements = blob[4] | (blob[5] << 8)
                    if elements == 0xFFFF:
                        elements = listpack_count(blob)
                    if kind != 20:
                        elements >>= 1
                else:
                    elements = _BLOB_COUNTS[kind](blob)
                if blob_bytes < packed_short:
                    size = packed_bytes[blob_bytes]
                else:
                    size = estimate.packed_bytes(blob_bytes)
            elif kind == 18:
                nodes, at = _length_at(buf, at)
                elements = blobs = 0
                for _ in range(nodes):
                    if buf[at] > 2:  # not a one-byte container kind
                        raise _GeneralPath
                    if buf[at] == 1:  # a plain node: one big element
                        blob_bytes, at = _string_at(buf, at + 1)
                        elements += 1
                    else:
                        blob_bytes, blob, at = _blob_at(buf, at + 1, kind)
                        elements += listpack_count(blob)
                    blobs += estimate.size_class(blob_bytes)
                size = estimate.quicklist_bytes(blobs, nodes)
            else:  # 2, 4: a set or hash as a hash table
                elements, at = _length_at(buf, at)
                strings = 0
                for _ in range(elements * 2 if kind == 4 else elements):
                    first = buf[at]
                    if first < 0x40:
                        at += 1 + first
                        strings += sds_bytes[first]
                    else:
                        length, at = _string_at(buf, at)
                        strings += estimate.sds_bytes(length)
                size = estimate.hashtable_bytes(elements, strings)
            if at > end:
                return pos, expire, kind != 0
            klen = len(key)
            overhead = key_bytes[klen] if klen < short else estimate.key_overhead(klen)
            if expire < 0:
                append((db, key, type_name, overhead + size, -1, encoding, elements, -1))
            else:
                ttl = expire - origin if expire > origin else 0
                append((db, key, type_name, overhead + size, ttl, encoding, elements, expire))
            expire = -1
            pos = at
    except IndexError:
        return pos, expire, True
    except (_GeneralPath, ValueError):
        pass
    return pos, expire, False
