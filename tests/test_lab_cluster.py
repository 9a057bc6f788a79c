"""`lab up --cluster`: a real Redis Cluster of cluster-enabled servers, healthy when up returns."""

from __future__ import annotations

import random
from pathlib import Path

import redis

from redisops.fleet.inventory import load_inventory
from redisops.lab.daemon import CLUSTER_BUS_OFFSET, port_in_use
from tests.cli_helpers import redisops

SEED = 300
NODES = 6


def free_cluster_base(rng: random.Random) -> int:
    """A base port whose node ports and bus ports (+10000) are free, all below the ephemeral
    range (32768+), so no client socket of the machine takes a bus port meanwhile."""
    for _ in range(200):
        base = rng.randint(20000, 22700)
        ports = [
            p + offset for p in range(base, base + NODES) for offset in (0, CLUSTER_BUS_OFFSET)
        ]
        if not any(port_in_use(port) for port in ports):
            return base
    raise RuntimeError("no free base port for a cluster lab")


def cluster_facts(ports: list[int], password: str) -> tuple[dict, list[str], int]:
    first = redis.Redis(port=ports[0], password=password, socket_timeout=10, decode_responses=True)
    try:
        info = dict(
            line.split(":", 1)
            for line in first.execute_command("CLUSTER", "INFO").splitlines()
            if ":" in line
        )
        nodes = first.execute_command("CLUSTER", "NODES").splitlines()
        flags = sorted(line.split()[2].replace("myself,", "") for line in nodes if line)
    finally:
        first.close()
    keys = 0
    for port in ports:
        client = redis.Redis(port=port, password=password, socket_timeout=10)
        try:
            if client.info("replication")["role"] == "master":
                keys += client.dbsize()
        finally:
            client.close()
    return info, flags, keys


def test_cluster_lab_starts_healthy_seeds_through_slots_and_restarts(tmp_path):
    lab_dir = tmp_path / "cluster"
    base = free_cluster_base(random.Random())
    up = redisops("lab", "up", "--dir", str(lab_dir), "--cluster", "--shards", "3",
                  "--replicas", "1", "--seed", str(SEED), "--base-port", str(base))  # fmt: skip
    try:
        assert up.exit_code == 0, up.stderr
        password = (lab_dir / "secret").read_text()
        ports = list(range(base, base + 6))
        info, flags, keys = cluster_facts(ports, password)
        assert (info["cluster_state"], info["cluster_slots_assigned"]) == ("ok", "16384")
        assert (info["cluster_known_nodes"], info["cluster_size"]) == ("6", "3")
        assert flags == ["master"] * 3 + ["slave"] * 3
        assert keys == SEED
        inventory = load_inventory(lab_dir / "inventory.yaml")
        assert [(h.name, h.port, h.cluster) for h in inventory.hosts] == [
            (f"node-{i + 1}", port, True) for i, port in enumerate(ports)
        ]
        assert redisops("lab", "down", "--dir", str(lab_dir)).exit_code == 0
        again = redisops("lab", "up", "--dir", str(lab_dir), "--cluster", "--shards", "3",
                         "--replicas", "1", "--base-port", str(base))  # fmt: skip
        assert again.exit_code == 0, again.stderr
        info, _, keys = cluster_facts(ports, password)
        assert (info["cluster_state"], keys) == ("ok", SEED)
    finally:
        if (lab_dir / "lab.json").exists():
            redisops("lab", "down", "--dir", str(lab_dir), "--purge")
    assert not Path(lab_dir).exists()


def test_a_cluster_needs_three_shards(tmp_path):
    run = redisops("lab", "up", "--dir", str(tmp_path / "c"), "--cluster", "--shards", "2")
    assert run.exit_code == 2
    assert "--shards': Input should be greater than or equal to 3" in run.stderr
