"""Tables for `snapshot take | show | diff` (the HTML page is render/snapshot_html.py)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redisops.redaction import redact
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count, human_duration, human_percent, human_us
from redisops.results import HostResult

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from redisops.snapshot.archive import Snapshot
    from redisops.snapshot.capture import HostTaken, SnapshotTaken
    from redisops.snapshot.diff import SnapshotDiff
    from redisops.snapshot.overview import HostOverview, SnapshotOverview


def take_table(output: Output, results: Sequence[HostResult[HostTaken]]) -> Table:
    """One row per host: items captured, failed and skipped, bytes archived, time taken."""
    table = output.table(
        "host", "server", "captured", "failed", "skipped", "bytes", "time",
        essential=("host",), drop=("skipped", "time", "server"),
    )  # fmt: skip
    notes = _notes(output)
    for result in results:
        taken = result.data
        if taken is None:
            table.add_row(output.cell(result.host), *["-"] * 6)
        else:
            table.add_row(
                output.cell(result.host),
                output.cell(taken.server),
                str(taken.captured),
                _failed(output, taken.failed),
                str(taken.skipped),
                human_bytes(taken.bytes),
                human_duration(taken.seconds),
            )
        if not result.ok:
            _note(notes, result.host, "error", result.error or "failed", "red")
    _caption(table, notes)
    return table


def take_summary(taken: SnapshotTaken) -> dict[str, Any]:
    return {
        "path": str(taken.path),
        "bytes": taken.bytes,
        "seconds": round(taken.seconds, 3),
        "pruned": [str(path) for path in taken.pruned],
    }


def take_footer(output: Output, taken: SnapshotTaken) -> None:
    """Where the archive went, on stderr (the table is the data)."""
    if output.format == "table":
        output.err.print(
            f"wrote {taken.path} ({human_bytes(taken.bytes)}, 0600) in "
            f"{human_duration(taken.seconds)}",
            highlight=False,
            markup=False,
        )
        if taken.pruned:
            names = ", ".join(path.name for path in taken.pruned)
            output.err.print(
                f"removed {len(taken.pruned)} older archives (--keep): {names}",
                highlight=False,
                markup=False,
            )


def show_header(output: Output, snapshot: Snapshot) -> None:
    """What the archive is: when, where from, how long; on stderr, before the tables."""
    if output.format != "table":
        return
    manifest = snapshot.manifest
    source = f", inventory {manifest.inventory}" if manifest.inventory else ""
    limit = f" -l {manifest.limit}" if manifest.limit else ""
    output.err.print(
        redact(
            f"{snapshot.path.name}: taken {manifest.taken_at} on {manifest.taken_on}{source}"
            f"{limit}; {len(manifest.hosts)} hosts in {human_duration(manifest.seconds)} "
            f"(--timeout {manifest.timeout:g})"
        ),
        highlight=False,
        markup=False,
    )


def show_view(
    output: Output, view: SnapshotOverview, rows: Sequence[HostResult[HostOverview]]
) -> RenderableType:
    """The hosts table, then the fleet's slowlog fingerprints, latency events and Sentinels."""
    from rich.console import Group

    parts: list[RenderableType] = [_hosts_table(output, rows)]
    if view.fingerprints:
        parts.append(_fingerprints_table(output, view))
    if view.latency:
        parts.append(_latency_table(output, view))
    if view.sentinels:
        parts.append(_sentinels_table(output, view))
    return Group(*parts)


def show_summary(snapshot: Snapshot, view: SnapshotOverview) -> dict[str, Any]:
    from dataclasses import asdict

    manifest = snapshot.manifest
    return {
        "path": str(snapshot.path),
        "taken_at": manifest.taken_at,
        "taken_on": manifest.taken_on,
        "seconds": manifest.seconds,
        "fingerprints": [asdict(row) for row in view.fingerprints],
        "latency_events": [asdict(row) for row in view.latency],
        "sentinels": [asdict(row) for row in view.sentinels],
    }


def _hosts_table(output: Output, rows: Sequence[HostResult[HostOverview]]) -> Table:
    table = output.table(
        "host", "role", "server", "used", "maxmemory", "frag", "ops/s", "hits", "keys",
        "clients", "replication", "slowlog", "latency", "thp", "load",
        title="hosts",
        essential=("host",),
        drop=("thp", "load", "latency", "server", "frag", "hits", "ops/s", "clients", "slowlog",
              "maxmemory", "replication"),
    )  # fmt: skip
    notes = _notes(output)
    for result in rows:
        host = result.data
        if host is None:
            continue
        table.add_row(
            output.cell(result.host),
            output.cell(host.role if result.ok else f"{host.role} (error)"),
            output.cell(host.server),
            human_bytes(host.used_memory),
            human_bytes(host.maxmemory)
            if host.maxmemory
            else ("no limit" if host.used_memory is not None else "-"),
            "-" if host.fragmentation is None else f"{host.fragmentation:.2f}",
            human_count(host.ops_per_sec),
            human_percent(host.hit_ratio),
            human_count(host.keys),
            human_count(host.connected_clients),
            output.cell(host.replication),
            str(host.slowlog_entries),
            str(host.latency_events),
            output.cell(host.transparent_hugepage),
            "-" if host.load is None else f"{host.load:.2f}",
        )
        if not result.ok:
            _note(notes, result.host, "error", result.error or "failed", "red")
        for item, why in host.not_captured.items():
            if result.ok or why not in (result.error or ""):
                _note(notes, result.host, f"no {item}", why, "yellow")
        for item, why in host.skipped.items() if output.verbose else ():
            _note(notes, result.host, f"no {item}", why, "dim")
        if host.oom_lines:
            _note(
                notes,
                result.host,
                "kernel",
                f"{host.oom_lines} OOM-killer lines in the kernel log",
                "yellow",
            )
    _caption(table, notes)
    return table


