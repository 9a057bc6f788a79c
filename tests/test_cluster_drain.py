"""`cluster drain` on a real lab cluster: every slot of a master moved to the others, its
replica re-pointed, the node forgotten everywhere; every slot covered and every key kept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from redisops.lab import lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.test_cluster_rebalance import (
    OFF_TERMINAL,
    digest,
    keys_in_slots,
    node,
    open_slots,
    owner_of,
    port_of,
    write,
)

DEADLINE = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """3 shards x 1 replica: node-1..3 masters, node-4..6 their replicas."""
    state = start_cluster_lab(tmp_path_factory.mktemp("drain"), shards=3, replicas=1)
    try:
        write(state, {f"small:{i}".encode(): b"v" * 40 for i in range(1500)})
        write(state, keys_in_slots(state, 10922, 16383, 100, 10_000, "big"))
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


def nodes_text(state, name: str) -> str:
    text = node(state, name).execute_command("CLUSTER", "NODES")
    return text.decode() if isinstance(text, bytes) else text


def test_a_replica_cannot_be_drained(cluster):
    run = redisops("-i", cluster.inventory_path, "cluster", "drain", "node-4", "--yes")
    assert run.exit_code == 2
    assert "node-4 is a replica: drain moves a master's slots" in run.stderr


def test_drain_moves_every_slot_away_and_forgets_the_node(cluster):
    before = digest(cluster)
    slots_before = owner_of(cluster)
    drained = node(cluster, "node-3").execute_command("CLUSTER", "MYID")
    drained = drained.decode() if isinstance(drained, bytes) else drained
    inventory = cluster.inventory_path

    dry = redisops("-i", inventory, "cluster", "drain", "node-3", "--dry-run", env=OFF_TERMINAL)
    assert dry.exit_code == 0, dry.stderr
    assert "drain node-3 (5,462 slots to move, by memory)" in dry.stdout
    assert "then: node-6 will replicate" in dry.stdout
    assert owner_of(cluster) == slots_before

    run = redisops(
        "-i", inventory, "-o", "json", "cluster", "drain", "node-3", "--yes", env=OFF_TERMINAL
    )
    assert run.exit_code == 0, run.stderr
    summary = run.json()["summary"]
    assert summary["moved_slots"] == 5462 and summary["verified"]
    assert "node-3 reset (CLUSTER RESET SOFT): it is out of the cluster" in summary["steps"]
    assert "warning: node-3 is out of cluster redis but still a seed in the inventory" in run.stderr

    owners = owner_of(cluster)
    assert len(owners) == 16384
    assert set(owners.values()) == {port_of(cluster, "node-1"), port_of(cluster, "node-2")}
    assert open_slots(cluster) == []
    assert digest(cluster) == before
    # Forgotten by every other node; its replica follows another master.
    deadline = time.monotonic() + DEADLINE
    for name in ("node-1", "node-2", "node-4", "node-5", "node-6"):
        while drained in nodes_text(cluster, name):
            assert time.monotonic() < deadline, f"{name} still knows node-3"
            time.sleep(0.05)
    mine = next(line for line in nodes_text(cluster, "node-6").splitlines() if "myself" in line)
    assert "slave" in mine and mine.split()[3] != drained
    assert len(nodes_text(cluster, "node-3").splitlines()) == 1  # it knows only itself
