"""Redis Cluster discovery: seed entries of the inventory expanded into every node of a cluster.

The model (what every cluster-aware command builds on):

- **Seeds.** A host or group says `cluster: true`; each such host is a *seed*. Its
  `Host.cluster_name` names the cluster it seeds: the group whose vars set `cluster: true`, or,
  set on a host itself, the host's deepest group other than `all`, or the host's own name when
  it is in no group (redisops.fleet.inventory). Seeds with one name are one cluster.
- **Discovery** (`discover_clusters`) asks every seed of the named clusters, in parallel, for
  its view: `CLUSTER MYID` + `CLUSTER SHARDS` (Redis 7.0+, Valkey), `CLUSTER NODES` on 6.x.
  The view of the seed that most other seeds appear in (ties: inventory order) is the
  cluster's view; a seed whose node id is not in it belongs to another cluster (an error).
- **Nodes.** Every node the view announces becomes a `Host` with `Host.node` set (a
  `ClusterNode`: cluster, node id, shard name `shard-N` by first slot, shard id, role,
  master id, the shard's slot ranges, health as the view says). A node takes the inventory
  entry with the same `host` and `port` when there is one (its name, credentials, host access
  and groups win, plus the seed's groups), and a seed is the node with its own node id
  whatever address the cluster announces for it (kept as written: a TLS certificate may name
  it so); otherwise a node inherits everything from the seed
  entry (credentials, TLS, SSH/local access, data paths, tags, groups) and is named
  `CLUSTER@ADDRESS` (`cache@10.0.1.11:6379`). `Host.cluster_name` is set on every node.
- **Errors are rows, never gaps.** A seed that cannot be asked (unreachable, not in cluster
  mode, from another cluster) stays a host with `Host.discovery_error` set;
  `redisops.fleet.fanout.run_on_hosts` turns it into an error row without running the task.
  Announced nodes that are down stay nodes (health `fail`/`pfail`): the command's own
  connection fails and shows as that node's error row. When no seed answers, every seed is
  such an error row.
- **Where it runs.** `redisops.fleet.selection.select_hosts(..., discover=...)`, called by
  `load_selection` in `redisops/cli/common.py` for commands that opt in (`clusters=True`).
  Only clusters that the selection needs are discovered, so an inventory without `cluster`
  never touches the network to be listed. A command that does not understand clusters refuses
  a selection holding a seed (exit 2) rather than misreporting the cluster as standalone hosts.
- **Order.** `Discovery.hosts` is inventory order with each cluster's nodes placed where its
  first seed was: shard by shard (`shard-1` first), master first, replicas by address.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from redisops.errors import HostError
from redisops.fleet.host import ClusterNode, Host

SLOTS = 16384
NOT_CLUSTER = "cluster support disabled"  # Redis and Valkey, to CLUSTER in standalone mode
NO_SHARD = "none"  # the shard of a failed master that lost its slots to a failover


@dataclass(frozen=True)
class NodeView:
    """One node as a seed announces it (from CLUSTER SHARDS or a CLUSTER NODES line)."""

    node_id: str
    host: str  # the preferred endpoint (or ip); "" when the cluster knows no address
    port: int
    role: str  # master | replica
    master_id: str | None
    shard_id: str
    slots: tuple[tuple[int, int], ...]  # the shard's ranges (a replica carries its master's)
    health: str  # online | loading | fail | pfail


@dataclass(frozen=True)
class SeedView:
    """What one seed said: its own node id and every node it knows."""

    myself: str
    nodes: tuple[NodeView, ...]


@dataclass(frozen=True)
class Shard:
    name: str  # shard-1, shard-2… by first slot
    shard_id: str
    slots: tuple[tuple[int, int], ...]
    nodes: tuple[str, ...]  # host names, master first

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)


@dataclass(frozen=True)
class Cluster:
    """One discovered cluster; `seed` is None when no seed answered (then `nodes` is empty)."""

    name: str
    seed: str | None
    shards: tuple[Shard, ...]
    nodes: tuple[Host, ...]
    seed_errors: dict[str, str] = field(default_factory=dict)
    seeds: tuple[Host, ...] = ()  # the inventory's seed entries of this cluster


@dataclass(frozen=True)
class Discovery:
    """Every host after expansion (see the module docstring for the order) and the clusters.

    `not_cluster` names seeds that answered but are not in cluster mode (a usage error when
    such a seed is all that was selected)."""

    hosts: tuple[Host, ...]
    clusters: dict[str, Cluster]
    not_cluster: frozenset[str] = frozenset()


def format_slots(slots: Sequence[tuple[int, int]], *, most: int = 3) -> str:
    """`0-5460`, `0-99,200,300-399`; past `most` ranges, the first ones and how many more."""
    if not slots:
        return "no slots"
    shown = [f"{a}-{b}" if a != b else str(a) for a, b in slots[:most]]
    more = f",… ({len(slots)} ranges)" if len(slots) > most else ""
    return ",".join(shown) + more


def is_seed(host: Host) -> bool:
    return host.cluster and host.cluster_name is not None


def discover_clusters(
    all_hosts: Sequence[Host], names: Iterable[str], *, timeout: float, parallel: int
) -> Discovery:
    """Expand the seeds of the clusters `names` among `all_hosts` (the whole inventory).

    Never raises for a host: what goes wrong is a `discovery_error` on the seed at fault.
    """
    from redisops.fleet.fanout import run_on_hosts

    wanted = set(names)
    seeds = [h for h in all_hosts if is_seed(h) and h.cluster_name in wanted]
    results = run_on_hosts(seeds, lambda h: read_seed(h, timeout=timeout), parallel=parallel)
    views = {seed.name: result for seed, result in zip(seeds, results, strict=True)}

    clusters: dict[str, Cluster] = {}
    not_cluster: set[str] = set()
    for name in dict.fromkeys(h.cluster_name for h in seeds):
        members = [s for s in seeds if s.cluster_name == name]
        answered = {s.name: views[s.name].data for s in members if views[s.name].ok}
        errors = {s.name: str(views[s.name].error) for s in members if not views[s.name].ok}
        not_cluster |= {s for s, e in errors.items() if NOT_CLUSTER in e}
        clusters[name] = _build_cluster(name, members, answered, errors, all_hosts)

    return Discovery(_expand(all_hosts, clusters), clusters, frozenset(not_cluster))


def read_seed(seed: Host, *, timeout: float) -> SeedView:
    """Ask one seed for its view of the cluster; HostError when it cannot answer."""
    from redisops.fleet.resp import RespConnection

    connection = RespConnection(seed, timeout=timeout)
    try:
        try:
            myself = _text(connection.call("CLUSTER", "MYID"))
        except HostError as exc:
            if NOT_CLUSTER in exc.message:
                raise HostError(
                    f"{seed.address} is not in cluster mode ({NOT_CLUSTER}), "
                    f"but the inventory says `cluster: true` for {seed.name}",
                    hint="remove `cluster: true`, or point it at a node of the cluster",
                ) from None
            raise
        try:
            shards = connection.call("CLUSTER", "SHARDS")
        except HostError as exc:
            if "unknown subcommand" not in exc.message.lower():
                raise
            return SeedView(myself, nodes_from_lines(_text(connection.call("CLUSTER", "NODES"))))
        return SeedView(myself, nodes_from_shards(shards, tls=seed.tls is not None))
    finally:
        connection.close()


# --- parsing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES: a node as the answering node sees it."""

    node_id: str
    host: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    config_epoch: int
    link_state: str
    slots: tuple[tuple[int, int], ...]
    migrating: dict[int, str]  # slot -> destination node id (only on the `myself` line)
    importing: dict[int, str]  # slot -> source node id

    @property
    def role(self) -> str:
        return "master" if "master" in self.flags else "replica"

    @property
    def health(self) -> str:
        if "fail" in self.flags:
            return "fail"
        if "fail?" in self.flags:
            return "pfail"
        return "online"


