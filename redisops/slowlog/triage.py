"""`slowlog triage`: collect every host's slowlog in parallel, digest it, advise.

Returns data only; the caller renders it and saves the new bookmarks (`--state`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from redisops.fleet.fanout import HostResult, run_on_hosts
from redisops.fleet.host import ClusterNode, Host
from redisops.slowlog.advice import host_notes, host_warnings, settings_hints
from redisops.slowlog.collect import (
    Bookmark,
    HostCapture,
    LatencyEvent,
    SlowlogSettings,
    capture_slowlog,
)
from redisops.slowlog.digest import Digest, FingerprintStats, digest_entries


@dataclass(frozen=True)
class HostSlowlog:
    """One host's part of the triage: the `data` of its result row.

    `log_length` is what the buffer held; `entries` what was digested (new since the last
    run with --state, inside the window, without redisops' own). `since_last` and `missed`
    tell how this run follows the last one (see redisops.slowlog.collect).
    """

    role: str
    run_id: str
    settings: SlowlogSettings
    latency: tuple[LatencyEvent, ...]
    log_length: int
    entries: int
    since_last: str
    missed: int
    reset: bool
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    fingerprints: tuple[FingerprintStats, ...]
    # Nodes of a Redis Cluster only (None elsewhere): its cluster and shard.
    cluster: str | None = None
    shard: str | None = None


@dataclass(frozen=True)
class Triage:
    """The fleet's digest, one result row per host, advice, and the bookmarks to save."""

    results: tuple[HostResult[HostSlowlog], ...]
    digest: Digest
    hints: tuple[str, ...]
    bookmarks: dict[str, Bookmark]


def triage_slowlogs(
    hosts: Sequence[Host],
    *,
    timeout: float,
    parallel: int,
    bookmarks: Mapping[str, Bookmark] | None = None,
    reset: bool = False,
    since: int | None = None,
    until: int | None = None,
    sort: str = "total",
    top: int | None = 20,
    show_args: bool = False,
) -> Triage:
    """Collect and digest the slowlogs of `hosts` (Redis hosts; Sentinels have none).

    Nodes of a Redis Cluster are digested with the rest, as one fleet; each fingerprint
    names the shards it was seen on (`cluster/shard`) beside the hosts.

    With `bookmarks` (incremental mode) only entries after each host's bookmark count, and
    the returned bookmarks are the old ones updated for every host that answered. With
    `reset`, each host's log is emptied in the same transaction that reads it.
    """
    incremental = bookmarks is not None
    known = dict(bookmarks or {})

    def collect(host: Host) -> HostCapture:
        return capture_slowlog(host, timeout=timeout, after=known.get(host.name), reset=reset)

    captured = run_on_hosts(hosts, collect, parallel=parallel)
    captures = {r.host: r.data for r in captured if r.data is not None}
    digest = digest_entries(
        {name: capture.entries for name, capture in captures.items()},
        sort=sort,
        top=top,
        since=since,
        until=until,
        show_args=show_args,
        key_tables={name: capture.keys for name, capture in captures.items()},
    )
    places = {h.name: h.node for h in hosts if h.node is not None}
    digest = with_shards(digest, {name: shard_label(node) for name, node in places.items()})
    results = tuple(
        r
        if r.data is None
        else HostResult(
            r.host,
            r.address,
            r.ok,
            r.error,
            _host_part(r.host, r.data, digest, incremental, places.get(r.host)),
        )
        for r in captured
    )
    shape_hints = tuple(f"{s.fingerprint}: {s.hint}" for s in digest.fingerprints if s.hint)
    return Triage(
        results=results,
        digest=digest,
        hints=shape_hints + settings_hints(captures, incremental=incremental),
        bookmarks=known | {name: capture.bookmark for name, capture in captures.items()},
    )


def shard_label(node: ClusterNode) -> str:
    """`cluster/shard`, unique across the clusters of one run."""
    return f"{node.cluster}/{node.shard}"


def with_shards(digest: Digest, shards: Mapping[str, str]) -> Digest:
    """`digest` with each fingerprint's shards named, from the hosts it was seen on."""
    if not shards:
        return digest

    def named(stats: FingerprintStats) -> FingerprintStats:
        seen = dict.fromkeys(shards[h] for h in stats.hosts if h in shards)
        return replace(stats, shards=tuple(sorted(seen)))

    return replace(
        digest,
        fingerprints=tuple(map(named, digest.fingerprints)),
        by_host={host: tuple(map(named, rows)) for host, rows in digest.by_host.items()},
    )


def _host_part(
    name: str,
    capture: HostCapture,
    digest: Digest,
    incremental: bool,
    node: ClusterNode | None,
) -> HostSlowlog:
    return HostSlowlog(
        role=capture.role,
        run_id=capture.run_id,
        settings=capture.settings,
        latency=capture.latency,
        log_length=capture.log_length,
        entries=digest.entries_by_host.get(name, 0),
        since_last=capture.since_last,
        missed=capture.missed,
        reset=capture.reset,
        warnings=host_warnings(capture, incremental=incremental),
        notes=host_notes(capture),
        fingerprints=digest.by_host.get(name, ()),
        cluster=node.cluster if node else None,
        shard=node.shard if node else None,
    )
