"""RDB and AOF checks on real files written by a real redis-server: CRC64, truncation, flipped
bytes, a zero trailer, AOF commands and manifests."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import redis

from redisops.backup.aof import PREAMBLE_UNENDED, AofChecker, RespChecker, parse_aof_manifest
from redisops.backup.checktool import aof_tool_for
from redisops.backup.replication import stream_rdb
from redisops.backup.verify import check_aof_folder, feeds_for, new_findings
from redisops.datafile import StoredFile
from redisops.errors import HostError
from redisops.fleet.host import Host
from redisops.rdb.crc64 import crc64
from redisops.rdb.format import (
    CRC_DISABLED,
    CRC_MISMATCH,
    CRC_OK,
    RdbChecker,
    loadable_rdb_version,
    rdb_load_problem,
)
from redisops.rdb.reader import RdbReader
from tests.rdb_builder import RdbBuilder, string_value
from tests.servers import start_redis_server

# Redis waits 5 s for more replicas before a diskless sync; tests want it now.
NO_SYNC_DELAY = ("--repl-diskless-sync-delay", "0")


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data) -> None:
        self.data += data


def snapshot(tmp_path, *options: str) -> bytes:
    """An RDB of 500 keys, taken over replication from a fresh server started with options."""
    process, port = start_redis_server(tmp_path, *NO_SYNC_DELAY, *options)
    try:
        client = redis.Redis(port=port)
        pipe = client.pipeline(transaction=False)
        for i in range(500):
            pipe.set(f"key:{i}", f"value-{i}" * 20)
            pipe.hset(f"hash:{i}", mapping={"a": i, "b": "x" * i})
        pipe.execute()
        sink = Collect()
        facts = stream_rdb(Host(name="s", host="127.0.0.1", port=port), sink, timeout=10)
        assert facts.bytes == len(sink.data)
        return bytes(sink.data)
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def rdb(tmp_path_factory) -> bytes:
    return snapshot(tmp_path_factory.mktemp("rdb"))


def check(data: bytes, chunk: int = 1 << 16):
    checker = RdbChecker()
    for start in range(0, len(data), chunk):
        checker.feed(memoryview(data)[start : start + chunk])
    return checker.finish()


def test_crc64_is_redis_crc64_jones():
    # The check value of CRC-64/REDIS (Redis's own crc64 test uses the same input).
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64(b"6789", crc64(b"12345")) == 0xE9C6D914C4B8D9CA


def test_a_whole_rdb_checks_out_whatever_the_chunking(rdb, tmp_path):
    for chunk in (1, 7, 8, 9, 4096, len(rdb)):
        facts = check(rdb[:20_000] if chunk == 1 else rdb, chunk)
        if chunk == 1:
            continue  # byte by byte only over a prefix, to keep it quick
        assert facts.crc == CRC_OK
        assert facts.problems == ()
        assert facts.version == 10
        assert (
            facts.aux["redis-ver"]
            == subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, check=True
            )
            .stdout.split("v=")[1]
            .split()[0]
        )
        assert facts.size == len(rdb)
    # redis-check-rdb agrees with the checker on the same bytes
    path = tmp_path / "dump.rdb"
    path.write_bytes(rdb)
    out = subprocess.run(["redis-check-rdb", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and "1000 keys read" in out.stdout


def test_truncated_and_flipped_files_are_named_as_such(rdb):
    # Cut where the byte before the last 8 is not an EOF opcode by chance (issue 20 item 13:
    # a fixed cut of 100 bytes made the expected message depend on the data).
    cut = next(n for n in range(100, 200) if rdb[-n - 9] != 0xFF)
    truncated = check(rdb[:-cut])
    assert truncated.crc == CRC_MISMATCH
    assert truncated.problems[0] == (
        "truncated or corrupted: no end-of-file marker before the checksum"
    )
    assert truncated.problems[1].startswith("CRC64 mismatch: the trailer says")
    assert len(truncated.problems) == 2

    flipped = bytearray(rdb)
    flipped[len(rdb) // 2] ^= 0x01
    facts = check(bytes(flipped))
    assert facts.crc == CRC_MISMATCH
    assert len(facts.problems) == 1 and facts.problems[0].startswith(
        "CRC64 mismatch: the trailer says"
    )

    assert check(b"").problems == ("empty file",)
    assert check(b"*1\r\n$4\r\nPING\r\n").problems == (
        "not an RDB file (no REDIS or VALKEY header)",
    )


@pytest.mark.parametrize("appended", [b"\n", b"\r\n", b"appended by a script\n" * 50])
def test_bytes_after_the_checksum_are_a_warning_as_redis_loads_the_file(rdb, tmp_path, appended):
    """Issue 20 item 14: Redis loads an RDB with bytes after its checksum; the checker finds
    the real end (whatever the chunking), `backup verify` warns, the reader counts them."""
    data = rdb + appended
    for chunk in (7, 4096, 1 << 16, len(data)):
        facts = check(data, chunk)
        assert (facts.crc, facts.problems, facts.trailing) == (CRC_OK, (), len(appended))
    findings = new_findings()
    feeds, judge = feeds_for(StoredFile("dump.rdb", "dump.rdb", "rdb", 0, "", 0, "none"))
    for feed in feeds:
        feed.feed(data)
    judge(findings)
    assert findings.problems == []
    assert findings.checks[:2] == [
        f"dump.rdb: warning: {len(appended):,} bytes after the end of the RDB (ignored, as "
        "Redis ignores them)",
        "dump.rdb: RDB version 10, CRC64 ok",
    ]
    assert findings.verification().status == "verified"

    reader = RdbReader([data])
    assert sum(map(len, reader.batches())) == 1000
    assert (reader.checksum, reader.trailing) == (CRC_OK, len(appended))

    # the real server loads it: all 1,000 keys
    (tmp_path / "dump.rdb").write_bytes(data)
    process, port = start_redis_server(tmp_path, "--dbfilename", "dump.rdb")
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert client.dbsize() == 1000
                break
            except redis.BusyLoadingError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        process.kill()
        process.wait()


def test_a_zero_trailer_with_bytes_after_it(tmp_path):
    """Without a checksum the end cannot be found by CRC: the checker calls it damaged (it
    cannot tell), the reader, which parses the records, finds it and counts what follows."""
    data = snapshot(tmp_path, "--rdbchecksum", "no") + b"\n"
    assert check(data).problems
    reader = RdbReader([data])
    assert sum(map(len, reader.batches())) == 1000
    assert (reader.checksum, reader.trailing) == (CRC_DISABLED, 1)


def test_a_zero_trailer_means_checksum_disabled(tmp_path):
    data = snapshot(tmp_path, "--rdbchecksum", "no")
    assert data[-8:] == b"\0" * 8
    facts = check(data)
    assert facts.crc == CRC_DISABLED
    assert facts.problems == ()


def test_aof_commands_are_counted_and_truncation_is_caught():
    commands = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n#TS:1700000000\r\n*1\r\n$5\r\nMULTI\r\n"
    whole = RespChecker()
    for byte in range(len(commands)):
        whole.feed(commands[byte : byte + 1])
    assert (whole.commands, whole.finish()) == (2, None)

    cut = RespChecker()
    cut.feed(commands[:-3])
    assert cut.finish() == "truncated: an incomplete command at byte 43 (12 bytes left over)"

    garbage = RespChecker()
    garbage.feed(b"*1\r\n$4\r\nPING\r\nhello\r\n")
    assert garbage.finish() == "not a RESP command at byte 14"


COMMANDS = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n#TS:1700000000\r\n*1\r\n$4\r\nPING\r\n"


def aof_check(data: bytes, chunk: int) -> tuple[AofChecker, str | None]:
    checker = AofChecker()
    for at in range(0, len(data), chunk):
        checker.feed(memoryview(data)[at : at + chunk])
    return checker, checker.finish()


@pytest.fixture(scope="module")
def decoy_rdb(tmp_path_factory) -> bytes:
    """An RDB whose values hold an EOF opcode followed by 8 bytes and a `*` (a wrong end a
    preamble scan must try and reject), and whose last value ends the same way."""
    process, port = start_redis_server(tmp_path_factory.mktemp("decoy"), *NO_SYNC_DELAY)
    try:
        client = redis.Redis(port=port)
        for i in range(50):
            client.set(f"decoy:{i}", b"\xff" + os.urandom(8) + b"*3\r\n" + b"x" * i)
        sink = Collect()
        stream_rdb(Host(name="s", host="127.0.0.1", port=port), sink, timeout=10)
        return bytes(sink.data)
    finally:
        process.kill()
        process.wait()


@pytest.mark.parametrize("chunk", [1, 7, 65536])
def test_aof_with_an_rdb_preamble_is_split_at_the_crc_that_matches(rdb, decoy_rdb, chunk):
    for preamble in (rdb, decoy_rdb):
        assert preamble.count(b"\xff") > 50
        checker, problem = aof_check(preamble + COMMANDS, chunk)
        assert problem is None
        assert (checker.preamble.version, checker.preamble.crc) == (10, CRC_OK)
        assert checker.preamble.size == len(preamble)
        assert checker.preamble.aux["redis-ver"].startswith("7.")
        assert checker.commands == 2

    alone, problem = aof_check(rdb, chunk)  # a rewrite with nothing written since
    assert (problem, alone.preamble.size, alone.commands) == (None, len(rdb), 0)

    plain, problem = aof_check(COMMANDS, chunk)
    assert (problem, plain.preamble, plain.commands) == (None, None, 2)


def test_aof_preamble_damage_truncation_and_a_zero_trailer(rdb):
    flipped = bytearray(rdb + COMMANDS)
    flipped[len(rdb) // 2] ^= 0x01
    checker, problem = aof_check(bytes(flipped), 4096)
    assert checker.preamble is None
    assert problem == PREAMBLE_UNENDED

    _, problem = aof_check(rdb[:-3], 4096)
    assert problem == PREAMBLE_UNENDED

    _, problem = aof_check(rdb + COMMANDS[:-3], 4096)
    assert (
        problem == f"truncated: an incomplete command at byte {len(rdb) + 43} (11 bytes left over)"
    )

    _, problem = aof_check(rdb + b"+OK\r\n", 4096)  # no command after the preamble
    assert problem.startswith("RDB preamble truncated or corrupted")

    unchecksummed = rdb[:-8] + b"\0" * 8 + COMMANDS
    checker, problem = aof_check(unchecksummed, 4096)
    assert (problem, checker.preamble.crc) == (None, CRC_DISABLED)


@pytest.mark.parametrize(
    ("redis_version", "rdb_version"),
    [("2.8.24", 6), ("3.2.13", 7), ("4.0.14", 8), ("5.0.14", 9), ("6.2.14", 9), ("7.0.15", 10),
     ("7.2.5", 11), ("7.4.2", 12), ("8.2.1", 12), ("9.0.0", None), ("2.4.0", None), ("?", None)],
)  # fmt: skip
def test_newest_rdb_version_each_redis_loads(redis_version, rdb_version):
    assert loadable_rdb_version(redis_version) == rdb_version


@pytest.mark.parametrize(
    ("flavour", "version", "rdb_version", "problem"),
    [("redis", "7.0.15", 10, None),
     ("redis", "7.0.15", 11, "Redis 7.0.15 loads up to RDB version 10"),
     ("redis", "7.4.1", 80, "Redis 7.4.1 cannot load a Valkey-format RDB (format 80)"),
     ("valkey", "8.1.1", 11, None), ("valkey", "9.1.2", 80, None), ("valkey", "9.1.2", 9, None),
     ("valkey", "8.1.1", 80, "Valkey 8.1.1 loads RDB 1 to 11"),
     ("valkey", "9.1.2", 12, "Valkey 9.1.2 loads RDB 1 to 11 and Valkey format 80"),
     ("valkey", "10.0.0", 12, None), ("redis", "9.0.0", 13, None)],
)  # fmt: skip
def test_which_server_loads_which_rdb(flavour, version, rdb_version, problem):
    """A Valkey reports redis_version 7.2.4: its own version and flavour decide, not that."""
    assert rdb_load_problem(flavour, version, rdb_version) == problem


@pytest.mark.parametrize(
    ("head", "tool"),
    [(b"VALKEY080", "valkey-check-aof"), (b"REDIS0011", "redis-check-aof"),
     (b"*2\r\n$6\r\nSELECT", "redis-check-aof")],
)  # fmt: skip
def test_the_aof_checker_is_the_one_of_its_rdb_base(head, tool):
    assert aof_tool_for(head) == tool


def test_a_checker_too_old_for_the_rdb_version_is_skipped_not_a_failure(tmp_path):
    """Debian 12's tools are Redis 7.0's: an RDB of Redis 7.2 (version 11) is beyond them.
    Their refusal says nothing about the data; redisops' own checks decide."""
    builder = RdbBuilder(11)
    builder.aux("redis-ver", "7.2.5")
    builder.select_db(0)
    builder.key("k", string_value("v"))
    rdb11 = builder.build()
    findings = new_findings()
    feeds, judge = feeds_for(StoredFile("dump.rdb", "dump.rdb", "rdb", 0, "", 0, "none"))
    for feed in feeds:
        feed.feed(rdb11)
    judge(findings)
    assert (findings.problems, findings.tool) == ([], None)
    assert findings.checks == [
        "dump.rdb: RDB version 11, CRC64 ok",
        "redis-check-rdb: skipped: this redis-check-rdb is older than the server and cannot "
        "read RDB version 11",
    ]

    folder = tmp_path / "aof"
    folder.mkdir()
    files = {
        "appendonly.aof.manifest": b"file appendonly.aof.1.base.rdb seq 1 type b\n"
        b"file appendonly.aof.1.incr.aof seq 1 type i\n",
        "appendonly.aof.1.base.rdb": rdb11,
        "appendonly.aof.1.incr.aof": COMMANDS,
    }
    roles = ("aof-manifest", "aof-base", "aof-incr")
    stored = []
    for (name, data), role in zip(files.items(), roles, strict=True):
        (folder / name).write_bytes(data)
        stored.append(StoredFile(name, name, role, len(data), "", len(data), "none"))
    findings = new_findings()
    check_aof_folder(findings, folder, stored)
    assert findings.problems == []
    assert findings.checks == [
        "redis-check-aof: skipped: this redis-check-aof is older than the server and cannot "
        "read RDB version 11"
    ]


