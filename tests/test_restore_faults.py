"""`backup restore` under faults, on real labs with real restarts: a runtime-only appendonly,
a backup that cannot load, a server that does not come up, a failed upload, and a real
SIGTERM / SIGINT sent to a real `python -m redisops` at a chosen moment."""

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

from redisops.backup.catalogue import load_catalogue
from redisops.backup.restore import execute_restore, plan_restore
from redisops.errors import HostError
from redisops.fleet.inventory import load_inventory
from tests.test_backup import backups_in, client_for, hosts_of, seeded, wait_until
from tests.test_backup_restore import aof_on, backup, contents, restore

__all__ = ["seeded"]  # the fixture, shared with test_backup
POLL_SECONDS = 0.05
DEADLINE = 60.0


def data_dir(state) -> Path:
    return Path(state.processes[0].folder)


def leftovers(state) -> list[str]:
    """Whatever a restore may leave in the data dir: staged copies, kept-aside data."""
    return sorted(p.name for p in data_dir(state).iterdir() if "redisops" in p.name)


def answers(state) -> bool:
    try:
        return client_for(state).ping()
    except redis.RedisError:
        return False


def restart(state, config_lines: tuple[str, ...] = ()) -> None:
    """Stop node-1 (it saves on SIGTERM), append lines to its config file, start it again."""
    node = hosts_of(state)["node-1"]
    subprocess.run(["sh", "-c", node.service_stop], check=True)
    wait_until(lambda: not answers(state), "the stop")
    if config_lines:
        config = data_dir(state) / "redis.conf"
        config.write_text(config.read_text() + "".join(f"{line}\n" for line in config_lines))
    subprocess.run(["sh", "-c", node.service_start], check=True)
    wait_until(lambda: answers(state) and not client_for(state).info("persistence")["loading"],
               "the start")  # fmt: skip


def add_keys(c: redis.Redis, prefix: str, count: int) -> None:
    c.mset({f"{prefix}:{i}": i for i in range(count)})


# --- issue 21 item 2: what the server loads at start decides what is installed -----------------


