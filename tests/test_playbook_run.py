"""The shipped playbooks end to end on labs of their own, their dry runs on the shared lab
(changing nothing), and the runner's rules: when/assert/on_failure, confirmation, --yes,
--step, --export and -o json. Every step runs in-process through the real command tree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redisops.fleet.connection import build_client
from tests.cli_helpers import lab_inventory_with, redisops

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"


def password(state) -> str:
    return (Path(state.dir) / "secret").read_text().strip()


def client(state, name: str):
    port = next(p.port for p in state.processes if p.name == name)
    return build_client("127.0.0.1", port, password=password(state), timeout=5, decode=True)


def play(state, name_or_path, *args: str, input: str | None = None, env: dict | None = None):
    path = name_or_path if isinstance(name_or_path, Path) else PLAYBOOKS / f"{name_or_path}.yaml"
    return redisops(
        "-i", state.inventory_path, *args[:2] if args[:1] == ("-o",) else (), "playbook", "run",
        str(path), *(args[2:] if args[:1] == ("-o",) else args), input=input, env=env,
    )  # fmt: skip


def steps(run) -> dict[str, dict]:
    return {step["step"]: step for step in run.json()["results"]}


def fleet_fingerprint(state) -> dict:
    """What a dry run must leave alone: keys, roles, slowlog lengths, the master."""
    seen = {}
    for process in state.processes:
        c = client(state, process.name)
        if process.role == "sentinel":
            seen[process.name] = tuple(c.sentinel_get_master_addr_by_name("lab"))
        else:
            info = c.info("replication")
            seen[process.name] = (c.dbsize(), info["role"], c.slowlog_len())
        c.close()
    return seen


def test_nightly_backup_backs_up_verifies_prunes_and_writes_metrics(make_lab, tmp_path):
    state = make_lab(replicas=1, seed_keys=60)
    dest, metrics = tmp_path / "backups", tmp_path / "redisops.prom"
    run = play(
        state, "nightly-backup", "-o", "json", "--yes", "--var", f"backup_dir={dest}",
        "--var", f"metrics_file={metrics}", "--var", "keep_last=1", "--var", "keep_daily=0",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert (document["command"], document["ok"]) == ("playbook run", True)
    by_step = steps(run)
    assert [s["status"] for s in by_step.values()] == ["ok", "ok", "ok"]
    assert by_step["prune"]["command"] == (
        f"backup prune --dest {dest} --keep-last 1 --keep-daily 0 --yes"
    )
    backups = by_step["backup"]["result"]["results"]
    assert [(b["host"], b["data"]["keys"], b["data"]["verified"]) for b in backups] == [
        ("node-1", 60, True),
        ("node-2", 60, True),
    ]
    for backup in backups:
        manifest = dest / backup["host"] / backup["data"]["backup_id"] / "manifest.json"
        assert json.loads(manifest.read_text())["sha256"] == backup["data"]["sha256"]
    assert by_step["verify"]["result"]["summary"]["failed"] == 0
    assert "redisops_backup" in metrics.read_text()
    assert password(state) not in run.stdout + run.stderr


def test_nightly_backup_table_and_export(make_lab, tmp_path):
    state = make_lab(replicas=0, seed_keys=10)
    record = tmp_path / "night.txt"
    run = play(
        state, "nightly-backup", "--yes", "--var", f"backup_dir={tmp_path / 'b'}",
        "--export", str(record),
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    text = record.read_text()
    for shown in (run.stdout, text):
        assert f"step 1/3: backup — redisops backup run --dest {tmp_path / 'b'}" in shown
        assert "node-1-" in shown  # the backup table of step 1
        assert "verified" in shown
        assert [line.split()[:2] for line in shown.splitlines() if line.startswith("prune ")]
    summary = [line.split() for line in text.splitlines()[-4:]]
    assert summary[0] == ["step", "status", "took", "figures"]
    assert [row[:2] for row in summary[1:]] == [["backup", "ok"], ["verify", "ok"], ["prune", "ok"]]
    assert all(row[3:] == ["1/1", "hosts", "ok"] for row in summary[1:])
    html = tmp_path / "night.html"
    play(state, "nightly-backup", "--dry-run", "--export", str(html))
    assert html.read_text().startswith("<!DOCTYPE html>")
    assert password(state) not in text + html.read_text() + run.stdout + run.stderr


def test_memory_pressure_reports_the_most_loaded_host_on_its_replica(make_lab):
    state = make_lab(replicas=1, seed_keys=100)
    master = client(state, "node-1")
    master.set("big:blob", "x" * 2_000_000)  # node-1 and its replica now hold 2 MB more
    assert master.wait(1, 5000) == 1
    master.close()
    run = play(state, "memory-pressure", "-o", "json", "--var", "top=3")
    assert run.exit_code == 0, run.stderr
    by_step = steps(run)
    used = {r["host"]: r["data"]["used_memory"] for r in by_step["summary"]["result"]["results"]}
    loaded = max(used, key=used.get)
    assert by_step["report"]["command"] == "memory report --top 3 --max-keys 1000000"
    report = by_step["report"]["result"]["results"]
    assert [r["host"] for r in report] == [loaded]
    if loaded == "node-1":
        assert (report[0]["data"]["scanned_host"], report[0]["data"]["scanned_role"]) == (
            "node-2",
            "replica",
        )
    assert report[0]["data"]["top_keys"][0]["key"] == "big:blob"
    assert len(report[0]["data"]["top_keys"]) == 3
    assert by_step["slowlog"]["status"] == "ok"


def test_latency_spike_sees_slow_calls_and_the_doctor_explains(make_lab):
    state = make_lab(replicas=0, seed_keys=10)
    node = client(state, "node-1")
    node.config_set("latency-monitor-threshold", 10)
    for _ in range(3):
        node.execute_command("DEBUG", "SLEEP", "0.05")
    node.close()
    run = play(state, "latency-spike", "-o", "json")
    assert run.exit_code == 0, run.stderr
    by_step = steps(run)
    assert [s["status"] for s in by_step.values()] == ["ok"] * 4
    fingerprints = by_step["slowlog"]["result"]["summary"]["fingerprints"]
    debug = next(f for f in fingerprints if f["command"] == "DEBUG SLEEP")
    assert debug["count"] == 3 and debug["max_us"] >= 50_000
    doctor = by_step["doctor"]["result"]["results"][0]["data"]
    assert doctor["state"] == "spikes"
    assert "command" in doctor["report"]  # Redis names the event class it saw
    assert by_step["audit"]["result"]["command"] == "config audit"


def test_failover_drill_game_day(make_lab, tmp_path):
    state = make_lab(replicas=2, sentinels=3, seed_keys=20)
    history = tmp_path / "drills.jsonl"
    path = tmp_path / "drill.yaml"
    # The shipped playbook, with the drill history kept in the test's folder.
    path.write_text(
        (PLAYBOOKS / "failover-drill.yaml")
        .read_text()
        .replace('mode: "{{ mode }}"}', f'mode: "{{{{ mode }}}}", history_file: {history}}}')
    )
    run = play(
        state, path, "-o", "json", "--yes", "--var", "master=lab",
        "--var", f"backup_dir={tmp_path / 'b'}",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    by_step = steps(run)
    assert list(by_step) == ["before", "backup", "step3", "drill", "after", "audit"]
    assert all(s["status"] == "ok" for s in by_step.values())
    drill = by_step["drill"]["result"]["results"][0]["data"]
    assert drill["old_master"] == "node-1" and drill["new_master"] in ("node-2", "node-3")
    assert drill["healthy_after"] is True and drill["writes_acked"] > 0
    assert by_step["after"]["result"]["summary"]["healthy"] is True
    assert json.loads(history.read_text().splitlines()[-1])["new_master"] == drill["new_master"]
    sentinel = client(state, "sentinel-1")
    port = int(sentinel.sentinel_get_master_addr_by_name("lab")[1])
    sentinel.close()
    assert port == next(p.port for p in state.processes if p.name == drill["new_master"])


def test_failover_drill_is_refused_off_a_terminal_without_yes(make_lab, tmp_path):
    state = make_lab(replicas=1, sentinels=3)
    run = play(
        state, "failover-drill", "-o", "json", "--var", "master=lab",
        "--var", f"backup_dir={tmp_path / 'b'}",
    )  # fmt: skip
    assert run.exit_code == 3
    assert run.stderr.splitlines() == [
        "error: step step3 refused: Next: a failover drill on lab, which moves its master. Go "
        "ahead? Refused: not on a terminal and --yes not given"
    ]
    assert [(s["step"], s["status"]) for s in run.json()["results"]] == [
        ("before", "ok"), ("backup", "ok"), ("step3", "refused"), ("drill", "not run"),
        ("after", "not run"), ("audit", "not run"),
    ]  # fmt: skip
    sentinel = client(state, "sentinel-1")
    assert sentinel.sentinel_get_master_addr_by_name("lab")[1] == state.processes[0].port
    sentinel.close()


@pytest.mark.parametrize("name", ["nightly-backup", "memory-pressure", "latency-spike",
                                  "failover-drill"])  # fmt: skip
def test_dry_run_of_each_shipped_playbook_changes_nothing(lab, tmp_path, name):
    before = fleet_fingerprint(lab)
    dest = tmp_path / "backups"
    run = play(
        lab, name, "-o", "json", "--dry-run", "--yes", "--var",
        "master=lab" if name == "failover-drill" else f"backup_dir={dest}"
        if name == "nightly-backup" else "top=5",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["summary"]["dry_run"] is True
    assert {s["status"] for s in document["results"]} == {"planned"}
    assert all(s["result"] is None for s in document["results"])
    assert not dest.exists()
    assert fleet_fingerprint(lab) == before
    commands = [s["command"] for s in document["results"]]
    if name == "nightly-backup":
        assert commands[0] == f"backup run --dest {dest}"
    if name == "memory-pressure":
        assert (
            commands[1]
            == (
                "-l <max_by(summary.results, 'data.used_memory').host> memory report --top 5 "
                "--max-keys 1000000"
            )
            or commands[1] == "memory report --top 5 --max-keys 1000000"
        )
    if name == "failover-drill":
        assert commands[3] == "sentinel drill --master lab --mode failover --yes"


RULES = """\
name: rules
vars: {want: 3}
steps:
  - id: summary
    run: memory summary
    assert: summary.summary.hosts == want
    on_failure: continue
  - id: skipped
    run: memory summary
    when: summary.summary.failed > 0
  - id: pause
    wait: 0.1s
  - note: "hosts: {{ summary.summary.hosts }}"
  - id: reset
    run: slowlog reset
  - id: last
    note: never reached when reset is refused
