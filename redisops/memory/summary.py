"""`memory summary`: each host's memory figures from INFO, MEMORY DOCTOR's verdict, and flags.

The flags are declarative rules over the figures (`FLAG_RULES`): an id, a severity, when it
applies and a one-line why, so each can be read and tested on its own. docs/memory.md explains
the thresholds and what counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

from redisops.fleet.host import Host
from redisops.fleet.server import refuse_sentinel_as_redis, server_identity, version_tuple

if TYPE_CHECKING:
    import redis

    from redisops.fleet.fanout import HostResult
    from redisops.memory.cluster import ClusterMemory

MIB = 1024 * 1024
GIB = 1024 * MIB

USED_PERCENT_HIGH = 90.0
FRAGMENTATION_HIGH = 1.5
FRAGMENTATION_LOW = 1.0
# Under this, RSS is mostly the process's fixed cost (a fresh Redis 7 holds ~6 MiB RSS for under
# 1 MiB used, a ratio of 7), so the ratio says nothing about fragmentation; at 64 MiB that fixed
# cost adds at most ~0.1 to it. MEMORY DOCTOR likewise refuses to judge under 5 MiB.
FRAGMENTATION_MIN_USED = 64 * MIB
# Absolute waste: on a big instance a modest ratio (1.2 of 20 GiB) still holds gigabytes idle.
RSS_EXCESS = GIB
NO_EVICTION = "noeviction"
# The first versions with hash-field TTLs, per flavour.
FIELD_TTLS_SINCE = {"redis": (7, 4), "valkey": (9,)}


class Severity(str, Enum):
    """How urgent a flag is; `--fail-on` takes the same names."""

    warning = "warning"
    critical = "critical"

    @property
    def rank(self) -> int:
        """Higher is more urgent."""
        return list(Severity).index(self)


@dataclass(frozen=True)
class DbKeys:
    """One database of INFO keyspace; `avg_ttl_ms` is Redis's estimate over keys with a TTL.

    `volatile_hashes` counts hashes with fields that expire (hash-field TTLs: HEXPIRE,
    HSETEX); None when the server does not report it (before Redis 7.4 and Valkey 9).
    """

    db: int
    keys: int
    expires: int
    avg_ttl_ms: int
    volatile_hashes: int | None = None


def field_ttls_supported(info: Mapping[str, Any]) -> bool:
    """True when the server has hash-field TTLs (Redis 7.4+, Valkey 9+)."""
    identity = server_identity(info)
    return version_tuple(identity.version) >= FIELD_TTLS_SINCE.get(identity.flavour, (99,))


def volatile_hashes(db: Mapping[str, Any]) -> int | None:
    """Hashes with expiring fields in one INFO keyspace db: Redis 7.4 calls them `subexpiry`,
    Valkey 9 `keys_with_volatile_items`; None when the server reports neither."""
    for name in ("subexpiry", "keys_with_volatile_items"):
        if name in db:
            return int(db[name])
    return None


@dataclass(frozen=True)
class ForkCost:
    """What the last fork (BGSAVE, AOF rewrite, full sync) cost: time blocked, bytes copied.

    `current_cow_size` is non-zero only while a fork child runs (`save_in_progress`).
    """

    latest_fork_usec: int
    total_forks: int
    rdb_last_cow_size: int
    aof_last_cow_size: int
    current_cow_size: int
    save_in_progress: bool


@dataclass(frozen=True)
class DoctorVerdict:
    """MEMORY DOCTOR in short, with its full text.

    `status`: ok, empty (under 5 MiB: Redis will not judge), issues (`issues` holds the titles
    of its findings), unknown (a reply this version does not recognise) or unavailable (the
    command was refused, e.g. by an ACL; `text` is None).
    """

    status: str
    summary: str
    issues: tuple[str, ...]
    text: str | None


@dataclass(frozen=True)
class Flag:
    id: str
    severity: Severity
    why: str


@dataclass(frozen=True)
class MemorySummary:
    """One host's memory, as INFO (default sections) and MEMORY DOCTOR report it.

    Sizes are bytes; `maxmemory` 0 means no limit and then `used_percent` is None;
    `hit_ratio` is hits / (hits + misses), None before the first lookup; counters
    (evicted, expired, hits, misses) count since the last restart or CONFIG RESETSTAT.
    `severity` is the worst of `flags`, None when there are none. `volatile_hashes` counts
    hashes whose fields expire, over all dbs (None: the server does not report it).
    """

    role: str
    used_memory: int
    used_memory_peak: int
    used_memory_rss: int
    mem_fragmentation_ratio: float | None
    maxmemory: int
    used_percent: float | None
    maxmemory_policy: str | None
    total_system_memory: int | None
    evicted_keys: int
    expired_keys: int
    keyspace_hits: int
    keyspace_misses: int
    hit_ratio: float | None
    keys: int
    expires: int
    keyspace: tuple[DbKeys, ...]
    fork: ForkCost
    doctor: DoctorVerdict
    flags: tuple[Flag, ...] = ()
    severity: Severity | None = None
    volatile_hashes: int | None = None


@dataclass(frozen=True)
class FlagRule:
    """One thing an SRE must look at: when it applies, how bad it is, and why in one line."""

    id: str
    severity: Severity
    applies: Callable[[MemorySummary], bool]
    why: Callable[[MemorySummary], str]


def _used_high(m: MemorySummary) -> bool:
    return m.used_percent is not None and m.used_percent > USED_PERCENT_HIGH


def _cannot_evict(m: MemorySummary) -> bool:
    """True when reaching maxmemory means refused writes instead of evictions."""
    policy = m.maxmemory_policy or ""
    return policy == NO_EVICTION or (policy.startswith("volatile-") and m.expires == 0)


def _nothing_to_evict(m: MemorySummary) -> str:
    if m.maxmemory_policy == NO_EVICTION:
        return "noeviction never evicts"
    return f"{m.maxmemory_policy} finds no key with a TTL to evict"


def _fragmentation_judged(m: MemorySummary) -> bool:
    return m.mem_fragmentation_ratio is not None and m.used_memory >= FRAGMENTATION_MIN_USED


FLAG_RULES: tuple[FlagRule, ...] = (
    FlagRule(
        "memory-full",
        Severity.critical,
        lambda m: _used_high(m) and _cannot_evict(m),
        lambda m: (
            f"used {m.used_percent:.1f}% of maxmemory and {_nothing_to_evict(m)}: "
            "writes fail with OOM errors at 100%"
        ),
    ),
    FlagRule(
        "memory-high",
        Severity.warning,
        lambda m: _used_high(m) and not _cannot_evict(m),
        lambda m: (
            f"used {m.used_percent:.1f}% of maxmemory: "
            f"{m.maxmemory_policy or 'the eviction policy'} evicts keys to make room"
        ),
    ),
    FlagRule(
        "no-maxmemory",
        Severity.warning,
        lambda m: m.maxmemory == 0 and m.maxmemory_policy not in (None, NO_EVICTION),
        lambda m: (
            f"maxmemory-policy {m.maxmemory_policy} expects eviction but maxmemory is 0 "
            "(no limit): nothing is evicted and memory grows until the OS kills Redis"
        ),
    ),
    FlagRule(
        "evictions",
        Severity.warning,
        lambda m: m.evicted_keys > 0,
        lambda m: (
            f"{m.evicted_keys} keys evicted since the last restart or CONFIG RESETSTAT: "
            "the data set does not fit in maxmemory"
        ),
    ),
    FlagRule(
        "fragmentation-high",
        Severity.warning,
        lambda m: _fragmentation_judged(m) and m.mem_fragmentation_ratio > FRAGMENTATION_HIGH,
        lambda m: (
            f"fragmentation ratio {m.mem_fragmentation_ratio:.2f} (RSS / used) is over "
            f"{FRAGMENTATION_HIGH}: memory is held but unused; try activedefrag or MEMORY PURGE"
        ),
    ),
    FlagRule(
        "fragmentation-low",
        Severity.warning,
        lambda m: _fragmentation_judged(m) and m.mem_fragmentation_ratio < FRAGMENTATION_LOW,
        lambda m: (
            f"fragmentation ratio {m.mem_fragmentation_ratio:.2f} is under 1: RSS is "
            "smaller than used memory, so part of Redis is likely swapped out (latency)"
        ),
    ),
    FlagRule(
        "rss-excess",
        Severity.warning,
        lambda m: m.used_memory_rss - m.used_memory >= RSS_EXCESS,
        lambda m: (
            f"RSS is {(m.used_memory_rss - m.used_memory) / GIB:.1f} GiB over used "
            "memory: the machine sees far more taken than Redis holds data in"
        ),
    ),
)


def with_flags(summary: MemorySummary, rules: Sequence[FlagRule] = FLAG_RULES) -> MemorySummary:
    """`summary` with the flags of every rule that applies, most severe first."""
    flags = [
        Flag(rule.id, rule.severity, rule.why(summary)) for rule in rules if rule.applies(summary)
    ]
    flags.sort(key=lambda flag: -flag.severity.rank)
    worst = flags[0].severity if flags else None
    return replace(summary, flags=tuple(flags), severity=worst)


_DOCTOR_OK = "can't find any memory issue"
_DOCTOR_EMPTY = "empty or is using very little memory"
_DOCTOR_FINDING = re.compile(r"^ \* ([^:\n]+):", re.MULTILINE)


def parse_doctor(text: str) -> DoctorVerdict:
    """Classify MEMORY DOCTOR's reply (wording of Redis 4 to 7, kept by Valkey)."""
    text = text.strip()
    if _DOCTOR_EMPTY in text:
        return DoctorVerdict("empty", "too little data to judge", (), text)
    if _DOCTOR_OK in text:
        return DoctorVerdict("ok", "no issues", (), text)
    issues = tuple(_DOCTOR_FINDING.findall(text))
    if issues:
        return DoctorVerdict("issues", ", ".join(issues), issues, text)
    first = next((line.strip() for line in text.splitlines() if line.strip()), "empty reply")
    return DoctorVerdict("unknown", first, (), text)


