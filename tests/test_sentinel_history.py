"""The drill history file: where it lives, what `--history` lists, and lines it cannot read."""

from __future__ import annotations

import dataclasses
import json

from redisops.sentinel.drill import DrillReport, Step
from redisops.sentinel.history import append_drill, default_history_path, read_history
from tests.cli_helpers import redisops


def report(drill_id: str, master: str = "lab", **changes) -> DrillReport:
    """A finished crash drill's record, as run_drill returns it."""
    fields = {
        "drill_id": drill_id, "started_at": "2026-11-23T18:00:00+00:00", "master": master,
        "mode": "crash", "old_master": "node-1", "old_address": "127.0.0.1:7000",
        "new_master": "node-2", "new_address": "127.0.0.1:7001", "trigger_ms": 1000,
        "detect_ms": 2200, "promotion_ms": 3300, "write_downtime_ms": 3250, "rejoin_ms": 13600,
        "settled_ms": 13600, "writes_acked": 565, "writes_lost": 0, "stale_writes": 0,
        "duplicates": 0, "write_errors": 165, "probe_rate": 50.0, "failed_back": None,
        "healthy_after": True, "ok": True, "problems": (),
        "steps": (Step(1000, "drill", "trigger", "kill -9 4242 (node-1, 127.0.0.1:7000)"),),
    }  # fmt: skip
    return DrillReport(**(fields | changes))


def test_default_place_follows_xdg_state_home(monkeypatch, isolated_environment):
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    expected = isolated_environment / ".local" / "state" / "redisops" / "drills.jsonl"
    assert default_history_path() == expected
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert str(default_history_path()) == "/srv/state/redisops/drills.jsonl"


def test_appended_drills_read_back_whole_in_private_files(tmp_path):
    path = tmp_path / "new" / "drills.jsonl"
    first, second = report("a"), report("b", master="cache", ok=False, problems=("x",))
    append_drill(path, first)
    append_drill(path, second)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert read_history(path).drills == (first, second)
    assert read_history(path, master="cache").drills == (second,)
    assert read_history(path, last=1).drills == (second,)
    line = json.loads(path.read_text().splitlines()[0])
    assert (line["kind"], line["format"]) == ("redisops-drill", 1)
    assert line["steps"] == [dataclasses.asdict(first.steps[0])]


def test_history_lists_this_inventorys_drills_and_skips_a_torn_line(tmp_path):
    """Drills are listed per inventory (the same names repeat across inventories), with the
    old master's address; --all-inventories lists every one, with its inventory."""
    path = tmp_path / "drills.jsonl"
    here, there = tmp_path / "inventory.yaml", tmp_path / "other" / "inventory.yaml"
    for drill_id in ("d1", "d2", "d3"):
        append_drill(path, report(drill_id, inventory=str(here)))
    append_drill(path, report("x1", inventory=str(there), old_address="10.0.0.5:6379"))
    append_drill(path, report("x0"))  # recorded before inventories were kept
    with path.open("a") as handle:  # a drill killed while writing its line
        handle.write('{"kind": "redisops-drill", "format": 1, "drill_id": "d4", "mas')
    run = redisops(
        "-i", str(here), "sentinel", "drill", "--history", "--history-file", str(path),
        "--last", "2",
    )  # fmt: skip
    assert run.exit_code == 0
    lines = run.stdout.splitlines()
    assert lines[0].split()[:7] == ["started", "drill", "master", "mode", "from", "address", "to"]
    assert [line.split()[1] for line in lines[1:]] == ["d2", "d3"]
    assert lines[1].split()[2:] == [
        "lab", "crash", "node-1", "127.0.0.1:7000", "node-2", "2.20s", "3.30s", "3.25s", "565",
        "0", "yes", "ok",
    ]  # fmt: skip
    assert run.stderr.splitlines() == [
        f"warning: 1 unreadable line(s) in {path} skipped",
        "2 drill(s) of other inventories not shown (--all-inventories lists them)",
    ]

    every = redisops(
        "sentinel", "drill", "--history", "--history-file", str(path), "--all-inventories",
        env={"COLUMNS": "400"},  # the paths make rows too wide for 200 columns
    )  # fmt: skip
    rows = [line.split() for line in every.stdout.splitlines()]
    assert rows[0][-1] == "inventory"
    assert [(row[1], row[5], row[-1]) for row in rows[1:]] == [
        ("d1", "127.0.0.1:7000", str(here)), ("d2", "127.0.0.1:7000", str(here)),
        ("d3", "127.0.0.1:7000", str(here)), ("x1", "10.0.0.5:6379", str(there)),
        ("x0", "127.0.0.1:7000", "-"),
    ]  # fmt: skip

    as_json = redisops(
        "-i", str(here), "-o", "json", "sentinel", "drill", "--history", "--history-file",
        str(path),
    )  # fmt: skip
    document = as_json.json()
    assert [r["data"]["drill_id"] for r in document["results"]] == ["d1", "d2", "d3"]
    assert document["summary"] == {"history_file": str(path), "drills": 3, "inventory": str(here)}


def test_an_empty_history_says_so(tmp_path):
    path = tmp_path / "none.jsonl"
    inventory = tmp_path / "inventory.yaml"
    run = redisops(
        "-i", str(inventory), "sentinel", "drill", "--history", "--history-file", str(path)
    )
    assert (run.exit_code, run.stdout) == (0, "")
    assert run.stderr.strip() == f"no drills recorded in {path} for inventory {inventory}"
