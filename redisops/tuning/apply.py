"""`config apply`: plan each host's changes, then apply them all or none, across the fleet.

Planning checks that every host can take its change before any host is touched: the ACL
allows CONFIG SET (and CONFIG REWRITE) for the inventory's user (ACL DRYRUN on Redis 7, and a
CONFIG SET of the values a host already holds, which changes nothing and also finds immutable
and protected settings). A host that cannot refuses the whole apply.

Per host: CONFIG SET of every change in one command (atomic in Redis 7: a rejected value
leaves every setting as it was), a read-back of each value, CONFIG REWRITE so the change
survives a restart; a wrong read-back or a failed rewrite sets the old values back. Across
hosts: the first host alone (a value Redis rejects then changes nothing anywhere), then the
rest in parallel; when any host fails, every host already changed is set back and rewritten.
Secrets are never applied (their values would sit in argv or the inventory); dangerous
settings (`settings.DANGEROUS_SETTINGS`) need `force`; unknown settings are refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from redisops.change import ChangeOutcome, ChangePlan
from redisops.errors import HostError, RefusedError, UsageError
from redisops.fleet.fanout import run_on_hosts
from redisops.fleet.host import Host
from redisops.interrupt import Interrupted, raise_if_stopped
from redisops.redaction import first_line
from redisops.results import HostResult, PartialFailure
from redisops.tuning.settings import (
    SECRET_SETTINGS,
    canonical,
    danger,
    is_setting_name,
    masked,
    same_value,
)

if TYPE_CHECKING:
    import redis

    from redisops.tuning.auditlog import AuditLog

PLANNED = "planned"
APPLIED = "applied"
UNCHANGED = "unchanged"
REJECTED = "rejected"
ROLLED_BACK = "rolled back"
ROLLBACK_FAILED = "rollback failed"
UNKNOWN_STATE = "unknown"
NOT_APPLIED = "not applied"
ACL_DENIED = "the ACL denies it"
ONE_AT_A_TIME = (
    "this server takes one setting per CONFIG SET (before Redis 7), so several cannot change "
    "all or nothing: apply one --set at a time"
)

NO_CONFIG_FILE = "no config file to rewrite: the change lasts until Redis restarts"
SECRET_REFUSAL = "a secret: never set by redisops (its value would sit in argv or the inventory)"


@dataclass(frozen=True)
class Change:
    """One setting to change: its value now, the new one, and why it is dangerous (if so)."""

    setting: str
    old: str
    new: str
    danger: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A setting that will not be applied; `forceable` ones go ahead with --force."""

    setting: str
    reason: str
    forceable: bool


@dataclass(frozen=True)
class HostChanges:
    """One host's changes and what became of them.

    `outcome`: planned (not applied yet), applied, unchanged (nothing to do), rejected (Redis
    refused a value; nothing changed), rolled back (its change failed, or another host's
    did), not applied (another host failed first), rollback failed, or unknown (the
    connection was lost after CONFIG SET was sent). `persisted` is whether CONFIG REWRITE
    wrote the config file (None until applied); `note` says why not.
    """

    changes: tuple[Change, ...]
    unchanged: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()
    outcome: str = PLANNED
    persisted: bool | None = None
    note: str | None = None


@dataclass(frozen=True)
class FleetApply:
    """What `config apply` did to the fleet: a row per host, and one outcome for all of them
    (applied, rolled back, or rollback failed) with the line that says it."""

    results: list[HostResult[HostChanges]]
    outcome: str
    message: str


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """`--set KEY=VALUE` options as {setting: value}; UsageError for malformed or repeated ones."""
    settings: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        name = canonical(key)
        if not sep or not is_setting_name(name):
            raise UsageError(
                f"--set {item.split('=', 1)[0]!r}…: expected KEY=VALUE with a setting name",
                hint='e.g. --set maxmemory=4gb --set save="3600 1"',
            )
        if name in settings:
            raise UsageError(f"--set {name} given twice")
        settings[name] = value
    return settings


