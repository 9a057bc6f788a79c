"""Views for `slowlog triage | tail | reset`: fingerprint and host tables, tail lines, JSON."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redisops.fleet.fanout import HostResult
from redisops.fleet.secrets import redact
from redisops.render.output import Output
from redisops.render.units import human_count, human_duration, human_ms, human_us
from redisops.slowlog.collect import SlowlogReset
from redisops.slowlog.digest import HISTOGRAM_EDGES_US, Digest, FingerprintStats
from redisops.slowlog.tail import TailedEntry
from redisops.slowlog.triage import HostSlowlog, Triage

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

SPARKS = "▁▂▃▄▅▆▇█"
HISTOGRAM_LABEL = "≤10µs … >1s"


def sparkline(histogram: Sequence[int]) -> str:
    """One character per bucket, height by share of the busiest bucket, blank when empty."""
    peak = max(histogram, default=0)
    if not peak:
        return " " * len(histogram)
    levels = len(SPARKS)
    return "".join(SPARKS[-(-count * levels // peak) - 1] if count else " " for count in histogram)


def triage_summary(triage: Triage, *, skipped: Sequence[str], **extra: Any) -> dict[str, Any]:
    """The JSON summary: the fleet's ranked fingerprints, hints, and what shaped the run."""
    digest = triage.digest
    return {
        "entries": digest.entries,
        "distinct_fingerprints": digest.distinct,
        "total_us": digest.total_us,
        "fingerprints": [dataclasses.asdict(s) for s in digest.fingerprints],
        "hints": list(triage.hints),
        "histogram_edges_us": list(HISTOGRAM_EDGES_US),
        "sentinels_skipped": list(skipped),
        **extra,
    }


def triage_view(
    output: Output, triage: Triage, results: Sequence[HostResult[HostSlowlog]]
) -> RenderableType:
    """Fingerprints ranked (fleet-wide), then one row per host, then hints and samples."""
    from rich.console import Group
    from rich.text import Text

    digest = triage.digest
    # A terminal table ends with a blank line; piped, one sets the parts apart.
    gap = [] if output.out.is_terminal else [Text("")]
    parts: list[RenderableType] = (
        [_fingerprint_table(output, digest), *gap]
        if digest.fingerprints
        else [Text("no slowlog entries to digest", style="dim"), Text("")]
    )
    parts.append(_host_table(output, results))
    lines = Text()
    for hint in triage.hints:
        lines.append("hint: ", style="yellow")
        lines.append(redact(hint) + "\n")
    for rank, stats in enumerate(digest.fingerprints, 1):
        if stats.sample is not None:
            lines.append(f"#{rank} slowest call: ", style="dim")
            lines.append(redact(" ".join(stats.sample)) + "\n")
    if lines.plain:
        lines.rstrip()
        parts.extend([*gap, lines])
    return Group(*parts)


def _fingerprint_table(output: Output, digest: Digest) -> Table:
    clustered = any(s.shards for s in digest.fingerprints)
    shards = ("shards",) if clustered else ()
    table = output.table(
        "#", "fingerprint", "calls", "total", "share", "avg", "p50", "p95", "max",
        *shards, "hosts", "top client", HISTOGRAM_LABEL, "last seen",
        title=f"{digest.entries:,} slowlog entries by fingerprint",
        essential=("fingerprint",),
        drop=(HISTOGRAM_LABEL, "last seen", "top client", "p50", "max", "avg", "share", "hosts",
              *shards),
    )  # fmt: skip
    for column in table.columns[2:9]:
        column.justify = "right"
    spent = digest.total_us or 1
    now = time.time()
    for rank, s in enumerate(digest.fingerprints, 1):
        table.add_row(
            str(rank),
            output.cell(s.fingerprint),
            human_count(s.count),
            human_us(s.total_us),
            f"{s.total_us * 100 / spent:.0f}%",
            human_us(s.avg_us),
            human_us(s.p50_us),
            human_us(s.p95_us),
            human_us(s.max_us),
            *([output.cell(_names(s.shards, "shards") or None)] if clustered else []),
            output.cell(_names(s.hosts)),
            output.cell(_top_client(s)),
            sparkline(s.histogram),
            f"{human_duration(max(now - s.last_seen, 0))} ago",
        )
    return table


