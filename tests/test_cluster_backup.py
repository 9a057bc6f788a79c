"""Cluster backup sets on a real lab cluster (3 shards x 1 replica): `backup run` takes one
verified RDB per shard and records the set; the set restores into a fresh cluster of the same
shape with the same logical content; `backup verify` catches a key outside its shard's slots
and a set missing a shard; `backup list` shows the set as one line."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import redis

from redisops.backup.clusterset import slot_map_changes
from redisops.datafile import raw_chunks
from redisops.fleet.cluster import Cluster, Shard
from redisops.lab import lab_down, lab_up
from redisops.memory.slots import key_slot
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.servers import valkey_server_binary
from tests.test_cluster_discovery import password_of, wait_all_online

SEED_KEYS = 300
TAGGED = 40  # keys sharing one hash tag, with TTLs: they all live in one slot
DEADLINE = 30


def client(state, port: int) -> redis.Redis:
    return redis.Redis(port=port, password=password_of(state), socket_timeout=10)


def master_ports(state) -> list[int]:
    return [p.port for p in state.processes if p.role == "master"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The lab's seeded keys plus TAGGED `{cart:7}:…` keys with TTLs; one run's set (JSON of
    `backup run`) taken into `dest`; the lab stays as it was."""
    state = start_cluster_lab(tmp_path_factory.mktemp("cluster"), seed_keys=SEED_KEYS)
    try:
        wait_all_online(state)
        seed_tagged(state)
        dest = tmp_path_factory.mktemp("catalogue")
        wait_replicas_caught_up(state)
        run = backup(state, dest, "run")
        assert run.exit_code == 0, run.stderr
        yield state, dest, run.json()
    finally:
        lab_down(Path(state.dir), purge=True)


def call(state, port: int, *command):
    connection = client(state, port)
    try:
        return connection.execute_command(*command)
    finally:
        connection.close()


def seed_tagged(state) -> None:
    """TAGGED keys on the master that owns `{cart:7}`'s slot (the others answer MOVED)."""
    for port in master_ports(state):
        connection = client(state, port)
        try:
            for number in range(TAGGED):
                connection.set(f"{{cart:7}}:item:{number}", f"sku-{number}", ex=3600)
            return
        except redis.exceptions.MovedError:
            continue
        finally:
            connection.close()
    raise AssertionError("no master took the {cart:7} keys")


def wait_replicas_caught_up(state) -> None:
    """Until every replica's link is up and its offset equals its master's (the keys written
    just now are on every node), so the replica the run picks holds them."""
    deadline = time.monotonic() + DEADLINE
    while True:
        lagging = []
        for process in state.processes:
            if process.role != "replica":
                continue
            connection = client(state, process.port)
            try:
                info = connection.info("replication")
            finally:
                connection.close()
            master = client(state, int(info["master_port"]))
            try:
                master_offset = master.info("replication")["master_repl_offset"]
            finally:
                master.close()
            if info["master_link_status"] != "up" or info["slave_repl_offset"] != master_offset:
                lagging.append(process.name)
        if not lagging:
            return
        assert time.monotonic() < deadline, f"replicas still behind: {lagging}"
        time.sleep(0.05)


def backup(state, dest: Path, *args: str, limit: str | None = None):
    options = ["-l", limit] if limit else []
    return redisops(
        "-i", state.inventory_path, *options, "-o", "json", "backup", *args, "--dest", str(dest)
    )


def set_rows(document: dict) -> list[dict]:
    return [r for r in document["results"] if r["address"] == ""]


def backup_rows(document: dict) -> list[dict]:
    return [r for r in document["results"] if r["address"] != ""]


READERS = {
    "string": lambda c, k: c.get(k),
    "hash": lambda c, k: c.hgetall(k),
    "list": lambda c, k: c.lrange(k, 0, -1),
    "set": lambda c, k: c.smembers(k),
    "zset": lambda c, k: c.zrange(k, 0, -1, withscores=True),
    "stream": lambda c, k: c.xrange(k),
}


