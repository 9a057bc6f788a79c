"""`cluster status` on real lab clusters: healthy, an open slot, uncovered slots, a killed node."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from redisops.lab import lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.servers import valkey_server_binary
from tests.test_cluster_discovery import wait_all_online

SEED_KEYS = 300
DEADLINE = 30  # seconds; the lab's cluster-node-timeout is 2 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """3 shards x 1 replica: node-1..3 masters (slots 0-5460, 5461-10921, 10922-16383),
    node-4..6 their replicas; every test leaves it healthy again."""
    state = start_cluster_lab(tmp_path_factory.mktemp("cluster"), seed_keys=SEED_KEYS)
    try:
        wait_all_online(state)
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


def client(state, name: str) -> redis.Redis:
    port = next(p.port for p in state.processes if p.name == name)
    password = (Path(state.dir) / "secret").read_text().strip()
    return redis.Redis(port=port, password=password, socket_timeout=10, decode_responses=True)


def call(state, name: str, *command):
    connection = client(state, name)
    try:
        return connection.execute_command(*command)
    finally:
        connection.close()


def status(state, *options: str):
    return redisops("-i", state.inventory_path, *options, "-o", "json", "cluster", "status")


def problems(run) -> list[str]:
    return [p["message"] for c in run.json()["summary"]["clusters"] for p in c["problems"]]


def wait_healthy(state) -> None:
    """Until `cluster status` finds nothing wrong (after a test put things back)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        run = status(state)
        if run.exit_code == 0:
            return
        assert time.monotonic() < deadline, f"still unhealthy: {problems(run)}"
        time.sleep(0.1)


def test_a_healthy_cluster(cluster):
    run = status(cluster)
    assert run.exit_code == 0, run.stderr
    document = run.json()
    (summary,) = document["summary"]["clusters"]
    assert (summary["cluster"], summary["healthy"], summary["problems"]) == ("redis", True, [])
    assert (summary["slots_covered"], summary["nodes"], summary["nodes_answering"]) == (
        16384, 6, 6
    )  # fmt: skip
    shards = summary["shards"]
    assert [(s["name"], s["master"], s["replicas"], s["slot_count"]) for s in shards] == [
        ("shard-1", "node-1", ["node-4"], 5461),
        ("shard-2", "node-2", ["node-5"], 5461),
        ("shard-3", "node-3", ["node-6"], 5462),
    ]
    dbsizes = [call(cluster, f"node-{n}", "DBSIZE") for n in (1, 2, 3)]
    assert [s["keys"] for s in shards] == dbsizes and sum(dbsizes) == SEED_KEYS
    mean = SEED_KEYS / 3
    assert summary["imbalance"]["keys"] == round(max(dbsizes) / mean, 2)
    busiest = summary["busiest_slots"]
    assert len(busiest) == 5
    for slot in busiest:
        owner = {"shard-1": "node-1", "shard-2": "node-2", "shard-3": "node-3"}[slot["shard"]]
        assert slot["keys"] == call(cluster, owner, "CLUSTER", "COUNTKEYSINSLOT", slot["slot"])
    assert [b["keys"] for b in busiest] == sorted((b["keys"] for b in busiest), reverse=True)
    rows = document["results"]
    assert [(r["host"], r["ok"], r["data"]["shard"], r["data"]["role"]) for r in rows] == [
        ("node-1", True, "shard-1", "master"),
        ("node-4", True, "shard-1", "replica"),
        ("node-2", True, "shard-2", "master"),
        ("node-5", True, "shard-2", "replica"),
        ("node-3", True, "shard-3", "master"),
        ("node-6", True, "shard-3", "replica"),
    ]
    table = redisops("-i", cluster.inventory_path, "cluster", "status")
    assert table.exit_code == 0
    assert table.stdout.startswith("cluster redis: healthy\n3 shards, 6 nodes (6 answer), ")


def test_limit_to_one_shard_still_judges_the_whole_cluster(cluster):
    run = status(cluster, "-l", "redis/shard-2")
    assert run.exit_code == 0, run.stderr
    assert len(run.json()["results"]) == 6


def test_an_open_slot_is_reported(cluster):
    destination = call(cluster, "node-2", "CLUSTER", "MYID")
    source = call(cluster, "node-1", "CLUSTER", "MYID")
    call(cluster, "node-1", "CLUSTER", "SETSLOT", 200, "MIGRATING", destination)
    call(cluster, "node-2", "CLUSTER", "SETSLOT", 200, "IMPORTING", source)
    try:
        run = status(cluster)
        assert run.exit_code == 1
        assert problems(run) == [
            "slot 200 is migrating from node-1 to node-2",
            "slot 200 is importing into node-2 from node-1",
        ]
        table = redisops("-i", cluster.inventory_path, "cluster", "status")
        assert table.exit_code == 1
        assert "problem: slot 200 is migrating from node-1 to node-2\n" in table.stdout
        assert "unhealthy: redis" in table.stderr
    finally:
        call(cluster, "node-1", "CLUSTER", "SETSLOT", 200, "STABLE")
        call(cluster, "node-2", "CLUSTER", "SETSLOT", 200, "STABLE")
    wait_healthy(cluster)


