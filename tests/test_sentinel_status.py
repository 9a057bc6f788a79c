"""`sentinel status`, and drills refused by their pre-checks, against real sentinels.

The shared lab is only read; faults (stalled replicas, a stopped replica, a stopped sentinel)
are made for real on a lab of the test's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from redisops.fleet.connection import build_client
from redisops.lab.daemon import alive
from tests.cli_helpers import redisops

SENTINELS = ["sentinel-1", "sentinel-2", "sentinel-3"]
MIB = 1024 * 1024


def lab_client(state, name: str):
    port = next(p.port for p in state.processes if p.name == name)
    password = (Path(state.dir) / "secret").read_text().strip()
    return build_client("127.0.0.1", port, password=password, timeout=5, decode=True)


def inventory_command(state, name: str, key: str) -> str:
    data = yaml.safe_load(Path(state.inventory_path).read_text())
    for group in data["all"]["children"].values():
        if name in group["hosts"]:
            return group["hosts"][name][key]
    raise KeyError(name)


def test_status_of_the_lab_as_json(lab, lab_password):
    run = redisops("-i", lab.inventory_path, "-o", "json", "sentinel", "status")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["command"] == "sentinel status"
    assert document["ok"] is True
    assert [r["host"] for r in document["results"]] == SENTINELS
    for result in document["results"]:
        (seen,) = result["data"]["masters"]
        assert seen["name"] == "lab"
        assert seen["quorum_ok"] is True
        assert seen["ckquorum"].startswith("OK 3 usable Sentinels")
        assert len(seen["peers"]) == 2
    summary = document["summary"]
    assert {key: summary[key] for key in ("hosts", "ok", "failed", "healthy")} == {
        "hosts": 3, "ok": 3, "failed": 0, "healthy": True,
    }  # fmt: skip
    (master,) = summary["masters"]
    ports = {p.name: p.port for p in lab.processes}
    address = f"127.0.0.1:{ports['node-1']}"
    assert master["address"] == address
    assert master["host"] == "node-1"
    assert (master["role"], master["flags"]) == ("master", ["master"])
    assert master["named_by"] == {name: address for name in SENTINELS}
    assert master["agreed"] is True
    assert (master["quorum"], master["quorum_ok"], master["sentinels_seen"]) == (2, True, 3)
    assert (master["down_after_ms"], master["failover_timeout_ms"]) == (2000, 10000)
    assert (master["healthy"], master["problems"], master["notes"]) == (True, [], [])
    assert [r["host"] for r in master["replicas"]] == ["node-2", "node-3"]
    for replica in master["replicas"]:
        assert replica["address"] == f"127.0.0.1:{ports[replica['host']]}"
        assert (replica["flags"], replica["link"], replica["priority"]) == (["slave"], "up", 100)
        assert 0 <= replica["lag_bytes"] < MIB
        assert 0 <= replica["lag_seconds"] <= 10
    assert lab_password not in run.stdout + run.stderr


def test_status_table_has_a_block_per_master_and_a_row_per_sentinel(lab, lab_password):
    run = redisops("-i", lab.inventory_path, "sentinel", "status")
    assert run.exit_code == 0
    ports = {p.name: p.port for p in lab.processes}
    lines = [line.rstrip() for line in run.stdout.splitlines()]
    assert lines[0] == f"lab: master node-1 127.0.0.1:{ports['node-1']}  [master]  healthy"
    assert lines[1].startswith("sentinels: 3 seen, all agree; quorum 2 reachable;")
    assert lines[2].split() == [
        "replica",
        "address",
        "flags",
        "link",
        "lag",
        "last",
        "ack",
        "priority",
    ]
    assert [line.split()[:4] for line in lines[3:5]] == [
        ["node-2", f"127.0.0.1:{ports['node-2']}", "slave", "up"],
        ["node-3", f"127.0.0.1:{ports['node-3']}", "slave", "up"],
    ]
    sentinel_rows = [line.split() for line in lines if line.startswith("sentinel-")]
    assert [(row[0], row[2], row[3]) for row in sentinel_rows] == [
        (name, "lab", "ok") for name in SENTINELS
    ]
    assert run.stderr.strip() == "3 of 3 sentinels ok"
    assert lab_password not in run.stdout + run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-l", "redis", "sentinel", "status"], "error: no Sentinel selected"),
        (["sentinel", "drill", "--dry-run"], "error: --master NAME is required"),
        (["sentinel", "drill", "--master", "nope", "--dry-run"],
         "error: no selected Sentinel monitors a master named 'nope'\nhint: they monitor: lab"),
        (["sentinel", "drill", "--master", "lab", "--mode", "explode"],
         "error: Invalid value for '--mode'"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(lab, args, message):
    run = redisops("-i", lab.inventory_path, *args)
    assert run.exit_code == 2
    assert run.stderr.startswith(message)
    assert run.stdout == ""


def test_dry_run_on_the_lab_shows_checks_and_plan_and_changes_nothing(lab, lab_password, tmp_path):
    history = tmp_path / "drills.jsonl"
    run = redisops(
        "-i", lab.inventory_path, "-o", "json", "sentinel", "drill", "--master", "lab",
        "--mode", "crash", "--dry-run", "--history-file", str(history),
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    (row,) = run.json()["results"]
    plan = row["data"]
    assert (row["host"], row["ok"], row["error"]) == ("node-1", True, None)
    assert [c["name"] for c in plan["checks"]] == [
        "sentinels answer", "quorum reachable", "sentinels agree", "master up",
        "no failover in progress", "replicas ready", "hosts in inventory",
        "crash: kill and restart",
    ]  # fmt: skip
    assert all(check["ok"] for check in plan["checks"])
    node_1 = next(p for p in lab.processes if p.name == "node-1")
    assert plan["pid"] == node_1.pid
    assert plan["nodes"] == ["node-1", "node-2", "node-3"]
    assert plan["actions"][1] == (
        f"kill -9 {node_1.pid} on node-1 (127.0.0.1:{node_1.port}), the master, through host access"
    )
    assert run.stderr.strip() == "dry run: nothing was triggered"
    assert not history.exists()
    assert lab_password not in run.stdout + run.stderr


def test_a_mode_that_cannot_be_carried_out_is_refused(lab, tmp_path):
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    del data["all"]["children"]["redis"]["hosts"]["node-1"]["service_start"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    run = redisops(
        "-i", str(inventory), "sentinel", "drill", "--master", "lab", "--mode", "crash",
        "--dry-run",
    )  # fmt: skip
    assert run.exit_code == 3
    assert run.stderr.startswith(
        "error: drill refused, nothing was triggered: crash: kill and restart: node-1 needs "
        "host access and service_start to be killed and restarted"
    )
    failed = [line.split()[0:3] for line in run.stdout.splitlines() if "FAILED" in line]
    assert failed == [["crash:", "kill", "and"]]


def stop(state, name: str) -> None:
    """Stop a lab process with its inventory service_stop, and wait until it is gone."""
    pid = next(p.pid for p in state.processes if p.name == name)
    subprocess.run(inventory_command(state, name, "service_stop"), shell=True, check=True)
    deadline = time.monotonic() + 10
    while alive(pid):
        assert time.monotonic() < deadline, f"{name} did not stop"
        time.sleep(0.05)


def wait_until_healthy(state, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        run = redisops("-i", state.inventory_path, "-o", "json", "sentinel", "status")
        if run.exit_code == 0:
            return
        problems = run.json()["summary"]["masters"][0]["problems"]
        assert time.monotonic() < deadline, f"lab not healthy again: {problems}"
        time.sleep(0.5)


def test_faults_are_flagged_and_every_drill_refused(make_lab, tmp_path):
    """Stalled replicas, a stopped replica, a stopped sentinel: status exit 1, drill exit 3,
    and nothing triggered (same master, same pid, no probe key, no history)."""
    state = make_lab(replicas=2, sentinels=3)
    inventory = state.inventory_path
    history = tmp_path / "drills.jsonl"
    drill = ("-i", inventory, "-o", "json", "sentinel", "drill", "--master", "lab", "--yes",
             "--history-file", str(history))  # fmt: skip
    pids = {p.name: p.pid for p in state.processes}
    master = lab_client(state, "node-1")

    # A master that could not be promoted again cannot be failed back to.
    master.config_set("replica-priority", 0)
    refused = redisops(*drill, "--failback", "--dry-run")
    master.config_set("replica-priority", 100)
    assert refused.exit_code == 3
    assert refused.stderr.startswith(
        "error: drill refused, nothing was triggered: failback possible: node-1 has "
        "replica-priority 0: it cannot be promoted"
    )

    # Both replicas stalled while the master takes 2 MiB: no replica can take over.
    for name in ("node-2", "node-3"):
        os.kill(pids[name], signal.SIGSTOP)
    try:
        master.set("filler", "x" * (2 * MIB))
        status = redisops("-i", inventory, "-o", "json", "sentinel", "status")
        refused = redisops(*drill, "--mode", "failover")
    finally:
        for name in ("node-2", "node-3"):
            os.kill(pids[name], signal.SIGCONT)
    assert status.exit_code == 1
    problems = status.json()["summary"]["masters"][0]["problems"]
    assert {p["kind"] for p in problems} <= {"replica-lag", "replica-down"}
    assert {p["message"].split()[1] for p in problems} == {"node-2", "node-3"}
    for replica in status.json()["summary"]["masters"][0]["replicas"]:
        assert replica["link"] != "up" or replica["lag_bytes"] >= 2 * MIB
    assert refused.exit_code == 3
    assert refused.stderr.startswith("error: drill refused, nothing was triggered: replicas ready:")
    (row,) = refused.json()["results"]
    assert row["ok"] is False
    assert [c["name"] for c in row["data"]["checks"] if not c["ok"]] == ["replicas ready"]
    wait_until_healthy(state)

    # A replica stopped (its service_stop): flagged at once, and a crash drill refused.
    stop(state, "node-3")
    status = redisops("-i", inventory, "sentinel", "status")
    assert status.exit_code == 1
    node_3 = next(p for p in state.processes if p.name == "node-3")
    assert (
        f"problem: replica node-3 (127.0.0.1:{node_3.port}) is not replicating (link down)"
        in status.stdout
    ) or f"problem: replica node-3 (127.0.0.1:{node_3.port}) is down" in status.stdout
    assert "warning: unhealthy: lab" in status.stderr
    refused = redisops(*drill, "--mode", "crash")
    assert refused.exit_code == 3
    assert "replicas ready: replica node-3" in refused.stderr

    # A sentinel stopped too: an error row, and the drill's first check fails.
    stop(state, "sentinel-3")
    status = redisops("-i", inventory, "-o", "json", "sentinel", "status")
    assert status.exit_code == 1
    rows = {r["host"]: r for r in status.json()["results"]}
    assert rows["sentinel-3"]["ok"] is False
    assert "cannot connect to" in rows["sentinel-3"]["error"]
    refused = redisops(*drill, "--mode", "hang")
    assert refused.exit_code == 3
    checks = {c["name"]: c for c in refused.json()["results"][0]["data"]["checks"]}
    assert checks["sentinels answer"]["ok"] is False
    assert checks["sentinels answer"]["detail"].startswith("sentinel-3 did not answer")

    # Nothing was ever triggered.
    assert master.info("server")["process_id"] == pids["node-1"]
    assert master.info("replication")["role"] == "master"
    assert list(master.scan_iter(match="redisops:drill:*", count=1000)) == []
    sentinel = lab_client(state, "sentinel-1")
    assert (
        int(sentinel.sentinel_get_master_addr_by_name("lab")[1])
        == master.connection_pool.connection_kwargs["port"]
    )
    assert not history.exists()
    for client in (master, sentinel):
        client.close()


def test_hang_mode_plans_sigstop_with_host_access_and_debug_sleep_without(lab, tmp_path):
    """Hang mode freezes the master with SIGSTOP where redisops can reach its machine (so a
    Ctrl-C can thaw it at once), and falls back to DEBUG SLEEP where it cannot."""
    node_1 = next(p for p in lab.processes if p.name == "node-1")
    run = redisops(
        "-i", lab.inventory_path, "-o", "json", "sentinel", "drill", "--master", "lab",
        "--mode", "hang", "--dry-run",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    plan = run.json()["results"][0]["data"]
    assert (plan["hang_method"], plan["pid"], plan["hang_ms"]) == ("stop", node_1.pid, 7000)
    assert plan["checks"][-1] == {
        "name": "hang: freeze and thaw", "ok": True,
        "detail": f"pid {node_1.pid} (redis-server) on node-1",
    }  # fmt: skip
    assert plan["actions"][1].startswith(f"kill -STOP {node_1.pid} on node-1 (127.0.0.1:")

    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    data["all"]["children"]["redis"]["hosts"]["node-1"]["connection"] = "ssh"  # no way in
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    run = redisops(
        "-i", str(inventory), "-o", "json", "sentinel", "drill", "--master", "lab",
        "--mode", "hang", "--dry-run",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    plan = run.json()["results"][0]["data"]
    assert (plan["hang_method"], plan["pid"]) == ("debug-sleep", None)
    assert plan["checks"][-1]["name"] == "hang: DEBUG allowed"
    assert plan["actions"][1].startswith("DEBUG SLEEP 7 on node-1 (127.0.0.1:")
