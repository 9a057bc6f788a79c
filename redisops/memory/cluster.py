"""Memory of a Redis Cluster: per shard and cluster totals, from per-node summaries or reports.

Nodes carry their place from discovery (`Host.node`: cluster, shard, role). A shard's data is
its master's (replicas hold copies), so totals add masters' figures for `memory summary` and
the one report per shard for `memory report`. Imbalance is the largest shard over the mean
shard (1.0 is even), as `cluster status` reports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from redisops.fleet.cluster import Cluster
from redisops.fleet.fanout import HostResult
from redisops.fleet.host import ClusterNode, Host
from redisops.memory.slots import SlotView, merge_views


@dataclass(frozen=True)
class ShardMemory:
    """One shard: its master (inventory name), the node its figures come from, and them.

    `keys`/`bytes` are None when that node failed (`error` says why). For `memory summary`
    `bytes` is the master's used_memory and `maxmemory` its limit (0: none); for `memory
    report` `bytes` is what MEMORY USAGE added up, and `source` the node scanned.
    """

    shard: str
    master: str | None
    source: str | None
    slots: int
    keys: int | None
    bytes: int | None
    maxmemory: int | None = None
    used_percent: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClusterSlot:
    """One of a cluster's biggest slots, the shard that serves it, and its share of that
    shard's bytes (what moving the slot would take off the shard)."""

    slot: int
    shard: str | None
    keys: int
    bytes: int
    shard_share: float | None


@dataclass(frozen=True)
class ClusterMemory:
    """One cluster's shards (by shard name) and totals over the shards that answered.

    `complete` is false when a selected shard has no figures (its node failed or was not
    selected); totals then cover the others only. `slots` merges the shards' by-slot views
    (`memory report` only); `biggest_slots` are its biggest slots with their shard.
    """

    cluster: str
    shards: list[ShardMemory]
    complete: bool
    keys: int
    bytes: int
    keys_imbalance: float | None
    bytes_imbalance: float | None
    slots: SlotView | None = None
    biggest_slots: list[ClusterSlot] = field(default_factory=list)


def with_cluster_nodes(inventory_hosts: Sequence[Host], clusters: Iterable[Cluster]) -> list[Host]:
    """The inventory's hosts and every discovered node of `clusters` (each name once, the
    discovered node's entry winning): what a run knows, selected or not, e.g. the replicas
    a master can be scanned on."""
    nodes = {host.name: host for cluster in clusters for host in cluster.nodes}
    return [h for h in inventory_hosts if h.name not in nodes] + list(nodes.values())


def summary_clusters(hosts: Sequence[Host], results: Sequence[HostResult]) -> list[ClusterMemory]:
    """Per cluster, each shard's master figures from `memory summary` results."""
    by_name = {r.host: r for r in results}
    clusters: dict[str, dict[str, ShardMemory]] = {}
    for host in hosts:
        node = host.node
        if node is None:
            continue
        result = by_name.get(host.name)
        summary = result.data if result is not None and result.ok else None
        if node.role != "master":
            shard = _missing(node, "master not selected")
        elif summary is None:
            shard = _missing(node, result.error if result else "not read", master=host.name)
        else:
            shard = ShardMemory(
                shard=node.shard,
                master=host.name,
                source=host.name,
                slots=node.slot_count,
                keys=summary.keys,
                bytes=summary.used_memory,
                maxmemory=summary.maxmemory,
                used_percent=summary.used_percent,
            )
        _keep(clusters.setdefault(node.cluster, {}), shard)
    return [_rollup(name, shards) for name, shards in clusters.items()]


def report_clusters(hosts: Sequence[Host], results: Sequence[HostResult]) -> list[ClusterMemory]:
    """Per cluster, each shard's `memory report` (one scan per shard) and the merged slots."""
    by_name = {r.host: r for r in results}
    clusters: dict[str, dict[str, ShardMemory]] = {}
    views: dict[str, list[SlotView]] = {}
    for host in hosts:
        node = host.node
        if node is None:
            continue
        result = by_name.get(host.name)
        report = result.data if result is not None and result.ok else None
        master = host.name if node.role == "master" else None
        if result is None:  # a replica covered by its master's report
            shard = _missing(node, "no report for this shard")
        elif report is None:
            shard = _missing(node, result.error or "failed", master=master)
        else:
            shard = ShardMemory(
                shard=node.shard,
                master=master,
                source=report.scanned_host,
                slots=node.slot_count,
                keys=report.keys,
                bytes=report.bytes,
            )
            if report.slots is not None:
                views.setdefault(node.cluster, []).append(report.slots)
        _keep(clusters.setdefault(node.cluster, {}), shard)
    owners = _slot_owners(hosts)
    rollups = []
    for name, shards in clusters.items():
        rollup = _rollup(name, shards, merge_views(views[name]) if name in views else None)
        if rollup.slots is not None:
            rollup = replace(rollup, biggest_slots=_owned(rollup, owners.get(name, [])))
        rollups.append(rollup)
    return rollups


def _slot_owners(hosts: Sequence[Host]) -> dict[str, list[tuple[int, int, str]]]:
    """Per cluster, (first, last, shard) of every slot range, from discovery."""
    owners: dict[str, set[tuple[int, int, str]]] = {}
    for host in hosts:
        if host.node is not None:
            ranges = owners.setdefault(host.node.cluster, set())
            ranges.update((first, last, host.node.shard) for first, last in host.node.slots)
    return {name: sorted(ranges) for name, ranges in owners.items()}


def _owned(cluster: ClusterMemory, ranges: list[tuple[int, int, str]]) -> list[ClusterSlot]:
    shard_bytes = {s.shard: s.bytes for s in cluster.shards}
    slots = []
    for count in cluster.slots.biggest if cluster.slots else ():
        shard = next((name for first, last, name in ranges if first <= count.slot <= last), None)
        total = shard_bytes.get(shard) if shard else None
        share = round(count.bytes / total, 4) if total else None
        slots.append(ClusterSlot(count.slot, shard, count.keys, count.bytes, share))
    return slots


def _missing(node: ClusterNode, why: str, *, master: str | None = None) -> ShardMemory:
    return ShardMemory(node.shard, master, None, node.slot_count, None, None, error=why)


def _keep(shards: dict[str, ShardMemory], shard: ShardMemory) -> None:
    """Keep the entry with figures: any node's row may come first, one shard has one report."""
    known = shards.get(shard.shard)
    if known is None or (known.keys is None and (shard.keys is not None or shard.master)):
        shards[shard.shard] = shard


def _rollup(
    name: str, shards: dict[str, ShardMemory], slots: SlotView | None = None
) -> ClusterMemory:
    ordered = sorted(shards.values(), key=lambda s: _shard_order(s.shard))
    answered = [s for s in ordered if s.keys is not None and s.bytes is not None]
    return ClusterMemory(
        cluster=name,
        shards=ordered,
        complete=len(answered) == len(ordered),
        keys=sum(s.keys or 0 for s in answered),
        bytes=sum(s.bytes or 0 for s in answered),
        keys_imbalance=_imbalance([s.keys or 0 for s in answered]),
        bytes_imbalance=_imbalance([s.bytes or 0 for s in answered]),
        slots=slots,
    )


def _imbalance(values: list[int]) -> float | None:
    """max / mean (1.0: even); None with fewer than two shards or nothing in them."""
    if len(values) < 2 or not sum(values):
        return None
    return round(max(values) * len(values) / sum(values), 2)


def _shard_order(shard: str) -> tuple[int, str]:
    """shard-2 before shard-10."""
    number = shard.rpartition("-")[2]
    return (int(number), shard) if number.isdigit() else (1 << 30, shard)