def test_uncovered_slots_are_reported(cluster):
    nodes = [f"node-{n}" for n in range(1, 7)]
    for node in nodes:
        call(cluster, node, "CLUSTER", "DELSLOTS", 100, 101, 102)
    try:
        run = status(cluster)
        assert run.exit_code == 1
        found = problems(run)
        assert found[0] == "3 of 16384 slots not covered (100-102), as every node sees it"
        # With cluster-require-full-coverage (the default) the cluster stops serving.
        assert found[1].startswith("cluster_state:fail on 6 nodes (")
        (summary,) = run.json()["summary"]["clusters"]
        assert summary["slots_covered"] == 16384 - 3
        assert summary["shards"][0]["slots"] == [[0, 99], [103, 5460]]
    finally:
        call(cluster, "node-1", "CLUSTER", "ADDSLOTS", 100, 101, 102)
    wait_healthy(cluster)


def test_a_node_that_disagrees_on_the_slot_map_is_named(cluster):
    # node-1 gives slot 300 up; nobody claims it, so the others keep mapping it to node-1.
    call(cluster, "node-1", "CLUSTER", "DELSLOTS", 300)
    try:
        run = status(cluster)
        assert run.exit_code == 1
        assert problems(run) == [
            "1 of 16384 slots not covered (300), as node-1 sees it",
            "node-1 disagrees with the others on 1 slot: slot 300 is no node's to it, "
            "node-1's to the others",
            "cluster_state:fail on 1 node (node-1)",
        ]
        # The slot map of the majority still covers every slot.
        assert run.json()["summary"]["clusters"][0]["slots_covered"] == 16384
    finally:
        call(cluster, "node-1", "CLUSTER", "ADDSLOTS", 300)
    wait_healthy(cluster)


def test_a_node_killed_shows_as_failed_while_the_rest_report(tmp_path):
    state = start_cluster_lab(tmp_path / "kill")
    try:
        victim = next(p for p in state.processes if p.name == "node-6")
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + DEADLINE
        while True:
            run = status(state)
            if any(p.startswith("node-6 is FAIL") for p in problems(run)):
                break
            assert time.monotonic() < deadline, f"node-6 not FAIL: {problems(run)}"
            time.sleep(0.1)
        assert run.exit_code == 1
        rows = {r["host"]: r for r in run.json()["results"]}
        assert rows["node-6"]["ok"] is False
        assert rows["node-6"]["error"] == (
            f"cannot connect to 127.0.0.1:{victim.port}: Connection refused"
        )
        assert rows["node-6"]["data"]["health"] == "fail"
        assert [h for h, r in rows.items() if r["ok"]] == [f"node-{n}" for n in (1, 4, 2, 5, 3)]
        assert all(rows[f"node-{n}"]["data"]["keys"] is not None for n in (1, 2, 3))
        found = problems(run)
        assert f"node-6 127.0.0.1:{victim.port}: cannot connect to 127.0.0.1:{victim.port}: " \
               "Connection refused" in found  # fmt: skip
        assert any(p.startswith("node-6 is FAIL (flagged by ") for p in found)
        # node-6 is a seed too (the lab marks every node): its failure is reported once.
        assert not [p for p in found if p.startswith("seed ")]
        assert len(found) == 3
        assert "node-3 (master of 10922-16383) has no working replica: losing it loses its " \
               "slots" in found  # fmt: skip
        table = redisops("-i", state.inventory_path, "cluster", "status")
        assert table.exit_code == 1
        assert "5 of 6 nodes ok, 1 failed" in table.stderr
    finally:
        lab_down(Path(state.dir), purge=True)


def test_a_valkey_cluster(tmp_path):
    state = start_cluster_lab(tmp_path / "valkey", server=str(valkey_server_binary()), seed_keys=30)
    try:
        wait_all_online(state)
        run = status(state)
        assert run.exit_code == 0, run.stderr
        (summary,) = run.json()["summary"]["clusters"]
        assert (summary["healthy"], summary["slots_covered"]) == (True, 16384)
        assert sum(s["keys"] for s in summary["shards"]) == 30
        versions = {r["data"]["version"] for r in run.json()["results"]}
        assert len(versions) == 1 and versions.pop().split(".")[0] in ("8", "9")
    finally:
        lab_down(Path(state.dir), purge=True)


def test_no_cluster_selected_is_a_usage_error(tmp_path):
    inventory = tmp_path / "plain.yaml"
    inventory.write_text("all:\n  hosts:\n    one: {host: 127.0.0.1, port: 1}\n")
    run = redisops("-i", str(inventory), "cluster", "status")
    assert run.exit_code == 2
    assert "no cluster selected: no selected host says `cluster: true`" in run.stderr


