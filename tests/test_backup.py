"""`backup run | list | verify | prune` against real labs, a real sshd and real faults.

Every test that writes or restarts uses its own `make_lab`; the shared `lab` is only read
(a diskless replication snapshot writes nothing on the server).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
import zstandard

from redisops.backup.capture import BackupSettings, run_backups
from redisops.backup.catalogue import (
    FAILED,
    UNVERIFIABLE,
    VERIFIED,
    Verification,
    format_time,
    load_catalogue,
    read_backup,
    write_manifest,
)
from redisops.backup.prune import RetentionPolicy, plan_prune
from redisops.backup.replication import stream_rdb
from redisops.errors import HostError
from redisops.fleet.host import Host, TlsSettings
from redisops.fleet.inventory import load_inventory
from redisops.rdb.format import CRC_OK, RdbChecker
from tests.cli_helpers import redisops
from tests.servers import start_redis_server, start_tls_redis_server, tls_certificates

SAVE_DELAY_US = 20_000  # rdb-key-save-delay: 20 ms per key, so a BGSAVE of 300 keys takes 6 s
WAIT = 20.0


def hosts_of(state) -> dict:
    return {h.name: h for h in load_inventory(state.inventory_path).hosts}


def password_of(state) -> str:
    return (Path(state.dir) / "secret").read_text().strip()


def client_for(state, name: str = "node-1") -> redis.Redis:
    port = next(p.port for p in state.processes if p.name == name)
    return redis.Redis(port=port, password=password_of(state), socket_timeout=10)


def cli(state, *args: str, **kwargs):
    return redisops("-i", state.inventory_path, *args, **kwargs)


def backups_in(dest: Path, host: str = "node-1") -> list[str]:
    folder = dest / host
    return (
        sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if folder.is_dir()
        else []
    )


def wait_until(condition, what: str, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def rdb_keys(path: Path) -> int:
    out = subprocess.run(["redis-check-rdb", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    return int(out.stdout.split(" keys read")[0].rsplit("[info] ", 1)[1])


@pytest.fixture
def seeded(make_lab):
    """A lone master with 300 seeded keys."""
    return make_lab(replicas=0, sentinels=0, seed_keys=300)


@contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# --- run: what lands in the catalogue -------------------------------------------------------


def test_run_catalogues_verified_backups_private_whatever_the_umask(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    run_id = c.info("server")["run_id"]
    old_umask = os.umask(0o022)
    try:
        runs = {}
        for via, compress in (("file", "none"), ("replication", "zstd"), ("file", "gzip")):
            runs[via, compress] = cli(seeded, "-o", "json", "backup", "run", "--dest", str(dest),
                                      "--via", via, "--compress", compress)  # fmt: skip
    finally:
        os.umask(old_umask)
    for (via, compress), run in runs.items():
        assert run.exit_code == 0, run.stderr
        document = run.json()
        assert document["command"] == "backup run" and document["ok"] is True
        data = document["results"][0]["data"]
        assert (data["kind"], data["via"], data["compression"]) == ("rdb", via, compress)
        assert data["verified"] is True and data["keys"] == 300 and data["expires"] > 0
        assert data["keys_source"] == "redis-check-rdb" and data["rdb_version"] == 10
        assert data["run_id"] == run_id and data["role"] == "master"
        folder = Path(data["path"])
        assert folder.parent == dest / "node-1" and folder.name == data["backup_id"]
        (stored,) = data["files"]
        file = folder / stored["name"]
        content = file.read_bytes()
        assert len(content) == data["bytes"] == stored["bytes"]
        assert hashlib.sha256(content).hexdigest() == data["sha256"] == stored["sha256"]
        raw = {"none": lambda b: b, "gzip": gzip.decompress,
               "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)}[
            compress](content)  # fmt: skip
        assert len(raw) == stored["raw_bytes"]
        (tmp_path / "raw.rdb").write_bytes(raw)
        assert rdb_keys(tmp_path / "raw.rdb") == 300
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["format"] == 1 and manifest["backup_id"] == data["backup_id"]
        assert manifest["verification"]["status"] == VERIFIED
        for path in (dest, dest / "node-1", folder):
            assert path.stat().st_mode & 0o777 == 0o700, path
        for path in folder.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path
    replicated = runs[("replication", "zstd")].json()["results"][0]["data"]
    assert replicated["replid"] == c.info("replication")["master_replid"]
    assert isinstance(replicated["repl_offset"], int)
    assert len(backups_in(dest)) == 3
    listing = cli(seeded, "backup", "list", "--dest", str(dest))
    assert listing.exit_code == 0
    assert [line.split()[1] for line in listing.stdout.splitlines()[1:]] == backups_in(dest)
    assert "rdb+zstd" in listing.stdout and "rdb+gzip" in listing.stdout


def test_backup_dir_from_the_inventory_and_sentinels_skipped(make_lab, tmp_path):
    state = make_lab(replicas=1, sentinels=1, seed_keys=50)
    inventory = Path(state.inventory_path)
    text = inventory.read_text().replace(
        "    connection: local\n", f"    connection: local\n    backup_dir: {tmp_path / 'bd'}\n"
    )
    inventory.write_text(text)
    run = cli(state, "-o", "json", "backup", "run", "--via", "replication")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert [r["host"] for r in document["results"]] == ["node-1", "node-2"]
    assert document["summary"]["sentinels_skipped"] == ["sentinel-1"]
    assert [r["data"]["role"] for r in document["results"]] == ["master", "replica"]
    assert backups_in(tmp_path / "bd", "node-2") == [document["results"][1]["data"]["backup_id"]]
    assert cli(state, "backup", "list").stdout.count("node-") >= 2


# --- faults ----------------------------------------------------------------------------------


def _slow_saves(state) -> None:
    client_for(state).config_set("rdb-key-save-delay", SAVE_DELAY_US)


def _in_background(state, dest: Path, settings: BackupSettings):
    host = hosts_of(state)["node-1"]
    outcome: list = []
    worker = threading.Thread(
        target=lambda: outcome.extend(run_backups([host], {"node-1": dest}, settings, parallel=1))
    )
    worker.start()
    return worker, outcome


def test_server_sigkilled_mid_backup_fails_and_keeps_the_previous_one(seeded, tmp_path):
    dest = tmp_path / "backups"
    assert cli(seeded, "backup", "run", "--dest", str(dest)).exit_code == 0
    (previous,) = backups_in(dest)
    _slow_saves(seeded)
    worker, outcome = _in_background(seeded, dest, BackupSettings(via="replication", timeout=10))
    c = client_for(seeded)
    wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"], "the snapshot to start")
    wait_until(lambda: any((dest / "node-1").glob(".*.part/dump.rdb")), "data to arrive")
    os.kill(seeded.processes[0].pid, signal.SIGKILL)
    worker.join(WAIT)
    (result,) = outcome
    assert not result.ok
    assert "closed the connection after" in result.error
    assert backups_in(dest) == [previous]
    assert not [p for p in (dest / "node-1").iterdir() if p.name.endswith(".part")]
    assert cli(seeded, "backup", "verify", "--dest", str(dest), previous).exit_code == 0


def test_bgsave_child_killed_fails_the_run(seeded, tmp_path):
    dest = tmp_path / "backups"
    _slow_saves(seeded)
    worker, outcome = _in_background(seeded, dest, BackupSettings(via="file"))
    c = client_for(seeded)
    wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"], "BGSAVE to start")
    pid = seeded.processes[0].pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert children, "the BGSAVE child"
    os.kill(int(children[0]), signal.SIGKILL)
    worker.join(WAIT)
    (result,) = outcome
    assert not result.ok
    assert result.error.startswith("BGSAVE failed on 127.0.0.1:")
    assert "rdb_last_bgsave_status: err" in result.error
    assert backups_in(dest) == []
    c.config_set("rdb-key-save-delay", 0)  # so the lab stops at once


def test_redisops_killed_mid_copy_leaves_only_a_partial_that_is_never_listed(seeded, tmp_path):
    dest = tmp_path / "backups"
    _slow_saves(seeded)
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", seeded.inventory_path, "backup", "run",
         "--dest", str(dest), "--via", "replication"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: any((dest / "node-1").glob(".*.part/dump.rdb")), "the copy to start")
    finally:
        process.kill()
        process.wait()
    client_for(seeded).config_set("rdb-key-save-delay", 0)
    partials = [p.name for p in (dest / "node-1").iterdir() if p.name.endswith(".part")]
    assert len(partials) == 1
    listing = cli(seeded, "-o", "json", "backup", "list", "--dest", str(dest))
    assert listing.json()["results"] == []
    assert cli(seeded, "backup", "run", "--dest", str(dest)).exit_code == 0
    assert not [p for p in (dest / "node-1").iterdir() if p.name.endswith(".part")]
    assert len(backups_in(dest)) == 1


def test_destination_disk_full(make_lab, tmp_path):
    state = make_lab(replicas=0, sentinels=0, seed_keys=3000)  # 2.4 MB raw, 1.8 MB zstd
    with tmpfs(tmp_path / "small", "3m") as dest:
        first = cli(state, "backup", "run", "--dest", str(dest), "--compress", "zstd")
        assert first.exit_code == 0, first.stderr
        (old,) = backups_in(dest)
        full = cli(state, "backup", "run", "--dest", str(dest))
        assert full.exit_code == 1
        assert f"backup destination {dest}/node-1 is full (No space left on device)" in full.stderr
        assert "the partial backup is removed" in full.stderr
        assert backups_in(dest) == [old]
        assert not [p for p in (dest / "node-1").iterdir() if p.name.endswith(".part")]
        check = cli(state, "backup", "verify", "--dest", str(dest), old)
        assert check.exit_code == 0, check.stdout


def test_bgsave_failing_because_dir_is_not_writable(tmp_path):
    with tmpfs(tmp_path / "data", "4m") as data:
        subprocess.run(["mount", "-o", "remount,ro", str(data)], check=True)
        process, port = start_redis_server(tmp_path, "--dir", str(data))
        try:
            redis.Redis(port=port).set("k", "v")
            inventory = tmp_path / "inventory.yaml"
            inventory.write_text(
                f"all:\n  hosts:\n    solo: {{host: 127.0.0.1, port: {port}, connection: local}}\n"
            )
            run = redisops("-i", str(inventory), "backup", "run", "--dest", str(tmp_path / "b"),
                           "--via", "file")  # fmt: skip
        finally:
            process.kill()
            process.wait()
    assert run.exit_code == 1
    assert "BGSAVE failed on 127.0.0.1:" in run.stderr
    assert "dir may not be writable" in run.stderr
    assert backups_in(tmp_path / "b", "solo") == []


def test_a_second_run_is_refused_while_the_first_holds_the_lock(seeded, tmp_path):
    dest = tmp_path / "backups"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from pathlib import Path\n"
         "from redisops.backup.lock import host_locks\n"
         "with host_locks([(Path(sys.argv[1]), 'node-1')], purpose='backup run'):\n"
         "    print('locked', flush=True)\n"
         "    time.sleep(60)\n",
         str(dest)],
        stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == b"locked\n"
        second = cli(seeded, "backup", "run", "--dest", str(dest))
        assert second.exit_code == 3
        assert f"node-1 in {dest} is locked by pid {holder.pid} on " in second.stderr
        assert "(backup run, since " in second.stderr
        assert backups_in(dest) == []
    finally:
        holder.kill()  # dies holding the lock: the kernel releases it
        holder.wait()
    after = cli(seeded, "backup", "run", "--dest", str(dest))
    assert after.exit_code == 0, after.stderr
    assert len(backups_in(dest)) == 1


def test_backup_over_ssh_and_ssh_refused(seeded, sshd, tmp_path):
    node = hosts_of(seeded)["node-1"]
    fields = {"port": node.port, "password_file": node.password_file, "name": "node-1"}
    over_ssh = sshd.host(**fields)
    dest = tmp_path / "backups"
    settings = BackupSettings(via="file", timeout=10)
    (good,) = run_backups([over_ssh], {"node-1": dest}, settings, parallel=1)
    assert good.ok, good.error
    assert good.data.via == "file" and good.data.keys == 300 and good.data.verified

    wrong = sshd.host(**fields, ssh_known_hosts=str(sshd.wrong_known_hosts))
    (refused,) = run_backups([wrong], {"node-1": dest}, settings, parallel=1)
    assert not refused.ok
    assert refused.error.startswith(f"SSH host key of 127.0.0.1:{sshd.port} has CHANGED")
    assert backups_in(dest) == [good.data.backup_id]


def _enable_aof(state) -> redis.Redis:
    c = client_for(state)
    c.config_set("appendonly", "yes")
    wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0
               and c.info("persistence")["aof_enabled"] == 1, "AOF on")  # fmt: skip
    c.config_set("auto-aof-rewrite-percentage", 150)
    return c


def test_aof_backup_copies_every_part_and_restores_the_rewrite_setting(seeded, tmp_path):
    c = _enable_aof(seeded)
    dest = tmp_path / "backups"
    for i in range(40):
        c.set(f"after-rewrite:{i}", i)
    run = cli(seeded, "-o", "json", "backup", "run", "--dest", str(dest), "--kind", "aof")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert data["verified"] is True and data["aof_layout"] == "multi-part"
    roles = sorted(f["role"] for f in data["files"])
    assert roles == ["aof-base", "aof-incr", "aof-manifest"]
    checks = data["verification"]["checks"]
    assert "redis-check-aof: ok" in checks and "AOF manifest: 2 part(s), all present" in checks
    assert c.config_get("auto-aof-rewrite-percentage") == {"auto-aof-rewrite-percentage": "150"}

    # The copy failing midway (a full destination): the setting is restored all the same.
    with tmpfs(tmp_path / "tiny", "64k") as tiny:
        broken = cli(seeded, "backup", "run", "--dest", str(tiny), "--kind", "aof")
        assert broken.exit_code == 1
        assert "is full (No space left on device)" in broken.stderr
        assert backups_in(tiny) == []
    assert c.config_get("auto-aof-rewrite-percentage") == {"auto-aof-rewrite-percentage": "150"}

    # A part missing from the backup: verify names it.
    folder = Path(data["path"])
    (stored_incr,) = folder.glob("*.incr.aof")
    stored_incr.unlink()
    check = cli(seeded, "backup", "verify", "--dest", str(dest), data["backup_id"])
    assert check.exit_code == 1
    assert f"{stored_incr.name}: missing" in check.stderr
    assert f"AOF manifest names missing part(s): {stored_incr.name}" in check.stdout
    assert read_backup(folder).verification.status == FAILED


def test_crc_trailer_zero_is_unverifiable_never_verified(tmp_path):
    process, port = start_redis_server(tmp_path, "--rdbchecksum", "no",
                                       "--repl-diskless-sync-delay", "0")  # fmt: skip
    try:
        redis.Redis(port=port).mset({f"k{i}": i for i in range(20)})
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(f"all:\n  hosts:\n    solo: {{host: 127.0.0.1, port: {port}}}\n")
        dest = tmp_path / "b"
        run = redisops("-i", str(inventory), "-o", "json", "backup", "run", "--dest", str(dest))
    finally:
        process.kill()
        process.wait()
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert data["via"] == "replication"  # no host access in this inventory
    assert data["verified"] is False
    assert data["verification"]["status"] == UNVERIFIABLE
    assert "CRC64 trailer is 0 (saved with rdbchecksum no)" in run.stderr
    check = redisops("-i", str(inventory), "backup", "verify", "--dest", str(dest), "--all")
    assert check.exit_code == 0
    assert "unverifiable" in check.stdout and "verified " not in check.stdout


def test_a_snapshot_ends_at_its_eof_mark_while_the_server_keeps_the_connection(tmp_path):
    """Reads wait for 256 KiB or 10 ms, whichever comes first, so the end of a snapshot is
    taken as it comes: here the server keeps the connection open after the snapshot, as for
    any replica without rdb-only (refused by an ACL, as Redis < 7 does), waiting for an ACK.
    10 MB of it, so that the file's early writeback (every 8 MiB) runs as well."""
    process, port = start_redis_server(tmp_path, "--repl-diskless-sync-delay", "0")
    try:
        client = redis.Redis(port=port)
        client.execute_command("ACL", "SETUSER", "backup", "on", ">backup-secret", "+@all",
                               "-replconf", "+replconf|capa", "+replconf|ack")  # fmt: skip
        pipe = client.pipeline(transaction=False)
        for i in range(2500):
            pipe.set(f"key:{i}", os.urandom(4096))  # ~10 MB that LZF cannot shrink
        pipe.execute()
        secret = tmp_path / "secret"
        secret.write_text("backup-secret\n")
        secret.chmod(0o600)
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            f"all:\n  hosts:\n    solo: {{host: 127.0.0.1, port: {port}, username: backup, "
            f"password_file: {secret}}}\n"
        )
        dest = tmp_path / "b"
        started = time.monotonic()
        run = redisops("-i", str(inventory), "--timeout", "30", "-o", "json", "backup", "run",
                       "--dest", str(dest))  # fmt: skip
        elapsed = time.monotonic() - started
        (denied,) = client.acl_log()
    finally:
        process.kill()
        process.wait()
    assert run.exit_code == 0, run.stderr
    assert (denied["username"], denied["object"]) == ("backup", "replconf")
    assert elapsed < 20  # waiting for the server to close would end in the 30 s timeout
    data = run.json()["results"][0]["data"]
    assert data["verified"] is True
    assert (data["keys"], data["keys_source"]) == (2500, "redis-check-rdb")
    stored = Path(data["path"]) / "dump.rdb"
    assert data["bytes"] == stored.stat().st_size > 10_000_000
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == data["sha256"]


