"""The plan of a mutating command, and what carrying it out gave: the change engine's data.

Every mutating command is plan → show → refuse or dry-run → confirm → apply → audit. A concern
exposes `plan_…()` returning a ChangePlan and `apply_…()` returning a ChangeOutcome (taking
the locks it needs itself); `redisops/cli/change.py` carries any plan out the same way. See
docs/development.md for how a new mutating command uses it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from redisops.errors import HostError, RefusedError
from redisops.results import HostResult

T = TypeVar("T")
R = TypeVar("R")

FORCE_HINT = "fix that first, or re-run with --force if you are sure"


@dataclass(frozen=True)
class ChangePlan(Generic[T]):
    """What a command will change, decided before anything changes.

    `rows`: per host (or per item) what will change; one that could not be planned is an
    error row. `pending`: how many things would change (0: nothing to do, the plan is shown
    and nothing is asked). `question`: asked before applying (`--yes` answers it); None for
    a change never asked about (the lab: a sandbox of this machine), which is then not shown
    before it is made either.
    `blockers`: reasons that stop it whatever the options; `refusals`: reasons `--force`
    lifts. `refused`: the one-line error a refusal exits 3 with; a reason it does not already
    say gets an `error:` line of its own. `undone` ends the dry run's line ("dry run: nothing
    was reset"). `summary`: the JSON summary of the plan, and of the outcome (merged); `noun`
    what the rows are, for the count line.
    """

    command: str
    rows: Sequence[HostResult[T]]
    question: str | None
    pending: int
    summary: Mapping[str, Any] = field(default_factory=dict)
    blockers: Sequence[str] = ()
    refusals: Sequence[str] = ()
    refused: str = "refused; nothing was changed"
    hint: str | None = None
    undone: str = "changed"
    noun: str = "hosts"

    def reasons(self, *, force: bool) -> list[str]:
        """Why the plan may not go ahead (empty: it may)."""
        return [*self.blockers, *(() if force else self.refusals)]

    def refusal(self, *, force: bool) -> RefusedError | None:
        """The error that stops the plan (exit 3), or None. With refusals only, the hint says
        that --force goes ahead, and the error boundary prints the command line with it."""
        if not self.reasons(force=force):
            return None
        if self.blockers:
            return RefusedError(self.refused, self.hint)
        return RefusedError(self.refused, self.hint or FORCE_HINT, rerun_with="--force")


@dataclass(frozen=True)
class ChangeOutcome(Generic[R]):
    """What applying a plan did: one row per host (or item), summary fields added to the
    plan's, one-line `errors` (a HostError when it has a hint) and `warnings` for stderr, and
    `failed` when the change failed though no row did (a drill that lost too many writes)."""

    rows: Sequence[HostResult[R]]
    summary: Mapping[str, Any] = field(default_factory=dict)
    errors: Sequence[str | HostError] = ()
    warnings: Sequence[str] = ()
    failed: bool = False
