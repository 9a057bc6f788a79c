"""`cluster status`: what `redis-cli --cluster check` checks, plus load per shard.

Every node of each cluster is read once, in parallel, over one plain RESP connection: CLUSTER
NODES (its view of the slot map, epochs and flags), CLUSTER INFO and INFO, pipelined; masters
holding keys then count keys per slot they own (COUNTKEYSINSLOT, pipelined). The verdict is
built from all the views together, so a node that disagrees, or that others flag as failing,
is named; a node that cannot be read is an error row and a problem, never a gap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from redisops.errors import HostError
from redisops.fleet.cluster import SLOTS, Cluster, NodeLine, Shard, parse_nodes
from redisops.fleet.fanout import HostResult, run_on_hosts
from redisops.fleet.host import Host
from redisops.fleet.server import parse_info, server_identity
from redisops.interrupt import raise_if_stopped

BUSIEST = 5  # slots listed by keys


@dataclass(frozen=True)
class NodeReading:
    """One node's own answers: its view of the cluster and its load."""

    node_id: str
    view: tuple[NodeLine, ...]
    cluster_state: str
    known_nodes: int
    role: str  # master | replica, as the node itself says
    version: str
    keys: int
    used_memory: int
    ops_per_sec: int
    master_link_status: str | None  # replicas only
    slot_keys: dict[int, int] = field(default_factory=dict)  # slot -> keys, non-zero only


@dataclass(frozen=True)
class NodeRow:
    """A node's row of `cluster status` (its `data` in the JSON)."""

    cluster: str
    shard: str | None
    node_id: str | None
    role: str | None  # as the node itself says; the discovered role when it did not answer
    health: str  # online | pfail | fail: the worst flag any answering node gives it; unknown
    cluster_state: str | None
    version: str | None
    keys: int | None
    used_memory: int | None
    ops_per_sec: int | None
    master_link_status: str | None


@dataclass(frozen=True)
class Problem:
    check: str  # coverage, open-slot, slot-map, config-epoch, fail, pfail, unreachable,
    # no-replica, cluster-state, replica-link, seeds
    message: str


@dataclass(frozen=True)
class ShardStatus:
    name: str
    shard_id: str
    slots: tuple[tuple[int, int], ...]
    slot_count: int
    master: str | None
    replicas: tuple[str, ...]
    keys: int | None
    used_memory: int | None
    ops_per_sec: int | None


@dataclass(frozen=True)
class ClusterStatus:
    """The verdict on one cluster; `healthy` is true when `problems` is empty."""

    cluster: str
    seed: str | None
    healthy: bool
    problems: tuple[Problem, ...]
    nodes: int
    nodes_answering: int
    slots_covered: int
    shards: tuple[ShardStatus, ...]
    imbalance: dict[str, float | None]  # keys, used_memory, ops_per_sec: max / mean
    busiest_slots: tuple[dict, ...]  # {slot, keys, shard}
    node_rows: tuple[HostResult[NodeRow], ...] = field(default=(), repr=False)


def cluster_status(cluster: Cluster, *, timeout: float, parallel: int) -> ClusterStatus:
    """Read every node of `cluster` and judge it (never raises for a node)."""
    readings = run_on_hosts(
        list(cluster.nodes), lambda h: read_node(h, timeout=timeout), parallel=parallel
    )
    return assess(cluster, readings)


def read_node(host: Host, *, timeout: float) -> NodeReading:
    """One node's view and load; HostError when it cannot be read."""
    import hiredis

    from redisops.fleet.resp import RespConnection

    connection = RespConnection(host, timeout=timeout)
    try:
        connection.send(
            hiredis.pack_command(("CLUSTER", "NODES"))
            + hiredis.pack_command(("CLUSTER", "INFO"))
            + hiredis.pack_command(("INFO",))
        )
        replies = connection.replies(3)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise HostError(f"{host.address} replied with an error: {reply}")
        view = tuple(parse_nodes(replies[0].decode()))
        info = parse_info(replies[2])
        state = parse_info(replies[1])
        myself = next((n for n in view if "myself" in n.flags), None)
        if myself is None:
            raise HostError(f"{host.address}: CLUSTER NODES has no `myself` line")
        keys = sum(_db_keys(value) for name, value in info.items() if _is_db(name))
        role = "replica" if info.get("role") == "slave" else "master"
        slot_keys: dict[int, int] = {}
        if role == "master" and keys and myself.slots:
            raise_if_stopped()
            slot_keys = _count_keys(connection, myself.slots)
        return NodeReading(
            node_id=myself.node_id,
            view=view,
            cluster_state=state.get("cluster_state", "?"),
            known_nodes=int(state.get("cluster_known_nodes", 0)),
            role=role,
            version=server_identity(info).version,
            keys=keys,
            used_memory=int(info.get("used_memory", 0)),
            ops_per_sec=int(info.get("instantaneous_ops_per_sec", 0)),
            master_link_status=info.get("master_link_status") if role == "replica" else None,
            slot_keys=slot_keys,
        )
    finally:
        connection.close()


