"""`cluster drill` on one real lab cluster (3 shards x 1 replica, cluster-node-timeout 2 s):
each mode on a shard of its own (a master votes for one failover of a shard per 2 node
timeouts), refusals that trigger nothing, the history. Every test leaves the cluster healthy.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from redisops.lab import lab_down
from redisops.lab.daemon import alive
from redisops.lab.layout import DOWN_AFTER_MS
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.test_cluster_discovery import wait_all_online
from tests.test_cluster_status import call, wait_healthy

DEADLINE = 30  # seconds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """node-1..3 masters of shard-1..3, node-4..6 their replicas."""
    state = start_cluster_lab(tmp_path_factory.mktemp("cluster"), seed_keys=50)
    try:
        wait_all_online(state)
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("history") / "cluster-drills.jsonl"


def recorded(history: Path) -> int:
    """Drills in the history so far (none before the first: each test runs alone too)."""
    return history.read_text().count("\n") if history.exists() else 0


def drill(state, history: Path, *options: str):
    return redisops(
        "-i", state.inventory_path, "-o", "json", "cluster", "drill",
        "--history-file", str(history), *options,
        env={"REDISOPS_INTERACTIVE": "0"},
    )  # fmt: skip


def topology(state) -> dict[str, str]:
    """Node name -> role, as each node says of itself."""
    return {p.name: call(state, p.name, "ROLE")[0] for p in state.processes}


def pid_of(state, name: str) -> int:
    return int(call(state, name, "INFO", "server")["process_id"])


def report_of(run) -> dict:
    assert run.exit_code == 0, run.stdout + run.stderr
    (row,) = run.json()["results"]
    assert row["ok"], row["error"]
    return row["data"]


def assert_healthy_figures(report: dict, *, mode: str, old: str, new: str) -> None:
    assert (report["mode"], report["old_master"], report["new_master"]) == (mode, old, new)
    assert report["healthy_after"] and report["ok"] and report["problems"] == []
    assert report["node_timeout_ms"] == DOWN_AFTER_MS
    assert report["writes_acked"] > 10 and report["other_writes_acked"] > 10
    assert report["writes_lost"] == 0 and report["other_writes_lost"] == 0
    assert 0 < report["promotion_ms"] <= report["rejoin_ms"] <= report["settled_ms"]
    assert report["write_downtime_ms"] > 0
    assert report["other_shards"] == [s for s in ("shard-1", "shard-2", "shard-3")
                                      if s != report["shard"]]  # fmt: skip


def test_dry_run_triggers_nothing(cluster, history):
    before = topology(cluster)
    run = drill(cluster, history, "--shard", "shard-1", "--dry-run")
    assert run.exit_code == 0, run.stderr
    assert "dry run: nothing was triggered" in run.stderr
    (row,) = run.json()["results"]
    assert [c["name"] for c in row["data"]["checks"]] == ["cluster healthy", "in-sync replica"]
    assert topology(cluster) == before
    assert not history.exists()


def test_failover_mode_loses_nothing_and_fails_back(cluster, history):
    run = drill(cluster, history, "--shard", "shard-1", "--mode", "failover", "--failback", "--yes")
    report = report_of(run)
    assert_healthy_figures(report, mode="failover", old="node-1", new="node-4")
    # CLUSTER FAILOVER: nobody flags the master, the other shards feel nothing.
    assert (report["pfail_ms"], report["detect_ms"]) == (None, None)
    assert (report["write_errors"], report["other_write_errors"]) == (0, 0)
    assert report["failed_back"] is True
    assert topology(cluster)["node-1"] == "master"
    assert topology(cluster)["node-4"] == "slave"
    wait_healthy(cluster)


def test_crash_mode_restarts_the_master_as_a_replica(cluster, history):
    pid = pid_of(cluster, "node-2")
    report = report_of(drill(cluster, history, "--node", "node-2", "--mode", "crash", "--yes"))
    assert_healthy_figures(report, mode="crash", old="node-2", new="node-5")
    # Another node suspects, then fails the master after cluster-node-timeout; a replica is
    # elected after that.
    assert (
        DOWN_AFTER_MS - 100 <= report["pfail_ms"] <= report["detect_ms"] <= report["promotion_ms"]
    )
    assert report["write_downtime_ms"] >= report["promotion_ms"] - 100
    assert report["write_errors"] > 0
    roles = topology(cluster)
    assert (roles["node-2"], roles["node-5"]) == ("slave", "master")
    assert pid_of(cluster, "node-2") != pid
    wait_healthy(cluster)


def test_hang_mode_thaws_the_master_as_a_replica(cluster, history):
    pid = pid_of(cluster, "node-3")
    report = report_of(drill(cluster, history, "--shard", "shard-3", "--mode", "hang", "--yes"))
    assert_healthy_figures(report, mode="hang", old="node-3", new="node-6")
    assert DOWN_AFTER_MS - 100 <= report["detect_ms"] <= report["promotion_ms"]
    # It rejoins when thawed, after the hang (node timeout + 5 s).
    assert report["rejoin_ms"] >= DOWN_AFTER_MS + 5000 - 100
    roles = topology(cluster)
    assert (roles["node-3"], roles["node-6"]) == ("slave", "master")
    assert pid_of(cluster, "node-3") == pid  # the same process, thawed
    wait_healthy(cluster)


def test_history_lists_every_drill(cluster, history):
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert [(x["kind"], x["mode"], x["shard"]) for x in lines] == [
        ("redisops-cluster-drill", "failover", "shard-1"),
        ("redisops-cluster-drill", "crash", "shard-2"),
        ("redisops-cluster-drill", "hang", "shard-3"),
    ]
    assert os.stat(history).st_mode & 0o777 == 0o600
    run = drill(cluster, history, "--history")
    assert run.exit_code == 0, run.stderr
    assert [r["data"]["mode"] for r in run.json()["results"]] == ["failover", "crash", "hang"]
    table = redisops(
        "-i", cluster.inventory_path, "cluster", "drill", "--history", "--history-file",
        str(history), env={"COLUMNS": "80"},
    )  # fmt: skip
    assert table.exit_code == 0
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
    assert "redis/shard-3" in table.stdout


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("terminal", [False, True])
def test_report_and_history_fit_the_terminal(history, width, terminal):
    """The reports of the drills above, as `cluster drill` and `--history` draw them: nothing
    cut (no `…`), no line wider than the terminal, the names and figures whole."""
    from rich.cells import cell_len
    from rich.console import Console

    from redisops.cluster.drill import drill_result
    from redisops.cluster.drill_history import read_history
    from redisops.render.cluster_drill import drill_view, history_table
    from redisops.render.output import Output

    reports = read_history(history).drills
    assert len(reports) == 3
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminal, color_system=None)
    output = Output()
    output._out = console
    for report in reports:
        console.print(drill_view(output, report))
    console.print(history_table(output, [drill_result(r) for r in reports]))
    text = buffer.getvalue()
    assert "…" not in text
    assert all(cell_len(line) <= width for line in text.splitlines())
    crash = reports[1]
    for whole in (crash.drill_id, crash.old_address, "acknowledged writes lost"):
        assert whole in text
    assert f"crash drill of redis/shard-2: node-2 ({crash.old_address}) -> node-5" in text


def test_ctrl_c_after_the_kill_restarts_the_master(cluster, history):
    """SIGINT once the master is dead: exit 130 within a few seconds, the master restarted,
    one line saying so, nothing recorded."""
    lines = recorded(history)
    pid = pid_of(cluster, "node-1")
    command = [
        sys.executable, "-m", "redisops", "-i", cluster.inventory_path, "cluster", "drill",
        "--shard", "shard-1", "--mode", "crash", "--yes", "--history-file", str(history),
    ]  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline = time.monotonic() + DEADLINE
        while alive(pid):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the drill did not kill node-1"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 130, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("interrupted: ")]
    assert line.startswith("interrupted: SIGINT; crash drill of redis/shard-1 stopped ")
    # Restarted before the cluster-node-timeout: nobody failed it, it is still the master.
    assert "node-1 restarted with its service_start" in line
    assert pid_of(cluster, "node-1") != pid
    assert topology(cluster)["node-1"] == "master"
    assert recorded(history) == lines
    wait_healthy(cluster)


def test_refused_when_no_replica_may_take_over(cluster, history):
    """The cluster is healthy, but shard-1's replica may not fail over on its own."""
    before = topology(cluster)
    call(cluster, "node-4", "CONFIG", "SET", "cluster-replica-no-failover", "yes")
    try:
        run = drill(cluster, history, "--shard", "shard-1", "--mode", "crash", "--yes")
    finally:
        call(cluster, "node-4", "CONFIG", "SET", "cluster-replica-no-failover", "no")
    assert run.exit_code == 3, run.stderr
    assert (
        "error: drill refused, nothing was triggered: in-sync replica: no replica can take "
        "over: node-4 has cluster-replica-no-failover yes\n"
    ) in run.stderr
    assert topology(cluster) == before