"""


def test_when_assert_on_failure_and_refusal(make_lab, tmp_path):
    state = make_lab(replicas=0)
    node = client(state, "node-1")
    node.execute_command("DEBUG", "SLEEP", "0.02")
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    run = play(state, path, "-o", "json")
    assert run.exit_code == 3
    by_step = steps(run)
    assert [(s["step"], s["status"], s["error"]) for s in by_step.values()] == [
        ("summary", "failed", "assert failed: summary.summary.hosts == want"),
        ("skipped", "skipped", "when: summary.summary.failed > 0 is false"),
        ("pause", "ok", None),
        ("step4", "ok", None),
        ("reset", "refused", "refused"),
        ("last", "not run", None),
    ]
    assert node.slowlog_len() == 1  # the refused reset changed nothing
    run = play(state, path, "--var", "want=1", "--yes")
    assert run.exit_code == 0, run.stdout
    assert "hosts: 1" in run.stdout
    assert node.slowlog_len() == 0  # --yes carried through to slowlog reset
    node.close()


def test_step_by_step_asks_before_each_step(make_lab, tmp_path):
    state = make_lab(replicas=0)
    path = tmp_path / "two.yaml"
    path.write_text("name: two\nsteps:\n  - run: memory summary\n  - run: inventory list\n")
    run = play(
        state, path, "-o", "json", "--step", input="n\ny\n", env={"REDISOPS_INTERACTIVE": "1"}
    )
    assert run.exit_code == 0, run.stderr
    document = json.loads(run.stdout[run.stdout.index("{") :])  # the runner echoes the answers
    assert [(s["status"], s["error"]) for s in document["results"]] == [
        ("skipped", "skipped at --step"),
        ("ok", None),
    ]
    assert "Run step step1 (memory summary)?" in run.stderr


# --- issue 17 item 3: steps call commands in-process, with options from the one declaration ---

OWN_OPTIONS = """\
name: own-options
steps:
  - id: listed
    run: inventory list
    inventory: {inventory}
    limit: "extra-*"
  - id: waited
    wait: {{run: inventory list, until: "waited.summary.hosts == 1", timeout: 5s, limit: node-2}}
  - id: doctor
    doctor: latency
    limit: "{{{{ waited.results.0.host }}}}"
    parallel: 1
    timeout: 2
