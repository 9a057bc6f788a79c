"""The catalogue on real labs: safety backups kept apart, the reason of a run, prune that
re-checks what it relies on, `backup list` counts, and `memory rdb` on a compressed file."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from redisops.backup.catalogue import (
    FAILED,
    format_time,
    load_catalogue,
    read_backup,
    write_manifest,
)
from redisops.backup.metrics import metrics_text
from redisops.results import HostResult
from tests.cli_helpers import redisops
from tests.test_backup import backups_in, cli, client_for, seeded

__all__ = ["seeded"]  # the fixture, shared with test_backup


def run_backup(state, dest: Path, *args: str) -> dict:
    run = cli(state, "-o", "json", "backup", "run", "--dest", str(dest), *args)
    assert run.exit_code == 0, run.stderr
    return run.json()["results"][0]["data"]


def planned_backup_id(state, dest: Path, which: str) -> str:
    """The backup `restore WHICH --dry-run` would restore."""
    dry = cli(state, "-l", "node-1", "-o", "json", "backup", "restore", which, "--dest",
              str(dest), "--dry-run")  # fmt: skip
    assert dry.exit_code == 0, dry.stderr
    return dry.json()["results"][0]["data"]["backup_id"]


# --- issue 20.1: the restore's safety backup -----------------------------------------------


def test_a_safety_backup_is_never_latest_and_never_fills_a_retention_slot(seeded, tmp_path):
    dest = tmp_path / "backups"
    real = run_backup(seeded, dest)["backup_id"]
    c = client_for(seeded)
    c.flushall()
    first = cli(seeded, "-l", "node-1", "-o", "json", "backup", "restore", "latest", "--dest",
                str(dest), "--yes")  # fmt: skip
    assert first.exit_code == 0, first.stderr
    data = first.json()["results"][0]["data"]
    assert data["backup_id"] == real and data["keys_loaded"] == 300
    safety = data["safety_backup_id"]
    assert read_backup(dest / "node-1" / safety).reason == "safety"
    assert read_backup(dest / "node-1" / safety).keys == 0  # the flushed state

    # `latest` is still the real backup; the safety one is chosen by name only.
    assert planned_backup_id(seeded, dest, "latest") == real
    assert planned_backup_id(seeded, dest, "latest-safety") == safety
    assert planned_backup_id(seeded, dest, safety) == safety
    # The same restore run again restores the data again, not the flushed state.
    again = cli(seeded, "-l", "node-1", "-o", "json", "backup", "restore", "latest", "--dest",
                str(dest), "--yes", "--no-safety-backup")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert client_for(seeded).dbsize() == 300

    listed = cli(seeded, "backup", "list", "--dest", str(dest))
    assert listed.exit_code == 0, listed.stderr
    safety_row = next(line for line in listed.stdout.splitlines() if safety in line)
    assert "safety" in safety_row
    assert "1 safety backup (a restore's copy of what it replaced)" in listed.stderr
    as_json = cli(seeded, "-o", "json", "backup", "list", "--dest", str(dest)).json()
    assert {r["data"]["backup_id"]: r["data"]["reason"] for r in as_json["results"]} == {
        real: "manual",
        safety: "safety",
    }
    assert as_json["summary"]["safety"] == 1
    # A failed night after the restore: "last success" is the real backup, not the safety one.
    failed_run = [HostResult("node-1", "127.0.0.1", False, "down", None)]
    text = metrics_text(failed_run, load_catalogue([dest]), "rdb")
    assert 'redisops_backup_last_success_keys{host="node-1",kind="rdb"} 300\n' in text

    pruned = cli(seeded, "-o", "json", "backup", "prune", "--dest", str(dest), "--keep-last",
                 "1", "--yes")  # fmt: skip
    assert pruned.exit_code == 0, pruned.stderr
    assert backups_in(dest) == sorted([real, safety])
    why = {r["data"]["backup_id"]: r["data"]["reasons"] for r in pruned.json()["results"]}
    assert why[real] == ["last 1", "newest verified"]
    assert why[safety] == ["safety backup, kept 30 days (until " + _until(dest, safety) + ")"]


def _until(dest: Path, backup_id: str) -> str:
    finished = read_backup(dest / "node-1" / backup_id).finished
    return f"{finished + timedelta(days=30):%Y-%m-%d}"


def test_safety_backups_go_after_their_own_retention_only(seeded, tmp_path):
    dest = tmp_path / "backups"
    real = run_backup(seeded, dest)["backup_id"]
    source = read_backup(dest / "node-1" / real)
    now = datetime.now(timezone.utc)
    ids = {}
    for days in (3, 40):
        finished = now - timedelta(days=days)
        backup_id = f"node-1-{finished:%Y%m%dT%H%M%SZ}"
        folder = dest / "node-1" / backup_id
        folder.mkdir(mode=0o700)
        (folder / "dump.rdb").write_bytes((Path(source.path) / "dump.rdb").read_bytes())
        write_manifest(folder, replace(source, backup_id=backup_id, reason="safety",
                                       finished_at=format_time(finished)))  # fmt: skip
        ids[days] = backup_id
    plan = cli(seeded, "-o", "json", "backup", "prune", "--dest", str(dest), "--keep-last", "1",
               "--dry-run")  # fmt: skip
    assert plan.exit_code == 0, plan.stderr
    keep = {r["data"]["backup_id"]: r["data"]["keep"] for r in plan.json()["results"]}
    assert keep == {real: True, ids[3]: True, ids[40]: False}
    shorter = cli(seeded, "-o", "json", "backup", "prune", "--dest", str(dest), "--keep-last",
                  "1", "--keep-safety-days", "2", "--yes")  # fmt: skip
    assert shorter.exit_code == 0, shorter.stderr
    assert backups_in(dest) == [real]


# --- issue 20.12: the reason of a run ---------------------------------------------------------


def test_a_manual_run_says_manual_and_cron_says_scheduled(seeded, tmp_path):
    dest = tmp_path / "backups"
    manual = run_backup(seeded, dest)
    scheduled = run_backup(seeded, dest, "--reason", "scheduled")
    assert (manual["reason"], scheduled["reason"]) == ("manual", "scheduled")
    assert read_backup(Path(manual["path"])).reason == "manual"
    assert read_backup(Path(scheduled["path"])).reason == "scheduled"
    listed = cli(seeded, "backup", "list", "--dest", str(dest))
    rows = {line.split()[1]: line.split()[-1] for line in listed.stdout.splitlines()[1:]}
    assert rows == {manual["backup_id"]: "manual", scheduled["backup_id"]: "scheduled"}
    spoofed = cli(seeded, "backup", "run", "--dest", str(dest), "--reason", "safety")
    assert spoofed.exit_code == 2
    assert len(backups_in(dest)) == 2


# --- issue 21.1: prune re-checks what it relies on --------------------------------------------


def test_prune_rechecks_files_and_never_keeps_only_a_damaged_backup(seeded, tmp_path):
    dest = tmp_path / "backups"
    ids = [run_backup(seeded, dest)["backup_id"] for _ in range(3)]
    assert backups_in(dest) == sorted(ids)
    oldest, middle, newest = ids
    data = dest / "node-1" / newest / "dump.rdb"
    data.write_bytes(data.read_bytes()[:-500])  # the manifest still says verified

    dry = cli(seeded, "-o", "json", "backup", "prune", "--dest", str(dest), "--keep-last", "1",
              "--dry-run")  # fmt: skip
    assert dry.exit_code == 1
    keep = {r["data"]["backup_id"]: r["data"]["keep"] for r in dry.json()["results"]}
    assert keep == {oldest: False, middle: True, newest: True}
    assert backups_in(dest) == sorted(ids)

    done = cli(seeded, "backup", "prune", "--dest", str(dest), "--keep-last", "1", "--yes")
    assert done.exit_code == 1
    assert (f"{newest}: dump.rdb: SHA-256 mismatch ({data.stat().st_size:,} bytes, the "
            "manifest says") in done.stderr  # fmt: skip
    assert backups_in(dest) == sorted([middle, newest])
    intact = dest / "node-1" / middle / "dump.rdb"
    assert hashlib.sha256(intact.read_bytes()).hexdigest() == read_backup(intact.parent).sha256
    damaged = read_backup(data.parent)
    assert damaged.verification.status == FAILED and damaged.verified is False
    assert "3 of 3 backups ok" not in done.stderr and "1 failed" in done.stderr
    # With the damage recorded, the next prune has nothing new to say and succeeds.
    calm = cli(seeded, "backup", "prune", "--dest", str(dest), "--keep-last", "1", "--yes")
    assert calm.exit_code == 0, calm.stderr
    assert backups_in(dest) == sorted([middle, newest])


# --- issue 21.10: counts in `backup list`, a compressed file given by path --------------------


def test_list_counts_failed_backups_as_failed(seeded, tmp_path):
    dest = tmp_path / "backups"
    ids = [run_backup(seeded, dest)["backup_id"] for _ in range(3)]
    for backup_id in ids[:2]:
        data = dest / "node-1" / backup_id / "dump.rdb"
        data.write_bytes(data.read_bytes()[:-100])
    assert cli(seeded, "backup", "verify", "--dest", str(dest), "--all").exit_code == 1
    listed = cli(seeded, "backup", "list", "--dest", str(dest))
    assert listed.exit_code == 1
    assert "1 of 3 backups ok, 2 failed" in listed.stderr
    as_json = cli(seeded, "-o", "json", "backup", "list", "--dest", str(dest)).json()
    assert (as_json["ok"], as_json["summary"]["ok"], as_json["summary"]["failed"]) == (False, 1, 2)
    assert [r["ok"] for r in as_json["results"]] == [False, False, True]
    assert as_json["results"][0]["error"].startswith(f"{ids[0]}: failed verification: dump.rdb")


def test_memory_rdb_reads_a_compressed_data_file_given_by_path(seeded, tmp_path):
    dest = tmp_path / "backups"
    for compression, suffix in (("zstd", ".zst"), ("gzip", ".gz")):
        taken = run_backup(seeded, dest, "--compress", compression)
        data = Path(taken["path"]) / f"dump.rdb{suffix}"
        by_path = redisops("-o", "json", "memory", "rdb", str(data))
        assert by_path.exit_code == 0, by_path.stdout + by_path.stderr
        by_id = redisops("-o", "json", "memory", "rdb", taken["backup_id"], "--dest", str(dest))
        assert by_id.exit_code == 0, by_id.stderr
        path_data = by_path.json()["results"][0]["data"]
        id_data = by_id.json()["results"][0]["data"]
        assert path_data["keys"] == id_data["keys"] == taken["keys"] == 300
        assert path_data["bytes"] == id_data["bytes"]
        assert path_data["types"] == id_data["types"]
