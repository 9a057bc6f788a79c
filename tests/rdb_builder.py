"""A small writer of RDB files for tests, in every encoding Redis ever saved.

The installed Redis 7.0 writes only RDB 10 and only today's encodings; the reader must also
handle what Redis 2.x-6.x wrote (zipmap, ziplist, linkedlist, quicklist of ziplists) and what
7.2/7.4 write (RDB 11 and 12). The byte formats are taken from Redis' own source: src/rdb.h
and rdb.c (lengths, strings, opcodes, values), ziplist.c, listpack.c, zipmap.c, intset.c,
t_stream.c (stream listpacks), module.c (module ids and opcodes) and lzf_d.c.

Values are `Value(type, payload)`; `RdbBuilder` lays out records and adds the trailer.
Strings are written as Redis writes them (`encode_string`: small integers int-encoded, long
compressible strings LZF) unless a test asks for one form (`raw_string`, `int_string`,
`lzf_string`).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from redisops.rdb.crc64 import crc64

# Value types (rdb.h RDB_TYPE_*)
STRING, LIST, SET, ZSET, HASH, ZSET_2, MODULE_PRE_GA, MODULE_2 = 0, 1, 2, 3, 4, 5, 6, 7
HASH_ZIPMAP, LIST_ZIPLIST, SET_INTSET, ZSET_ZIPLIST, HASH_ZIPLIST = 9, 10, 11, 12, 13
LIST_QUICKLIST, STREAM_LISTPACKS, HASH_LISTPACK, ZSET_LISTPACK = 14, 15, 16, 17
LIST_QUICKLIST_2, STREAM_LISTPACKS_2, SET_LISTPACK, STREAM_LISTPACKS_3 = 18, 19, 20, 21
HASH_METADATA_PRE_GA, HASH_LISTPACK_EX_PRE_GA, HASH_METADATA, HASH_LISTPACK_EX = 22, 23, 24, 25

# Opcodes (rdb.h RDB_OPCODE_*)
SLOT_INFO, FUNCTION2, FUNCTION_PRE_GA, MODULE_AUX = 0xF4, 0xF5, 0xF6, 0xF7
IDLE, FREQ, AUX, RESIZEDB = 0xF8, 0xF9, 0xFA, 0xFB
EXPIRETIME_MS, EXPIRETIME, SELECTDB, EOF = 0xFC, 0xFD, 0xFE, 0xFF

# Module value opcodes (rdb.h RDB_MODULE_OPCODE_*)
_MODULE_OPCODES = {"sint": 1, "uint": 2, "float": 3, "double": 4, "string": 5}
_MODULE_CHARSET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# quicklist.h QUICKLIST_NODE_CONTAINER_*
PLAIN, PACKED = 1, 2
# string2ll(): the canonical decimal form Redis accepts as an integer
_CANONICAL_INT = re.compile(rb"-?(0|[1-9][0-9]*)")

Element = bytes | int


class Value(NamedTuple):
    """One value as saved after its key: the RDB type byte and the bytes that follow the key."""

    type: int
    payload: bytes


# --- lengths, strings, numbers (rdb.c) ---------------------------------------------------


def length(n: int) -> bytes:
    """rdbSaveLen: 6 bits, 14 bits (big endian), or 0x80/0x81 and a 32/64-bit big-endian."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return bytes([0x40 | n >> 8, n & 0xFF])
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def raw_string(data: bytes) -> bytes:
    """A string stored verbatim: its length, then its bytes."""
    return length(len(data)) + data


def int_string(value: int) -> bytes:
    """rdbEncodeInteger: 0xC0/0xC1/0xC2 and an 8/16/32-bit little-endian signed integer."""
    for encoding, size in enumerate((1, 2, 4)):
        if -(1 << (8 * size - 1)) <= value < 1 << (8 * size - 1):
            return bytes([0xC0 | encoding]) + value.to_bytes(size, "little", signed=True)
    raise ValueError(f"{value} does not fit an int-encoded RDB string")


