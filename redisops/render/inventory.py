"""Tables for `inventory list` and `inventory check`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.fleet.fanout import HostResult
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_duration

if TYPE_CHECKING:
    from rich.table import Table


def inventory_list_table(output: Output, results: Sequence[HostResult]) -> Table:
    clustered = any(_node(r) is not None or not r.ok for r in results)
    shard = ("shard",) if clustered else ()
    table = output.table(
        "host", "address", "role", *shard, "groups", "connection", "auth", "tags",
        essential=("host", "address"),
        drop=("tags", "connection", "groups", "auth", *shard),
    )  # fmt: skip
    several = _several_clusters(results)
    for result in results:
        entry = result.data
        cells = [shard_cell(output, result, cluster=several)] if clustered else []
        table.add_row(
            output.cell(result.host),
            output.cell(result.address),
            output.cell(entry.role),
            *cells,
            output.cell(",".join(entry.groups)),
            output.cell(entry.connection),
            output.cell(entry.auth),
            output.cell(",".join(entry.tags) or None),
        )
    return table


def shard_cell(
    output: Output, result: HostResult, *, cluster: bool = True, role: bool = True
) -> str:
    """`redis shard-1 master 0-5460` (the cluster's name when the table has several, the
    role when no other column says it), the health when not online, or the row's error."""
    from redisops.fleet.cluster import format_slots

    node = _node(result)
    if node is None:
        return f"[red]error: {output.cell(result.error)}[/]" if not result.ok else "-"
    parts = [node.cluster] if cluster else []
    parts += [node.shard, node.role] if role else [node.shard]
    if node.role == "master":
        parts.append(format_slots(node.slots))
    text = " ".join(parts)
    text = output.cell(text)
    return text if node.health == "online" else f"{text} [red]{node.health}[/]"


def _several_clusters(results: Sequence[HostResult]) -> bool:
    return len({node.cluster for r in results if (node := _node(r)) is not None}) > 1


def _node(result: HostResult):
    return getattr(result.data, "cluster", None)


def inventory_check_table(output: Output, results: Sequence[HostResult]) -> Table:
    clustered = any(_node(r) is not None for r in results)
    several = _several_clusters(results)
    shard = ("shard",) if clustered else ()
    table = output.table(
        "host", "address", "role", *shard, "version", "uptime", "memory", "replication", "ssh",
        "status",
        essential=("host", "address"),
        drop=("uptime", "ssh", "version", "memory", "replication", *shard),
    )  # fmt: skip
    for result in results:
        check = result.data
        status = "[green]ok[/]" if result.ok else f"[red]error: {output.cell(result.error)}[/]"
        if check is None:
            blanks = ["-"] * (6 + len(shard))
            table.add_row(output.cell(result.host), output.cell(result.address), *blanks, status)
            continue
        cells = [shard_cell(output, result, cluster=several, role=False)] if clustered else []
        table.add_row(
            output.cell(result.host),
            output.cell(result.address),
            check.role,
            *cells,
            check.version,
            human_duration(check.uptime_seconds),
            _memory(check),
            _replication(check),
            check.ssh,
            status,
        )
    return table


def _memory(check) -> str:
    if check.used_memory is None:
        return "-"
    limit = human_bytes(check.maxmemory) if check.maxmemory else "no limit"
    return f"{human_bytes(check.used_memory)} / {limit}"


def _replication(check) -> str:
    if check.role == "replica":
        return f"of {check.master_host}:{check.master_port} link {check.master_link_status}"
    if check.role == "master":
        return f"{check.connected_replicas} replicas"
    if check.role == "sentinel":
        return f"monitors {check.monitored_masters}"
    return "-"
