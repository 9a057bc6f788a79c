"""The root command: global options, the command groups, and the one error boundary."""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from redisops import __version__
from redisops.cli.argv import Arranged, arrange_arguments
from redisops.cli.coercion import install_plain_coercion
from redisops.cli.common import (
    MAX_TIMEOUT,
    MIN_TIMEOUT,
    GlobalOptions,
    OutputFormat,
    check_timeout,
    command_line,
)
from redisops.cli.groups import COMMAND_GROUPS, ROOT_EXAMPLES, write_examples
from redisops.errors import ExitCode, RedisopsError, UsageError
from redisops.interrupt import Interrupted, stop_on_signals
from redisops.render.documents import recording_documents

install_plain_coercion()


class RedisopsGroup(TyperGroup):
    """Loads command groups on demand, accepts global options anywhere, and turns every
    failure into `error: …` on stderr (and, with -o json, one JSON document on stdout) with
    the exit code it maps to."""

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

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        write_examples(self.epilog, formatter)

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
        given = list(sys.argv[1:] if args is None else args)
        run = Arranged(given, "", json=False, inventory=None)
        with recording_documents() as written:
            try:
                with stop_on_signals():
                    run = arrange_arguments(self, given)
                    if run.error:
                        raise run.error
                    returned = super().main(
                        args=run.args,
                        prog_name=prog_name or "redisops",
                        complete_var=complete_var,
                        standalone_mode=False,
                        **extra,
                    )
                code = int(returned) if isinstance(returned, int) else ExitCode.OK
            except _Stopped as stopped:
                code = _report_interrupted(run, stopped.interrupted, bool(written))
            except RedisopsError as exc:
                code = _report(run, exc.message, _hint(run, exc), exc.exit_code, bool(written))
            except typer.Abort:
                code = _report(run, "aborted", None, ExitCode.REFUSED, bool(written))
            except NoArgsIsHelpError as exc:
                code = _show_help(run, exc.ctx)
            except typer.TyperException as exc:  # Typer's usage errors: bad option, no value
                code = _report(run, exc.format_message(), "see --help", ExitCode.USAGE, False)
        if standalone_mode:
            sys.exit(code)
        return code


class _Stopped(Exception):
    """Carries an Interrupted past Typer, which turns a KeyboardInterrupt into a silent exit 130."""

    def __init__(self, interrupted: Interrupted) -> None:
        super().__init__(str(interrupted))
        self.interrupted = interrupted


def _report_interrupted(run: Arranged, interrupted: Interrupted, written: bool) -> int:
    """The one `interrupted:` line; with -o json, also a document saying so (never a half
    report that looks whole)."""
    from redisops.render.output import Output

    output = Output()
    done = interrupted.done or "stopped before any result"
    output.interrupted(str(interrupted), done)
    if run.json and not written:
        output.failure(
            run.command, f"interrupted: {interrupted}; {done}", None, interrupted.exit_code
        )
    return interrupted.exit_code


def _report(run: Arranged, message: str, hint: str | None, code: int, written: bool) -> int:
    """One `error:` line (and hint) on stderr; with -o json, also the failure's JSON document
    unless the command wrote its own already."""
    from redisops.render.output import Output

    output = Output()
    output.error(message, hint)
    if run.json and not written:
        output.failure(run.command, message, hint, code)
    return code


def _hint(run: Arranged, exc: RedisopsError) -> str | None:
    """The error's hint, its `redisops …` commands given this run's inventory, and with the
    whole command line to paste when an option such as --yes would go ahead."""
    # Not this run's --limit: the hint may be about the limit (`-l node-9` matches nothing).
    invoked = command_line(run.inventory, None)
    hint = invoked.with_inventory(exc.hint) if exc.hint else exc.hint
    if exc.rerun_with is None:
        return hint
    line = shlex.join(["redisops", *run.args, exc.rerun_with])
    return f"{hint}: {line}" if hint else f"re-run with {exc.rerun_with}: {line}"


def _show_help(run: Arranged, ctx: Any) -> int:
    """Bare `redisops` shows its help on stdout and succeeds, as git and kubectl do; a bare
    group is a usage error (a command is missing): its help goes to stderr, exit 2."""
    if ctx.parent is None:
        typer.echo(ctx.get_help())
        return ExitCode.OK
    typer.echo(ctx.get_help() + "\n", err=True)
    names = ", ".join(ctx.command.list_commands(ctx))
    return _report(run, f"{ctx.command_path} needs a command: {names}", None, ExitCode.USAGE, False)


app = typer.Typer(
    cls=RedisopsGroup,
    name="redisops",
    help="Operations toolbox for Redis fleets: one inventory, every host at once. Global "
    "options go before or after the command.",
    epilog=ROOT_EXAMPLES,
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
            metavar="PATH",
            help="Inventory file [default: $REDISOPS_INVENTORY, else ./inventory.yaml].",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "-l",
            "--limit",
            metavar="PATTERN",
            help="Hosts or groups: comma-separated, globs, !name excludes; repeatable (the "
            "patterns add up).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "-o", "--output", metavar="table|json", help="table for people, json for machines."
        ),
    ] = OutputFormat.table,
    parallel: Annotated[int, typer.Option(metavar="N", help="Hosts worked on at once.")] = 16,
    timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help=f"Per-host connect and command timeout ({MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}).",
        ),
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
    check_timeout(timeout)
    ctx.obj = GlobalOptions(
        inventory=inventory_path,
        limit=",".join(limit) if limit else None,
        output=output,
        parallel=parallel,
        timeout=timeout,
        verbose=verbose,
    )


def main() -> None:
    """Console-script entry point."""
    app()
