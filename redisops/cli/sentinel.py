"""`redisops sentinel status | drill`."""

from __future__ import annotations

import shlex
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from redisops.cli.common import (
    AllInventoriesOption,
    DryRunOption,
    FailbackOption,
    GlobalOptions,
    HistoryLastOption,
    YesOption,
    global_options,
    load_selection,
    make_output,
)
from redisops.cli.groups import command_group
from redisops.errors import ExitCode, UsageError
from redisops.exitcode import exit_code
from redisops.fleet.selection import select_sentinels
from redisops.sentinel import DEFAULT_MAX_LAG

if TYPE_CHECKING:
    from rich.console import RenderableType

    from redisops.render.output import Output
    from redisops.results import HostResult

app = command_group("sentinel")

MaxLagOption = Annotated[
    int,
    typer.Option(
        "--max-lag",
        min=0,
        help="A replica more than this many bytes behind its master is a problem.",
    ),
]


class DrillMode(str, Enum):
    failover = "failover"
    crash = "crash"
    hang = "hang"


@app.command()
def status(ctx: typer.Context, max_lag: MaxLagOption = DEFAULT_MAX_LAG) -> int:
    """Masters, replicas and sentinels as the selected sentinels see them.

    Per monitored master: its address and flags, whether every sentinel names the same master,
    sentinels seen, quorum (SENTINEL CKQUORUM), down-after and failover-timeout, and each
    replica's link, lag (bytes, from the master's INFO; seconds since its last acknowledgement)
    and priority. Problems are flagged: no quorum, sentinels disagreeing, a sentinel, the master
    or a replica down, a replica far behind, only priority-0 replicas. Exit 1 when a sentinel
    fails or a master has a problem.
    """
    from redisops.render.sentinel import status_summary, status_view
    from redisops.sentinel.topology import sentinel_status

    options = global_options(ctx)
    output = make_output(options)
    inventory, hosts = load_selection(options, output)
    result = sentinel_status(
        select_sentinels(hosts),
        inventory.hosts,
        timeout=options.timeout,
        parallel=options.parallel,
        max_lag=max_lag,
    )
    output.host_results(
        "sentinel status",
        result.results,
        lambda _rows: status_view(output, result),
        summary=status_summary(result),
        noun="sentinels",
    )
    unhealthy = [m.name for m in result.masters if not m.healthy]
    if unhealthy:
        output.warn(f"unhealthy: {', '.join(unhealthy)}")
    return exit_code(result.results, flagged=unhealthy)