def parse_nodes(text: str) -> list[NodeLine]:
    """CLUSTER NODES parsed; raises HostError on a line that is not the documented format."""
    out: list[NodeLine] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 8:
            raise HostError(f"unexpected CLUSTER NODES line: {line[:80]!r}")
        address = fields[1].split("@", 1)[0].split(",", 1)[0]
        host, _, port = address.rpartition(":")
        slots: list[tuple[int, int]] = []
        migrating: dict[int, str] = {}
        importing: dict[int, str] = {}
        for item in fields[8:]:
            if item.startswith("["):
                slot, arrow, peer = item.strip("[]").partition("-")
                (migrating if arrow and peer.startswith(">") else importing)[int(slot)] = peer[2:]
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        out.append(
            NodeLine(
                node_id=fields[0],
                host=host.strip("[]"),
                port=int(port) if port.isdigit() else 0,
                flags=frozenset(fields[2].split(",")),
                master_id=None if fields[3] == "-" else fields[3],
                config_epoch=int(fields[6]),
                link_state=fields[7],
                slots=tuple(slots),
                migrating=migrating,
                importing=importing,
            )
        )
    return out


def nodes_from_lines(text: str) -> tuple[NodeView, ...]:
    """A seed's view from CLUSTER NODES (6.x): a shard is a master and its replicas."""
    lines = parse_nodes(text)
    slots_of = {n.node_id: n.slots for n in lines if n.role == "master"}
    views = []
    for node in lines:
        shard = node.node_id if node.role == "master" else (node.master_id or node.node_id)
        views.append(
            NodeView(
                node_id=node.node_id,
                host=node.host,
                port=node.port,
                role=node.role,
                master_id=node.master_id if node.role == "replica" else None,
                shard_id=shard,
                slots=slots_of.get(shard, ()),
                health=node.health,
            )
        )
    return tuple(views)


