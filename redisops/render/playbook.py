"""A playbook run on screen: each step's heading and tables as it runs, then the summary."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redisops.render.output import Output
from redisops.render.units import human_duration

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rich.console import Console, RenderableType
    from rich.table import Table

    from redisops.playbook.doctor import LatencyDoctor
    from redisops.playbook.model import Step
    from redisops.playbook.runner import PlaybookRun, StepRecord
    from redisops.results import HostResult

STATUS_STYLE = {"ok": "green", "failed": "red", "refused": "red", "skipped": "yellow"}
EXPORT_FORMATS = (".html", ".svg", ".txt")


class PlaybookScreen:
    """Where a run is drawn: stdout in table mode, and a recording console for --export."""

    def __init__(self, output: Output, *, export: Path | None) -> None:
        from rich.console import Console

        self.output = output
        self.export = export
        # With -o json the tables are still recorded for --export, but not shown.
        stream = sys.stdout if output.format == "table" else io.StringIO()
        self.console: Console = Console(
            file=stream, width=output.out.width, record=export is not None, highlight=False
        )

    def plan(self, name: str, description: str, variables: dict[str, Any], dry_run: bool) -> None:
        from rich.text import Text

        head = Text(f"playbook {name}", style="bold")
        if dry_run:
            head.append("  (dry run: nothing is run or changed)", style="yellow")
        self.console.print(head)
        if description:
            self.console.print(Text(description.strip(), style="dim"))
        for key, value in variables.items():
            self.console.print(Text(f"  var {key} = {value!r}", style="dim"))

    def started(
        self, index: int, total: int, step: Step, command: str | None, message: str
    ) -> None:
        from rich.rule import Rule

        what = f" — redisops {command}" if command else ""
        self.console.print(
            Rule(f"step {index}/{total}: {step.id}{what}", align="left", style="cyan"),
            markup=False,
        )
        if message:
            self.console.print(message, markup=False, highlight=False)

    def views(self, views: list[RenderableType]) -> None:
        for view in views:
            self.console.print(view)

    def finished(self, record: StepRecord) -> None:
        """Why a step did not pass: in the run's record, or on stderr beside -o json."""
        if record.status in ("ok", "planned"):
            return
        reason = f"step {record.step} {record.status}" + (
            f": {record.error}" if record.error else ""
        )
        if self.output.format == "json":
            self.output.error(reason) if record.status != "skipped" else self.output.note(reason)
        else:
            style = STATUS_STYLE.get(record.status, "dim")
            self.console.print(reason, style=style, markup=False)

    def summary(self, run: PlaybookRun) -> None:
        table = self.output.table(
            "step", "status", "took", "figures", title=f"{run.name}", essential=("step",)
        )
        for record in run.steps:
            style = STATUS_STYLE.get(record.status, "dim")
            table.add_row(
                self.output.cell(record.step),
                f"[{style}]{self.output.cell(record.status)}[/]",
                human_duration(record.seconds)
                if record.status not in ("planned", "not run")
                else "-",
                self.output.cell(key_figures(record)),
            )
        self.console.print(table)
        if self.export is not None:
            save_export(self.console, self.export)


def doctor_table(output: Output, results: Sequence[HostResult[LatencyDoctor]]) -> Table:
    """LATENCY DOCTOR per host: off, quiet, or spikes, with the server's own report."""
    table = output.table("host", "latency", "LATENCY DOCTOR says", essential=("host",))
    for row in results:
        if not row.ok or row.data is None:
            table.add_row(output.cell(row.host), "[red]error[/]", output.cell(row.error))
            continue
        style = {"spikes": "yellow", "off": "dim"}.get(row.data.state, "green")
        verdict = f"[{style}]{row.data.state}[/]"
        table.add_row(output.cell(row.host), verdict, output.cell(row.data.report))
    return table


def key_figures(record: StepRecord) -> str:
    """The few numbers worth a glance: hosts ok, and the reason a step did not pass."""
    parts = []
    summary = (record.result or {}).get("summary") or {}
    if "hosts" in summary:
        parts.append(f"{summary.get('ok', 0)}/{summary['hosts']} hosts ok")
    if record.error:
        parts.append(record.error)
    return "; ".join(parts)


def save_export(console: Console, path: Path) -> None:
    """The whole run as an incident record, in the format the file name asks for."""
    from redisops.privatefile import private_file

    suffix = path.suffix.lower()
    if suffix == ".html":
        record = console.export_html()
    elif suffix == ".svg":
        record = console.export_svg(title=path.stem)
    else:
        record = console.export_text()
    with private_file(path) as handle:  # 0600: a run's record can name keys and hosts
        handle.write(record)
