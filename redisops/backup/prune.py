"""Retention: which backups `backup prune` keeps, and deleting the others.

Rules work per host and kind, newest first, over the backups that are not failed: the last
N, the newest of each of the last N days, ISO weeks and months (UTC) that have one. Whatever
the rules say, the newest verified backup of a host is kept. A failed backup never fills a
slot; it is kept until a newer good backup exists, so a failure can be looked into.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from redisops.backup.catalogue import Backup, remove_backup
from redisops.errors import HostError, UsageError
from redisops.fleet.fanout import HostResult


@dataclass(frozen=True)
class RetentionPolicy:
    """How many of each to keep; 0 means the rule is not used."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def check(self) -> None:
        counts = (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)
        if any(count < 0 for count in counts):
            raise UsageError("--keep-* counts must not be negative")
        if not any(counts):
            raise UsageError(
                "prune needs at least one rule",
                hint="e.g. --keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 12",
            )


@dataclass(frozen=True)
class PruneDecision:
    """One backup and what prune does with it: `keep`, with the rules that keep it (or why
    it goes)."""

    backup_id: str
    host: str
    address: str
    kind: str
    finished_at: str
    status: str
    bytes: int
    keep: bool
    reasons: tuple[str, ...]
    path: str


def plan_prune(backups: Sequence[Backup], policy: RetentionPolicy) -> list[PruneDecision]:
    """A keep/delete decision for every backup, grouped by host and kind, newest first."""
    policy.check()
    groups: dict[tuple[str, str], list[Backup]] = {}
    for backup in sorted(backups, key=lambda b: (b.finished_at, b.backup_id), reverse=True):
        groups.setdefault((backup.host, backup.kind), []).append(backup)
    decisions: list[PruneDecision] = []
    for members in groups.values():
        reasons = _reasons(members, policy)
        newest_kept = next((b for b in members if b.good and reasons[b.backup_id]), None)
        for backup in members:
            why = reasons[backup.backup_id]
            if not backup.good:
                if newest_kept is None or newest_kept.finished_at < backup.finished_at:
                    why = ["failed; kept until a newer good backup exists"]
                else:
                    why = []
            decisions.append(_decision(backup, why))
    return decisions


def _reasons(members: list[Backup], policy: RetentionPolicy) -> dict[str, list[str]]:
    """The rules that keep each backup of one host and kind (members newest first)."""
    reasons: dict[str, list[str]] = {b.backup_id: [] for b in members}
    good = [b for b in members if b.good]
    for backup in good[: policy.keep_last]:
        reasons[backup.backup_id].append(f"last {policy.keep_last}")
    buckets: list[tuple[str, int, Callable[[Backup], str]]] = [
        ("daily", policy.keep_daily, lambda b: f"{b.finished:%Y-%m-%d}"),
        ("weekly", policy.keep_weekly, lambda b: "{}-W{:02d}".format(*b.finished.isocalendar())),
        ("monthly", policy.keep_monthly, lambda b: f"{b.finished:%Y-%m}"),
    ]
    for rule, count, bucket in buckets:
        seen: list[str] = []
        for backup in good:
            key = bucket(backup)
            if len(seen) >= count:
                break
            if key not in seen:
                seen.append(key)
                reasons[backup.backup_id].append(f"{rule} {key}")
    newest_verified = next((b for b in members if b.verified), None)
    if newest_verified is not None:
        reasons[newest_verified.backup_id].append("newest verified")
    return reasons


def _decision(backup: Backup, reasons: list[str]) -> PruneDecision:
    return PruneDecision(
        backup_id=backup.backup_id,
        host=backup.host,
        address=backup.address,
        kind=backup.kind,
        finished_at=backup.finished_at,
        status=backup.verification.status,
        bytes=backup.bytes,
        keep=bool(reasons),
        reasons=tuple(reasons),
        path=backup.path,
    )


def delete_pruned(
    decisions: Sequence[PruneDecision], backups: Sequence[Backup]
) -> list[HostResult[PruneDecision]]:
    """Delete what the plan does not keep (the caller holds the hosts' locks).

    One row per backup, kept ones included; a folder that cannot be deleted is an error row.
    """
    by_id = {b.backup_id: b for b in backups}
    results = []
    for decision in decisions:
        ok, error = True, None
        if not decision.keep:
            try:
                remove_backup(by_id[decision.backup_id])
            except OSError as exc:
                ok, error = False, str(HostError(f"cannot delete {decision.path}: {exc.strerror}"))
        results.append(HostResult(decision.host, decision.address, ok, error, decision))
    return results