"""


def test_each_step_option_reaches_its_command_and_the_document_is_the_commands(lab, tmp_path):
    """A step's own inventory and limit (a wait's too) select its hosts, and the document a
    step records is the one the command prints on its own (no text round trip changes it)."""
    extra = lab_inventory_with(lab, tmp_path, {"extra-1": {"host": "127.0.0.1", "port": 1}})
    path = tmp_path / "own.yaml"
    path.write_text(OWN_OPTIONS.format(inventory=extra))
    run = play(lab, path, "-o", "json", "-l", "node-1")
    assert run.exit_code == 0, run.stderr
    by_step = steps(run)
    alone = redisops("-i", extra, "-l", "extra-*", "-o", "json", "inventory", "list")
    assert by_step["listed"]["result"] == alone.json()
    assert [r["host"] for r in by_step["waited"]["result"]["results"]] == ["node-2"]
    doctor = by_step["doctor"]["result"]
    assert (doctor["command"], [r["host"] for r in doctor["results"]]) == (
        "latency doctor",
        ["node-2"],
    )
    assert doctor["results"][0]["data"]["state"] in ("off", "quiet", "spikes")
    assert by_step["doctor"]["command"] is None  # a built-in, not a command of the playbook


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("timeout: 0", "--timeout must be 0.1 to 86400 seconds, got 0"),
        ("timeout: 1e12", "--timeout must be 0.1 to 86400 seconds, got 1e+12"),
        ("parallel: 0", "--parallel must be at least 1, got 0"),
        ("parallel: many", "step option parallel: 'many' is not a valid --parallel value"),
    ],
)
def test_a_steps_own_bad_option_is_refused_before_any_step_runs(lab, tmp_path, option, message):
    """Checked as the command line's global option is, with the file and line, exit 2."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"name: bad\nsteps:\n  - run: backup run --dest {tmp_path / 'b'}\n"
        f"  - id: doctor\n    doctor: latency\n    {option}\n"
    )
    run = play(lab, path, "--yes")
    assert (run.exit_code, run.stdout) == (2, "")
    key = option.split(":")[0]
    assert run.stderr.splitlines() == [f"error: {path}:6: steps[2].{key}: {message}"]
    assert not (tmp_path / "b").exists()


