"""What `snapshot show` puts in its tables, read from a loaded archive alone (no server).

Per host one `HostOverview` (memory, traffic, keys, clients, replication, slowlog and
latency counts, machine facts, what was not captured); across the fleet the slowlog's
fingerprints, the latency events and each Sentinel's view of its masters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redisops.fleet.fanout import HostResult
from redisops.slowlog.fingerprint import fingerprint_args
from redisops.snapshot.archive import FAILED, SKIPPED, HostSnapshot, Snapshot
from redisops.snapshot.capture import CLIENT_NAME


@dataclass(frozen=True)
class HostOverview:
    """One host as the archive holds it. Bytes for memory, None where it was not captured.

    `replication` reads `master, 2 replicas` (`, lag 5s` past 1 s) or `replica of
    10.0.0.1:6379` (`(link down)` when it is not up);
    `not_captured` maps each failed item to why, `skipped` each item left out on purpose.
    """

    role: str
    server: str | None
    used_memory: int | None
    maxmemory: int | None
    fragmentation: float | None
    ops_per_sec: int | None
    hit_ratio: float | None
    keys: int | None
    connected_clients: int | None
    replication: str | None
    slowlog_entries: int
    latency_events: int
    transparent_hugepage: str | None
    load: float | None
    oom_lines: int
    not_captured: Mapping[str, str]
    skipped: Mapping[str, str]


@dataclass(frozen=True)
class FingerprintRow:
    fingerprint: str
    calls: int
    total_us: int
    max_us: int
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class LatencyRow:
    host: str
    event: str
    at: int
    latest_ms: int
    max_ms: int


@dataclass(frozen=True)
class SentinelRow:
    sentinel: str
    master: str
    address: str
    flags: str
    quorum: str
    replicas: int
    sentinels: int
    ckquorum: str


@dataclass(frozen=True)
class SnapshotOverview:
    hosts: list[HostResult[HostOverview]]
    fingerprints: list[FingerprintRow]
    latency: list[LatencyRow]
    sentinels: list[SentinelRow]


def overview(snapshot: Snapshot, *, top: int = 10) -> SnapshotOverview:
    """The overview of a loaded archive; `top` fingerprints by total time (0: all)."""
    hosts = []
    for host in snapshot.hosts:
        record = host.record
        hosts.append(HostResult(record.name, record.address, record.ok, record.error, _host(host)))
    return SnapshotOverview(
        hosts=hosts,
        fingerprints=fingerprint_rows(snapshot, top=top),
        latency=sorted(
            (
                LatencyRow(host.name, e.event, e.at, e.latest_ms, e.max_ms)
                for host in snapshot.hosts
                for e in host.latency_latest
            ),
            key=lambda row: row.at,
        ),
        sentinels=[
            SentinelRow(
                sentinel=host.name,
                master=m.name,
                address=m.address,
                flags=str(m.fields.get("flags", "")),
                quorum=str(m.fields.get("quorum", "")),
                replicas=len(m.replicas),
                sentinels=len(m.sentinels) + 1,
                ckquorum=m.ckquorum,
            )
            for host in snapshot.hosts
            for m in host.sentinel
        ],
    )


def fingerprint_rows(snapshot: Snapshot, *, top: int = 0) -> list[FingerprintRow]:
    """Every host's slowlog by fingerprint, costliest (total time) first; the entries of
    snapshots' own connections are left out."""
    groups: dict[str, dict[str, Any]] = {}
    for host in snapshot.hosts:
        for entry in host.slowlog:
            if entry.client_name == CLIENT_NAME:
                continue
            shape = fingerprint_args(entry.raw_args)
            group = groups.setdefault(
                shape.fingerprint, {"calls": 0, "total": 0, "max": 0, "hosts": []}
            )
            group["calls"] += 1
            group["total"] += entry.duration_us
            group["max"] = max(group["max"], entry.duration_us)
            if host.name not in group["hosts"]:
                group["hosts"].append(host.name)
    rows = [
        FingerprintRow(name, g["calls"], g["total"], g["max"], tuple(g["hosts"]))
        for name, g in groups.items()
    ]
    rows.sort(key=lambda row: (-row.total_us, row.fingerprint))
    return rows[:top] if top else rows


def _host(host: HostSnapshot) -> HostOverview:
    info = host.info
    hits, misses = _int(info.get("keyspace_hits")), _int(info.get("keyspace_misses"))
    lookups = (hits or 0) + (misses or 0)
    facts = host.host_facts
    keyspace = host.keyspace
    return HostOverview(
        role=_role(host),
        server=host.record.server,
        used_memory=_int(info.get("used_memory")),
        maxmemory=_int(info.get("maxmemory")),
        fragmentation=_float(info.get("mem_fragmentation_ratio")),
        ops_per_sec=_int(info.get("instantaneous_ops_per_sec")),
        hit_ratio=(hits or 0) / lookups if lookups else None,
        keys=None
        if host.record.role == "sentinel" or not info
        else sum(db.get("keys", 0) for db in keyspace.values()),
        connected_clients=_int(info.get("connected_clients")),
        replication=_replication(host),
        slowlog_entries=len(host.slowlog),
        latency_events=len(host.latency_latest),
        transparent_hugepage=facts.transparent_hugepage if facts else None,
        load=facts.load[0] if facts and facts.load else None,
        oom_lines=len(host.kernel_oom),
        not_captured={i.name: i.error or i.status for i in host.record.items if i.status == FAILED},
        skipped={i.name: i.error or i.status for i in host.record.items if i.status == SKIPPED},
    )


def _role(host: HostSnapshot) -> str:
    if host.record.role == "sentinel":
        return "sentinel"
    if host.replication is not None:
        return host.replication.role
    role = host.info.get("role")
    return "replica" if role == "slave" else (role or "?")


def _replication(host: HostSnapshot) -> str | None:
    view = host.replication
    if view is None:
        return None
    if view.role == "replica":
        link = "" if view.master_link_status == "up" else f" (link {view.master_link_status})"
        return f"replica of {view.master_host}:{view.master_port}{link}"
    lag = max((r.lag for r in view.replicas), default=0)
    return f"master, {len(view.replicas)} replicas" + (f", lag {lag}s" if lag > 1 else "")


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