def summary_from_info(
    info: dict[str, Any], *, policy: str | None, doctor: DoctorVerdict
) -> MemorySummary:
    """The figures of one INFO reply (as redis-py parses it), without flags."""
    used = _int(info, "used_memory")
    maxmemory = _int(info, "maxmemory")
    hits, misses = _int(info, "keyspace_hits"), _int(info, "keyspace_misses")
    dbs = sorted(
        (_db_number(name), db)
        for name, db in info.items()
        if _db_number(name) >= 0 and isinstance(db, dict)
    )
    keyspace = tuple(
        DbKeys(
            number,
            int(db.get("keys", 0)),
            int(db.get("expires", 0)),
            int(db.get("avg_ttl", 0)),
            volatile_hashes(db),
        )
        for number, db in dbs
    )
    reported = [db.volatile_hashes for db in keyspace if db.volatile_hashes is not None]
    ratio = info.get("mem_fragmentation_ratio")
    return MemorySummary(
        role="replica" if info.get("role") == "slave" else str(info.get("role", "unknown")),
        used_memory=used,
        used_memory_peak=_int(info, "used_memory_peak"),
        used_memory_rss=_int(info, "used_memory_rss"),
        mem_fragmentation_ratio=float(ratio) if ratio is not None else None,
        maxmemory=maxmemory,
        used_percent=round(used * 100 / maxmemory, 1) if maxmemory else None,
        maxmemory_policy=policy,
        total_system_memory=_int(info, "total_system_memory") or None,
        evicted_keys=_int(info, "evicted_keys"),
        expired_keys=_int(info, "expired_keys"),
        keyspace_hits=hits,
        keyspace_misses=misses,
        hit_ratio=round(hits / (hits + misses), 4) if hits + misses else None,
        keys=sum(db.keys for db in keyspace),
        expires=sum(db.expires for db in keyspace),
        keyspace=keyspace,
        fork=ForkCost(
            latest_fork_usec=_int(info, "latest_fork_usec"),
            total_forks=_int(info, "total_forks"),
            rdb_last_cow_size=_int(info, "rdb_last_cow_size"),
            aof_last_cow_size=_int(info, "aof_last_cow_size"),
            current_cow_size=_int(info, "current_cow_size"),
            save_in_progress=bool(
                _int(info, "rdb_bgsave_in_progress") or _int(info, "aof_rewrite_in_progress")
            ),
        ),
        doctor=doctor,
        volatile_hashes=sum(reported) if reported or field_ttls_supported(info) else None,
    )


