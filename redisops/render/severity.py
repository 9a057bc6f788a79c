"""How a severity looks in every view (memory summary's flags, config audit's findings)."""

from __future__ import annotations

from redisops.severity import Severity

SEVERITY_STYLE = {Severity.critical: "red", Severity.warning: "yellow"}