def test_over_tls_a_snapshot_streams_and_a_frozen_server_times_out(tmp_path):
    """TLS reads are not batched (OpenSSL reads record by record, and would retry a batched
    wait by itself, past the stall timeout): the snapshot arrives whole, and a server
    frozen mid-snapshot still fails after one timeout."""
    paths = tls_certificates(tmp_path)
    process, port = start_tls_redis_server(
        tmp_path, paths["good_cert"], paths["good_key"], paths["ca"]
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(paths["ca"]))
        client.config_set("repl-diskless-sync-delay", 0)
        pipe = client.pipeline(transaction=False)
        for i in range(3000):
            pipe.set(f"key:{i}", os.urandom(4096))  # ~12 MB that LZF cannot shrink
        pipe.execute()
        host = Host(
            name="t", host="127.0.0.1", port=port, tls=TlsSettings(ca_file=str(paths["ca"]))
        )
        whole = io.BytesIO()
        snapshot = stream_rdb(host, whole, timeout=10)
        assert snapshot.bytes == len(whole.getvalue()) > 12_000_000
        checker = RdbChecker()
        checker.feed(whole.getvalue())
        assert (checker.finish().crc, snapshot.diskless) == (CRC_OK, True)
        frozen = bytearray()

        class FreezeServer:
            def write(self, data) -> None:
                if not frozen:
                    os.kill(process.pid, signal.SIGSTOP)
                frozen.extend(data)

        started = time.monotonic()
        with pytest.raises(HostError) as failure:
            stream_rdb(host, FreezeServer(), timeout=1)
        assert time.monotonic() - started < 30
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()
    assert failure.value.message.startswith(f"127.0.0.1:{port} stalled for 1s after ")
    assert 0 < len(frozen) < 12_000_000


