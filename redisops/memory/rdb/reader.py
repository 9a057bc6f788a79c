"""A streaming RDB reader: one pass over the bytes, in chunks, yielding one record per key.

Memory stays bounded by the chunk size and the largest packed blob (a listpack or ziplist is
bounded by Redis' own limits); string payloads whose bytes are not needed are skipped, never
buffered. The raw bytes also go to the RdbChecker `backup verify` uses, so the CRC64 trailer is
checked in the same pass. Anything malformed raises RdbError naming the byte offset.
"""

from __future__ import annotations

import struct
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
_MODULE_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_DOUBLE = struct.Struct("<d")


class RdbError(HostError):
    """The file is not a readable RDB: truncated, corrupted or of an unknown kind."""


class _Truncated(Exception):
    """Raised by the input when the data ends; turned into RdbError with the offset."""


class RdbKey(NamedTuple):
    """One key of the file. `expire_ms` is absolute (Unix ms), -1 without one; `elements` is
    what HLEN/LLEN/SCARD/ZCARD/XLEN/STRLEN would answer; `bytes` the MEMORY USAGE estimate."""

    db: int
    key: bytes
    type: str
    encoding: str | None
    elements: int
    bytes: int
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
        data = self.read(compressed)
        head = lzf_decompress(data, size, 16)
        return size, lzf_decompress(data, size) if _saturated(kind, head) else head

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
    """Iterate over `records()` once; `version`, `aux`, `functions` and `offset` fill in as it goes.

    `chunks` are the raw file bytes in order (a file read in chunks, or a decompressed backup).
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._checker = RdbChecker()
        self._in = _Input(chunks, self._checker)
        self.version: int | None = None
        self.aux: dict[str, str] = {}
        self.functions = 0
        self.modules_skipped = 0
        self._record_start = 0

    @property
    def offset(self) -> int:
        """Bytes read so far."""
        return self._in.offset

    def records(self) -> Iterator[RdbKey]:
        """Every key in file order; raises RdbError with the offset when the file is bad,
        including a CRC64 mismatch found once the last byte is read."""
        try:
            yield from self._records()
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

    def _records(self) -> Iterator[RdbKey]:
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
        value = self._value
        while True:
            self._record_start = read.offset
            kind = byte()
            if kind < SLOT_INFO:
                if kind not in TYPES:
                    raise ValueError(f"unknown value type {kind}")
                key = read.string()
                yield value(db, key, kind, expire)
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
            elif kind == FUNCTION_PRE_GA:
                raise ValueError("functions in the Redis 7.0 release-candidate format")
            else:  # EOF
                break
        self._record_start = read.offset
        if version >= CHECKSUM_SINCE_VERSION:
            read.read(8)
        if not read.at_end():
            raise ValueError(f"unexpected data after the end of the RDB at byte {read.offset:,}")
        facts = self._checker.finish()
        if facts.problems:
            raise ValueError(f"{'; '.join(facts.problems)} (trailer at byte {read.offset - 8:,})")

    def _value(self, db: int, key: bytes, kind: int, expire: int) -> RdbKey:
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
        return RdbKey(db, key, type_name, encoding, elements, key_bytes + size, expire)

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
            if kind == 24:
                read.length()
            else:
                read.skip(8)
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
