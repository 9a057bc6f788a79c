"""Views for `cluster drill`: the plan, the report (figures, timeline, problems), history.
The live step lines and the timeline's times are the Sentinel drill's (render/sentinel.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.cluster.drill import ClusterDrillReport
from redisops.cluster.drill_plan import ClusterDrillPlan
from redisops.redaction import redact
from redisops.render.output import Output
from redisops.render.sentinel import relative_time, timeline_heading
from redisops.render.units import human_count, human_ms
from redisops.results import HostResult

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table


def plan_view(output: Output, plan: ClusterDrillPlan) -> RenderableType:
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
    heading = Text(
        redact(f"{plan.mode} drill of {plan.cluster}/{plan.shard} ({plan.drill_id})"),
        style="bold",
    )
    lines = Text()
    for number, action in enumerate(plan.actions, 1):
        lines.append(f"{number}. {redact(action)}\n")
    lines.rstrip()
    return Group(heading, table, *([Text("plan:", style="bold"), lines] if plan.ready else []))


def drill_view(output: Output, report: ClusterDrillReport) -> RenderableType:
    """The figures, then the timeline (times from the fault), then what went wrong."""
    from rich.console import Group
    from rich.text import Text

    new = report.new_master or "no new master"
    heading = Text(
        redact(
            f"{report.mode} drill of {report.cluster}/{report.shard}: {report.old_master} "
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
            output.cell(step.detail),
        )
    parts: list[RenderableType] = [heading]
    parts += [_labelled("warning", w, "yellow") for w in report.warnings]
    parts += [
        figures,
        Text(""),
        timeline_heading(report.trigger_ms, "the probes started"),
        timeline,
    ]
    parts += [_labelled("problem", p, "red") for p in report.problems]
    return Group(*parts)


def _figures(report: ClusterDrillReport) -> list[tuple[str, str]]:
    def lost(value: int | None) -> str:
        return "not checked" if value is None else human_count(value)

    healthy = "yes" if report.healthy_after else "NO"
    if report.healthy_after and report.settled_ms is not None:
        healthy += f" ({human_ms(report.settled_ms)} after the fault)"
    others = ", ".join(report.other_shards) or "none"
    rows = [
        ("cluster-node-timeout", human_ms(report.node_timeout_ms)),
        ("suspected (PFAIL seen)", human_ms(report.pfail_ms)),
        ("detected (FAIL seen)", human_ms(report.detect_ms)),
        ("promoted (new master serves)", human_ms(report.promotion_ms)),
        (f"write downtime, {report.shard}", human_ms(report.write_downtime_ms)),
        ("writes acknowledged", human_count(report.writes_acked)),
        ("acknowledged writes lost", lost(report.writes_lost)),
        ("failed write attempts", human_count(report.write_errors)),
        ("duplicates", human_count(report.duplicates)),
        (f"other shards ({others}): writes", human_count(report.other_writes_acked)),
        ("other shards: failed attempts", human_count(report.other_write_errors)),
        ("other shards: longest gap", human_ms(report.other_downtime_ms)),
        ("other shards: slowest write", human_ms(report.other_max_latency_ms)),
        ("other shards: writes lost", lost(report.other_writes_lost)),
        ("old master rejoined as replica", human_ms(report.rejoin_ms)),
        ("healthy after", healthy),
    ]
    if report.failed_back is not None:
        rows.append(("failed back", "yes" if report.failed_back else "NO"))
    return rows


def _labelled(label: str, message: str, style: str) -> RenderableType:
    from rich.text import Text

    line = Text(f"{label}: ", style=style)
    line.append(redact(message))
    return line


def history_table(
    output: Output,
    results: Sequence[HostResult[ClusterDrillReport]],
    *,
    with_inventory: bool = False,
) -> Table:
    """Past drills, one row each: the old master, the new one, the figures."""
    columns = ["started", "drill", "shard", "mode", "from", "to", "detect", "promote",
               "downtime", "lost", "others", "healthy", "result"]  # fmt: skip
    table = output.table(
        *columns,
        *(["inventory"] if with_inventory else []),
        essential=("drill", "shard", "from", "to"),
        drop=("started", "mode", "healthy", "others", "lost", "detect"),
    )
    for result in results:
        report = result.data
        table.add_row(
            output.cell(report.started_at),
            output.cell(report.drill_id),
            output.cell(f"{report.cluster}/{report.shard}"),
            output.cell(report.mode),
            output.cell(report.old_master),
            output.cell(report.new_master),
            human_ms(report.detect_ms),
            human_ms(report.promotion_ms),
            human_ms(report.write_downtime_ms),
            human_count(report.writes_lost),
            f"{human_count(report.other_write_errors)} failed",
            "yes" if report.healthy_after else "[red]no[/]",
            "[green]ok[/]" if report.ok else "[red]failed[/]",
            *([output.cell(report.inventory)] if with_inventory else []),
        )
    return table