def test_verify_names_truncation_and_flipped_bytes(seeded, tmp_path):
    dest = tmp_path / "backups"
    for _ in range(2):
        assert cli(seeded, "backup", "run", "--dest", str(dest)).exit_code == 0
    truncated, flipped = (dest / "node-1" / name for name in backups_in(dest))
    data = truncated / "dump.rdb"
    data.write_bytes(data.read_bytes()[:-500])
    data = flipped / "dump.rdb"
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))

    check = cli(seeded, "-o", "json", "backup", "verify", "--dest", str(dest), "--all")
    assert check.exit_code == 1
    first, second = (r["data"] for r in check.json()["results"])
    assert first["status"] == second["status"] == FAILED
    assert any("SHA-256 mismatch" in p for p in first["problems"])
    assert (
        "dump.rdb: truncated or corrupted: no end-of-file marker before the checksum"
        in (first["problems"])
    )
    assert any(p.startswith("dump.rdb: CRC64 mismatch") for p in second["problems"])
    assert any(p.startswith("redis-check-rdb:") for p in second["problems"])
    assert read_backup(truncated).verified is False  # recorded for prune


def test_metrics_file_keeps_the_last_success_when_a_run_fails(seeded, tmp_path):
    dest, metrics = tmp_path / "backups", tmp_path / "textfile" / "redisops.prom"
    metrics.parent.mkdir()
    assert (
        cli(seeded, "backup", "run", "--dest", str(dest), "--metrics-file", str(metrics)).exit_code
        == 0
    )
    good = read_backup(dest / "node-1" / backups_in(dest)[0])
    text = metrics.read_text()
    labels = '{host="node-1",kind="rdb"}'
    assert f"redisops_backup_last_run_success{labels} 1\n" in text
    assert f"redisops_backup_last_success_keys{labels} 300\n" in text
    assert f"redisops_backup_last_success_bytes{labels} {good.bytes}\n" in text
    assert metrics.stat().st_mode & 0o777 == 0o644

    os.kill(seeded.processes[0].pid, signal.SIGKILL)
    failed = cli(seeded, "backup", "run", "--dest", str(dest), "--metrics-file", str(metrics))
    assert failed.exit_code == 1
    text = metrics.read_text()
    assert f"redisops_backup_last_run_success{labels} 0\n" in text
    stamp = f"{good.finished.timestamp():.3f}"
    assert f"redisops_backup_last_success_timestamp_seconds{labels} {stamp}\n" in text
    assert not list(metrics.parent.glob(".*"))  # no temporary left


