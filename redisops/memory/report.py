"""`memory report`: where a host's memory goes, by key pattern, type, encoding, TTL and top keys.

Client memory stays bounded whatever the keyspace size: aggregates per pattern (capped at
MAX_PATTERNS, the rest folded into OTHER_PATTERN) and a heap of the top keys; no list of keys.
"""

from __future__ import annotations

import base64
import dataclasses
import heapq
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count

from redisops.errors import UsageError
from redisops.fleet.fanout import HostResult, run_on_hosts
from redisops.fleet.host import Host
from redisops.fleet.resp import RespConnection
from redisops.fleet.selection import split_sentinels
from redisops.fleet.server import parse_info, refuse_sentinel_as_redis
from redisops.interrupt import pause
from redisops.memory.cluster import ClusterMemory, report_clusters
from redisops.memory.patterns import (
    DEFAULT_SEPARATOR,
    DIGIT_SKELETON,
    PatternCache,
    key_text,
)
from redisops.memory.scanner import KeyFacts, scan_keys
from redisops.memory.slots import SlotTally, SlotView
from redisops.memory.summary import field_ttls_supported, volatile_hashes

MAX_PATTERNS = 10_000
OTHER_PATTERN = "(other patterns)"
TTL_BUCKETS = ("none", "<1h", "<1d", "<7d", ">=7d")
ELEMENT_COMMANDS = {
    "hash": b"HLEN",
    "list": b"LLEN",
    "set": b"SCARD",
    "zset": b"ZCARD",
    "stream": b"XLEN",
    "string": b"STRLEN",
}

Progress = Callable[[str, int, int], None]

# A master is scanned only when it has no replica to scan (or --on-master), and it answers
# clients meanwhile: unthrottled, a scan ran at 220,000 keys/s there (TYPE, MEMORY USAGE and
# PTTL per key). 20,000 keys/s still covers a million keys in under a minute. Replicas are
# scanned at full speed; --rate 0 asks for full speed everywhere.
MASTER_SCAN_RATE = 20_000.0


@dataclass(frozen=True)
class ReportOptions:
    """How to scan: grouping, bounds on the work, and what to fetch per key.

    `rate` is keys per second (None: MASTER_SCAN_RATE on a master, full speed on a replica;
    0: full speed everywhere); `sample` a fraction of
    keys examined; `max_keys` stops after that many keys; `samples` is MEMORY USAGE's SAMPLES
    (0: every element, exact but slower on big collections).
    """

    separator: str = DEFAULT_SEPARATOR
    depth: int | None = None
    top: int = 20
    rate: float | None = None
    sample: float | None = None
    max_keys: int | None = None
    samples: int = 5
    encodings: bool = False
    on_master: bool = False
    count: int = 1000

    def __post_init__(self) -> None:
        if self.sample is not None and not 0 < self.sample <= 1:
            raise UsageError(f"--sample must be in (0, 1], got {self.sample:g}")
        if self.rate is not None and not 0 <= self.rate < math.inf:
            raise UsageError(f"--rate must be 0 (full speed) or more keys/s, got {self.rate:g}")
        if self.max_keys is not None and self.max_keys < 1:
            raise UsageError(f"--max-keys must be at least 1, got {self.max_keys}")
        if self.depth is not None and self.depth < 1:
            raise UsageError(f"--depth must be at least 1, got {self.depth}")
        if self.samples < 0 or self.top < 0:
            raise UsageError("--samples and --top cannot be negative")


@dataclass(frozen=True)
class Totals:
    keys: int
    bytes: int


@dataclass(frozen=True)
class PatternStats:
    """One key pattern: `share` of all bytes, `ttl_share` of its keys that expire."""

    pattern: str
    keys: int
    bytes: int
    share: float
    avg_bytes: int
    ttl_share: float
    types: dict[str, int]


@dataclass(frozen=True)
class TopKey:
    """A big key; `key` is shown with non-UTF-8 bytes escaped, `key_base64` is exact."""

    key: str
    key_base64: str
    db: int
    type: str
    bytes: int
    ttl_ms: int
    elements: int | None
    encoding: str | None


