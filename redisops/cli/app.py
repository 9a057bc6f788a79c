"""The root command: global options, the command groups, and the one error boundary."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import shlex
import sys
import typing
from typing import Annotated, Any

import typer
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from redisops import __version__
from redisops.cli.argv import Arranged, arrange_arguments
from redisops.cli.coercion import install_plain_coercion
from redisops.cli.groups import COMMAND_GROUPS, ROOT_EXAMPLES, write_examples
from redisops.errors import ExitCode, RedisopsError
from redisops.interrupt import Interrupted, stop_on_signals
from redisops.options import GlobalOptions, StepOptions, command_line, declared_options
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
        # A playbook step: its options are placed, its results go to the step's Output.
        step = extra.get("obj") if isinstance(extra.get("obj"), StepOptions) else None
        sink = step.sink if step else None
        run = Arranged(given, "", json=step is not None, inventory=None)
        with recording_documents() as written:
            try:
                with stop_on_signals():
                    run = arrange_arguments(self, given)
                    if step is not None:
                        run = dataclasses.replace(run, json=True, inventory=step.inventory)
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
                if step is not None:  # the whole playbook stops; its boundary says so, once
                    raise stopped.interrupted from None
                code = _report_interrupted(run, stopped.interrupted, bool(written))
            except RedisopsError as exc:
                hint = _hint(run, exc, step)
                code = _report(run, exc.message, hint, exc.exit_code, bool(written), sink)
            except typer.Abort:
                code = _report(run, "aborted", None, ExitCode.REFUSED, bool(written), sink)
            except NoArgsIsHelpError as exc:
                code = _show_help(run, exc.ctx)
            except typer.TyperException as exc:  # Typer's usage errors: bad option, no value
                message = exc.format_message()
                code = _report(run, message, "see --help", ExitCode.USAGE, False, sink)
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


def _report(
    run: Arranged, message: str, hint: str | None, code: int, written: bool, sink: Any = None
) -> int:
    """One `error:` line (and hint) on stderr; with -o json, also the failure's JSON document
    unless the command wrote its own already (to `sink` for a playbook step)."""
    from redisops.render.output import Output

    output = sink or Output()
    output.error(message, hint)
    if run.json and not written:
        output.failure(run.command, message, hint, code)
    return code


def _hint(run: Arranged, exc: RedisopsError, step: StepOptions | None = None) -> str | None:
    """The error's hint, its `redisops …` commands given this run's inventory, and with the
    whole command line to paste when an option such as --yes would go ahead (for a playbook
    step, its command with the step's -i and -l)."""
    # Not this run's --limit: the hint may be about the limit (`-l node-9` matches nothing).
    invoked = command_line(run.inventory, None)
    hint = invoked.with_inventory(exc.hint) if exc.hint else exc.hint
    if exc.rerun_with is None:
        return hint
    if step is not None:
        line = step.command_line.redisops(*run.args, exc.rerun_with)
    else:
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


def root(ctx: typer.Context, version: bool = False, **given: Any) -> None:
    """Keep the global options for the command: from the command line, or for a playbook
    step from the step's mapping over the run's (placed by the runner as `obj`)."""
    placed = ctx.obj
    if isinstance(placed, StepOptions):
        ctx.obj = placed.resolve()
    else:
        ctx.obj = GlobalOptions.from_command_line(given)


def _root_signature() -> inspect.Signature:
    """The root's parameters: one option per field of GlobalOptions (redisops/options.py,
    where the global options are declared), then --version."""
    hints = typing.get_type_hints(GlobalOptions)
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=typer.Context)]  # fmt: skip
    for option in declared_options():
        meta = option.metadata
        kind = list[str] | None if meta["repeatable"] else hints[option.name]
        declared = typer.Option(
            *meta["flags"],
            metavar=meta["metavar"],
            help=meta["help"],
            show_default=meta["show_default"],
        )
        params.append(
            inspect.Parameter(
                option.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=option.default,
                annotation=Annotated[kind, declared],
            )
        )
    version = typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit."
    )
    params.append(
        inspect.Parameter(
            "version",
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, version],
        )
    )
    return inspect.Signature(params)


root.__signature__ = _root_signature()  # type: ignore[attr-defined]
app.callback()(root)


def main() -> None:
    """Console-script entry point."""
    app()
