"""The one function that turns what a command found into its exit code (DESIGN.md's table).

Refusals (3) and usage errors (2) are exceptions, mapped by errors.py at the error boundary;
what a command that ran to the end exits with is decided here, never in render.
"""

from __future__ import annotations

from collections.abc import Iterable

from redisops.errors import ExitCode
from redisops.results import HostResult


def exit_code(
    results: Iterable[HostResult] = (),
    *,
    flagged: Iterable[str] | bool = (),
    failed: bool = False,
    refused: bool = False,
) -> ExitCode:
    """3 when `refused`; 1 when any result failed, anything is `flagged` (hosts or findings at
    or above --fail-on, drift with --fail-on-drift, an unhealthy master) or the command
    `failed` otherwise (a drill that lost too many writes); else 0."""
    if refused:
        return ExitCode.REFUSED
    if failed or any(not result.ok for result in results):
        return ExitCode.FAILED
    if flagged if isinstance(flagged, bool) else any(True for _ in flagged):
        return ExitCode.FAILED
    return ExitCode.OK
