"""How urgent a finding is: one scale for memory flags, config audit findings, `--fail-on` and
the views, so "critical or worse" means the same in every command. Imports nothing of redisops.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Severity(str, Enum):
    """How urgent a finding is, least urgent first; `--fail-on` takes the same names."""

    warning = "warning"
    critical = "critical"

    @property
    def rank(self) -> int:
        """Higher is more urgent."""
        return list(Severity).index(self)


def reaches(severity: Severity | None, threshold: Severity) -> bool:
    """True when `severity` (None: nothing found) is `threshold` or more urgent."""
    return severity is not None and severity.rank >= threshold.rank


def count_by_severity(severities: Iterable[Severity | None]) -> dict[str, int]:
    """How many of each severity, most urgent first, every severity named (None not counted)."""
    found = list(severities)
    return {severity.value: found.count(severity) for severity in reversed(Severity)}
