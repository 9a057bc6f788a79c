"""Walk a playbook's steps: conditions, commands, checks, waits, and what each one gave."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from redisops.errors import ExitCode, RefusedError
from redisops.playbook.expressions import ExpressionError, render_template, truthy
from redisops.playbook.model import Playbook, Step

GLOBAL_FLAGS = {"inventory": "--inventory", "limit": "--limit", "parallel": "--parallel",
                "timeout": "--timeout"}  # fmt: skip


@dataclass(frozen=True)
class Invocation:
    """What one in-process command gave: its exit code and its JSON document (if any)."""

    exit_code: int
    document: dict[str, Any] | None


@dataclass(frozen=True)
class StepRecord:
    """One step's outcome, as the summary and `-o json` show it."""

    step: str
    title: str
    kind: str
    command: str | None
    status: str  # ok, failed, refused, skipped, not run, planned
    ok: bool
    exit_code: int | None
    seconds: float
    error: str | None
    result: dict[str, Any] | None = None


@dataclass(frozen=True)
class PlaybookRun:
    name: str
    path: str
    dry_run: bool
    variables: dict[str, Any]
    steps: tuple[StepRecord, ...] = field(default_factory=tuple)

    @property
    def exit_code(self) -> ExitCode:
        if any(step.status == "refused" for step in self.steps):
            return ExitCode.REFUSED
        return ExitCode.FAILED if any(step.status == "failed" for step in self.steps) else 0


class Hooks(Protocol):
    """What the runner needs from the CLI layer: running commands, asking, showing."""

    def invoke(self, argv: list[str]) -> Invocation: ...

    def latency_doctor(self, options: dict[str, str]) -> Invocation: ...

    def confirm(self, message: str) -> None: ...  # raises RefusedError when declined

    def ask_step(self, step: Step, command: str | None) -> bool: ...

    def started(
        self, index: int, total: int, step: Step, command: str | None, message: str
    ) -> None: ...

    def finished(self, record: StepRecord) -> None: ...


