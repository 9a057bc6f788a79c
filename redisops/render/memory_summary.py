"""Table for `memory summary`: most urgent host first, a bar of % of maxmemory, flags explained."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from redisops.fleet.fanout import HostResult
from redisops.fleet.secrets import redact
from redisops.memory.summary import MemorySummary, Severity, urgency
from redisops.render.memory_cluster import cluster_table
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count, human_percent, human_us

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from redisops.memory.cluster import ClusterMemory

BAR_WIDTH = 10
_SEVERITY_STYLE = {Severity.critical: "red", Severity.warning: "yellow"}
_DOCTOR_NOTED = ("issues", "unknown", "unavailable")


def memory_summary_view(
    output: Output,
    results: Sequence[HostResult[MemorySummary]],
    clusters: Sequence[ClusterMemory] = (),
    shards: Mapping[str, str] | None = None,
) -> RenderableType:
    """The host table, then one table per Redis Cluster (its shards and totals)."""
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = [memory_summary_table(output, results, shards)]
    for cluster in clusters:
        parts += [Text(""), cluster_table(output, cluster, "memory summary")]
    return Group(*parts)


def memory_summary_table(
    output: Output,
    results: Sequence[HostResult[MemorySummary]],
    shards: Mapping[str, str] | None = None,
) -> Table:
    """One row per host sorted by urgency; under the table: errors, flags' whys, doctor findings.

    Expired keys, per-db counts and the full doctor text are in `-o json` only, to keep a row
    within 200 columns. With `shards` (host -> cluster/shard), a shard column names them.
    """
    from rich.text import Text

    shard = ("shard",) if shards else ()
    table = output.table(
        "host", *shard, "role", "used", "peak", "rss", "frag", "maxmemory", "", "% used",
        "policy", "evicted", "hits", "keys", "last fork", "doctor", "flags",
        essential=("host",),
        drop=("", "last fork", "peak", "rss", "hits", "evicted", "doctor", "frag", "policy",
              "keys", *shard, "role"),
    )  # fmt: skip
    # Piped, a blank line sets the notes apart from the rows; a terminal table ends with one.
    notes = Text("" if output.out.is_terminal else "\n")
    for result in sorted(results, key=urgency):
        summary = result.data
        host = redact(result.host)
        cells = [output.cell(result.host)]
        if shards:
            cells.append(output.cell(shards.get(result.host)))
        if not result.ok or summary is None:
            # The message goes under the table: in a cell it would wrap the row.
            table.add_row(*cells, *["-"] * 6, "", *["-"] * 7, "[red]error[/]")
            notes.append(f"{host} ", style="bold")
            notes.append("error", style="red")
            notes.append(f": {redact(result.error or 'failed')}\n")
            continue
        table.add_row(
            *cells,
            output.cell(summary.role),
            human_bytes(summary.used_memory),
            human_bytes(summary.used_memory_peak),
            human_bytes(summary.used_memory_rss),
            _ratio(summary.mem_fragmentation_ratio),
            human_bytes(summary.maxmemory) if summary.maxmemory else "no limit",
            usage_bar(output, summary.used_percent),
            "-" if summary.used_percent is None else f"{summary.used_percent:4.1f}%",
            output.cell(summary.maxmemory_policy),
            human_count(summary.evicted_keys),
            human_percent(summary.hit_ratio),
            _keys(summary),
            _fork(summary),
            _doctor(summary),
            _flags(summary),
        )
        for flag in summary.flags:
            notes.append(f"{host} ", style="bold")
            notes.append(flag.severity.value, style=_SEVERITY_STYLE[flag.severity])
            notes.append(f" {flag.id}: {redact(flag.why)}\n")
        if summary.volatile_hashes:
            notes.append(f"{host} ", style="bold")
            notes.append(f"{summary.volatile_hashes:,} hashes with fields that expire\n")
        if summary.doctor.status in _DOCTOR_NOTED:
            notes.append(f"{host} ", style="bold")
            notes.append(f"doctor: {redact(summary.doctor.summary)}\n")
    if notes.plain.strip():
        notes.rstrip()
        table.caption = notes
        table.caption_justify = "left"
        table.caption_style = "none"
    return table


def usage_bar(output: Output, percent: float | None) -> RenderableType:
    """% of maxmemory as a Rich bar on a terminal, as `[#####.....]` when piped; the figure
    has its own column, which stays when the bar is dropped on a narrow terminal."""
    if percent is None:
        return "-"
    filled = min(BAR_WIDTH, round(percent * BAR_WIDTH / 100))
    if not output.out.is_terminal:
        return output.cell(f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]")
    from rich.progress_bar import ProgressBar

    style = "red" if percent > 90 else "yellow" if percent > 75 else "green"
    return ProgressBar(
        total=100,
        completed=min(percent, 100.0),
        width=BAR_WIDTH,
        complete_style=style,
        finished_style=style,
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _flags(summary: MemorySummary) -> str:
    if not summary.flags:
        return "[green]ok[/]"
    worst = summary.flags[0].severity
    ids = ", ".join(flag.id for flag in summary.flags)
    return f"[{_SEVERITY_STYLE[worst]}]{worst.value}[/]: {ids}"


def _doctor(summary: MemorySummary) -> str:
    doctor = summary.doctor
    if doctor.status == "issues":
        return f"{len(doctor.issues)} issues" if len(doctor.issues) > 1 else "1 issue"
    return "little data" if doctor.status == "empty" else doctor.status


def _keys(summary: MemorySummary) -> str:
    if len(summary.keyspace) > 1:
        return f"{summary.keys:,} in {len(summary.keyspace)} dbs"
    return human_count(summary.keys)


def _fork(summary: MemorySummary) -> str:
    fork = summary.fork
    if fork.save_in_progress:
        return f"saving, COW {human_bytes(fork.current_cow_size)}"
    if not fork.total_forks:
        return "never"
    cow = max(fork.rdb_last_cow_size, fork.aof_last_cow_size)
    return f"{human_us(fork.latest_fork_usec)} / {human_bytes(cow)}"
