"""`redisops playbook run FILE`."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from redisops.cli.common import (
    DryRunOption,
    GlobalOptions,
    OutputFormat,
    YesOption,
    check_timeout,
    confirm_change,
    global_options,
    make_output,
    selected_hosts,
)
from redisops.cli.groups import command_group
from redisops.errors import RedisopsError, UsageError

app = command_group("playbook")


@app.command("run")
def run(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="The playbook (YAML), e.g. playbooks/x.yaml.")
    ],
    var: Annotated[
        list[str] | None,
        typer.Option("--var", metavar="NAME=VALUE", help="Override a variable (repeatable)."),
    ] = None,
    step: Annotated[bool, typer.Option("--step", help="Ask before each step.")] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Save the run as an incident record: FILE.html, .svg or .txt."
        ),
    ] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Run a YAML runbook: each step one redisops command (in-process) or a built-in.

    The whole file is checked first (commands and options against the real command tree,
    variables, expressions): an error exits 2 naming file and line, before any step runs.
    Global options apply to every step unless a step sets its own. Changing steps ask as
    their commands do; --yes carries through. --dry-run lists the plan with variables
    resolved and runs nothing. Exit 1 when a step failed, 3 when one was refused.
    """
    from redisops.playbook.loader import load_playbook
    from redisops.playbook.runner import run_playbook
    from redisops.render.playbook import EXPORT_FORMATS, PlaybookScreen

    options = global_options(ctx)
    output = make_output(options)
    if export is not None and export.suffix.lower() not in EXPORT_FORMATS:
        raise UsageError(f"--export {export}: the name must end in .html, .svg or .txt")
    playbook = load_playbook(file, overrides=_overrides(var or []), check_command=_check_command)
    screen = PlaybookScreen(output, export=export)
    screen.plan(playbook.name, playbook.description, playbook.variables, dry_run)
    result = run_playbook(
        playbook,
        hooks=_Hooks(screen, yes=yes, verbose=options.verbose),
        global_options={
            "inventory": options.inventory,
            "limit": options.limit,
            "parallel": options.parallel,
            "timeout": options.timeout,
        },
        yes=yes,
        dry_run=dry_run,
        step_by_step=step,
    )
    screen.summary(result)
    if output.format == "json":
        output.json(
            "playbook run",
            result.steps,
            {"playbook": result.name, "file": result.path, "dry_run": dry_run}
            | {"variables": result.variables, "exit_code": int(result.exit_code)},
        )
    return result.exit_code


class _Hooks:
    """The runner's link to the command tree and the terminal."""

    def __init__(self, screen: Any, *, yes: bool, verbose: bool) -> None:
        self.screen = screen
        self.yes = yes
        self.verbose = verbose

    def invoke(self, argv: list[str]) -> Any:
        """Run one redisops command in-process with -o json: its document is kept for later
        steps, and the tables it would have drawn are shown from the same run."""
        from redisops.playbook.runner import Invocation
        from redisops.render.output import collecting_views

        captured = io.StringIO()
        with collecting_views() as views, contextlib.redirect_stdout(captured):
            code = _root().main(args=argv, prog_name="redisops", standalone_mode=False)
        self.screen.views(views)
        try:
            document = json.loads(captured.getvalue())
        except ValueError:
            document = None
        return Invocation(int(code), document if isinstance(document, dict) else None)

    def latency_doctor(self, options: dict[str, str]) -> Any:
        """The `doctor: latency` built-in, shown and recorded like a command's result."""
        from redisops.exitcode import exit_code
        from redisops.playbook.doctor import read_latency_doctors
        from redisops.playbook.runner import Invocation
        from redisops.render.output import Output, collecting_views
        from redisops.render.playbook import doctor_table

        captured = io.StringIO()
        with collecting_views() as views, contextlib.redirect_stdout(captured):
            try:
                step_options = _step_options(options, verbose=self.verbose)
                output = make_output(step_options)
                hosts = selected_hosts(step_options, output)
                results, sentinels = read_latency_doctors(
                    hosts, timeout=step_options.timeout, parallel=step_options.parallel
                )
                output.host_results(
                    "latency doctor",
                    results,
                    lambda rows: doctor_table(output, rows),
                    summary={"sentinels_skipped": sentinels},
                )
            except RedisopsError as exc:  # as the root's error boundary would report it
                Output().error(exc.message, exc.hint)
                return Invocation(int(exc.exit_code), None)
        self.screen.views(views)
        code = exit_code(results)
        return Invocation(int(code), json.loads(captured.getvalue()))

    def confirm(self, message: str) -> None:
        confirm_change(message, yes=self.yes)

    def ask_step(self, step: Any, command: str | None) -> bool:
        return typer.confirm(f"Run step {step.id} ({command or step.kind})?", err=True)

    def started(self, index: int, total: int, step: Any, command: str | None, message: str) -> None:
        self.screen.started(index, total, step, command, message)

    def finished(self, record: Any) -> None:
        self.screen.finished(record)


def _root() -> Any:
    from redisops.cli.app import app as root_app

    return typer.main.get_command(root_app)


def _check_command(words: list[str], complete: bool) -> bool:
    """Check a step against the real command tree; ValueError says what is wrong.

    Returns whether the command takes --yes (so a run's --yes can carry through to it).
    """
    import difflib

    from typer.core import TyperGroup

    root = _root()
    ctx = root.make_context("redisops", [], resilient_parsing=True)
    node, path, index = root, [], 0
    while isinstance(node, TyperGroup):
        if index >= len(words) or words[index].startswith("-"):
            raise ValueError(f"incomplete command {' '.join(['redisops', *path])!r}")
        found = node.get_command(ctx, words[index])
        if found is None or words[index] == "playbook":
            known = [name for name in node.list_commands(ctx) if name != "playbook"]
            close = difflib.get_close_matches(words[index], known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = " ".join(["redisops", *path])
            raise ValueError(f"unknown command {words[index]!r} for {where!r}{hint}")
        node, path, index = found, [*path, words[index]], index + 1
    args = words[index:]
    opts = {opt for param in node.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in args:
        name = arg.split("=", 1)[0]
        if name.startswith("-") and name not in opts and "{{" not in name:
            close = difflib.get_close_matches(name, sorted(opts), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{' '.join(path)}: no such option {name!r}{hint}")
    if complete:
        try:
            node.make_context(" ".join(path), list(args), parent=ctx)
        except typer.TyperException as exc:
            raise ValueError(f"{' '.join(path)}: {exc.format_message()}") from None
    return "--yes" in opts


def _step_options(options: dict[str, str], *, verbose: bool) -> GlobalOptions:
    try:
        parallel, timeout = int(options["parallel"]), float(options["timeout"])
    except ValueError as exc:
        raise UsageError(f"bad --parallel or --timeout for the step: {exc}") from None
    check_timeout(timeout)
    return GlobalOptions(
        inventory=Path(options["inventory"]) if options.get("inventory") else None,
        limit=options.get("limit") or None,
        output=OutputFormat.json,
        parallel=parallel,
        timeout=timeout,
        verbose=verbose,
    )


def _overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise UsageError(f"--var {pair!r}: expected name=value")
        values[name] = value
    return values