def test_aof_backup_onto_appendonly_set_at_runtime_only_is_refused(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    aof_on(c)  # at runtime only: redis.conf still says `appendonly no`
    taken = backup(seeded, dest, "--kind", "aof")
    add_keys(c, "later", 50)
    before = contents(c)
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes")
    assert run.exit_code == 3, run.stderr
    config = data_dir(seeded) / "redis.conf"
    assert (
        f"cannot restore onto node-1: node-1 runs with appendonly yes set at runtime only: its "
        f"config file {config} says no, so after the restart it would load dump.rdb and ignore "
        "a restored AOF" in run.stderr
    )
    assert "CONFIG REWRITE" in run.stderr
    assert contents(client_for(seeded)) == before and len(before) == 350
    assert backups_in(dest) == [taken["backup_id"]]  # no safety backup: nothing was started
    assert leftovers(seeded) == []


def test_rdb_backup_goes_where_the_config_file_says_not_the_runtime_setting(seeded, tmp_path):
    """redis.conf says `appendonly yes`, the server runs with it off: after the restart the
    AOF wins, so the RDB must become its base (else the stale AOF comes back)."""
    dest = tmp_path / "backups"
    c = client_for(seeded)
    before = contents(c)
    taken = backup(seeded, dest)
    aof_on(c)
    c.config_rewrite()  # redis.conf: appendonly yes
    add_keys(c, "in-the-stale-aof", 7)
    c.config_set("appendonly", "no")  # off at runtime only
    c.flushall()
    c.set("written-after", 1)
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes", "--no-safety-backup")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["keys_expected"], data["keys_now"], data["keys_match"]) == (300, 300, True)
    c = client_for(seeded)
    assert c.info("persistence")["aof_enabled"] == 1  # as redis.conf says
    assert contents(c) == before
    assert data["set_aside"] == f"{data_dir(seeded)}/appendonlydir.before-{taken['backup_id']}"


def test_rdb_backup_onto_appendonly_set_at_runtime_only_replaces_only_the_rdb(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    before = contents(c)
    taken = backup(seeded, dest)
    aof_on(c)  # runtime only
    add_keys(c, "later", 20)
    manifest = data_dir(seeded) / "appendonlydir" / "appendonly.aof.manifest"
    aof_before = manifest.read_bytes()
    dry = restore(seeded, taken["backup_id"], "--dest", str(dest), "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    steps = dry.json()["results"][0]["data"]["steps"]
    assert any("appendonly yes is set at runtime only" in s for s in steps), steps
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes", "--no-safety-backup")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["keys_loaded"], data["keys_match"], data["set_aside"]) == (300, True, None)
    c = client_for(seeded)
    assert c.info("persistence")["aof_enabled"] == 0  # redis.conf's word, after the restart
    assert contents(c) == before
    assert manifest.read_bytes() == aof_before  # the AOF the server does not load: untouched


def test_a_key_count_that_does_not_match_is_a_failure(seeded, tmp_path):
    """An AOF backup's count comes from INFO when the capture starts; writes during the copy
    make the files hold more: here the manifest says 250 where the files hold 300."""
    dest = tmp_path / "backups"
    c = client_for(seeded)
    aof_on(c)
    c.config_rewrite()
    taken = backup(seeded, dest, "--kind", "aof")
    manifest = Path(taken["path"]) / "manifest.json"
    document = json.loads(manifest.read_text())
    assert document["keys"] == 300
    manifest.write_text(json.dumps({**document, "keys": 250}))
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes", "--no-safety-backup")
    assert run.exit_code == 1, run.stderr
    row = run.json()["results"][0]
    assert row["ok"] is False and row["data"]["keys_match"] is False
    assert row["error"] == (
        "restored, but the key count does not match: node-1 holds 300 keys where the backup "
        "holds 250 (counted by INFO when it was taken)"
    )
    assert run.stderr.count("error: node-1: restored, but the key count does not match") == 1


# --- issue 21 item 3: never install what cannot load; put the previous data back ---------------


def test_force_never_installs_an_aof_whose_manifest_names_a_missing_part(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    aof_on(c)
    c.config_rewrite()
    add_keys(c, "incr", 10)  # an incr part with something in it
    taken = backup(seeded, dest, "--kind", "aof")
    incr = next(Path(taken["path"]).glob("*.incr.aof"))
    incr.unlink()
    before = contents(c)
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes", "--force")
    assert run.exit_code == 3, run.stderr
    assert (
        f"cannot restore onto node-1: the backup does not verify: {incr.name}: missing"
        in run.stderr
    )
    assert contents(client_for(seeded)) == before
    assert backups_in(dest) == [taken["backup_id"]] and leftovers(seeded) == []


@pytest.mark.parametrize("appendonly", [False, True], ids=["rdb", "aof"])
def test_a_server_that_does_not_come_up_gets_its_previous_data_back(seeded, tmp_path, appendonly):
    """The backup holds a key in db 9; the target now has `databases 4`, so Redis exits on
    load ("created with a Redis server configured to handle more than 4 databases"). With
    appendonly on, the RDB went in as the base of a fresh AOF: the previous AOF comes back."""
    dest = tmp_path / "backups"
    c = client_for(seeded)
    db9 = redis.Redis(port=c.connection_pool.connection_kwargs["port"], db=9,
                      password=c.connection_pool.connection_kwargs["password"])  # fmt: skip
    db9.set("in-db-9", 1)
    taken = backup(seeded, dest)
    db9.flushdb()
    add_keys(c, "after", 5)
    if appendonly:
        aof_on(c)
        c.config_rewrite()
    restart(seeded, ("databases 4",))
    before = contents(client_for(seeded))
    assert len(before) == 305
    aof_dir = data_dir(seeded) / "appendonlydir"
    aof_before = {p.name: p.read_bytes() for p in aof_dir.iterdir()} if appendonly else {}
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes", "--wait", "30")
    assert run.exit_code == 1, run.stderr
    row = run.json()["results"][0]
    assert row["ok"] is False
    assert row["error"].startswith("node-1 did not come up on the restored data")
    assert row["error"].endswith(
        "the previous data was put back and node-1 was started again on it (305 keys)"
    )
    c = client_for(seeded)
    assert contents(c) == before
    assert c.info("persistence")["aof_enabled"] == int(appendonly)
    if appendonly:  # the same AOF files as before (the incr part may have grown since)
        after = {p.name: p.read_bytes() for p in aof_dir.iterdir()}
        assert after.keys() == aof_before.keys()
        assert all(after[name].startswith(data) for name, data in aof_before.items())
    assert leftovers(seeded) == []
    assert not [p for p in data_dir(seeded).iterdir() if ".before-" in p.name]


def test_a_failed_upload_leaves_nothing_in_the_data_dir(seeded, tmp_path):
    """The backup loses a part between the plan and the upload: the upload fails midway
    through the AOF folder; nothing is left beside the live files and nothing changed."""
    dest = tmp_path / "backups"
    c = client_for(seeded)
    aof_on(c)
    c.config_rewrite()
    add_keys(c, "incr", 10)
    taken = backup(seeded, dest, "--kind", "aof")
    before = contents(c)
    target = hosts_of(seeded)["node-1"]
    hosts = load_inventory(seeded.inventory_path).hosts
    chosen = load_catalogue([dest]).backups[0]
    plan = plan_restore(chosen, target, hosts, from_host=None, safety_backup=False,
                        timeout=5, wait=30)  # fmt: skip
    assert not plan.blockers and not plan.refusals
    next(Path(taken["path"]).glob("*.incr.aof")).unlink()
    with pytest.raises(HostError, match=r"\.incr\.aof"):
        execute_restore(plan, chosen, target, dest, timeout=5, wait=30)
    assert leftovers(seeded) == []
    assert contents(client_for(seeded)) == before


def test_still_loading_at_the_wait_keeps_the_previous_file_and_blocks_a_rerun(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    restored = contents(c)
    taken = backup(seeded, dest)
    add_keys(c, "after", 40)
    slow_loading(seeded)
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes",
                  "--no-safety-backup", "--wait", "3")  # fmt: skip
    assert run.exit_code == 1, run.stderr
    kept = data_dir(seeded) / f".redisops-restore-{taken['backup_id']}.previous.rdb"
    assert run.json()["results"][0]["error"] == (
        "node-1 was started but has not loaded its data within 3s: still loading; the "
        f"previous data file is kept at {kept}"
    )
    wait_until(lambda: answers(seeded) and not _loading(seeded), "the load")
    assert contents(client_for(seeded)) == restored
    assert leftovers(seeded) == [kept.name]
    again = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes")
    assert again.exit_code == 3
    assert f"{kept} is left from an interrupted restore of {taken['backup_id']}" in again.stderr


def slow_loading(state) -> None:
    """From the next start on, loading takes seconds (20 ms a key), and the server answers
    INFO while it loads (by default only every 2 MB loaded)."""
    config = data_dir(state) / "redis.conf"
    config.write_text(config.read_text() + "key-load-delay 20000\n"
                      "loading-process-events-interval-bytes 1024\n")  # fmt: skip


# --- issue 20 item 4: a real signal at a chosen moment --------------------------------------


def _start_restore(state, backup_id: str, dest: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", state.inventory_path, "-l", "node-1",
         "backup", "restore", backup_id, "--dest", str(dest), "--yes", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _signal_when(process: subprocess.Popen, condition, what: str, signum: int) -> str:
    """Send `signum` once `condition()` holds; the process's stderr after it exits."""
    try:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(POLL_SECONDS)
        os.kill(process.pid, signum)
        _, stderr = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return stderr


def _shutdown_save_running(state) -> bool:
    """The staged data is beside the live files and the server is saving on its way down."""
    names = [p.name for p in data_dir(state).iterdir()]
    return any(n.startswith(".redisops-restore-") for n in names) and any(
        n.startswith("temp-") for n in names
    )


def test_sigterm_while_the_server_stops_leaves_the_old_data_running(seeded, tmp_path):
    dest = tmp_path / "backups"
    taken = backup(seeded, dest)
    c = client_for(seeded)
    add_keys(c, "after", 40)
    c.config_set("rdb-key-save-delay", 10_000)  # the save on SIGTERM takes ~3.4 s
    before = contents(c)
    process = _start_restore(seeded, taken["backup_id"], dest, "--no-safety-backup")
    stderr = _signal_when(process, lambda: _shutdown_save_running(seeded),
                          "the stop", signal.SIGTERM)  # fmt: skip
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (
        "interrupted: SIGTERM; nothing was replaced: node-1 was started again on its own data"
    )
    wait_until(lambda: answers(seeded), "node-1 running")
    c = client_for(seeded)
    wait_until(lambda: not c.info("persistence")["loading"], "the load")
    assert contents(c) == before and len(before) == 340
    assert leftovers(seeded) == []


def test_sigint_while_the_restored_data_loads_completes_the_restore(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    restored = contents(c)
    taken = backup(seeded, dest)
    add_keys(c, "after", 40)
    slow_loading(seeded)  # the restore's own start loads for seconds
    process = _start_restore(seeded, taken["backup_id"], dest)
    stderr = _signal_when(process, lambda: _loading(seeded), "the load", signal.SIGINT)
    assert process.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted: SIGINT; {taken['backup_id']} is in place and node-1 "
                           "was started on it; the key check was not done"), last  # fmt: skip
    wait_until(lambda: answers(seeded) and not _loading(seeded), "the load")
    assert contents(client_for(seeded)) == restored
    assert leftovers(seeded) == []


def _loading(state) -> bool:
    try:
        return bool(client_for(state).info("persistence")["loading"])
    except redis.RedisError:
        return False