def logical_content(state) -> dict[bytes, tuple]:
    """Every key of the cluster (over its masters): type, value read by type, TTL or not."""
    content = {}
    for port in master_ports(state):
        connection = client(state, port)
        try:
            for key in connection.scan_iter(count=1000):
                kind = connection.type(key).decode()
                value = READERS[kind](connection, key)
                content[key] = (kind, value, connection.pttl(key) > 0)
        finally:
            connection.close()
    return content


def test_run_takes_one_verified_backup_per_shard_and_a_set_covering_all_slots(cluster):
    state, dest, document = cluster
    rows = backup_rows(document)
    # The replicas are in sync: each shard is backed up from its replica.
    assert sorted(r["host"] for r in rows) == ["node-4", "node-5", "node-6"]
    assert all(r["ok"] and r["data"]["verified"] for r in rows)
    (row,) = set_rows(document)
    assert (row["host"], row["ok"], row["error"]) == ("redis", True, None)
    found = row["data"]
    assert found["slots_covered"] == 16384
    assert found["verification"]["status"] == "verified"
    assert found["verification"]["checks"][-1] == "slot map unchanged during the backups"
    members = found["members"]
    assert [(m["shard"], m["host"], m["role"], m["source"]) for m in members] == [
        ("shard-1", "node-4", "replica", "replica, link up"),
        ("shard-2", "node-5", "replica", "replica, link up"),
        ("shard-3", "node-6", "replica", "replica, link up"),
    ]
    assert [m["backup_id"] for m in members] == [r["data"]["backup_id"] for r in rows]
    total = sum(call(state, p, "DBSIZE") for p in master_ports(state))
    assert total == SEED_KEYS + TAGGED
    assert found["keys_checked"] == total == sum(m["keys"] for m in members)
    snapshots = sorted(m["snapshot_at"] for m in members)
    assert found["started_at"] == snapshots[0]
    spread = (datetime_of(snapshots[-1]) - datetime_of(snapshots[0])).total_seconds()
    assert found["spread_seconds"] == round(spread, 3)
    path = dest / "redis" / f"{found['set_id']}.set.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["members"][0]["slots"] == [[0, 5460]]
    assert document["summary"]["sets"] == 1


def datetime_of(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text)


def test_list_shows_the_set_as_one_line(cluster):
    state, dest, document = cluster
    (made,) = set_rows(document)
    listed = backup(state, dest, "list")
    assert listed.exit_code == 0, listed.stderr
    (row,) = set_rows(listed.json())
    assert row["data"]["set_id"] == made["data"]["set_id"]
    assert listed.json()["summary"]["sets"] == 1
    table = redisops(
        "-i", state.inventory_path, "backup", "list", "--dest", str(dest), env={"COLUMNS": "120"}
    )
    lines = [line for line in table.stdout.splitlines() if made["data"]["set_id"] in line]
    assert len(lines) == 1 and "16,384" in lines[0] and "verified" in lines[0], table.stdout
    # A shard selects its node's backups (asking the cluster which node that is) and the set.
    shard = backup(state, dest, "list", limit="redis/shard-2")
    assert shard.exit_code == 0, shard.stderr
    assert [r["host"] for r in shard.json()["results"]] == ["node-5", "redis"]


def test_a_set_restores_into_a_fresh_cluster_of_the_same_shape(cluster, tmp_path):
    state, dest, document = cluster
    (row,) = set_rows(document)
    original = logical_content(state)
    assert len(original) == SEED_KEYS + TAGGED
    fresh = start_cluster_lab(tmp_path / "fresh", seed_keys=0)
    try:
        by_slot = {}  # first slot -> the fresh master's folder
        for process in fresh.processes:
            if process.role == "master":
                myid = call(fresh, process.port, "CLUSTER", "MYID")
                for shard in call(fresh, process.port, "CLUSTER", "SHARDS"):
                    if any(n[b"id"] == myid for n in shard[b"nodes"]):
                        by_slot[shard[b"slots"][0]] = Path(process.folder)
        lab_down(Path(fresh.dir))
        for member in row["data"]["members"]:
            folder = by_slot[member["slots"][0][0]]
            (backup_dir,) = (dest / member["host"]).glob(member["backup_id"])
            with open(folder / "dump.rdb", "wb") as out:
                for chunk in raw_chunks(backup_dir / "dump.rdb", "none"):
                    out.write(chunk)
        for process in fresh.processes:
            if process.role == "replica":  # they resync from their restored masters
                (Path(process.folder) / "dump.rdb").unlink(missing_ok=True)
        base = min(p.port for p in fresh.processes)
        fresh = lab_up(Path(fresh.dir), replicas=1, sentinels=0, base_port=base, shards=3)
        wait_all_online(fresh)
        assert logical_content(fresh) == original
    finally:
        lab_down(Path(fresh.dir), purge=True)


