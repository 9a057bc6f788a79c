"""Drill histories: one JSON object per line, appended after every drill, never rewritten.

Kept under `$XDG_STATE_HOME/redisops/`, else `~/.local/state/redisops/` (state that outlives
a run but is no configuration). A history holds names, addresses and figures, never a
password; it is created 0600 in a 0700 folder. Used by the Sentinel and the Redis Cluster
drills, each with a file and a record kind of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from redisops.errors import RedisopsError, UsageError

Report = TypeVar("Report")


def state_path(filename: str) -> Path:
    """Where redisops keeps `filename` among its state."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "redisops" / filename


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append `record` as one line, fsynced; RedisopsError (exit 1) when it cannot be written."""
    line = json.dumps(record, separators=(",", ":")) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise RedisopsError(
            f"drill history {path} cannot be written: {exc.strerror}",
            hint="the drill ran; its report is above",
        ) from None


def read_lines(path: Path) -> list[str]:
    """The non-blank lines of `path`; none when it does not exist; UsageError (exit 2) when it
    cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"drill history {path} cannot be read: {reason}") from None
    return [line for line in text.splitlines() if line.strip()]


def read_reports(
    path: Path,
    kind: str,
    version: int,
    build: Callable[[dict[str, Any]], Report],
    *,
    keep: Callable[[Report], bool],
    inventory: str | None,
    last: int | None,
) -> tuple[list[Report], int, int]:
    """The records of `kind` and `version` in `path`, built into reports, that `keep` accepts
    and were run with inventory file `inventory` (any when None), the `last` ones only; with
    the count of lines that could not be read (cut by a crash) and of reports of other
    inventories left out. UsageError (exit 2) when the file cannot be read."""
    reports: list[Report] = []
    unreadable = others = 0
    for line in read_lines(path):
        try:
            record = json.loads(line)
            if record.pop("kind") != kind or record.pop("format") != version:
                raise ValueError("another kind of record")
            report = build(record)
        except (ValueError, KeyError, TypeError, AttributeError):
            unreadable += 1
            continue
        if not keep(report):
            continue
        if inventory is not None and getattr(report, "inventory", None) != inventory:
            others += 1
        else:
            reports.append(report)
    if last is not None:
        reports = reports[-last:]
    return reports, unreadable, others
