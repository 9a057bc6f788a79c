"""`memory summary` against real redis-server processes: figures, flags, urgency, exit codes.

A module-scoped fleet of single-node labs is driven into real states: one refusing writes at
maxmemory (noeviction), one evicting, one with an eviction policy and no limit, and a calm one.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis
import yaml

from redisops.fleet.connection import build_client
from redisops.lab import LabState, lab_down
from redisops.memory.summary import (
    FRAGMENTATION_MIN_USED,
    GIB,
    MIB,
    DbKeys,
    DoctorVerdict,
    ForkCost,
    MemorySummary,
    Severity,
    parse_doctor,
    with_flags,
)
from tests.cli_helpers import redisops
from tests.plugins.lab import start_lab

DATA_KEYS = {
    "role", "used_memory", "used_memory_peak", "used_memory_rss", "mem_fragmentation_ratio",
    "maxmemory", "used_percent", "maxmemory_policy", "total_system_memory", "evicted_keys",
    "expired_keys", "keyspace_hits", "keyspace_misses", "hit_ratio", "keys", "expires",
    "keyspace", "fork", "doctor", "flags", "severity", "volatile_hashes",
}  # fmt: skip
FORK_KEYS = {
    "latest_fork_usec", "total_forks", "rdb_last_cow_size", "aof_last_cow_size",
    "current_cow_size", "save_in_progress",
}  # fmt: skip
VALUE = b"v" * 1024
FILL_BATCHES = 200  # of 100 keys of 1 KiB: at most ~20 MiB per fill, far more than needed


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lab_client(state: LabState, db: int = 0) -> redis.Redis:
    password = (Path(state.dir) / "secret").read_text().strip()
    return build_client("127.0.0.1", state.processes[0].port, password=password, db=db, timeout=5)


def fill(client: redis.Redis, prefix: str, done: Callable[[], bool]) -> None:
    """Write 1 KiB strings, 100 per round trip, until `done()`; fails if it never is."""
    for batch in range(FILL_BATCHES):
        pipe = client.pipeline(transaction=False)
        for i in range(100):
            pipe.set(f"{prefix}:{batch}:{i}", VALUE)
        pipe.execute(raise_on_error=False)
        if done():
            return
    raise AssertionError(f"{prefix}: condition not reached after {FILL_BATCHES * 100} writes")


def limit_to_current_use(client: redis.Redis, policy: str) -> None:
    """maxmemory 4 MiB above what the server uses now, so a few thousand writes reach it."""
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory-policy", policy)
    client.config_set("maxmemory", used + 4 * MIB)


@dataclass(frozen=True)
class Fleet:
    inventory: str
    labs: dict[str, LabState]
    dead_port: int

    def client(self, name: str, db: int = 0) -> redis.Redis:
        return lab_client(self.labs[name], db)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Four one-node labs in known states, and a dead host, in one inventory (order matters)."""
    names = ("calm", "nolimit", "evicting", "full")
    labs: dict[str, LabState] = {}
    try:
        for name in names:
            labs[name] = start_lab(tmp_path_factory.mktemp(name), replicas=0, sentinels=0)
        calm, calm_db2 = lab_client(labs["calm"]), lab_client(labs["calm"], db=2)
        calm.config_set("maxmemory", 1024 * MIB)
        calm.set("a", "1")
        calm.mset({f"calm:{i}": i for i in range(10)})
        calm_db2.set("b", "2", ex=3600)
        for key in ("a", "a", "a", "missing"):
            calm.get(key)  # 3 hits, 1 miss
        calm.bgsave()
        deadline = time.monotonic() + 10
        while calm.info("persistence")["rdb_bgsave_in_progress"] and time.monotonic() < deadline:
            time.sleep(0.02)

        lab_client(labs["nolimit"]).config_set("maxmemory-policy", "allkeys-lru")

        evicting = lab_client(labs["evicting"])
        limit_to_current_use(evicting, "allkeys-lru")
        fill(evicting, "evict", lambda: evicting.info("stats")["evicted_keys"] > 0)
        # Then ~94% used: evictions stop, so the figures hold still while the tests read them.
        evicting.config_set("maxmemory", evicting.info("memory")["used_memory"] * 100 // 94)

        full = lab_client(labs["full"])
        limit_to_current_use(full, "noeviction")

        def refused() -> bool:
            try:
                full.set("probe", VALUE)
            except redis.exceptions.OutOfMemoryError:
                return True
            return False

        fill(full, "full", refused)

        dead_port = closed_port()
        hosts = {}
        for name in ("calm", "nolimit", "evicting"):
            hosts[name] = _host_entry(labs[name])
        hosts["dead"] = {"host": "127.0.0.1", "port": dead_port, "connection": "local"}
        hosts["full"] = _host_entry(labs["full"])
        inventory = tmp_path_factory.mktemp("fleet") / "inventory.yaml"
        inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}, sort_keys=False))
        yield Fleet(str(inventory), labs, dead_port)
    finally:
        for state in labs.values():
            lab_down(Path(state.dir), purge=True)


