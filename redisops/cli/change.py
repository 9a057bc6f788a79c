"""The one function that carries out any mutating command's plan (redisops/change.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redisops.cli.common import confirm_change
from redisops.exitcode import exit_code

if TYPE_CHECKING:
    from rich.console import RenderableType

    from redisops.change import ChangeOutcome, ChangePlan
    from redisops.render.output import Output
    from redisops.results import HostResult

    View = Callable[[Sequence[HostResult]], RenderableType]
    Show = Callable[[Sequence[HostResult], Mapping[str, Any], View], None]


def carry_out(
    output: Output,
    plan: ChangePlan,
    apply: Callable[[], ChangeOutcome],
    *,
    view: View,
    yes: bool,
    dry_run: bool,
    force: bool = False,
    result_view: View | None = None,
    show: Show | None = None,
    audit: Callable[[ChangeOutcome], str | None] | None = None,
    plan_on_stderr: bool = False,
) -> int:
    """Plan → show → refuse (exit 3, every reason said) or stop after a dry run → confirm or
    --yes → apply → show → audit. Returns the exit code of the outcome (exitcode.py).

    `view` draws the plan's rows, `result_view` the outcome's (default: `view`);
    `show(rows, summary, draw)` replaces the standard result (the fan-out table, or the JSON
    envelope). A refused plan, a dry run and a plan with nothing to do are shown as the
    command's result (the summary says `dry_run`), unless `plan_on_stderr`: then the plan
    goes to stderr and only a dry run writes a JSON document. A refusal whose rows are all
    ok writes no JSON document (the error boundary writes the failure's). `audit` records
    the outcome and may return a line for --verbose.
    """

    def shown(rows: Sequence[HostResult], summary: Mapping[str, Any], draw: View) -> None:
        if show is not None:
            show(rows, summary, draw)
        else:
            output.host_results(plan.command, rows, draw, summary=dict(summary), noun=plan.noun)

    summary = {"dry_run": dry_run, **plan.summary}
    if plan_on_stderr and output.format == "table":
        output.err.print(view(plan.rows))
    refusal = plan.refusal(force=force)
    if refusal is not None:
        # A JSON document whose rows are all ok must not stand for a refusal: then the error
        # boundary writes the failure document (`ok` false and the error) instead.
        if not plan_on_stderr and (output.format == "table" or not _all_ok(plan.rows)):
            shown(plan.rows, summary, view)
        for reason in plan.reasons(force=force):
            if reason not in refusal.message:
                output.error(reason)
        raise refusal
    if dry_run or not plan.pending:
        if not plan_on_stderr:
            shown(plan.rows, summary, view)
        elif output.format == "json":
            shown(plan.rows, summary, lambda rows: "")
        if dry_run:
            output.err.print(f"dry run: nothing was {plan.undone}", style="dim", highlight=False)
        return exit_code(plan.rows)
    if plan.question is not None:
        if not plan_on_stderr:
            output.err.print(view(plan.rows))
        confirm_change(plan.question, yes=yes)
    outcome = apply()
    for warning in outcome.warnings:
        output.warn(warning)
    shown(outcome.rows, summary | dict(outcome.summary), result_view or view)
    for error in outcome.errors:
        if isinstance(error, str):
            output.error(error)
        else:
            output.error(error.message, error.hint)
    if audit is not None and (line := audit(outcome)):
        output.note(line)
    return exit_code(outcome.rows, failed=outcome.failed)


def _all_ok(rows: Sequence[HostResult]) -> bool:
    return all(row.ok for row in rows)
