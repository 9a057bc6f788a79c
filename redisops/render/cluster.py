"""`cluster status`: per cluster a heading, its shards, its problems; then every node."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redisops.cluster.status import ClusterStatus
from redisops.fleet.cluster import SLOTS, format_slots
from redisops.fleet.secrets import redact
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from redisops.fleet.fanout import HostResult


def status_summary(statuses: Sequence[ClusterStatus]) -> dict[str, Any]:
    clusters = []
    for status in statuses:
        document = dataclasses.asdict(dataclasses.replace(status, node_rows=()))
        document.pop("node_rows")
        clusters.append(document)
    return {"healthy": all(s.healthy for s in statuses), "clusters": clusters}


def status_view(output: Output, statuses: Sequence[ClusterStatus]) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = []
    for status in statuses:
        parts.extend(_cluster_block(output, status))
        parts.append(Text(""))
    rows = [row for status in statuses for row in status.node_rows]
    parts.append(_node_table(output, rows))
    return Group(*parts)


def _cluster_block(output: Output, status: ClusterStatus) -> list[RenderableType]:
    from rich.text import Text

    heading = Text(f"cluster {status.cluster}: ", style="bold")
    count = len(status.problems)
    heading.append(
        "healthy" if status.healthy else f"{count} problem{'s' * (count != 1)}",
        style="green" if status.healthy else "red",
    )
    parts: list[RenderableType] = [heading]
    if status.seed is not None:
        parts.append(
            Text(
                f"{len(status.shards)} shards, {status.nodes} nodes ({status.nodes_answering} "
                f"answer), {status.slots_covered} of {SLOTS} slots covered; "
                f"imbalance max/mean: {_imbalance(status.imbalance)}",
                style="dim",
            )
        )
        parts.append(_shard_table(output, status))
        if status.busiest_slots:
            busiest = ", ".join(
                f"{s['slot']} ({human_count(s['keys'])} keys, {s['shard']})"
                for s in status.busiest_slots
            )
            parts.append(Text(f"busiest slots by keys: {busiest}", style="dim"))
    lines = Text()
    for problem in status.problems:
        lines.append("problem: ", style="red")
        lines.append(redact(problem.message) + "\n")
    lines.rstrip()
    if lines.plain:
        parts.append(lines)
    return parts


def _imbalance(imbalance: dict[str, float | None]) -> str:
    names = {"keys": "keys", "used_memory": "memory", "ops_per_sec": "ops/s"}
    return ", ".join(
        f"{label} {imbalance[key]:.2f}" if imbalance.get(key) is not None else f"{label} -"
        for key, label in names.items()
    )


def _shard_table(output: Output, status: ClusterStatus) -> Table:
    table = output.table(
        "shard", "slots", "master", "replicas", "keys", "memory", "ops/s",
        essential=("shard",),
        drop=("ops/s", "replicas", "slots"),
    )  # fmt: skip
    for shard in status.shards:
        table.add_row(
            shard.name,
            f"{format_slots(shard.slots, most=2)} ({shard.slot_count})",
            output.cell(shard.master),
            output.cell(", ".join(shard.replicas) or None) if shard.replicas else "[red]none[/]",
            human_count(shard.keys),
            human_bytes(shard.used_memory),
            human_count(shard.ops_per_sec),
        )
    return table


def _node_table(output: Output, rows: Sequence[HostResult]) -> Table:
    table = output.table(
        "node", "address", "cluster", "shard", "role", "state", "keys", "memory", "status",
        essential=("node", "address"),
        drop=("cluster", "memory", "keys", "state"),
    )  # fmt: skip
    for row in rows:
        node = row.data
        status = "[green]ok[/]" if row.ok else f"[red]error: {output.cell(row.error)}[/]"
        if node.health not in ("online", "unknown"):
            status = f"[red]{node.health}[/] {status}"
        state = node.cluster_state
        table.add_row(
            output.cell(row.host),
            output.cell(row.address),
            output.cell(node.cluster),
            output.cell(node.shard),
            output.cell(node.role),
            output.cell(state) if state in (None, "ok") else f"[red]{output.cell(state)}[/]",
            human_count(node.keys),
            human_bytes(node.used_memory),
            status,
        )
    return table
