"""Views for `sentinel status | drill`: per-master blocks, the drill plan, its report, history."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redisops.redaction import redact
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count, human_duration, human_ms
from redisops.results import HostResult
from redisops.sentinel.drill import DrillReport, Step
from redisops.sentinel.precheck import DrillPlan
from redisops.sentinel.settings import MasterSettings
from redisops.sentinel.topology import MasterStatus, SentinelStatus

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

# Timeline sources that are redisops itself; any other source is a Sentinel.
OWN_SOURCES = frozenset({"drill", "probe"})


def seconds(ms: int | None) -> str:
    """Milliseconds as people read them: 3.30s; a dash when there is no figure."""
    return human_ms(ms)


# --- sentinel status ---------------------------------------------------------------------


def status_summary(status: SentinelStatus) -> dict[str, Any]:
    return {
        "healthy": status.healthy,
        "masters": [dataclasses.asdict(master) for master in status.masters],
    }


def status_view(output: Output, status: SentinelStatus) -> RenderableType:
    """One block per master (address, sentinels, replicas, problems), then the sentinels."""
    from rich.console import Group
    from rich.text import Text

    parts: list[RenderableType] = []
    for master in status.masters:
        parts.extend(_master_block(output, master))
        parts.append(Text(""))
    if not status.masters:
        parts.append(Text("no monitored master found", style="yellow"))
    parts.append(_sentinel_table(output, status.results))
    return Group(*parts)


def _master_block(output: Output, master: MasterStatus) -> list[RenderableType]:
    from rich.text import Text

    heading = Text(
        redact(f"{master.name}: master {master.host or '?'} {master.address}"), style="bold"
    )
    heading.append(f"  [{','.join(master.flags)}]  ", style="dim")
    count = len(master.problems)
    heading.append(
        "healthy" if master.healthy else f"{count} problem{'s' * (count != 1)}",
        style="green" if master.healthy else "red",
    )
    agreed = "all agree" if master.agreed else "DISAGREE"
    quorum = "reachable" if master.quorum_ok else "NOT reachable"
    facts = Text(
        f"sentinels: {master.sentinels_seen} seen, {agreed}; quorum {master.quorum} {quorum}; "
        f"down-after {seconds(master.down_after_ms)}; "
        f"failover-timeout {seconds(master.failover_timeout_ms)}; "
        f"parallel-syncs {master.parallel_syncs}",
        style="dim",
    )
    table = output.table(
        "replica", "address", "flags", "link", "lag", "last ack", "priority",
        essential=("replica", "address"),
        drop=("priority", "flags", "last ack"),
    )  # fmt: skip
    for replica in master.replicas:
        link = replica.link if replica.link == "up" else f"[red]{output.cell(replica.link)}[/]"
        table.add_row(
            output.cell(replica.host),
            output.cell(replica.address),
            output.cell(",".join(replica.flags)),
            link,
            human_bytes(replica.lag_bytes),
            human_duration(replica.lag_seconds),
            str(replica.priority),
        )
    lines = Text()
    for problem in master.problems:
        lines.append("problem: ", style="red")
        lines.append(redact(problem.message) + "\n")
    for note in master.notes:
        lines.append("note: ", style="dim")
        lines.append(redact(note) + "\n")
    lines.rstrip()
    return [heading, facts, table, *([lines] if lines.plain else [])]


def _sentinel_table(output: Output, results: Sequence[HostResult]) -> Table:
    table = output.table(
        "sentinel", "address", "monitors", "status", essential=("sentinel", "address")
    )
    for result in results:
        status = "[green]ok[/]" if result.ok else f"[red]error: {output.cell(result.error)}[/]"
        names = ", ".join(m.name for m in result.data.masters) if result.data else None
        table.add_row(
            output.cell(result.host), output.cell(result.address), output.cell(names), status
        )
    return table


# --- sentinel remove | monitor -----------------------------------------------------------


def settings_table(output: Output, results: Sequence[HostResult[MasterSettings]]) -> Table:
    """Per Sentinel: where it monitors the master and its settings, or why it failed."""
    table = output.table(
        "sentinel", "master at", "quorum", "down-after", "failover-timeout", "parallel-syncs",
        "status",
        essential=("sentinel", "master at"),
    )  # fmt: skip
    for result in results:
        view = result.data
        settings = view.settings if view is not None else {}
        status = "[green]ok[/]" if result.ok else f"[red]error: {output.cell(result.error)}[/]"
        table.add_row(
            output.cell(result.host),
            output.cell(view.address if view else None),
            output.cell(settings.get("quorum")),
            _setting_seconds(settings, "down-after-milliseconds"),
            _setting_seconds(settings, "failover-timeout"),
            output.cell(settings.get("parallel-syncs")),
            status,
        )
    return table


def _setting_seconds(settings: dict[str, str], name: str) -> str:
    value = settings.get(name)
    return "-" if value is None else seconds(int(value))


# --- sentinel drill ----------------------------------------------------------------------


def plan_view(output: Output, plan: DrillPlan) -> RenderableType:
    """The pre-checks, then what the drill will do, numbered."""
    from rich.console import Group
    from rich.text import Text

    table = output.table("pre-check", "result", "detail", essential=("pre-check",))
    for check in plan.checks:
        table.add_row(
            output.cell(check.name),
            "[green]ok[/]" if check.ok else "[red]FAILED[/]",
            output.cell(check.detail),
        )
    heading = Text(redact(f"{plan.mode} drill of {plan.master} ({plan.drill_id})"), style="bold")
    lines = Text()
    for number, action in enumerate(plan.actions, 1):
        lines.append(f"{number}. {redact(action)}\n")
    lines.rstrip()
    return Group(heading, table, *([Text("plan:", style="bold"), lines] if plan.ready else []))


def step_line(output: Output, step: Step) -> None:
    """A drill step as it happens, on stderr (for a person watching a terminal)."""
    from rich.text import Text

    line = Text(f"{seconds(step.at_ms):>8}  ", style="dim")
    line.append(redact(step.event), style="bold")
    line.append(f"  {redact(step.detail)}")
    output.err.print(line, soft_wrap=True, highlight=False)


def drill_view(output: Output, report: DrillReport) -> RenderableType:
    """The figures, then the timeline (times from the fault), then what went wrong."""
    from rich.console import Group
    from rich.text import Text

    new = f"{report.new_master} ({report.new_address})" if report.new_address else "no new master"
    heading = Text(
        redact(
            f"{report.mode} drill of {report.master}: {report.old_master} "
            f"({report.old_address}) -> {new}  "
        ),
        style="bold",
    )
    heading.append("ok" if report.ok else "FAILED", style="green" if report.ok else "red")
    figures = output.table("figure", "value", essential=("figure",))
    for name, value in _figures(report):
        figures.add_row(name, output.cell(value))
    timeline = output.table("time", "source", "event", "detail", essential=("time", "event"))
    for step in report.steps:
        timeline.add_row(
            relative_time(step.at_ms, report.trigger_ms),
            output.cell(step.source),
            output.cell(step.event),
            output.cell(step.detail if step.source in OWN_SOURCES else compact_event(step)),
        )
    parts: list[RenderableType] = [heading]
    if report.warnings:
        parts.append(_labelled("warning", report.warnings, "yellow"))
    parts += [figures, Text(""), timeline_heading(report.trigger_ms, "the probe started"), timeline]
    if report.problems:
        parts += [Text(""), _labelled("problem", report.problems, "red")]
    return Group(*parts)


def _labelled(label: str, messages: Sequence[str], style: str) -> RenderableType:
    """`label: message` lines, the label styled."""
    from rich.text import Text

    lines = Text()
    for message in messages:
        lines.append(f"{label}: ", style=style)
        lines.append(redact(message) + "\n")
    lines.rstrip()
    return lines


def compact_event(step: Step) -> str:
    """A Sentinel event's message without what the timeline already says: instances as
    ip:port (not `name ip port`), no `@ master ip port` suffix. JSON keeps the message whole."""
    words = step.detail.split()
    if step.event == "+switch-master" and len(words) >= 5:
        return f"{words[1]}:{words[2]} -> {words[3]}:{words[4]}"
    rest: list[str] = []
    if "@" in words:
        at = words.index("@")
        words, rest = words[:at], words[at + 4 :]
    if len(words) >= 4 and words[0] in ("master", "slave", "sentinel"):
        words = [words[0], f"{words[2]}:{words[3]}", *words[4:]]
    return " ".join(words + rest)


def _figures(report: DrillReport) -> list[tuple[str, str]]:
    lost = "not checked" if report.writes_lost is None else human_count(report.writes_lost)
    healthy = "yes" if report.healthy_after else "NO"
    if report.healthy_after and report.settled_ms is not None:
        healthy += f" (settled {seconds(report.settled_ms)} after the fault)"
    rows = [
        ("detected (+odown)", seconds(report.detect_ms)),
        ("promoted (+switch-master)", seconds(report.promotion_ms)),
        ("write downtime", seconds(report.write_downtime_ms)),
        ("writes acknowledged", human_count(report.writes_acked)),
        ("acknowledged writes lost", lost),
        ("stale writes (old master, after promotion)", human_count(report.stale_writes)),
        ("duplicates", human_count(report.duplicates)),
        ("failed write attempts", human_count(report.write_errors)),
        ("old master rejoined as replica", seconds(report.rejoin_ms)),
        ("healthy after", healthy),
    ]
    if report.failed_back is not None:
        rows.append(("failed back", "yes" if report.failed_back else "NO"))
    return rows


def timeline_heading(trigger_ms: int | None, started: str) -> RenderableType:
    """`timeline (T = the fault, 1.2s after <started>)`: a drill's timeline is told from the
    fault (sentinel and cluster drills alike)."""
    from rich.text import Text

    if trigger_ms is None:
        return Text("timeline (from the start)", style="bold")
    return Text(f"timeline (T = the fault, {seconds(trigger_ms)} after {started})", style="bold")


def relative_time(at_ms: int, trigger_ms: int | None) -> str:
    """A timeline step's time: T+1.25s from the fault, or from the start when none was sent."""
    if trigger_ms is None:
        return seconds(at_ms)
    offset = at_ms - trigger_ms
    return f"T{'+' if offset >= 0 else '-'}{abs(offset) / 1000:.2f}s"


