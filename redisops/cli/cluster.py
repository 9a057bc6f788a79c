"""`redisops cluster status`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from redisops.cli.common import (
    DryRunOption,
    YesOption,
    global_options,
    load_cluster_selection,
    make_output,
)
from redisops.cli.groups import command_group
from redisops.errors import HostError, UsageError
from redisops.exitcode import exit_code

app = command_group("cluster")


@app.command()
def status(ctx: typer.Context) -> int:
    """Health and load of each selected Redis Cluster.

    What `redis-cli --cluster check` checks (all 16384 slots covered, no slot migrating or
    importing, every node agreeing on the slot map and config epochs, FAIL and PFAIL nodes)
    plus masters without a working replica, cluster_state and replica links on every node,
    and per shard keys, used memory and ops/s with their imbalance (max/mean) and the slots
    with the most keys. Every node of a cluster is read, whatever part --limit selects. Exit
    1 when any cluster has a problem (one line each) or a node does not answer.
    """
    from redisops.cluster.status import cluster_status
    from redisops.render.cluster import status_summary, status_view

    options = global_options(ctx)
    output = make_output(options)
    _, selection = load_cluster_selection(options, output)
    if not selection.clusters:
        raise UsageError(
            "no cluster selected: no selected host says `cluster: true`",
            hint="mark a seed node or its group with `cluster: true` in the inventory",
        )
    outside = [host.name for host in selection.hosts if host.cluster_name is None]
    if outside:
        output.warn(
            f"{len(outside)} selected host(s) in no cluster, left out: {', '.join(outside[:5])}"
            + (", …" if len(outside) > 5 else "")
        )
    statuses = [
        cluster_status(cluster, timeout=options.timeout, parallel=options.parallel)
        for cluster in selection.clusters.values()
    ]
    rows = [row for status in statuses for row in status.node_rows]
    output.host_results(
        "cluster status",
        rows,
        lambda _rows: status_view(output, statuses),
        summary=status_summary(statuses),
        noun="nodes",
    )
    unhealthy = [s.cluster for s in statuses if not s.healthy]
    if unhealthy:
        output.warn(f"unhealthy: {', '.join(unhealthy)}")
    return exit_code(rows, flagged=unhealthy)


@app.command("add-node")
def add_node(
    ctx: typer.Context,
    new: Annotated[
        str,
        typer.Argument(
            metavar="NEW", help="The inventory host to add: an empty, cluster-enabled server."
        ),
    ],
    cluster: Annotated[
        str,
        typer.Option(
            "--cluster", metavar="NAME", help="The cluster to add it to (its inventory name)."
        ),
    ],
    replica_of: Annotated[
        str | None,
        typer.Option(
            "--replica-of",
            metavar="MASTER",
            help="Add it as a replica of this master: a node name, a shard (shard-2) or a "
            "node id. Without it, the node joins as a master without slots.",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(min=1, help="Seconds to wait for the cluster to know it, and for the link."),
    ] = 60.0,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            help="Where to append the run's record [default: cluster-changes.jsonl beside "
            "config apply's audit log].",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Add an empty server to a cluster: as a master without slots, or as a replica.

    Refused (exit 3) when NEW holds keys, is not cluster-enabled, already knows other nodes or
    serves slots, does not take the cluster's password (masterauth included), or when
    --replica-of names no master. Then CLUSTER MEET from NEW, a bounded wait until every node
    knows it, and with --replica-of CLUSTER REPLICATE and a wait for the link. A new master
    gets slots from `cluster rebalance`. Recorded in the audit log.
    """
    from redisops.cli.change import carry_out
    from redisops.cluster.addnode import add_node_audit, apply_add_node, plan_add_node
    from redisops.render.cluster_addnode import add_node_plan_view, add_node_result_view
    from redisops.tuning.auditlog import AuditLog, default_audit_log

    options = global_options(ctx)
    output = make_output(options)
    inventory, found = _one_cluster(options, output, cluster)
    host = next((h for h in inventory.hosts if h.name == new and not h.is_sentinel), None)
    if host is None:
        raise UsageError(f"{new} is not a Redis host of the inventory")
    plan = plan_add_node(found, host, replica_of=replica_of, timeout=options.timeout, wait=wait)
    log_path = audit_log or default_audit_log().with_name("cluster-changes.jsonl")

    def audit(outcome) -> str:
        log = AuditLog(log_path)
        try:
            log.append(add_node_audit(plan.rows[0].data, outcome))
        finally:
            log.close()
        return f"recorded in {log_path}"

    return carry_out(
        output,
        plan,
        lambda: apply_add_node(plan, found, host, timeout=options.timeout, wait=wait),
        view=lambda rows: add_node_plan_view(output, rows),
        result_view=lambda rows: add_node_result_view(output, rows),
        yes=yes,
        dry_run=dry_run,
        audit=audit,
    )