def test_a_steps_option_known_only_at_run_time_is_checked_by_its_command(lab, tmp_path):
    """A value from an earlier step's result is parsed as any command's option is, when the
    step runs: its command exits 2 with one error line, and so does the playbook."""
    path = tmp_path / "late.yaml"
    path.write_text(
        "name: late\nsteps:\n  - id: s\n    run: inventory list\n"
        "  - id: doctor\n    doctor: latency\n    timeout: '{{ s.summary.failed }}'\n"
    )
    run = play(lab, path, "-o", "json")
    assert run.exit_code == 2
    message = "--timeout must be 0.1 to 86400 seconds, got 0"
    assert run.stderr.splitlines() == [f"error: {message}", "error: step doctor failed: exit 2"]
    record = steps(run)["doctor"]
    assert (record["status"], record["exit_code"], record["result"]["error"]) == (
        "failed",
        2,
        message,
    )


def test_the_hidden_doctor_command_refuses_a_bad_timeout_as_the_root_does(lab):
    for args in (["playbook", "latency-doctor", "--timeout", "0"],
                 ["--timeout", "0", "playbook", "latency-doctor"]):  # fmt: skip
        run = redisops("-i", lab.inventory_path, *args)
        assert (run.exit_code, run.stderr.splitlines()) == (
            2,
            ["error: --timeout must be 0.1 to 86400 seconds, got 0"],
        )
    run = redisops("-i", lab.inventory_path, "-l", "node-1", "-o", "json", "playbook",
                   "latency-doctor")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert [r["host"] for r in run.json()["results"]] == ["node-1"]


