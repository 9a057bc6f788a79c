"""Tables of `cluster restore`: the plan per shard (what goes where, what is refused) and
the result per shard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.fleet.cluster import format_slots
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count

if TYPE_CHECKING:
    from rich.console import RenderableType

    from redisops.cluster.restore import ShardRestore, ShardRestored
    from redisops.results import HostResult


def cluster_restore_plan_view(
    output: Output, rows: Sequence[HostResult[ShardRestore]]
) -> RenderableType:
    """One line per member of the set: its slots, the master that takes it, the replicas
    emptied to resync; then the steps every shard goes through."""
    from rich.console import Group
    from rich.text import Text

    table = output.table(
        "shard", "slots", "backup", "keys", "size", "onto master", "replicas reset", "now",
        essential=("shard", "onto master"), drop=("now", "size", "slots"),
    )  # fmt: skip
    steps: tuple[str, ...] = ()
    first = None
    for row in rows:
        shard = row.data
        plan = shard.restore
        table.add_row(
            output.cell(shard.shard),
            format_slots(shard.slots),
            output.cell(shard.backup_id),
            human_count(shard.keys),
            human_bytes(plan.backup_raw_bytes) if plan else "-",
            output.cell(shard.master) if shard.master else "[red]none with these slots[/]",
            output.cell(", ".join(r.name for r in shard.replicas) or "-"),
            f"{human_count(plan.target.keys)} keys" if plan else "-",
        )
        if plan and not steps:
            steps, first = plan.steps, shard

    parts: list[RenderableType] = [table]
    if steps:
        lines = Text(
            f"each shard in turn, as {first.shard} here: stop its replicas and remove their "
            "data files, then\n"
        )
        for number, step in enumerate(steps, 1):
            lines.append(f"  {number}. {step}\n")
        lines.append(
            "then start the replicas again (they resync in full from the restored master);\n"
            "after the last shard, wait until `cluster status` finds no problem"
        )
        parts.append(lines)
    return Group(*parts)


def cluster_restore_result_view(
    output: Output, rows: Sequence[HostResult[ShardRestored]]
) -> RenderableType:
    table = output.table(
        "shard", "master", "backup", "keys expected", "keys now", "replicas linked",
        "safety backup", "took", "status",
        essential=("shard", "status"), drop=("safety backup", "backup", "took"),
    )  # fmt: skip
    for row in rows:
        done = row.data
        if done is None:
            table.add_row(
                "",
                output.cell(row.host),
                "",
                "",
                "",
                "",
                "",
                "",
                f"[red]{output.cell(row.error)}[/]",
            )
            continue
        table.add_row(
            output.cell(done.shard),
            output.cell(done.master),
            output.cell(done.backup_id),
            human_count(done.keys_expected),
            human_count(done.keys_now),
            output.cell(", ".join(done.replicas_linked) or "-"),
            output.cell(done.restore.safety_backup_id or "-"),
            f"{done.restore.duration_seconds:.1f}s",
            "[green]ok[/]" if row.ok else f"[red]{output.cell(row.error)}[/]",
        )
    return table
