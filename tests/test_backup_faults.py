"""`backup run` under signals, kill -9, a frozen server and a failed fork, on real processes.

Each test runs `python -m redisops` as cron would, makes the server slow on purpose
(`rdb-key-save-delay`: 20 ms per key, so saving 300 keys takes 6 s), polls a real condition
to reach the moment it wants, then signals, freezes or kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.test_backup import SAVE_DELAY_US, backups_in, client_for, wait_until

RECORD = ".settings.json"
STOP_SECONDS = 1.5  # "within a second", with room for a loaded machine
FROZEN_TIMEOUT = 4  # --timeout for the frozen-server tests


def start_backup(state, dest: Path, *args: str, timeout: float | None = None, json_out=False):
    """`redisops backup run` as a real process; stdout and stderr go to files."""
    options = ["--timeout", str(timeout)] if timeout else []
    options += ["-o", "json"] if json_out else []
    out, err = dest.parent / "stdout.txt", dest.parent / "stderr.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", state.inventory_path, *options,
         "backup", "run", "--dest", str(dest), *args],
        stdout=out.open("w"), stderr=err.open("w"),
    )  # fmt: skip
    return process, out, err


def finish(process, seconds: float = 30) -> int:
    try:
        return process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def leftovers(dest: Path) -> list[str]:
    """Everything in the host's catalogue folder but its lock."""
    folder = dest / "node-1"
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.is_dir() else []


def calm(c: redis.Redis) -> None:
    """Saves at full speed again, and no fork left running (so the lab stops at once)."""
    c.config_set("rdb-key-save-delay", 0)
    wait_until(
        lambda: not any(
            c.info("persistence")[flag] for flag in ("rdb_bgsave_in_progress",
                                                     "aof_rewrite_in_progress")
        ),
        "forks to end",
    )  # fmt: skip


@pytest.fixture
def seeded(make_lab):
    return make_lab(replicas=0, sentinels=0, seed_keys=300)


@pytest.fixture
def aof_lab(seeded):
    """The seeded master with AOF on, auto-aof-rewrite-percentage 150, and slow saves."""
    c = client_for(seeded)
    c.config_set("appendonly", "yes")
    wait_until(lambda: c.info("persistence")["aof_rewrite_in_progress"] == 0
               and c.info("persistence")["aof_enabled"] == 1, "AOF on")  # fmt: skip
    c.config_set("auto-aof-rewrite-percentage", 150)
    c.config_set("rdb-key-save-delay", SAVE_DELAY_US)  # an AOF rewrite writes an RDB preamble
    return seeded, c


def rewrite_paused(c: redis.Redis, dest: Path, *, recorded: bool = True) -> bool:
    """The backup has paused rewrites (and recorded it), and its own rewrite is running."""
    return (
        ((dest / "node-1" / RECORD).exists() or not recorded)
        and c.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] == "0"
        and c.info("persistence")["aof_rewrite_in_progress"] == 1
    )


# --- issue 20 item 4: one Ctrl-C stops a backup at once, leaving nothing ---------------------


@pytest.mark.parametrize("via", ["replication", "file"])
def test_one_ctrl_c_stops_a_backup_within_a_second_and_leaves_nothing(seeded, tmp_path, via):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    c.config_set("rdb-key-save-delay", SAVE_DELAY_US)
    process, _, err = start_backup(seeded, dest, "--via", via)
    try:
        if via == "replication":  # the snapshot is streaming into the partial folder
            wait_until(lambda: any((dest / "node-1").glob(".*.part/dump.rdb")), "data to arrive")
        else:  # the server's BGSAVE is running; redisops waits for it
            wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"], "the BGSAVE")
        os.kill(process.pid, signal.SIGINT)
        sent = time.monotonic()
        code = finish(process)
        took = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    calm(c)
    assert code == 130
    assert took < STOP_SECONDS, f"stopped {took:.2f}s after Ctrl-C"
    assert "interrupted: SIGINT; 0 of 1 hosts finished" in err.read_text()
    assert leftovers(dest) == []  # no partial folder, no backup
    listing = subprocess.run(
        [sys.executable, "-m", "redisops", "-i", seeded.inventory_path, "-o", "json",
         "backup", "list", "--dest", str(dest)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(listing.stdout)["results"] == []


# --- issue 21 item 4: a setting changed for an AOF backup is always put back -----------------


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)]
)
def test_a_signal_during_an_aof_backup_puts_the_rewrite_setting_back(
    aof_lab, tmp_path, signum, code
):
    state, c = aof_lab
    dest = tmp_path / "backups"
    process, _, err = start_backup(state, dest, "--kind", "aof")
    try:
        wait_until(lambda: rewrite_paused(c, dest), "rewrites paused and the rewrite running")
        record = json.loads((dest / "node-1" / RECORD).read_text())
        assert [(r["name"], r["original"], r["value"]) for r in record] == [
            ("auto-aof-rewrite-percentage", "150", "0")
        ]
        os.kill(process.pid, signum)
        sent = time.monotonic()
        assert finish(process) == code
        took = time.monotonic() - sent
    finally:
        process.kill()
        process.wait()
    setting = c.config_get("auto-aof-rewrite-percentage")
    calm(c)
    assert setting == {"auto-aof-rewrite-percentage": "150"}
    assert took < STOP_SECONDS, f"stopped {took:.2f}s after {signal.Signals(signum).name}"
    assert f"interrupted: {signal.Signals(signum).name}" in err.read_text()
    assert leftovers(dest) == []  # the record went with the setting put back; no backup


