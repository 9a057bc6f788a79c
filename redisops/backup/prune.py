"""Retention: which backups `backup prune` keeps, and deleting the others.

Rules work per host and kind, newest first, over the backups that are not failed: the last
N, the newest of each of the last N days, ISO weeks and months (UTC) that have one. Whatever
the rules say, the newest verified backup of a host is kept. A failed backup never fills a
slot; it is kept until a newer good backup exists, so a failure can be looked into.

Safety backups (a restore's copy of what it replaced) are outside the rules: each is kept for
`keep_safety_days` after it was taken, then deleted; it never fills a slot nor counts as the
newest verified backup. The status in a manifest is not trusted: `plan_checked_prune`
re-reads the files of every backup a plan keeps before anything is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from redisops.backup.catalogue import Backup, now_utc, record_verification, remove_backup
from redisops.change import ChangeOutcome, ChangePlan
from redisops.errors import HostError, UsageError
from redisops.results import HostResult

SAFETY_DAYS = 30


@dataclass(frozen=True)
class RetentionPolicy:
    """How many of each to keep; 0 means the rule is not used."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_safety_days: int = SAFETY_DAYS

    def check(self) -> None:
        counts = (self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)
        if any(count < 0 for count in (*counts, self.keep_safety_days)):
            raise UsageError("--keep-* counts must not be negative")
        if not any(counts):
            raise UsageError(
                "prune needs at least one rule",
                hint="e.g. --keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 12",
            )


@dataclass(frozen=True)
class PruneDecision:
    """One backup and what prune does with it: `keep`, with the rules that keep it (none:
    it goes). `backup_reason` is why it was taken (manual, scheduled, safety); `damage`
    what re-reading its files found wrong just now (then `status` is failed)."""

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
    backup_reason: str
    damage: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckedPlan:
    """A prune plan whose kept backups were re-read: `backups` as they are now (the damaged
    ones failed), `damaged` the problems found, by backup path."""

    decisions: list[PruneDecision]
    backups: list[Backup]
    damaged: dict[str, tuple[str, ...]]


def plan_prune(
    backups: Sequence[Backup], policy: RetentionPolicy, *, now: datetime | None = None
) -> list[PruneDecision]:
    """A keep/delete decision for every backup, grouped by host and kind, newest first
    (safety backups after the others), as the manifests say."""
    policy.check()
    groups: dict[tuple[str, str], list[Backup]] = {}
    safety: list[Backup] = []
    for backup in sorted(backups, key=lambda b: (b.finished_at, b.backup_id), reverse=True):
        if backup.safety:
            safety.append(backup)
        else:
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
    until = timedelta(days=policy.keep_safety_days)
    moment = now or now_utc()
    for backup in safety:
        expires = backup.finished + until
        why = [f"safety backup, kept {policy.keep_safety_days} days (until {expires:%Y-%m-%d})"]
        decisions.append(_decision(backup, why if moment < expires else []))
    return decisions


def plan_checked_prune(
    backups: Sequence[Backup],
    policy: RetentionPolicy,
    checked: dict[str, tuple[str, ...]],
    check: Callable[[Backup], tuple[str, ...]],
) -> CheckedPlan:
    """plan_prune, with every backup the plan keeps as good re-checked by `check` first.

    A backup whose files fail counts as failed and the plan is made again, until every kept
    good backup checks out: so the newest backup that verifies now is never deleted. `checked`
    holds the results by path (filled here) so a second plan re-reads nothing. Writes nothing.
    """
    from redisops.backup.verify import failed_verification

    current = list(backups)
    decisions: list[PruneDecision] = []
    for _ in range(len(current) + 1):  # each round checks at least one more backup, or ends
        current = [
            replace(b, verification=failed_verification(checked[b.path]), verified=False)
            if checked.get(b.path) and b.good
            else b
            for b in current
        ]
        decisions = plan_prune(current, policy)
        by_path = {b.path: b for b in current}
        relied = [
            by_path[d.path]
            for d in decisions
            if d.keep and by_path[d.path].good and not by_path[d.path].safety
        ]
        unchecked = [b for b in relied if b.path not in checked]
        if not unchecked:
            break
        for backup in unchecked:
            checked[backup.path] = check(backup)
    damaged = {b.path: checked[b.path] for b in current if checked.get(b.path)}
    decisions = [replace(d, damage=damaged.get(d.path, ())) for d in decisions]
    return CheckedPlan(decisions, current, damaged)


