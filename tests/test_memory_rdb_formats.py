"""The offline RDB reader on hand-built files: RDB 1 to 12 and every encoding Redis ever saved,
including those the installed Redis 7.0 can no longer write (zipmap, ziplist, linkedlist,
quicklist of ziplists) and those it cannot read (RDB 11 and 12).

The files come from tests/rdb_builder.py. Those of RDB 10 or older are also loaded by a real
redis-server 7.0 (which converts old encodings on load) and checked by redis-check-rdb, both
with deep sanitization: so the builder writes valid files and the reader is held to what
Redis itself makes of them.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import NamedTuple

import pytest
import redis

from redisops.backup.checktool import ToolVerdict, rdb_verdict
from redisops.rdb import reader as reader_module
from redisops.rdb.reader import RdbError, RdbKey, RdbReader
from tests import rdb_builder as rb
from tests.cli_helpers import redisops
from tests.servers import start_redis_server

EXPIRE_S = 2_000_000_000  # 2033: EXPIRETIME holds 32-bit seconds
EXPIRE_MS = 4_102_444_800_123  # 2100
FIELD_TTL_MS = 1_900_000_000_000
SEEN_MS = 1_700_000_000_000
LIBRARY = "#!lua name=rdbformats\nredis.register_function('answer', function() return 42 end)"
LENGTH_COMMANDS = {
    "string": "STRLEN",
    "list": "LLEN",
    "set": "SCARD",
    "zset": "ZCARD",
    "hash": "HLEN",
    "stream": "XLEN",
}
LOAD_SECONDS = 10
CHUNK_SIZES = (1, 7, 65536)


class Want(NamedTuple):
    """What the reader must say of one key (RdbKey without the memory estimate)."""

    db: int
    key: bytes
    type: str
    encoding: str | None
    elements: int
    expire_ms: int


class Planned(rb.RdbBuilder):
    """An RdbBuilder that notes, beside each key it writes, what the reader must say of it."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.db = 0
        self.wants: list[Want] = []

    def select_db(self, db: int) -> None:
        super().select_db(db)
        self.db = db

    def put(
        self,
        key: bytes,
        value: rb.Value,
        want: tuple[str, str | None, int],
        *,
        expire_ms: int | None = None,
        expire_s: int | None = None,
        idle: int | None = None,
        freq: int | None = None,
    ) -> None:
        self.key(key, value, expire_ms=expire_ms, expire_s=expire_s, idle=idle, freq=freq)
        expire = expire_ms if expire_ms is not None else -1
        if expire_s is not None:
            expire = expire_s * 1000
        self.wants.append(Want(self.db, key, *want, expire))


@dataclass(frozen=True)
class Built:
    """A built file and everything the reader must find in it."""

    data: bytes
    version: int
    wants: list[Want]
    aux: dict[str, str] = field(default_factory=dict)
    functions: int = 0
    module_values: int = 0
    redis_loads: bool = True  # redis-server 7.0 loads it: RDB <= 10, types <= 19, no modules
    redis_checks: bool = True  # redis-check-rdb 7.0 accepts it (it skips module values)


def _stream_entries() -> list[tuple[rb.StreamId, list[tuple[bytes, bytes]]]]:
    """Five entries over two listpack nodes; one has fields other than its master entry's."""
    clicks = [(b"n", b"1"), (b"kind", b"click")]
    return [
        ((SEEN_MS, 0), clicks),
        ((SEEN_MS, 1), clicks),
        ((SEEN_MS + 5, 0), [(b"other", b"x"), (b"more", b"y")]),
        ((SEEN_MS + 9, 0), [(b"n", b"4"), (b"kind", b"view")]),
        ((SEEN_MS + 10, 3), [(b"n", b"5"), (b"kind", b"view")]),
    ]


def _stream_groups() -> list[rb.StreamGroup]:
    """A group with two consumers owning three pending entries, and an idle group."""
    workers = rb.StreamGroup(
        b"workers",
        last_id=(SEEN_MS + 5, 0),
        entries_read=3,
        consumers=[(b"alice", SEEN_MS + 20, SEEN_MS + 19), (b"bob", SEEN_MS + 21, SEEN_MS + 18)],
        pending=[
            ((SEEN_MS, 0), b"alice", SEEN_MS + 11, 1),
            ((SEEN_MS, 1), b"bob", SEEN_MS + 12, 2),
            ((SEEN_MS + 5, 0), b"alice", SEEN_MS + 13, 1),
        ],
    )
    return [workers, rb.StreamGroup(b"audit", last_id=(0, 0), entries_read=0)]


