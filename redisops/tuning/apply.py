"""`config apply`: plan each host's changes, then apply them all or none.

Per host: CONFIG SET of every change in one command (atomic in Redis 7: a rejected value
leaves every setting as it was), a read-back of each value, CONFIG REWRITE so the change
survives a restart; a wrong read-back or a failed rewrite sets the old values back. Secrets
are never applied (their values would sit in argv or the inventory); dangerous settings
(`settings.DANGEROUS_SETTINGS`) need `force`; unknown settings are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NoReturn

from redisops.errors import HostError, RefusedError, UsageError
from redisops.fleet.fanout import HostResult, PartialFailure, run_on_hosts
from redisops.fleet.host import Host
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
    refused a value; nothing changed), rolled back, rollback failed, or unknown (the connection
    was lost after CONFIG SET was sent). `persisted` is whether CONFIG REWRITE wrote the config
    file (None until applied); `note` says why not.
    """

    changes: tuple[Change, ...]
    unchanged: tuple[str, ...] = ()
    refused: tuple[Refusal, ...] = ()
    outcome: str = PLANNED
    persisted: bool | None = None
    note: str | None = None


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
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        current = _current(client, wanted)
    changes: list[Change] = []
    unchanged: list[str] = []
    for name, (value, why) in wanted.items():
        if name not in current:
            refused.append(Refusal(name, "unknown setting on this server", forceable=False))
        elif same_value(name, value, current[name]):
            unchanged.append(name)
        else:
            changes.append(Change(name, current[name], value, why))
    return HostChanges(tuple(changes), tuple(unchanged), tuple(refused))


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
    """The error that stops the whole apply when any host has a refused setting, else None."""
    refused = [(r.host, item) for r in plans if r.data for item in r.data.refused]
    if not refused:
        return None
    hosts: dict[str, list[str]] = {}
    for host, item in refused:
        hosts.setdefault(item.setting, []).append(host)
    listed = "; ".join(f"{setting} on {', '.join(names)}" for setting, names in hosts.items())
    forceable = all(item.forceable for _, item in refused)
    return RefusedError(
        f"refused: {listed}; nothing was changed",
        hint="--force applies dangerous settings (Redis must allow protected ones too)"
        if forceable
        else "see why in the plan; remove or correct those settings",
    )


def apply_fleet(
    hosts: Sequence[Host],
    plans: Sequence[HostResult[HostChanges]],
    *,
    timeout: float,
    parallel: int,
    log: AuditLog,
) -> list[HostResult[HostChanges]]:
    """Apply each host's planned changes; a host whose plan failed keeps that row, one with
    nothing to change is not contacted again."""
    planned = {r.host: r.data for r in plans if r.ok and r.data is not None and r.data.changes}
    todo = [host for host in hosts if host.name in planned]
    done = iter(
        run_on_hosts(
            todo,
            lambda host: apply_host(host, planned[host.name], timeout=timeout, log=log),
            parallel=parallel,
        )
    )
    return [
        next(done)
        if r.host in planned
        else replace(r, data=None if r.data is None else replace(r.data, outcome=UNCHANGED))
        for r in plans
    ]


def apply_host(host: Host, plan: HostChanges, *, timeout: float, log: AuditLog) -> HostChanges:
    """Apply `plan` to `host` as one CONFIG SET, check, persist; roll back on any failure.

    Old values are read again first (the plan may be stale). Raises PartialFailure (with the
    changes and their outcome) when Redis rejects a value or the host was rolled back, and
    HostError when the connection is lost after CONFIG SET was sent (logged as unknown).
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
            raise HostError(
                f"{describe_redis_error(exc, host, timeout)} after CONFIG SET was sent: "
                "the change may or may not be in place",
                hint="see what the host holds now with `redisops config diff`",
            ) from None


def _apply(client: redis.Redis, host: Host, plan: HostChanges, log: AuditLog) -> HostChanges:
    import redis

    changes = plan.changes
    try:
        client.execute_command("CONFIG", "SET", *_pairs(changes, new=True))
    except redis.ResponseError as exc:
        reason = f"Redis rejected the change: {_first_line(exc)}"
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
            _roll_back(client, host, plan, log, f"CONFIG REWRITE failed: {_first_line(exc)}")
        persisted, note = False, NO_CONFIG_FILE
    log.record(host, changes, APPLIED if persisted else f"{APPLIED}, not persisted")
    return replace(plan, outcome=APPLIED, persisted=persisted, note=note)


def _roll_back(
    client: redis.Redis, host: Host, plan: HostChanges, log: AuditLog, reason: str
) -> NoReturn:
    """Set the old values back and raise PartialFailure saying whether that worked."""
    import redis

    try:
        client.execute_command("CONFIG", "SET", *_pairs(plan.changes, new=False))
        back = _current(client, [change.setting for change in plan.changes])
        stuck = [change.setting for change in plan.changes if not _holds(back, change, change.old)]
    except redis.ResponseError:
        stuck = [change.setting for change in plan.changes]
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


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