def history_table(
    output: Output, results: Sequence[HostResult[DrillReport]], *, with_inventory: bool = False
) -> Table:
    """Past drills, one row each; `address` is the old master's, `inventory` (when drills of
    every inventory are listed) the file each drill was run with."""
    columns = ["started", "drill", "master", "mode", "from", "address", "to", "detect",
               "promote", "downtime", "acked", "lost", "healthy", "result"]  # fmt: skip
    table = output.table(
        *columns,
        *(["inventory"] if with_inventory else []),
        essential=("drill", "master", "from", "address", "to"),
        drop=("mode", "detect", "acked", "healthy", "started", "downtime", "promote"),
    )
    for result in results:
        report = result.data
        table.add_row(
            output.cell(report.started_at),
            output.cell(report.drill_id),
            output.cell(report.master),
            output.cell(report.mode),
            output.cell(report.old_master),
            output.cell(report.old_address),
            output.cell(report.new_master),
            seconds(report.detect_ms),
            seconds(report.promotion_ms),
            seconds(report.write_downtime_ms),
            human_count(report.writes_acked),
            human_count(report.writes_lost),
            "yes" if report.healthy_after else "[red]no[/]",
            "[green]ok[/]" if report.ok else "[red]failed[/]",
            *([output.cell(report.inventory)] if with_inventory else []),
        )
    return table