def _fingerprints_table(output: Output, view: SnapshotOverview) -> Table:
    table = output.table(
        "fingerprint", "calls", "total", "max", "hosts",
        title="slowlog by fingerprint",
        essential=("fingerprint",), drop=("hosts", "max"),
    )  # fmt: skip
    for row in view.fingerprints:
        table.add_row(
            output.cell(row.fingerprint),
            human_count(row.calls),
            human_us(row.total_us),
            human_us(row.max_us),
            output.cell(", ".join(row.hosts)),
        )
    return table


def _latency_table(output: Output, view: SnapshotOverview) -> Table:
    table = output.table(
        "host", "event", "last", "latest", "max",
        title="latency events (LATENCY LATEST)", essential=("host", "event"),
    )  # fmt: skip
    for row in view.latency:
        table.add_row(
            output.cell(row.host),
            output.cell(row.event),
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.at)),
            f"{row.latest_ms} ms",
            f"{row.max_ms} ms",
        )
    return table


def _sentinels_table(output: Output, view: SnapshotOverview) -> Table:
    table = output.table(
        "sentinel", "master", "address", "flags", "quorum", "replicas", "sentinels", "ckquorum",
        title="what each Sentinel sees", essential=("sentinel", "master", "address"),
        drop=("ckquorum", "sentinels", "replicas", "quorum"),
    )  # fmt: skip
    for row in view.sentinels:
        table.add_row(
            output.cell(row.sentinel),
            output.cell(row.master),
            output.cell(row.address),
            output.cell(row.flags),
            output.cell(row.quorum),
            str(row.replicas),
            str(row.sentinels),
            output.cell(row.ckquorum),
        )
    return table


def diff_view(
    output: Output, diff: SnapshotDiff, rows: Sequence[HostResult[Any]]
) -> RenderableType:
    """One line per change (host, area, what, A, B), then slowlog fingerprints new in B."""
    from rich.console import Group
    from rich.text import Text

    table = output.table(
        "host", "area", "what", "A", "B",
        title=f"A {diff.before_taken_at}  ->  B {diff.after_taken_at}",
        essential=("host", "what"),
    )  # fmt: skip
    for result in rows:
        for change in result.data.changes if result.data else ():
            table.add_row(
                output.cell(result.host),
                output.cell(change.area),
                output.cell(change.what),
                _value(output, change.area, change.before),
                _value(output, change.area, change.after),
            )
    parts: list[RenderableType] = []
    if table.row_count:
        parts.append(table)
    if diff.new_fingerprints:
        fresh = output.table(
            "fingerprint", "calls", "total", "max", "hosts",
            title="slowlog fingerprints new in B", essential=("fingerprint",), drop=("hosts",),
        )  # fmt: skip
        for row in diff.new_fingerprints:
            fresh.add_row(
                output.cell(row.fingerprint),
                human_count(row.calls),
                human_us(row.total_us),
                human_us(row.max_us),
                output.cell(", ".join(row.hosts)),
            )
        parts.append(fresh)
    if not parts:
        parts.append(Text("no differences"))
    return Group(*parts)


def diff_summary(diff: SnapshotDiff) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "before": diff.before,
        "after": diff.after,
        "before_taken_at": diff.before_taken_at,
        "after_taken_at": diff.after_taken_at,
        "changes": diff.changes,
        "new_fingerprints": [asdict(row) for row in diff.new_fingerprints],
    }


def _value(output: Output, area: str, value: str | None) -> str:
    if value is None:
        return "(absent)"
    if value == "":
        return "(empty)"
    if area == "memory" and value.isdigit():
        return human_bytes(int(value))
    return output.cell(value)


def _failed(output: Output, failed: tuple[str, ...]) -> str:
    return f"[red]{output.cell(', '.join(failed))}[/]" if failed else "0"


def _notes(output: Output) -> Text:
    from rich.text import Text

    # Piped, a blank line sets the notes apart from the rows; a terminal table ends with one.
    return Text("" if output.out.is_terminal else "\n")


def _note(notes: Text, host: str, label: str, message: str, style: str) -> None:
    notes.append(f"{redact(host)} ", style="bold")
    notes.append(label, style=style)
    notes.append(f": {redact(' '.join(message.split()))}\n")


def _caption(table: Table, notes: Text) -> None:
    if notes.plain.strip():
        notes.rstrip()
        table.caption = notes
