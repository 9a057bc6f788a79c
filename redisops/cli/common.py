"""What every command shares: the global options, and loading the selected hosts."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from redisops.errors import RefusedError
from redisops.options import GlobalOptions as GlobalOptions

if TYPE_CHECKING:
    from redisops.fleet.host import Host
    from redisops.fleet.inventory import Inventory
    from redisops.render.output import Output

# Set to 1 or 0 to override the stdin terminal check (tests, and wrappers such as `expect`).
INTERACTIVE_ENV = "REDISOPS_INTERACTIVE"

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Go ahead without asking (required off a terminal).")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be done and change nothing.")
]


def global_options(ctx: typer.Context) -> GlobalOptions:
    return ctx.find_root().obj


def make_output(options: GlobalOptions) -> Output:
    """Where the command writes: stdout and stderr, or a playbook step's collecting Output
    (placed in the options by the runner, so the step's outcome comes back as data)."""
    from redisops.render.output import Output

    if options.sink is not None:
        return options.sink
    return Output(options.output.value, verbose=options.verbose)


def selected_hosts(options: GlobalOptions, output: Output) -> tuple[Host, ...]:
    """Load the inventory and apply --limit; inventory warnings go to stderr."""
    return load_selection(options, output)[1]


def load_selection(options: GlobalOptions, output: Output) -> tuple[Inventory, tuple[Host, ...]]:
    """The whole inventory and the hosts --limit selects from it (for commands that need both)."""
    from redisops.fleet.inventory import load_inventory, resolve_inventory_path
    from redisops.fleet.selection import select_hosts

    path = resolve_inventory_path(options.inventory)
    inventory = load_inventory(path)
    for warning in inventory.warnings:
        output.warn(warning)
    hosts = select_hosts(inventory, options.limit)
    output.note(f"{len(hosts)} of {len(inventory.hosts)} hosts selected from {path}")
    return inventory, hosts


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