def test_aof_manifest_parts():
    parts = parse_aof_manifest(
        "file appendonly.aof.3.base.rdb seq 3 type b\n"
        "file appendonly.aof.2.incr.aof seq 2 type h\n"
        "file appendonly.aof.3.incr.aof seq 3 type i\n"
    )
    assert [(p.name, p.seq, p.type) for p in parts] == [
        ("appendonly.aof.3.base.rdb", 3, "b"),
        ("appendonly.aof.2.incr.aof", 2, "h"),
        ("appendonly.aof.3.incr.aof", 3, "i"),
    ]
    for bad in ("file x seq 1\n", "file ../x seq 1 type b\n", "", "file a seq x type b\n"):
        with pytest.raises(ValueError):
            parse_aof_manifest(bad)


def test_stream_rdb_matches_redis_cli(tmp_path):
    """The bytes redisops streams are those redis-cli --rdb saves, modulo the snapshot time."""
    process, port = start_redis_server(tmp_path, *NO_SYNC_DELAY)
    try:
        redis.Redis(port=port).set("k", "v")
        sink = Collect()
        stream_rdb(Host(name="s", host="127.0.0.1", port=port), sink, timeout=10)
        target = tmp_path / "cli.rdb"
        subprocess.run(
            ["redis-cli", "-p", str(port), "--rdb", str(target)], capture_output=True, check=True
        )
        ours = tmp_path / "ours.rdb"
        ours.write_bytes(sink.data)
        for path in (target, ours):
            assert check(path.read_bytes()).crc == CRC_OK
            out = subprocess.run(["redis-check-rdb", str(path)], capture_output=True, text=True)
            assert "[info] 1 keys read" in out.stdout
    finally:
        process.kill()
        process.wait()


def test_a_server_frozen_mid_snapshot_fails_after_the_timeout(tmp_path):
    """Reads wait for 256 KiB at a time (replication.BATCH_BYTES), yet a stream that stops
    still ends in one timeout with a clear message, not a hang."""
    process, port = start_redis_server(tmp_path, *NO_SYNC_DELAY)
    try:
        client = redis.Redis(port=port)
        pipe = client.pipeline(transaction=False)
        for i in range(4000):
            pipe.set(f"key:{i}", os.urandom(4096))  # ~16 MB that LZF cannot shrink
        pipe.execute()

        class FreezeServer(Collect):
            def write(self, data) -> None:
                if not self.data:
                    os.kill(process.pid, signal.SIGSTOP)
                super().write(data)

        sink = FreezeServer()
        started = time.monotonic()
        with pytest.raises(HostError) as failure:
            stream_rdb(Host(name="s", host="127.0.0.1", port=port), sink, timeout=1)
        assert time.monotonic() - started < 30
        assert failure.value.message.startswith(f"127.0.0.1:{port} stalled for 1s after ")
        assert failure.value.message.endswith(" bytes of the snapshot")
        assert 0 < len(sink.data) < 16_000_000
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()