@dataclass(frozen=True)
class MemoryReport:
    """What a scan found. With `estimated`, counts and bytes are extrapolated from a sample.

    `keys_scanned` counts keys examined with MEMORY USAGE, `keys` and `bytes` are the totals
    (extrapolated when estimated); `dbsize` is what the server held when the scan began.
    Top keys are never extrapolated. `volatile_hashes` is the server's own count (INFO
    keyspace, when the scan began) of hashes with fields that expire; their key's TTL, not
    their fields', puts them in a `ttl` bucket. None when the server has no hash-field TTLs.
    """

    scanned_host: str
    scanned_address: str
    scanned_role: str
    dbsize: int
    keys_scanned: int
    keys: int
    bytes: int
    estimated: bool
    sample: float | None
    max_keys: int | None
    duration_seconds: float
    keys_per_second: float
    patterns: list[PatternStats]
    types: dict[str, Totals]
    encodings: dict[str, Totals] | None
    ttl: dict[str, Totals]
    top_keys: list[TopKey]
    samples: int
    patterns_folded: int = 0
    rate_limit: float | None = None  # keys/s the scan was held to; None: full speed
    volatile_hashes: int | None = None
    # Cluster nodes only (None elsewhere): the cluster and shard the report is for, and its
    # keys and bytes by hash slot (see redisops.memory.slots).
    cluster: str | None = None
    shard: str | None = None
    slots: SlotView | None = None


@dataclass(frozen=True)
class ScanPlan:
    """Report on `target`, scanning `source` (a replica of it when one is in the inventory)."""

    target: Host
    source: Host
    covers: tuple[str, ...] = ()


@dataclass
class _Pattern:
    keys: int = 0
    bytes: int = 0
    ttl_keys: int = 0
    types: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Tally:
    """An Aggregate's totals: per pattern, type, `type/encoding` and TTL bucket, [keys, bytes]."""

    bytes: int
    patterns: dict[str, _Pattern]
    types: dict[str, list[int]]
    encodings: dict[str, list[int]]
    ttl: dict[str, list[int]]


class Aggregate:
    """Running totals of one scan, fed KeyFacts by the live scanner or the RDB reader.

    A key costs one counter update: counters are kept per (pattern, type, encoding, TTL bucket)
    and summed into the report's tables once, by `tally()`. The RDB reader feeds a million keys
    in a few seconds, so this loop is where the time goes.
    """

    def __init__(self, options: ReportOptions, *, slots: bool = False) -> None:
        self.options = options
        self.slots = SlotTally(options.separator, options.depth) if slots else None
        self.cells: dict[tuple[str, str, str | None, str], list[int]] = {}
        self.pattern_names: set[str] = set()
        self.folded: set[str] = set()
        self.top: list[tuple[int, int, KeyFacts]] = []
        self.order = count()
        self.keys = 0
        self._pattern = PatternCache(options.separator, options.depth)

    def add(self, facts: Sequence[tuple]) -> None:
        """Count `facts`: KeyFacts, or tuples that begin with KeyFacts' fields (RdbKey rows)."""
        cells, top, limit, pattern = self.cells, self.top, self.options.top, self._pattern
        known = pattern.known
        if self.slots is not None:
            self.slots.add(facts)
        floor = top[0][0] if limit and len(top) >= limit else (-1 if limit else math.inf)
        self.keys += len(facts)
        for fact in facts:
            key, type_name, size, ttl_ms, encoding = fact[1], fact[2], fact[3], fact[4], fact[5]
            if ttl_ms < 0:
                bucket = "none"
            elif ttl_ms < 3_600_000:
                bucket = "<1h"
            elif ttl_ms < 86_400_000:
                bucket = "<1d"
            elif ttl_ms < 604_800_000:
                bucket = "<7d"
            else:
                bucket = ">=7d"
            name = known.get(key.translate(DIGIT_SKELETON)) or pattern.unknown(key)
            cell = cells.get((name, type_name, encoding, bucket))
            if cell is None:
                cell = self._new_cell(name, type_name, encoding, bucket)
            cell[0] += 1
            cell[1] += size
            if size > floor:
                entry = (size, next(self.order), KeyFacts._make(fact[:6]))
                if len(top) < limit:
                    heapq.heappush(top, entry)
                else:
                    heapq.heappushpop(top, entry)
                if len(top) >= limit:
                    floor = top[0][0]

    def _new_cell(self, name: str, type_name: str, encoding: str | None, bucket: str) -> list[int]:
        if name not in self.pattern_names:
            if len(self.pattern_names) >= MAX_PATTERNS:
                if len(self.folded) < MAX_PATTERNS:  # a count, itself bounded
                    self.folded.add(name)
                name = OTHER_PATTERN
            else:
                self.pattern_names.add(name)
        return self.cells.setdefault((name, type_name, encoding, bucket), [0, 0])

    def tally(self) -> Tally:
        patterns: dict[str, _Pattern] = {}
        types: dict[str, list[int]] = {}
        encodings: dict[str, list[int]] = {}
        ttl: dict[str, list[int]] = {bucket: [0, 0] for bucket in TTL_BUCKETS}
        total = 0
        for (name, type_name, encoding, bucket), (keys, size) in self.cells.items():
            total += size
            stats = patterns.setdefault(name, _Pattern())
            stats.keys += keys
            stats.bytes += size
            stats.types[type_name] = stats.types.get(type_name, 0) + keys
            if bucket != "none":
                stats.ttl_keys += keys
            tables = [types.setdefault(type_name, [0, 0]), ttl[bucket]]
            if encoding is not None:
                tables.append(encodings.setdefault(f"{type_name}/{encoding}", [0, 0]))
            for table in tables:
                table[0] += keys
                table[1] += size
        return Tally(total, patterns, types, encodings, ttl)


