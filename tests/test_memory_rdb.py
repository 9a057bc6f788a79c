"""`memory rdb` and the RDB reader, on files the installed redis-server writes."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import pytest
import redis

from redisops.datafile import READ_CHUNK
from redisops.memory.report import MemoryReport
from redisops.rdb import reader as reader_module
from redisops.rdb.reader import RdbError, RdbReader
from tests.cli_helpers import redisops
from tests.servers import start_redis_server

LENGTHS = {
    b"string": "strlen",
    b"list": "llen",
    b"set": "scard",
    b"zset": "zcard",
    b"hash": "hlen",
    b"stream": "xlen",
}
LIBRARY = "#!lua name=rdbtest\nredis.register_function('answer', function() return 42 end)"


def _write_every_encoding(client: redis.Redis) -> None:
    client.set("str:int", 12345)
    client.set("str:big-int", 2**40)
    client.set("str:embstr", "hello")
    client.set("str:raw", "r" * 100)
    client.set("str:lzf", "ab" * 5000)
    client.set("str:empty", "")
    client.set(b"bin:\x00\xff\xfe:key", b"\x00\x01\x02", px=3_600_000)
    client.set("ttl:day", "x", ex=86_400 * 3)
    client.rpush("list:small", *range(5))
    client.rpush("list:big", *[f"item-{i}-" * 4 for i in range(20_000)])
    client.rpush("list:lzf", *["same-same-same-same"] * 100)
    client.sadd("set:intset", *range(20))
    client.sadd("set:strings", "a", "b", "c")
    client.sadd("set:big-ints", *range(2000))
    client.hset("hash:small", mapping={"a": 1, "b": "two"})
    client.hset("hash:big", mapping={f"field-{i}": "v" * 70 for i in range(1000)})
    client.hset("hash:lzf", mapping={f"f{i}": "aaaaaaaaaaaaaaaaaaaa" for i in range(20)})
    client.zadd("zset:small", {"a": 1.5, "b": -2})
    client.zadd("zset:big", {f"member-{i}": i / 3 for i in range(500)})
    for i in range(150):
        client.xadd("stream:events", {"n": i, "kind": "click"})
    client.xgroup_create("stream:events", "workers", id="0")
    client.xgroup_create("stream:events", "audit", id="$")
    client.xreadgroup("workers", "alice", {"stream:events": ">"}, count=10)
    client.xreadgroup("workers", "bob", {"stream:events": ">"}, count=5)
    client.function_load(LIBRARY)


@pytest.fixture(scope="module")
def dump(tmp_path_factory) -> tuple[Path, dict]:
    """dump.rdb of a server holding every type and encoding in dbs 0, 2 and 5, and what the
    live server said of each key: (type, encoding, length, PEXPIRETIME, MEMORY USAGE)."""
    folder = tmp_path_factory.mktemp("rdb")
    process, port = start_redis_server(folder)
    live = {}
    try:
        _write_every_encoding(redis.Redis(port=port, db=0))
        redis.Redis(port=port, db=2).set("db2:only", "v", ex=600)
        db5 = redis.Redis(port=port, db=5)
        db5.mset({f"user:{i}:name": f"name-{i}" for i in range(300)})
        db5.hset("user:1:profile", mapping={"age": 30})
        for db in (0, 2, 5):
            client = redis.Redis(port=port, db=db)
            for key in client.scan_iter(count=1000):
                kind = client.type(key)
                live[db, key] = (
                    kind.decode(),
                    client.object("encoding", key).decode(),
                    getattr(client, LENGTHS[kind])(key),
                    client.pexpiretime(key),
                    client.memory_usage(key, samples=0),
                )
        redis.Redis(port=port).save()
    finally:
        process.kill()
        process.wait(timeout=10)
    return folder / "dump.rdb", live


def _read(path: Path, chunk: int = READ_CHUNK):
    def chunks():
        with open(path, "rb") as handle:
            while data := handle.read(chunk):
                yield data

    reader = RdbReader(chunks())
    return reader, list(reader.records())


def test_reader_agrees_with_the_live_server(dump):
    path, live = dump
    reader, records = _read(path, chunk=4096)  # small chunks: records straddle chunk edges
    assert reader.version == 10 and reader.aux["redis-ver"].startswith("7.")
    assert reader.functions == 1
    assert len(records) == len(live) == 322
    seen = {(r.db, r.key): r for r in records}
    assert set(seen) == set(live)
    assert sum(r.expire_ms >= 0 for r in records) == sum(v[3] >= 0 for v in live.values()) == 3
    for name, (kind, encoding, length, expire_ms, _) in live.items():
        record = seen[name]
        assert (record.type, record.encoding, record.elements) == (kind, encoding, length), name
        assert record.expire_ms == expire_ms, name  # PEXPIRETIME: -1 without one
    assert seen[0, b"list:big"].elements == 20_000
    assert seen[0, b"stream:events"].elements == 150


def test_the_fast_path_reads_what_the_general_path_reads(dump, monkeypatch):
    path, _ = dump
    _, fast = _read(path)
    monkeypatch.setattr(
        reader_module, "_fast_records", lambda buf, pos, db, expire, *_: (pos, expire, False)
    )
    _, general = _read(path)
    assert len(fast) == len(general) == 322
    assert fast == general


def test_memory_estimate_tracks_memory_usage(dump):
    path, live = dump
    _, records = _read(path)
    estimated = {(r.db, r.key): r.bytes for r in records if r.type != "stream"}
    actual = {name: v[4] for name, v in live.items() if v[0] != "stream"}
    for name, size in estimated.items():
        assert abs(size - actual[name]) <= 0.1 * actual[name] + 16, (name, size, actual[name])
    total, real = sum(estimated.values()), sum(actual.values())
    assert abs(total - real) / real < 0.02


def test_a_truncated_file_is_rejected_with_the_offset(dump, tmp_path):
    path, _ = dump
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 20):
        short = tmp_path / f"cut-{cut}.rdb"
        short.write_bytes(data[:cut])
        with pytest.raises(RdbError, match=rf"truncated at byte {cut:,}"):
            _read(short)


def test_a_bit_flip_is_rejected_with_the_offset(dump, tmp_path):
    path, _ = dump
    data = bytearray(path.read_bytes())
    payload = data.index(b"name-150") + 5  # inside a value: only the CRC64 can tell
    data[payload] ^= 0x01
    flipped = tmp_path / "flipped.rdb"
    flipped.write_bytes(data)
    with pytest.raises(RdbError, match=rf"CRC64 mismatch.*trailer at byte {len(data) - 8:,}"):
        _read(flipped)
    data[payload] ^= 0x01
    opcode = data.index(b"\xfe\x05\xfb")  # SELECTDB 5 (then RESIZEDB) becomes an unknown type
    data[opcode] = 0xF0
    flipped.write_bytes(data)
    wrong = rf"corrupted near byte [\d,]+ \(record at byte {opcode:,}\): unknown value type 240"
    with pytest.raises(RdbError, match=wrong):
        _read(flipped)


def test_cli_report_has_the_shape_of_memory_report(dump, tmp_path):
    path, live = dump
    keys_csv = tmp_path / "keys.csv"
    run = redisops("-o", "json", "memory", "rdb", str(path), "--encodings", "--top", "3",
                   "--keys-csv", str(keys_csv))  # fmt: skip
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["command"] == "memory rdb" and document["ok"]
    data = document["results"][0]["data"]
    assert set(data) == set(MemoryReport.__dataclass_fields__)
    assert data["keys"] == data["dbsize"] == len(live) and not data["estimated"]
    assert data["types"]["string"]["keys"] == sum(v[0] == "string" for v in live.values())
    assert data["encodings"]["set/intset"]["keys"] == 1
    assert data["ttl"]["none"]["keys"] == len(live) - 3
    assert [k["key"] for k in data["top_keys"]] == ["list:big", "hash:big", "set:big-ints"]
    assert data["top_keys"][0]["elements"] == 20_000
    summary = document["summary"]
    assert (summary["rdb_version"], summary["functions"]) == (10, 1)
    with open(keys_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(live)
    binary = next(r for r in rows if r["key"].startswith("bin:"))
    assert base64.b64decode(binary["key_base64"]) == b"bin:\x00\xff\xfe:key"
    assert (binary["type"], binary["elements"]) == ("string", "3")


def test_cli_names_the_offset_of_a_damaged_file_and_writes_no_csv(dump, tmp_path):
    path, _ = dump
    short = tmp_path / "short.rdb"
    short.write_bytes(path.read_bytes()[:1000])
    keys_csv = tmp_path / "keys.csv"
    run = redisops("memory", "rdb", str(short), "--keys-csv", str(keys_csv))
    assert run.exit_code == 1
    assert "truncated at byte 1,000" in run.stdout
    assert not keys_csv.exists() and list(tmp_path.iterdir()) == [short]


def test_a_zstd_backup_is_read_by_id(make_lab, tmp_path):
    state = make_lab(replicas=0, sentinels=0, seed_keys=500)
    dest = tmp_path / "catalogue"
    run = redisops("-i", state.inventory_path, "-o", "json", "backup", "run", "--dest",
                   str(dest), "--compress", "zstd")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    backup = run.json()["results"][0]["data"]
    report = redisops("-o", "json", "memory", "rdb", backup["backup_id"], "--dest", str(dest))
    assert report.exit_code == 0, report.stderr
    data = report.json()["results"][0]["data"]
    assert data["keys"] == backup["keys"] == 500
    assert report.json()["results"][0]["host"] == "node-1"
    secret = (Path(state.dir) / "secret").read_text().strip()
    assert secret not in report.stdout + report.stderr
    missing = redisops("memory", "rdb", "no-such-id", "--dest", str(dest))
    assert missing.exit_code == 2 and "no backup 'no-such-id'" in missing.stderr