def plan_host(
    host: Host, desired: Mapping[str, str], *, force: bool, timeout: float
) -> HostChanges:
    """Compare `desired` with what `host` holds now; nothing is changed.

    Raises HostError when the host cannot be read.
    """
    from redisops.fleet.connection import redis_client
    from redisops.tuning.facts import CLIENT_NAME

    refused: list[Refusal] = []
    wanted: dict[str, tuple[str, str | None]] = {}
    for setting, value in desired.items():
        name = canonical(setting)
        why = danger(name, value)
        if name in SECRET_SETTINGS:
            refused.append(Refusal(name, SECRET_REFUSAL, forceable=False))
        elif why and not force:
            refused.append(Refusal(name, why, forceable=True))
        else:
            wanted[name] = (value, why)
    changes: list[Change] = []
    unchanged: list[str] = []
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        current = _current(client, wanted)
        for name, (value, why) in wanted.items():
            if name not in current:
                refused.append(Refusal(name, "unknown setting on this server", forceable=False))
            elif same_value(name, value, current[name]):
                unchanged.append(name)
            else:
                changes.append(Change(name, current[name], value, why))
        if changes:
            refused.extend(_preflight(client, host, changes))
    return HostChanges(tuple(changes), tuple(unchanged), tuple(refused))


def _preflight(client: redis.Redis, host: Host, changes: Sequence[Change]) -> list[Refusal]:
    """Why `host` could not take `changes`, found without changing anything.

    ACL DRYRUN (Redis 7) asks whether the user may run the very CONFIG SET and CONFIG REWRITE
    (not asked on Redis 6.2, or when the user may not run ACL). Then a CONFIG SET of the
    values the host holds now: a no-op when allowed (Redis applies nothing for an unchanged
    value), and the reason when the ACL denies it or a setting is immutable or protected.
    Redis has no dry run for values: a value it rejects is found by the apply itself, on the
    first host alone (see `apply_fleet`).
    """
    import redis

    user = host.username or "default"
    for command in (["CONFIG", "SET", *_pairs(changes, new=True)], ["CONFIG", "REWRITE"]):
        try:
            verdict = client.execute_command("ACL", "DRYRUN", user, *command)
        except redis.ResponseError:
            break  # not asked: the probe below still covers CONFIG SET
        if str(verdict) != "OK":
            what = " ".join(command[:2])
            return [Refusal(what, f"{ACL_DENIED} to user {user!r}: {verdict}", False)]
    try:
        client.execute_command("CONFIG", "SET", *_pairs(changes, new=False))
    except redis.ResponseError as exc:
        text = first_line(exc)
        if isinstance(exc, redis.exceptions.NoPermissionError):
            return [Refusal("CONFIG SET", f"{ACL_DENIED} to user {user!r}: {text}", False)]
        if len(changes) > 1 and "wrong number of arguments" in text:
            return [Refusal("CONFIG SET", ONE_AT_A_TIME, False)]
        return [Refusal("CONFIG SET", f"Redis refuses it here: {text}", False)]
    return []


def plan_fleet(
    hosts: Sequence[Host],
    overrides: Mapping[str, str],
    *,
    force: bool,
    timeout: float,
    parallel: int,
) -> list[HostResult[HostChanges]]:
    """Plan every host: `overrides` (from --set) for all, else each host's redis_config.

    Raises UsageError when there is nothing to apply at all.
    """
    if not overrides and not any(host.redis_config for host in hosts):
        raise UsageError(
            "nothing to apply: no --set, and no redis_config in the inventory for these hosts",
            hint="add redis_config to the inventory, or pass --set KEY=VALUE",
        )
    return run_on_hosts(
        hosts,
        lambda host: plan_host(host, overrides or host.redis_config, force=force, timeout=timeout),
        parallel=parallel,
    )


def refusal(plans: Sequence[HostResult[HostChanges]]) -> RefusedError | None:
    """The error that stops the whole apply when any host has a refused setting, else None;
    `refusal_reasons` says why, one line each."""
    unreachable = [r.host for r in plans if not r.ok]
    if unreachable:
        return RefusedError(
            f"refused: {', '.join(unreachable)} could not be planned; nothing was changed",
            hint=f"config apply changes every host or none: fix {unreachable[0]}, or leave it "
            f"out with -l '!{unreachable[0]}'",
        )
    refused = [(r.host, item) for r in plans if r.data for item in r.data.refused]
    if not refused:
        return None
    hosts: dict[str, list[str]] = {}
    for host, item in refused:
        hosts.setdefault(item.setting, []).append(host)
    listed = "; ".join(f"{setting} on {', '.join(names)}" for setting, names in hosts.items())
    if all(item.forceable for _, item in refused):
        hint = "--force applies dangerous settings (Redis must allow protected ones too)"
    elif any(item.reason.startswith(ACL_DENIED) for _, item in refused):
        hint = "grant the inventory's user CONFIG SET and CONFIG REWRITE, or leave that host out"
    else:
        hint = "see why in the plan; remove or correct those settings"
    return RefusedError(f"refused: {listed}; nothing was changed", hint=hint)


