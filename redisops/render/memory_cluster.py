"""Tables for a Redis Cluster in `memory summary` and `memory report`: shards and totals, the
biggest slots, and the hash tags that pin many keys to one slot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from redisops.memory.cluster import ClusterMemory

SLOT_ROWS = 10
TAG_ROWS = 10


def cluster_table(output: Output, cluster: ClusterMemory, command: str) -> Table:
    """One row per shard and a total row; `command` picks the words (used vs scanned)."""
    report = command == "memory report"
    source = ("scanned",) if report else ()
    limit = () if report else ("% of max",)
    table = output.table(
        "shard", "master", *source, "slots", "keys", "keys %",
        "bytes" if report else "used", "bytes %", *limit,
        title=f"cluster {cluster.cluster}: {len(cluster.shards)} shards"
        + ("" if cluster.complete else " (incomplete: totals cover the shards that answered)"),
        essential=("shard",),
        drop=(*limit, "keys %", "bytes %", "master", *source, "slots"),
    )  # fmt: skip
    for shard in cluster.shards:
        where = [output.cell(shard.shard), output.cell(shard.master)]
        if shard.keys is None or shard.bytes is None:
            table.add_row(
                *where,
                *(["-"] if report else []),
                f"{shard.slots:,}",
                f"[red]error: {output.cell(shard.error)}[/]",
                *[""] * (3 if report else 4),
            )
            continue
        table.add_row(
            *where,
            *([output.cell(shard.source)] if report else []),
            f"{shard.slots:,}",
            human_count(shard.keys),
            _share(shard.keys, cluster.keys),
            human_bytes(shard.bytes),
            _share(shard.bytes, cluster.bytes),
            *limit and (_percent(shard.used_percent),),
        )
    table.add_row(
        "[bold]total[/]",
        "",
        *([""] if report else []),
        f"{sum(s.slots for s in cluster.shards):,}",
        f"[bold]{human_count(cluster.keys)}[/]",
        _imbalance(cluster.keys_imbalance),
        f"[bold]{human_bytes(cluster.bytes)}[/]",
        _imbalance(cluster.bytes_imbalance),
        *limit and ("",),
    )
    return table


def slots_view(output: Output, cluster: ClusterMemory) -> list[RenderableType]:
    """The cluster's biggest slots (with their shard) and the hash tags that pin the most
    keys to one slot."""
    from rich.text import Text

    view = cluster.slots
    if view is None:
        return []
    parts: list[RenderableType] = [
        Text(
            f"cluster {cluster.cluster}: {view.slots_with_keys:,} slots hold keys; "
            f"{human_count(view.tagged_keys)} keys carry a hash tag",
            style="bold",
        )
    ]
    table = output.table(
        "slot", "shard", "keys", "bytes", "of shard", title="biggest slots", essential=("slot",)
    )
    for slot in cluster.biggest_slots[:SLOT_ROWS]:
        table.add_row(
            str(slot.slot),
            output.cell(slot.shard),
            human_count(slot.keys),
            human_bytes(slot.bytes),
            "-" if slot.shard_share is None else f"{slot.shard_share * 100:.1f}%",
        )
    parts.append(table)
    if not view.tags:
        return parts
    tags = output.table(
        "hash tag", "slot", "keys", "bytes", "pattern",
        title="hash tags pinning the most keys to one slot",
        essential=("hash tag",),
        drop=("pattern", "bytes"),
    )  # fmt: skip
    for tag in view.tags[:TAG_ROWS]:
        tags.add_row(
            output.cell("{" + tag.tag + "}"),
            str(tag.slot),
            human_count(tag.keys),
            human_bytes(tag.bytes),
            output.cell(tag.pattern),
        )
    parts.append(tags)
    if not view.tags_exact:
        parts.append(
            Text(
                f"more distinct tags than redisops counts one by one: tag counts may be low by "
                f"up to {view.tag_error_keys:,} keys",
                style="yellow",
            )
        )
    return parts


def _share(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.1f}%" if whole else "-"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _imbalance(value: float | None) -> str:
    return "-" if value is None else f"max/mean {value:.2f}"