def summarise_host(host: Host, *, timeout: float) -> MemorySummary:
    """INFO and MEMORY DOCTOR of one Redis host, with flags; HostError when it cannot be read.

    A refused CONFIG GET or MEMORY DOCTOR (ACL, renamed command) leaves that part unknown
    instead of failing the host. A Sentinel listed as a Redis host is a HostError.
    """
    from redisops.fleet.connection import redis_client

    with redis_client(host, timeout=timeout, decode=True) as client:
        info = client.info()
        refuse_sentinel_as_redis(host, info)
        policy = info.get("maxmemory_policy") or _configured_policy(client)
        doctor = _ask_doctor(client)
    return with_flags(summary_from_info(info, policy=policy, doctor=doctor))


@dataclass(frozen=True)
class FleetMemory:
    """Summaries in inventory order, the Sentinels left out (they hold no data set), and
    per Redis Cluster among the hosts its shards and totals (redisops.memory.cluster)."""

    results: tuple[HostResult[MemorySummary], ...]
    skipped_sentinels: tuple[str, ...]
    clusters: tuple[ClusterMemory, ...] = ()

    def hosts_by_severity(self) -> dict[str, int]:
        """How many hosts have each severity as their worst flag."""
        worst = [r.data.severity for r in self.results if r.ok and r.data is not None]
        return {severity.value: worst.count(severity) for severity in reversed(Severity)}

    def flagged(self, at_least: Severity) -> list[str]:
        """Hosts with a flag at or above `at_least`, in inventory order."""
        return [
            r.host
            for r in self.results
            if r.data is not None and r.data.severity and r.data.severity.rank >= at_least.rank
        ]