def test_kill_9_during_an_aof_backup_is_repaired_by_the_next_run(aof_lab, tmp_path):
    state, c = aof_lab
    dest = tmp_path / "backups"
    process, _, _ = start_backup(state, dest, "--kind", "aof")
    try:
        wait_until(lambda: rewrite_paused(c, dest), "rewrites paused and the rewrite running")
    finally:
        process.kill()  # SIGKILL: no clean-up at all
        process.wait()
    calm(c)
    assert c.config_get("auto-aof-rewrite-percentage") == {"auto-aof-rewrite-percentage": "0"}
    assert (dest / "node-1" / RECORD).exists()

    again, out, err = start_backup(state, dest, "--kind", "aof", json_out=True)
    assert finish(again, 60) == 0, err.read_text()
    port = c.connection_pool.connection_kwargs["port"]
    assert (
        f"warning: auto-aof-rewrite-percentage on 127.0.0.1:{port} was left at '0' by a backup "
        f"run that did not finish (pid {process.pid}, since "
    ) in err.read_text()
    assert "; put back to '150'" in err.read_text()
    assert c.config_get("auto-aof-rewrite-percentage") == {"auto-aof-rewrite-percentage": "150"}
    assert not (dest / "node-1" / RECORD).exists()
    data = json.loads(out.read_text())["results"][0]["data"]
    assert data["verified"] is True and backups_in(dest) == [data["backup_id"]]


def test_a_setting_changed_by_someone_else_since_is_left_alone(aof_lab, tmp_path):
    state, c = aof_lab
    dest = tmp_path / "backups"
    process, _, _ = start_backup(state, dest, "--kind", "aof")
    try:
        wait_until(lambda: rewrite_paused(c, dest), "rewrites paused and the rewrite running")
    finally:
        process.kill()
        process.wait()
    calm(c)
    c.config_set("auto-aof-rewrite-percentage", 80)  # an operator's own choice since
    again, _, err = start_backup(state, dest, "--kind", "aof")
    assert finish(again, 60) == 0, err.read_text()
    assert "it is now '80' (changed since): left as it is" in err.read_text()
    assert c.config_get("auto-aof-rewrite-percentage") == {"auto-aof-rewrite-percentage": "80"}
    assert not (dest / "node-1" / RECORD).exists()


# --- issue 21 item 10: a frozen server fails a backup within about one timeout ---------------


@pytest.mark.parametrize("case", ["rdb-replication", "rdb-file", "aof"])
def test_a_frozen_server_fails_a_backup_within_the_timeout(aof_lab, tmp_path, case):
    state, c = aof_lab
    dest = tmp_path / "backups"
    args = ["--kind", "aof"] if case == "aof" else ["--via", case.split("-")[1]]
    process, _, err = start_backup(state, dest, *args, timeout=FROZEN_TIMEOUT)
    pid = state.processes[0].pid
    try:
        if case == "rdb-replication":
            wait_until(lambda: any((dest / "node-1").glob(".*.part/dump.rdb")), "data to arrive")
        elif case == "rdb-file":
            wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"], "the BGSAVE")
        else:
            wait_until(lambda: rewrite_paused(c, dest, recorded=False), "rewrites paused")
        os.kill(pid, signal.SIGSTOP)
        frozen = time.monotonic()
        code = finish(process)
        took = time.monotonic() - frozen
    finally:
        os.kill(pid, signal.SIGCONT)
        process.kill()
        process.wait()
    assert code == 1
    assert took < FROZEN_TIMEOUT + 1.5, f"failed {took:.2f}s after the freeze"
    assert leftovers(dest) == ([RECORD] if case == "aof" else [])
    stderr = err.read_text()
    if case == "aof":  # the server could not be asked to put it back: the next run will
        assert "auto-aof-rewrite-percentage on 127.0.0.1:" in stderr
        assert "could not be put back to '150'" in stderr
        assert "the next backup run of this host puts it back" in stderr
        calm(c)
        again, _, err = start_backup(state, dest, "--kind", "aof")
        assert finish(again, 60) == 0, err.read_text()
        assert "; put back to '150'" in err.read_text()
        assert c.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"] == "150"
    calm(c)


# --- issue 21 item 5: a failed BGSAVE blocks a master's writes; forks are checked first -------