def record_damage(plan: CheckedPlan) -> list[str]:
    """Write the failed verdict of each damaged backup into its manifest (as `backup verify`
    does), so `list`, `restore latest` and the next prune know; the paths not writable."""
    unwritten = []
    for backup in plan.backups:
        if backup.path in plan.damaged:
            _, recorded = record_verification(backup, backup.verification)
            if not recorded:
                unwritten.append(backup.path)
    return unwritten


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
        backup_reason=backup.reason,
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


def plan_backup_prune(
    backups: Sequence[Backup],
    policy: RetentionPolicy,
    checked: dict[str, tuple[str, ...]],
    check: Callable[[Backup], tuple[str, ...]],
) -> ChangePlan[PruneDecision]:
    """The prune as a change: one row per backup (a damaged one is a failed row), what it
    deletes pending. `checked` is filled (plan_checked_prune) so apply re-reads nothing."""
    decisions = plan_checked_prune(backups, policy, checked, check).decisions
    doomed = [d for d in decisions if not d.keep]
    freed = sum(d.bytes for d in doomed)
    return ChangePlan(
        command="backup prune",
        rows=_rows(decisions),
        question=f"Delete {len(doomed)} backup(s) ({freed:,} bytes)?",
        pending=len(doomed),
        summary=_summary(decisions, deleted=0),
        undone="deleted",
        noun="backups",
    )


def apply_backup_prune(
    plan: ChangePlan[PruneDecision],
    policy: RetentionPolicy,
    checked: dict[str, tuple[str, ...]],
    check: Callable[[Backup], tuple[str, ...]],
) -> ChangeOutcome[PruneDecision]:
    """Take each host's catalogue lock, plan again from the catalogue as it is now (a run may
    have finished meanwhile; what was checked is not re-read), record damage, delete."""
    from redisops.backup.catalogue import load_catalogue
    from redisops.backup.lock import host_locks

    folders = {(Path(r.data.path).parent.parent, r.host) for r in plan.rows if r.data}
    with host_locks(sorted(folders), purpose="backup prune"):
        fresh = load_catalogue({folder for folder, _ in folders}, {h for _, h in folders})
        again = plan_checked_prune(fresh.backups, policy, checked, check)
        warnings = _unrecorded(record_damage(again))
        results = delete_pruned(again.decisions, again.backups)
    deleted = sum(1 for r in results if r.ok and r.data and not r.data.keep)
    decisions = [r.data for r in results if r.data]
    return ChangeOutcome(
        _rows(results), summary=_summary(decisions, deleted=deleted), warnings=warnings
    )


def record_prune_damage(
    backups: Sequence[Backup],
    policy: RetentionPolicy,
    checked: dict[str, tuple[str, ...]],
    check: Callable[[Backup], tuple[str, ...]],
) -> list[str]:
    """Record the damage a plan found (when it deletes nothing, so apply does not run);
    a warning per manifest that could not be written."""
    return _unrecorded(record_damage(plan_checked_prune(backups, policy, checked, check)))


def _unrecorded(paths: Sequence[str]) -> list[str]:
    return [f"{path}: manifest not writable: the damage is not recorded" for path in paths]


def _rows(items: Sequence[PruneDecision] | Sequence[HostResult[PruneDecision]]) -> list:
    """One row per backup; one found damaged just now is a failed row, whatever else
    happened to it."""
    rows = [
        item
        if isinstance(item, HostResult)
        else HostResult(item.host, item.address, True, None, item)
        for item in items
    ]
    return [
        HostResult(r.host, r.address, False, f"{r.data.backup_id}: {r.data.damage[0]}", r.data)
        if r.ok and r.data and r.data.damage
        else r
        for r in rows
    ]


def _summary(decisions: Sequence[PruneDecision], *, deleted: int) -> dict[str, int]:
    return {
        "kept": sum(1 for d in decisions if d.keep),
        "deleted": deleted,
        "damaged": sum(1 for d in decisions if d.damage),
    }