def nodes_from_shards(reply: list, *, tls: bool) -> tuple[NodeView, ...]:
    """A seed's view from CLUSTER SHARDS (7.0+), as hiredis returns it (RESP2 flat pairs)."""
    views = []
    for shard in reply:
        fields = _pairs(shard)
        flat = [int(n) for n in fields.get("slots", [])]
        slots = tuple(zip(flat[0::2], flat[1::2], strict=True))
        nodes = [_pairs(node) for node in fields.get("nodes", [])]
        master = next((n for n in nodes if _text(n.get("role")) == "master"), None)
        master_id = _text(master["id"]) if master else None
        shard_id = _text(fields["id"]) if "id" in fields else master_id
        for node in nodes:
            role = "master" if _text(node.get("role")) == "master" else "replica"
            endpoint = _text(node.get("endpoint", b""))
            host = endpoint if endpoint and endpoint != "?" else _text(node.get("ip", b""))
            port = node.get("tls-port") if tls and "tls-port" in node else node.get("port")
            health = _text(node.get("health", b"online"))
            views.append(
                NodeView(
                    node_id=_text(node["id"]),
                    host=host,
                    port=int(port or 0),
                    role=role,
                    master_id=master_id if role == "replica" else None,
                    shard_id=shard_id or _text(node["id"]),
                    slots=slots,
                    health="fail" if health == "failed" else health,
                )
            )
    return tuple(views)


def _pairs(items: list) -> dict:
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- assembling -------------------------------------------------------------------------


