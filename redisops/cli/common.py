"""What every command shares: the global options, and loading the selected hosts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import typer

from redisops.fleet.host import Host
from redisops.render.output import Output


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the subcommand, as the root callback parsed them."""

    inventory: Path | None
    limit: str | None
    output: OutputFormat
    parallel: int
    timeout: float
    verbose: bool


def global_options(ctx: typer.Context) -> GlobalOptions:
    return ctx.find_root().obj


def make_output(options: GlobalOptions) -> Output:
    return Output(options.output.value, verbose=options.verbose)


def selected_hosts(options: GlobalOptions, output: Output) -> tuple[Host, ...]:
    """Load the inventory and apply --limit; inventory warnings go to stderr."""
    from redisops.fleet.inventory import load_inventory, resolve_inventory_path
    from redisops.fleet.selection import select_hosts

    path = resolve_inventory_path(options.inventory)
    inventory = load_inventory(path)
    for warning in inventory.warnings:
        output.warn(warning)
    hosts = select_hosts(inventory, options.limit)
    output.note(f"{len(hosts)} of {len(inventory.hosts)} hosts selected from {path}")
    return hosts
