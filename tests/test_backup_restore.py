"""`backup restore` against real labs: the round trip, AOF on, refusals, --from-host."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import redis

from tests.cli_helpers import redisops
from tests.test_backup import (
    backups_in,
    cli,
    client_for,
    hosts_of,
    password_of,
    seeded,
    wait_until,
)

__all__ = ["seeded"]  # the fixture, shared with test_backup


def contents(c: redis.Redis) -> dict[bytes, tuple[object, bool]]:
    """Every key: its value and whether it has a TTL. The value is the DUMP (type, encoding
    and value, byte for byte), except for sets, whose DUMP lists members in hash order, which
    a reload may change: their sorted members instead."""
    found = {}
    for key in c.scan_iter(count=500):
        value = sorted(c.smembers(key)) if c.type(key) == b"set" else c.dump(key)
        found[key] = (value, c.pttl(key) > 0)
    return found


def aof_on(c: redis.Redis) -> None:
    """appendonly yes, and its first rewrite done: a rewrite asked for while another child
    runs (a backup's BGSAVE) is only scheduled, though `aof_enabled` already says 1."""
    c.config_set("appendonly", "yes")

    def written() -> bool:
        info = c.info("persistence")
        return info["aof_enabled"] == 1 and not (
            info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]
        )

    wait_until(written, "AOF on")


def backup(state, dest: Path, *args: str) -> dict:
    run = cli(state, "-o", "json", "backup", "run", "--dest", str(dest), *args)
    assert run.exit_code == 0, run.stderr
    return run.json()["results"][0]["data"]


def restore(state, *args: str, **kwargs):
    return cli(state, "-l", "node-1", "-o", "json", "backup", "restore", *args, **kwargs)


def test_round_trip_every_key_and_value_is_back(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    before = contents(c)
    assert len(before) == 300 and sum(ttl for _, ttl in before.values()) > 50
    taken = backup(seeded, dest, "--compress", "zstd")
    c.flushall()
    assert c.dbsize() == 0
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["keys_expected"], data["keys_loaded"], data["keys_match"]) == (300, 300, True)
    assert [s["step"] for s in data["steps"]] == [
        "safety backup", "upload", "stop", "place", "start", "load"
    ]  # fmt: skip
    c = client_for(seeded)
    assert contents(c) == before
    safety = json.loads((dest / "node-1" / data["safety_backup_id"] / "manifest.json").read_text())
    assert (safety["reason"], safety["keys"]) == ("safety", 0)
    # nothing staged is left beside the live files
    assert not [p for p in Path(c.config_get("dir")["dir"]).iterdir() if "redisops" in p.name]


