"""`--limit`: pick hosts by name or group, with globs and `!` exclusions, as Ansible does.

Clusters (redisops.fleet.cluster) add two things. A cluster's name selects every node of
it, as a group does; `CLUSTER/SELECTOR[/SELECTOR]` selects part of one, each selector a shard
(`shard-2`, globs allowed, or the start of a shard id) or a role (`masters`, `replicas`):
`cache/masters`, `cache/shard-2`, `cache/shard-2/replicas`, `!cache/replicas`. Discovery
runs only for the clusters a pattern can reach, so inventories without `cluster: true` are
selected without any network access.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from redisops.errors import UsageError
from redisops.fleet.host import Host
from redisops.fleet.inventory import Inventory, did_you_mean

if TYPE_CHECKING:
    from redisops.fleet.cluster import Cluster, Discovery

ROLES = {"masters": "master", "master": "master", "replicas": "replica", "replica": "replica"}


@dataclass(frozen=True)
class Selection:
    """The hosts --limit selects, and the clusters discovered on the way (by name)."""

    hosts: tuple[Host, ...]
    clusters: dict[str, Cluster] = field(default_factory=dict)
    not_cluster: frozenset[str] = frozenset()


def select_hosts(inventory: Inventory, limit: str | None) -> tuple[Host, ...]:
    """Hosts matching `limit` (comma-separated patterns), in inventory order, no discovery.

    A pattern matches host names and group names (a group brings all its hosts); `!pattern`
    removes hosts; only exclusions means "all hosts but these". Raises UsageError when a
    pattern matches nothing or nothing is left.
    """
    return select(inventory, limit).hosts


def select(
    inventory: Inventory,
    limit: str | None,
    *,
    discover: Callable[[set[str]], Discovery] | None = None,
) -> Selection:
    """select_hosts, with the seeds of the clusters it reaches expanded by `discover(names)`
    (without `discover`, seeds stay the plain hosts the inventory lists)."""
    patterns = [p.strip() for p in (limit or "").split(",") if p.strip()]
    includes = [p for p in patterns if not p.startswith("!")]
    excludes = [p[1:] for p in patterns if p.startswith("!")]
    seeds = {h.cluster_name for h in inventory.hosts if h.cluster and h.cluster_name}
    for pattern in (p for p in patterns if "/" in p):
        if not seeds or discover is None:
            why = (
                "no host says `cluster: true`"
                if not seeds
                else "this command does not work on Redis Cluster yet"
            )
            raise UsageError(f"--limit {pattern!r} selects part of a cluster, but {why}")
        if not all(pattern.lstrip("!").split("/")):
            raise UsageError(
                f"--limit {pattern!r}: expected CLUSTER/SHARD, CLUSTER/ROLE or "
                "CLUSTER/SHARD/ROLE (e.g. cache/shard-2, cache/masters)"
            )
    if discover is None or not seeds:
        return Selection(_static(inventory, includes, excludes, limit))

    needed: set[str] = set()
    static = set(_static_names(inventory, includes, excludes, strict=False))
    for host in inventory.hosts:
        if host.name in static and host.cluster and host.cluster_name:
            needed.add(host.cluster_name)
    for pattern in includes:
        if "/" in pattern:
            named = pattern.split("/", 1)[0]
            matched = {name for name in seeds if fnmatchcase(name, named)}
            if not matched:
                raise UsageError(
                    f"--limit {pattern!r}: no cluster named {named!r}"
                    f"{did_you_mean(named, seeds, most=3)}",
                    hint=f"clusters of the inventory: {', '.join(sorted(seeds))}",
                )
            needed |= matched
        elif not _matching(inventory, pattern):
            needed |= seeds  # perhaps the name of a node discovery will find
    if not needed:
        return Selection(_static(inventory, includes, excludes, limit))

    discovery = discover(needed)
    universe = discovery.hosts
    chosen: set[str] = set() if includes else {h.name for h in universe}
    for pattern in includes:
        matched = {h.name for h in universe if _matches(h, pattern)}
        if not matched:
            raise UsageError(
                f"--limit {pattern!r} matches no host, group or cluster node"
                f"{did_you_mean(pattern, [h.name for h in universe], most=3)}",
                hint="see `redisops inventory list` for names",
            )
        chosen |= matched
    for pattern in excludes:
        chosen -= {h.name for h in universe if _matches(h, pattern)}
    selected = tuple(h for h in universe if h.name in chosen)
    if not selected:
        raise UsageError(f"--limit {limit!r} leaves no host")
    reached = {h.cluster_name for h in selected if h.cluster_name}
    clusters = {n: c for n, c in discovery.clusters.items() if n in reached}
    return Selection(selected, clusters, discovery.not_cluster & {h.name for h in selected})


def _static(
    inventory: Inventory, includes: list[str], excludes: list[str], limit: str | None
) -> tuple[Host, ...]:
    chosen = _static_names(inventory, includes, excludes, strict=True)
    selected = tuple(h for h in inventory.hosts if h.name in chosen)
    if not selected:
        raise UsageError(f"--limit {limit!r} leaves no host")
    return selected


def _static_names(
    inventory: Inventory, includes: list[str], excludes: list[str], *, strict: bool
) -> set[str]:
    chosen: set[str] = set() if includes else {h.name for h in inventory.hosts}
    for pattern in includes:
        matched = _matching(inventory, pattern)
        if not matched and strict:
            names = [h.name for h in inventory.hosts] + list(inventory.groups)
            raise UsageError(
                f"--limit {pattern!r} matches no host or group"
                f"{did_you_mean(pattern, names, most=3)}",
                hint="see `redisops inventory list` for names",
            )
        chosen |= matched
    for pattern in excludes:
        chosen -= _matching(inventory, pattern)
    return chosen


def _matching(inventory: Inventory, pattern: str) -> set[str]:
    """Names of inventory hosts matching a plain pattern: by name, group or cluster name."""
    names = {h.name for h in inventory.hosts if fnmatchcase(h.name, pattern)}
    for group, members in inventory.groups.items():
        if fnmatchcase(group, pattern):
            names.update(members)
    names.update(
        h.name
        for h in inventory.hosts
        if h.cluster and h.cluster_name and fnmatchcase(h.cluster_name, pattern)
    )
    return names


def _matches(host: Host, pattern: str) -> bool:
    """Whether a host after discovery matches a pattern (plain or CLUSTER/SELECTOR...)."""
    if "/" not in pattern:
        return (
            fnmatchcase(host.name, pattern)
            or any(fnmatchcase(group, pattern) for group in host.groups)
            or (host.cluster_name is not None and fnmatchcase(host.cluster_name, pattern))
        )
    name, *selectors = pattern.split("/")
    if host.cluster_name is None or not fnmatchcase(host.cluster_name, name):
        return False
    node = host.node
    if node is None:  # a seed discovery could not use: shown as its error row
        return host.discovery_error is not None
    for selector in selectors:
        if selector in ROLES:
            if node.role != ROLES[selector]:
                return False
        elif not fnmatchcase(node.shard, selector) and not (
            len(selector) >= 4 and node.shard_id.startswith(selector)
        ):
            return False
    return True


def split_sentinels(
    hosts: Sequence[Host], *, lacking: str
) -> tuple[tuple[Host, ...], tuple[str, ...]]:
    """The Redis hosts among `hosts`, and the names of the Sentinels left out.

    For commands that work on a Redis server's own state, which a Sentinel does not have;
    `lacking` names it for the message ("data set", "Redis configuration"). Raises UsageError
    when only Sentinels were selected.
    """
    redis_hosts = tuple(host for host in hosts if not host.is_sentinel)
    sentinels = tuple(host.name for host in hosts if host.is_sentinel)
    if not redis_hosts:
        raise UsageError(
            f"no Redis host selected: Sentinels have no {lacking} ({len(sentinels)} selected)",
            hint="select Redis hosts with --limit",
        )
    return redis_hosts, sentinels
