"""What a playbook is once loaded and checked: frozen records the runner walks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redisops.playbook.expressions import Expression

KINDS = ("run", "confirm", "wait", "note", "doctor")


@dataclass(frozen=True)
class Step:
    """One step: a redisops command (`run`) or a built-in (`confirm`, `wait`, `note`,
    `doctor: latency`).

    `words` are the command's words and options with `{{ … }}` templates still in them;
    `options` are the global options this step sets for itself (redisops/options.py's
    STEP_OPTIONS), as text still to convert. A condition `wait` re-runs its read-only
    `words` until `until` holds.
    """

    id: str
    kind: str
    line: int
    title: str
    words: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    message: str = ""
    seconds: float = 0.0
    every: float = 1.0
    until: Expression | None = None
    when: Expression | None = None
    check: Expression | None = None
    on_failure: str = "stop"
    takes_yes: bool = False


@dataclass(frozen=True)
class Playbook:
    path: str
    name: str
    description: str
    variables: dict[str, Any]
    steps: tuple[Step, ...]
