"""The drill history: one JSON object per line, appended after every drill, never rewritten.

Default place: `$XDG_STATE_HOME/redisops/drills.jsonl`, else `~/.local/state/redisops/…`
(state that outlives a run but is no configuration). The file holds names, addresses and
figures, never a password; it is created 0600 in a 0700 folder. One file serves every
inventory: each drill records the inventory file it ran with and the old master's address,
and is listed with the drills of that inventory (names like `lab` and `node-1` repeat across
inventories; the pair inventory + address does not).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from redisops.errors import RedisopsError, UsageError
from redisops.sentinel.drill import DrillReport, Step

HISTORY_KIND = "redisops-drill"
HISTORY_FORMAT = 1
HISTORY_FILE = "drills.jsonl"


@dataclass(frozen=True)
class DrillHistory:
    """Past drills, oldest first, and how many lines could not be read (e.g. cut by a crash)."""

    path: str
    drills: tuple[DrillReport, ...]
    unreadable: int
    other_inventories: int = 0


def default_history_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "redisops" / HISTORY_FILE


def append_drill(path: Path, report: DrillReport) -> None:
    """Append `report` as one line; RedisopsError (exit 1) when the file cannot be written."""
    record = {"kind": HISTORY_KIND, "format": HISTORY_FORMAT, **dataclasses.asdict(report)}
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


def read_history(
    path: Path,
    *,
    master: str | None = None,
    last: int | None = None,
    inventory: str | None = None,
) -> DrillHistory:
    """The drills recorded in `path` (of master `master` only, run with the inventory file
    `inventory` only, the `last` ones only, last ≥ 1). `other_inventories` counts the drills
    left out for their inventory (those recorded before inventories were kept included).

    A missing file is an empty history; an unreadable one raises UsageError (exit 2).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DrillHistory(str(path), (), 0)
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"drill history {path} cannot be read: {reason}") from None
    drills = []
    unreadable = others = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        report = _report(line)
        if report is None:
            unreadable += 1
        elif master is not None and report.master != master:
            continue
        elif inventory is not None and report.inventory != inventory:
            others += 1
        else:
            drills.append(report)
    if last is not None:
        drills = drills[-last:]
    return DrillHistory(str(path), tuple(drills), unreadable, others)


def _report(line: str) -> DrillReport | None:
    try:
        record = json.loads(line)
        if record.pop("kind") != HISTORY_KIND or record.pop("format") != HISTORY_FORMAT:
            return None
        record["steps"] = tuple(Step(**step) for step in record["steps"])
        record["problems"] = tuple(record["problems"])
        record["warnings"] = tuple(record.get("warnings", ()))
        return DrillReport(**record)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
