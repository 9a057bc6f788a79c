"""`backup restore-keys -l CLUSTER` into a real Redis Cluster (3 shards x 1 replica): a
standalone server's backup lands key by key on its slot's master, selections and --replace
work as for one server, a slot moved (MOVED) or migrating (ASK) between plan and apply still
gets its keys, and a part of a cluster or a backup with keys in db 1 is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from redisops.backup.restore_keys import KeySelection, locate_source
from redisops.backup.restore_keys_cluster import (
    apply_cluster_restore_keys,
    plan_cluster_restore_keys,
)
from redisops.fleet.cluster import discover_clusters
from redisops.fleet.inventory import load_inventory
from redisops.lab import lab_down
from redisops.memory.slots import key_slot
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.servers import start_redis_server

PLAIN_KEYS = 240
TAGGED = (b"{cart:7}", b"{moved}", b"{asked}")
TAGGED_KEYS = 10
WAIT = 30.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The cluster (empty) and two RDB files of a standalone server: `source` (db 0 only:
    strings, hashes, lists, sets, zsets, some with TTLs, hash-tagged groups) and `with_db1`
    (the same plus one key in db 1)."""
    folder = tmp_path_factory.mktemp("restore-keys-cluster")
    state = start_cluster_lab(folder / "cluster", shards=3, replicas=1)
    process, port = start_redis_server(folder)
    try:
        server = redis.Redis(port=port, socket_timeout=10)
        pipe = server.pipeline(transaction=False)
        now = int(time.time() * 1000)
        for i in range(PLAIN_KEYS):
            kind = i % 5
            key = f"user:{i}" if i % 2 else f"session:{i}"
            if kind == 0:
                pipe.set(key, f"value-{i}" * (1 + i % 7))
            elif kind == 1:
                pipe.hset(key, mapping={f"f{j}": j for j in range(1 + i % 9)})
            elif kind == 2:
                pipe.rpush(key, *[f"item-{j}" for j in range(1 + i % 6)])
            elif kind == 3:
                pipe.sadd(key, *[f"m{j}" for j in range(1 + i % 5)])
            else:
                pipe.zadd(key, {f"z{j}": j for j in range(1 + i % 4)})
            if i % 3 == 0:
                pipe.pexpireat(key, now + 3_600_000 + i)
        for tag in TAGGED:
            for i in range(TAGGED_KEYS):
                pipe.set(tag + b":%d" % i, b"tagged-%d" % i)
        pipe.execute()
        server.save()
        shutil.copy(folder / "dump.rdb", folder / "source.rdb")
        expected = {k: logical(server, k) for k in server.scan_iter(count=500)}
        server.select(1)
        server.set("in-db-1", "x")
        server.save()
        shutil.copy(folder / "dump.rdb", folder / "with_db1.rdb")
        server.close()
        yield {
            "state": state,
            "inventory": state.inventory_path,
            "password": (Path(state.dir) / "secret").read_text().strip(),
            "source": str(folder / "source.rdb"),
            "with_db1": str(folder / "with_db1.rdb"),
            "expected": expected,
        }
    finally:
        process.kill()
        process.wait()
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def cli(env, *args: str):
    return redisops("-i", env["inventory"], *args)


def discovered(env):
    inventory = load_inventory(Path(env["inventory"]))
    return discover_clusters(inventory.hosts, {"redis"}, timeout=10, parallel=8).clusters["redis"]


def masters(env) -> dict[int, redis.Redis]:
    """A client per master (by port), for the live cluster."""
    cluster = discovered(env)
    return clients_of(cluster, env["password"])


def clients_of(cluster, password: str) -> dict[int, redis.Redis]:
    return {
        h.port: redis.Redis(port=h.port, password=password, socket_timeout=10)
        for h in cluster.nodes
        if h.node.role == "master" and h.node.slots
    }


def owner(clients: dict[int, redis.Redis], key: bytes) -> int:
    """The port of the master serving `key` now (CLUSTER SLOTS of a master)."""
    slot = key_slot(key)
    for first, last, master, *_ in next(iter(clients.values())).execute_command("CLUSTER SLOTS"):
        if first <= slot <= last:
            return int(master[1])
    raise AssertionError(f"no master serves slot {slot}")