def test_restore_with_appendonly_on_installs_the_rdb_as_the_aof_base(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    before = contents(c)
    taken = backup(seeded, dest)
    aof_on(c)
    c.config_rewrite()  # on for good: the restart after the restore keeps it on
    c.flushall()
    c.set("written-after-the-backup", 1)
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes", "--no-safety-backup")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert data["keys_match"] is True and data["safety_backup_id"] is None
    folder = Path(seeded.processes[0].folder)
    assert data["set_aside"] == f"{folder}/appendonlydir.before-{taken['backup_id']}"
    c = client_for(seeded)
    assert c.info("persistence")["aof_enabled"] == 1
    assert contents(c) == before
    # The AOF now holds the restored data: it survives another restart.
    node = hosts_of(seeded)["node-1"]
    subprocess.run(["sh", "-c", node.service_stop], check=True)
    wait_until(lambda: not _answers(seeded), "the stop")
    subprocess.run(["sh", "-c", node.service_start], check=True)
    wait_until(lambda: _answers(seeded), "the start")
    assert contents(client_for(seeded)) == before


def _answers(state) -> bool:
    try:
        return client_for(state).ping()
    except redis.RedisError:
        return False


def test_restore_an_aof_backup(seeded, tmp_path):
    dest = tmp_path / "backups"
    c = client_for(seeded)
    aof_on(c)
    c.config_rewrite()
    before = contents(c)
    taken = backup(seeded, dest, "--kind", "aof", "--compress", "gzip")
    c.flushall()
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    # An AOF backup's count is INFO's at capture: checked against the keys the server holds.
    assert (data["keys_expected"], data["keys_now"], data["keys_match"]) == (300, 300, True)
    assert contents(client_for(seeded)) == before
    table = cli(seeded, "-l", "node-1", "backup", "restore", taken["backup_id"], "--dest",
                str(dest), "--yes", "--no-safety-backup")  # fmt: skip
    assert table.exit_code == 0, table.stderr
    # Redis 7 counts the keys of the AOF's base as loaded; the check is on the keys held.
    assert "300 loaded + 0 expired vs 300 in the backup: match" in " ".join(table.stdout.split())


def test_refusals_on_a_master_with_replicas_watched_by_sentinels(lab, tmp_path):
    """The shared lab is only read: a diskless snapshot, then restore --dry-run."""
    dest = tmp_path / "backups"
    run = cli(lab, "-l", "node-1", "-o", "json", "backup", "run", "--dest", str(dest),
              "--via", "replication")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    taken = run.json()["results"][0]["data"]
    keys = client_for(lab).dbsize()
    refused = restore(lab, taken["backup_id"], "--dest", str(dest), "--dry-run")
    assert refused.exit_code == 3
    assert "node-1 is a master with 2 connected replica(s)" in refused.stderr
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        assert f"{name} monitors node-1: it would fail over" in refused.stderr
    replica = cli(lab, "-l", "node-2", "backup", "restore", taken["backup_id"], "--dest",
                  str(dest), "--from-host", "node-1", "--dry-run")  # fmt: skip
    assert replica.exit_code == 3
    assert "node-2 is a replica: it would drop the restored data" in replica.stderr
    assert client_for(lab).dbsize() == keys


def test_a_corrupted_backup_is_refused_and_nothing_changes(seeded, tmp_path):
    dest = tmp_path / "backups"
    taken = backup(seeded, dest)
    data_file = Path(taken["path"]) / "dump.rdb"
    content = bytearray(data_file.read_bytes())
    content[1000] ^= 0x10
    data_file.write_bytes(bytes(content))
    c = client_for(seeded)
    c.set("still-here", 1)
    run = restore(seeded, taken["backup_id"], "--dest", str(dest), "--yes")
    assert run.exit_code == 3
    assert (
        "cannot restore onto node-1: the backup does not verify: dump.rdb: SHA-256 mismatch"
        in run.stderr
    )
    assert c.get("still-here") == b"1"
    assert backups_in(dest) == [taken["backup_id"]]  # no safety backup was even taken


def test_confirmation_rules_and_dry_run(seeded, tmp_path):
    dest = tmp_path / "backups"
    taken = backup(seeded, dest)
    c = client_for(seeded)
    c.set("new", 1)
    dry = cli(seeded, "-l", "node-1", "backup", "restore", taken["backup_id"], "--dest",
              str(dest), "--dry-run")  # fmt: skip
    assert dry.exit_code == 0
    assert "plan: restore" in dry.stderr and "dry run: nothing was changed" in dry.stderr
    assert "3. stop node-1: kill -TERM" in dry.stderr
    off_terminal = cli(seeded, "-l", "node-1", "backup", "restore", taken["backup_id"], "--dest",
                       str(dest))  # fmt: skip
    assert off_terminal.exit_code == 3
    assert "Refused: not on a terminal and --yes not given" in off_terminal.stderr
    declined = cli(seeded, "-l", "node-1", "backup", "restore", taken["backup_id"], "--dest",
                   str(dest), input="n\n", env={"REDISOPS_INTERACTIVE": "1"})  # fmt: skip
    assert declined.exit_code == 3 and "declined; nothing was changed" in declined.stderr
    assert c.get("new") == b"1" and backups_in(dest) == [taken["backup_id"]]
    accepted = cli(seeded, "-l", "node-1", "backup", "restore", taken["backup_id"], "--dest",
                   str(dest), input="y\n", env={"REDISOPS_INTERACTIVE": "1"})  # fmt: skip
    assert accepted.exit_code == 0, accepted.stderr
    assert client_for(seeded).get("new") is None


def test_from_host_prod_to_staging(make_lab, tmp_path):
    prod = make_lab(replicas=0, sentinels=0, seed_keys=120)
    staging = make_lab(replicas=0, sentinels=0, seed_keys=0)
    entries = []
    for name, state in (("prod", prod), ("staging", staging)):
        node = Path(state.inventory_path).read_text().split("node-1: ", 1)[1].splitlines()[0]
        entries.append(f'    {name}: {node[:-1]}, password_file: "{Path(state.dir) / "secret"}"}}')
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "all:\n  vars: {connection: local}\n  hosts:\n" + "\n".join(entries) + "\n"
    )
    dest = tmp_path / "backups"
    base = ("-i", str(inventory))

    run = redisops(*base, "-l", "prod", "-o", "json", "backup", "run", "--dest", str(dest))
    taken = run.json()["results"][0]["data"]
    blocked = redisops(*base, "-l", "staging", "backup", "restore", taken["backup_id"],
                       "--dest", str(dest), "--yes")  # fmt: skip
    assert blocked.exit_code == 3
    assert (f"{taken['backup_id']} is a backup of prod, not of staging: pass --from-host prod"
            in blocked.stderr)  # fmt: skip
    moved = redisops(*base, "-l", "staging", "-o", "json", "backup", "restore", "latest",
                     "--from-host", "prod", "--dest", str(dest), "--yes")  # fmt: skip
    assert moved.exit_code == 0, moved.stderr
    assert moved.json()["results"][0]["data"]["keys_match"] is True
    assert contents(client_for(staging)) == contents(client_for(prod))
    assert client_for(staging).dbsize() == 120


def test_no_secret_anywhere(seeded, tmp_path):
    dest, metrics = tmp_path / "backups", tmp_path / "m.prom"
    secret = password_of(seeded)
    runs = [
        cli(seeded, "-o", "json", "backup", "run", "--dest", str(dest), "--metrics-file",
            str(metrics)),
        cli(seeded, "-v", "backup", "run", "--dest", str(dest), "--via", "replication"),
        cli(seeded, "backup", "list", "--dest", str(dest)),
        cli(seeded, "-o", "json", "backup", "verify", "--dest", str(dest), "--all"),
    ]  # fmt: skip
    first, _ = backups_in(dest)
    runs.append(restore(seeded, first, "--dest", str(dest), "--yes"))
    for run in runs:
        assert run.exit_code == 0, run.stderr
        assert secret not in run.stdout + run.stderr
    for path in [metrics, *dest.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