def _host_entry(state: LabState) -> dict:
    return {
        "host": "127.0.0.1",
        "port": state.processes[0].port,
        "connection": "local",
        "password_file": str(Path(state.dir) / "secret"),
    }


def summary_json(inventory: str, *args: str) -> tuple[int, dict]:
    run = redisops("-i", inventory, "-o", "json", "memory", "summary", *args)
    return run.exit_code, run.json()


def test_json_envelope_figures_equal_what_the_servers_report(fleet):
    code, document = summary_json(fleet.inventory)
    assert code == 1  # the dead host
    assert document["command"] == "memory summary"
    assert document["ok"] is False
    assert document["summary"] == {
        "hosts": 5,
        "ok": 4,
        "failed": 1,
        "flagged": {"critical": 1, "warning": 2},
        "sentinels_skipped": [],
    }
    results = {r["host"]: r for r in document["results"]}
    assert list(results) == ["calm", "nolimit", "evicting", "dead", "full"]  # inventory order
    assert results["dead"] == {
        "host": "dead",
        "address": f"127.0.0.1:{fleet.dead_port}",
        "ok": False,
        "error": f"cannot connect to 127.0.0.1:{fleet.dead_port}: Connection refused",
        "data": None,
    }
    for name in ("calm", "nolimit", "evicting", "full"):
        data = results[name]["data"]
        assert set(data) == DATA_KEYS
        assert set(data["fork"]) == FORK_KEYS
        client = fleet.client(name)
        info = client.info()
        assert data["role"] == "master"
        assert data["keys"] == sum(db["keys"] for db in data["keyspace"])
        for db in data["keyspace"]:
            assert db["keys"] == fleet.client(name, db["db"]).dbsize()
        assert data["maxmemory"] == int(client.config_get("maxmemory")["maxmemory"])
        assert data["maxmemory_policy"] == client.config_get("maxmemory-policy")["maxmemory-policy"]
        assert data["evicted_keys"] == info["evicted_keys"]
        if data["maxmemory"]:
            assert data["used_percent"] == round(data["used_memory"] * 100 / data["maxmemory"], 1)

    calm = results["calm"]["data"]
    info = fleet.client("calm").info()
    db0, db2 = calm["keyspace"]
    assert db0 == {"db": 0, "keys": 11, "expires": 0, "avg_ttl_ms": 0, "volatile_hashes": None}
    assert (db2["db"], db2["keys"], db2["expires"]) == (2, 1, 1)
    assert 3_500_000 < db2["avg_ttl_ms"] <= 3_600_000
    assert calm["keys"] == 12 and calm["expires"] == 1
    assert (calm["keyspace_hits"], calm["keyspace_misses"], calm["hit_ratio"]) == (3, 1, 0.75)
    assert calm["fork"]["total_forks"] >= 1
    assert calm["fork"]["latest_fork_usec"] == info["latest_fork_usec"] > 0
    assert calm["fork"]["rdb_last_cow_size"] == info["rdb_last_cow_size"]
    assert calm["used_percent"] < 1
    assert calm["doctor"]["status"] == "empty"  # under 5 MiB, Redis will not judge
    assert "very little memory" in calm["doctor"]["text"]
    assert results["nolimit"]["data"]["used_percent"] is None


