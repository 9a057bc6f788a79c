"""`redisops lab up | down | status`: a local sandbox fleet for trying things and for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from redisops.cli.common import global_options, make_output
from redisops.cli.groups import command_group
from redisops.exitcode import exit_code

app = command_group("lab")

DEFAULT_LAB_DIR = Path(".lab")
LabDir = Annotated[
    Path, typer.Option("--dir", help="Folder holding the lab's processes, data and inventory.")
]


@app.command()
def up(
    ctx: typer.Context,
    lab_dir: LabDir = DEFAULT_LAB_DIR,
    replicas: Annotated[int, typer.Option(min=0, max=20, help="Replicas of the master.")] = 2,
    sentinels: Annotated[int, typer.Option(min=0, max=9, help="Sentinels watching it.")] = 3,
    base_port: Annotated[
        int, typer.Option(min=1024, max=65000, help="Master port; replicas follow, sentinels +100.")
    ] = 7000,
    seed: Annotated[int, typer.Option(min=0, help="Load this many keys of mixed types.")] = 0,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="Start a Redis Cluster instead (no sentinels).")
    ] = False,
    shards: Annotated[
        int, typer.Option(min=3, max=33, help="With --cluster: masters, each with --replicas.")
    ] = 3,
    server: Annotated[
        str | None,
        typer.Option(
            metavar="PATH|NAME",
            help="Server binary: a path, or a name looked up on PATH outside virtualenvs "
            "[default: redis-server].",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Start the lab.

    Returns when every process answers and the replicas are in sync.
    """
    from redisops.change import ChangeOutcome
    from redisops.cli.change import carry_out
    from redisops.lab.sandbox import lab_results, lab_status, lab_up, plan_lab_up
    from redisops.render.lab import lab_table

    output = make_output(global_options(ctx))
    shape = {
        "replicas": replicas,
        "sentinels": 0 if cluster else sentinels,
        "base_port": base_port,
        "seed_keys": seed,
        "shards": shards if cluster else None,
    }
    plan = plan_lab_up(lab_dir.resolve(), **shape)
    if not plan.pending:
        output.warn(f"a lab is already running in {lab_dir.resolve()}; nothing changed")
    code = carry_out(
        output,
        plan,
        lambda: ChangeOutcome(lab_results(lab_up(lab_dir.resolve(), server=server, **shape))),
        view=lambda rows: lab_table(output, rows),
        yes=True,
        dry_run=False,
    )
    state = lab_status(lab_dir.resolve())
    output.note(f"inventory: {state.inventory_path}")
    if output.format == "table":
        output.err.print(f"server: {state.server}", highlight=False, markup=False)
        output.err.print(
            f"next: redisops -i {state.inventory_path} inventory check", highlight=False
        )
    return code


@app.command()
def down(
    ctx: typer.Context,
    lab_dir: LabDir = DEFAULT_LAB_DIR,
    purge: Annotated[bool, typer.Option(help="Also delete the lab folder and its data.")] = False,
) -> int:
    """Stop every lab process (data is kept unless --purge)."""
    from redisops.change import ChangeOutcome
    from redisops.cli.change import carry_out
    from redisops.lab.sandbox import lab_down, lab_results, plan_lab_down
    from redisops.render.lab import lab_table

    output = make_output(global_options(ctx))
    return carry_out(
        output,
        plan_lab_down(lab_dir.resolve(), purge=purge),
        lambda: ChangeOutcome(
            lab_results(lab_down(lab_dir.resolve(), purge=purge), want_running=False)
        ),
        view=lambda rows: lab_table(output, rows),
        yes=True,
        dry_run=False,
    )


@app.command()
def status(ctx: typer.Context, lab_dir: LabDir = DEFAULT_LAB_DIR) -> int:
    """Show which lab processes run.

    Exit code 1 when any of them is down.
    """
    from redisops.lab.sandbox import lab_results, lab_status
    from redisops.render.lab import lab_table

    output = make_output(global_options(ctx))
    state = lab_status(lab_dir.resolve())
    results = lab_results(state)
    output.host_results("lab status", results, lambda r: lab_table(output, r), noun="processes")
    return exit_code(results)