def report_host(
    plan: ScanPlan,
    options: ReportOptions,
    *,
    timeout: float,
    progress: Progress | None = None,
) -> MemoryReport:
    """Scan every db of `plan.source` and aggregate; raises HostError if it fails mid-way."""
    source = plan.source
    started = time.monotonic()
    connection = RespConnection(source, timeout=timeout)
    try:
        server = parse_info(connection.call(b"INFO", b"server"))
        refuse_sentinel_as_redis(source, server)
        info = parse_info(connection.call(b"INFO", b"keyspace"))
        role = parse_info(connection.call(b"INFO", b"replication")).get("role", "unknown")
        dbs = sorted(int(name[2:]) for name in info if name.startswith("db"))
        dbsize = sum(_keyspace_keys(info[f"db{db}"]) for db in dbs)
        volatile = count_volatile_hashes(server, [info[f"db{db}"] for db in dbs])
        node = plan.target.node
        if node is not None:
            # A cluster replica answers commands on keys only in READONLY mode (else MOVED).
            connection.call(b"READONLY")
        aggregate = Aggregate(options, slots=node is not None)
        rate = scan_rate(options.rate, role)
        seen = _scan(connection, dbs, dbsize, aggregate, options, rate, progress, plan.target.name)
        elements = _element_counts(connection, top_keys(aggregate))
    finally:
        connection.close()

    duration = time.monotonic() - started
    scale = _scale(options, dbsize, seen)
    report = finish_report(
        aggregate, source.name, source.address, role, dbsize, scale, duration, seen, elements
    )
    return dataclasses.replace(
        report,
        rate_limit=rate,
        volatile_hashes=volatile,
        cluster=node.cluster if node else None,
        shard=node.shard if node else None,
    )


def scan_rate(asked: float | None, role: str) -> float | None:
    """Keys per second to hold a scan to (None: unthrottled); see MASTER_SCAN_RATE."""
    if asked is None:
        return MASTER_SCAN_RATE if role == "master" else None
    return asked or None


