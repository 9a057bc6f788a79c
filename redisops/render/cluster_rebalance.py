"""`cluster rebalance` and `cluster drain`: the moves (slots, from, to, keys, bytes), each
master before and after, and what a run did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redisops.fleet.cluster import format_slots
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count, human_duration

if TYPE_CHECKING:
    from rich.console import RenderableType

    from redisops.cluster.drain import DrainPlan
    from redisops.cluster.rebalance import SlotPlan
    from redisops.results import HostResult


def slot_plan_view(
    output: Output, plan: SlotPlan, rows: Sequence[HostResult], drain: DrainPlan | None = None
) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = []
    weight = {"memory": "memory", "keys": "keys", "slots": "slot count"}[plan.by]
    heading = f"cluster {plan.cluster}: "
    if drain is not None:
        heading += f"drain {drain.node} ({len(plan.moves):,} slots to move, by {weight})"
    elif plan.moves:
        heading += (
            f"{len(plan.moves):,} slot move(s) bring every master within ±{plan.tolerance:.0%} "
            f"of the mean by {weight}"
        )
    else:
        heading += f"every master is within ±{plan.tolerance:.0%} of the mean by {weight}"
    parts.append(Text(heading, style="bold"))
    for note in plan.notes:
        parts.append(Text(note, style="yellow"))
    for slot in plan.recover:
        parts.append(
            Text(
                f"open slot {slot.slot} ({slot.seen}): will be finished "
                f"{_name(plan, slot.source)} -> {_name(plan, slot.target)}, or given back if "
                "the target is gone"
            )
        )
    if plan.groups:
        moves = output.table("from", "to", "slots", "count", "keys", "bytes", essential=("slots",))
        for group in plan.groups:
            moves.add_row(
                output.cell(group.source),
                output.cell(group.target),
                format_slots([tuple(r) for r in group.slots], most=4),
                human_count(group.slot_count),
                human_count(group.keys),
                human_bytes(group.bytes),
            )
        parts.append(moves)
        parts.append(
            Text(
                f"{human_count(len(plan.moves))} slots, {human_count(plan.keys)} keys, "
                f"{human_bytes(plan.bytes)} to move (measured with MEMORY USAGE)",
                style="dim",
            )
        )
    for key in plan.big_keys[:5]:
        parts.append(
            Text(
                f"big key: {key.key!r} in slot {key.slot} on {key.node}: {human_bytes(key.bytes)}",
                style="red",
            )
        )
    if drain is not None:
        for step in drain.repoint:
            parts.append(Text(f"then: {step.replica} will replicate {step.to}"))
        parts.append(
            Text(
                f"then: CLUSTER FORGET {drain.node} on {len(drain.forget_on)} node(s), "
                f"CLUSTER RESET SOFT on {drain.node}"
            )
        )
    parts.append(masters_view(output, plan, rows))
    return Group(*parts)


def masters_view(output: Output, plan: SlotPlan, rows: Sequence[HostResult]) -> RenderableType:
    """Each master: slots, keys and memory before -> after, its share of the mean."""
    share = {"memory": "memory", "keys": "keys", "slots": "slots"}[plan.by]
    # The figures other than the weight go first when the table is too wide.
    drop = {"memory": ("shard", "keys", "slots"), "keys": ("shard", "memory", "slots")}
    table = output.table(
        "master", "shard", "slots", "keys", "memory", f"{share}/mean", "status",
        essential=("master",), drop=drop.get(plan.by, ("shard", "keys", "memory")),
    )  # fmt: skip
    for row in rows:
        load = row.data
        if load is None:
            table.add_row(output.cell(row.host), "", "", "", "", "", f"[red]{row.error}[/]")
            continue
        mark = "[green]ok[/]" if load.within else f"[yellow]outside ±{plan.tolerance or 0:.0%}[/]"
        table.add_row(
            output.cell(row.host),
            output.cell(load.shard),
            _change(load.slots_before, load.slots_after, human_count),
            _change(load.keys_before, load.keys_after, human_count),
            _change(load.bytes_before, load.bytes_after, human_bytes),
            _change(load.share_before, load.share_after, lambda v: f"{v:.2f}"),
            mark,
        )
    return table


def _change(before: float, after: float, show) -> str:
    """`before→after` as one word (`9.2MiB`: Rich wraps at any space, even a no-break one),
    so a narrow table drops a column rather than wrap a figure."""
    text = show(before) if before == after else f"{show(before)}→{show(after)}"
    return text.replace(" ", "")


def _name(plan: SlotPlan, node_id: str) -> str:
    return plan.context.name(node_id) if plan.context else node_id[:8]


def show_moved(output: Output, plan: SlotPlan, summary: Mapping[str, Any]) -> None:
    """The line after a run: what moved, how fast, verified or not (stderr)."""
    seconds = summary.get("seconds") or 0.0
    line = (
        f"moved {human_count(summary.get('moved_slots', 0))} slots, "
        f"{human_count(summary.get('keys_moved', 0))} keys in {human_duration(seconds)}"
    )
    if summary.get("verified"):
        line += "; slot map verified on every master, no open slot"
    output.err.print(line, highlight=False)
