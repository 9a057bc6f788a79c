"""The figures a snapshot report shows, computed from a loaded `Snapshot` alone: plain data for
render/snapshot_html.py, no server contacted.

The flags are the ones `memory summary` and `config audit` raise, by their own rules
(`memory.summary.with_flags`, `tuning.audit.evaluate`) run on the captured INFO, CONFIG GET,
MEMORY DOCTOR, ACL LIST and host facts. What a snapshot cannot hold is said, not guessed: the
audit's write rate (a rate needs two moments), ACL DRYRUN probes, somaxconn and the open-files
limit leave their rules unchecked, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redisops.memory.summary import DoctorVerdict, MemorySummary, parse_doctor, summary_from_info
from redisops.memory.summary import with_flags as memory_flags
from redisops.slowlog.collect import SlowlogEntry
from redisops.slowlog.digest import Digest, digest_entries
from redisops.snapshot.archive import HostSnapshot, Snapshot
from redisops.tuning import facts as audit_inputs
from redisops.tuning.audit import Finding, Unchecked, evaluate
from redisops.tuning.facts import AclFacts, Facts, SystemFacts, parse_acl_user

# Why the audit inputs a snapshot never holds are missing.
_NOT_CAPTURED = {
    audit_inputs.WRITE_RATE: "a snapshot is one moment: no write rate",
    audit_inputs.ACL: "a snapshot holds ACL LIST, not the ACL DRYRUN probes",
    audit_inputs.SOMAXCONN: "a snapshot does not capture net.core.somaxconn",
    audit_inputs.OPEN_FILES: "a snapshot does not capture the open-files limit",
}
# INFO fields that hold several `name=value` pairs (redis-py parses them into dicts).
_NESTED = ("db", "slave", "errorstat_", "cmdstat_", "latencystats_")


@dataclass(frozen=True)
class HostMemory:
    """One Redis host's memory summary with `memory summary`'s flags, and its ops/s."""

    host: str
    summary: MemorySummary
    ops_per_sec: int
    dataset_bytes: int | None
    overhead_bytes: int | None


@dataclass(frozen=True)
class HostAudit:
    """`config audit`'s findings on one host's captured configuration and facts."""

    host: str
    findings: tuple[Finding, ...]
    unchecked: tuple[Unchecked, ...]


@dataclass(frozen=True)
class Bucket:
    """Calls that took at most `upper_us` and more than the bucket before (not cumulative)."""

    upper_us: int
    calls: int


@dataclass(frozen=True)
class CommandLatency:
    """LATENCY HISTOGRAM of one command summed over the hosts that ran it."""

    command: str
    calls: int
    hosts: tuple[str, ...]
    buckets: tuple[Bucket, ...]


@dataclass(frozen=True)
class LatencyPoint:
    """One latency spike from LATENCY HISTORY (or LATEST when no history): host, event, when
    (unix seconds, the server's clock) and how long in ms."""

    host: str
    event: str
    at: int
    ms: int


@dataclass(frozen=True)
class ReplicaLag:
    """A replica as its master reports it: bytes behind (master offset minus the replica's
    acknowledged offset) and seconds since its last ack."""

    master: str
    replica: str
    state: str
    offset: int
    bytes_behind: int
    lag_seconds: int


def typed_info(flat: Mapping[str, str]) -> dict[str, Any]:
    """A flat INFO (name -> text) typed as redis-py's `info()` returns it: numbers as int or
    float, `db0`/`slave0`-like lines as dicts, the rest as text. The core's INFO readers
    (memory summary, the audit rules) take that shape."""
    return {name: _nested(value) if name.startswith(_NESTED) and "=" in value else _number(value)
            for name, value in flat.items()}  # fmt: skip


def redis_hosts(snapshot: Snapshot) -> list[HostSnapshot]:
    """The hosts that are Redis servers (not Sentinels) and whose INFO was captured."""
    return [host for host in snapshot.hosts if host.record.role != "sentinel" and host.info]


def host_memory(host: HostSnapshot) -> HostMemory:
    """`memory summary` of one captured host, flags included."""
    info = typed_info(host.info)
    policy = host.config.get("maxmemory-policy") or info.get("maxmemory_policy")
    if host.memory_doctor is None:
        doctor = DoctorVerdict("unavailable", "MEMORY DOCTOR was not captured", (), None)
    else:
        doctor = parse_doctor(host.memory_doctor)
    summary = memory_flags(summary_from_info(info, policy=policy, doctor=doctor))
    stats = host.memory_stats
    dataset = stats.get("dataset.bytes")
    overhead = stats.get("overhead.total")
    return HostMemory(
        host=host.name,
        summary=summary,
        ops_per_sec=int(info.get("instantaneous_ops_per_sec", 0) or 0),
        dataset_bytes=int(dataset) if isinstance(dataset, (int, float)) else None,
        overhead_bytes=int(overhead) if isinstance(overhead, (int, float)) else None,
    )


def host_audit(host: HostSnapshot, *, instances_on_machine: int = 1) -> HostAudit:
    """`config audit`'s rules on one captured host (rules whose inputs a snapshot lacks are
    unchecked, with the reason)."""
    info = typed_info(host.info)
    missing = dict(_NOT_CAPTURED)
    if not host.config:
        missing[audit_inputs.CONFIG] = "CONFIG GET was not captured"
    users = tuple(parse_acl_user(line) for line in host.acl)
    facts_of = host.host_facts
    if facts_of is None:
        for name in audit_inputs.SYSTEM_INPUTS:
            missing.setdefault(name, "no host facts in the snapshot (no host access)")
        system = SystemFacts()
    else:
        system = SystemFacts(
            mem_total=facts_of.mem_total,
            overcommit_memory=facts_of.overcommit_memory,
            transparent_hugepage=facts_of.transparent_hugepage,
            swappiness=facts_of.swappiness,
        )
        for name, value in (
            (audit_inputs.MEM_TOTAL, system.mem_total),
            (audit_inputs.OVERCOMMIT, system.overcommit_memory),
            (audit_inputs.THP, system.transparent_hugepage),
            (audit_inputs.SWAPPINESS, system.swappiness),
        ):
            if value is None:
                missing.setdefault(name, facts_of.missing.get(name) or "not captured")
    ram = system.mem_total or int(info.get("total_system_memory") or 0) or None
    if ram is not None:
        missing.pop(audit_inputs.MEM_TOTAL, None)
    facts = Facts(
        info=info,
        config=dict(host.config),
        # The users are known (ACL LIST) even though the DRYRUN probes are not.
        acl=AclFacts(users=users, open_dangerous={}) if users else None,
        write_rate=None,
        system=system,
        ram=ram,
        instances_on_machine=max(1, instances_on_machine),
        missing=missing,
    )
    findings, unchecked = evaluate(facts, host.name)
    return HostAudit(host.name, findings, unchecked)


def fleet_audit(snapshot: Snapshot) -> list[HostAudit]:
    """`host_audit` of every captured Redis host; instances at one address share its memory."""
    hosts = redis_hosts(snapshot)
    machines = [_machine(host) for host in hosts]
    return [host_audit(host, instances_on_machine=machines.count(_machine(host))) for host in hosts]


def merged_latency(snapshot: Snapshot) -> list[CommandLatency]:
    """LATENCY HISTOGRAM per command, summed over hosts, most calls first.

    Redis reports cumulative counts at the bounds of power-of-two buckets (1024 ns * 2^k,
    printed in whole µs, so 64 µs reads 65 or 66), and only where the count grew. Each
    host's histogram becomes per-bucket counts keyed by k before summing; the buckets between
    the fastest and the slowest are all present (empty ones with 0 calls, labelled 2^k µs).
    """
    calls: dict[str, int] = {}
    hosts: dict[str, list[str]] = {}
    merged: dict[str, dict[int, int]] = {}
    labels: dict[int, int] = {}
    for host in snapshot.hosts:
        for command, histogram in host.latency_histogram.items():
            calls[command] = calls.get(command, 0) + histogram.calls
            hosts.setdefault(command, []).append(host.name)
            counts = merged.setdefault(command, {})
            below = 0
            for upper in sorted(histogram.buckets):
                cumulative = histogram.buckets[upper]
                k = _power_of_two(upper)
                labels[k] = max(labels.get(k, 0), upper)
                counts[k] = counts.get(k, 0) + max(0, cumulative - below)
                below = max(below, cumulative)
    result = []
    for command, counts in merged.items():
        span = range(min(counts), max(counts) + 1) if counts else range(0)
        buckets = tuple(Bucket(labels.get(k, 1 << k), counts.get(k, 0)) for k in span)
        result.append(CommandLatency(command, calls[command], tuple(hosts[command]), buckets))
    result.sort(key=lambda latency: (-latency.calls, latency.command))
    return result


def _power_of_two(upper_us: int) -> int:
    """k of a bucket bound of about 2^k µs."""
    return max(0, round(math.log2(max(upper_us, 1))))


def slowlog_digest(snapshot: Snapshot, *, top: int = 10) -> Digest:
    """`slowlog triage`'s digest of every captured slowlog, fingerprints ranked by total time."""
    entries = {
        host.name: [
            SlowlogEntry(
                id=record.id,
                started=record.started,
                duration_us=record.duration_us,
                args=record.raw_args,
                client_address=record.client_address,
                client_name=record.client_name,
            )
            for record in host.slowlog
        ]
        for host in snapshot.hosts
        if host.slowlog
    }
    return digest_entries(entries, top=top)


def latency_points(snapshot: Snapshot) -> list[LatencyPoint]:
    """Every latency spike the hosts remember, oldest first: LATENCY HISTORY per event, and
    LATENCY LATEST for an event whose history was not captured."""
    points = []
    for host in snapshot.hosts:
        for event, history in host.latency_history.items():
            points.extend(LatencyPoint(host.name, event, at, ms) for at, ms in history)
        for latest in host.latency_latest:
            if latest.event not in host.latency_history:
                points.append(LatencyPoint(host.name, latest.event, latest.at, latest.latest_ms))
    points.sort(key=lambda point: (point.at, point.host, point.event))
    return points


def replica_lags(snapshot: Snapshot) -> list[ReplicaLag]:
    """Every replica each captured master lists, with how far behind it is."""
    lags = []
    for host in snapshot.hosts:
        replication = host.replication
        if replication is None or replication.role != "master":
            continue
        for replica in replication.replicas:
            lags.append(
                ReplicaLag(
                    master=host.name,
                    replica=_name_of(snapshot, replica.ip, replica.port),
                    state=replica.state,
                    offset=replica.offset,
                    bytes_behind=max(0, replication.offset - replica.offset),
                    lag_seconds=replica.lag,
                )
            )
    return lags


def _name_of(snapshot: Snapshot, ip: str, port: int) -> str:
    """The inventory name of the host at ip:port, else the address itself."""
    address = f"{ip}:{port}"
    for host in snapshot.hosts:
        if host.record.address == address:
            return host.name
    return address


def _machine(host: HostSnapshot) -> str:
    return host.record.address.rpartition(":")[0].lower()


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def _nested(value: str) -> dict[str, Any]:
    return {name: _number(text) for name, _, text in (p.partition("=") for p in value.split(","))}
