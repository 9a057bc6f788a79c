"""What every command shares: the global options, and loading the selected hosts."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from redisops.errors import RefusedError, UsageError
from redisops.options import GlobalOptions as GlobalOptions

if TYPE_CHECKING:
    from redisops.fleet.cluster import Discovery
    from redisops.fleet.host import Host
    from redisops.fleet.inventory import Inventory
    from redisops.fleet.selection import Selection
    from redisops.render.output import Output

# Set to 1 or 0 to override the stdin terminal check (tests, and wrappers such as `expect`).
INTERACTIVE_ENV = "REDISOPS_INTERACTIVE"

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Go ahead without asking (required off a terminal).")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be done and change nothing.")
]
# The options every drill (sentinel, cluster) shares.
FailbackOption = Annotated[
    bool, typer.Option("--failback", help="Afterwards, make the original master master again.")
]
HistoryLastOption = Annotated[
    int, typer.Option("--last", min=1, help="With --history: the newest N drills.")
]
AllInventoriesOption = Annotated[
    bool,
    typer.Option(
        "--all-inventories",
        help="With --history: drills run with any inventory (default: this inventory's).",
    ),
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
    hint = f"leave the cluster out with --limit '{excluded}'"
    if command is not None and command.command_path.endswith("backup restore"):
        hint = (
            "a cluster's backup set is restored with `redisops cluster restore SET_ID`; "
            "keys by pattern with `backup restore-keys -l CLUSTER`"
        )
    raise UsageError(
        f"{what} does not work on Redis Cluster yet: {len(seeds)} selected host(s) "
        f"are nodes of cluster {', '.join(names)} ({', '.join(h.name for h in seeds[:3])}"
        f"{', …' if len(seeds) > 3 else ''})",
        hint=hint,
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
