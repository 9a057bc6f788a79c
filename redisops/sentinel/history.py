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
from dataclasses import dataclass
from pathlib import Path

from redisops.history import append_record, read_reports, state_path
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
    return state_path(HISTORY_FILE)


def append_drill(path: Path, report: DrillReport) -> None:
    """Append `report` as one line; RedisopsError (exit 1) when the file cannot be written."""
    record = {"kind": HISTORY_KIND, "format": HISTORY_FORMAT, **dataclasses.asdict(report)}
    append_record(path, record)


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
    drills, unreadable, others = read_reports(
        path,
        HISTORY_KIND,
        HISTORY_FORMAT,
        _report,
        keep=lambda report: master is None or report.master == master,
        inventory=inventory,
        last=last,
    )
    return DrillHistory(str(path), tuple(drills), unreadable, others)


def _report(record: dict) -> DrillReport:
    """A record as read back (tuples were lists in JSON)."""
    record["steps"] = tuple(Step(**step) for step in record["steps"])
    record["problems"] = tuple(record["problems"])
    record["warnings"] = tuple(record.get("warnings", ()))
    return DrillReport(**record)
