"""Tables of `cluster add-node`: the plan (what the new node is, the steps) and the result."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.render.output import Output

if TYPE_CHECKING:
    from rich.console import RenderableType

    from redisops.cluster.addnode import AddNodePlan, AddNodeResult
    from redisops.results import HostResult


def add_node_plan_view(output: Output, rows: Sequence[HostResult[AddNodePlan]]) -> RenderableType:
    """The new node, its role and the steps; a row that could not be read is its error."""
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = []
    for row in rows:
        plan = row.data
        if plan is None:
            parts.append(Text(f"{row.host}: {row.error}", style="red"))
            continue
        role = f"replica of {plan.master} ({plan.shard})" if plan.master else "master, no slots"
        parts.append(
            Text(
                f"plan: add {plan.node} ({plan.address}) to cluster {plan.cluster} "
                f"({plan.cluster_nodes} nodes) as {role}",
                style="bold",
            )
        )
        lines = Text()
        for number, step in enumerate(plan.steps, 1):
            lines.append(f"{number}. {step}\n")
        lines.rstrip()
        parts.append(lines)
    return Group(*parts)


def add_node_result_view(output: Output, rows: Sequence[HostResult[AddNodeResult]]):
    """One line per node added: id, role, who knows it, the waits."""
    table = output.table(
        "node", "node id", "role", "known by", "joined", "link up", "slots", "note",
        essential=("node", "role"), drop=("node id", "joined", "link up", "slots"),
    )  # fmt: skip
    for row in rows:
        added = row.data
        if added is None:
            table.add_row(output.cell(row.host), "", "", "", "", "", "", f"[red]{row.error}[/]")
            continue
        table.add_row(
            output.cell(added.node),
            added.node_id[:8],
            added.role if not added.master else f"replica of {output.cell(added.master)}",
            f"{added.known_by}/{added.cluster_nodes}",
            f"{added.meet_seconds:.1f}s",
            "-" if added.link_seconds is None else f"{added.link_seconds:.1f}s",
            str(added.slots),
            output.cell(added.note),
        )
    return table