def test_flags_have_exact_ids_severities_and_real_numbers(fleet):
    _, document = summary_json(fleet.inventory)
    data = {r["host"]: r["data"] for r in document["results"] if r["ok"]}

    def flags(name: str) -> list[tuple[str, str]]:
        return [(flag["id"], flag["severity"]) for flag in data[name]["flags"]]

    assert flags("calm") == [] and data["calm"]["severity"] is None
    assert flags("nolimit") == [("no-maxmemory", "warning")]
    assert flags("evicting") == [("memory-high", "warning"), ("evictions", "warning")]
    assert flags("full") == [("memory-full", "critical")]
    assert data["full"]["severity"] == "critical"
    assert data["full"]["used_percent"] > 90
    assert data["evicting"]["used_percent"] > 90
    assert data["evicting"]["evicted_keys"] > 0
    evictions = data["evicting"]["flags"][1]["why"]
    assert evictions.startswith(f"{data['evicting']['evicted_keys']} keys evicted since")
    full_why = data["full"]["flags"][0]["why"]
    assert full_why.startswith(f"used {data['full']['used_percent']:.1f}% of maxmemory")
    assert "noeviction never evicts" in full_why


def test_table_is_sorted_by_urgency_with_plain_bars_and_reasons(fleet):
    run = redisops("-i", fleet.inventory, "memory", "summary")
    assert run.exit_code == 1
    lines = run.stdout.splitlines()
    assert lines[0].split()[:4] == ["host", "role", "used", "peak"]
    rows = {line.split()[0]: line for line in lines[1:6]}
    # error first, then critical, then warnings by % used (no limit last), then the calm host
    assert list(rows) == ["dead", "full", "evicting", "nolimit", "calm"]
    assert rows["dead"].split()[1:] == ["-"] * 13 + ["error"]
    assert "[##########]" in rows["evicting"]
    assert "warning: memory-high, evictions" in rows["evicting"]
    assert "critical: memory-full" in rows["full"]
    assert re.search(r" \[\.{10}\]   0\.\d% ", rows["calm"])  # 1 MiB of 1 GiB
    assert " no limit " in rows["nolimit"]
    notes = [line.rstrip() for line in lines[6:] if line.strip()]
    assert (
        notes[0] == f"dead error: cannot connect to 127.0.0.1:{fleet.dead_port}: Connection refused"
    )
    assert [note.split()[:3] for note in notes[1:]] == [
        ["full", "critical", "memory-full:"],
        ["evicting", "warning", "memory-high:"],
        ["evicting", "warning", "evictions:"],
        ["nolimit", "warning", "no-maxmemory:"],
    ]
    assert "\x1b[" not in run.stdout
    assert run.stderr.strip() == "4 of 5 hosts ok, 1 failed"