def build_redis_26() -> Built:
    """RDB 3 (Redis 2.6): no AUX, no checksum; every pre-3.2 encoding; EXPIRETIME in s and ms."""
    rdb = Planned(3)
    rdb.select_db(0)
    rdb.put(b"s:plain", rb.string_value(b"hello world"), ("string", "embstr", 11))
    rdb.put(b"s:int8", rb.Value(rb.STRING, rb.int_string(-7)), ("string", "int", 2))
    rdb.put(b"s:int16", rb.Value(rb.STRING, rb.int_string(1234)), ("string", "int", 4))
    rdb.put(b"s:int32", rb.Value(rb.STRING, rb.int_string(-2_000_000_000)), ("string", "int", 11))
    rdb.put(b"s:digits", rb.Value(rb.STRING, rb.raw_string(b"123456789012")), ("string", "int", 12))
    rdb.put(
        b"s:lzf-short", rb.Value(rb.STRING, rb.lzf_string(b"ab" * 15)), ("string", "embstr", 30)
    )
    rdb.put(b"s:lzf-long", rb.Value(rb.STRING, rb.lzf_string(b"abc" * 30)), ("string", "raw", 90))
    rdb.put(b"s:empty", rb.Value(rb.STRING, rb.raw_string(b"")), ("string", "embstr", 0))
    rdb.put(b"s:expire-s", rb.string_value(b"x"), ("string", "embstr", 1), expire_s=EXPIRE_S)
    rdb.put(b"s:expire-ms", rb.string_value(b"y"), ("string", "embstr", 1), expire_ms=EXPIRE_MS)
    rdb.put(b"12345", rb.string_value(b"int-encoded key"), ("string", "embstr", 15))
    rdb.put(b"key:" + b"long" * 10, rb.string_value(b"v"), ("string", "embstr", 1))  # LZF key
    linked = rb.linked_list([b"a", b"1000", b"x" * 30])
    rdb.put(b"l:linked", linked, ("list", "linkedlist", 3))
    rdb.put(b"set:ht", rb.hashtable_set([b"m1", b"m2", b"-5"]), ("set", "hashtable", 3))
    hashtable = rb.hashtable_hash([(b"f1", b"v1"), (b"n", b"42")])
    rdb.put(b"h:ht", hashtable, ("hash", "hashtable", 2))
    scores = [(b"a", 1.5), (b"b", math.inf), (b"c", -math.inf), (b"d", -3.0)]
    rdb.put(b"z:strings", rb.zset_string_scores(scores), ("zset", "skiplist", 4))
    zipmap = rb.zipmap([(b"name", b"ada"), (b"lang", b"c")], free=2)
    rdb.put(b"h:zipmap", rb.packed(rb.HASH_ZIPMAP, zipmap), ("hash", "zipmap", 2))
    # every ziplist entry encoding; the entry after the 303-byte one has a 5-byte prevlen
    items = [b"x", 5, -100, 300, 70_000, 3_000_000_000, 2**40, b"y" * 70, b"z" * 300, b"end"]
    rdb.put(b"l:ziplist", rb.packed(rb.LIST_ZIPLIST, rb.ziplist(items)), ("list", "ziplist", 10))
    intset = rb.intset([3, -2, 1000], 2)
    rdb.put(b"set:intset16", rb.packed(rb.SET_INTSET, intset), ("set", "intset", 3))
    zset = rb.ziplist([b"a", 1, b"b", b"2.5"])
    rdb.put(b"z:ziplist", rb.packed(rb.ZSET_ZIPLIST, zset), ("zset", "ziplist", 2))
    hash_zl = rb.ziplist([b"f", b"v", b"g", 7])
    rdb.put(b"h:ziplist", rb.packed(rb.HASH_ZIPLIST, hash_zl), ("hash", "ziplist", 2))
    rdb.select_db(3)
    rdb.put(b"db3:s", rb.string_value(b"three"), ("string", "embstr", 5), expire_ms=EXPIRE_MS)
    rdb.select_db(15)
    rdb.put(b"db15:s", rb.string_value(b"fifteen"), ("string", "embstr", 7))
    return Built(rdb.build(), 3, rdb.wants)