def _build_cluster(
    name: str,
    seeds: list[Host],
    answered: dict[str, SeedView],
    errors: dict[str, str],
    all_hosts: Sequence[Host],
) -> Cluster:
    if not answered:
        return Cluster(name, None, (), (), errors, tuple(seeds))
    # The view most seeds are part of; a seed missing from it is from another cluster.
    order = [s.name for s in seeds if s.name in answered]
    known = {s: {n.node_id for n in answered[s].nodes} for s in order}
    reference = max(order, key=lambda s: sum(answered[o].myself in known[s] for o in order))
    for other in order:
        if answered[other].myself not in known[reference]:
            errors[other] = (
                f"seed of cluster {name!r} but in another cluster: its node id "
                f"{answered[other].myself[:8]} is not among the {len(known[reference])} "
                f"nodes {reference} knows"
            )
    seed = next(s for s in seeds if s.name == reference)
    view = answered[reference]
    known = _Known(
        by_address={(h.host, h.port): h for h in all_hosts},
        # A seed written by a name the cluster announces as an IP is still that node.
        by_id={answered[s.name].myself: s for s in seeds if s.name in answered},
    )

    groups: dict[str, list[NodeView]] = {}
    for node in view.nodes:
        groups.setdefault(node.shard_id, []).append(node)
    ordered = sorted(
        groups.values(),
        key=lambda ns: (not ns[0].slots, ns[0].slots[:1], _master_of(ns).node_id),
    )
    # A failed master whose slots went to its replica is a slotless group of its own (before
    # 7.2 nothing says which shard it left): it is in no shard until it rejoins as a replica.
    orphans = [ns for ns in ordered if not ns[0].slots and all(n.health == "fail" for n in ns)]
    shards: list[Shard] = []
    nodes: list[Host] = []
    for members in (ns for ns in ordered if not any(ns is o for o in orphans)):
        master = _master_of(members)
        replicas = sorted((n for n in members if n is not master), key=lambda n: (n.host, n.port))
        shard_name = f"shard-{len(shards) + 1}"
        hosts = [_node_host(name, shard_name, node, seed, known) for node in [master, *replicas]]
        shards.append(
            Shard(shard_name, master.shard_id, master.slots, tuple(h.name for h in hosts))
        )
        nodes.extend(hosts)
    for members in orphans:
        nodes.extend(_node_host(name, NO_SHARD, node, seed, known) for node in members)
    return Cluster(name, reference, tuple(shards), tuple(nodes), errors, tuple(seeds))


def _master_of(nodes: list[NodeView]) -> NodeView:
    return next((n for n in nodes if n.role == "master"), nodes[0])


@dataclass(frozen=True)
class _Known:
    """Inventory entries a node may be: by announced address, or (seeds) by node id."""

    by_address: dict[tuple[str, int], Host]
    by_id: dict[str, Host]


def _node_host(cluster: str, shard: str, node: NodeView, seed: Host, known: _Known) -> Host:
    entry = known.by_address.get((node.host, node.port))
    host, port = node.host, node.port
    if entry is None and node.node_id in known.by_id:
        entry = known.by_id[node.node_id]
        host, port = entry.host, entry.port  # as written: a TLS certificate names it so
    base = entry or seed
    groups = tuple(dict.fromkeys([*base.groups, *seed.groups]))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    membership = ClusterNode(
        cluster=cluster,
        node_id=node.node_id,
        shard=shard,
        shard_id=node.shard_id,
        role=node.role,
        master_id=node.master_id,
        slots=node.slots,
        health=node.health,
        seed=seed.name,
    )
    return dataclasses.replace(
        base,
        name=entry.name if entry else f"{cluster}@{address if host else node.node_id[:8]}",
        host=host,
        port=port,
        groups=groups,
        cluster_name=cluster,
        node=membership,
        discovery_error=None if host else f"the cluster knows no address for {node.node_id}",
    )


def _expand(all_hosts: Sequence[Host], clusters: dict[str, Cluster]) -> tuple[Host, ...]:
    """Inventory order; a cluster's nodes where its first seed was, seeds that are nodes
    (or inventory entries with a node's address) moved there, failed seeds kept in place."""
    placed = {h.name for c in clusters.values() for h in c.nodes}
    out: list[Host] = []
    emitted: set[str] = set()
    for host in all_hosts:
        cluster = clusters.get(host.cluster_name or "") if is_seed(host) else None
        if cluster is not None and cluster.name not in emitted:
            emitted.add(cluster.name)
            out.extend(cluster.nodes)
        if host.name in placed:
            continue
        if cluster is not None and host.name in cluster.seed_errors:
            error = cluster.seed_errors[host.name]
            if cluster.seed is None:
                error += f" (no seed of cluster {cluster.name!r} answered)"
            host = dataclasses.replace(host, discovery_error=error)
        out.append(host)
    return tuple(out)