def flush(clients: dict[int, redis.Redis]) -> None:
    for client in clients.values():
        client.flushall()


def logical(client: redis.Redis, key: bytes) -> tuple:
    """type, value and absolute expiry (ms) of `key` (a set's or hash's order left out)."""
    kind = client.type(key).decode()
    value = {
        "string": client.get,
        "list": lambda k: client.lrange(k, 0, -1),
        "set": lambda k: sorted(client.smembers(k)),
        "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
        "hash": lambda k: sorted(client.hgetall(k).items()),
    }[kind](key)
    return kind, value, client.pexpiretime(key)


def contents(clients: dict[int, redis.Redis]) -> dict[bytes, tuple]:
    """Every key of the cluster, logically; asserts each key is on its slot's master."""
    found = {}
    for port, client in clients.items():
        for key in client.scan_iter(count=500):
            assert owner(clients, key) == port, f"{key!r} on {port}, not on its slot's master"
            found[key] = logical(client, key)
    return found


def test_a_standalone_backup_lands_on_each_keys_slot_master(env, tmp_path):
    clients = masters(env)
    flush(clients)
    audit = tmp_path / "audit.jsonl"
    run = cli(env, "-l", "redis", "-o", "json", "backup", "restore-keys", env["source"],
              "--all", "--yes", "--audit-log", str(audit))  # fmt: skip
    assert run.exit_code == 0, run.stderr
    (row,) = run.json()["results"]
    total = PLAIN_KEYS + len(TAGGED) * TAGGED_KEYS
    assert row["host"] == "redis" and row["data"]["restored"] == total
    assert row["data"]["redirects"] == 0  # each sent straight to its slot's master
    assert contents(clients) == env["expected"]  # values, TTLs, and each on its master
    by_port = {port: client.dbsize() for port, client in clients.items()}
    ports = {h.name: h.port for h in discovered(env).nodes}
    assert {ports[name]: n for name, n in row["data"]["by_master"].items()} == by_port
    (line,) = [json.loads(text) for text in audit.read_text().splitlines()]
    assert (line["host"], line["outcome"], line["restored"]) == ("redis", "restored", total)
    assert line["restored_by_master"] == row["data"]["by_master"]
    assert all(by_port.values()) and sum(by_port.values()) == total
    for tag in TAGGED:
        master = clients[owner(clients, tag)]
        slot = key_slot(tag)
        assert master.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == TAGGED_KEYS


def test_the_backups_of_a_3_shard_cluster_load_into_a_4_shard_one(env, tmp_path):
    clients = masters(env)
    flush(clients)
    run = cli(env, "-l", "redis", "backup", "restore-keys", env["source"], "--all", "--yes")
    assert run.exit_code == 0, run.stderr
    files = {}
    for port, client in clients.items():
        client.save()
        folder, name = (client.config_get(p)[p] for p in ("dir", "dbfilename"))
        files[port] = shutil.copy(Path(folder) / name, tmp_path / f"shard-{port}.rdb")
    wide = start_cluster_lab(tmp_path / "wide", shards=4, replicas=0)
    try:
        password = (Path(wide.dir) / "secret").read_text().strip()
        inventory = load_inventory(Path(wide.inventory_path))
        four = discover_clusters(inventory.hosts, {"redis"}, timeout=10, parallel=8)
        targets = clients_of(four.clusters["redis"], password)
        assert len(targets) == 4
        for port, path in files.items():
            load = redisops("-i", wide.inventory_path, "-l", "redis", "-o", "json", "backup",
                            "restore-keys", str(path), "--all", "--yes")  # fmt: skip
            assert load.exit_code == 0, load.stderr
            assert load.json()["results"][0]["data"]["restored"] == clients[port].dbsize()
        assert contents(targets) == env["expected"]
        assert all(client.dbsize() for client in targets.values())
    finally:
        lab_down(Path(wide.dir), purge=True)