# --- prune -------------------------------------------------------------------------------------


def _history(seeded, tmp_path) -> Path:
    """One real backup cloned into a history of 10 (every 2 days back from now); the 2nd and
    the 5th newest marked failed, the newest unverifiable."""
    dest = tmp_path / "backups"
    assert cli(seeded, "backup", "run", "--dest", str(dest)).exit_code == 0
    (origin,) = backups_in(dest)
    source = read_backup(dest / "node-1" / origin)
    now = datetime.now(timezone.utc)
    for age in range(10):
        finished = now - timedelta(days=2 * age, hours=1)
        backup_id = f"node-1-{finished:%Y%m%dT%H%M%SZ}"
        folder = dest / "node-1" / backup_id
        folder.mkdir(mode=0o700)
        (folder / "dump.rdb").write_bytes((dest / "node-1" / origin / "dump.rdb").read_bytes())
        status = {0: UNVERIFIABLE, 1: FAILED, 4: FAILED}.get(age, VERIFIED)
        write_manifest(folder, replace(
            source, backup_id=backup_id, finished_at=format_time(finished),
            verification=Verification(status, format_time(now)), verified=status == VERIFIED,
        ))  # fmt: skip
    shutil.rmtree(dest / "node-1" / origin)
    return dest


def test_prune_plan_never_drops_the_newest_verified_and_failed_never_count(seeded, tmp_path):
    dest = _history(seeded, tmp_path)
    backups = load_catalogue([dest]).backups
    newest_first = sorted(backups, key=lambda b: b.finished_at, reverse=True)
    ids = [b.backup_id for b in newest_first]

    decisions = {d.backup_id: d for d in plan_prune(backups, RetentionPolicy(keep_last=2))}
    kept = [i for i in ids if decisions[i].keep]
    # last 2 good: the unverifiable newest and the 3rd (the 2nd failed); the newest verified
    # (the 3rd) is kept anyway; the failed 2nd is newer than a kept good one: it goes.
    assert kept == [ids[0], ids[2]]
    assert decisions[ids[2]].reasons == ("last 2", "newest verified")
    assert decisions[ids[1]].keep is False

    only_one = {d.backup_id: d for d in plan_prune(backups, RetentionPolicy(keep_last=1))}
    assert [i for i in ids if only_one[i].keep] == [ids[0], ids[2]]
    assert only_one[ids[2]].reasons == ("newest verified",)

    weekly = {d.backup_id: d for d in plan_prune(backups, RetentionPolicy(keep_weekly=52))}
    weeks = {
        f"{b.finished.isocalendar()[0]}-{b.finished.isocalendar()[1]}" for b in backups if b.good
    }
    assert sum(1 for d in weekly.values() if d.keep and d.status != FAILED) >= len(weeks)

    with pytest.raises(Exception, match="at least one rule"):
        plan_prune(backups, RetentionPolicy())


def test_prune_cli_dry_run_then_yes(seeded, tmp_path):
    dest = _history(seeded, tmp_path)
    before = backups_in(dest)
    dry = cli(seeded, "-o", "json", "backup", "prune", "--dest", str(dest), "--keep-last", "2",
              "--keep-daily", "3", "--dry-run")  # fmt: skip
    assert dry.exit_code == 0
    planned = {r["data"]["backup_id"]: r["data"]["keep"] for r in dry.json()["results"]}
    assert backups_in(dest) == before
    refused = cli(seeded, "backup", "prune", "--dest", str(dest), "--keep-last", "2",
                  "--keep-daily", "3")  # fmt: skip
    assert refused.exit_code == 3 and "not on a terminal and --yes not given" in refused.stderr
    assert backups_in(dest) == before
    done = cli(seeded, "-o", "json", "backup", "prune", "--dest", str(dest), "--keep-last", "2",
               "--keep-daily", "3", "--yes")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert backups_in(dest) == sorted(i for i, keep in planned.items() if keep)
    assert done.json()["summary"]["deleted"] == sum(1 for k in planned.values() if not k) > 0