def build_redis_28() -> Built:
    """RDB 6 (Redis 2.8): checksummed; intsets of 32 and 64 bits, LZF-compressed blobs."""
    rdb = Planned(6)
    rdb.select_db(0)
    intset32 = rb.packed(rb.SET_INTSET, rb.intset([70_000, -70_000, 5], 4))
    rdb.put(b"set:intset32", intset32, ("set", "intset", 3))
    intset64 = rb.packed(rb.SET_INTSET, rb.intset([2**40, -(2**40), 0], 8))
    rdb.put(b"set:intset64", intset64, ("set", "intset", 3))
    evens = rb.packed(rb.SET_INTSET, rb.intset(range(0, 200, 2), 2), lzf=True)
    rdb.put(b"set:intset-lzf", evens, ("set", "intset", 100), expire_ms=EXPIRE_MS)
    pairs = rb.ziplist([item for i in range(30) for item in (b"field-%d" % i, b"value-%d" % i)])
    rdb.put(b"h:ziplist-lzf", rb.packed(rb.HASH_ZIPLIST, pairs, lzf=True), ("hash", "ziplist", 30))
    zipmap = rb.zipmap([(b"k%d" % i, b"some value %d" % i) for i in range(10)])
    rdb.put(b"h:zipmap-lzf", rb.packed(rb.HASH_ZIPMAP, zipmap, lzf=True), ("hash", "zipmap", 10))
    rdb.select_db(1)
    rdb.put(b"db1:list", rb.linked_list([b"only"]), ("list", "linkedlist", 1), expire_s=EXPIRE_S)
    return Built(rdb.build(), 6, rdb.wants)


def build_redis_32() -> Built:
    """RDB 7 (Redis 3.2): AUX fields (integers int-encoded), RESIZEDB, quicklists of ziplists."""
    rdb = Planned(7)
    aux = {"redis-ver": "3.2.12", "redis-bits": "64", "ctime": "1500000000", "used-mem": "1048576"}
    for name, value in aux.items():
        rdb.aux(name, value)
    rdb.select_db(0)
    rdb.resize_db(3, 1)
    nodes = [rb.ziplist([b"a", b"b", 3]), rb.ziplist([b"c" * 40, 100])]
    two = rb.quicklist(nodes, lzf=[False, True])
    rdb.put(b"l:quicklist", two, ("list", "quicklist", 5))
    one = rb.quicklist([rb.ziplist(list(range(10)))])
    rdb.put(b"l:quicklist-one", one, ("list", "quicklist", 10), expire_ms=EXPIRE_MS)
    rdb.put(b"s:str", rb.string_value(b"x" * 60), ("string", "raw", 60))
    rdb.select_db(2)
    rdb.resize_db(1, 0)
    rdb.put(b"db2:set", rb.hashtable_set([b"a", b"b"]), ("set", "hashtable", 2))
    return Built(rdb.build(), 7, rdb.wants, aux=aux)


def build_redis_5() -> Built:
    """RDB 9 (Redis 5): zsets with binary scores, LRU/LFU opcodes, a stream of 2 nodes with
    consumer groups (listpacks 1)."""
    rdb = Planned(9)
    aux = {"redis-ver": "5.0.14", "aof-preamble": "0"}
    for name, value in aux.items():
        rdb.aux(name, value)
    rdb.select_db(0)
    rdb.resize_db(3, 1)
    zset = rb.zset_binary_scores([(b"a", 0.5), (b"b", 1e300), (b"c", -math.inf)])
    rdb.put(b"z:binary", zset, ("zset", "skiplist", 3), idle=3600)
    hash_zl = rb.packed(rb.HASH_ZIPLIST, rb.ziplist([b"f", b"v"]))
    rdb.put(b"h:ziplist", hash_zl, ("hash", "ziplist", 1), freq=200, expire_ms=EXPIRE_MS)
    entries, groups = _stream_entries(), _stream_groups()
    stream = rb.stream(rb.STREAM_LISTPACKS, entries, groups=groups, node_entries=3)
    rdb.put(b"x:stream", stream, ("stream", "stream", 5))
    return Built(rdb.build(), 9, rdb.wants, aux=aux)