def run_playbook(
    playbook: Playbook,
    *,
    hooks: Hooks,
    global_options: Mapping[str, Any],
    yes: bool = False,
    dry_run: bool = False,
    step_by_step: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> PlaybookRun:
    """Run every step in order; a failure stops the run unless the step says `continue`.

    With `dry_run` nothing is invoked: each step is listed with its variables resolved, and
    references to earlier results shown as `<expr>`.
    """
    scope: dict[str, Any] = dict(playbook.variables)
    records: list[StepRecord] = []
    stopped = False
    total = len(playbook.steps)
    for index, step in enumerate(playbook.steps, start=1):
        command = _command(step, scope, global_options, yes=yes) if step.words else None
        own = len(step.words) + (command[-1] == "--yes") if command else 0
        shown = " ".join(command[-own:]) if command else None
        if stopped:
            records.append(_record(step, shown, "not run", None, 0.0, None))
            continue
        hooks.started(index, total, step, shown, _text(step.message, scope))
        if dry_run:
            record = _record(step, shown, "planned", None, 0.0, None)
        else:
            record = _run_step(
                step, command, shown, scope, hooks, step_by_step, sleep, global_options
            )
        hooks.finished(record)
        records.append(record)
        if record.status == "refused" or (record.status == "failed" and step.on_failure == "stop"):
            stopped = True
    return PlaybookRun(
        playbook.name, playbook.path, dry_run, dict(playbook.variables), tuple(records)
    )


def _run_step(
    step: Step,
    command: list[str] | None,
    shown: str | None,
    scope: dict[str, Any],
    hooks: Hooks,
    step_by_step: bool,
    sleep: Callable[[float], None],
    global_options: Mapping[str, Any],
) -> StepRecord:
    started = time.monotonic()

    def record(status: str, code: int | None, error: str | None, result: Any = None) -> StepRecord:
        return _record(step, shown, status, code, time.monotonic() - started, error, result)

    try:
        if step.when is not None and not truthy(step.when.evaluate(scope)):
            return record("skipped", None, f"when: {step.when.text} is false")
        if step_by_step and not hooks.ask_step(step, shown):
            return record("skipped", None, "skipped at --step")
        if step.kind == "confirm":
            hooks.confirm(_text(step.message, scope))
            return record("ok", 0, None)
        if step.kind == "note":
            return record("ok", None, None)
        if step.kind == "wait" and step.until is None:
            sleep(step.seconds)
            return record("ok", None, None)
        if step.kind == "doctor":
            outcome = hooks.latency_doctor(_options(step, scope, global_options))
        else:
            outcome = _invoke(step, command, scope, hooks, sleep)
    except RefusedError as exc:
        return record("refused", ExitCode.REFUSED, exc.message)
    except ExpressionError as exc:
        return record("failed", None, str(exc))
    if outcome.document is not None:
        scope[step.id] = outcome.document | {"exit_code": outcome.exit_code}
    if step.kind == "wait":
        if _holds(step, scope):
            return record("ok", outcome.exit_code, None, outcome.document)
        return record(
            "failed", outcome.exit_code, f"not within {step.seconds:g}s: {step.until.text}"
        )
    if outcome.exit_code == ExitCode.REFUSED:
        return record("refused", outcome.exit_code, "refused", outcome.document)
    if outcome.exit_code != 0:
        return record("failed", outcome.exit_code, f"exit {outcome.exit_code}", outcome.document)
    if step.check is not None:
        try:
            held = truthy(step.check.evaluate(scope))
        except ExpressionError as exc:
            return record("failed", 0, f"assert: {exc}", outcome.document)
        if not held:
            return record("failed", 0, f"assert failed: {step.check.text}", outcome.document)
    return record("ok", outcome.exit_code, None, outcome.document)


def _invoke(
    step: Step,
    command: list[str],
    scope: dict[str, Any],
    hooks: Hooks,
    sleep: Callable[[float], None],
) -> Invocation:
    """Run the step's command; a condition wait re-runs it until `until` holds or time is up."""
    outcome = hooks.invoke(command)
    if step.kind != "wait":
        return outcome
    deadline = time.monotonic() + step.seconds
    while True:
        if outcome.document is not None:
            scope[step.id] = outcome.document | {"exit_code": outcome.exit_code}
            if _holds(step, scope):
                return outcome
        if time.monotonic() + step.every > deadline:
            return outcome
        sleep(step.every)
        outcome = hooks.invoke(command)


def _holds(step: Step, scope: dict[str, Any]) -> bool:
    try:
        return truthy(step.until.evaluate(scope))
    except ExpressionError:
        return False


def _command(
    step: Step, scope: dict[str, Any], global_options: Mapping[str, Any], *, yes: bool
) -> list[str]:
    """The argv of a step: its own global options over the run's, its words, --yes if given."""
    options = _options(step, scope, global_options)
    argv = ["-o", "json"]
    for key, flag in GLOBAL_FLAGS.items():
        if key in options and options[key] != "":
            argv += [flag, str(options[key])]
    argv += [_text(word, scope) for word in step.words]
    if yes and step.takes_yes:
        argv.append("--yes")
    return argv


def _options(
    step: Step, scope: dict[str, Any], global_options: Mapping[str, Any]
) -> dict[str, str]:
    """The global options of a step: the run's, and the step's own over them."""
    options = {key: str(value) for key, value in global_options.items() if value is not None}
    options.update({key: _text(value, scope) for key, value in step.options.items()})
    return options


def _text(template: str, scope: Mapping[str, Any]) -> str:
    return render_template(template, scope, lambda expr: f"<{expr}>")


def _record(
    step: Step,
    command: str | None,
    status: str,
    code: int | None,
    seconds: float,
    error: str | None,
    result: dict[str, Any] | None = None,
) -> StepRecord:
    ok = status in ("ok", "skipped", "planned")
    return StepRecord(
        step.id, step.title, step.kind, command, status, ok, code, seconds, error, result
    )