def test_refused_when_a_replica_is_down(cluster, history):
    """A killed replica: the cluster is not healthy and the shard has no replica."""
    lines = recorded(history)
    before = topology_without(cluster, "node-4")
    pidfile = Path(cluster.dir) / "node-4" / "redis.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    try:
        run = drill(cluster, history, "--shard", "shard-1", "--yes")
        assert run.exit_code == 3, run.stderr
        refusal = [line for line in run.stderr.splitlines() if "drill refused" in line]
        assert len(refusal) == 1
        assert "cluster healthy: node-4 127.0.0.1:" in refusal[0]
        assert "in-sync replica: no replica can take over: node-4 is not connected" in refusal[0]
        assert topology_without(cluster, "node-4") == before
        assert recorded(history) == lines
    finally:
        restart(cluster, "node-4")
    wait_healthy(cluster)


def test_usage_errors(cluster, history):
    run = drill(cluster, history, "--shard", "shard-9")
    assert run.exit_code == 2
    assert "error: no selected cluster has shard 'shard-9'" in run.stderr
    run = drill(cluster, history, "--node", "node-4")
    assert run.exit_code == 2
    assert "node-4 is a replica in redis/shard-1" in run.stderr
    run = drill(cluster, history)
    assert run.exit_code == 2
    assert "--shard ID or --node NAME" in run.stderr
    limited = redisops(
        "-i", cluster.inventory_path, "-l", "redis/shard-1", "cluster", "drill",
        "--shard", "shard-2", "--dry-run",
    )  # fmt: skip
    assert limited.exit_code == 2
    assert "error: redis/shard-2 is outside the selection (--limit)" in limited.stderr


def test_one_selected_shard_needs_no_shard_option(cluster, history):
    run = redisops(
        "-i", cluster.inventory_path, "-l", "redis/shard-3", "-o", "json", "cluster", "drill",
        "--dry-run", "--history-file", str(history),
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    (row,) = run.json()["results"]
    roles = topology(cluster)
    (master,) = [name for name in ("node-3", "node-6") if roles[name] == "master"]
    assert (row["host"], row["data"]["shard"]) == (master, "shard-3")


def topology_without(state, name: str) -> dict[str, str]:
    return {p.name: call(state, p.name, "ROLE")[0] for p in state.processes if p.name != name}


def restart(state, name: str) -> None:
    """Start a killed lab node again with its service_start, until it answers."""
    import shlex

    import yaml

    inventory = yaml.safe_load(Path(state.inventory_path).read_text())
    entry = inventory["all"]["children"]["redis"]["hosts"][name]
    subprocess.run(shlex.split(entry["service_start"]), check=True, timeout=DEADLINE)
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            call(state, name, "PING")
            return
        except redis.ConnectionError:
            assert time.monotonic() < deadline, f"{name} did not come back"
            time.sleep(0.05)