def _scan(
    connection: RespConnection,
    dbs: list[int],
    dbsize: int,
    aggregate: Aggregate,
    options: ReportOptions,
    rate: float | None,
    progress: Progress | None,
    name: str,
) -> int:
    """Run the scan over `dbs`, throttled and bounded; returns the keys SCAN returned."""
    keep = None
    if options.sample is not None and options.sample < 1:
        sampler, fraction = random.Random(0).random, options.sample

        def keep(_key: bytes) -> bool:
            return sampler() < fraction

    scan_count = options.count
    if rate is not None:  # small batches, so throttling stays smooth
        scan_count = max(10, min(scan_count, int(rate // 10) or 10))
    if options.max_keys is not None:  # SCAN's COUNT is a hint: stop close to the bound
        scan_count = max(10, min(scan_count, options.max_keys))
    started, seen = time.monotonic(), 0
    for db in dbs:
        batches = scan_keys(
            connection,
            db,
            count=scan_count,
            samples=options.samples,
            encodings=options.encodings,
            keep=keep,
        )
        for batch_seen, facts in batches:
            aggregate.add(facts)
            seen += batch_seen
            if progress is not None:
                progress(name, seen, dbsize)
            if options.max_keys is not None and seen >= options.max_keys:
                batches.close()
                return seen
            if rate is not None:
                ahead = seen / rate - (time.monotonic() - started)
                if ahead > 0:
                    pause(ahead)
    return seen


def _scale(options: ReportOptions, dbsize: int, seen: int) -> float:
    scale = 1.0
    if options.sample is not None and options.sample < 1:
        scale /= options.sample
    if options.max_keys is not None and seen and seen < dbsize:
        scale *= dbsize / seen
    return scale


def top_keys(aggregate: Aggregate) -> list[KeyFacts]:
    """The biggest keys seen, biggest first (ties in the order they were seen)."""
    return [fact for _, _, fact in sorted(aggregate.top, key=lambda item: (-item[0], item[1]))]


def finish_report(
    aggregate: Aggregate,
    name: str,
    address: str,
    role: str,
    dbsize: int,
    scale: float,
    duration: float,
    seen: int,
    elements: list[int | None],
) -> MemoryReport:
    """The report of `aggregate`; `elements` are the counts of `top_keys(aggregate)`, in order."""
    options = aggregate.options

    def scaled(value: int) -> int:
        return round(value * scale)

    tally = aggregate.tally()
    total_bytes = scaled(tally.bytes)
    patterns = [
        PatternStats(
            pattern=name,
            keys=scaled(stats.keys),
            bytes=scaled(stats.bytes),
            share=round(stats.bytes / tally.bytes, 4) if tally.bytes else 0.0,
            avg_bytes=stats.bytes // stats.keys if stats.keys else 0,
            ttl_share=round(stats.ttl_keys / stats.keys, 4) if stats.keys else 0.0,
            types=dict(sorted(stats.types.items(), key=lambda item: -item[1])),
        )
        for name, stats in tally.patterns.items()
    ]
    patterns.sort(key=lambda p: (-p.bytes, p.pattern))
    return MemoryReport(
        scanned_host=name,
        scanned_address=address,
        scanned_role=role if role != "slave" else "replica",
        dbsize=dbsize,
        keys_scanned=aggregate.keys,
        keys=scaled(aggregate.keys),
        bytes=total_bytes,
        estimated=scale != 1.0,
        sample=options.sample,
        max_keys=options.max_keys,
        duration_seconds=round(duration, 3),
        keys_per_second=round(seen / duration, 1) if duration > 0 else 0.0,
        patterns=patterns,
        types=_totals(tally.types, scaled),
        encodings=_totals(tally.encodings, scaled) if options.encodings else None,
        ttl={bucket: Totals(scaled(k), scaled(b)) for bucket, (k, b) in tally.ttl.items()},
        top_keys=[
            TopKey(
                key=key_text(fact.key),
                key_base64=base64.b64encode(fact.key).decode(),
                db=fact.db,
                type=fact.type,
                bytes=fact.bytes,
                ttl_ms=fact.ttl_ms,
                elements=count_,
                encoding=fact.encoding,
            )
            for fact, count_ in zip(top_keys(aggregate), elements, strict=True)
        ],
        samples=options.samples,
        patterns_folded=len(aggregate.folded),
        slots=aggregate.slots.view(scale) if aggregate.slots is not None else None,
    )


def _totals(table: dict[str, list[int]], scaled: Callable[[int], int]) -> dict[str, Totals]:
    ordered = sorted(table.items(), key=lambda item: -item[1][1])
    return {name: Totals(scaled(k), scaled(b)) for name, (k, b) in ordered}


def _element_counts(connection: RespConnection, facts: list[KeyFacts]) -> list[int | None]:
    """HLEN/LLEN/SCARD/ZCARD/XLEN/STRLEN of each top key, one pipeline per db."""
    import hiredis

    counts: list[int | None] = [None] * len(facts)
    for db in sorted({fact.db for fact in facts}):
        indexes = [i for i, fact in enumerate(facts) if fact.db == db]
        commands = [
            (i, ELEMENT_COMMANDS[facts[i].type])
            for i in indexes
            if facts[i].type in ELEMENT_COMMANDS
        ]
        if not commands:
            continue
        connection.call(b"SELECT", db)
        connection.send(b"".join(hiredis.pack_command((c, facts[i].key)) for i, c in commands))
        for (i, _), reply in zip(commands, connection.replies(len(commands)), strict=True):
            counts[i] = reply if isinstance(reply, int) else None
    return counts


def _keyspace_keys(value: str) -> int:
    fields = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
    return int(fields.get("keys", 0))


def count_volatile_hashes(server: dict[str, str], lines: list[str]) -> int | None:
    """Hashes with expiring fields over the INFO keyspace `lines` (see summary.volatile_hashes)."""
    counts = [
        volatile_hashes(dict(item.split("=", 1) for item in line.split(",") if "=" in item))
        for line in lines
    ]
    reported = [count for count in counts if count is not None]
    return sum(reported) if reported or field_ttls_supported(server) else None


def plan_scans(
    selected: Sequence[Host],
    inventory: Sequence[Host],
    replication: dict[str, dict[str, str]],
    *,
    on_master: bool,
) -> tuple[list[ScanPlan], dict[str, str]]:
    """Decide where each selected host is scanned, from INFO replication of each.

    A master is scanned on its online replica with the least lag when that replica is in the
    inventory (`on_master` overrides). A selected replica whose master is also selected is
    covered by the master's report and not scanned twice. Returns the plans and, per host
    left out, why.
    """
    by_address = {(h.host, h.port): h for h in inventory if not h.is_sentinel}
    selected_names = {h.name for h in selected}
    covered_by: dict[str, str] = {}
    for host in selected:
        info = replication.get(host.name, {})
        if info.get("role") == "slave":
            master = by_address.get((info.get("master_host"), _int(info.get("master_port"))))
            if master is not None and master.name in selected_names:
                covered_by[host.name] = master.name
    plans = []
    for host in selected:
        info = replication.get(host.name)
        if info is None or host.name in covered_by:
            continue
        replica = None
        if info.get("role") != "slave" and not on_master:
            replica = _best_replica(info, by_address)
        covers = tuple(name for name, master in covered_by.items() if master == host.name)
        plans.append(ScanPlan(host, replica or host, covers))
    skipped = {
        name: f"replica of {master}, covered by its report" for name, master in covered_by.items()
    }
    return plans, skipped


def _best_replica(info: dict[str, str], by_address: dict[tuple, Host]) -> Host | None:
    candidates = []
    for name, value in info.items():
        if not (name.startswith("slave") and name[5:].isdigit()):
            continue
        fields = dict(item.split("=", 1) for item in value.split(",") if "=" in item)
        host = by_address.get((fields.get("ip"), _int(fields.get("port"))))
        if host is not None and fields.get("state") == "online":
            candidates.append((_int(fields.get("lag")) or 0, host.name, host))
    return min(candidates)[2] if candidates else None


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.lstrip("-").isdigit() else None


def read_replication(host: Host, *, timeout: float) -> dict[str, str]:
    """INFO replication of `host` as a flat dict (raises HostError when it does not answer)."""
    connection = RespConnection(host, timeout=timeout)
    try:
        return parse_info(connection.call(b"INFO", b"replication"))
    finally:
        connection.close()


@dataclass(frozen=True)
class FleetReport:
    """Per-host results in inventory order, the hosts left out with the reason, and per
    Redis Cluster among them its shards and totals (redisops.memory.cluster)."""

    results: list[HostResult]
    skipped: dict[str, str]
    clusters: list[ClusterMemory] = field(default_factory=list)


def report_fleet(
    selected: Sequence[Host],
    inventory: Sequence[Host],
    options: ReportOptions,
    *,
    timeout: float,
    parallel: int,
    progress: Progress | None = None,
) -> FleetReport:
    """Plan where to scan (replicas first), then scan every plan in parallel: one scan per
    shard of a cluster, all shards at once (up to `parallel`)."""
    redis_hosts, sentinels = split_sentinels(selected, lacking="keys")
    skipped = dict.fromkeys(sentinels, "sentinel: holds no keys")
    first_pass = run_on_hosts(
        redis_hosts, lambda host: read_replication(host, timeout=timeout), parallel=parallel
    )
    replication = {r.host: r.data for r in first_pass if r.ok}
    plans, covered = plan_scans(redis_hosts, inventory, replication, on_master=options.on_master)
    skipped |= covered
    by_target = {plan.target.name: plan for plan in plans}
    scans = run_on_hosts(
        [plan.target for plan in plans],
        lambda host: report_host(by_target[host.name], options, timeout=timeout, progress=progress),
        parallel=parallel,
    )
    outcome = {r.host: r for r in first_pass if not r.ok} | {r.host: r for r in scans}
    results = [outcome[h.name] for h in redis_hosts if h.name in outcome]
    clusters = report_clusters(redis_hosts, results)
    return FleetReport([_without_slot_arrays(r) for r in results], skipped, clusters)


def _without_slot_arrays(result: HostResult) -> HostResult:
    """A node's row without its per-slot arrays: its cluster's report holds them all."""
    report = result.data
    if report is None or report.slots is None:
        return result
    slots = report.slots.without_arrays()
    return dataclasses.replace(result, data=dataclasses.replace(report, slots=slots))
