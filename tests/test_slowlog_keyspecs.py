"""Key positions from the server itself (COMMAND INFO key specs), on real Valkey 9 and Redis 6.2.

The static table knows Redis 7.0's commands only; Valkey 9's hash-field commands (HEXPIRE,
HSETEX, …) must still get key patterns, and the positions read from key specs must find the
same keys as the server's own COMMAND GETKEYS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from redisops.lab import LabState, lab_down
from redisops.slowlog.fingerprint import STATIC_KEYS, fingerprint_args
from redisops.slowlog.keyspecs import find_keys, learn_key_positions
from tests.cli_helpers import redisops, redisops_process
from tests.plugins.lab import start_lab
from tests.servers import valkey_server_binary
from tests.test_server_matrix import redis62_binary


def lab_client(lab: LabState, name: str = "workload") -> redis.Redis:
    secret = (Path(lab.dir) / "secret").read_text().strip()
    return redis.Redis(port=lab.processes[0].port, password=secret, client_name=name, protocol=2)


@pytest.fixture(scope="module")
def valkey_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state = start_lab(
        tmp_path_factory.mktemp("keyspecs-valkey"),
        replicas=0,
        sentinels=0,
        server=str(valkey_server_binary()),
    )
    try:
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(scope="module")
def redis62_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state = start_lab(
        tmp_path_factory.mktemp("keyspecs-redis62"),
        replicas=0,
        sentinels=0,
        server=str(redis62_binary()),
    )
    try:
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


def triage_counts(lab: LabState) -> dict[str, int]:
    run = redisops("-i", lab.inventory_path, "-o", "json", "slowlog", "triage", "--top", "0")
    assert run.exit_code == 0, run.stderr
    return {f["fingerprint"]: f["count"] for f in run.json()["summary"]["fingerprints"]}


def test_valkey_hash_field_commands_get_key_patterns(valkey_lab):
    client = lab_client(valkey_lab)
    client.config_set("slowlog-log-slower-than", 0)
    try:
        client.slowlog_reset()
        for user in range(3):
            client.hset(f"user:{user}:sessions", mapping={"web": "1", "app": "2"})
            client.execute_command("HEXPIRE", f"user:{user}:sessions", 600, "FIELDS", 1, "web")
            client.execute_command("HTTL", f"user:{user}:sessions", "FIELDS", 1, "web")
            client.execute_command("HPERSIST", f"user:{user}:sessions", "FIELDS", 1, "web")
            client.execute_command(
                "HSETEX", f"user:{user}:tokens", "EX", 600, "FIELDS", 1, "t", "v"
            )
            client.execute_command("HGETEX", f"user:{user}:tokens", "PERSIST", "FIELDS", 1, "t")
    finally:
        client.config_set("slowlog-log-slower-than", 10000)
    counts = triage_counts(valkey_lab)
    hash_field = ("HSET ", "HEXPIRE", "HTTL", "HPERSIST", "HSETEX", "HGETEX")
    assert {name: n for name, n in counts.items() if name.startswith(hash_field)} == {
        "HSET user:{id}:sessions": 3,
        "HEXPIRE user:{id}:sessions": 3,
        "HTTL user:{id}:sessions": 3,
        "HPERSIST user:{id}:sessions": 3,
        "HSETEX user:{id}:tokens": 3,
        "HGETEX user:{id}:tokens": 3,
    }


def test_tail_fingerprints_with_the_servers_key_positions(valkey_lab):
    client = lab_client(valkey_lab)
    client.config_set("slowlog-log-slower-than", 0)
    try:
        client.slowlog_reset()
        for user in range(2):
            client.execute_command("HPEXPIRE", f"user:{user}:carts", 60000, "FIELDS", 1, "a")
    finally:
        client.config_set("slowlog-log-slower-than", 10000)
    run = redisops("-i", valkey_lab.inventory_path, "-o", "json", "slowlog", "tail", "-n", "50")
    assert run.exit_code == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["fingerprint"] for r in records if r["command"] == "HPEXPIRE"] == [
        "HPEXPIRE user:{id}:carts"
    ] * 2


def test_refused_command_info_falls_back_to_the_static_table_and_says_so(valkey_lab, tmp_path):
    """An ACL user without COMMAND INFO still gets 7.0 patterns, and a note on the host."""
    client = lab_client(valkey_lab)
    secret = (Path(valkey_lab.dir) / "secret").read_text().strip()
    client.acl_setuser(
        "triage-no-info", enabled=True, passwords=[f"+{secret}"], keys=["*"],
        commands=["+@all", "-command"],
    )  # fmt: skip
    client.config_set("slowlog-log-slower-than", 0)
    try:
        client.slowlog_reset()
        client.execute_command("HPERSIST", "user:7:sessions", "FIELDS", 1, "web")
        client.get("user:7:name")
    finally:
        client.config_set("slowlog-log-slower-than", 10000)
    data = yaml.safe_load(Path(valkey_lab.inventory_path).read_text())
    data["all"]["children"]["redis"]["hosts"]["node-1"]["username"] = "triage-no-info"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    # A fresh process: the table this test process learnt from the default user is not shared.
    run = redisops_process("-i", str(inventory), "-o", "json", "slowlog", "triage", "--top", "0")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    counts = {f["fingerprint"]: f["count"] for f in document["summary"]["fingerprints"]}
    assert counts["GET user:{id}:name"] == 1
    assert counts["HPERSIST"] == 1
    notes = document["results"][0]["data"]["notes"]
    assert any(note.startswith("COMMAND INFO refused (") for note in notes), notes


# Commands whose keys the server places by key specs alone (no getkeys callback of its own).
GETKEYS_CASES = [
    ("GET", "user:1"),
    ("HEXPIRE", "user:1:sessions", "60", "FIELDS", "1", "web"),
    ("HSETEX", "user:1:tokens", "EX", "60", "FIELDS", "1", "t", "v"),
    ("LMOVE", "queue:1", "queue:2", "LEFT", "RIGHT"),
    ("MSET", "a:1", "x", "a:2", "y"),
    ("ZUNIONSTORE", "out:1", "2", "in:1", "in:2", "WEIGHTS", "1", "2"),
    ("XREAD", "COUNT", "1", "STREAMS", "ev:1", "ev:2", "0", "0"),
    ("EVAL", "return 1", "2", "rate:1", "rate:2", "arg"),
    ("MIGRATE", "127.0.0.1", "1", "", "0", "5000", "KEYS", "k:1", "k:2"),
    ("OBJECT", "ENCODING", "cart:1"),
    ("BLPOP", "q:1", "q:2", "0"),
    ("GEORADIUS", "geo:1", "0", "0", "1", "km", "STORE", "geo:2"),
]


def test_key_specs_find_what_command_getkeys_finds(valkey_lab):
    client = lab_client(valkey_lab)
    info = client.info()
    table, error = learn_key_positions(client, info, [c[0].encode() for c in GETKEYS_CASES])
    assert error is None
    for case in GETKEYS_CASES:
        args = tuple(arg.encode() for arg in case)
        expected = [k.encode() for k in client.execute_command("COMMAND GETKEYS", *args)]
        keys_of = table.keys_of(case[0] if case[0] != "OBJECT" else "OBJECT|ENCODING")
        assert keys_of is not None, case
        found = find_keys(keys_of, args)
        # MIGRATE's empty key slot (keys follow KEYS) is a key spec position, not a key.
        assert sorted(k for k in found if k) == sorted(expected), case


def test_redis62_positions_come_from_first_last_step(redis62_lab):
    client = lab_client(redis62_lab)
    info = client.info()
    names = [b"GET", b"OBJECT", b"ZUNIONSTORE", b"CONFIG"]
    table, error = learn_key_positions(client, info, names)
    assert error is None
    assert table.keys_of("GET") == (1, 1, 1)
    assert table.keys_of("OBJECT") == (2, 2, 1)  # not a container on 6.2
    assert table.keys_of("CONFIG") is None
    shapes = [
        fingerprint_args((b"OBJECT", b"ENCODING", b"cart:7"), table).fingerprint,
        fingerprint_args((b"ZUNIONSTORE", b"out:1", b"2", b"in:1", b"in:2"), table).fingerprint,
        fingerprint_args((b"CONFIG", b"GET", b"maxmemory"), table).fingerprint,
    ]
    assert shapes == ["OBJECT ENCODING cart:{id}", "ZUNIONSTORE out:{id} in:{id}", "CONFIG GET"]


def test_the_static_table_agrees_with_redis_70s_own_key_specs(lab, lab_password):
    """The offline fallback is Redis 7.0's table: on the real 7.0 server, the positions it
    learns find the same keys as the static ones for every command the static table lists."""
    client = redis.Redis(port=lab.processes[0].port, password=lab_password, protocol=2)
    static = {name: spec for name, spec in STATIC_KEYS.positions.items() if isinstance(spec, tuple)}
    containers = {name.split("|")[0] for name in static if "|" in name}
    names = {name.encode() for name in static if "|" not in name} | {c.encode() for c in containers}
    table, error = learn_key_positions(client, client.info(), names)
    assert error is None
    args = (b"cmd", *(f"k{i}".encode() for i in range(1, 9)))
    for name, spec in sorted(static.items()):
        learnt = table.positions.get(name)
        assert learnt is not None, name
        found = find_keys(learnt, args)
        assert list(found) == list(find_keys(spec, args)), name
