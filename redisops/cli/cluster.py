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
        str, typer.Option("--cluster", help="The cluster to add it to (its inventory name).")
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