def test_rich_bar_on_a_terminal(fleet, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich then treats stdout as a terminal
    run = redisops("-i", fleet.inventory, "-l", "evicting", "memory", "summary")
    assert run.exit_code == 0
    assert "━" in run.stdout and "[#" not in run.stdout
    assert "\x1b[" in run.stdout


@pytest.mark.parametrize(
    ("limit", "fail_on", "expected"),
    [
        ("calm,nolimit,evicting,full", None, 0),  # flags alone never change the exit code
        ("calm,nolimit,evicting,full", "critical", 1),
        ("calm,nolimit,evicting", "critical", 0),
        ("calm,nolimit", "warning", 1),
        ("calm", "warning", 0),
        ("calm,dead", "critical", 1),  # a failed host is 1 whatever --fail-on says
    ],
)
def test_fail_on(fleet, limit, fail_on, expected):
    args = ["--fail-on", fail_on] if fail_on else []
    run = redisops("-i", fleet.inventory, "-l", limit, "-o", "json", "memory", "summary", *args)
    assert run.exit_code == expected, run.stderr
    if fail_on and expected and "dead" not in limit:
        assert f"--fail-on {fail_on}: " in run.stderr
        assert run.json()["ok"] is True  # every host answered; the finding is what fails


def test_fail_on_rejects_unknown_severities(fleet):
    run = redisops("-i", fleet.inventory, "memory", "summary", "--fail-on", "info")
    assert run.exit_code == 2
    assert "--fail-on" in run.stderr


def test_sentinels_are_skipped_and_redis_hosts_match_dbsize(lab, lab_password):
    code, document = summary_json(lab.inventory_path)
    assert code == 0
    assert [r["host"] for r in document["results"]] == ["node-1", "node-2", "node-3"]
    assert document["summary"]["sentinels_skipped"] == ["sentinel-1", "sentinel-2", "sentinel-3"]
    roles = [r["data"]["role"] for r in document["results"]]
    assert roles == ["master", "replica", "replica"]
    for result in document["results"]:
        port = int(result["address"].rsplit(":", 1)[1])
        client = build_client("127.0.0.1", port, password=lab_password, timeout=5)
        assert result["data"]["keys"] == client.dbsize() > 0
    run = redisops("-i", lab.inventory_path, "memory", "summary")
    assert "3 Sentinel hosts skipped (no data set): sentinel-1, sentinel-2, sentinel-3" in (
        run.stderr
    )


def test_only_sentinels_selected_is_a_usage_error(lab):
    run = redisops("-i", lab.inventory_path, "-l", "sentinels", "memory", "summary")
    assert run.exit_code == 2
    assert "error: no Redis host selected: Sentinels have no data set (3 selected)" in run.stderr


def test_a_sentinel_listed_as_redis_is_an_error_row(lab, tmp_path):
    sentinel = next(p for p in lab.processes if p.role == "sentinel")
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    data["all"]["children"]["extra"] = {
        "hosts": {"mislabelled": {"host": "127.0.0.1", "port": sentinel.port}}
    }
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    code, document = summary_json(str(inventory))
    assert code == 1
    row = next(r for r in document["results"] if r["host"] == "mislabelled")
    assert row["error"] == (
        f"127.0.0.1:{sentinel.port} is a Sentinel, not a Redis server "
        "(hint: set `role: sentinel` for mislabelled in the inventory)"
    )


def test_fragmentation_and_doctor_on_a_big_instance(make_lab):
    state = make_lab()
    client = lab_client(state)
    client.execute_command("DEBUG", "POPULATE", 1_000_000, "key", 100)
    # INFO's ratio is RSS / used as sampled every 100 ms: wait for a sample after the load.
    deadline = time.monotonic() + 5
    while client.info("memory")["mem_fragmentation_ratio"] >= 1.5:
        assert time.monotonic() < deadline, "no fresh memory sample"
        time.sleep(0.05)
    run = redisops("-i", state.inventory_path, "-o", "json", "memory", "summary")
    data = run.json()["results"][0]["data"]
    assert data["used_memory"] > FRAGMENTATION_MIN_USED
    assert data["mem_fragmentation_ratio"] < 1.5
    assert data["flags"] == []
    assert data["doctor"]["status"] == "ok"

    # Freeing every other small key leaves half-used pages: RSS stays, used memory halves.
    client.eval("for i = 0, 999999, 2 do redis.call('DEL', 'key:' .. i) end", 0)
    deadline = time.monotonic() + 5
    while client.info("memory")["mem_fragmentation_ratio"] <= 1.5:  # sampled every 100 ms
        assert time.monotonic() < deadline, "fragmentation did not show"
        time.sleep(0.05)
    run = redisops("-i", state.inventory_path, "-o", "json", "memory", "summary")
    assert run.exit_code == 0
    data = run.json()["results"][0]["data"]
    assert data["used_memory"] > FRAGMENTATION_MIN_USED
    assert data["keys"] == client.dbsize() == 500_000
    assert [(f["id"], f["severity"]) for f in data["flags"]] == [("fragmentation-high", "warning")]
    assert data["doctor"]["status"] == "issues"
    assert "Peak memory" in data["doctor"]["issues"]
    assert data["doctor"]["summary"] == ", ".join(data["doctor"]["issues"])
    table = redisops("-i", state.inventory_path, "memory", "summary").stdout
    assert f" {len(data['doctor']['issues'])} issues " in table.splitlines()[1]
    assert f"node-1 doctor: {data['doctor']['summary']}" in table


# --- the rules alone, on plain dataclasses ----------------------------------------------------

BASE = MemorySummary(
    role="master",
    used_memory=100 * MIB,
    used_memory_peak=100 * MIB,
    used_memory_rss=110 * MIB,
    mem_fragmentation_ratio=1.1,
    maxmemory=0,
    used_percent=None,
    maxmemory_policy="noeviction",
    total_system_memory=None,
    evicted_keys=0,
    expired_keys=0,
    keyspace_hits=0,
    keyspace_misses=0,
    hit_ratio=None,
    keys=10,
    expires=0,
    keyspace=(DbKeys(0, 10, 0, 0),),
    fork=ForkCost(0, 0, 0, 0, 0, False),
    doctor=DoctorVerdict("ok", "no issues", (), ""),
)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"maxmemory": 1, "used_percent": 90.0}, []),  # "more than 90%"
        ({"maxmemory": 1, "used_percent": 90.1}, [("memory-full", "critical")]),
        (
            {"maxmemory": 1, "used_percent": 95.0, "maxmemory_policy": "volatile-lru"},
            [("memory-full", "critical")],  # no key has a TTL: nothing to evict
        ),
        (
            {
                "maxmemory": 1,
                "used_percent": 95.0,
                "maxmemory_policy": "volatile-lru",
                "expires": 3,
            },
            [("memory-high", "warning")],
        ),
        ({"maxmemory_policy": "allkeys-lfu"}, [("no-maxmemory", "warning")]),
        ({"maxmemory_policy": None}, []),  # unknown policy: no guess
        ({"mem_fragmentation_ratio": 1.51}, [("fragmentation-high", "warning")]),
        ({"mem_fragmentation_ratio": 0.9}, [("fragmentation-low", "warning")]),
        ({"mem_fragmentation_ratio": 7.5, "used_memory": FRAGMENTATION_MIN_USED - 1}, []),
        ({"used_memory": 20 * GIB, "used_memory_rss": 21 * GIB - 1}, []),
        ({"used_memory": 20 * GIB, "used_memory_rss": 21 * GIB}, [("rss-excess", "warning")]),
    ],
)
def test_rules(changes, expected):
    flagged = with_flags(replace(BASE, **changes))
    assert [(flag.id, flag.severity.value) for flag in flagged.flags] == expected
    assert flagged.severity == (Severity(expected[0][1]) if expected else None)


def test_flags_come_most_severe_first():
    flagged = with_flags(
        replace(BASE, maxmemory=1, used_percent=99.0, evicted_keys=5, mem_fragmentation_ratio=2.0)
    )
    assert [flag.id for flag in flagged.flags] == ["memory-full", "evictions", "fragmentation-high"]


def test_an_unknown_doctor_reply_keeps_its_first_line():
    verdict = parse_doctor("\n  Something new from a future Redis.\nMore detail.\n")
    assert verdict == DoctorVerdict(
        "unknown",
        "Something new from a future Redis.",
        (),
        "Something new from a future Redis.\nMore detail.",
    )