def lzf_string(data: bytes) -> bytes:
    """rdbSaveLzfBlob: 0xC3, compressed length, original length, LZF data."""
    packed = lzf_compress(data)
    return b"\xc3" + length(len(packed)) + length(len(data)) + packed


def encode_string(data: bytes | str) -> bytes:
    """rdbSaveRawString with rdbcompression on: integers of up to 11 characters that fit 32
    bits int-encoded, strings over 20 bytes LZF-compressed when that saves 4 bytes or more."""
    if isinstance(data, str):
        data = data.encode()
    if len(data) <= 11 and _CANONICAL_INT.fullmatch(data) and data != b"-0":
        value = int(data)
        if -(1 << 31) <= value < 1 << 31:
            return int_string(value)
    if len(data) > 20 and len(lzf_compress(data)) <= len(data) - 4:
        return lzf_string(data)
    return raw_string(data)


def blob_string(blob: bytes, *, lzf: bool = False) -> bytes:
    """A packed blob (ziplist, listpack, ...) as a string, LZF-compressed when asked."""
    return lzf_string(blob) if lzf else raw_string(blob)


def ms_time(ms: int) -> bytes:
    """rdbSaveMillisecondTime: 8 bytes, little endian."""
    return ms.to_bytes(8, "little", signed=True)


def binary_double(value: float) -> bytes:
    """rdbSaveBinaryDoubleValue (RDB 8+): IEEE 754 binary64, little endian."""
    return struct.pack("<d", value)


def string_double(value: float) -> bytes:
    """rdbSaveDoubleValue (zset type 3): 253 nan, 254 +inf, 255 -inf, else length and text."""
    if math.isnan(value):
        return b"\xfd"
    if math.isinf(value):
        return b"\xfe" if value > 0 else b"\xff"
    integral = value.is_integer() and abs(value) < 2**63  # double2ll, else fpconv_dtoa
    text = str(int(value)).encode() if integral else repr(value).encode()
    return bytes([len(text)]) + text


# --- LZF (lzf_d.c is the reference for what a decompressor accepts) ---------------------

_LZF_MAX_LITERAL = 32
_LZF_MAX_OFFSET = 8192
_LZF_MAX_MATCH = 264  # 7 + 255 + 2


def lzf_compress(data: bytes) -> bytes:
    """Valid LZF: literal runs of up to 32 bytes, and back references to an earlier 3-byte
    sequence (a greedy match, possibly overlapping the bytes it produces)."""
    out, literal, last = bytearray(), bytearray(), {}
    i, end = 0, len(data)

    def flush() -> None:
        if literal:
            out.append(len(literal) - 1)
            out.extend(literal)
            literal.clear()

    while i < end:
        ref = last.get(data[i : i + 3]) if i + 3 <= end else None
        if i + 3 <= end:
            last[data[i : i + 3]] = i
        if ref is None or i - ref > _LZF_MAX_OFFSET:
            literal.append(data[i])
            i += 1
            if len(literal) == _LZF_MAX_LITERAL:
                flush()
            continue
        size = 3
        while i + size < end and size < _LZF_MAX_MATCH and data[ref + size] == data[i + size]:
            size += 1
        flush()
        offset, extra = i - ref - 1, size - 2
        if extra < 7:
            out += bytes([extra << 5 | offset >> 8, offset & 0xFF])
        else:
            out += bytes([7 << 5 | offset >> 8, extra - 7, offset & 0xFF])
        i += size
    flush()
    return bytes(out)


# --- packed blobs ------------------------------------------------------------------------


def ziplist(entries: Sequence[Element], *, count: int | None = None) -> bytes:
    """ziplist.c: zlbytes u32, zltail u32 (offset of the last entry), zllen u16 (65535 when
    it does not fit, or `count`), entries as <prevlen><encoding><data>, then 0xFF."""
    body, prev, tail = bytearray(), 0, 10
    for entry in entries:
        tail = 10 + len(body)
        prevlen = bytes([prev]) if prev < 254 else b"\xfe" + prev.to_bytes(4, "little")
        encoded = prevlen + _ziplist_entry(entry)
        body += encoded
        prev = len(encoded)
    zllen = min(len(entries), 0xFFFF) if count is None else count
    total = 10 + len(body) + 1
    return struct.pack("<IIH", total, tail, zllen) + bytes(body) + b"\xff"