def build_redis_70() -> Built:
    """RDB 10 (Redis 7.0), saved with rdbchecksum no (a zero trailer): listpacks, quicklist 2
    with plain and packed nodes, a stream (listpacks 2) with groups, a function library."""
    rdb = Planned(10)
    aux = {"redis-ver": "7.0.0", "redis-bits": "64", "aof-base": "0"}
    for name, value in aux.items():
        rdb.aux(name, value)
    rdb.function(LIBRARY)
    rdb.select_db(0)
    rdb.resize_db(5, 2)
    hash_lp = rb.packed(rb.HASH_LISTPACK, rb.listpack([b"f1", b"v1", b"f2", 2]))
    rdb.put(b"h:listpack", hash_lp, ("hash", "listpack", 2))
    # every listpack entry encoding
    members = [b"a", 1, b"b", b"2.5", b"c", -3000, b"d", 30_000, b"e", 5_000_000, b"f", 2**31, b"g"]
    members += [2**40, b"h" * 70, 1]
    zset = rb.packed(rb.ZSET_LISTPACK, rb.listpack(members))
    rdb.put(b"z:listpack", zset, ("zset", "listpack", 8), expire_s=EXPIRE_S)
    nodes = [
        rb.packed_node(rb.listpack([b"a", 1, 2])),
        rb.plain_node(b"P" * 100),
        rb.packed_node(rb.listpack([b"b" * 50] * 4), lzf=True),
        rb.plain_node(b"Q" * 200, lzf=True),
    ]
    rdb.put(b"l:quicklist2", rb.quicklist2(nodes), ("list", "quicklist", 9))
    stream = rb.stream(rb.STREAM_LISTPACKS_2, _stream_entries(), groups=_stream_groups())
    rdb.put(b"x:stream", stream, ("stream", "stream", 5), expire_ms=EXPIRE_MS)
    rdb.put(b"s:int", rb.string_value(b"-42"), ("string", "int", 3))
    rdb.select_db(9)
    rdb.put(b"db9:s", rb.string_value(b"nine"), ("string", "embstr", 4))
    return Built(rdb.build(checksum=False), 10, rdb.wants, aux=aux, functions=1)


MODULE = rb.module_id("TestType1", 3)


def build_modules() -> Built:
    """RDB 10 with module aux data before and after the keys, and a module value (type 7)
    with every kind of field between ordinary keys."""
    rdb = Planned(10)
    rdb.aux("redis-ver", "7.0.15")
    rdb.module_aux(MODULE, 1, [("uint", 1), ("string", b"before the keys")])
    rdb.select_db(0)
    rdb.put(b"s:before", rb.string_value(b"b"), ("string", "embstr", 1))
    fields = [("uint", 7), ("sint", -5), ("float", 1.5), ("double", 2.25), ("string", b"hello")]
    fields += [("string", b"x" * 100), ("uint", 2**40)]
    value = rb.module_value(MODULE, fields)
    rdb.put(b"mod:key", value, ("TestType1", None, 0), expire_ms=EXPIRE_MS)
    rdb.put(b"s:after", rb.string_value(b"after"), ("string", "embstr", 5))
    hash_lp = rb.packed(rb.HASH_LISTPACK, rb.listpack([b"f", b"v"]))
    rdb.put(b"h:after", hash_lp, ("hash", "listpack", 1))
    rdb.module_aux(MODULE, 2, [("double", 0.5)])
    return Built(
        rdb.build(), 10, rdb.wants, aux={"redis-ver": "7.0.15"}, module_values=1,
        redis_loads=False,
    )  # fmt: skip


