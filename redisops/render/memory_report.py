"""Tables and bar charts for `memory report`: one block per host, error rows at the end."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from redisops.fleet.fanout import HostResult
from redisops.render.memory_cluster import cluster_table, slots_view
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count, human_duration, human_ms, human_percent

if TYPE_CHECKING:
    from rich.console import RenderableType

    from redisops.memory.cluster import ClusterMemory
    from redisops.memory.report import MemoryReport

PATTERN_ROWS = 15
BAR_WIDTH = 24


def memory_report_view(
    output: Output, results: Sequence[HostResult], clusters: Sequence[ClusterMemory] = ()
) -> RenderableType:
    """One block per host (a cluster's: per shard), then per cluster its shards and totals,
    biggest slots and hash tags; error rows at the end."""
    from rich.console import Group
    from rich.text import Text

    blocks: list[RenderableType] = []
    for result in results:
        if result.ok:
            blocks.extend(_host_block(output, result.host, result.data))
            blocks.append(Text(""))
    for cluster in clusters:
        blocks.append(cluster_table(output, cluster, "memory report"))
        blocks.extend(slots_view(output, cluster))
        blocks.append(Text(""))
    failed = [r for r in results if not r.ok]
    if failed:
        table = output.table(
            "host", "address", "error", title="failed", essential=("host", "address")
        )
        for result in failed:
            table.add_row(
                output.cell(result.host),
                output.cell(result.address),
                f"[red]{output.cell(result.error)}[/]",
            )
        blocks.append(table)
    return Group(*blocks)


def _host_block(output: Output, name: str, report: MemoryReport) -> list[RenderableType]:
    from rich.text import Text

    approx = "~" if report.estimated else ""
    source = "" if report.scanned_host == name else f" on replica {report.scanned_host}"
    shard = f" ({report.cluster}/{report.shard})" if report.shard else ""
    heading = Text(
        f"{name}{shard}: {approx}{report.keys:,} keys, {approx}{human_bytes(report.bytes)}"
        f" (scanned{source} in {human_duration(report.duration_seconds)},"
        f" {report.keys_per_second:,.0f} keys/s"
        + (f", held to {report.rate_limit:,.0f}" if report.rate_limit else "")
        + ")",
        style="bold",
    )
    if report.estimated:
        heading.append(f"  estimate: {_estimate_basis(report)}", style="yellow")
    return [
        heading,
        _patterns(output, report),
        _types(output, report),
        _ttl(output, report),
        _top(output, report),
    ]


def _estimate_basis(report: MemoryReport) -> str:
    parts = []
    if report.sample is not None and report.sample < 1:
        parts.append(f"sample {report.sample:g}")
    if report.max_keys is not None:
        parts.append(f"stopped at {report.max_keys:,} of {report.dbsize:,} keys")
    return ", ".join(parts)


def _bar(output: Output, fraction: float) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH)
    if output.out.is_terminal:
        return f"[cyan]{'█' * filled}[/][dim]{'░' * (BAR_WIDTH - filled)}[/]"
    return "#" * filled + "." * (BAR_WIDTH - filled)


def _patterns(output: Output, report: MemoryReport):
    table = output.table(
        "pattern", "keys", "bytes", "share", "", "avg", "ttl", "types",
        essential=("pattern",),
        drop=("", "avg", "ttl", "types", "share"),
    )  # fmt: skip
    for pattern in report.patterns[:PATTERN_ROWS]:
        table.add_row(
            output.cell(pattern.pattern),
            human_count(pattern.keys),
            human_bytes(pattern.bytes),
            human_percent(pattern.share),
            _bar(output, pattern.share),
            human_bytes(pattern.avg_bytes),
            human_percent(pattern.ttl_share, 0),
            ",".join(pattern.types),
        )
    hidden = len(report.patterns) - PATTERN_ROWS
    if hidden > 0:
        table.add_row(f"({hidden:,} more patterns)", "", "", "", "", "", "", "")
    return table


def _types(output: Output, report: MemoryReport):
    table = output.table("type", "keys", "bytes", essential=("type",))
    for name, totals in report.types.items():
        table.add_row(output.cell(name), human_count(totals.keys), human_bytes(totals.bytes))
    for name, totals in (report.encodings or {}).items():
        table.add_row(output.cell(name), human_count(totals.keys), human_bytes(totals.bytes))
    return table


def _ttl(output: Output, report: MemoryReport):
    table = output.table("ttl", "keys", "bytes", essential=("ttl",))
    for bucket, totals in report.ttl.items():
        table.add_row(bucket, human_count(totals.keys), human_bytes(totals.bytes))
    if report.volatile_hashes:  # the server's count; these hashes sit in their key's bucket
        table.add_row("hash fields expire", human_count(report.volatile_hashes), "-")
    return table


def _top(output: Output, report: MemoryReport):
    table = output.table(
        "top key", "db", "type", "bytes", "elements", "ttl",
        essential=("top key",),
        drop=("elements", "db", "ttl", "type"),
    )  # fmt: skip
    for key in report.top_keys:
        table.add_row(
            output.cell(key.key),
            str(key.db),
            key.type + (f"/{key.encoding}" if key.encoding else ""),
            human_bytes(key.bytes),
            human_count(key.elements),
            "-" if key.ttl_ms < 0 else human_ms(key.ttl_ms),
        )
    return table


@contextmanager
def scan_progress(output: Output) -> Iterator[Callable[[str, int, int], None] | None]:
    """Per-host progress bars (keys, keys/s, ETA) on stderr when a person watches; else None."""
    if not output.interactive or not output.err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    started: dict[str, tuple[int, float]] = {}
    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9,.0f} keys/s"),
        TimeRemainingColumn(),
        console=output.err,
        transient=True,
    ) as bars:

        def advance(host: str, seen: int, total: int) -> None:
            with lock:
                if host not in started:
                    task = bars.add_task(host, total=total or None, rate=0.0)
                    started[host] = (task, time.monotonic())
            task, since = started[host]
            elapsed = time.monotonic() - since
            bars.update(task, completed=seen, rate=seen / elapsed if elapsed > 0 else 0.0)

        yield advance


@contextmanager
def bytes_progress(output: Output) -> Iterator[Callable[[str, int, int], None] | None]:
    """A progress bar by bytes read (size, speed, ETA) on stderr when a person watches."""
    if not output.interactive or not output.err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    tasks: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=output.err,
        transient=True,
    ) as bars:

        def advance(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bars.add_task(label, total=total or None)
            bars.update(tasks[label], completed=done)

        yield advance
