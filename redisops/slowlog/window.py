"""`--since` / `--until`: a moment as a duration ago (`90s`, `30m`, `1h30m`, `2d`) or a date."""

from __future__ import annotations

import re
from datetime import datetime

from redisops.errors import UsageError

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_moment(text: str, *, now: float, option: str) -> int:
    """Unix seconds for `text`: a duration before `now`, or an ISO 8601 date and time.

    A date without a zone is local time. Raises UsageError (exit 2) naming `option`.
    """
    value = text.strip().lower()
    if _DURATION.match(value):
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(value))
        return int(now - seconds)
    try:
        # Python 3.10's fromisoformat does not read a trailing Z.
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is neither a duration nor a date",
            hint="use a duration such as 30m, 1h or 2d, or a date such as 2026-11-23T18:00",
        ) from None
    return int(moment.timestamp())  # naive datetimes are read as local time