def refusal_reasons(plans: Sequence[HostResult[HostChanges]]) -> list[str]:
    """One line per unreachable host, refused setting or failed host check."""
    return [
        line
        for r in plans
        for line in (
            [f"{r.host}: {r.error}"]
            if not r.ok
            else [f"{r.host}: {item.setting}: {item.reason}" for item in r.data.refused]
            if r.data
            else []
        )
    ]


def plan_config_apply(
    hosts: Sequence[Host],
    overrides: Mapping[str, str],
    *,
    force: bool,
    timeout: float,
    parallel: int,
    audit_log: Path,
    sentinels: Sequence[str],
) -> ChangePlan[HostChanges]:
    """`config apply` as a change: plan_fleet's rows (a host with a refused setting is a failed
    row, so a refused apply's JSON says `"ok": false` as its exit code 3 does), and the
    refusal, which --force cannot lift: dangerous settings were already let through by
    `force` when planning."""
    plans = plan_fleet(hosts, overrides, force=force, timeout=timeout, parallel=parallel)
    refused = refusal(plans)
    pending = sum(len(r.data.changes) for r in plans if r.data)
    targets = sum(1 for r in plans if r.data and r.data.changes)
    return ChangePlan(
        command="config apply",
        rows=[
            replace(r, ok=False, error=f"refused: {', '.join(i.setting for i in r.data.refused)}")
            if r.data and r.data.refused
            else r
            for r in plans
        ],
        question=f"Apply {pending} change(s) to {targets} host(s)?",
        pending=pending,
        summary={
            "changes": pending,
            "audit_log": str(audit_log),
            "sentinels_skipped": list(sentinels),
        },
        blockers=refusal_reasons(plans) if refused else (),
        refused=refused.message if refused else "",
        hint=refused.hint if refused else None,
    )


def apply_config(
    plan: ChangePlan[HostChanges], hosts: Sequence[Host], *, timeout: float, parallel: int
) -> ChangeOutcome[HostChanges]:
    """Apply a plan that was not refused, every change appended to its audit log."""
    from redisops.tuning.auditlog import AuditLog

    with closing(AuditLog(Path(plan.summary["audit_log"]))) as log:
        fleet = apply_fleet(hosts, plan.rows, timeout=timeout, parallel=parallel, log=log)
    return ChangeOutcome(
        fleet.results,
        summary={"outcome": fleet.outcome},
        errors=() if fleet.outcome == APPLIED else (fleet.message,),
    )


