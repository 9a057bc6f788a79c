"""Scale out then in on a real lab cluster, each step a redisops command: `cluster add-node`
(an empty server joins as a master), `cluster rebalance` (it gets its share of slots),
`cluster drain` (an original master gives all its slots away and is forgotten). Every slot
stays covered and every key present, with its value and TTL, from the first step to the last."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from redisops.lab import lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.test_cluster_addnode import myid, spare_server
from tests.test_cluster_drain import nodes_text
from tests.test_cluster_rebalance import digest, open_slots, owner_of, password, port_of, write

OFF_TERMINAL = {"REDISOPS_INTERACTIVE": "0"}
DEADLINE = 60  # seconds
KEYS = 2000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """3 masters with 2,000 keys (one in ten with a TTL), and `spare`: an empty
    cluster-enabled server in the inventory, with the cluster's password."""
    root = tmp_path_factory.mktemp("scale")
    state = start_cluster_lab(root / "lab", shards=3, replicas=0)
    process = None
    try:
        write(state, {f"k:{i}".encode(): f"value {i}".encode() * 4 for i in range(KEYS)})
        process, port = spare_server(root / "spare", password(state))
        data = yaml.safe_load(Path(state.inventory_path).read_text())
        data["all"]["children"]["spares"] = {
            "hosts": {"spare": {"host": "127.0.0.1", "port": port}}
        }
        inventory = root / "inventory.yaml"
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        yield state, str(inventory), port
    finally:
        if process is not None:
            process.kill()
            process.wait(timeout=10)
        lab_down(Path(state.dir), purge=True)


def run(inventory: str, *args: str):
    return redisops("-i", inventory, "-o", "json", *args, "--yes", env=OFF_TERMINAL)


def test_add_node_rebalance_drain_keeps_every_slot_and_every_key(cluster, tmp_path):
    state, inventory, spare_port = cluster
    before = digest(state)
    assert before[0] == KEYS
    audit = ("--audit-log", str(tmp_path / "audit.jsonl"))

    added = run(inventory, "cluster", "add-node", "spare", "--cluster", "redis", *audit)
    assert added.exit_code == 0, added.stderr
    assert set(owner_of(state).values()) == {port_of(state, f"node-{n}") for n in (1, 2, 3)}

    spread = run(inventory, "-l", "redis", "cluster", "rebalance", "--by", "slots", *audit)
    assert spread.exit_code == 0, spread.stderr
    owners = owner_of(state)
    assert len(owners) == 16384
    spare_slots = sum(1 for port in owners.values() if port == spare_port)
    assert 4096 * 0.9 <= spare_slots <= 4096 * 1.1, spare_slots
    assert open_slots(state) == []
    assert digest(state) == before

    drained_id = myid(state, port_of(state, "node-1"))
    drained = run(inventory, "-l", "redis", "cluster", "drain", "node-1", *audit)
    assert drained.exit_code == 0, drained.stderr
    owners = owner_of(state, via="node-2")  # node-1 is out: it knows only itself
    assert len(owners) == 16384
    assert set(owners.values()) == {port_of(state, "node-2"), port_of(state, "node-3"), spare_port}
    assert open_slots(state, via="node-2") == []
    assert digest(state, via="node-2") == before
    deadline = time.monotonic() + DEADLINE
    for name in ("node-2", "node-3"):
        while drained_id in nodes_text(state, name):
            assert time.monotonic() < deadline, f"{name} still knows node-1"
            time.sleep(0.05)