def _count_keys(connection, slots: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Keys per slot over `slots`, one pipelined COUNTKEYSINSLOT per slot."""
    import hiredis

    numbers = [slot for first, last in slots for slot in range(first, last + 1)]
    connection.send(
        b"".join(hiredis.pack_command(("CLUSTER", "COUNTKEYSINSLOT", n)) for n in numbers)
    )
    counts = connection.replies(len(numbers))
    return {n: c for n, c in zip(numbers, counts, strict=True) if isinstance(c, int) and c}


def _is_db(name: str) -> bool:
    return name.startswith("db") and name[2:].isdigit()


def _db_keys(value: str) -> int:
    fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    return int(fields.get("keys", 0))


# --- the verdict ------------------------------------------------------------------------


def assess(cluster: Cluster, rows: Sequence[HostResult[NodeReading]]) -> ClusterStatus:
    """Judge a cluster from its nodes' readings (pure: no network)."""
    problems: list[Problem] = []
    names = {h.node.node_id: h.name for h in cluster.nodes if h.node is not None}
    nodes = {h.name for h in cluster.nodes}
    for seed, error in cluster.seed_errors.items():
        if seed not in nodes:  # a node's own failure is its row's problem, reported once
            problems.append(Problem("seeds", f"seed {seed}: {error}"))
    if cluster.seed is None:  # every seed is an error row: nothing else can be known
        rows = tuple(
            HostResult(s.name, s.address, False, cluster.seed_errors.get(s.name), _unknown(cluster))
            for s in cluster.seeds
        )
        return ClusterStatus(cluster.name, None, False, tuple(problems), 0, 0, 0, (), {}, (), rows)

    readings = {r.host: r.data for r in rows if r.ok and r.data is not None}
    for row in rows:
        if not row.ok:
            problems.append(Problem("unreachable", f"{row.host} {row.address}: {row.error}"))

    def named(node_id: str) -> str:
        return names.get(node_id) or node_id[:8]

    views = {host: reading.view for host, reading in readings.items()}
    maps = {host: _slot_map_of(view) for host, view in views.items()}
    majority = _majority(maps)
    problems += _coverage(maps)
    problems += _disagreements(maps, majority, named)
    problems += _epochs(views, named)
    problems += _open_slots(views, named)
    problems += _failures(views, named)
    states: dict[str, list[str]] = {}
    for host, reading in readings.items():
        if reading.cluster_state != "ok":
            states.setdefault(reading.cluster_state, []).append(host)
    for state, hosts in states.items():
        where = f"{_count(len(hosts), 'node')} ({_listed(hosts)})"
        problems.append(Problem("cluster-state", f"cluster_state:{state} on {where}"))
    for host, reading in readings.items():
        if reading.role == "replica" and reading.master_link_status != "up":
            problems.append(
                Problem(
                    "replica-link",
                    f"{host} (replica) has master_link_status:{reading.master_link_status}",
                )
            )
    reference = views.get(cluster.seed) or next(iter(views.values()), ())
    problems += _lonely_masters(reference, named)

    shards = tuple(_shard_status(s, readings) for s in cluster.shards)
    return ClusterStatus(
        cluster=cluster.name,
        seed=cluster.seed,
        healthy=not problems,
        problems=tuple(problems),
        nodes=len(rows),
        nodes_answering=len(readings),
        slots_covered=_covered(majority) if maps else 0,
        shards=shards,
        imbalance={
            metric: _imbalance([getattr(s, metric) for s in shards if s.slot_count])
            for metric in ("keys", "used_memory", "ops_per_sec")
        },
        busiest_slots=_busiest(readings, shards),
        node_rows=tuple(_node_row(cluster, row, views) for row in rows),
    )


def _unknown(cluster: Cluster) -> NodeRow:
    return NodeRow(cluster.name, None, None, None, "unknown", None, None, None, None, None, None)


def _node_row(
    cluster: Cluster, row: HostResult[NodeReading], views: dict[str, tuple[NodeLine, ...]]
) -> HostResult[NodeRow]:
    host = next(h for h in cluster.nodes if h.name == row.host)
    node, reading = host.node, row.data
    node_id = reading.node_id if reading else (node.node_id if node else None)
    flags = {f for view in views.values() for n in view if n.node_id == node_id for f in n.flags}
    health = "fail" if "fail" in flags else "pfail" if "fail?" in flags else "online"
    data = NodeRow(
        cluster=cluster.name,
        shard=node.shard if node else None,
        node_id=node_id,
        role=reading.role if reading else (node.role if node else None),
        health=health,
        cluster_state=reading.cluster_state if reading else None,
        version=reading.version if reading else None,
        keys=reading.keys if reading else None,
        used_memory=reading.used_memory if reading else None,
        ops_per_sec=reading.ops_per_sec if reading else None,
        master_link_status=reading.master_link_status if reading else None,
    )
    return HostResult(row.host, row.address, row.ok, row.error, data)


SlotMap = tuple[tuple[int, int, str], ...]  # (first, last, owner id), sorted: one view's map


def _slot_map_of(view: Sequence[NodeLine]) -> SlotMap:
    """A view's slot map, compact: comparing two is cheap, and the per-slot form is built
    only for a view that differs (16384 entries per view made status 4x slower)."""
    masters = [n for n in view if n.role == "master"]
    return tuple(sorted((first, last, n.node_id) for n in masters for first, last in n.slots))


def _majority(maps: dict[str, SlotMap]) -> SlotMap:
    return Counter(maps.values()).most_common(1)[0][0] if maps else ()


def _missing(slot_map: SlotMap) -> list[tuple[int, int]]:
    """The ranges no master claims."""
    gaps, covered_to = [], -1
    for first, last, _ in slot_map:
        if first > covered_to + 1:
            gaps.append((covered_to + 1, first - 1))
        covered_to = max(covered_to, last)
    if covered_to < SLOTS - 1:
        gaps.append((covered_to + 1, SLOTS - 1))
    return gaps


def _covered(slot_map: SlotMap) -> int:
    return SLOTS - sum(last - first + 1 for first, last in _missing(slot_map))


def _owners(slot_map: SlotMap) -> list[str]:
    owners = [""] * SLOTS
    for first, last, node_id in slot_map:
        owners[first : last + 1] = [node_id] * (last - first + 1)
    return owners[:SLOTS]


def _coverage(maps: dict[str, SlotMap]) -> list[Problem]:
    """Uncovered slots, once per distinct set, naming the nodes that see it."""
    seen: dict[tuple[tuple[int, int], ...], list[str]] = {}
    for host, slot_map in maps.items():
        missing = tuple(_missing(slot_map))
        if missing:
            seen.setdefault(missing, []).append(host)
    out = []
    for missing, hosts in seen.items():
        who = "every node" if len(hosts) == len(maps) else _listed(hosts)
        count = sum(last - first + 1 for first, last in missing)
        out.append(
            Problem(
                "coverage",
                f"{count} of {SLOTS} slots not covered ({_ranges_of(missing)}), as {who} sees it",
            )
        )
    return out


def _disagreements(maps: dict[str, SlotMap], majority: SlotMap, named) -> list[Problem]:
    out = []
    theirs_by_slot = _owners(majority)
    for host, slot_map in maps.items():
        if slot_map == majority:
            continue
        mine_by_slot = _owners(slot_map)
        differ = [s for s in range(SLOTS) if mine_by_slot[s] != theirs_by_slot[s]]
        if not differ:  # the same map, written in other ranges
            continue
        first = differ[0]
        mine = named(mine_by_slot[first]) if mine_by_slot[first] else "no node"
        theirs = named(theirs_by_slot[first]) if theirs_by_slot[first] else "no node"
        out.append(
            Problem(
                "slot-map",
                f"{host} disagrees with the others on {_count(len(differ), 'slot')}: "
                f"slot {first} is {mine}'s to it, {theirs}'s to the others",
            )
        )
    return out


def _epochs(views: dict[str, tuple[NodeLine, ...]], named) -> list[Problem]:
    """Every node sees the same config epoch for each master; no two masters share one."""
    seen: dict[str, Counter] = {}
    for view in views.values():
        for node in view:
            if node.role == "master":
                seen.setdefault(node.node_id, Counter())[node.config_epoch] += 1
    out = []
    agreed: dict[str, int] = {}
    for node_id, epochs in seen.items():
        agreed[node_id] = epochs.most_common(1)[0][0]
        if len(epochs) > 1:
            listed = ", ".join(f"{e} ({_count(n, 'node')})" for e, n in sorted(epochs.items()))
            out.append(
                Problem("config-epoch", f"nodes disagree on {named(node_id)}'s epoch: {listed}")
            )
    holders: dict[int, list[str]] = {}
    for view in views.values():
        for node in view:
            if node.role == "master" and node.slots:
                holders.setdefault(agreed[node.node_id], [])
                if node.node_id not in holders[agreed[node.node_id]]:
                    holders[agreed[node.node_id]].append(node.node_id)
    for epoch, ids in sorted(holders.items()):
        if len(ids) > 1:
            who = " and ".join(named(i) for i in ids)
            out.append(Problem("config-epoch", f"config epoch {epoch} is shared by {who}"))
    return out


def _open_slots(views: dict[str, tuple[NodeLine, ...]], named) -> list[Problem]:
    out = []
    for host, view in views.items():
        myself = next(n for n in view if "myself" in n.flags)
        for slot, peer in sorted(myself.migrating.items()):
            out.append(
                Problem("open-slot", f"slot {slot} is migrating from {host} to {named(peer)}")
            )
        for slot, peer in sorted(myself.importing.items()):
            out.append(
                Problem("open-slot", f"slot {slot} is importing into {host} from {named(peer)}")
            )
    return out


def _failures(views: dict[str, tuple[NodeLine, ...]], named) -> list[Problem]:
    fail: Counter = Counter()
    pfail: Counter = Counter()
    for view in views.values():
        for node in view:
            if "fail" in node.flags:
                fail[node.node_id] += 1
            elif "fail?" in node.flags:
                pfail[node.node_id] += 1
    out = [
        Problem("fail", f"{named(i)} is FAIL (flagged by {n} of {len(views)} nodes)")
        for i, n in fail.items()
    ]
    out += [
        Problem("pfail", f"{named(i)} is PFAIL, suspected by {n} of {len(views)} nodes")
        for i, n in pfail.items()
        if i not in fail
    ]
    return out


def _lonely_masters(view: Sequence[NodeLine], named) -> list[Problem]:
    healthy = Counter(
        n.master_id for n in view if n.role == "replica" and not {"fail", "fail?"} & n.flags
    )
    return [
        Problem(
            "no-replica",
            f"{named(n.node_id)} (master of {_ranges_of(n.slots)}) has no "
            "working replica: losing it loses its slots",
        )
        for n in view
        if n.role == "master" and n.slots and not healthy[n.node_id] and "fail" not in n.flags
    ]


def _shard_status(shard: Shard, readings: dict[str, NodeReading]) -> ShardStatus:
    answering = [h for h in shard.nodes if h in readings and readings[h].role == "master"]
    master = answering[0] if answering else (shard.nodes[0] if shard.nodes else None)
    replicas = tuple(h for h in shard.nodes if h != master)
    reading = readings.get(master) if master else None
    return ShardStatus(
        name=shard.name,
        shard_id=shard.shard_id,
        slots=shard.slots,
        slot_count=shard.slot_count,
        master=master,
        replicas=replicas,
        keys=reading.keys if reading else None,
        used_memory=reading.used_memory if reading else None,
        ops_per_sec=reading.ops_per_sec if reading else None,
    )


def _imbalance(values: list[int | None]) -> float | None:
    """max / mean over shards; None when a figure is missing or all are zero."""
    if not values or any(v is None for v in values):
        return None
    mean = sum(values) / len(values)
    return round(max(values) / mean, 2) if mean else None


def _busiest(readings: dict[str, NodeReading], shards: Sequence[ShardStatus]) -> tuple[dict, ...]:
    import heapq

    counts: dict[int, int] = {}
    for reading in readings.values():
        counts.update(reading.slot_keys)
    # Most keys first, the lower slot on a tie; plain tuples, no key function per slot.
    top = heapq.nlargest(BUSIEST, ((keys, -slot) for slot, keys in counts.items()))
    return tuple({"slot": -s, "keys": k, "shard": _shard_of(-s, shards)} for k, s in top)


def _shard_of(slot: int, shards: Sequence[ShardStatus]) -> str | None:
    return next((s.name for s in shards if any(a <= slot <= b for a, b in s.slots)), None)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _listed(names: Sequence[str], most: int = 4) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _ranges_of(ranges: Sequence[tuple[int, int]], most: int = 3) -> str:
    from redisops.fleet.cluster import format_slots

    return format_slots(ranges, most=most)