def build_saturated_counts() -> Built:
    """RDB 10 with packed blobs whose header lacks the element count, all LZF-compressed:
    a ziplist of 70,000 entries (zllen 65535), a zipmap of 300 pairs (zmlen 254), and
    ziplists and listpacks whose count says 'unknown' (65535) though they hold a few, with
    every entry encoding the walk must step over."""
    rdb = Planned(10)
    rdb.select_db(0)
    big = rb.packed(rb.LIST_ZIPLIST, rb.ziplist([1] * 70_000), lzf=True)
    rdb.put(b"l:ziplist-70000", big, ("list", "ziplist", 70_000))
    zipmap = rb.zipmap([(b"f%d" % i, b"v%d" % i) for i in range(300)], free=1)
    rdb.put(b"h:zipmap-300", rb.packed(rb.HASH_ZIPMAP, zipmap, lzf=True), ("hash", "zipmap", 300))
    strings = [b"a", b"c" * 300, b"d", b"w" * 20_000, b"e"]  # 14- and 32-bit lengths, long prevlens
    unknown_zl = rb.ziplist(strings, count=0xFFFF)
    quicklist = rb.quicklist([rb.ziplist([b"first"]), unknown_zl], lzf=[False, True])
    rdb.put(b"l:quicklist-unknown", quicklist, ("list", "quicklist", 6))
    numbers = [1, 300, 70_000, 3_000_000_000, 2**40, -100]
    scored = rb.ziplist(
        [item for i, n in enumerate(numbers) for item in (b"m%d" % i, n)], count=0xFFFF
    )
    zset = rb.packed(rb.ZSET_ZIPLIST, scored, lzf=True)
    rdb.put(b"z:ziplist-unknown", zset, ("zset", "ziplist", 6))
    hash_lp = rb.listpack([b"f1", b"v1", b"f2", b"v2", b"f3", 3], count=0xFFFF)
    rdb.put(
        b"h:listpack-unknown",
        rb.packed(rb.HASH_LISTPACK, hash_lp, lzf=True),
        ("hash", "listpack", 3),
    )
    items = [b"x", b"y" * 100, b"v" * 5000, 1, -3000, 30_000, 5_000_000, 2**31, 2**40]
    node = rb.packed_node(rb.listpack(items, count=0xFFFF), lzf=True)
    rdb.put(b"l:quicklist2-unknown", rb.quicklist2([node]), ("list", "quicklist", 9))
    return Built(rdb.build(), 10, rdb.wants)


def build_redis_72() -> Built:
    """RDB 11 (Redis 7.2): sets as listpacks, streams (listpacks 3) with consumer active
    times. Redis 7.0 cannot read it."""
    rdb = Planned(11)
    aux = {"redis-ver": "7.2.4"}
    rdb.aux("redis-ver", "7.2.4")
    rdb.select_db(0)
    set_lp = rb.packed(rb.SET_LISTPACK, rb.listpack([b"a", 1, b"b", -70_000]))
    rdb.put(b"set:listpack", set_lp, ("set", "listpack", 4))
    set_lzf = rb.packed(rb.SET_LISTPACK, rb.listpack([b"m%d" % i for i in range(40)]), lzf=True)
    rdb.put(b"set:listpack-lzf", set_lzf, ("set", "listpack", 40), expire_ms=EXPIRE_MS)
    unknown = rb.packed(rb.SET_LISTPACK, rb.listpack([b"a", b"b", 3], count=0xFFFF), lzf=True)
    rdb.put(b"set:listpack-unknown", unknown, ("set", "listpack", 3))
    stream = rb.stream(rb.STREAM_LISTPACKS_3, _stream_entries(), groups=_stream_groups())
    rdb.put(b"x:stream", stream, ("stream", "stream", 5))
    empty = rb.stream(rb.STREAM_LISTPACKS_3, [], groups=[rb.StreamGroup(b"g", (0, 0), 0)])
    rdb.put(b"x:empty", empty, ("stream", "stream", 0))
    return Built(rdb.build(), 11, rdb.wants, aux=aux, redis_loads=False, redis_checks=False)


def build_redis_74() -> Built:
    """RDB 12 (Redis 7.4): SLOT_INFO, hashes with field TTLs as a hashtable (24) and as a
    listpack (25). Redis 7.0 cannot read it."""
    rdb = Planned(12)
    rdb.aux("redis-ver", "7.4.1")
    rdb.select_db(0)
    rdb.resize_db(3, 1)
    rdb.slot_info(866, 2, 1)
    fields = [(b"a", b"1", FIELD_TTL_MS + 500), (b"b", b"2", 0), (b"c", b"3", FIELD_TTL_MS)]
    hashtable = rb.hash_with_field_ttls(rb.HASH_METADATA, fields)
    rdb.put(b"h:ttl-table", hashtable, ("hash", "hashtable", 3), expire_ms=EXPIRE_MS)
    triples = [(b"a", b"1", FIELD_TTL_MS), (b"b", b"2", FIELD_TTL_MS + 5), (b"c", b"3", 0)]
    rdb.put(
        b"h:ttl-listpack", rb.listpack_ex(rb.HASH_LISTPACK_EX, triples), ("hash", "listpackex", 3)
    )
    rdb.slot_info(15495, 1, 0)
    rdb.put(b"s:other-slot", rb.string_value(b"v"), ("string", "embstr", 1))
    aux = {"redis-ver": "7.4.1"}
    return Built(rdb.build(), 12, rdb.wants, aux=aux, redis_loads=False, redis_checks=False)


