"""Hash-field TTLs and encodings as the server names them, in `memory summary` and `memory
report`, against a real Valkey 9 (HEXPIRE, HSETEX) and Debian's Redis 7.0 (no field TTLs)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisops.lab import LabState, lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_lab
from tests.servers import valkey_server_binary

VOLATILE = 6  # 4 hashes with HEXPIRE on a field, 2 written by HSETEX


@pytest.fixture(scope="module")
def valkey_fields(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state = start_lab(
        tmp_path_factory.mktemp("field-ttls"),
        replicas=0,
        sentinels=0,
        server=str(valkey_server_binary()),
    )
    secret = (Path(state.dir) / "secret").read_text().strip()
    client = redis.Redis(port=state.processes[0].port, password=secret, protocol=2)
    try:
        for user in range(4):
            client.hset(f"user:{user}:sessions", mapping={"web": "1", "app": "2"})
            client.execute_command("HEXPIRE", f"user:{user}:sessions", 3600, "FIELDS", 1, "web")
        for user in range(2):
            client.execute_command(
                "HSETEX", f"user:{user}:tokens", "EX", 600, "FIELDS", 1, "t", "v"
            )
        client.hset("user:9:sessions", mapping={"web": "1"})
        client.execute_command("HEXPIRE", "user:9:sessions", 3600, "FIELDS", 1, "web")
        client.execute_command("HPERSIST", "user:9:sessions", "FIELDS", 1, "web")  # not volatile
        for cart in range(3):
            client.hset(f"cart:{cart}", mapping={"sku": "1"})
            client.rpush(f"feed:{cart}", "a", "b")
        client.set("token:1", "x", ex=600)
        yield state
    finally:
        client.close()
        lab_down(Path(state.dir), purge=True)


def live(lab: LabState) -> redis.Redis:
    secret = (Path(lab.dir) / "secret").read_text().strip()
    return redis.Redis(port=lab.processes[0].port, password=secret, protocol=2)


def node_data(lab: LabState, *args: str) -> dict:
    run = redisops("-i", lab.inventory_path, "-l", "node-1", "-o", "json", *args)
    assert run.exit_code == 0, run.stderr
    return run.json()["results"][0]["data"]


def test_summary_counts_hashes_whose_fields_expire(valkey_fields):
    assert live(valkey_fields).info("keyspace")["db0"]["keys_with_volatile_items"] == VOLATILE
    data = node_data(valkey_fields, "memory", "summary")
    assert data["volatile_hashes"] == VOLATILE
    assert [(db["db"], db["keys"], db["volatile_hashes"]) for db in data["keyspace"]] == [
        (0, 14, VOLATILE)
    ]
    run = redisops("-i", valkey_fields.inventory_path, "-l", "node-1", "memory", "summary")
    assert run.exit_code == 0, run.stderr
    assert f"node-1 {VOLATILE} hashes with fields that expire" in run.stdout


def test_report_shows_volatile_hashes_and_the_servers_encodings(valkey_fields):
    client = live(valkey_fields)
    expected = Counter(
        f"{client.type(key).decode()}/{client.object('encoding', key).decode()}"
        for key in client.scan_iter(count=100)
    )
    data = node_data(valkey_fields, "memory", "report", "--encodings", "--samples", "0")
    assert data["volatile_hashes"] == VOLATILE
    assert {name: totals["keys"] for name, totals in data["encodings"].items()} == dict(expected)
    assert expected["list/listpack"] == 3  # Valkey (like Redis 7.2+) packs small lists
    assert expected["hash/hashtable"] == VOLATILE + 1  # a field TTL, even a removed one
    # Field TTLs do not give the key a TTL: the hashes stay in the key-TTL bucket `none`.
    assert data["ttl"]["none"]["keys"] == 13
    run = redisops("-i", valkey_fields.inventory_path, "-l", "node-1", "memory", "report")
    assert run.exit_code == 0, run.stderr
    row = next(line for line in run.stdout.splitlines() if "hash fields expire" in line)
    assert row.split()[3] == str(VOLATILE), row


def test_a_server_without_field_ttls_reports_none(lab):
    summary = node_data(lab, "memory", "summary")
    assert summary["volatile_hashes"] is None
    assert all(db["volatile_hashes"] is None for db in summary["keyspace"])
    report = node_data(lab, "memory", "report", "--max-keys", "50")
    assert report["volatile_hashes"] is None


def test_redis_74_keyspace_lines_count_subexpiry():
    """Redis 7.4's INFO keyspace (`subexpiry=`), as the server prints it; no 7.4 binary runs on
    this machine (Redis Stack's wheel needs libssl 1.1), so its lines are checked as text."""
    from redisops.memory.summary import count_volatile_hashes, parse_doctor, summary_from_info
    from redisops.serverinfo import keyspace, parse_info

    server = {"redis_version": "7.4.1", "redis_mode": "standalone"}
    reply = (
        b"# Keyspace\r\ndb0:keys=5,expires=1,avg_ttl=0,subexpiry=2\r\n"
        b"db3:keys=1,expires=0,avg_ttl=0,subexpiry=1\r\n"
    )
    dbs = keyspace(parse_info(reply))
    assert list(dbs) == [0, 3]
    assert count_volatile_hashes(server, dbs.values()) == 3
    assert count_volatile_hashes(server, []) == 0  # has field TTLs, holds none
    older = keyspace({"db0": "keys=5,expires=1,avg_ttl=0"})
    assert count_volatile_hashes({"redis_version": "7.2.4"}, older.values()) is None
    info = {**server, "db0": {"keys": 5, "expires": 1, "avg_ttl": 0, "subexpiry": 2}}
    summary = summary_from_info(info, policy=None, doctor=parse_doctor(""))
    assert summary.volatile_hashes == 2
    assert summary.keyspace[0].volatile_hashes == 2