def _host_table(output: Output, results: Sequence[HostResult[HostSlowlog]]) -> Table:
    clustered = any(r.data is not None and r.data.shard for r in results)
    shard = ("shard",) if clustered else ()
    table = output.table(
        "host", *shard, "role", "digested", "log", "logs slower than", "latency events", "notes",
        "status",
        essential=("host",),
        drop=("latency events", "logs slower than", "log", "role", "digested", *shard),
    )  # fmt: skip
    for result in results:
        status = "[green]ok[/]" if result.ok else f"[red]error: {output.cell(result.error)}[/]"
        part = result.data
        if part is None:
            table.add_row(output.cell(result.host), *["-"] * (6 + len(shard)), status)
            continue
        settings = part.settings
        table.add_row(
            output.cell(result.host),
            *([output.cell(f"{part.cluster}/{part.shard}" if part.shard else None)] * len(shard)),
            output.cell(part.role),
            human_count(part.entries),
            f"{part.log_length:,}/{'?' if settings.max_len is None else f'{settings.max_len:,}'}",
            _threshold(settings.slower_than_us),
            output.cell(_latency(part)),
            output.cell("; ".join(part.warnings + part.notes) or None),
            status,
        )
    return table


def tail_record(tailed: TailedEntry, *, show_args: bool) -> dict[str, Any]:
    """One JSON Lines object per entry; `args` (redacted) only with --show-args."""
    from redisops.slowlog.fingerprint import redacted_args

    entry, shape = tailed.entry, tailed.shape
    record: dict[str, Any] = {
        "host": tailed.host,
        "address": tailed.address,
        "id": entry.id,
        "time": entry.started,
        "duration_us": entry.duration_us,
        "fingerprint": shape.fingerprint,
        "command": shape.command,
        "key_pattern": shape.key_pattern,
        "client_address": entry.client_address,
        "client_name": entry.client_name,
    }
    if show_args:
        record["args"] = list(redacted_args(entry.args))
    return record


def tail_line(output: Output, tailed: TailedEntry, *, show_args: bool) -> None:
    """One line per entry: time, host, id, duration, fingerprint, client (and args)."""
    from rich.text import Text

    entry = tailed.entry
    line = Text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.started)) + "  ")
    line.append(f"{tailed.host}  ", style="bold")
    line.append(f"#{entry.id}  ", style="dim")
    line.append(f"{human_us(entry.duration_us):>8}  ", style="yellow")
    line.append(redact(tailed.shape.fingerprint))
    client = " ".join(part for part in (entry.client_address, entry.client_name) if part)
    if client:
        line.append(f"  from {redact(client)}", style="dim")
    if show_args:
        from redisops.slowlog.fingerprint import redacted_args

        line.append(f"  args: {redact(' '.join(redacted_args(entry.args)))}", style="dim")
    output.out.print(line, soft_wrap=True, highlight=False)


def reset_table(output: Output, results: Sequence[HostResult[SlowlogReset]]) -> Table:
    table = output.table(
        "host", "address", "entries", "reset", "status", essential=("host", "address")
    )
    for result in results:
        status = "[green]ok[/]" if result.ok else f"[red]error: {output.cell(result.error)}[/]"
        outcome = result.data
        table.add_row(
            output.cell(result.host),
            output.cell(result.address),
            "-" if outcome is None else human_count(outcome.entries),
            "-" if outcome is None else ("yes" if outcome.reset else "no"),
            status,
        )
    return table


def _names(names: Sequence[str], noun: str = "hosts") -> str:
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} {noun}"


def _top_client(stats: FingerprintStats) -> str | None:
    if not stats.clients:
        return None
    top = stats.clients[0]
    who = " ".join(part for part in (top.address, top.name) if part) or "?"
    more = f" +{len(stats.clients) - 1}" if len(stats.clients) > 1 else ""
    return f"{who} ({top.count}){more}"


def _threshold(slower_than_us: int | None) -> str:
    if slower_than_us is None:
        return "?"
    if slower_than_us < 0:
        return "[yellow]disabled[/]"
    return "everything" if slower_than_us == 0 else human_us(slower_than_us)


def _latency(part: HostSlowlog) -> str:
    if part.settings.latency_threshold_ms == 0:
        return "monitor off"
    if not part.latency:
        return "none"
    worst = max(part.latency, key=lambda event: event.max_ms)
    more = f" +{len(part.latency) - 1}" if len(part.latency) > 1 else ""
    return f"{worst.event} {human_ms(worst.latest_ms)} (max {human_ms(worst.max_ms)}){more}"