def build_nan_scores() -> Built:
    """RDB 8 (Redis 4.0) with a type-3 zset holding a nan score, which Redis refuses on load
    ("Zset with NAN score detected") but the reader only has to count."""
    rdb = Planned(8)
    scores = [(b"nan", math.nan), (b"up", math.inf), (b"down", -math.inf), (b"pi", 3.14159)]
    rdb.put(b"z:nan", rb.zset_string_scores(scores), ("zset", "skiplist", 4), idle=5, freq=3)
    return Built(rdb.build(), 8, rdb.wants, redis_loads=False, redis_checks=False)


SCENARIOS: dict[str, Callable[[], Built]] = {
    "rdb3-redis-2.6": build_redis_26,
    "rdb6-redis-2.8": build_redis_28,
    "rdb7-redis-3.2": build_redis_32,
    "rdb8-nan-scores": build_nan_scores,
    "rdb9-redis-5": build_redis_5,
    "rdb10-redis-7.0": build_redis_70,
    "rdb10-modules": build_modules,
    "rdb10-saturated-counts": build_saturated_counts,
    "rdb11-redis-7.2": build_redis_72,
    "rdb12-redis-7.4": build_redis_74,
}


@cache
def built(name: str) -> Built:
    return SCENARIOS[name]()


LOADABLE = [name for name in SCENARIOS if built(name).redis_loads]
CHECKABLE = [name for name in SCENARIOS if built(name).redis_checks]


def read(data: bytes, chunk: int = 65536) -> tuple[RdbReader, list[RdbKey]]:
    reader = RdbReader(data[i : i + chunk] for i in range(0, len(data), chunk))
    return reader, list(reader.records())


def described(records: list[RdbKey]) -> list[Want]:
    return [Want(r.db, r.key, r.type, r.encoding, r.elements, r.expire_ms) for r in records]


@contextmanager
def redis_on(folder: Path, data: bytes) -> Iterator[Callable[[int], redis.Redis]]:
    """redis-server 7.0 started on `data` as its dump.rdb, with deep sanitization of what it
    loads; yields a client factory by db. Fails with the server's log if it did not load."""
    (folder / "dump.rdb").write_bytes(data)
    process, port = start_redis_server(
        folder, "--dbfilename", "dump.rdb", "--sanitize-dump-payload", "yes"
    )
    log = folder / f"redis-{port}.log"
    try:
        deadline = time.monotonic() + LOAD_SECONDS
        while True:
            try:
                redis.Redis(port=port).ping()
                break
            except redis.BusyLoadingError:
                assert time.monotonic() < deadline, "redis-server still loading"
                time.sleep(0.05)
            except redis.ConnectionError:
                pytest.fail(f"redis-server did not load the file:\n{log.read_text()[-2000:]}")
        yield lambda db: redis.Redis(port=port, db=db)
    finally:
        process.kill()
        process.wait(timeout=10)


def test_the_builder_saturates_counts_as_redis_does():
    """So the saturated-counts scenario really makes the reader walk the entries."""
    assert rb.ziplist([1] * 70_000)[8:10] == b"\xff\xff"
    assert rb.ziplist([1] * 65_534)[8:10] == (65_534).to_bytes(2, "little")
    assert rb.zipmap([(b"f%d" % i, b"v") for i in range(300)])[0] == 254
    assert rb.zipmap([(b"f%d" % i, b"v") for i in range(253)])[0] == 253
    assert rb.listpack([b"a"], count=0xFFFF)[4:6] == b"\xff\xff"
    compressed = rb.packed(rb.LIST_ZIPLIST, rb.ziplist([1] * 70_000), lzf=True).payload
    assert compressed[0] == 0xC3 and len(compressed) < 2_000  # back references, not literals


@pytest.mark.parametrize("version", range(1, 13))
def test_every_version_header_is_read(version, tmp_path):
    rdb = Planned(version)
    if version >= 7:
        rdb.aux("redis-ver", "0.0.0")
    rdb.put(b"k", rb.string_value(b"v"), ("string", "embstr", 1))
    data = rdb.build()
    assert data.startswith(b"REDIS%04d" % version)
    # the trailer: none before RDB 5, a CRC64 from 5 on
    assert data.endswith(b"\xff") == (version < 5)
    reader, records = read(data)
    assert reader.version == version
    assert described(records) == [Want(0, b"k", "string", "embstr", 1, -1)]
    if version <= 10:  # the installed redis-check-rdb (7.0) knows RDB 1 to 10
        path = tmp_path / "dump.rdb"
        path.write_bytes(data)
        verdict = _check_rdb(path)
        assert (verdict.ok, verdict.keys) == (True, 1), verdict.message


