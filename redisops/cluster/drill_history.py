"""The cluster drill history: one JSON object per drill in `cluster-drills.jsonl` beside the
Sentinel drills' file (redisops/history.py: where, and how it is written), listed per
inventory file as `sentinel drill --history` does."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from redisops.cluster.drill import ClusterDrillReport
from redisops.history import append_record, read_reports, state_path
from redisops.sentinel.drill import Step

HISTORY_KIND = "redisops-cluster-drill"
HISTORY_FORMAT = 1
HISTORY_FILE = "cluster-drills.jsonl"


@dataclass(frozen=True)
class ClusterDrillHistory:
    """Past drills, oldest first; lines that could not be read (cut by a crash) are counted,
    and so are the drills of other inventories left out."""

    path: str
    drills: tuple[ClusterDrillReport, ...]
    unreadable: int
    other_inventories: int = 0


def default_history_path() -> Path:
    return state_path(HISTORY_FILE)


def append_drill(path: Path, report: ClusterDrillReport) -> None:
    """Append `report` as one line; RedisopsError (exit 1) when the file cannot be written."""
    append_record(
        path, {"kind": HISTORY_KIND, "format": HISTORY_FORMAT, **dataclasses.asdict(report)}
    )


def read_history(
    path: Path,
    *,
    cluster: str | None = None,
    last: int | None = None,
    inventory: str | None = None,
) -> ClusterDrillHistory:
    """The drills in `path` (of cluster `cluster` only, run with inventory file `inventory`
    only, the `last` ones only). A missing file is an empty history; an unreadable one raises
    UsageError (exit 2)."""
    drills, unreadable, others = read_reports(
        path,
        HISTORY_KIND,
        HISTORY_FORMAT,
        _report,
        keep=lambda report: cluster is None or report.cluster == cluster,
        inventory=inventory,
        last=last,
    )
    return ClusterDrillHistory(str(path), tuple(drills), unreadable, others)


def _report(record: dict) -> ClusterDrillReport:
    """A record as read back (tuples were lists in JSON)."""
    record["steps"] = tuple(Step(**step) for step in record["steps"])
    for name in ("problems", "warnings", "other_shards"):
        record[name] = tuple(record[name])
    return ClusterDrillReport(**record)
