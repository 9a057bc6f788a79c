"""`redisops cluster status`."""

from __future__ import annotations

import typer

from redisops.cli.common import global_options, load_cluster_selection, make_output
from redisops.cli.groups import command_group
from redisops.errors import ExitCode, UsageError

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
    code = output.host_results(
        "cluster status",
        rows,
        lambda _rows: status_view(output, statuses),
        summary=status_summary(statuses),
        noun="nodes",
    )
    unhealthy = [s.cluster for s in statuses if not s.healthy]
    if unhealthy:
        output.warn(f"unhealthy: {', '.join(unhealthy)}")
        return ExitCode.FAILED
    return code