def test_match_into_a_cluster_and_existing_keys_kept_without_replace(env):
    clients = masters(env)
    flush(clients)
    clients[owner(clients, b"user:1")].set("user:1", "changed since")
    plan = cli(env, "-l", "redis", "-o", "json", "backup", "restore-keys", env["source"],
               "--match", "user:*", "--dry-run")  # fmt: skip
    assert plan.exit_code == 0, plan.stderr
    data = plan.json()["results"][0]["data"]
    users = {k: v for k, v in env["expected"].items() if k.startswith(b"user:")}
    assert (data["selected"], data["create"], data["kept"]) == (len(users), len(users) - 1, 1)
    shards = data["cluster"]["shards"]
    assert [s["shard"] for s in shards] == ["shard-1", "shard-2", "shard-3"]
    assert sum(s["create"] for s in shards) == len(users) - 1
    assert sum(s["kept"] for s in shards) == 1
    assert sum(c.dbsize() for c in clients.values()) == 1  # a dry run sends nothing

    run = cli(env, "-l", "redis", "backup", "restore-keys", env["source"], "--match", "user:*",
              "--yes")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    found = contents(clients)
    assert set(found) == set(users)
    assert clients[owner(clients, b"user:1")].get("user:1") == b"changed since"
    assert {k: v for k, v in found.items() if k != b"user:1"} == {
        k: v for k, v in users.items() if k != b"user:1"
    }

    again = cli(env, "-l", "redis", "backup", "restore-keys", env["source"], "--match",
                "user:1", "--replace", "--yes")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert contents(clients)[b"user:1"] == users[b"user:1"]


def test_a_part_of_a_cluster_is_refused_with_the_cluster_form(env):
    for limit in ("node-1", "node-4,node-5,node-6"):
        run = cli(env, "-l", limit, "backup", "restore-keys", env["source"], "--all", "--yes")
        assert run.exit_code == 3, run.stderr
        assert "a node of cluster redis is not a target on its own" in run.stderr
        assert "hint: select the whole cluster: -l redis" in run.stderr


def test_latest_of_a_cluster_needs_the_backups_host(env):
    run = cli(env, "-l", "redis", "backup", "restore-keys", "latest", "--all", "--yes")
    assert run.exit_code == 2
    assert "`latest` of cluster redis names no one host's backup" in run.stderr
    assert "--from-host HOST" in run.stderr


def test_a_cluster_node_not_marked_cluster_in_the_inventory_is_refused(env, tmp_path):
    data = yaml.safe_load(Path(env["inventory"]).read_text())
    del data["all"]["children"]["redis"]["vars"]
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    clients = masters(env)
    flush(clients)
    run = redisops("-i", str(inventory), "-l", "node-1", "backup", "restore-keys",
                   env["source"], "--all", "--yes")  # fmt: skip
    assert run.exit_code == 3
    assert "node-1 is a cluster node: keys go to their slot's master only when the whole " \
        "cluster is the target" in " ".join(run.stderr.split())  # fmt: skip
    assert sum(c.dbsize() for c in clients.values()) == 0


def test_keys_in_db_1_are_refused_for_a_cluster(env):
    clients = masters(env)
    flush(clients)
    run = cli(env, "-l", "redis", "backup", "restore-keys", env["with_db1"], "--all", "--yes")
    assert run.exit_code == 3, run.stderr
    assert "a cluster has db 0 only, and 1 selected key(s) are in db1 (1)" in run.stderr
    assert sum(c.dbsize() for c in clients.values()) == 0
    only_db0 = cli(env, "-l", "redis", "backup", "restore-keys", env["with_db1"], "--all",
                   "--db", "0", "--yes")  # fmt: skip
    assert only_db0.exit_code == 0, only_db0.stderr
    assert contents(clients) == env["expected"]