def _one_cluster(options, output, name: str):
    """The inventory and its cluster `name`, discovered; UsageError when it is none."""
    inventory, selection = load_cluster_selection(replace(options, limit=name), output)
    found = selection.clusters.get(name)
    if found is None:
        raise UsageError(f"{name} is not a cluster of the inventory (no seed says `cluster: true`)")
    if found.seed is None:
        raise HostError(f"no seed of cluster {name} answered", hint="see `redisops cluster status`")
    return inventory, found


@app.command("restore")
def restore(
    ctx: typer.Context,
    set_id: Annotated[str, typer.Argument(metavar="SET_ID", help="The cluster backup set.")],
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="NAME",
            help="Restore onto this cluster [default: the one the set was taken of].",
        ),
    ] = None,
    dest: Annotated[
        Path | None,
        typer.Option("--dest", help="The backup catalogue [default: backup_dir of the inventory]."),
    ] = None,
    no_safety_backup: Annotated[
        bool,
        typer.Option("--no-safety-backup", help="Do not back up each master's data first."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Go ahead although sentinels watch a master."),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(min=1, help="Seconds to wait for each stop, load, resync and for health."),
    ] = 300.0,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Restore a cluster backup set onto a cluster of the same shape, shard by shard.

    Shards are matched by slot ranges; each member's RDB goes onto the master owning them
    with `backup restore`'s safety rules (re-verified, safety backup, staged upload, stop,
    rename, start, key check, rolled back on failure). The shard's replicas are stopped and
    emptied first and resync from the restored master. Then waits until `cluster status`
    finds no problem and compares each shard's keys. Refused (exit 3): a set that does not
    verify, a cluster of another shape or without host access to its nodes (the refusal
    names the `backup restore-keys` commands that load the set by key instead).
    """
    from redisops.backup.catalogue import catalogue_dirs, load_catalogue
    from redisops.backup.clusterset import find_set, load_sets
    from redisops.backup.lock import host_locks
    from redisops.backup.restore_keys_cluster import masters_of
    from redisops.cli.change import carry_out
    from redisops.cluster.restore import apply_cluster_restore, plan_cluster_restore
    from redisops.fleet.inventory import load_inventory, resolve_inventory_path
    from redisops.render.cluster_restore import (
        cluster_restore_plan_view,
        cluster_restore_result_view,
    )
    from redisops.render.progress import progress_bars

    options = global_options(ctx)
    output = make_output(options)
    if cluster is None:
        inventory = load_inventory(resolve_inventory_path(options.inventory))
        names = {str(h.cluster_name) for h in inventory.hosts if h.cluster and h.cluster_name}
        cluster = max((n for n in names if set_id.startswith(f"{n}-")), key=len, default=None)
        if cluster is None:
            raise UsageError(
                f"{set_id} names no cluster of the inventory",
                hint="name the cluster to restore onto with --cluster NAME",
            )
    _, found = _one_cluster(options, output, cluster)
    masters = list(masters_of(found))
    if not masters:
        raise HostError(f"no master of cluster {cluster} serves slots")
    dirs = catalogue_dirs(dest, masters)
    folders = sorted(set(dirs.values()))
    sets, problems = load_sets(folders)
    for problem in problems:
        output.warn(problem)
    chosen = find_set(sets, set_id)
    if chosen is None:
        raise UsageError(
            f"no cluster backup set {set_id!r} in {', '.join(map(str, folders))}",
            hint="see `redisops backup list` for set ids",
        )
    catalogue = load_catalogue(folders)
    folder = folders[0]
    locked = [(dirs[m.name], m.name) for m in masters] + [(folder, m.host) for m in chosen.members]
    with host_locks(sorted(set(locked)), purpose="cluster restore"):
        plan = plan_cluster_restore(
            chosen,
            catalogue,
            found,
            dest=dest,
            safety_backup=not no_safety_backup,
            timeout=options.timeout,
            wait=wait,
        )
        backups = {b.backup_id: b for b in catalogue.backups}

        def apply():
            with progress_bars(output, "bytes") as progress:
                return apply_cluster_restore(
                    plan,
                    found,
                    backups,
                    folder,
                    timeout=options.timeout,
                    parallel=options.parallel,
                    wait=wait,
                    progress=progress,
                )

        return carry_out(
            output,
            plan,
            apply,
            view=lambda rows: cluster_restore_plan_view(output, rows),
            result_view=lambda rows: cluster_restore_result_view(output, rows),
            yes=yes,
            dry_run=dry_run,
            force=force,
        )
