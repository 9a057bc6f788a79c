"""What the RDB reader refuses, leaves out and names, held to what the real servers do with
the same files (issue 20 items 15-16, issue 14 items 3 and 5): damaged packed values in files
without a checksum, empty collections, duplicate keys, module values, hash-field TTLs, and
the encoding a Redis 7.2+ list is loaded with."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from redisops.rdb.reader import RdbError
from tests import rdb_builder as rb
from tests.cli_helpers import redisops
from tests.servers import free_port
from tests.test_memory_rdb_formats import Planned, built, described, read, redis_on

EXIT_SECONDS = 10


def refused_by_redis(folder: Path, data: bytes) -> str:
    """Start redis-server 7.0 on `data`; it must exit (refusing the file). Its log."""
    (folder / "dump.rdb").write_bytes(data)
    log = folder / "redis.log"
    process = subprocess.Popen(
        ["redis-server", "--port", str(free_port()), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(folder), "--dbfilename", "dump.rdb", "--logfile", str(log)],
    )  # fmt: skip
    try:
        status = process.wait(timeout=EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("redis-server loaded a file it should have refused")
    assert status != 0
    return log.read_text()


# (name, value, what the reader says, the line Redis logs): RDB 3, no checksum, so nothing
# but the values' own structure can show the damage.
DAMAGED = [
    ("5-byte ziplist hash", rb.packed(rb.HASH_ZIPLIST, b"\x05\x00\x00\x00\x00"),
     "ziplist integrity check failed: 5 bytes, shorter than a ziplist's header and end",
     "Hash ziplist integrity check failed."),
    ("empty zipmap", rb.packed(rb.HASH_ZIPMAP, b"\x00\xff"),
     "zipmap integrity check failed: it is empty", "Zipmap integrity check failed."),
    ("zipmap length overruns", rb.packed(rb.HASH_ZIPMAP, b"\x01\xc8abc\xff"),
     "zipmap integrity check failed: pair at 1 runs past the end",
     "Zipmap integrity check failed."),
    ("intset of the wrong size", rb.packed(rb.SET_INTSET, rb.intset([1, 2, 3], 2)[:-1]),
     "intset integrity check failed: 3 members of 2 bytes in 13 bytes",
     "Intset integrity check failed."),
    ("ziplist tail offset wrong",
     rb.packed(rb.LIST_ZIPLIST, rb.ziplist([b"a", b"b"])[:4] + b"\x0b\x00\x00\x00"
               + rb.ziplist([b"a", b"b"])[8:]),
     "ziplist integrity check failed: the tail offset 11 is not the last entry's (13)",
     "List ziplist integrity check failed."),
    ("listpack size in its header wrong",
     rb.packed(rb.HASH_LISTPACK, b"\x20" + rb.listpack([b"f", b"v"])[1:]),
     "listpack integrity check failed: its header says 32 bytes, the value has 13",
     "Hash listpack integrity check failed."),
    ("ziplist hash field repeated",
     rb.packed(rb.HASH_ZIPLIST, rb.ziplist([b"f", b"1", b"f", b"2"])),
     "ziplist integrity check failed: a field name repeats",
     "Hash ziplist integrity check failed."),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "message", "logged"), DAMAGED, ids=[d[0] for d in DAMAGED]
)
def test_damaged_packed_values_are_refused_naming_key_and_offset(
    name, value, message, logged, tmp_path
):
    rdb = rb.RdbBuilder(3 if value.type != rb.HASH_LISTPACK else 10)
    rdb.select_db(0)
    rdb.key(b"before", rb.string_value(b"v"))
    start = rdb.offset
    rdb.key(b"damaged", value)
    data = rdb.build(checksum=False)
    with pytest.raises(RdbError) as caught:
        read(data)
    assert str(caught.value) == (
        f"RDB corrupted near byte {len(data) - (1 if rdb.version < 5 else 9)} (record at byte "
        f"{start}, key 'damaged'): {message}"
    )
    assert logged in refused_by_redis(tmp_path, data)


def test_a_duplicate_key_is_refused_as_redis_refuses_it(tmp_path):
    rdb = Planned(10)
    rdb.select_db(0)
    for i in range(5000):  # the repeat lands in another batch than the first
        rdb.key(b"k:%d" % i, rb.string_value(b"v"))
    rdb.key(b"k:7", rb.string_value(b"again"))
    rdb.select_db(1)
    rdb.key(b"k:7", rb.string_value(b"another db: not a duplicate"))
    data = rdb.build()
    with pytest.raises(RdbError, match=r"key 'k:7' appears twice in db 0 \(Redis refuses"):
        read(data)
    assert "Duplicated key found in RDB file" in refused_by_redis(tmp_path, data)

    same_batch = Planned(10)
    same_batch.key(b"a", rb.string_value(b"1"))
    same_batch.key(b"a", rb.string_value(b"2"))
    with pytest.raises(RdbError, match=r"key 'a' appears twice in db 0"):
        read(same_batch.build())


def test_empty_collections_are_left_out_as_redis_skips_them(tmp_path):
    rdb = Planned(10)
    rdb.select_db(0)
    rdb.put(b"kept", rb.string_value(b""), ("string", "embstr", 0))
    rdb.key(b"empty:set", rb.hashtable_set([]))
    rdb.key(b"empty:hash", rb.packed(rb.HASH_LISTPACK, rb.listpack([])))
    rdb.key(b"empty:zset", rb.packed(rb.ZSET_LISTPACK, rb.listpack([]), lzf=True))
    rdb.key(b"empty:list", rb.quicklist2([]))
    rdb.key(b"empty:nodes", rb.quicklist2([rb.packed_node(rb.listpack([]))]))
    rdb.put(b"stream", rb.stream(rb.STREAM_LISTPACKS_2, []), ("stream", "stream", 0))
    data = rdb.build()
    reader, records = read(data)
    assert described(records) == rdb.wants
    assert reader.empty_keys == 5
    assert reader.empty_samples[:2] == [(0, b"empty:set"), (0, b"empty:hash")]
    with redis_on(tmp_path, data) as client:
        assert sorted(client(0).keys()) == [b"kept", b"stream"]

    path = tmp_path / "empty.rdb"
    path.write_bytes(data)
    run = redisops("memory", "rdb", str(path))
    assert run.exit_code == 0, run.stderr
    assert (
        "warning: empty.rdb: 5 empty collections left out, as Redis skips them on load "
        "(db0 empty:set, db0 empty:hash, db0 empty:zset…)"
    ) in " ".join(run.stderr.split())


def test_a_file_without_checksum_says_not_verified_on_screen(tmp_path):
    old = tmp_path / "old.rdb"
    old.write_bytes(built("rdb3-redis-2.6").data)
    disabled = tmp_path / "nocrc.rdb"
    disabled.write_bytes(built("rdb10-redis-7.0").data)
    checked = tmp_path / "crc.rdb"
    checked.write_bytes(built("rdb6-redis-2.8").data)
    said = {}
    for path in (old, disabled, checked):
        run = redisops("memory", "rdb", str(path))
        assert run.exit_code == 0, run.stderr
        said[path.name] = " ".join(run.stderr.split())
    assert (
        "warning: old.rdb: RDB version 3 has no checksum: not verified (its content is read "
        "as it is)"
    ) in said["old.rdb"]
    assert (
        "warning: nocrc.rdb: CRC64 trailer is 0 (saved with rdbchecksum no): not verified"
    ) in said["nocrc.rdb"]
    assert "not verified" not in said["crc.rdb"]
    run = redisops("-o", "json", "memory", "rdb", str(old))
    assert run.json()["summary"]["checksum"] == "absent"


JSON_ID = rb.module_id("ReJSON-RL", 3)
TS_ID = rb.module_id("TSDB-TYPE", 8)
ODD_ID = rb.module_id("Zz0_-odd9", 1023)


def test_module_values_are_named_and_sized_from_their_serialized_length(tmp_path):
    """Issue 14 item 3 / issue 20 item 16: the type TYPE would answer (from the module id),
    bytes within 10% of the serialized value, an unknown type reported by its id, and the
    count said on screen."""
    rdb = Planned(10)
    rdb.module_aux(TS_ID, 2, [("uint", 1)])
    rdb.select_db(0)
    serialized = {}
    noise = random.Random(14)  # incompressible: LZF leaves the strings as long as they are
    values = {
        b"json:1": (JSON_ID, [("uint", 3), ("string", noise.randbytes(700))]),
        b"ts:1": (TS_ID, [("uint", 1000 + i) for i in range(60)] + [("double", 1.5)] * 60),
        b"ts:2": (TS_ID, [("string", noise.randbytes(900)), ("sint", -1)]),
        b"odd:1": (ODD_ID, [("float", 0.25), ("string", noise.randbytes(600))]),
    }
    names = {JSON_ID: "ReJSON-RL", TS_ID: "TSDB-TYPE", ODD_ID: "Zz0_-odd9"}
    for key, (ident, fields) in values.items():
        value = rb.module_value(ident, fields)
        serialized[key] = len(value.payload)
        rdb.put(key, value, (names[ident], None, 0))
    rdb.put(b"after", rb.string_value(b"v"), ("string", "embstr", 1))
    data = rdb.build()
    reader, records = read(data)
    assert described(records) == rdb.wants
    for record in records[:-1]:
        assert abs(record.bytes - serialized[record.key]) <= serialized[record.key] / 10
    assert [(m.name, m.module, m.keys) for m in reader.module_types] == [
        ("TSDB-TYPE", "RedisTimeSeries", 2),
        ("ReJSON-RL", "RedisJSON", 1),
        ("Zz0_-odd9", None, 1),
    ]

    path = tmp_path / "stack.rdb"
    path.write_bytes(data)
    run = redisops("-o", "json", "memory", "rdb", str(path))
    assert run.exit_code == 0, run.stderr
    summary = run.json()["summary"]
    assert summary["module_values"] == 4
    odd = summary["modules"][-1]
    assert (odd["type"], odd["id"], odd["encoding_version"]) == (
        "Zz0_-odd9",
        f"{ODD_ID:#018x}",
        1023,
    )
    types = run.json()["results"][0]["data"]["types"]
    assert types["TSDB-TYPE"]["keys"] == 2
    assert (
        "warning: stack.rdb: 4 module values (2 TSDB-TYPE (RedisTimeSeries), 1 ReJSON-RL "
        f"(RedisJSON), 1 Zz0_-odd9 (unknown module type, id {ODD_ID:#018x})), sized from "
        "their serialized length"
    ) in " ".join(run.stderr.split())


def test_hash_field_ttls_are_counted_and_shown(tmp_path):
    """Redis 7.4's types 24 and 25: 2 of 3 fields have a TTL in each hash."""
    case = built("rdb12-redis-7.4")
    reader, _ = read(case.data)
    assert (reader.hash_field_ttls, reader.hashes_with_field_ttls) == (4, 2)
    path = tmp_path / "hfe.rdb"
    path.write_bytes(case.data)
    run = redisops("memory", "rdb", str(path))
    assert run.exit_code == 0, run.stderr
    assert "hfe.rdb: 4 hash fields with a TTL of their own, in 2 hashes" in " ".join(
        run.stderr.split()
    )


