"""Rows and table for `lab up | down | status`: one row per lab process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.render.output import Output
from redisops.results import HostResult

if TYPE_CHECKING:
    from rich.table import Table

    from redisops.lab.sandbox import LabState


def lab_results(state: LabState, *, want_running: bool = True) -> list[HostResult]:
    """A process is a failed row when its state is not the one the command wanted."""
    rows = []
    for process in state.processes:
        ok = process.running == want_running
        error = None if ok else ("not running" if want_running else "still running")
        rows.append(HostResult(process.name, f"127.0.0.1:{process.port}", ok, error, process))
    return rows


def lab_table(output: Output, results: Sequence[HostResult]) -> Table:
    table = output.table(
        "process", "address", "role", "pid", "state", "folder",
        essential=("process", "address"),
        drop=("pid", "role", "folder"),
    )  # fmt: skip
    for result in results:
        process = result.data
        state = "running" if process.running else "stopped"
        table.add_row(
            output.cell(result.host),
            output.cell(result.address),
            output.cell(process.role),
            output.cell(process.pid),
            f"[green]{state}[/]" if result.ok else f"[red]{state}[/]",
            output.cell(process.folder),
        )
    return table