def test_a_slot_moved_or_migrating_between_plan_and_apply_still_gets_its_keys(env):
    """The plan reads the slot map; then {moved}'s slot is given to another master (MOVED)
    and {asked}'s slot is set migrating to another (ASK); apply with the old map."""
    clients = masters(env)
    flush(clients)
    cluster = discovered(env)
    source = locate_source(env["source"], lambda: None, "redis")
    selection = KeySelection(patterns=("{moved}:*", "{asked}:*", "user:*"))
    folder = Path(env["state"].dir) / "rk"
    plan = plan_cluster_restore_keys(source, cluster, selection, replace=False,
                                     state_dir=folder, timeout=10)  # fmt: skip
    assert not plan.blockers and plan.restore == PLAIN_KEYS // 2 + 2 * TAGGED_KEYS

    ids = {port: c.execute_command("CLUSTER", "MYID").decode() for port, c in clients.items()}
    moved_slot, asked_slot = key_slot(b"{moved}"), key_slot(b"{asked}")
    moved_from, asked_from = owner(clients, b"{moved}"), owner(clients, b"{asked}")
    moved_to = next(p for p in clients if p != moved_from)
    asked_to = next(p for p in clients if p != asked_from)
    for port in (moved_to, *[p for p in clients if p != moved_to]):
        clients[port].execute_command("CLUSTER", "SETSLOT", moved_slot, "NODE", ids[moved_to])
    clients[asked_to].execute_command("CLUSTER", "SETSLOT", asked_slot, "IMPORTING",
                                      ids[asked_from])  # fmt: skip
    clients[asked_from].execute_command("CLUSTER", "SETSLOT", asked_slot, "MIGRATING",
                                        ids[asked_to])  # fmt: skip
    try:
        # --rate 500: rounds of 50 keys, redirections while the next round is being built
        result = apply_cluster_restore_keys(plan, cluster, rate=500, timeout=10)
        assert result.problem is None and result.failed == 0
        assert result.restored == plan.restore
        # every {asked} key is asked for; {moved} keys until the first MOVED refreshed the map
        assert TAGGED_KEYS < result.redirects <= 2 * TAGGED_KEYS
        moved = [b"{moved}:%d" % i for i in range(TAGGED_KEYS)]
        assert clients[moved_to].exists(*moved) == TAGGED_KEYS
        count = ("CLUSTER", "COUNTKEYSINSLOT", moved_slot)
        assert clients[moved_from].execute_command(*count) == 0
        assert clients[asked_to].execute_command("CLUSTER", "COUNTKEYSINSLOT", asked_slot) == (
            TAGGED_KEYS
        )
        assert clients[asked_from].execute_command("CLUSTER", "COUNTKEYSINSLOT", asked_slot) == 0
    finally:
        for port in (asked_to, *[p for p in clients if p != asked_to]):
            clients[port].execute_command("CLUSTER", "SETSLOT", asked_slot, "NODE", ids[asked_to])
    assert contents(clients) == {
        k: v for k, v in env["expected"].items() if k.startswith((b"{moved}", b"{asked}", b"user:"))
    }


def restores(clients: dict[int, redis.Redis]) -> int:
    """RESTORE commands the masters have run (INFO commandstats)."""
    stats = [c.info("commandstats").get("cmdstat_restore", {}) for c in clients.values()]
    return sum(s.get("calls", 0) for s in stats)


def position(state_home: Path) -> int:
    """The `position` in the state file of a running restore into cluster `redis` (0 before
    there is one)."""
    for path in (state_home / "redisops" / "restore-keys").glob("redis-*.json"):
        try:
            return json.loads(path.read_text())["position"]
        except (OSError, ValueError, KeyError):
            return 0  # replaced between the listing and the read
    return 0


def test_resume_after_kill_9_into_a_cluster_restores_the_rest_once(env, tmp_path):
    clients = masters(env)
    flush(clients)
    state_home = tmp_path / "state"
    environ = {**os.environ, "PYTHONPATH": os.getcwd(), "XDG_STATE_HOME": str(state_home)}
    command = [sys.executable, "-m", "redisops", "-i", env["inventory"], "-l", "redis", "backup",
               "restore-keys", env["source"], "--all", "--rate", "100", "--yes"]  # fmt: skip
    process = subprocess.Popen(command, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while position(state_home) < 30:  # a few rounds came back
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
    total = len(env["expected"])
    partial = sum(c.dbsize() for c in clients.values())
    assert 30 <= partial < total
    calls = restores(clients)
    run = cli(env, "-l", "redis", "-o", "json", "backup", "restore-keys", env["source"],
              "--all", "--yes")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["kept"], data["failed"]) == (0, 0)  # nothing sent twice
    assert data["done_before"] == partial  # continued from the state file
    assert data["restored"] == total - partial == restores(clients) - calls
    assert contents(clients) == env["expected"]
    assert not list((state_home / "redisops" / "restore-keys").glob("redis-*.json"))
