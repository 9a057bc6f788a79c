"""`redisops inventory list | check`."""

from __future__ import annotations

import typer

from redisops.cli.common import global_options, make_output, selected_hosts
from redisops.cli.groups import command_group

app = command_group("inventory")


@app.command("list")
def list_hosts(ctx: typer.Context) -> int:
    """List the selected hosts.

    Shows role, groups, how redisops reaches each host and where its password comes from
    (never the password itself). Cluster seeds are expanded into every node, with its shard,
    role and slots; a seed that cannot be used is an error row (exit 1).
    """
    from redisops.fleet.fanout import HostResult
    from redisops.fleet.inventory import describe_host
    from redisops.render.inventory import inventory_list_table

    options = global_options(ctx)
    output = make_output(options)
    hosts = selected_hosts(options, output, clusters=True)
    results = [
        HostResult(h.name, h.address, True, None, describe_host(h))
        if h.discovery_error is None
        else HostResult(h.name, h.address, False, h.discovery_error, describe_host(h))
        for h in hosts
    ]
    return output.host_results(
        "inventory list", results, lambda rows: inventory_list_table(output, rows)
    )


@app.command("check")
def check(ctx: typer.Context) -> int:
    """Check that every selected host answers.

    Reports role, version, uptime, used/max memory, replication link and, for hosts with SSH
    settings, SSH reachability; for cluster nodes, the shard. Unreachable hosts are error rows
    and make the exit code 1.
    """
    from redisops.fleet.check import check_host
    from redisops.fleet.fanout import run_on_hosts
    from redisops.render.inventory import inventory_check_table

    options = global_options(ctx)
    output = make_output(options)
    hosts = selected_hosts(options, output, clusters=True)
    results = run_on_hosts(
        hosts, lambda host: check_host(host, timeout=options.timeout), parallel=options.parallel
    )
    return output.host_results(
        "inventory check", results, lambda rows: inventory_check_table(output, rows)
    )