EXIT_CASES = {
    0: "  - note: nothing to do\n",
    1: "  - id: s\n    run: inventory list\n    assert: s.summary.hosts == 99\n",
    2: "  - id: s\n    run: inventory list\n  - run: inventory list\n"
    "    parallel: '{{ s.summary.failed }}'\n",
    3: "  - run: slowlog reset\n    limit: node-1\n",
}


@pytest.mark.parametrize("code", sorted(EXIT_CASES))
def test_a_playbooks_exit_code_comes_from_its_steps(lab, tmp_path, code):
    """0 all passed; 1 an assert failed; 2 a step's command had a bad option (--parallel 0,
    known only once the step before has run); 3 a step was refused (no --yes off a terminal)."""
    path = tmp_path / "p.yaml"
    path.write_text("name: codes\nsteps:\n" + EXIT_CASES[code])
    run = play(lab, path, "-o", "json")
    assert run.exit_code == code, run.stderr
    document = run.json()
    assert (document["summary"]["exit_code"], document["ok"]) == (code, code == 0)


def _scan_calls(port: int, password: str) -> int:
    import redis

    client = redis.Redis(port=port, password=password, socket_timeout=5)
    try:
        return int(client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))
    finally:
        client.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_stops_the_playbook_after_the_step_under_way(make_lab, tmp_path, signum, code):
    """A real process, a real SIGINT mid-scan: the step winds down, no later step runs, one
    `interrupted:` line saying how far the run got, exit 130, one JSON document."""
    state = make_lab(seed_keys=3000)
    secret, port = password(state), state.processes[0].port
    dest = tmp_path / "backups"
    path = tmp_path / "long.yaml"
    path.write_text(
        "name: long\nsteps:\n  - run: inventory list\n  - id: report\n"
        f"    run: memory report --rate 200\n  - run: backup run --dest {dest}\n"
    )
    before = _scan_calls(port, secret)
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", state.inventory_path, "-l", "node-1",
         "-o", "json", "playbook", "run", str(path), "--yes"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while _scan_calls(port, secret) <= before + 1:  # the report's scan is under way
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the scan never started"
            time.sleep(0.05)
        sent = time.monotonic()
        os.kill(process.pid, signum)
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, stderr
    assert took < 5.0, f"took {took:.2f}s to stop"
    done = "1 of 3 steps finished; stopped in step report (0 of 1 hosts finished)"
    line = f"interrupted: {signal.Signals(signum).name}; {done}"
    assert stderr.splitlines() == [line]
    document = json.loads(stdout)
    assert (document["command"], document["ok"], document["exit_code"]) == (
        "playbook run",
        False,
        code,
    )
    assert document["error"] == line
    assert not dest.exists()  # the step after the interrupted one never ran