def edited_copy(dest: Path, tmp_path: Path, set_id: str, edit) -> Path:
    """A copy of the catalogue whose set file `edit(document)` changed."""
    copy = tmp_path / "copy"
    shutil.copytree(dest, copy)
    path = copy / "redis" / f"{set_id}.set.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    return copy


def test_verify_fails_on_a_key_outside_its_shards_slots(cluster, tmp_path):
    state, dest, document = cluster
    set_id = set_rows(document)[0]["data"]["set_id"]

    def swap(found):  # shard-1's RDB now claims shard-2's slots and the other way round
        one, two = found["members"][0], found["members"][1]
        one["slots"], two["slots"] = two["slots"], one["slots"]

    copy = edited_copy(dest, tmp_path, set_id, swap)
    run = backup(state, copy, "verify", set_id)
    assert run.exit_code == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    found = re.fullmatch(
        rf"error: {set_id}: shard-1: key '(.+)' in (node-4-\S+) hashes to slot (\d+), "
        r"outside the shard's slots 5461-10921 \((\d+) keys outside in all\)",
        errors[0],
    )
    assert found, errors[0]
    key, slot = found[1].encode(), int(found[3])
    assert key_slot(key) == slot <= 5460
    assert call(state, master_ports(state)[0], "CLUSTER", "KEYSLOT", key) == slot
    members = set_rows(document)[0]["data"]["members"]
    assert int(found[4]) == members[0]["keys"]  # every key of shard-1 is outside 5461-10921
    (row,) = set_rows(run.json())
    assert (row["ok"], row["data"]["verification"]["status"]) == (False, "failed")
    # The verdict is recorded: `backup list` shows the set failed (exit 1).
    listed = backup(state, copy, "list")
    assert listed.exit_code == 1
    assert set_rows(listed.json())[0]["ok"] is False
    # The real set still verifies.
    assert backup(state, dest, "verify", set_id).exit_code == 0


def test_verify_fails_on_a_set_missing_a_shard(cluster, tmp_path):
    state, dest, document = cluster
    set_id = set_rows(document)[0]["data"]["set_id"]
    copy = edited_copy(dest, tmp_path, set_id, lambda found: found["members"].pop(1))
    run = backup(state, copy, "verify", "--all")
    assert run.exit_code == 1
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {set_id}: the set covers 10923 of 16384 slots: 5461-10921 in no shard's backup"
    ], run.stderr
    # The three member backups themselves are fine.
    assert [r["ok"] for r in backup_rows(run.json())] == [True, True, True]


def test_verify_fails_on_a_slot_in_two_shards(cluster, tmp_path):
    state, dest, document = cluster
    set_id = set_rows(document)[0]["data"]["set_id"]

    def overlap(found):
        found["members"][1]["slots"] = [[0, 10921]]

    run = backup(state, edited_copy(dest, tmp_path, set_id, overlap), "verify", set_id)
    assert run.exit_code == 1
    (row,) = set_rows(run.json())
    assert row["error"] == f"{set_id}: slot 0 is in both shard-1 and shard-2"


