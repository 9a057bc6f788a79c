"""What every command shares: the global options, and loading the selected hosts."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from redisops.commandline import CommandLine
from redisops.errors import RefusedError, UsageError

if TYPE_CHECKING:
    from redisops.fleet.cluster import Discovery
    from redisops.fleet.host import Host
    from redisops.fleet.inventory import Inventory
    from redisops.fleet.selection import Selection
    from redisops.render.output import Output

# A timeout past a day overflows the clocks of sockets and threads (OverflowError); one under
# 0.1 s fails every host and says nothing about the fleet.
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 86400.0

# Set to 1 or 0 to override the stdin terminal check (tests, and wrappers such as `expect`).
INTERACTIVE_ENV = "REDISOPS_INTERACTIVE"

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Go ahead without asking (required off a terminal).")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be done and change nothing.")
]


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

    @property
    def command_line(self) -> CommandLine:
        """How this run was invoked, for the command lines it prints to be pasted."""
        return command_line(str(self.inventory) if self.inventory else None, self.limit)


def command_line(inventory: str | None, limit: str | None) -> CommandLine:
    """The invocation for printed command lines: the inventory given with -i, else the one
    $REDISOPS_INVENTORY names (a line pasted elsewhere may not have it), and the --limit."""
    from redisops.fleet.inventory import INVENTORY_ENV

    return CommandLine(inventory or os.environ.get(INVENTORY_ENV) or None, limit)


def global_options(ctx: typer.Context) -> GlobalOptions:
    return ctx.find_root().obj


def check_timeout(seconds: float) -> float:
    """`seconds` when it is a usable --timeout; UsageError (exit 2) when not (inf, nan, 1e12)."""
    if not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
        raise UsageError(
            f"--timeout must be {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} seconds, got {seconds:g}"
        )
    return seconds


def make_output(options: GlobalOptions) -> Output:
    from redisops.render.output import Output

    return Output(options.output.value, verbose=options.verbose)


def selected_hosts(
    options: GlobalOptions, output: Output, *, clusters: bool = False
) -> tuple[Host, ...]:
    """Load the inventory and apply --limit; inventory warnings go to stderr."""
    return load_selection(options, output, clusters=clusters)[1]


def load_selection(
    options: GlobalOptions, output: Output, *, clusters: bool = False
) -> tuple[Inventory, tuple[Host, ...]]:
    """The whole inventory and the hosts --limit selects from it (for commands that need both).

    `clusters=True` for a command that understands Redis Cluster: seeds are expanded into
    every node (redisops.fleet.cluster). Any other command refuses a selection holding a seed
    (exit 2), rather than treat a cluster's nodes as unrelated standalone servers.
    """
    inventory, selection = load_cluster_selection(options, output, clusters=clusters)
    return inventory, selection.hosts


def load_cluster_selection(
    options: GlobalOptions, output: Output, *, clusters: bool = True
) -> tuple[Inventory, Selection]:
    """load_selection with the discovered clusters (`Selection.clusters`) as well."""
    from redisops.fleet.cluster import discover_clusters
    from redisops.fleet.inventory import load_inventory, resolve_inventory_path
    from redisops.fleet.selection import select

    path = resolve_inventory_path(options.inventory)
    inventory = load_inventory(path)
    for warning in inventory.warnings:
        output.warn(warning)

    def discover(names: set[str]) -> Discovery:
        return discover_clusters(
            inventory.hosts, names, timeout=options.timeout, parallel=options.parallel
        )

    selection = select(inventory, options.limit, discover=discover if clusters else None)
    if not clusters:
        _refuse_seeds(selection.hosts)
    hosts = selection.hosts
    if len(hosts) == 1 and hosts[0].name in selection.not_cluster:
        raise UsageError(str(hosts[0].discovery_error))
    nodes = sum(1 for host in hosts if host.node is not None)
    found = f" ({nodes} found by cluster discovery)" if nodes else ""
    output.note(f"{len(hosts)} of {len(inventory.hosts)} hosts selected from {path}{found}")
    return inventory, selection


def _refuse_seeds(hosts: tuple[Host, ...]) -> None:
    """UsageError naming the cluster seeds among `hosts`, for a command without clusters."""
    from typer._click.globals import get_current_context

    seeds = [host for host in hosts if host.cluster]
    if not seeds:
        return
    names = sorted({str(host.cluster_name) for host in seeds})
    command = get_current_context(silent=True)
    what = f"`{command.command_path}`" if command else "this command"
    excluded = ",".join(f"!{name}" for name in names)
    raise UsageError(
        f"{what} does not work on Redis Cluster yet: {len(seeds)} selected host(s) "
        f"are nodes of cluster {', '.join(names)} ({', '.join(h.name for h in seeds[:3])}"
        f"{', …' if len(seeds) > 3 else ''})",
        hint=f"leave the cluster out with --limit '{excluded}'",
    )


def confirm_change(question: str, *, yes: bool) -> None:
    """Ask before a change; RefusedError (exit 3) when declined, or off a terminal without --yes.

    The caller shows the plan first; `--dry-run` is handled by the caller before asking.
    """
    if yes:
        return
    if not _stdin_is_terminal():
        raise RefusedError(
            f"{question} Refused: not on a terminal and --yes not given",
            hint="re-run with --yes to go ahead (or --dry-run to see the plan only)",
            rerun_with="--yes",
        )
    if not typer.confirm(question, default=False, err=True):
        raise RefusedError("declined; nothing was changed")


def _stdin_is_terminal() -> bool:
    forced = os.environ.get(INTERACTIVE_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stdin.isatty()
