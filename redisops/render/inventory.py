"""Tables for `inventory list` and `inventory check`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.render.output import Output
from redisops.render.units import human_bytes, human_duration
from redisops.results import HostResult

if TYPE_CHECKING:
    from rich.table import Table


def inventory_list_table(output: Output, results: Sequence[HostResult]) -> Table:
    table = output.table(
        "host", "address", "role", "groups", "connection", "auth", "tags",
        essential=("host", "address"),
        drop=("tags", "connection", "groups", "auth"),
    )  # fmt: skip
    for result in results:
        entry = result.data
        table.add_row(
            output.cell(result.host),
            output.cell(result.address),
            output.cell(entry.role),
            output.cell(",".join(entry.groups)),
            output.cell(entry.connection),
            output.cell(entry.auth),
            output.cell(",".join(entry.tags) or None),
        )
    return table


def inventory_check_table(output: Output, results: Sequence[HostResult]) -> Table:
    table = output.table(
        "host", "address", "role", "version", "uptime", "memory", "replication", "ssh", "status",
        essential=("host", "address"),
        drop=("uptime", "ssh", "version", "memory", "replication"),
    )  # fmt: skip
    for result in results:
        check = result.data
        status = "[green]ok[/]" if result.ok else f"[red]error: {output.cell(result.error)}[/]"
        if check is None:
            table.add_row(output.cell(result.host), output.cell(result.address), *["-"] * 6, status)
            continue
        table.add_row(
            output.cell(result.host),
            output.cell(result.address),
            check.role,
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