def test_a_shard_whose_replica_link_is_down_is_backed_up_from_its_master(cluster, tmp_path):
    state, _, _ = cluster
    replica = next(p for p in state.processes if p.name == "node-5")
    connection = client(state, replica.port)
    try:
        connection.config_set("masterauth", "wrong")
        connection.execute_command("CLIENT", "KILL", "TYPE", "master")
        deadline = time.monotonic() + DEADLINE
        while connection.info("replication")["master_link_status"] == "up":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        run = backup(state, tmp_path / "dest", "run")
        # With the replicas only, shard-2 has no node to back up: no set, exit 1.
        replicas = backup(state, tmp_path / "dest", "run", limit="redis/replicas")
    finally:
        connection.config_set("masterauth", password_of(state))
        connection.close()
    assert run.exit_code == 0, run.stderr
    (row,) = set_rows(run.json())
    members = row["data"]["members"]
    assert [(m["host"], m["source"]) for m in members] == [
        ("node-4", "replica, link up"),
        ("node-2", "master (node-5 link down)"),
        ("node-6", "replica, link up"),
    ]
    assert row["data"]["slots_covered"] == 16384
    assert replicas.exit_code == 1
    assert [r["host"] for r in backup_rows(replicas.json())] == ["node-4", "node-6"]
    assert set_rows(replicas.json())[0]["error"] == (
        "no backup set for cluster redis: no node to back up in shard-2 (node-5 link down; "
        "its master not selected)"
    )
    wait_replicas_caught_up(state)


def test_part_of_a_cluster_is_backed_up_without_a_set(cluster, tmp_path):
    state, _, _ = cluster
    run = backup(state, tmp_path / "dest", "run", limit="redis/shard-2")
    assert run.exit_code == 0, run.stderr
    assert [r["host"] for r in run.json()["results"]] == ["node-5"]
    assert (
        "warning: redis: no backup set: the selection holds 1 of 3 shards "
        "(not shard-1, shard-3); each is backed up on its own"
    ) in run.stderr
    masters = backup(state, tmp_path / "dest", "run", limit="redis/masters")
    assert masters.exit_code == 0, masters.stderr
    (row,) = set_rows(masters.json())
    assert [m["source"] for m in row["data"]["members"]] == ["master, no replica selected"] * 3


def test_aof_of_a_cluster_is_refused(cluster, tmp_path):
    state, _, _ = cluster
    run = backup(state, tmp_path / "dest", "run", "--kind", "aof")
    assert run.exit_code == 2
    assert "a cluster backup set is one RDB snapshot per shard" in run.stderr


