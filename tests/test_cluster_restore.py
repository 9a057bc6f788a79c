"""`cluster restore` on real lab clusters: a set taken by `backup run` round-trips onto the
same cluster after keys were changed, deleted and added (every key's DUMP and TTL presence
as at backup time, on masters and resynced replicas); a dry run changes nothing; a cluster
of another shape is refused (exit 3) with the restore-keys commands, which do load it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis
import yaml
from redis.cluster import ClusterNode, RedisCluster

from redisops.lab import lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.test_cluster_backup import (
    backup,
    master_ports,
    seed_tagged,
    set_rows,
    wait_replicas_caught_up,
)
from tests.test_cluster_discovery import password_of, wait_all_online

OFF_TERMINAL = {"REDISOPS_INTERACTIVE": "0"}


def dumps(state, ports: list[int] | None = None) -> dict[bytes, tuple[object, bool]]:
    """Every key of the cluster, read on `ports` (its masters by default): its DUMP (for a
    set or hash, its members: a hashtable's DUMP follows its bucket order, which a reload
    may change), and whether it has a TTL. Replicas are read in READONLY mode."""
    content = {}
    for port in ports or master_ports(state):
        connection = redis.Redis(port=port, password=password_of(state), socket_timeout=10)
        try:
            if port not in master_ports(state):
                connection.execute_command("READONLY")
            for key in connection.scan_iter(count=1000):
                kind = connection.type(key)
                if kind == b"set":
                    value: object = sorted(connection.smembers(key))
                elif kind == b"hash":
                    value = sorted(connection.hgetall(key).items())
                else:
                    value = connection.dump(key)
                content[key] = (value, connection.pttl(key) > 0)
        finally:
            connection.close()
    return content


def cluster_client(state) -> RedisCluster:
    port = state.processes[0].port
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", port)], password=password_of(state))


@pytest.fixture(scope="module")
def taken(tmp_path_factory):
    """A 3x1 lab with 200 keys and 40 tagged keys with TTLs, a set of it in `dest`, and
    every key's DUMP at that time."""
    state = start_cluster_lab(tmp_path_factory.mktemp("cluster"), seed_keys=200)
    try:
        wait_all_online(state)
        seed_tagged(state)
        wait_replicas_caught_up(state)
        dest = tmp_path_factory.mktemp("catalogue")
        run = backup(state, dest, "run")
        assert run.exit_code == 0, run.stderr
        (row,) = set_rows(run.json())
        yield state, dest, row["data"], dumps(state)
    finally:
        lab_down(Path(state.dir), purge=True)


def restore(state, dest: Path, set_id: str, *args: str):
    return redisops(
        "-i", state.inventory_path, "-o", "json", "cluster", "restore", set_id,
        "--dest", str(dest), *args, env=OFF_TERMINAL,
    )  # fmt: skip


def test_a_dry_run_changes_nothing(taken):
    state, dest, cluster_set, original = taken
    dry = restore(state, dest, cluster_set["set_id"], "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "dry run: nothing was restored" in dry.stderr
    document = dry.json()
    assert document["summary"]["same_shape"] is True
    shards = {r["data"]["shard"]: r["host"] for r in document["results"]}
    assert shards == {"shard-1": "node-1", "shard-2": "node-2", "shard-3": "node-3"}
    assert dumps(state) == original
    listing = redisops(
        "-i", state.inventory_path, "-o", "json", "backup", "list", "--dest", str(dest)
    )
    assert {r["data"]["reason"] for r in listing.json()["results"] if r["address"]} == {"manual"}


def test_a_same_shape_restore_round_trips(taken):
    state, dest, cluster_set, original = taken
    client = cluster_client(state)
    try:
        changed = sorted(original)[:30]
        for key in changed[:10]:
            client.delete(key)
        for key in changed[10:]:
            client.delete(key)
            client.set(key, b"changed since the backup")
        for number in range(25):
            client.set(f"new:{number}", "after the backup")
    finally:
        client.close()
    assert dumps(state) != original
    replica = next(p for p in state.processes if p.role == "replica")
    with_aof = redis.Redis(port=replica.port, password=password_of(state))
    try:  # this replica would load its AOF at its next start: the restore removes it too
        with_aof.config_set("appendonly", "yes")
        with_aof.config_rewrite()
    finally:
        with_aof.close()
    dry = restore(state, dest, cluster_set["set_id"], "--dry-run").json()
    files = {r["name"]: r["files"] for row in dry["results"] for r in row["data"]["replicas"]}
    assert files[replica.name] == [
        f"{replica.folder}/dump.rdb",
        f"{replica.folder}/appendonlydir",
    ]
    run = restore(state, dest, cluster_set["set_id"], "--yes")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["summary"]["healthy"] is True
    rows = document["results"]
    assert [r["data"]["keys_now"] for r in rows] == [
        m["keys"] for m in sorted(cluster_set["members"], key=lambda m: m["shard"])
    ]
    assert all(r["data"]["restore"]["safety_backup_id"] for r in rows)
    assert all(len(r["data"]["replicas_linked"]) == 1 for r in rows)
    assert [r["data"]["replicas_linked"] for r in rows] == [["node-4"], ["node-5"], ["node-6"]]
    assert dumps(state) == original
    replicas = [p.port for p in state.processes if p.role == "replica"]
    assert dumps(state, replicas) == original  # resynced from the restored masters


def test_a_cluster_of_another_shape_is_refused_with_the_restore_keys_route(taken, tmp_path):
    _, dest, cluster_set, original = taken
    other = start_cluster_lab(tmp_path / "four", shards=4, replicas=0, seed_keys=0)
    try:
        wait_all_online(other)
        refused = restore(other, dest, cluster_set["set_id"], "--yes")
        assert refused.exit_code == 3, refused.stderr
        assert "cluster redis is not the shape of set" in refused.stderr
        assert "the set has 3 shards (0-5460, 5461-10921, 10922-16383)" in refused.stderr
        commands = re.findall(
            r"redisops -l redis backup restore-keys \S+ --all --dest [^\s;]+", refused.stderr
        )
        assert len(commands) == 3
        for command in commands:  # the route the refusal names loads the same keys
            words = command.split()[1:]
            run = redisops("-i", other.inventory_path, *words, "--yes", env=OFF_TERMINAL)
            assert run.exit_code == 0, run.stderr
        assert dumps(other) == original
    finally:
        lab_down(Path(other.dir), purge=True)


def test_nodes_without_an_inventory_entry_are_never_stopped(taken, tmp_path):
    """Discovered nodes inherit the seed's entry, service_stop/start included: a restore
    would stop and start the seed in their place, so it is refused."""
    state, dest, cluster_set, original = taken
    data = yaml.safe_load(Path(state.inventory_path).read_text())
    hosts = data["all"]["children"]["redis"]["hosts"]
    data["all"]["children"]["redis"]["hosts"] = {"node-1": hosts["node-1"]}
    inventory = tmp_path / "one-seed.yaml"
    inventory.write_text(yaml.safe_dump(data))
    refused = redisops(
        "-i", str(inventory), "cluster", "restore", cluster_set["set_id"],
        "--dest", str(dest), "--dry-run", env=OFF_TERMINAL,
    )  # fmt: skip
    assert refused.exit_code == 3, refused.stderr
    assert re.search(
        r"error: redis@127\.0\.0\.1:\d+ has no inventory entry of its own", refused.stderr
    )
    assert dumps(state) == original