def _ziplist_entry(entry: Element) -> bytes:
    if isinstance(entry, int):
        if 0 <= entry <= 12:
            return bytes([0xF1 + entry])
        for marker, size in ((0xFE, 1), (0xC0, 2), (0xF0, 3), (0xD0, 4), (0xE0, 8)):
            if -(1 << (8 * size - 1)) <= entry < 1 << (8 * size - 1):
                return bytes([marker]) + entry.to_bytes(size, "little", signed=True)
        raise ValueError(f"{entry} does not fit a ziplist integer")
    if len(entry) <= 63:
        return bytes([len(entry)]) + entry
    if len(entry) <= 16383:
        return bytes([0x40 | len(entry) >> 8, len(entry) & 0xFF]) + entry
    return b"\x80" + len(entry).to_bytes(4, "big") + entry


def listpack(entries: Sequence[Element], *, count: int | None = None) -> bytes:
    """listpack.c: total bytes u32, element count u16 (65535 when unknown, or `count`),
    entries as <encoding+data><backlen>, then 0xFF."""
    body = bytearray()
    for entry in entries:
        encoded = _listpack_entry(entry)
        body += encoded + _listpack_backlen(len(encoded))
    numele = min(len(entries), 0xFFFF) if count is None else count
    return struct.pack("<IH", 6 + len(body) + 1, numele) + bytes(body) + b"\xff"


def _listpack_entry(entry: Element) -> bytes:
    if isinstance(entry, int):
        if 0 <= entry <= 127:
            return bytes([entry])
        if -4096 <= entry <= 4095:
            unsigned = entry & 0x1FFF
            return bytes([0xC0 | unsigned >> 8, unsigned & 0xFF])
        for marker, size in ((0xF1, 2), (0xF2, 3), (0xF3, 4), (0xF4, 8)):
            if -(1 << (8 * size - 1)) <= entry < 1 << (8 * size - 1):
                return bytes([marker]) + entry.to_bytes(size, "little", signed=True)
        raise ValueError(f"{entry} does not fit a listpack integer")
    if len(entry) < 64:
        return bytes([0x80 | len(entry)]) + entry
    if len(entry) < 4096:
        return bytes([0xE0 | len(entry) >> 8, len(entry) & 0xFF]) + entry
    return b"\xf0" + len(entry).to_bytes(4, "little") + entry


def _listpack_backlen(size: int) -> bytes:
    """lpEncodeBacklen: 1 to 5 bytes of 7 bits, most significant first, all but the first
    marked with 0x80 (the byte count follows its thresholds, not the bit length)."""
    limits = (128, 16383, 2097151, 268435455)
    count = next((n for n, limit in enumerate(limits, 1) if size < limit), 5)
    rest = [(size >> 7 * i) & 127 | 128 for i in range(count - 2, -1, -1)]
    return bytes([size >> 7 * (count - 1), *rest])


def intset(values: Sequence[int], width: int) -> bytes:
    """intset.c: encoding u32 (2, 4 or 8 bytes a member), length u32, members sorted."""
    members = b"".join(v.to_bytes(width, "little", signed=True) for v in sorted(values))
    return struct.pack("<II", width, len(values)) + members


def zipmap(
    pairs: Sequence[tuple[bytes, bytes]], *, count: int | None = None, free: int = 0
) -> bytes:
    """zipmap.c: zmlen u8 (254 when unknown, or `count`), then <len>key<len><free>value and
    `free` unused bytes per pair, then 0xFF; lengths of 254 or more take 0xFE and a u32."""
    out = bytearray([min(len(pairs), 254) if count is None else count])
    for key, value in pairs:
        out += _zipmap_length(len(key)) + key
        out += _zipmap_length(len(value)) + bytes([free]) + value + b"\x00" * free
    return bytes(out) + b"\xff"


