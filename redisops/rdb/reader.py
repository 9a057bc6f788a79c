"""A streaming RDB reader: one pass over the bytes, in chunks, yielding one record per key.

Memory stays bounded by the chunk size and the largest packed blob (a listpack or ziplist is
bounded by Redis' own limits), plus each key's name once (to find duplicates); string payloads
whose bytes are not needed are skipped, never buffered. The CRC64 of the bytes up to the EOF
opcode is computed as they are consumed, so bytes after the trailer (which Redis ignores) are
counted, not checksummed. Redis's RDB 1-12 and Valkey's format 80 are read. What Redis refuses
to load (a damaged packed value, a duplicate key, a wrong checksum) raises RdbError naming the
byte offset and the key; empty collections, which Redis skips, are counted and left out.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import NamedTuple

from redisops.errors import HostError
from redisops.keypatterns import key_text
from redisops.rdb import estimate
from redisops.rdb.blobs import (
    check_listpack,
    checked_intset_count,
    checked_ziplist_count,
    checked_zipmap_count,
    listpack_count,
    listpack_items,
)
from redisops.rdb.crc64 import crc64
from redisops.rdb.format import (
    CHECKSUM_SINCE_VERSION,
    CRC_ABSENT,
    CRC_DISABLED,
    CRC_OK,
    HEADER_BYTES,
    UnknownRdbFormat,
    length_at,
    rdb_format,
)
from redisops.rdb.lzf import lzf_decompress

# Opcodes (rdb.h); SLOT_IMPORT is Valkey 9's
SLOT_IMPORT, SLOT_INFO, FUNCTION2, FUNCTION_PRE_GA, MODULE_AUX = 0xF3, 0xF4, 0xF5, 0xF6, 0xF7
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
    23: ("hash", "listpackex"),
    24: ("hash", "hashtable"),
    25: ("hash", "listpackex"),
}
# Valkey's format 80 has Redis 7.2's types and, as 22, its own hashes with field TTLs.
VALKEY_TYPES = {kind: TYPES[kind] for kind in range(22) if kind in TYPES} | {
    22: ("hash", "hashtable")
}
COLLECTIONS = frozenset(("list", "set", "zset", "hash"))
# Since Redis 7.2 (RDB 11; Valkey alike) a list of one packed node of at most 8 KiB (the
# default list-max-listpack-size -2) is loaded, and named, `listpack` (t_list.c
# listTypeTryConvertQuicklist); before, every list was a quicklist.
LISTPACK_LISTS_SINCE = 11
LISTPACK_LIST_BYTES = 8192
# Well-known module types (the 9-character names their module ids encode).
MODULE_NAMES = {
    "ReJSON-RL": "RedisJSON",
    "TSDB-TYPE": "RedisTimeSeries",
    "MBbloom--": "RedisBloom",
    "MBbloomCF": "RedisBloom",
    "TopK-TYPE": "RedisBloom",
    "CMSk-TYPE": "RedisBloom",
    "TDIS-TYPE": "RedisBloom",
    "ft_index0": "RediSearch",
    "ft_invidx": "RediSearch",
    "graphdata": "RedisGraph",
    "GEARS_RGT": "RedisGears",
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


class ModuleType(NamedTuple):
    """Module values of one type: the name TYPE answers, the id it was saved with (its low 10
    bits are the encoding version), the module that owns it when well known, and their count
    and serialized bytes."""

    name: str
    id: int
    module: str | None
    keys: int
    bytes: int


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

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.buf = b""
        self.pos = 0
        self.base = 0
        self.crc = 0  # CRC64 of the bytes before buf[crc_from]
        self.crc_from = 0
        self._captured: list[bytes] | None = None  # bytes kept since start_capture()
        self._capture_at = 0

    def start_capture(self) -> None:
        """Keep every byte consumed from here on, until end_capture()."""
        self._captured, self._capture_at = [], self.pos

    def end_capture(self) -> bytes:
        """The bytes consumed since start_capture()."""
        parts, self._captured = self._captured or [], None
        parts.append(self.buf[self._capture_at : self.pos])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @property
    def offset(self) -> int:
        return self.base + self.pos

    def _next_chunk(self) -> bytes:
        for chunk in self._chunks:
            if chunk:
                return chunk
        raise _Truncated

    def checksum_to_here(self) -> int:
        """The CRC64 of every byte before `offset`."""
        self.crc = crc64(memoryview(self.buf)[self.crc_from : self.pos], self.crc)
        self.crc_from = self.pos
        return self.crc

    def rest(self) -> int:
        """Read to the end of the data; how many bytes there were."""
        count = len(self.buf) - self.pos
        self.pos = len(self.buf)
        for chunk in self._chunks:
            count += len(chunk)
        return count

    def _fill(self, need: int) -> None:
        self.checksum_to_here()
        if self._captured is not None:
            self._captured.append(self.buf[self._capture_at : self.pos])
            self._capture_at = 0
        self.crc_from = 0
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
            self.crc = crc64(memoryview(self.buf)[self.crc_from :], self.crc)
            if self._captured is not None:
                self._captured.append(self.buf[self._capture_at :])
                self._capture_at = 0
            self.base += len(self.buf)
            self.buf, self.pos, self.crc_from = b"", 0, 0
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
        return self._length_rest(self.byte())

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

    def blob(self, kind: int, *, whole: bool = False) -> tuple[int, bytes]:
        """(length, bytes) of a packed blob (listpack, ziplist, intset, zipmap) of type `kind`.

        Of an LZF-compressed listpack or intset only the header is expanded (it sits in LZF's
        first literal run) unless the header lacks the element count or `whole` is asked for.
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
        if whole or kind in _WALKED_KINDS:
            return size, lzf_decompress(data, size)
        return size, _expand_blob(kind, data, size)

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
        """The rest of a length field (format.length_at's, from the stream) after its `first`
        byte."""
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
    `offset` fill in as it goes, the rest once the file has been read.

    `chunks` are the raw file bytes in order (a file read in chunks, or a decompressed backup).
    With `values`, each row of `batches()` also carries the value as DUMP serializes it (its
    type byte, then its bytes as the file has them), and the LRU idle seconds and LFU counter
    saved before it (-1 when absent): what a RESTORE payload is made of. Not for `records()`.
    """

    def __init__(self, chunks: Iterable[bytes], *, values: bool = False) -> None:
        self._in = _Input(chunks)
        self._values = values
        self.flavour = "redis"
        self.version: int | None = None
        self.aux: dict[str, str] = {}
        self.functions = 0
        self.checksum = CRC_ABSENT  # then CRC_OK or CRC_DISABLED (a mismatch raises)
        self.trailing = 0  # bytes after the checksum, which Redis ignores
        self.empty_keys = 0  # empty collections, which Redis skips on load
        self.empty_samples: list[tuple[int, bytes]] = []  # the first few of them (db, key)
        self.hash_field_ttls = 0  # hash fields with a TTL of their own
        self.hashes_with_field_ttls = 0
        self._modules: dict[int, list[int]] = {}  # module id: [values, serialized bytes]
        # TTLs are counted from the snapshot's time (its `ctime` aux field, which Redis writes
        # before the keys; files older than Redis 4 have none: then from now).
        self.snapshot_ms = int(time.time() * 1000)
        self._record_start = 0
        self._key = b""
        self._types = TYPES
        self._seen: dict[int, set[bytes]] = {}

    @property
    def offset(self) -> int:
        """Bytes read so far."""
        return self._in.offset

    @property
    def module_types(self) -> list[ModuleType]:
        """The module types whose values the file holds, most bytes first."""
        found = [
            ModuleType(name, ident, MODULE_NAMES.get(name), keys, size)
            for ident, (keys, size) in self._modules.items()
            for name in (module_type_name(ident),)
        ]
        return sorted(found, key=lambda module: (-module.bytes, module.name))

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
                f"inside the record that starts at byte {self._record_start:,}" + self._of_key()
            ) from None
        except UnknownRdbFormat as exc:
            raise RdbError(str(exc)) from None
        except (ValueError, IndexError, KeyError, OverflowError, struct.error) as exc:
            raise RdbError(
                f"RDB corrupted near byte {self._in.offset:,} (record at byte "
                f"{self._record_start:,}{self._of_key(',')}): {exc}"
            ) from None

    def _of_key(self, joint: str = "") -> str:
        if not self._key:
            return ""
        return f"{joint} key {_shown(self._key)}"

    def _batches(self) -> Iterator[list[tuple]]:
        read = self._in
        try:
            found = rdb_format(read.read(HEADER_BYTES))
        except ValueError as exc:  # no RDB at all: not a corrupted one
            raise UnknownRdbFormat(str(exc)) from None
        self.flavour, self.version = found.flavour, found.version
        if found.flavour == "valkey":
            self._types = VALKEY_TYPES
        version = found.version
        listpack_lists = version >= LISTPACK_LISTS_SINCE
        db, expire, byte = 0, -1, read.byte
        value, rows, types, checked = self._value, [], self._types, 0
        values, lru = self._values, _NO_LRU  # (idle, freq) saved for the next key
        while True:
            if len(read.buf) - read.pos < WINDOW // 2:
                read.prefetch(WINDOW)
            origin = self.snapshot_ms
            # a key after IDLE/FREQ takes the general path, which attaches them to its row
            while lru is _NO_LRU:
                read.pos, expire, cut = _fast_records(
                    read.buf, read.pos, db, expire, origin, rows, listpack_lists, values
                )
                ahead = len(read.buf) - read.pos
                if not cut or ahead >= MAX_WINDOW:
                    break
                read.prefetch(2 * ahead)
                if len(read.buf) - read.pos == ahead:  # the data ends there
                    break
            if len(rows) >= BATCH:
                self._check_duplicates(db, rows, checked)
                yield rows
                rows, checked = [], 0
            self._record_start = read.offset
            self._key = b""
            kind = byte()
            if kind < SLOT_IMPORT:
                if kind not in types:
                    raise ValueError(f"unknown value type {kind}{_foreign_type(found, kind)}")
                self._key = key = read.string()
                if values:
                    read.start_capture()
                    row = value(db, key, kind, expire, origin, listpack_lists)
                    payload = bytes((kind,)) + read.end_capture()
                    if row is not None:
                        row += (payload, *lru)
                    lru = _NO_LRU
                else:
                    row = value(db, key, kind, expire, origin, listpack_lists)
                if row is not None:
                    rows.append(row)
                expire = -1
            elif kind == EXPIRETIME_MS:
                expire = int.from_bytes(read.read(8), "little", signed=True)
            elif kind == SELECTDB:
                self._check_duplicates(db, rows, checked)
                checked = len(rows)
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
                idle = read.length()
                lru = (idle, lru[1]) if values else lru
            elif kind == FREQ:
                freq = read.byte()
                lru = (lru[0], freq) if values else lru
            elif kind == FUNCTION2:
                read.string_size()
                self.functions += 1
            elif kind == MODULE_AUX:
                read.length()
                self._skip_module_value()
            elif kind == SLOT_INFO:
                read.length()
                read.length()
                read.length()
            elif kind == SLOT_IMPORT:  # Valkey 9: a slot import's name and slot ranges
                read.string_size()
                for _ in range(2 * read.length()):
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
        self._check_duplicates(db, rows, checked)
        if rows:
            yield rows
        self._record_start = read.offset
        self._key = b""
        if version >= CHECKSUM_SINCE_VERSION:
            content = read.checksum_to_here()
            trailer = int.from_bytes(read.read(8), "little")
            if trailer and trailer != content:
                raise ValueError(
                    f"CRC64 mismatch: the trailer says {trailer:016x}, the content gives "
                    f"{content:016x} (trailer at byte {read.offset - 8:,})"
                )
            self.checksum = CRC_OK if trailer else CRC_DISABLED
        self.trailing = read.rest()

    def _check_duplicates(self, db: int, rows: list[tuple], start: int) -> None:
        """Redis refuses a file that holds a key twice in one db (rdb.c: "Duplicated key
        found in RDB file"); `rows[start:]` are all of `db`."""
        if start == len(rows):
            return
        seen = self._seen.setdefault(db, set())
        keys = list(map(_KEY_OF, rows[start:] if start else rows))
        before = len(seen)
        if seen.isdisjoint(keys):
            seen.update(keys)
            if len(seen) - before == len(keys):
                return
            seen = set()  # a key repeats among these: find which
        for key in keys:
            if key in seen:
                self._key = b""
                raise ValueError(
                    f"key {_shown(key)} appears twice in db {db} (Redis refuses such a file)"
                )
            seen.add(key)

    def _value(
        self, db: int, key: bytes, kind: int, expire: int, origin: int, listpack_lists: bool
    ) -> tuple | None:
        """The key's row, or None for an empty collection (Redis skips it on load)."""
        type_name, encoding = self._types[kind]
        read = self._in
        key_bytes = estimate.key_overhead(len(key))
        if kind == 0:
            elements, encoding = self._string_value()
            size = estimate.string_bytes(elements, encoding)
        elif kind in _BLOB_COUNTS:
            blob_bytes, blob = read.blob(kind)
            elements = _BLOB_COUNTS[kind](blob, blob_bytes)
            size = estimate.packed_bytes(blob_bytes)
        elif kind == 18 or kind == 14:
            elements, size, packed = self._quicklist(kind)
            if packed is not None and listpack_lists:
                encoding, size = "listpack", estimate.packed_bytes(packed)
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
            if self.flavour == "valkey":
                elements, size = self._valkey_hash_with_field_ttls()
            else:
                elements, size = self._hash_with_field_expiry(kind)
        elif kind == 7:
            start = read.offset
            ident = read.length()
            self._skip_module_value()
            serialized = read.offset - start
            type_name, elements, size = module_type_name(ident), 0, estimate.ROBJ + serialized
            tally = self._modules.setdefault(ident, [0, 0])
            tally[0] += 1
            tally[1] += serialized
        else:  # 6: module values of Redis 4.0 release candidates carry no opcodes
            raise ValueError(
                f"a module value in the pre-4.0 format ({module_type_name(read.length())}) "
                "cannot be skipped without its module"
            )
        if not elements and type_name in COLLECTIONS:
            self.empty_keys += 1
            if len(self.empty_samples) < EMPTY_SAMPLES:
                self.empty_samples.append((db, key))
            return None
        if expire < 0:
            ttl = expire = -1
        else:
            ttl = max(0, expire - origin)
        return (db, key, type_name, key_bytes + size, ttl, encoding, elements, expire)

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

    def _quicklist(self, kind: int) -> tuple[int, int, int | None]:
        """(elements, estimate as a quicklist, bytes of its only packed node if it has one
        node of at most LISTPACK_LIST_BYTES, else None). Empty nodes are left out, as Redis
        does on load."""
        read = self._in
        nodes = read.length()
        elements = blobs = kept = 0
        size_class = estimate.size_class
        packed = None
        for _ in range(nodes):
            container = read.length() if kind == 18 else 2
            if container not in (1, 2):
                raise ValueError(f"quicklist integrity check failed: container {container}")
            if container == 1:  # a plain node: one big element
                blob_bytes = read.string_size()
                count = 1
            else:
                blob_bytes, blob = read.blob(kind)
                if kind == 18:
                    check_listpack(blob, blob_bytes)
                    count = listpack_count(blob)
                else:
                    count = checked_ziplist_count(blob)
                packed = blob_bytes
            if not blob_bytes:
                raise ValueError("quicklist node of 0 bytes")
            if count:
                elements += count
                blobs += size_class(blob_bytes)
                kept += 1
        if kept != 1 or nodes != 1 or packed is None or packed > LISTPACK_LIST_BYTES:
            packed = None
        return elements, estimate.quicklist_bytes(blobs, kept), packed

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
            blob_bytes, blob = read.blob(kind, whole=True)
            check_listpack(blob, blob_bytes)
            items = listpack_items(blob)
            self._count_field_ttls(sum(1 for ttl in items[2::3] if ttl))
            return len(items) // 3, estimate.packed_bytes(blob_bytes)
        elements = read.length()
        strings = ttls = 0
        for _ in range(elements):
            ttls += read.length() != 0  # the field's TTL (relative to the minimum in 24)
            strings += estimate.sds_bytes(read.string_size())
            strings += estimate.sds_bytes(read.string_size())
        self._count_field_ttls(ttls)
        return elements, estimate.hashtable_bytes(elements, strings)

    def _valkey_hash_with_field_ttls(self) -> tuple[int, int]:
        """Valkey 9's hashes with field TTLs (its type 22): field, value, and a 64-bit
        expiry in ms (-1: none) per field."""
        read = self._in
        elements = read.length()
        strings = ttls = 0
        for _ in range(elements):
            strings += estimate.sds_bytes(read.string_size())
            strings += estimate.sds_bytes(read.string_size())
            ttls += read.read(8) != _NO_FIELD_TTL
        self._count_field_ttls(ttls)
        return elements, estimate.hashtable_bytes(elements, strings)

    def _count_field_ttls(self, fields: int) -> None:
        if fields:
            self.hash_field_ttls += fields
            self.hashes_with_field_ttls += 1

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


def module_type_name(module_id: int) -> str:
    """The module type's 9-character name, from the 64-bit id (module.c
    moduleTypeEncodeId: 6 bits a character from the top, then a 10-bit encoding version)."""
    return "".join(_MODULE_CHARSET[(module_id >> (64 - 6 * (i + 1))) & 63] for i in range(9))


def _foreign_type(found, kind: int) -> str:
    """What an unknown type byte suggests about the file's origin."""
    if found.flavour == "valkey" and kind in TYPES:
        return " (a Redis type Valkey does not write)"
    return " (not one Redis or Valkey writes: another server's format, or damage)"


def _shown(key: bytes) -> str:
    """A key for a message: printable (escaped where it is not), cut at 100 bytes."""
    return f"'{key_text(key[:100])}'" + ("…" if len(key) > 100 else "")


_KEY_OF = itemgetter(1)
_INTEGER_START = frozenset(b"-0123456789")
_NO_FIELD_TTL = b"\xff" * 8
_NO_LRU = (-1, -1)
EMPTY_SAMPLES = 10


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
    """Whether a listpack's header lacks its element count (so the entries must be walked);
    an intset's never does."""
    return kind != 11 and head[4:6] == b"\xff\xff"


def _is_long(text: bytes) -> bool:
    """Whether Redis would store this string as an integer (string2l: canonical form only)."""
    if not text or len(text) > 20:
        return False
    digits = text[1:] if text[:1] == b"-" else text
    if not digits.isdigit() or (digits[:1] == b"0" and len(text) > 1):
        return False
    return -(2**63) <= int(text) < 2**63


_BLOB_COUNTS = {
    9: lambda blob, size: checked_zipmap_count(blob),
    10: lambda blob, size: checked_ziplist_count(blob),
    11: checked_intset_count,
    12: lambda blob, size: checked_ziplist_count(blob, pairs=True) // 2,
    13: lambda blob, size: checked_ziplist_count(blob, pairs=True) // 2,
    16: lambda blob, size: _checked_listpack_count(blob, size) // 2,
    17: lambda blob, size: _checked_listpack_count(blob, size) // 2,
    20: lambda blob, size: _checked_listpack_count(blob, size),
}
# Zipmaps and ziplists (Redis 2.x-6.x) are walked whole, as Redis does when it converts them.
_WALKED_KINDS = frozenset((9, 10, 12, 13, 14))


def _checked_listpack_count(blob: bytes, size: int) -> int:
    check_listpack(blob, size)
    return listpack_count(blob)


# The fast path: records of the common kinds parsed straight from the buffer, without the
# per-field method calls of _Input (they cost more than the parsing). A record it cannot finish
# inside the buffer (or of a rarer kind, or malformed) is left to the general path in
# RdbReader._batches, which reads across chunks and skips big strings without buffering them.
# Both must give the same record (tests read every file both ways).

_PACKED_KINDS = frozenset((11, 16, 17, 20))  # listpacks and intsets: header checks only
_FAST_KINDS = frozenset((0, 2, 4, 18, *_PACKED_KINDS))
_SHORT = 256  # lengths below this take their estimate from a table
_KEY_BYTES = [estimate.key_overhead(n) for n in range(_SHORT)]
_SDS_BYTES = [estimate.sds_bytes(n) for n in range(_SHORT)]
_TEXT_ENCODING = ["embstr" if n <= estimate.EMBSTR_LIMIT else "raw" for n in range(_SHORT)]
_TEXT_BYTES = [estimate.string_bytes(n, _TEXT_ENCODING[n]) for n in range(_SHORT)]
_PACKED_BYTES = [estimate.packed_bytes(n) for n in range(4096)]


class _GeneralPath(Exception):
    """The fast path met something it leaves to the general path."""


def _string_at(buf: bytes, pos: int) -> tuple[int, int]:
    """(length, position after) of a string whose bytes are not needed."""
    first = buf[pos]
    if first < 0xC0:
        size, pos = length_at(buf, pos)
        return size, pos + size
    if first == 0xC3:
        compressed, pos = length_at(buf, pos + 1)
        size, pos = length_at(buf, pos)
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
        compressed, pos = length_at(buf, pos + 1)
        size, pos = length_at(buf, pos)
        return lzf_decompress(buf[pos : pos + compressed], size), pos + compressed
    if first < 0xC0:
        size, pos = length_at(buf, pos)
        return buf[pos : pos + size], pos + size
    if first > 0xC2:
        raise _GeneralPath
    end = pos + 1 + (1 << (first & 0x3F))
    return str(int.from_bytes(buf[pos + 1 : end], "little", signed=True)).encode(), end


def _blob_at(buf: bytes, pos: int, kind: int) -> tuple[int, bytes, int]:
    """(length, bytes or their header, position after) of a packed blob."""
    first = buf[pos]
    if first < 0xC0:
        size, pos = length_at(buf, pos)
        return size, buf[pos : pos + size], pos + size
    if first != 0xC3:
        raise _GeneralPath
    compressed, pos = length_at(buf, pos + 1)
    size, pos = length_at(buf, pos)
    end = pos + compressed
    if end > len(buf):
        raise _GeneralPath
    return size, _expand_blob(kind, buf[pos:end], size), end


def _fast_records(
    buf: bytes,
    pos: int,
    db: int,
    expire: int,
    origin: int,
    rows: list,
    listpack_lists: bool,
    values: bool = False,
) -> tuple[int, int, bool]:
    """Append the records from `pos` on that lie wholly in `buf` and are of a common kind
    (with `values`, each with its serialized value and no LRU/LFU, as RdbReader says).

    Returns where it stopped (a record for the general path), the expiry still pending, and
    whether a longer buffer would let it go on (a collection running past the end of `buf`).
    A value that fails a check, or an empty collection, is left to the general path, which
    says what is wrong or counts it.
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
            value_at = at
            type_name, encoding = types[kind]
            if kind == 0:
                first = buf[at]
                if first < 0x40:
                    elements, after = first, at + 1 + first
                else:
                    elements, after = _string_at(buf, at)
                if (
                    0xC0 <= first < 0xC3
                    or (
                        first < 0xC0
                        and 0 < elements <= 20
                        and buf[after - elements] in _INTEGER_START  # most text is not a number
                        and _is_long(buf[after - elements : after])
                    )
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
                    if (
                        blob_bytes < 7
                        or int.from_bytes(blob[:4], "little") != blob_bytes
                        or (len(blob) == blob_bytes and blob[-1] != 0xFF)
                    ):
                        raise _GeneralPath
                    elements = blob[4] | (blob[5] << 8)
                    if elements == 0xFFFF:
                        elements = listpack_count(blob)
                    if kind != 20:
                        elements >>= 1
                else:
                    elements = checked_intset_count(blob, blob_bytes)
                if not elements:
                    raise _GeneralPath
                if blob_bytes < packed_short:
                    size = packed_bytes[blob_bytes]
                else:
                    size = estimate.packed_bytes(blob_bytes)
            elif kind == 18:
                nodes, at = length_at(buf, at)
                elements = blobs = 0
                for _ in range(nodes):
                    container = buf[at]
                    if container == 1:  # a plain node: one big element
                        blob_bytes, at = _string_at(buf, at + 1)
                        count = 1
                    elif container == 2:
                        blob_bytes, blob, at = _blob_at(buf, at + 1, kind)
                        if (
                            blob_bytes < 7
                            or int.from_bytes(blob[:4], "little") != blob_bytes
                            or (len(blob) == blob_bytes and blob[-1] != 0xFF)
                        ):
                            raise _GeneralPath
                        count = listpack_count(blob)
                    else:
                        raise _GeneralPath
                    if not count:  # an empty node (Redis drops it) or list
                        raise _GeneralPath
                    elements += count
                    blobs += estimate.size_class(blob_bytes)
                if not nodes:
                    raise _GeneralPath
                if (
                    listpack_lists
                    and nodes == 1
                    and container == 2
                    and blob_bytes <= LISTPACK_LIST_BYTES
                ):
                    encoding = "listpack"
                    size = estimate.packed_bytes(blob_bytes)
                else:
                    size = estimate.quicklist_bytes(blobs, nodes)
            else:  # 2, 4: a set or hash as a hash table
                elements, at = length_at(buf, at)
                if not elements:
                    raise _GeneralPath
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
                row = (db, key, type_name, overhead + size, -1, encoding, elements, -1)
            else:
                ttl = expire - origin if expire > origin else 0
                row = (db, key, type_name, overhead + size, ttl, encoding, elements, expire)
            append((*row, buf[pos : pos + 1] + buf[value_at:at], -1, -1) if values else row)
            expire = -1
            pos = at
    except IndexError:
        return pos, expire, True
    except (_GeneralPath, ValueError):
        pass
    return pos, expire, False