def apply_fleet(
    hosts: Sequence[Host],
    plans: Sequence[HostResult[HostChanges]],
    *,
    timeout: float,
    parallel: int,
    log: AuditLog,
) -> FleetApply:
    """Apply each host's planned changes, all or none: the first host alone, then the others
    in parallel; when any host fails, every host changed is set back (`_undo_host`).

    A host whose plan failed keeps that row; one with nothing to change is not contacted
    again; one never reached because another failed first is `not applied`. An interrupt
    sets back the hosts changed so far, then propagates.
    """
    planned = {r.host: r.data for r in plans if r.ok and r.data is not None and r.data.changes}
    todo = [host for host in hosts if host.name in planned]
    applied: dict[str, HostChanges] = {}
    applied_lock = threading.Lock()

    def apply_one(host: Host) -> HostChanges:
        raise_if_stopped()
        result = apply_host(host, planned[host.name], timeout=timeout, log=log)
        with applied_lock:
            applied[host.name] = result
        return result

    try:
        done = run_on_hosts(todo[:1], apply_one, parallel=1)
        if done and done[0].ok:
            done += run_on_hosts(todo[1:], apply_one, parallel=parallel)
    except Interrupted as exc:
        undone = _undo_fleet(todo, applied, "interrupted", timeout=timeout, log=log)
        kept = [r.host for r in undone if r.data is None or r.data.outcome != ROLLED_BACK]
        raise Interrupted(
            exc.signum,
            f"{len(applied)} of {len(todo)} hosts changed, "
            + (f"NOT set back on {', '.join(kept)}" if kept else "all set back"),
        ) from None
    by_host = {r.host: r for r in done}
    failed = [r for r in done if not r.ok]
    outcome, message = APPLIED, f"applied on {len(done)} host(s)"
    if failed:
        cause = f"{failed[0].host} failed ({failed[0].error})"
        undone = _undo_fleet(todo, applied, cause, timeout=timeout, log=log)
        by_host |= {r.host: r for r in undone}
        stuck = [
            r.host
            for r in (*failed, *undone)
            if r.data is not None and r.data.outcome in (ROLLBACK_FAILED, UNKNOWN_STATE)
        ]
        outcome = ROLLBACK_FAILED if stuck else ROLLED_BACK
        message = f"config apply failed on {failed[0].host}; " + (
            f"{', '.join(stuck)} may still hold the new values: set them back by hand"
            if stuck
            else f"{len(undone)} host(s) set back: every host holds its old values"
        )
        skipped = f"not applied: {failed[0].host} failed first"
        for host in todo:
            by_host.setdefault(
                host.name,
                HostResult(
                    host.name,
                    host.address,
                    False,
                    skipped,
                    replace(planned[host.name], outcome=NOT_APPLIED),
                ),
            )
    results = [
        by_host[r.host]
        if r.host in planned
        else replace(r, data=None if r.data is None else replace(r.data, outcome=UNCHANGED))
        for r in plans
    ]
    return FleetApply(results, outcome, message)


def _undo_fleet(
    hosts: Sequence[Host],
    applied: Mapping[str, HostChanges],
    cause: str,
    *,
    timeout: float,
    log: AuditLog,
) -> list[HostResult[HostChanges]]:
    """Set back every host in `applied` (in parallel), each row saying why."""
    undo = [host for host in hosts if host.name in applied and applied[host.name].changes]
    return run_on_hosts(
        undo,
        lambda host: _undo_host(host, applied[host.name], cause, timeout=timeout, log=log),
        parallel=max(1, len(undo)),
    )


def _undo_host(
    host: Host, done: HostChanges, cause: str, *, timeout: float, log: AuditLog
) -> HostChanges:
    """Set the old values back on a host that took its change, rewrite the config file if the
    change had been persisted, and raise PartialFailure saying whether that worked."""
    from redisops.fleet.connection import redis_client
    from redisops.tuning.facts import CLIENT_NAME

    try:
        with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
            stuck = _restore(client, done.changes, rewrite=bool(done.persisted))
    except HostError as exc:
        stuck, cause = [c.setting for c in done.changes], f"{cause}; {exc.message}"
    _rolled_back(host, done, stuck, log, f"set back because {cause}")


def apply_host(host: Host, plan: HostChanges, *, timeout: float, log: AuditLog) -> HostChanges:
    """Apply `plan` to `host` as one CONFIG SET, check, persist; roll back on any failure.

    Old values are read again first (the plan may be stale). Raises PartialFailure (with the
    changes and their outcome) when Redis rejects a value, the host was rolled back, or the
    connection was lost after CONFIG SET was sent (outcome unknown).
    """
    import redis

    from redisops.fleet.connection import describe_redis_error, redis_client
    from redisops.tuning.facts import CLIENT_NAME

    names = [change.setting for change in plan.changes]
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        now = _current(client, names)
        changes = tuple(
            replace(change, old=now[change.setting])
            for change in plan.changes
            if change.setting in now
            and not same_value(change.setting, change.new, now[change.setting])
        )
        if not changes:
            unchanged = (*plan.unchanged, *names)
            return replace(plan, changes=(), unchanged=unchanged, outcome=UNCHANGED)
        try:
            return _apply(client, host, replace(plan, changes=changes), log)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.record(host, changes, UNKNOWN_STATE)
            raise PartialFailure(
                f"{describe_redis_error(exc, host, timeout)} after CONFIG SET was sent: "
                "the change may or may not be in place (see `redisops config diff`)",
                replace(plan, changes=changes, outcome=UNKNOWN_STATE),
            ) from None