def _zipmap_length(size: int) -> bytes:
    return bytes([size]) if size < 254 else b"\xfe" + size.to_bytes(4, "little")


# --- values ------------------------------------------------------------------------------


def packed(kind: int, blob: bytes, *, lzf: bool = False) -> Value:
    """A value that is one packed blob: zipmap (9), ziplist (10, 12, 13), intset (11),
    listpack (16, 17, 20)."""
    return Value(kind, blob_string(blob, lzf=lzf))


def string_value(data: bytes | str) -> Value:
    return Value(STRING, encode_string(data))


def linked_list(items: Sequence[bytes]) -> Value:
    """Type 1 (Redis <= 3.0 lists): a count, then each element as a string."""
    return Value(LIST, length(len(items)) + b"".join(encode_string(i) for i in items))


def hashtable_set(members: Sequence[bytes]) -> Value:
    return Value(SET, length(len(members)) + b"".join(encode_string(m) for m in members))


def hashtable_hash(pairs: Sequence[tuple[bytes, bytes]]) -> Value:
    body = b"".join(encode_string(f) + encode_string(v) for f, v in pairs)
    return Value(HASH, length(len(pairs)) + body)


def zset_string_scores(pairs: Sequence[tuple[bytes, float]]) -> Value:
    """Type 3 (RDB < 8): member, then the score as text (or 253/254/255 for nan/+inf/-inf)."""
    body = b"".join(encode_string(m) + string_double(s) for m, s in pairs)
    return Value(ZSET, length(len(pairs)) + body)


def zset_binary_scores(pairs: Sequence[tuple[bytes, float]]) -> Value:
    """Type 5 (RDB 8+): member, then the score as a binary double."""
    body = b"".join(encode_string(m) + binary_double(s) for m, s in pairs)
    return Value(ZSET_2, length(len(pairs)) + body)


def quicklist(nodes: Sequence[bytes], *, lzf: Sequence[bool] = ()) -> Value:
    """Type 14 (Redis 3.2-6.2): a node count, then each node's ziplist as a string."""
    flags = list(lzf) + [False] * (len(nodes) - len(lzf))
    body = b"".join(blob_string(n, lzf=z) for n, z in zip(nodes, flags, strict=True))
    return Value(LIST_QUICKLIST, length(len(nodes)) + body)


def plain_node(element: bytes, *, lzf: bool = False) -> bytes:
    """A quicklist 2 node holding one big element as it is (container PLAIN)."""
    return length(PLAIN) + blob_string(element, lzf=lzf)


def packed_node(blob: bytes, *, lzf: bool = False) -> bytes:
    """A quicklist 2 node holding a listpack (container PACKED)."""
    return length(PACKED) + blob_string(blob, lzf=lzf)


def quicklist2(nodes: Sequence[bytes]) -> Value:
    """Type 18 (Redis 7.0+): a node count, then per node its container and its data."""
    return Value(LIST_QUICKLIST_2, length(len(nodes)) + b"".join(nodes))


StreamId = tuple[int, int]


@dataclass(frozen=True)
class StreamGroup:
    """A consumer group; `pending` is (id, consumer, delivery time ms, delivery count)."""

    name: bytes
    last_id: StreamId
    entries_read: int
    consumers: Sequence[tuple[bytes, int, int]] = ()  # (name, seen ms, active ms)
    pending: Sequence[tuple[StreamId, bytes, int, int]] = ()