def test_a_failed_shard_backup_records_no_set(cluster, tmp_path):
    state, _, _ = cluster
    replica = next(p for p in state.processes if p.name == "node-5")
    # Its BGSAVE now takes ~1.7 s (10 ms a key), past --save-timeout 1.
    call(state, replica.port, "CONFIG", "SET", "rdb-key-save-delay", "10000")
    try:
        run = backup(state, tmp_path / "dest", "run", "--save-timeout", "1")
    finally:
        call(state, replica.port, "CONFIG", "SET", "rdb-key-save-delay", "0")
        deadline = time.monotonic() + DEADLINE
        while call(state, replica.port, "INFO", "persistence")["rdb_bgsave_in_progress"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert run.exit_code == 1
    document = run.json()
    assert [(r["host"], r["ok"]) for r in backup_rows(document)] == [
        ("node-4", True),
        ("node-5", False),
        ("node-6", True),
    ]
    (row,) = set_rows(document)
    assert (row["host"], row["ok"], row["data"]) == ("redis", False, None)
    assert row["error"] == (
        "no backup set for cluster redis: the backup of shard-2 failed (the other shards' "
        "backups are kept as host backups)"
    )
    assert not list((tmp_path / "dest").glob("redis/*.set.json"))


def test_a_real_rdb_with_keys_of_other_shards_fails_the_set(cluster, tmp_path):
    """DEBUG POPULATE writes keys straight into node-1's data set, whatever their slot (as a
    wrong file loaded by hand would): `stray:0` (slot 13097) and `stray:1` (8968) are not
    shard-1's. The run records the set, failed, and `backup verify` says so again."""
    state, _, _ = cluster
    node_1 = master_ports(state)[0]
    call(state, node_1, "DEBUG", "POPULATE", 3, "stray")
    try:
        run = backup(state, tmp_path / "dest", "run", limit="redis/masters")
    finally:
        remove_strays(state, node_1)
    assert run.exit_code == 1
    (row,) = set_rows(run.json())
    set_id = row["data"]["set_id"]
    assert (row["ok"], row["data"]["verification"]["status"]) == (False, "failed")
    assert all(r["ok"] for r in backup_rows(run.json()))  # the backups themselves are good
    pattern = (
        rf"{set_id}: shard-1: key 'stray:([01])' in node-1-\S+ hashes to slot (\d+), "
        r"outside the shard's slots 0-5460 \(2 keys outside in all\)"
    )
    found = re.fullmatch(pattern, row["error"])
    assert found, row["error"]
    assert (
        int(found[2]) == key_slot(f"stray:{found[1]}".encode()) == {"0": 13097, "1": 8968}[found[1]]
    )
    assert f"error: {row['error']}" in run.stderr.splitlines()
    again = backup(state, tmp_path / "dest", "verify", set_id)
    assert again.exit_code == 1
    assert set_rows(again.json())[0]["error"] == row["error"]


def remove_strays(state, port: int) -> None:
    """Delete the stray keys from node-1: a key of a slot another master owns can only be
    reached there while node-1 imports that slot (ASKING), so import, delete, stabilise."""
    owners = {}
    for shard in call(state, port, "CLUSTER", "SHARDS"):
        master = next(n for n in shard[b"nodes"] if n[b"role"] == b"master")
        first, last = shard[b"slots"][0], shard[b"slots"][1]
        owners[(first, last)] = master[b"id"].decode()
    connection = client(state, port)
    try:
        for key in (b"stray:0", b"stray:1", b"stray:2"):
            slot = key_slot(key)
            if slot <= 5460:
                connection.delete(key)
                continue
            owner = next(node for (a, b), node in owners.items() if a <= slot <= b)
            connection.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", owner)
            try:
                pipe = connection.pipeline(transaction=False)
                pipe.execute_command("ASKING")
                pipe.delete(key)
                assert pipe.execute() == [True, 1]
            finally:
                connection.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        # node-1 holds no key of another shard's slot again
        assert [
            connection.execute_command("CLUSTER", "COUNTKEYSINSLOT", s) for s in (13097, 8968)
        ] == [0, 0]
    finally:
        connection.close()


def test_a_slot_map_that_changed_during_the_backups_is_named():
    def cluster_of(*shards):
        return Cluster(
            "cache",
            "seed",
            tuple(Shard(f"shard-{n}", ident, slots, ()) for n, (ident, slots) in enumerate(shards)),
            (),
        )

    before = cluster_of(("a", ((0, 5460),)), ("b", ((5461, 10921),)), ("c", ((10922, 16383),)))
    assert slot_map_changes(before, before) is None
    # A failover: the shard ids change (Redis 7.0 names a shard after its master), the slots
    # stay together: nothing moved.
    failover = cluster_of(("x", ((0, 5460),)), ("b", ((5461, 10921),)), ("c", ((10922, 16383),)))
    assert slot_map_changes(before, failover) is None
    # Slots 100-101 migrated from the first shard to the second, 16000-16383 lost their shard.
    after = cluster_of(
        ("a", ((0, 99), (102, 5460))),
        ("b", ((100, 101), (5461, 10921))),
        ("c", ((10922, 15999),)),
    )
    assert slot_map_changes(before, after) == (
        "the slot map changed during the backups: 386 slots (100-101,16000-16383) moved to "
        "another shard or to none; take the backup again"
    )


def test_a_valkey_cluster_set(tmp_path):
    """Valkey 9 (its own RDB format, 80): 3 shards without replicas, backed up from the
    masters over replication, the set verified key by key."""
    valkey = start_cluster_lab(
        tmp_path / "valkey", replicas=0, seed_keys=120, server=str(valkey_server_binary())
    )
    try:
        run = backup(valkey, tmp_path / "dest", "run")
        assert run.exit_code == 0, run.stderr
        (row,) = set_rows(run.json())
        found = row["data"]
        assert [(m["host"], m["source"]) for m in found["members"]] == [
            (f"node-{n}", "master, the shard has no replica") for n in (1, 2, 3)
        ]
        assert [r["data"]["via"] for r in backup_rows(run.json())] == ["replication"] * 3
        assert (found["slots_covered"], found["keys_checked"]) == (16384, 120)
        assert found["verification"]["status"] == "verified"
        assert backup(valkey, tmp_path / "dest", "verify", found["set_id"]).exit_code == 0
    finally:
        lab_down(Path(valkey.dir), purge=True)