def _apply(client: redis.Redis, host: Host, plan: HostChanges, log: AuditLog) -> HostChanges:
    import redis

    changes = plan.changes
    try:
        client.execute_command("CONFIG", "SET", *_pairs(changes, new=True))
    except redis.ResponseError as exc:
        reason = f"Redis rejected the change: {first_line(exc)}"
        # Redis 7 sets all or nothing; check, rather than trust it.
        after = _current(client, [change.setting for change in changes])
        if any(not _holds(after, change, change.old) for change in changes):
            _roll_back(client, host, plan, log, reason)
        log.record(host, changes, REJECTED)
        raise PartialFailure(
            f"{reason}; nothing was changed", replace(plan, outcome=REJECTED)
        ) from None
    back = _current(client, [change.setting for change in changes])
    wrong = [change for change in changes if not _holds(back, change, change.new)]
    if wrong:
        reason = ", ".join(
            f"{change.setting} read back as {back.get(change.setting)!r}, not {change.new!r}"
            for change in wrong
        )
        _roll_back(client, host, plan, log, reason)
    persisted, note = True, None
    try:
        client.execute_command("CONFIG", "REWRITE")
    except redis.ResponseError as exc:
        if "without a config file" not in str(exc):
            _roll_back(client, host, plan, log, f"CONFIG REWRITE failed: {first_line(exc)}")
        persisted, note = False, NO_CONFIG_FILE
    log.record(host, changes, APPLIED if persisted else f"{APPLIED}, not persisted")
    return replace(plan, outcome=APPLIED, persisted=persisted, note=note)


def _roll_back(
    client: redis.Redis, host: Host, plan: HostChanges, log: AuditLog, reason: str
) -> NoReturn:
    """Set the old values back and raise PartialFailure saying whether that worked."""
    _rolled_back(host, plan, _restore(client, plan.changes, rewrite=False), log, reason)


def _rolled_back(
    host: Host, plan: HostChanges, stuck: Sequence[str], log: AuditLog, reason: str
) -> NoReturn:
    """Audit a rollback and raise PartialFailure: `stuck` names the settings that did not take
    their old value back (none: the rollback worked)."""
    if stuck:
        log.record(host, plan.changes, ROLLBACK_FAILED)
        raise PartialFailure(
            f"{reason}; rolling back FAILED: {', '.join(stuck)} may hold the new values, "
            "set them back by hand",
            replace(plan, outcome=ROLLBACK_FAILED),
        )
    log.record(host, plan.changes, ROLLED_BACK)
    raise PartialFailure(
        f"{reason}; rolled back: every setting holds its old value again",
        replace(plan, outcome=ROLLED_BACK),
    )


def _restore(client: redis.Redis, changes: Sequence[Change], *, rewrite: bool) -> list[str]:
    """CONFIG SET the old values (and CONFIG REWRITE when `rewrite`); the settings that do not
    hold their old value afterwards (all of them when Redis refused)."""
    import redis

    try:
        client.execute_command("CONFIG", "SET", *_pairs(changes, new=False))
        back = _current(client, [change.setting for change in changes])
        stuck = [change.setting for change in changes if not _holds(back, change, change.old)]
        if rewrite and not stuck:
            client.execute_command("CONFIG", "REWRITE")
    except redis.ResponseError:
        return [change.setting for change in changes]
    return stuck


def _current(client: redis.Redis, names: Iterable[str]) -> dict[str, str]:
    """The values `client`'s server holds for `names` (exact names; unknown ones are absent)."""
    names = list(names)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.config_get(name)
    values = {}
    for name, reply in zip(names, pipe.execute(), strict=True):
        if name in reply:
            values[name] = masked(name, str(reply[name])) or ""
    return values


def _holds(values: Mapping[str, str], change: Change, expected: str) -> bool:
    return change.setting in values and same_value(change.setting, expected, values[change.setting])


def _pairs(changes: Iterable[Change], *, new: bool) -> list[str]:
    return [part for c in changes for part in (c.setting, c.new if new else c.old)]