def stream(
    kind: int,
    entries: Sequence[tuple[StreamId, Sequence[tuple[bytes, bytes]]]],
    *,
    groups: Sequence[StreamGroup] = (),
    node_entries: int = 100,
) -> Value:
    """Types 15, 19 and 21 (rdbSaveObject, OBJ_STREAM): listpack nodes keyed by their master
    id, length, last id, (19+: first id, max deleted id, entries added), then the groups
    with their PEL and consumers (21: each with an active time)."""
    nodes = [entries[i : i + node_entries] for i in range(0, len(entries), node_entries)]
    out = bytearray(length(len(nodes)))
    for node in nodes:
        out += raw_string(_stream_id(node[0][0])) + raw_string(_stream_listpack(node))
    last = entries[-1][0] if entries else (0, 0)
    out += length(len(entries)) + length(last[0]) + length(last[1])
    if kind >= STREAM_LISTPACKS_2:
        first = entries[0][0] if entries else (0, 0)
        out += length(first[0]) + length(first[1]) + length(0) + length(0) + length(len(entries))
    out += length(len(groups))
    for group in groups:
        out += encode_string(group.name) + length(group.last_id[0]) + length(group.last_id[1])
        if kind >= STREAM_LISTPACKS_2:
            out += length(group.entries_read)
        pending = sorted(group.pending)
        out += length(len(pending))
        for entry_id, _, delivered_ms, deliveries in pending:
            out += _stream_id(entry_id) + ms_time(delivered_ms) + length(deliveries)
        out += length(len(group.consumers))
        for name, seen_ms, active_ms in sorted(group.consumers):
            out += encode_string(name) + ms_time(seen_ms)
            if kind >= STREAM_LISTPACKS_3:
                out += ms_time(active_ms)
            owned = [_stream_id(p[0]) for p in pending if p[1] == name]
            out += length(len(owned)) + b"".join(owned)
    return Value(kind, bytes(out))


def _stream_id(entry_id: StreamId) -> bytes:
    """A stream id as the rax key and PELs hold it: ms and seq, 64-bit big endian each."""
    return entry_id[0].to_bytes(8, "big") + entry_id[1].to_bytes(8, "big")


def _stream_listpack(node: Sequence[tuple[StreamId, Sequence[tuple[bytes, bytes]]]]) -> bytes:
    """t_stream.c streamAppendItem: the master entry (count, deleted, fields, 0), then per
    entry flags, id deltas, [fields], values and lp-count."""
    (master_ms, master_seq), master_pairs = node[0]
    master_fields = [f for f, _ in master_pairs]
    items: list[Element] = [len(node), 0, len(master_fields), *master_fields, 0]
    for (ms, seq), pairs in node:
        fields = [f for f, _ in pairs]
        if fields == master_fields:  # STREAM_ITEM_FLAG_SAMEFIELDS
            items += [2, ms - master_ms, seq - master_seq, *(v for _, v in pairs)]
            items.append(len(pairs) + 3)
        else:
            items += [0, ms - master_ms, seq - master_seq, len(pairs)]
            for f, v in pairs:
                items += [f, v]
            items.append(2 * len(pairs) + 4)
    return listpack(items)


def hash_with_field_ttls(kind: int, fields: Sequence[tuple[bytes, bytes, int]]) -> Value:
    """Types 24 and 22 (Redis 7.4, hashtable hashes with field TTLs): 24 starts with the
    minimum expiry and stores each TTL relative to it (+1); 22 (7.4 RCs) stores absolute
    TTLs; 0 means none. Each field is <ttl length><field><value>; `fields` holds (field,
    value, absolute expiry ms or 0)."""
    expiries = [ttl for _, _, ttl in fields if ttl]
    minimum = min(expiries) if expiries else 0
    out = bytearray(ms_time(minimum) if kind == HASH_METADATA else b"")
    out += length(len(fields))
    for name, value, ttl in fields:
        stored = ttl if kind == HASH_METADATA_PRE_GA or not ttl else ttl - minimum + 1
        out += length(stored) + encode_string(name) + encode_string(value)
    return Value(kind, bytes(out))


def listpack_ex(kind: int, fields: Sequence[tuple[bytes, bytes, int]]) -> Value:
    """Types 25 and 23 (Redis 7.4, listpack hashes with field TTLs): 25 starts with the
    minimum expiry; then a listpack of field, value, TTL (0 for none) triples. Redis keeps
    the fields with a TTL first, in TTL order."""
    expiries = [ttl for _, _, ttl in fields if ttl]
    prefix = ms_time(min(expiries) if expiries else 0) if kind == HASH_LISTPACK_EX else b""
    blob = listpack([item for triple in fields for item in triple])
    return Value(kind, prefix + raw_string(blob))


