"""The root command: global options, the command groups, and the one error boundary."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from redisops import __version__
from redisops.cli.coercion import install_plain_coercion
from redisops.cli.common import GlobalOptions, OutputFormat
from redisops.cli.groups import COMMAND_GROUPS
from redisops.errors import ExitCode, RedisopsError, UsageError
from redisops.interrupt import Interrupted, stop_on_signals

install_plain_coercion()


class RedisopsGroup(TyperGroup):
    """Loads command groups on demand, and turns every failure into `error: …` on one stderr
    line and the exit code it maps to."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMAND_GROUPS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        entry = COMMAND_GROUPS.get(cmd_name)
        if entry is None:
            return None
        group = typer.main.get_group(importlib.import_module(entry[0]).app)
        group.name = cmd_name
        return group

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The command list from the table: no group module is imported for --help."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMAND_GROUPS.items()])

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Interrupted as exc:
            raise _Stopped(exc) from None

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            with stop_on_signals():
                returned = super().main(
                    args=args,
                    prog_name=prog_name or "redisops",
                    complete_var=complete_var,
                    standalone_mode=False,
                    **extra,
                )
            code = int(returned) if isinstance(returned, int) else ExitCode.OK
        except _Stopped as stopped:
            code = _report_interrupted(stopped.interrupted)
        except RedisopsError as exc:
            code = _report(exc.message, exc.hint, exc.exit_code)
        except typer.Abort:
            code = _report("aborted", None, ExitCode.REFUSED)
        except typer.TyperException as exc:  # Typer's own usage errors: bad option, missing value
            message = exc.format_message()
            # A bare group (e.g. `redisops`) has printed its help already; nothing to add.
            code = _report(message, "see --help", ExitCode.USAGE) if message else ExitCode.USAGE
        if standalone_mode:
            sys.exit(code)
        return code


class _Stopped(Exception):
    """Carries an Interrupted past Typer, which turns a KeyboardInterrupt into a silent exit 130."""

    def __init__(self, interrupted: Interrupted) -> None:
        super().__init__(str(interrupted))
        self.interrupted = interrupted


def _report_interrupted(interrupted: Interrupted) -> int:
    from redisops.render.output import Output

    Output().interrupted(str(interrupted), interrupted.done)
    return interrupted.exit_code


def _report(message: str, hint: str | None, code: int) -> int:
    from redisops.render.output import Output

    Output().error(message, hint)
    return code


app = typer.Typer(
    cls=RedisopsGroup,
    name="redisops",
    help="Operations toolbox for Redis fleets: one inventory, every host at once.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help: Rich-formatted help imports markdown-it and costs ~150 ms per --help.
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"redisops {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    inventory_path: Annotated[
        Path | None,
        typer.Option(
            "-i",
            "--inventory",
            help="Inventory file [default: $REDISOPS_INVENTORY, else ./inventory.yaml].",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        str | None,
        typer.Option(
            "-l", "--limit", help="Hosts or groups: comma-separated, globs, !name excludes."
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("-o", "--output", help="table for people, json for machines.")
    ] = OutputFormat.table,
    parallel: Annotated[int, typer.Option(help="Hosts worked on at once.")] = 16,
    timeout: Annotated[
        float, typer.Option(help="Per-host connect and command timeout, in seconds.")
    ] = 5.0,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="More detail on stderr.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    if parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {parallel}")
    if not timeout > 0:
        raise UsageError(f"--timeout must be more than 0 seconds, got {timeout:g}")
    ctx.obj = GlobalOptions(
        inventory=inventory_path,
        limit=limit,
        output=output,
        parallel=parallel,
        timeout=timeout,
        verbose=verbose,
    )


def main() -> None:
    """Console-script entry point."""
    app()