def summarise_fleet(hosts: Sequence[Host], *, timeout: float, parallel: int) -> FleetMemory:
    """Summarise every Redis host at most `parallel` at once; Sentinels are skipped.

    Raises UsageError when only Sentinels were selected.
    """
    from redisops.fleet.fanout import run_on_hosts
    from redisops.fleet.selection import split_sentinels
    from redisops.memory.cluster import summary_clusters

    redis_hosts, sentinels = split_sentinels(hosts, lacking="data set")
    results = run_on_hosts(
        redis_hosts, lambda host: summarise_host(host, timeout=timeout), parallel=parallel
    )
    return FleetMemory(tuple(results), sentinels, tuple(summary_clusters(redis_hosts, results)))


def urgency(result: HostResult[MemorySummary]) -> tuple[int, int, float]:
    """Sort key, most urgent first: failed hosts, then worst flag, then % of maxmemory used."""
    summary = result.data
    if not result.ok or summary is None:
        return (0, 0, 0.0)
    rank = summary.severity.rank + 1 if summary.severity else 0
    percent = summary.used_percent if summary.used_percent is not None else -1.0
    return (1, -rank, -percent)


def _configured_policy(client: redis.Redis) -> str | None:
    import redis

    try:
        return client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:
        return None


def _ask_doctor(client: redis.Redis) -> DoctorVerdict:
    import redis

    try:
        # redis-py deliberately leaves memory_doctor() unimplemented; the command is fine.
        reply = client.execute_command("MEMORY DOCTOR")
    except redis.ResponseError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
        return DoctorVerdict("unavailable", f"MEMORY DOCTOR refused: {reason}", (), None)
    return parse_doctor(reply if isinstance(reply, str) else str(reply))


def _db_number(name: str) -> int:
    return int(name[2:]) if name.startswith("db") and name[2:].isdigit() else -1


def _int(info: dict[str, Any], key: str) -> int:
    value = info.get(key)
    return int(value) if isinstance(value, (int, float)) else 0