def test_a_killed_bgsave_says_writes_are_blocked_and_how_to_unblock(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    c.config_set("rdb-key-save-delay", SAVE_DELAY_US)
    process, _, err = start_backup(seeded, dest, "--via", "file")
    try:
        wait_until(lambda: c.info("persistence")["rdb_bgsave_in_progress"], "the BGSAVE")
        pid = seeded.processes[0].pid
        (child,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        os.kill(int(child), signal.SIGKILL)
        code = finish(process)
    finally:
        process.kill()
        process.wait()
    stderr = " ".join(err.read_text().split())
    assert code == 1
    assert "BGSAVE failed on 127.0.0.1:" in stderr and "(rdb_last_bgsave_status: err)" in stderr
    assert "the master now REFUSES WRITES and PING (MISCONF" in stderr
    assert "then run BGSAVE until it succeeds" in stderr
    assert "CONFIG SET stop-writes-on-bgsave-error no unblocks at once" in stderr
    assert leftovers(dest) == []
    # What the message says is so: writes are refused ...
    with pytest.raises(redis.ResponseError, match=r"^MISCONF"):
        c.set("after-the-failed-save", 1)
    # ... until a BGSAVE succeeds, as the hint says.
    c.config_set("rdb-key-save-delay", 0)
    c.bgsave()
    wait_until(lambda: c.info("persistence")["rdb_last_bgsave_status"] == "ok", "a good save")
    assert c.set("after-the-failed-save", 1) is True


def test_the_source_is_replication_for_a_master_and_file_for_a_replica(make_lab, tmp_path):
    state = make_lab(replicas=1, sentinels=0, seed_keys=50)
    dest = tmp_path / "backups"
    process, out, err = start_backup(state, dest, json_out=True)
    assert finish(process, 60) == 0, err.read_text()
    rows = {r["host"]: r["data"] for r in json.loads(out.read_text())["results"]}
    assert (rows["node-1"]["role"], rows["node-1"]["via"]) == ("master", "replication")
    assert (rows["node-2"]["role"], rows["node-2"]["via"]) == ("replica", "file")
    assert rows["node-1"]["verified"] and rows["node-2"]["verified"]


def run_with_machine(state, tmp_path: Path, meminfo: str, overcommit: int, *args: str):
    """`backup run` in a mount namespace where /proc/meminfo and vm.overcommit_memory read
    as given: what redisops reads on the host then (the server itself is unaffected)."""
    fake_meminfo, fake_overcommit = tmp_path / "meminfo", tmp_path / "overcommit_memory"
    fake_meminfo.write_text(meminfo)
    fake_overcommit.write_text(f"{overcommit}\n")
    command = [sys.executable, "-m", "redisops", "-i", state.inventory_path, "backup", "run",
               "--dest", str(tmp_path / "backups"), *args]  # fmt: skip
    script = (
        f"mount --bind {fake_meminfo} /proc/meminfo && "
        f"mount --bind {fake_overcommit} /proc/sys/vm/overcommit_memory && "
        'exec "$@"'
    )
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *command],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    if "mount:" in done.stderr or "unshare:" in done.stderr:
        pytest.skip(f"cannot fake /proc here: {done.stderr.strip()}")
    return done


def test_a_bgsave_the_machine_cannot_afford_is_refused_before_any_fork(seeded, tmp_path):
    c = client_for(seeded)
    rss = c.info("memory")["used_memory_rss"]
    forks = c.info("stats")["total_forks"]
    short = f"MemTotal: 8000000 kB\nMemAvailable: {rss // 2048} kB\n"
    short += "CommitLimit: 8000000 kB\nCommitted_AS: 1000 kB\n"
    refused = run_with_machine(seeded, tmp_path, short, 0, "--via", "file")
    assert refused.returncode == 3, refused.stderr
    message = " ".join(refused.stderr.split())
    assert f"error: node-1: {rss / 2 / (1 << 20):,.1f} MiB of memory available" in message
    assert "a BGSAVE that runs out of memory fails, and the master then refuses writes" in message
    assert "--via replication is safer" in message and "nothing was backed up" in message
    assert c.info("stats")["total_forks"] == forks  # nothing was asked of the server
    assert leftovers(tmp_path / "backups") == []

    # Over replication a failed snapshot blocks nothing: a warning, and the backup is taken.
    warned = run_with_machine(seeded, tmp_path, short, 0)
    assert warned.returncode == 0, warned.stderr
    assert "a busy server may run out of memory during the backup" in warned.stderr
    assert len(backups_in(tmp_path / "backups")) == 1

    # Strict overcommit without room to commit a copy: the fork would fail; refused anyway.
    strict = "MemTotal: 8000000 kB\nMemAvailable: 8000000 kB\n"
    strict += f"CommitLimit: {rss // 1024 + 1000} kB\nCommitted_AS: {rss // 1024} kB\n"
    refused = run_with_machine(seeded, tmp_path, strict, 2)
    assert refused.returncode == 3, refused.stderr
    assert "the kernel would refuse the fork a snapshot needs (vm.overcommit_memory=2" in (
        " ".join(refused.stderr.split())
    )
    assert len(backups_in(tmp_path / "backups")) == 1
