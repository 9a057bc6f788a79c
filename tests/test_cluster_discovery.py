"""Cluster discovery on real lab clusters: seeds expand into every node, --limit picks parts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
import yaml

from redisops.lab import lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.servers import free_port, start_redis_server

SLOTS = 16384


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """3 shards x 1 replica (node-1..3 masters, node-4..6 their replicas), 60 keys."""
    state = start_cluster_lab(tmp_path_factory.mktemp("cluster"), seed_keys=60)
    try:
        wait_all_online(state)
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


def wait_all_online(state, seconds: float = 30) -> None:
    """Until every node's CLUSTER SHARDS says `online` for every node: a replica is `loading`
    until gossip brings its first replication offset, a little after the lab is up."""
    deadline = time.monotonic() + seconds
    while True:
        healths = set()
        for process in state.processes:
            client = redis.Redis(port=process.port, password=password_of(state), socket_timeout=10)
            try:
                shards = client.execute_command("CLUSTER", "SHARDS")
            finally:
                client.close()
            healths |= {node[b"health"] for shard in shards for node in shard[b"nodes"]}
        if healths == {b"online"}:
            return
        assert time.monotonic() < deadline, f"cluster nodes still {healths} after {seconds}s"
        time.sleep(0.1)


def password_of(state) -> str:
    return (Path(state.dir) / "secret").read_text().strip()


def node_ids(state) -> dict[int, str]:
    """Port -> CLUSTER MYID, asked of every node of the lab."""
    ids = {}
    for process in state.processes:
        client = redis.Redis(port=process.port, password=password_of(state), socket_timeout=10)
        try:
            ids[process.port] = client.execute_command("CLUSTER", "MYID").decode()
        finally:
            client.close()
    return ids


def write_inventory(folder: Path, groups: dict, password_file: str | None = None) -> str:
    variables = {"connection": "local"}
    if password_file:
        variables["password_file"] = password_file
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump({"all": {"vars": variables, "children": groups}}))
    return str(path)


def one_seed(folder: Path, state, port: int) -> str:
    """An inventory naming one node of the cluster: group `cache`, seed `seed`."""
    groups = {"cache": {"hosts": {"seed": {"host": "127.0.0.1", "port": port, "cluster": True}}}}
    return write_inventory(folder, groups, str(Path(state.dir) / "secret"))


def test_one_seed_finds_all_six_nodes_with_shards_slots_and_ids(cluster, tmp_path):
    ports = [p.port for p in cluster.processes]
    inventory = one_seed(tmp_path, cluster, ports[4])  # node-5, a replica of shard-2
    run = redisops("-i", inventory, "-o", "json", "inventory", "list")
    assert run.exit_code == 0, run.stderr
    rows = run.json()["results"]
    ids = node_ids(cluster)
    got = [
        (r["host"], r["address"], r["data"]["cluster"]["shard"], r["data"]["cluster"]["role"])
        for r in rows
    ]
    assert got == [
        (f"cache@127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[0]}", "shard-1", "master"),
        (f"cache@127.0.0.1:{ports[3]}", f"127.0.0.1:{ports[3]}", "shard-1", "replica"),
        (f"cache@127.0.0.1:{ports[1]}", f"127.0.0.1:{ports[1]}", "shard-2", "master"),
        ("seed", f"127.0.0.1:{ports[4]}", "shard-2", "replica"),
        (f"cache@127.0.0.1:{ports[2]}", f"127.0.0.1:{ports[2]}", "shard-3", "master"),
        (f"cache@127.0.0.1:{ports[5]}", f"127.0.0.1:{ports[5]}", "shard-3", "replica"),
    ]
    for row in rows:
        node = row["data"]["cluster"]
        port = int(row["address"].rsplit(":", 1)[1])
        assert node["node_id"] == ids[port]
        assert (node["cluster"], node["seed"], node["health"]) == ("cache", "seed", "online")
        # Discovered nodes inherit the seed's access and groups.
        assert (row["data"]["connection"], row["data"]["groups"]) == ("local", ["cache"])
        assert row["data"]["auth"].startswith("password_file ")
    masters = [r["data"]["cluster"] for r in rows if r["data"]["cluster"]["role"] == "master"]
    covered = sorted(slot for m in masters for a, b in m["slots"] for slot in range(a, b + 1))
    assert covered == list(range(SLOTS))
    replica = rows[1]["data"]["cluster"]
    assert replica["master_id"] == ids[ports[0]] == replica["shard_id"]
    # The same nodes answer inventory check, each with its shard.
    check = redisops("-i", inventory, "-o", "json", "inventory", "check")
    assert check.exit_code == 0, check.stderr
    roles = [(r["data"]["role"], r["data"]["cluster"]["shard"]) for r in check.json()["results"]]
    assert roles == [(role, f"shard-{n}") for n in (1, 2, 3) for role in ("master", "replica")]


def test_lab_inventory_entries_with_a_node_address_are_that_node(cluster):
    run = redisops("-i", cluster.inventory_path, "inventory", "list")
    assert run.exit_code == 0, run.stderr
    lines = [line.split() for line in run.stdout.splitlines()[1:]]
    # One cluster in the table: the shard column leaves its name out.
    assert [(line[0], line[3], line[4]) for line in lines] == [
        ("node-1", "shard-1", "master"),
        ("node-4", "shard-1", "replica"),
        ("node-2", "shard-2", "master"),
        ("node-5", "shard-2", "replica"),
        ("node-3", "shard-3", "master"),
        ("node-6", "shard-3", "replica"),
    ]
    assert lines[0][5] == "0-5460" and lines[4][5] == "10922-16383"


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        ("redis/masters", ["node-1", "node-2", "node-3"]),
        ("redis/replicas", ["node-4", "node-5", "node-6"]),
        ("redis/shard-2", ["node-2", "node-5"]),
        ("redis/shard-[13]/replicas", ["node-4", "node-6"]),
        ("redis,!redis/shard-1", ["node-2", "node-5", "node-3", "node-6"]),
        ("!redis/masters", ["node-4", "node-5", "node-6"]),
        ("node-5", ["node-5"]),
    ],
)
def test_limit_selects_a_cluster_shard_or_role(cluster, limit, expected):
    run = redisops("-i", cluster.inventory_path, "-l", limit, "-o", "json", "inventory", "list")
    assert run.exit_code == 0, run.stderr
    assert [r["host"] for r in run.json()["results"]] == expected


def test_limit_selectors_that_match_nothing_are_usage_errors(cluster):
    inventory = cluster.inventory_path
    shard = redisops("-i", inventory, "-l", "redis/shard-9", "inventory", "list")
    assert shard.exit_code == 2
    assert "--limit 'redis/shard-9' matches no host, group or cluster node" in shard.stderr
    other = redisops("-i", inventory, "-l", "cache/masters", "inventory", "list")
    assert other.exit_code == 2
    assert "no cluster named 'cache'" in other.stderr and "clusters of the inventory: redis" in (
        other.stderr
    )
    empty = redisops("-i", inventory, "-l", "redis/", "inventory", "list")
    assert empty.exit_code == 2 and "expected CLUSTER/SHARD" in empty.stderr


def test_commands_without_cluster_support_refuse_a_cluster(cluster):
    run = redisops("-i", cluster.inventory_path, "backup", "prune", "--keep-last", "1")
    assert run.exit_code == 2
    assert "`redisops backup prune` does not work on Redis Cluster yet" in run.stderr
    assert "--limit '!redis'" in run.stderr
    part = redisops(
        "-i", cluster.inventory_path, "-l", "redis/masters", "backup", "prune", "--keep-last", "1"
    )
    assert part.exit_code == 2
    assert (
        "--limit 'redis/masters' selects part of a cluster, but this command does not work "
        "on Redis Cluster yet"
    ) in part.stderr


def test_backup_restore_on_a_cluster_points_to_cluster_restore(cluster, tmp_path):
    run = redisops(
        "-i", cluster.inventory_path, "-l", "redis", "backup", "restore", "latest",
        "--dest", str(tmp_path), "--yes",
    )  # fmt: skip
    assert run.exit_code == 2
    assert "`redisops backup restore` does not work on Redis Cluster yet" in run.stderr
    hint = (
        f"hint: a cluster's backup set is restored with `redisops -i {cluster.inventory_path} "
        "cluster restore SET_ID`"
    )
    assert hint in run.stderr


def test_an_inventory_without_clusters_is_listed_without_the_network(tmp_path):
    closed = free_port()
    groups = {"cache": {"hosts": {"gone": {"host": "127.0.0.1", "port": closed}}}}
    run = redisops("-i", write_inventory(tmp_path, groups), "inventory", "list")
    assert run.exit_code == 0, run.stderr
    assert "shard" not in run.stdout.splitlines()[0]
    part = redisops("-i", write_inventory(tmp_path, groups), "-l", "cache/masters", "inventory",
                    "list")  # fmt: skip
    assert part.exit_code == 2
    assert "selects part of a cluster, but no host says `cluster: true`" in part.stderr


def test_a_seed_not_in_cluster_mode(tmp_path):
    process, port = start_redis_server(tmp_path)
    try:
        seed = {"host": "127.0.0.1", "port": port, "cluster": True}
        alone = write_inventory(tmp_path, {"cache": {"hosts": {"plain": seed}}})
        run = redisops("-i", alone, "inventory", "list")
        assert run.exit_code == 2
        assert (
            f"error: 127.0.0.1:{port} is not in cluster mode (cluster support disabled), "
            "but the inventory says `cluster: true` for plain"
        ) in run.stderr
        other = {"host": "127.0.0.1", "port": port}
        groups = {"cache": {"hosts": {"plain": seed}}, "more": {"hosts": {"other": other}}}
        mixed = redisops("-i", write_inventory(tmp_path, groups), "-o", "json", "inventory",
                         "check")  # fmt: skip
        assert mixed.exit_code == 1
        rows = {r["host"]: r for r in mixed.json()["results"]}
        assert rows["plain"]["ok"] is False and "not in cluster mode" in rows["plain"]["error"]
        assert rows["other"]["ok"] is True
    finally:
        process.kill()
        process.wait()


def test_no_seed_reachable_makes_every_seed_an_error_row(tmp_path):
    ports = [free_port(), free_port()]
    hosts = {f"seed-{i}": {"host": "127.0.0.1", "port": p} for i, p in enumerate(ports, 1)}
    groups = {"cache": {"vars": {"cluster": True}, "hosts": hosts}}
    run = redisops("-i", write_inventory(tmp_path, groups), "-o", "json", "inventory", "list")
    assert run.exit_code == 1
    rows = run.json()["results"]
    assert [(r["host"], r["ok"]) for r in rows] == [("seed-1", False), ("seed-2", False)]
    for row, port in zip(rows, ports, strict=True):
        assert row["error"] == (
            f"cannot connect to 127.0.0.1:{port}: Connection refused "
            "(no seed of cluster 'cache' answered)"
        )


def test_a_seed_from_another_cluster_is_an_error_row(cluster, tmp_path):
    other = start_cluster_lab(tmp_path / "other", replicas=0)
    try:
        ours = [p.port for p in cluster.processes]
        theirs = other.processes[0].port
        # Both labs' secrets differ: the stranger's entry names its own password file.
        hosts = {
            "seed-a": {"host": "127.0.0.1", "port": ours[0]},
            "seed-b": {"host": "127.0.0.1", "port": ours[1]},
            "stranger": {"host": "127.0.0.1", "port": theirs,
                         "password_file": str(Path(other.dir) / "secret")},
        }  # fmt: skip
        groups = {"cache": {"vars": {"cluster": True}, "hosts": hosts}}
        inventory = write_inventory(tmp_path, groups, str(Path(cluster.dir) / "secret"))
        run = redisops("-i", inventory, "-o", "json", "inventory", "list")
        assert run.exit_code == 1
        rows = run.json()["results"]
        assert [r["host"] for r in rows][:2] == ["seed-a", f"cache@127.0.0.1:{ours[3]}"]
        assert len(rows) == 7
        stranger = rows[-1]
        assert (stranger["host"], stranger["ok"]) == ("stranger", False)
        assert stranger["error"].startswith("seed of cluster 'cache' but in another cluster")
        assert "is not among the 6 nodes seed-a knows" in stranger["error"]
    finally:
        lab_down(Path(other.dir), purge=True)


def test_a_redis_62_cluster_is_discovered_through_cluster_nodes(tmp_path):
    from tests.test_server_matrix import redis62_binary

    state = start_cluster_lab(tmp_path / "r62", server=str(redis62_binary()), seed_keys=30)
    try:
        ports = [p.port for p in state.processes]
        inventory = one_seed(tmp_path, state, ports[0])
        run = redisops("-i", inventory, "-o", "json", "inventory", "list")
        assert run.exit_code == 0, run.stderr
        nodes = [r["data"]["cluster"] for r in run.json()["results"]]
        ids = node_ids(state)
        assert [(n["shard"], n["role"], n["node_id"]) for n in nodes] == [
            (f"shard-{s}", role, ids[ports[s - 1] if role == "master" else ports[s + 2]])
            for s in (1, 2, 3)
            for role in ("master", "replica")
        ]
        # No CLUSTER SHARDS before 7.0: the shard id is the master's node id.
        assert [n["shard_id"] for n in nodes[::2]] == [ids[p] for p in ports[:3]]
        status = redisops("-i", inventory, "-o", "json", "cluster", "status")
        assert status.exit_code == 0, status.stderr
        (summary,) = status.json()["summary"]["clusters"]
        assert (summary["slots_covered"], sum(s["keys"] for s in summary["shards"])) == (16384, 30)
    finally:
        lab_down(Path(state.dir), purge=True)


def test_cluster_nodes_lines_are_parsed_with_open_slots_hostnames_and_ipv6():
    from redisops.fleet.cluster import parse_nodes

    text = (
        "aaaa 10.0.0.1:7000@17000,cache-a.example myself,master - 0 0 3 connected "
        "0-99 200 [93->-bbbb] [94-<-cccc]\n"
        "bbbb ::1:7001@17001 slave,fail aaaa 1 2 3 disconnected\n"
        "cccc :0@0 master,noaddr - 0 0 4 disconnected\n"
    )
    mine, replica, lost = parse_nodes(text)
    assert (mine.host, mine.port, mine.config_epoch, mine.role) == ("10.0.0.1", 7000, 3, "master")
    assert mine.slots == ((0, 99), (200, 200))
    assert (mine.migrating, mine.importing) == ({93: "bbbb"}, {94: "cccc"})
    assert (replica.host, replica.port, replica.role, replica.master_id) == (
        "::1", 7001, "replica", "aaaa"
    )  # fmt: skip
    assert (replica.health, replica.link_state) == ("fail", "disconnected")
    assert (lost.host, lost.port, "noaddr" in lost.flags) == ("", 0, True)


def test_a_seed_written_by_name_is_the_node_the_cluster_announces_by_ip(cluster, tmp_path):
    ports = [p.port for p in cluster.processes]
    seed = {"host": "localhost", "port": ports[1], "cluster": True}
    groups = {"cache": {"hosts": {"seed": seed}}}
    inventory = write_inventory(tmp_path, groups, str(Path(cluster.dir) / "secret"))
    run = redisops("-i", inventory, "-o", "json", "inventory", "check")
    assert run.exit_code == 0, run.stderr
    rows = run.json()["results"]
    assert len(rows) == 6  # not a seventh row for the seed beside its node
    assert (rows[2]["host"], rows[2]["address"]) == ("seed", f"localhost:{ports[1]}")
    assert rows[2]["data"]["cluster"]["shard"] == "shard-2"


def test_an_entry_with_a_node_address_gives_that_node_its_name_and_host_access(cluster, tmp_path):
    ports = [p.port for p in cluster.processes]
    groups = {
        "cache": {"hosts": {"seed": {"host": "127.0.0.1", "port": ports[0], "cluster": True}}},
        "boxes": {"hosts": {"box-3": {"host": "127.0.0.1", "port": ports[2], "ssh_user": "ops",
                                      "connection": "ssh", "tags": ["rack-7"]}}},
    }  # fmt: skip
    inventory = write_inventory(tmp_path, groups, str(Path(cluster.dir) / "secret"))
    run = redisops("-i", inventory, "-o", "json", "inventory", "list")
    assert run.exit_code == 0, run.stderr
    rows = {r["host"]: r for r in run.json()["results"]}
    assert len(rows) == 6 and f"cache@127.0.0.1:{ports[2]}" not in rows
    box = rows["box-3"]["data"]
    assert (box["connection"], box["host_access"], box["tags"]) == ("ssh", True, ["rack-7"])
    assert box["groups"] == ["boxes", "cache"]  # its own, and the seed's
    assert (box["cluster"]["shard"], box["cluster"]["role"]) == ("shard-3", "master")
    # Nodes without an entry of their own inherit the seed's access.
    other = rows[f"cache@127.0.0.1:{ports[1]}"]["data"]
    assert (other["connection"], other["host_access"]) == ("local", True)
    # Its own group selects it alone.
    part = redisops("-i", inventory, "-l", "boxes", "-o", "json", "inventory", "list")
    assert [r["host"] for r in part.json()["results"]] == ["box-3"]
