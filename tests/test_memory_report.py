"""`memory report` against real servers with known data: exact counts, bytes and patterns."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from redisops.fleet.inventory import load_inventory
from redisops.keypatterns import key_pattern
from redisops.memory.report import (
    ReportOptions,
    ScanPlan,
    plan_scans,
    read_replication,
    report_fleet,
    report_host,
)


def hosts_of(state):
    return {h.name: h for h in load_inventory(state.inventory_path).hosts}


def client_for(state, port=None) -> redis.Redis:
    password = (Path(state.dir) / "secret").read_text().strip()
    port = port or state.processes[0].port
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=10)


def server_truth(c: redis.Redis) -> tuple[int, int, Counter]:
    """DBSIZE, the sum of MEMORY USAGE SAMPLES 0, and keys per pattern, read the plain way."""
    total, patterns = 0, Counter()
    for key in c.scan_iter(count=500):
        total += c.memory_usage(key, samples=0)
        patterns[key_pattern(key)] += 1
    return c.dbsize(), total, patterns


@pytest.fixture
def known_lab(make_lab):
    """A lone master holding a dataset of known composition."""
    state = make_lab(replicas=0, sentinels=0)
    c = client_for(state)
    pipe = c.pipeline(transaction=False)
    for i in range(30):
        pipe.hset(f"user:{1000 + i}:profile", mapping={"name": f"n{i}", "plan": "pro"})
    for i in range(20):
        pipe.set(f"session:{uuid.UUID(int=i)}", "x" * 50, ex=600)
    for i in range(10):
        pipe.rpush(f"queue:jobs:{i}", *[f"job-{j}" for j in range(5)])
    pipe.hset("big:hash", mapping={f"field-{j}": j for j in range(1000)})
    pipe.set(b"bin:\xff\x00:7", b"binary")
    pipe.execute()
    c.select(3)
    c.set("other:db:1", "v", ex=2 * 86400)
    yield state
    c.close()


def test_known_dataset_exact_counts_bytes_patterns_and_top_keys(known_lab):
    host = hosts_of(known_lab)["node-1"]
    report = report_host(ScanPlan(host, host), ReportOptions(samples=0, top=3), timeout=5)
    c = client_for(known_lab)
    dbsize, total, patterns = server_truth(c)
    c.select(3)
    db3_size, db3_total, db3_patterns = server_truth(c)

    assert report.dbsize == dbsize + db3_size == 63
    assert report.keys_scanned == report.keys == 63
    assert report.bytes == total + db3_total
    assert report.estimated is False
    got = {p.pattern: p.keys for p in report.patterns}
    assert got == dict(patterns + db3_patterns)
    assert got["user:{id}:profile"] == 30
    assert got["session:{uuid}"] == 20
    assert got["queue:jobs:{id}"] == 10
    assert got["bin:\\xff\\x00:{id}"] == 1
    assert sum(p.bytes for p in report.patterns) == report.bytes
    assert [p.bytes for p in report.patterns] == sorted(
        (p.bytes for p in report.patterns), reverse=True
    )
    sessions = next(p for p in report.patterns if p.pattern == "session:{uuid}")
    assert sessions.ttl_share == 1.0 and sessions.types == {"string": 20}
    assert {name: t.keys for name, t in report.types.items()} == {
        "hash": 31,
        "string": 22,
        "list": 10,
    }
    assert report.ttl["<1h"].keys == 20 and report.ttl["<7d"].keys == 1
    assert report.ttl["none"].keys == 42
    top = report.top_keys[0]
    assert (top.key, top.type, top.elements, top.db) == ("big:hash", "hash", 1000, 0)
    assert len(report.top_keys) == 3


def test_binary_key_names_round_trip_through_base64(known_lab):
    host = hosts_of(known_lab)["node-1"]
    report = report_host(ScanPlan(host, host), ReportOptions(top=100), timeout=5)
    binary = next(k for k in report.top_keys if k.key.startswith("bin:"))
    assert binary.key == "bin:\\xff\\x00:7"
    assert base64.b64decode(binary.key_base64) == b"bin:\xff\x00:7"
    assert binary.elements == len(b"binary")


def test_encodings_when_asked(known_lab):
    host = hosts_of(known_lab)["node-1"]
    report = report_host(ScanPlan(host, host), ReportOptions(encodings=True), timeout=5)
    assert report.encodings["hash/listpack"].keys == 30
    assert report.encodings["hash/hashtable"].keys == 1
    assert report.encodings["list/quicklist"].keys == 10


def test_never_keys_never_debug_object(known_lab):
    host = hosts_of(known_lab)["node-1"]
    c = client_for(known_lab)
    c.config_resetstat()
    report_host(ScanPlan(host, host), ReportOptions(), timeout=5)
    stats = c.info("commandstats")
    assert "cmdstat_scan" in stats and "cmdstat_memory|usage" in stats
    assert "cmdstat_keys" not in stats
    assert not any(name.startswith("cmdstat_debug") for name in stats)


def test_sampling_is_an_estimate_marked_as_such(make_lab):
    state = make_lab(replicas=0, sentinels=0, seed_keys=2000)
    host = hosts_of(state)["node-1"]
    report = report_host(ScanPlan(host, host), ReportOptions(sample=0.25), timeout=5)
    assert report.estimated is True and report.sample == 0.25
    assert 300 <= report.keys_scanned <= 700
    assert report.keys == round(report.keys_scanned / 0.25)
    assert 0.7 * 2000 <= report.keys <= 1.3 * 2000


def test_max_keys_stops_early_and_extrapolates(make_lab):
    state = make_lab(replicas=0, sentinels=0, seed_keys=2000)
    host = hosts_of(state)["node-1"]
    report = report_host(ScanPlan(host, host), ReportOptions(max_keys=200), timeout=5)
    assert report.estimated is True
    assert 200 <= report.keys_scanned < 600
    assert abs(report.keys - 2000) <= 2  # scaled to DBSIZE, rounding aside


def test_rate_throttles_the_scan(make_lab):
    state = make_lab(replicas=0, sentinels=0, seed_keys=300)
    host = hosts_of(state)["node-1"]
    started = time.monotonic()
    report = report_host(ScanPlan(host, host), ReportOptions(rate=200), timeout=5)
    assert report.keys_scanned == 300
    assert time.monotonic() - started >= 1.2  # 300 keys at 200 keys/s: at least ~1.5 s


def test_replica_is_preferred_and_replicas_are_not_scanned_twice(lab):
    hosts = hosts_of(lab)
    inventory = list(hosts.values())
    redis_hosts = [hosts[n] for n in ("node-1", "node-2", "node-3")]
    replication = {h.name: read_replication(h, timeout=5) for h in redis_hosts}

    plans, skipped = plan_scans([hosts["node-1"]], inventory, replication, on_master=False)
    assert [(p.target.name, p.source.name) for p in plans] in (
        [("node-1", "node-2")],
        [("node-1", "node-3")],
    )
    plans, _ = plan_scans([hosts["node-1"]], inventory, replication, on_master=True)
    assert [(p.target.name, p.source.name) for p in plans] == [("node-1", "node-1")]
    plans, skipped = plan_scans(redis_hosts, inventory, replication, on_master=False)
    assert [p.target.name for p in plans] == ["node-1"]
    assert plans[0].covers == ("node-2", "node-3")
    assert skipped == {
        "node-2": "replica of node-1, covered by its report",
        "node-3": "replica of node-1, covered by its report",
    }
    plans, _ = plan_scans([hosts["node-3"]], inventory, replication, on_master=False)
    assert [(p.target.name, p.source.name) for p in plans] == [("node-3", "node-3")]


def test_fleet_report_scans_on_a_replica_and_matches_its_dbsize(lab):
    hosts = hosts_of(lab)
    fleet = report_fleet(
        list(hosts.values()), list(hosts.values()), ReportOptions(samples=0), timeout=5, parallel=4
    )
    assert [r.host for r in fleet.results] == ["node-1"]
    assert fleet.skipped["sentinel-1"] == "sentinel: holds no keys"
    result = fleet.results[0]
    assert result.ok, result.error
    report = result.data
    assert report.scanned_host in ("node-2", "node-3") and report.scanned_role == "replica"
    port = next(p.port for p in lab.processes if p.name == report.scanned_host)
    dbsize, total, patterns = server_truth(client_for(lab, port))
    assert report.keys_scanned == dbsize == 200
    assert report.bytes == total
    assert {p.pattern: p.keys for p in report.patterns} == dict(patterns)


def test_a_host_killed_mid_scan_is_an_error_row_and_the_others_report(lab, make_lab):
    dying = make_lab(replicas=0, sentinels=0, seed_keys=3000)
    hosts = [replace(hosts_of(dying)["node-1"], name="dying"), hosts_of(lab)["node-1"]]
    victim = dying.processes[0].pid

    killer = threading.Timer(0.8, os.kill, (victim, signal.SIGKILL))
    killer.start()
    try:
        fleet = report_fleet(
            hosts, hosts, ReportOptions(rate=1000, on_master=True), timeout=5, parallel=2
        )
    finally:
        killer.cancel()
    dead, alive = fleet.results
    assert dead.ok is False
    assert dead.error.startswith(
        (f"connection to {dead.address} lost", f"{dead.address} closed the connection mid-scan")
    )
    assert alive.ok and alive.data.keys_scanned == 200
