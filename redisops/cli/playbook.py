"""`redisops playbook run FILE`, and the hidden command behind a playbook's `doctor: latency`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from redisops.cli.common import (
    DryRunOption,
    YesOption,
    confirm_change,
    global_options,
    make_output,
    selected_hosts,
)
from redisops.cli.groups import command_group
from redisops.errors import UsageError
from redisops.exitcode import exit_code
from redisops.options import GlobalOptions

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
    resolved and runs nothing. Exit 1 when a step failed, 2 when a step's command was given
    a bad option, 3 when one was refused; Ctrl-C stops after the step under way.
    """
    from redisops.interrupt import Interrupted
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
    hooks = _Hooks(screen, options, yes=yes)
    try:
        result = run_playbook(playbook, hooks=hooks, yes=yes, dry_run=dry_run, step_by_step=step)
    except Interrupted as stopped:
        stopped.done = hooks.progress(len(playbook.steps), stopped.done)
        raise
    screen.summary(result)
    if output.format == "json":
        output.json(
            "playbook run",
            result.steps,
            {"playbook": result.name, "file": result.path, "dry_run": dry_run}
            | {"variables": result.variables, "exit_code": int(result.exit_code)},
        )
    return result.exit_code


@app.command(
    "latency-doctor",
    hidden=True,
    epilog="""
        redisops -i prod.yaml playbook latency-doctor
        redisops -i prod.yaml -l cache-1 playbook latency-doctor -o json
    """,
)
def latency_doctor(ctx: typer.Context) -> int:
    """LATENCY DOCTOR on every selected Redis host: a playbook's `doctor: latency` step.

    Hidden: a built-in of playbooks, run as a command so that a step has the one parser and
    the one error boundary (a step's own --timeout is checked as the command line's).
    """
    from redisops.playbook.doctor import read_latency_doctors
    from redisops.render.playbook import doctor_table

    options = global_options(ctx)
    output = make_output(options)
    hosts = selected_hosts(options, output)
    results, sentinels = read_latency_doctors(
        hosts, timeout=options.timeout, parallel=options.parallel
    )
    output.host_results(
        "latency doctor",
        results,
        lambda rows: doctor_table(output, rows),
        summary={"sentinels_skipped": sentinels},
    )
    return exit_code(results)


class _Hooks:
    """The runner's link to the command tree and the terminal."""

    def __init__(self, screen: Any, options: GlobalOptions, *, yes: bool) -> None:
        self.screen = screen
        self.options = options
        self.yes = yes
        self.root = _root()
        self.finished_steps = 0
        self.current: str | None = None

    def invoke(self, words: list[str], options: Mapping[str, str]) -> Any:
        """Run one command of the tree in-process, as a command line runs (one parser, one
        error boundary), with the step's own global options over the run's: its outcome comes
        back in a collecting Output, the document kept for later steps and the tables it would
        have drawn shown on the run's screen."""
        from redisops.options import StepOptions
        from redisops.playbook.runner import Invocation
        from redisops.render.output import CollectingOutput

        sink = CollectingOutput(verbose=self.options.verbose)
        placed = StepOptions(self.options, dict(options), sink)
        code = self.root.main(args=words, prog_name="redisops", standalone_mode=False, obj=placed)
        self.screen.views(sink.views)
        return Invocation(int(code), sink.document)

    def progress(self, total: int, done_in_step: str | None) -> str:
        """What a stopped run had done, for its one `interrupted:` line."""
        text = f"{self.finished_steps} of {total} steps finished"
        if self.current is None:
            return text
        return f"{text}; stopped in step {self.current}" + (
            f" ({done_in_step})" if done_in_step else ""
        )

    def confirm(self, message: str) -> None:
        confirm_change(message, yes=self.yes)

    def ask_step(self, step: Any, command: str | None) -> bool:
        return typer.confirm(f"Run step {step.id} ({command or step.kind})?", err=True)

    def started(self, index: int, total: int, step: Any, command: str | None, message: str) -> None:
        self.current = step.id
        self.screen.started(index, total, step, command, message)

    def finished(self, record: Any) -> None:
        self.finished_steps += 1
        self.current = None
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


def _overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise UsageError(f"--var {pair!r}: expected name=value")
        values[name] = value
    return values