def test_lists_are_named_as_the_saving_server_names_them():
    """Redis 7.2+ (RDB 11, Valkey alike) loads a one-node list of at most 8 KiB as a
    listpack; 7.0 (RDB 10) keeps every list a quicklist."""
    small = rb.quicklist2([rb.packed_node(rb.listpack([b"a", b"b", 3]))])
    big = rb.quicklist2([rb.packed_node(rb.listpack([b"x" * 100] * 90))])
    two = rb.quicklist2([rb.packed_node(rb.listpack([b"a"]))] * 2)
    plain = rb.quicklist2([rb.plain_node(b"P" * 10_000)])
    for version, names in ((10, ["quicklist"] * 4), (11, ["listpack", *["quicklist"] * 3])):
        rdb = Planned(version)
        for key, value, count, encoding in zip(
            (b"small", b"big", b"two", b"plain"), (small, big, two, plain), (3, 90, 2, 1),
            names, strict=True,
        ):  # fmt: skip
            rdb.put(key, value, ("list", encoding, count))
        _, records = read(rdb.build())
        assert described(records) == rdb.wants
        assert records[0].bytes < records[2].bytes  # one allocation, not a quicklist's nodes


def test_the_fast_path_leaves_damage_and_empties_to_the_general_path(monkeypatch):
    """Both paths must agree on every record of files with empty and damaged values."""
    from redisops.rdb import reader as reader_module

    rdb = Planned(11)
    rdb.put(b"ok", rb.packed(rb.SET_LISTPACK, rb.listpack([b"a"])), ("set", "listpack", 1))
    rdb.key(b"empty", rb.packed(rb.SET_LISTPACK, rb.listpack([])))
    rdb.put(b"after", rb.string_value(b"v"), ("string", "embstr", 1))
    data = rdb.build()
    _, fast = read(data)
    monkeypatch.setattr(
        reader_module, "_fast_records", lambda buf, pos, db, expire, *_: (pos, expire, False)
    )
    _, general = read(data)
    assert described(fast) == described(general) == rdb.wants