def test_an_unknown_version_or_format_is_named_not_called_corrupted(tmp_path):
    """Issue 20 item 17: a newer version, or another server's format, is said to be such
    (never "corrupted"), and `memory rdb` exits 1."""
    newer = Planned(13).build()
    valkey_newer = b"VALKEY081" + Planned(13).build()[9:]
    expected = {
        newer: "RDB version 13 is newer than this reader knows (Redis RDB 1 to 12, Valkey "
        "format 80)",
        valkey_newer: "a Valkey RDB (format 81), newer than what this reader knows (Valkey "
        "format 80; Redis RDB 1 to 12)",
        b"KEYDB0001" + newer[9:]: "not an RDB file (no REDIS or VALKEY header)",
    }
    for data, message in expected.items():
        with pytest.raises(RdbError) as caught:
            read(data)
        assert str(caught.value) == message
        path = tmp_path / "dump.rdb"
        path.write_bytes(data)
        run = redisops("-o", "json", "memory", "rdb", str(path))
        assert run.exit_code == 1
        assert run.json()["results"][0]["error"] == message


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_encoding_is_read_exactly(name):
    case = built(name)
    reader, records = read(case.data)
    assert described(records) == case.wants
    assert reader.version == case.version
    assert reader.aux == case.aux
    module_values = sum(module.keys for module in reader.module_types)
    assert (reader.functions, module_values) == (case.functions, case.module_values)
    assert reader.offset == len(case.data)


@pytest.mark.parametrize("name", LOADABLE)
def test_redis_7_0_loads_the_same_keys(name, tmp_path):
    case = built(name)
    with redis_on(tmp_path, case.data) as client:
        for db in sorted({w.db for w in case.wants}):
            assert client(db).dbsize() == sum(w.db == db for w in case.wants), db
        for want in case.wants:
            live = client(want.db)
            assert live.type(want.key).decode() == want.type, want.key
            count = live.execute_command(LENGTH_COMMANDS[want.type], want.key)
            assert count == want.elements, want.key
            assert live.execute_command("PEXPIRETIME", want.key) == want.expire_ms, want.key
            if want.expire_ms > 0:
                assert live.pttl(want.key) > 0
        assert len(client(0).function_list()) == case.functions


@pytest.mark.parametrize("name", CHECKABLE)
def test_redis_check_rdb_finds_the_same_keys(name, tmp_path):
    case = built(name)
    path = tmp_path / "dump.rdb"
    path.write_bytes(case.data)
    verdict = _check_rdb(path)
    assert verdict.ok, verdict.message
    assert verdict.keys == len(case.wants)
    assert verdict.expires == sum(w.expire_ms >= 0 for w in case.wants)


def _check_rdb(path: Path) -> ToolVerdict:
    done = subprocess.run(
        ["redis-check-rdb", str(path)], capture_output=True, timeout=30, check=False
    )
    return rdb_verdict(done.returncode, done.stdout + done.stderr)


def test_redis_refuses_the_nan_score_the_reader_counts(tmp_path):
    """The builder wrote the nan form Redis knows (253): Redis refuses it, the reader counts."""
    path = tmp_path / "dump.rdb"
    path.write_bytes(built("rdb8-nan-scores").data)
    verdict = _check_rdb(path)
    assert not verdict.ok
    assert verdict.message.endswith("Zset with NAN score detected"), verdict.message


@pytest.mark.parametrize("name", SCENARIOS)
def test_records_do_not_depend_on_chunk_boundaries(name):
    case = built(name)
    seen = []
    for chunk in CHUNK_SIZES:
        reader, records = read(case.data, chunk)
        estimates = [r.bytes for r in records]  # ttl_ms is left out: it counts from now
        facts = (reader.aux, reader.functions, reader.module_types, reader.offset)
        seen.append((described(records), estimates, facts))
    assert seen[0][0] == case.wants
    assert seen[0] == seen[1] == seen[2]