@app.command()
def drill(
    ctx: typer.Context,
    master: Annotated[
        str | None,
        typer.Option(
            "--master",
            help="The master's name, as the sentinels monitor it (with --history: its drills).",
        ),
    ] = None,
    mode: Annotated[
        DrillMode,
        typer.Option(
            help="failover: SENTINEL FAILOVER; crash: SIGKILL the master (restarted after); "
            "hang: SIGSTOP it for down-after + 5s (DEBUG SLEEP without host access)."
        ),
    ] = DrillMode.failover,
    probe_rate: Annotated[
        float, typer.Option(min=1, max=1000, help="Probe writes per second.")
    ] = 50.0,
    probe_timeout: Annotated[
        float,
        typer.Option(min=0.05, help="The probe's connect and write timeout, in seconds."),
    ] = 1.0,
    max_lag: MaxLagOption = DEFAULT_MAX_LAG,
    settle_timeout: Annotated[
        float,
        typer.Option(min=1, help="Seconds to wait for the new topology to settle."),
    ] = 60.0,
    failback: FailbackOption = False,
    history: Annotated[
        bool, typer.Option("--history", help="List past drills instead of running one.")
    ] = False,
    history_file: Annotated[
        Path | None,
        typer.Option(
            help="Drill history (JSON Lines) [default: $XDG_STATE_HOME/redisops/drills.jsonl, "
            "else ~/.local/state/redisops/drills.jsonl].",
            show_default=False,
        ),
    ] = None,
    last: HistoryLastOption = 20,
    all_inventories: AllInventoriesOption = False,
    max_lost: Annotated[
        int | None,
        typer.Option(
            "--max-lost",
            min=0,
            help="Fail (exit 1) when more than N acknowledged writes are lost "
            "[default: lost writes are a warning only].",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Rehearse a failover and measure what clients feel.

    Pre-checks (exit 3 when one fails): every sentinel answers and reaches quorum, they agree
    on the master, no failover is in progress, every replica is up and one is within --max-lag.
    Then, after the plan and a confirmation: a write probe finds the master through Sentinel as
    an application does and writes numbered keys at --probe-rate; the fault is injected; the
    sentinels' events and the probe's errors go on one timeline; when the topology has settled,
    every acknowledged write is checked on the new master and the probe keys are removed.
    Reports detection, promotion, write downtime, writes acknowledged and lost, and whether the
    fleet is healthy after; lost acknowledged writes get a warning saying why and what to
    configure. Each drill is appended to the history file. Exit 1 when the drill failed (no
    promotion, not healthy after) or lost more than --max-lost writes. With --dry-run, stops
    after the pre-checks. Ctrl-C stops it within about a second, restarting a killed master.
    """
    from redisops.sentinel.history import default_history_path

    options = global_options(ctx)
    output = make_output(options)
    path = history_file or default_history_path()
    inventory_file = _inventory_file(options)
    if history:
        return _show_history(
            output,
            path,
            master=master,
            last=last,
            inventory=None if all_inventories else inventory_file,
        )
    if not master:
        raise UsageError(
            "--master NAME is required", hint="the names the sentinels monitor: sentinel status"
        )
    from redisops.change import ChangeOutcome
    from redisops.cli.change import carry_out
    from redisops.render.sentinel import drill_view, plan_view, step_line
    from redisops.sentinel.drill import drill_result, run_drill
    from redisops.sentinel.history import append_drill
    from redisops.sentinel.precheck import drill_change, plan_drill

    inventory, hosts = load_selection(options, output)
    plan = plan_drill(
        select_sentinels(hosts),
        inventory.hosts,
        master=master,
        mode=mode.value,
        max_lag=max_lag,
        failback=failback,
        probe_rate=probe_rate,
        timeout=options.timeout,
        parallel=options.parallel,
    )

    def apply() -> ChangeOutcome:
        report = run_drill(
            plan,
            inventory=inventory.hosts,
            probe_rate=probe_rate,
            probe_timeout=probe_timeout,
            settle_timeout=settle_timeout,
            timeout=options.timeout,
            parallel=options.parallel,
            on_step=(lambda step: step_line(output, step)) if output.err.is_terminal else None,
            max_lost=max_lost,
            inventory_file=inventory_file,
        )
        # The table shows the warnings; a JSON document's reader gets them on stderr.
        shown = report.warnings if output.format == "json" else ()
        return ChangeOutcome([drill_result(report)], warnings=shown)

    def audit(outcome: ChangeOutcome) -> str:
        report = outcome.rows[0].data
        append_drill(path, report)
        return f"drill {report.drill_id} appended to {path}"

    return carry_out(
        output,
        replace(drill_change(plan), summary={"history_file": str(path)}),
        apply,
        view=lambda rows: plan_view(output, rows[0].data),
        result_view=lambda rows: drill_view(output, rows[0].data),
        show=lambda rows, summary, draw: _show(output, rows[0], draw(rows), summary),
        yes=yes,
        dry_run=dry_run,
        audit=audit,
    )


@app.command()
def remove(
    ctx: typer.Context,
    master: Annotated[
        str, typer.Option("--master", help="The master's name, as the sentinels monitor it.")
    ],
    save: Annotated[
        Path,
        typer.Option(
            "--save",
            metavar="FILE",
            help="Where to keep its settings first (a new file, written 0600).",
        ),
    ],
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Stop watching a master on every selected sentinel, keeping its settings first.

    Reads each sentinel's settings for the master (SENTINEL MASTER: address, quorum,
    down-after-milliseconds, failover-timeout, parallel-syncs, scripts), writes them to FILE,
    then sends SENTINEL REMOVE to each. Put it back with `sentinel monitor --from FILE`, which
    sets them all again: SENTINEL MONITOR alone starts from Sentinel's defaults. Refused (exit
    3, nothing changed) unless every selected sentinel monitors the master at one address, or
    when FILE exists. FILE holds no secret: auth-pass is set again from the inventory.
    """
    from redisops.cli.change import carry_out
    from redisops.render.sentinel import settings_table
    from redisops.sentinel.settings import apply_remove, plan_remove

    options = global_options(ctx)
    output = make_output(options)
    inventory, hosts = load_selection(options, output)
    sentinels = select_sentinels(hosts)
    plan, saved = plan_remove(
        sentinels,
        inventory.hosts,
        master=master,
        save=save,
        inventory_file=_inventory_file(options),
        timeout=options.timeout,
        parallel=options.parallel,
    )
    code = carry_out(
        output,
        plan,
        lambda: apply_remove(
            sentinels, saved, save, timeout=options.timeout, parallel=options.parallel
        ),
        view=lambda rows: settings_table(output, rows),
        yes=yes,
        dry_run=dry_run,
    )
    if saved is not None and not dry_run:
        again = ["redisops", "-i", saved.inventory, "sentinel", "monitor", "--from", str(save)]
        output.err.print(
            f"settings saved to {save}; put them back with: {shlex.join(again)}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    return code


@app.command()
def monitor(
    ctx: typer.Context,
    from_: Annotated[
        Path,
        typer.Option(
            "--from",
            metavar="FILE",
            help="The settings `sentinel remove --save FILE` kept.",
        ),
    ],
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Watch a master again on the selected sentinels, with the settings it had.

    On each selected sentinel FILE has settings for: SENTINEL MONITOR at the saved address and
    quorum (skipped when it already monitors the master there), SENTINEL SET of every saved
    setting, auth-pass and auth-user from the inventory's credentials of the master (never
    from the file), then a read-back: a sentinel whose settings differ is an error (exit 1).
    A sentinel that monitors the master at another address is left alone (an error row).
    Then check with `sentinel status`: the sentinels find each other again within seconds.
    """
    from redisops.change import ChangeOutcome
    from redisops.cli.change import carry_out
    from redisops.render.sentinel import settings_table
    from redisops.sentinel.settings import load_settings, monitor_master, plan_monitor

    options = global_options(ctx)
    output = make_output(options)
    saved = load_settings(from_)
    inventory, hosts = load_selection(options, output)
    sentinels = select_sentinels(hosts)
    plan = plan_monitor(saved, sentinels, inventory.hosts, source=from_)
    return carry_out(
        output,
        plan,
        lambda: ChangeOutcome(
            monitor_master(
                saved,
                sentinels,
                inventory.hosts,
                timeout=options.timeout,
                parallel=options.parallel,
            )
        ),
        view=lambda rows: settings_table(output, rows),
        yes=yes,
        dry_run=dry_run,
    )


def _inventory_file(options: GlobalOptions) -> str:
    """The inventory file's absolute path: what drills and saved settings are recorded under."""
    from redisops.fleet.inventory import resolve_inventory_path

    return str(resolve_inventory_path(options.inventory).resolve())


def _show(output: Output, row: HostResult, view: RenderableType, summary: dict) -> None:
    """One drill (or its plan): the view on stdout, or the JSON envelope with its one row."""
    if output.format == "json":
        output.json("sentinel drill", [row], summary)
    else:
        output.out.print(view)


def _show_history(
    output: Output, path: Path, *, master: str | None, last: int, inventory: str | None
) -> int:
    """The drills of `inventory` (every inventory's when None), newest last."""
    from redisops.render.sentinel import history_table
    from redisops.sentinel.drill import drill_result
    from redisops.sentinel.history import read_history

    past = read_history(path, master=master, last=last, inventory=inventory)
    if past.unreadable:
        output.warn(f"{past.unreadable} unreadable line(s) in {path} skipped")
    rows = [drill_result(report) for report in past.drills]
    if output.format == "json":
        summary = {"history_file": str(path), "drills": len(rows)}
        output.json("sentinel drill", rows, summary | {"inventory": inventory})
    elif rows:
        output.out.print(history_table(output, rows, with_inventory=inventory is None))
    else:
        where = f" for inventory {inventory}" if inventory else ""
        output.err.print(f"no drills recorded in {path}{where}", style="dim", highlight=False)
    if past.other_inventories:
        output.err.print(
            f"{past.other_inventories} drill(s) of other inventories not shown "
            "(--all-inventories lists them)",
            style="dim",
            highlight=False,
        )
    return ExitCode.OK
