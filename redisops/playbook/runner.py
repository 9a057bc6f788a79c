"""Walk a playbook's steps: conditions, commands, checks, waits, and what each one gave."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from redisops.errors import ExitCode, RefusedError
from redisops.exitcode import exit_code
from redisops.interrupt import pause
from redisops.playbook.doctor import DOCTOR_COMMAND
from redisops.playbook.expressions import ExpressionError, render_template, truthy
from redisops.playbook.model import Playbook, Step


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
        """From its steps' outcomes: 3 when one was refused; 2 when a command exited 2 (the
        playbook gave it a bad option, e.g. a step's own `timeout: 0`); 1 when one failed."""
        refused = any(step.status == "refused" for step in self.steps)
        if not refused and any(step.exit_code == ExitCode.USAGE for step in self.steps):
            return ExitCode.USAGE
        failed = any(step.status == "failed" for step in self.steps)
        return exit_code(refused=refused, failed=failed)


class Hooks(Protocol):
    """What the runner needs from the CLI layer: running commands, asking, showing."""

    def invoke(self, words: list[str], options: Mapping[str, str]) -> Invocation:
        """Run a command (its words; the step's own global options) in-process."""

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
    yes: bool = False,
    dry_run: bool = False,
    step_by_step: bool = False,
    sleep: Callable[[float], None] = pause,
) -> PlaybookRun:
    """Run every step in order; a failure stops the run unless the step says `continue`.

    With `dry_run` nothing is invoked: each step is listed with its variables resolved, and
    references to earlier results shown as `<expr>`. A stop asked for by a signal raises
    `Interrupted` out of here once the current step has wound down.
    """
    scope: dict[str, Any] = dict(playbook.variables)
    records: list[StepRecord] = []
    stopped = False
    total = len(playbook.steps)
    for index, step in enumerate(playbook.steps, start=1):
        command = _command(step, scope, yes=yes) if step.words else None
        shown = " ".join(command) if command else None
        if stopped:
            records.append(_record(step, shown, "not run", None, 0.0, None))
            continue
        hooks.started(index, total, step, shown, _text(step.message, scope))
        if dry_run:
            record = _record(step, shown, "planned", None, 0.0, None)
        else:
            record = _run_step(step, command, shown, scope, hooks, step_by_step, sleep)
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
            outcome = hooks.invoke(list(DOCTOR_COMMAND), _options(step, scope))
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
    options = _options(step, scope)
    outcome = hooks.invoke(command, options)
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
        outcome = hooks.invoke(command, options)


def _holds(step: Step, scope: dict[str, Any]) -> bool:
    try:
        return truthy(step.until.evaluate(scope))
    except ExpressionError:
        return False


def _command(step: Step, scope: dict[str, Any], *, yes: bool) -> list[str]:
    """A step's command words, variables resolved, and --yes when the run has it."""
    words = [_text(word, scope) for word in step.words]
    return [*words, "--yes"] if yes and step.takes_yes else words


def _options(step: Step, scope: dict[str, Any]) -> dict[str, str]:
    """The global options a step sets for itself (the CLI puts them over the run's)."""
    return {key: _text(value, scope) for key, value in step.options.items()}


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