def test_a_pre_release_module_value_is_refused_naming_its_offset():
    """Type 6 (Redis 4.0 release candidates) has no opcodes: it cannot be skipped."""
    rdb = Planned(8)
    rdb.put(b"before", rb.string_value(b"v"), ("string", "embstr", 1))
    offset = rdb.offset
    rdb.raw(bytes([rb.MODULE_PRE_GA]) + rb.encode_string(b"legacy"))
    rdb.raw(rb.length(rb.module_id("TestType1", 0)) + b"\x01\x02\x03")
    with pytest.raises(RdbError) as caught:
        read(rdb.build())
    message = str(caught.value)
    assert f"record at byte {offset}" in message and "TestType1" in message, message


def test_release_candidate_functions_are_skipped_and_counted():
    """FUNCTION_PRE_GA (Redis 7.0-rc1/rc2): name, engine, description flag, [description,]
    code. Redis 7.0 loads these files, so the reader reads past them."""
    rdb = Planned(10)
    rdb.put(b"before", rb.string_value(b"v"), ("string", "embstr", 1))
    body = rb.encode_string("rclib") + rb.encode_string("LUA") + rb.length(0)
    rdb.raw(bytes([rb.FUNCTION_PRE_GA]) + body + rb.encode_string("return 1"))
    described_body = rb.encode_string("rc2") + rb.encode_string("LUA") + rb.length(1)
    described_body += rb.encode_string("a library with a description")
    rdb.raw(bytes([rb.FUNCTION_PRE_GA]) + described_body + rb.encode_string("return 2"))
    rdb.put(b"after", rb.string_value(b"v"), ("string", "embstr", 1))
    reader, records = read(rdb.build())
    assert described(records) == rdb.wants
    assert reader.functions == 2


def test_hashes_with_field_ttls_from_redis_74_release_candidates():
    """Types 22 and 23 (7.4-rc1/rc2): no minimum expiry first; in 22 each field's TTL is an
    absolute time saved with rdbSaveLen (rdb.c rdbLoadObject, RDB_TYPE_HASH_METADATA_PRE_GA:
    `rdbLoadLenByRef(rdb, NULL, &ttl)`, `expireAt = ttl; /* Value is absolute */`)."""
    rdb = Planned(12)
    rdb.select_db(0)
    triples = [(b"a", b"1", FIELD_TTL_MS), (b"b", b"2", 0)]
    lpex = rb.listpack_ex(rb.HASH_LISTPACK_EX_PRE_GA, triples)
    rdb.put(b"h:rc-listpack", lpex, ("hash", "listpackex", 2))
    table = rb.hash_with_field_ttls(rb.HASH_METADATA_PRE_GA, triples)
    rdb.put(b"h:rc-table", table, ("hash", "hashtable", 2))
    rdb.put(b"s:after", rb.string_value(b"v"), ("string", "embstr", 1))
    _, records = read(rdb.build())
    assert described(records) == rdb.wants


def test_cli_reports_an_old_format_file(tmp_path):
    case = built("rdb3-redis-2.6")
    path = tmp_path / "old.rdb"
    path.write_bytes(case.data)
    run = redisops("-o", "json", "memory", "rdb", str(path))
    assert run.exit_code == 0, run.stderr
    document = run.json()
    data = document["results"][0]["data"]
    assert data["keys"] == len(case.wants) == 23
    types = {name: totals["keys"] for name, totals in data["types"].items()}
    assert types == {"string": 14, "list": 2, "set": 2, "hash": 3, "zset": 2}
    assert document["summary"]["rdb_version"] == 3


def test_integers_behind_wider_length_encodings_are_integers_on_both_paths(monkeypatch):
    """Redis writes the shortest length encoding, but a string "123" saved with a 14-bit or a
    32-bit length is still one Redis would load as an integer: the fast path and the
    streaming path must both say so (and agree on everything else)."""
    rdb = Planned(10)
    rdb.put(b"short", rb.Value(0, b"\x03123"), ("string", "int", 3))
    rdb.put(b"wide", rb.Value(0, b"\x40\x03123"), ("string", "int", 3))
    rdb.put(b"wider", rb.Value(0, b"\x80\x00\x00\x00\x03-45"), ("string", "int", 3))
    rdb.put(b"text", rb.Value(0, b"\x40\x0312a"), ("string", "embstr", 3))
    data = rdb.build()
    _, fast = read(data)
    monkeypatch.setattr(
        reader_module, "_fast_records", lambda buf, pos, db, expire, *_: (pos, expire, False)
    )
    _, general = read(data)
    assert described(fast) == described(general) == rdb.wants
    assert fast == general