def module_id(name: str, encoding_version: int) -> int:
    """module.c moduleTypeEncodeId: 9 characters of 6 bits each, then a 10-bit version."""
    assert len(name) == 9
    value = 0
    for char in name:
        value = value << 6 | _MODULE_CHARSET.index(char)
    return value << 10 | encoding_version


def module_fields(fields: Sequence[tuple[str, object]]) -> bytes:
    """A module's serialized data as RedisModule_Save* writes it for RDB_TYPE_MODULE_2: each
    value after its opcode (sint/uint as lengths, float/double binary, string), then EOF."""
    out = bytearray()
    for kind, value in fields:
        out += length(_MODULE_OPCODES[kind])
        if kind in ("sint", "uint"):
            out += length(value & 0xFFFFFFFFFFFFFFFF)
        elif kind == "float":
            out += struct.pack("<f", value)
        elif kind == "double":
            out += binary_double(value)
        else:
            out += encode_string(value)
    return bytes(out) + length(0)


def module_value(ident: int, fields: Sequence[tuple[str, object]]) -> Value:
    """Type 7: the module id, then its fields with opcodes (so it can be skipped)."""
    return Value(MODULE_2, length(ident) + module_fields(fields))


# --- the file ----------------------------------------------------------------------------


class RdbBuilder:
    """Records in the order they are added; `build()` adds EOF and, from version 5 on, the
    CRC64 trailer (zeros when `checksum=False`, as with rdbchecksum no)."""

    def __init__(self, version: int) -> None:
        self.version = version
        self._out = bytearray(b"REDIS%04d" % version)

    @property
    def offset(self) -> int:
        """Where the next record starts in the file."""
        return len(self._out)

    def raw(self, data: bytes) -> None:
        self._out += data

    def aux(self, name: str, value: str) -> None:
        self._out += bytes([AUX]) + encode_string(name) + encode_string(value)

    def select_db(self, db: int) -> None:
        self._out += bytes([SELECTDB]) + length(db)

    def resize_db(self, keys: int, expires: int) -> None:
        self._out += bytes([RESIZEDB]) + length(keys) + length(expires)

    def slot_info(self, slot: int, keys: int, expires: int) -> None:
        self._out += bytes([SLOT_INFO]) + length(slot) + length(keys) + length(expires)

    def function(self, code: str) -> None:
        self._out += bytes([FUNCTION2]) + encode_string(code)

    def module_aux(self, ident: int, when: int, fields: Sequence[tuple[str, object]]) -> None:
        """rdbSaveSingleModuleAux: the id, a uint opcode with `when`, the fields, EOF."""
        head = bytes([MODULE_AUX]) + length(ident) + length(_MODULE_OPCODES["uint"])
        self._out += head + length(when) + module_fields(fields)

    def key(
        self,
        key: bytes | str,
        value: Value,
        *,
        expire_ms: int | None = None,
        expire_s: int | None = None,
        idle: int | None = None,
        freq: int | None = None,
    ) -> None:
        """rdbSaveKeyValuePair: expiry, LRU idle seconds, LFU counter, then type, key, value."""
        if expire_s is not None:
            self._out += bytes([EXPIRETIME]) + expire_s.to_bytes(4, "little", signed=True)
        if expire_ms is not None:
            self._out += bytes([EXPIRETIME_MS]) + ms_time(expire_ms)
        if idle is not None:
            self._out += bytes([IDLE]) + length(idle)
        if freq is not None:
            self._out += bytes([FREQ, freq])
        self._out += bytes([value.type]) + encode_string(key) + value.payload

    def build(self, *, checksum: bool = True) -> bytes:
        data = bytes(self._out) + bytes([EOF])
        if self.version < 5:
            return data
        trailer = crc64(data) if checksum else 0
        return data + trailer.to_bytes(8, "little")