def test_a_master_killed_fails_over_and_leaves_its_shard(tmp_path):
    state = start_cluster_lab(tmp_path / "failover")
    try:
        victim = next(p for p in state.processes if p.name == "node-3")
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + DEADLINE
        while True:  # until node-6, node-3's replica, has taken over its slots for all
            run = status(state)
            shards = run.json()["summary"]["clusters"][0]["shards"]
            rows = {r["host"]: r for r in run.json()["results"]}
            if shards[-1]["master"] == "node-6" and rows["node-3"]["data"]["shard"] == "none":
                break
            assert time.monotonic() < deadline, f"no failover: {problems(run)}"
            time.sleep(0.1)
        assert run.exit_code == 1
        assert [(s["name"], s["master"], s["replicas"], s["slot_count"]) for s in shards] == [
            ("shard-1", "node-1", ["node-4"], 5461),
            ("shard-2", "node-2", ["node-5"], 5461),
            ("shard-3", "node-6", [], 5462),
        ]
        assert any(p.startswith("node-3 is FAIL (flagged by ") for p in problems(run))
        assert (rows["node-3"]["data"]["shard"], rows["node-3"]["data"]["health"]) == (
            "none", "fail"
        )  # fmt: skip
        assert (rows["node-6"]["data"]["shard"], rows["node-6"]["data"]["role"]) == (
            "shard-3", "master"
        )  # fmt: skip
        assert "node-6 (master of 10922-16383) has no working replica: losing it loses its " \
               "slots" in problems(run)  # fmt: skip
    finally:
        lab_down(Path(state.dir), purge=True)


def test_epoch_disagreement_and_collision_are_problems():
    """assess() on views as three nodes would write them (a pure function: no server can be
    put in this state on demand, Redis resolves epoch collisions within seconds)."""
    from redisops.cluster.status import NodeReading, assess
    from redisops.fleet.cluster import Cluster, Shard, parse_nodes
    from redisops.fleet.host import ClusterNode, Host
    from redisops.results import HostResult

    def view(me: str, epoch_b: int) -> str:
        lines = [
            "aaaa 127.0.0.1:1@2 master - 0 0 1 connected 0-8191",
            f"bbbb 127.0.0.1:3@4 master - 0 0 {epoch_b} connected 8192-16383",
            "cccc 127.0.0.1:5@6 slave aaaa 0 0 1 connected",
        ]
        return "\n".join(
            line.replace(" master", " myself,master").replace(" slave", " myself,slave")
            if line.startswith(me) else line
            for line in lines
        )  # fmt: skip

    ids = {"a": "aaaa", "b": "bbbb", "c": "cccc"}
    hosts = [
        Host(name=n, host="127.0.0.1", port=p, node=ClusterNode("x", ids[n], "shard-1", "s",
             "master" if n != "c" else "replica", None))
        for n, p in (("a", 1), ("b", 3), ("c", 5))
    ]  # fmt: skip
    cluster = Cluster("x", "a", (Shard("shard-1", "s", ((0, 16383),), ("a", "b", "c")),),
                      tuple(hosts))  # fmt: skip
    epochs = {"a": 1, "b": 1, "c": 2}  # c sees b at epoch 2; a and b see it at 1, as a's own
    rows = [
        HostResult(n, f"127.0.0.1:{h.port}", True, None, NodeReading(
            node_id=ids[n], view=tuple(parse_nodes(view(ids[n], epochs[n]))), cluster_state="ok",
            known_nodes=3, role="replica" if n == "c" else "master", version="7.0.15", keys=0,
            used_memory=1, ops_per_sec=0, master_link_status="up" if n == "c" else None))
        for n, h in zip("abc", hosts, strict=True)
    ]  # fmt: skip
    found = [p.message for p in assess(cluster, rows).problems]
    assert "nodes disagree on b's epoch: 1 (2 nodes), 2 (1 node)" in found
    assert "config epoch 1 is shared by a and b" in found
    assert "b (master of 8192-16383) has no working replica: losing it loses its slots" in found


def test_no_seed_answering_makes_the_seeds_error_rows(tmp_path):
    from tests.servers import free_port

    ports = [free_port(), free_port()]
    inventory = tmp_path / "dead.yaml"
    inventory.write_text(
        "all:\n  children:\n    cache:\n      vars: {cluster: true}\n      hosts:\n"
        + "".join(f"        s{i}: {{host: 127.0.0.1, port: {p}}}\n" for i, p in enumerate(ports))
    )
    run = redisops("-i", str(inventory), "-o", "json", "cluster", "status")
    assert run.exit_code == 1
    document = run.json()
    assert document["ok"] is False
    assert [(r["host"], r["ok"], r["data"]["health"]) for r in document["results"]] == [
        ("s0", False, "unknown"), ("s1", False, "unknown")
    ]  # fmt: skip
    (summary,) = document["summary"]["clusters"]
    assert (summary["seed"], summary["healthy"], summary["shards"]) == (None, False, [])
    assert [p["message"] for p in summary["problems"]] == [
        f"seed s{i}: cannot connect to 127.0.0.1:{p}: Connection refused"
        for i, p in enumerate(ports)
    ]
