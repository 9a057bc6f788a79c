"""`cluster add-node` on a real lab cluster (3 masters, no replicas): an empty cluster-enabled
server joins as a master without slots and as a replica of a named master; every node knows
it, the replica's link comes up, no slot moves; unfit servers are refused (exit 3) with
nothing changed, and a dry run changes nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import redis
import yaml

from redisops.lab import lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.servers import start_redis_server
from tests.test_cluster_discovery import password_of

OFF_TERMINAL = {"REDISOPS_INTERACTIVE": "0"}
BUS_OFFSET = 10000


def bus_free_port() -> int:
    """A loopback port whose cluster bus port (+10000) is free too, below the ephemeral range."""
    for port in range(21000 + (hash(id(object())) % 1000), 22700):
        if all(_free(p) for p in (port, port + BUS_OFFSET)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def spare_server(folder: Path, password: str, *extra: str, cluster: bool = True):
    """An empty redis-server taking the lab's password (from a config file, never argv)."""
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "auth.conf"
    conf.write_text(f"requirepass {password}\nmasterauth {password}\n")
    conf.chmod(0o600)
    options = ["--include", str(conf)]
    if cluster:
        options += ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000", *extra]
    return start_redis_server(folder, *options, port=bus_free_port())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The lab (3 masters, 30 keys), four spare servers and an inventory naming them:
    `spare-m`, `spare-r` (empty, cluster-enabled), `full` (holds a key), `plain` (not
    cluster-enabled)."""
    root = tmp_path_factory.mktemp("addnode")
    state = start_cluster_lab(root / "lab", replicas=0, seed_keys=30)
    password = password_of(state)
    processes = {}
    try:
        for name in ("spare-m", "spare-r"):
            processes[name] = spare_server(root / name, password)
        # One slot of its own, so it takes a key.
        full = ("--cluster-require-full-coverage", "no")
        processes["full"] = spare_server(root / "full", password, *full)
        processes["plain"] = spare_server(root / "plain", password, cluster=False)
        full = redis.Redis(port=processes["full"][1], password=password)
        full.execute_command("CLUSTER", "ADDSLOTS", full.cluster("KEYSLOT", "left:over"))
        deadline = time.monotonic() + 10
        while True:  # the node's cluster state turns ok a moment after ADDSLOTS
            try:
                full.set("left:over", "1")
                break
            except redis.exceptions.ClusterDownError:
                assert time.monotonic() < deadline, "the spare never took its key"
                time.sleep(0.05)
        full.close()
        data = yaml.safe_load(Path(state.inventory_path).read_text())
        data["all"]["children"]["spares"] = {
            "hosts": {
                name: {"host": "127.0.0.1", "port": port} for name, (_, port) in processes.items()
            }
        }
        inventory = root / "inventory.yaml"
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        yield state, str(inventory), {n: p for n, (_, p) in processes.items()}, root
    finally:
        for process, _ in processes.values():
            process.kill()
            process.wait(timeout=10)
        lab_down(Path(state.dir), purge=True)


def add(inventory: str, root: Path, *args: str):
    return redisops(
        "-i", inventory, "-o", "json", "cluster", "add-node", *args, "--cluster", "redis",
        "--audit-log", str(root / "audit.jsonl"), env=OFF_TERMINAL,
    )  # fmt: skip


def nodes_seen(state, port: int) -> list[list[str]]:
    connection = redis.Redis(port=port, password=password_of(state), decode_responses=True)
    try:
        text = connection.execute_command("CLUSTER", "NODES")
    finally:
        connection.close()
    if isinstance(text, dict):
        return [[v["node_id"], a, v["flags"], v.get("master_id", "-")] for a, v in text.items()]
    return [line.split() for line in text.splitlines()]


def slot_map(state) -> list:
    connection = redis.Redis(port=state.processes[0].port, password=password_of(state))
    try:
        return sorted((s[0], s[1], s[2][2]) for s in connection.execute_command("CLUSTER", "SLOTS"))
    finally:
        connection.close()


def myid(state, port: int) -> str:
    connection = redis.Redis(port=port, password=password_of(state), decode_responses=True)
    try:
        return connection.execute_command("CLUSTER", "MYID")
    finally:
        connection.close()


def test_refusals_exit_3_and_change_nothing(cluster):
    state, inventory, ports, root = cluster
    full = add(inventory, root, "full")
    assert full.exit_code == 3, full.stderr
    assert "full holds 1 key: a new node must be empty" in full.stderr
    assert "error: full serves 1 slot\n" in full.stderr
    plain = add(inventory, root, "plain")
    assert plain.exit_code == 3, plain.stderr
    assert "plain is not cluster-enabled" in plain.stderr
    unknown = add(inventory, root, "spare-r", "--replica-of", "nobody")
    assert unknown.exit_code == 3
    assert "--replica-of nobody: no master of cluster redis has that name" in unknown.stderr
    member = add(inventory, root, "node-1")
    assert member.exit_code == 3
    assert "node-1 is already a node of cluster redis" in member.stderr
    dry = add(inventory, root, "spare-m", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "dry run: nothing was added" in dry.stderr
    assert len(nodes_seen(state, ports["spare-m"])) == 1  # still alone
    assert not (root / "audit.jsonl").exists()


def test_add_a_master_then_a_replica(cluster):
    state, inventory, ports, root = cluster
    before = slot_map(state)
    master = add(inventory, root, "spare-m", "--yes")
    assert master.exit_code == 0, master.stderr
    (row,) = master.json()["results"]
    assert row["data"]["role"] == "master"
    assert row["data"]["known_by"] == 3 and row["data"]["slots"] == 0
    new_id = myid(state, ports["spare-m"])
    for process in state.processes:  # every node knows it, past the handshake
        (line,) = [n for n in nodes_seen(state, process.port) if n[0] == new_id]
        assert "handshake" not in line[2] and "master" in line[2]
    replica = add(inventory, root, "spare-r", "--replica-of", "shard-2", "--yes")
    assert replica.exit_code == 0, replica.stderr
    (row,) = replica.json()["results"]
    assert row["data"]["role"] == "replica" and row["data"]["master"] == "node-2"
    connection = redis.Redis(port=ports["spare-r"], password=password_of(state))
    try:
        info = connection.info("replication")
        assert info["role"] == "slave" and info["master_link_status"] == "up"
        assert info["master_port"] == state.processes[1].port
    finally:
        connection.close()
    assert slot_map(state) == before
    lines = (root / "audit.jsonl").read_text().splitlines()
    assert [json.loads(x)["outcome"] for x in lines] == ["added", "added"]
    assert password_of(state) not in (root / "audit.jsonl").read_text()
    secret = password_of(state)
    assert all(secret not in run.stdout + run.stderr for run in (master, replica))
    again = add(inventory, root, "spare-m")
    assert again.exit_code == 3
    assert "already knows 4 other node(s)" in again.stderr
