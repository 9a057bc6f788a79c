"""The digest: slowlog entries grouped by fingerprint, per host and fleet-wide, ranked by cost.

This is the hot loop of triage (bench/slowlog_digest.py: 100,000 entries in well under a
second of CPU): each entry is fingerprinted once and appended to its group; sorting and
percentiles happen once per group at the end.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from redisops.slowlog.advice import shape_hint
from redisops.slowlog.collect import SlowlogEntry
from redisops.slowlog.fingerprint import (
    ASYNC,
    STATIC_KEYS,
    WHOLE_RANGE,
    KeyTable,
    Shape,
    fingerprint_args,
    redacted_args,
)

SORT_KEYS = ("total", "count", "max")
# Upper bounds (µs) of the histogram buckets, half a decade apart; a last bucket holds the rest.
HISTOGRAM_EDGES_US = (10, 32, 100, 316, 1_000, 3_162, 10_000, 31_623, 100_000, 316_228, 1_000_000)
TOP_CLIENTS = 3


@dataclass(frozen=True)
class ClientStats:
    """A client by IP address (a pool's connections differ only in port) and client name."""

    address: str
    name: str
    count: int
    total_us: int


@dataclass(frozen=True)
class FingerprintStats:
    """One fingerprint's calls: durations in µs, seen times in unix seconds (server clock).

    `histogram` counts calls per bucket of HISTOGRAM_EDGES_US. `sample` is the slowest call's
    arguments, redacted, and only there when asked for.
    """

    fingerprint: str
    command: str
    key_pattern: str
    count: int
    total_us: int
    avg_us: int
    p50_us: int
    p95_us: int
    max_us: int
    hosts: tuple[str, ...]
    clients: tuple[ClientStats, ...]
    first_seen: int
    last_seen: int
    histogram: tuple[int, ...]
    hint: str | None
    sample: tuple[str, ...] | None = None
    shards: tuple[str, ...] = ()  # `cluster/shard` of the cluster nodes among `hosts`


@dataclass(frozen=True)
class Digest:
    """Fingerprints fleet-wide and per host, ranked and cut to `top`; totals before the cut."""

    fingerprints: tuple[FingerprintStats, ...]
    by_host: dict[str, tuple[FingerprintStats, ...]]
    entries: int
    entries_by_host: dict[str, int]
    distinct: int
    total_us: int


class _Group:
    """What one fingerprint's calls on a host, or on the whole fleet, add up to."""

    __slots__ = ("clients", "durations", "first", "flags", "hosts", "last", "shape", "slowest")

    def __init__(self, shape: Shape, hosts: list[str]) -> None:
        self.shape = shape
        self.hosts = hosts
        self.durations: list[int] = []
        self.clients: dict[tuple[str, str], list[int]] = {}
        self.flags: dict[str, int] = {}
        self.first = 1 << 62
        self.last = 0
        self.slowest: SlowlogEntry | None = None

    def add(self, entries: list[SlowlogEntry], flags: dict[str, int], show_args: bool) -> None:
        """Fold a host's calls in; list comprehensions keep the per-entry cost in C."""
        durations = [entry.duration_us for entry in entries]
        self.durations.extend(durations)
        started = [entry.started for entry in entries]
        self.first = min(self.first, min(started))
        self.last = max(self.last, max(started))
        clients = self.clients
        for entry, duration in zip(entries, durations, strict=True):
            client = (entry.client_address.rpartition(":")[0], entry.client_name)
            totals = clients.get(client)
            if totals is None:
                clients[client] = [1, duration]
            else:
                totals[0] += 1
                totals[1] += duration
        for flag, count in flags.items():
            self.flags[flag] = self.flags.get(flag, 0) + count
        if show_args:
            slowest = max(entries, key=lambda entry: entry.duration_us)
            if self.slowest is None or slowest.duration_us > self.slowest.duration_us:
                self.slowest = slowest

    def merge(self, other: _Group) -> None:
        self.hosts.extend(other.hosts)
        self.durations.extend(other.durations)
        for client, (count, total) in other.clients.items():
            mine = self.clients.setdefault(client, [0, 0])
            mine[0] += count
            mine[1] += total
        for flag, count in other.flags.items():
            self.flags[flag] = self.flags.get(flag, 0) + count
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        if other.slowest and (
            self.slowest is None or other.slowest.duration_us > self.slowest.duration_us
        ):
            self.slowest = other.slowest


def digest_entries(
    entries_by_host: Mapping[str, Sequence[SlowlogEntry]],
    *,
    sort: str = "total",
    top: int | None = 20,
    since: int | None = None,
    until: int | None = None,
    show_args: bool = False,
    key_tables: Mapping[str, KeyTable | None] | None = None,
) -> Digest:
    """Group entries by fingerprint and rank the groups by `sort` (total, count or max time).

    Entries outside [since, until] (unix seconds, inclusive) are left out. `top` None or 0
    keeps every fingerprint. `show_args` adds each fingerprint's slowest call, redacted.
    `key_tables` says, per host, where its server's commands keep their keys (the static
    Redis 7.0 table for hosts without one).
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {SORT_KEYS}, got {sort!r}")
    fleet: dict[str, _Group] = {}
    by_host: dict[str, tuple[FingerprintStats, ...]] = {}
    counted: dict[str, int] = {}
    for host, entries in entries_by_host.items():
        if since is not None or until is not None:
            low, high = since or 0, until or (1 << 62)
            entries = [entry for entry in entries if low <= entry.started <= high]
        calls: dict[str, list[SlowlogEntry]] = {}
        shapes: dict[str, Shape] = {}
        flags: dict[str, dict[str, int]] = {}
        keys = (key_tables or {}).get(host) or STATIC_KEYS
        for entry in entries:
            shape = fingerprint_args(entry.args, keys)
            fingerprint = shape.fingerprint
            same = calls.get(fingerprint)
            if same is None:
                calls[fingerprint] = [entry]
                shapes[fingerprint] = shape
            else:
                same.append(entry)
            if shape.flag is not None:
                flagged = flags.setdefault(fingerprint, {})
                flagged[shape.flag] = flagged.get(shape.flag, 0) + 1
        groups = []
        for fingerprint, same in calls.items():
            group = _Group(shapes[fingerprint], [host])
            group.add(same, flags.get(fingerprint, {}), show_args)
            groups.append(group)
            if fingerprint not in fleet:
                fleet[fingerprint] = _Group(group.shape, [])
            fleet[fingerprint].merge(group)
        counted[host] = len(entries)
        by_host[host] = _ranked(groups, sort, top, show_args)
    return Digest(
        fingerprints=_ranked(fleet.values(), sort, top, show_args),
        by_host=by_host,
        entries=sum(counted.values()),
        entries_by_host=counted,
        distinct=len(fleet),
        total_us=sum(sum(group.durations) for group in fleet.values()),
    )


def _ranked(
    groups: Iterable[_Group], sort: str, top: int | None, show_args: bool
) -> tuple[FingerprintStats, ...]:
    stats = [_stats(group, show_args) for group in groups]
    if sort == "total":
        stats.sort(key=lambda s: (-s.total_us, -s.count, s.fingerprint))
    elif sort == "count":
        stats.sort(key=lambda s: (-s.count, -s.total_us, s.fingerprint))
    else:
        stats.sort(key=lambda s: (-s.max_us, -s.total_us, s.fingerprint))
    return tuple(stats[:top] if top else stats)


def _stats(group: _Group, show_args: bool) -> FingerprintStats:
    durations = group.durations
    durations.sort()
    count = len(durations)
    total = sum(durations)
    shape = group.shape
    clients = sorted(group.clients.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
    histogram, below = [], 0
    for edge in HISTOGRAM_EDGES_US:
        upto = bisect_right(durations, edge)
        histogram.append(upto - below)
        below = upto
    histogram.append(count - below)
    return FingerprintStats(
        fingerprint=shape.fingerprint,
        command=shape.command,
        key_pattern=shape.key_pattern,
        count=count,
        total_us=total,
        avg_us=round(total / count),
        p50_us=_percentile(durations, 50),
        p95_us=_percentile(durations, 95),
        max_us=durations[-1],
        hosts=tuple(group.hosts),
        clients=tuple(
            ClientStats(address, name, calls, spent)
            for (address, name), (calls, spent) in clients[:TOP_CLIENTS]
        ),
        first_seen=group.first,
        last_seen=group.last,
        histogram=tuple(histogram),
        hint=shape_hint(
            shape.command,
            count=count,
            max_us=durations[-1],
            whole_range=group.flags.get(WHOLE_RANGE, 0),
            asynchronous=group.flags.get(ASYNC, 0),
        ),
        sample=redacted_args(group.slowest.args) if show_args and group.slowest else None,
    )


def _percentile(ordered: Sequence[int], percent: int) -> int:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = -(-len(ordered) * percent // 100)  # ceiling without floats
    return ordered[max(rank, 1) - 1]
