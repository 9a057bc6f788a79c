"""What `backup run | list | verify` add for Redis Cluster (cluster backup sets), kept apart
from the commands' bodies: which nodes to back up, and the catalogue seen with sets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from redisops.errors import UsageError

if TYPE_CHECKING:
    from redisops.backup.clusterset import ClusterPlan, ClusterSet
    from redisops.cli.common import GlobalOptions
    from redisops.fleet.host import Host
    from redisops.render.output import Output
    from redisops.results import HostResult


def backup_sources(
    options: GlobalOptions, output: Output, kind: str
) -> tuple[list[Host], list[str], list[ClusterPlan]]:
    """The Redis hosts to back up, the sentinels skipped, and one plan per cluster selected.

    Cluster seeds are expanded; of each cluster only one node per shard is kept (see
    `choose_sources`), the others are named on stderr. UsageError for AOF on a cluster.
    """
    from redisops.backup.clusterset import choose_sources
    from redisops.cli.common import load_cluster_selection
    from redisops.fleet.selection import split_sentinels

    _, selection = load_cluster_selection(options, output)
    hosts = selection.hosts
    sentinels = list(split_sentinels(hosts, lacking="data set")[1])
    plans = []
    for cluster in selection.clusters.values():
        if not cluster.shards:
            continue  # no seed answered: the seeds are error rows
        if kind != "rdb":
            raise UsageError(
                f"--kind {kind} on cluster {cluster.name}: a cluster backup set is one RDB "
                "snapshot per shard",
                hint="use --kind rdb (the default) for a cluster",
            )
        plan = choose_sources(cluster, hosts, timeout=options.timeout, parallel=options.parallel)
        plans.append(plan)
        for note in plan.notes:
            output.warn(f"{cluster.name}: {note}")
        for source in plan.sources:
            output.note(
                f"{cluster.name} {source.shard}: backing up {source.host.name} ({source.why})"
            )
    chosen = {s.host.name for plan in plans for s in plan.sources}
    kept = [
        h
        for h in hosts
        if not h.is_sentinel
        and (h.node is None or h.discovery_error is not None or h.name in chosen)
    ]
    return kept, sentinels, plans


def record_cluster_sets(
    plans: list[ClusterPlan],
    results: list,
    dests: dict[str, Path],
    output: Output,
    options: GlobalOptions,
) -> list[HostResult[ClusterSet]]:
    """Record and check each cluster's set after the backups (its slot map asked again of
    its seeds); errors said on stderr."""
    from redisops.backup.catalogue import load_catalogue
    from redisops.backup.clusterset import record_sets
    from redisops.fleet.cluster import discover_clusters

    def rediscover(cluster):
        found = discover_clusters(
            cluster.seeds, [cluster.name], timeout=options.timeout, parallel=options.parallel
        )
        return found.clusters[cluster.name]

    rows = record_sets(
        plans, results, dests, lambda: load_catalogue(set(dests.values())), rediscover
    )
    for row in rows:
        if not row.ok:
            output.error(row.error)
    return rows


def catalogue_and_sets(options: GlobalOptions, output: Output, dest: Path | None):
    """The catalogue of the selected hosts and the sets of the selected clusters (everything
    when no --limit is given), read without asking any server: a catalogue is listed and
    verified offline, so cluster seeds are not expanded (nodes named `CLUSTER@ADDRESS` are
    found by their folder names)."""
    from redisops.backup.catalogue import catalogue_dirs, load_catalogue

    hosts, clusters = offline_selection(options, output)
    hosts = [h for h in hosts if not h.is_sentinel]
    if dest is None:
        hosts = [h for h in hosts if h.backup_dir]
        if not hosts:
            raise UsageError(
                "no backup catalogue: no selected host has a backup_dir",
                hint="pass --dest DIR, or set backup_dir in the inventory",
            )
    dirs = catalogue_dirs(dest, hosts)
    names = None
    if options.limit:
        names = {h.name for h in hosts} | node_folders(dirs.values(), clusters)
    catalogue = load_catalogue(set(dirs.values()), names)
    for problem in catalogue.problems:
        output.warn(problem)
    sets = catalogue_sets(dirs.values(), clusters if options.limit else None, output)
    return catalogue, sets


def offline_selection(options: GlobalOptions, output: Output) -> tuple[list[Host], set[str]]:
    """The hosts --limit selects, and the names of the clusters among them. A catalogue is
    read offline, so seeds stay plain hosts; only a `CLUSTER/...` pattern (a shard or role)
    asks the cluster which nodes it names."""
    from redisops.cli.common import load_cluster_selection
    from redisops.fleet.inventory import load_inventory, resolve_inventory_path
    from redisops.fleet.selection import select

    if "/" in (options.limit or ""):
        _, selection = load_cluster_selection(options, output)
        hosts = list(selection.hosts)
        return hosts, {str(h.cluster_name) for h in hosts if h.cluster_name}
    inventory = load_inventory(resolve_inventory_path(options.inventory))
    for warning in inventory.warnings:
        output.warn(warning)
    hosts = list(select(inventory, options.limit).hosts)
    clusters = {str(h.cluster_name) for h in hosts if h.cluster and h.cluster_name}
    return hosts, clusters


def node_folders(dirs, clusters: set[str]) -> set[str]:
    """Host folders of the catalogue named after nodes that discovery named `CLUSTER@ADDRESS`
    (no inventory entry): --limit CLUSTER selects their backups too."""
    found = set()
    for dest in set(dirs):
        if Path(dest).expanduser().is_dir():
            found |= {
                p.name
                for p in Path(dest).expanduser().iterdir()
                if p.is_dir() and p.name.partition("@")[0] in clusters and "@" in p.name
            }
    return found


def catalogue_sets(dirs, clusters: set[str] | None, output: Output) -> list[ClusterSet]:
    """The sets under the catalogue folders (of `clusters` only, when given)."""
    from redisops.backup.clusterset import load_sets

    sets, problems = load_sets({Path(d) for d in dirs}, clusters)
    for problem in problems:
        output.warn(problem)
    return sets


def set_rows(sets) -> list[HostResult[ClusterSet]]:
    """`backup list` rows of sets: a set whose last check failed is a failed row."""
    from redisops.results import HostResult

    return [HostResult(s.cluster, "", s.good, None if s.good else _set_failure(s), s) for s in sets]


def _set_failure(cluster_set) -> str:
    problems = cluster_set.verification.problems or ("no detail recorded",)
    return f"{cluster_set.set_id}: failed verification: {problems[0]}"


def verify_sets(sets, catalogue, output: Output) -> list[HostResult[ClusterSet]]:
    """Check each set (coverage, members, every key's slot), record the verdict, one row each;
    a failure is one line on stderr naming the key or the slots."""
    from redisops.backup.clusterset import check_set, record_set_check
    from redisops.results import HostResult

    rows = []
    for cluster_set in sets:
        checked, recorded = record_set_check(check_set(cluster_set, catalogue))
        if not recorded:
            output.warn(f"{checked.set_id}: set file not writable: the result is not recorded")
        error = None
        if not checked.good:
            error = f"{checked.set_id}: {checked.verification.problems[0]}"
            output.error(error)
        rows.append(HostResult(checked.cluster, "", checked.good, error, checked))
    return rows


def choose_to_verify(catalogue, sets, wanted: str | None):
    """(backups, sets) `backup verify` checks: everything for --all (`wanted` None), else the
    backup of that id, or the set of that id with its member backups."""
    from redisops.backup.clusterset import find_set

    if wanted is None:
        return list(catalogue.backups), list(sets)
    backup = next((b for b in catalogue.backups if b.backup_id == wanted), None)
    if backup is not None:
        return [backup], []
    found = find_set(sets, wanted)
    if found is None:
        raise UsageError(
            f"no backup or cluster backup set {wanted!r} in the catalogue",
            hint="see `redisops backup list` for ids",
        )
    members = {m.backup_id for m in found.members}
    return [b for b in catalogue.backups if b.backup_id in members], [found]
