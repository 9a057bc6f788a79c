"""The table of `lab up | down | status`: one row per lab process (rows: lab/sandbox.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.render.output import Output
from redisops.results import HostResult

if TYPE_CHECKING:
    from rich.table import Table


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
