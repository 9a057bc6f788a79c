"""A master's Sentinel settings, kept across SENTINEL REMOVE and MONITOR.

`SENTINEL REMOVE` makes a Sentinel forget a master and `SENTINEL MONITOR` starts again from
Sentinel's defaults (down-after 30 s, failover-timeout 180 s, parallel-syncs 1, no auth-pass):
a restore runbook that removes and monitors again silently loses what was tuned. Here each
Sentinel's settings for the master are read (`SENTINEL MASTER`) and saved to a file before any
removal, and set again (`SENTINEL SET`) right after `SENTINEL MONITOR`, then read back.

The file holds names, addresses and settings, never a secret: Sentinel does not report
auth-pass, so it is set again from the inventory's password reference for the master (the
file names that host). It is still written 0600, and never overwritten: it may be the only
record of a master that was removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from redisops.change import ChangeOutcome, ChangePlan
from redisops.errors import HostError, RefusedError, UsageError
from redisops.fleet.connection import redis_client
from redisops.fleet.fanout import run_on_hosts
from redisops.fleet.host import Host
from redisops.fleet.secrets import resolve_password
from redisops.results import HostResult, PartialFailure
from redisops.sentinel.topology import CLIENT_NAME, address_of, find_host, sentinel_fields

SETTINGS_KIND = "redisops-sentinel-settings"
SETTINGS_FORMAT = 1
# What SENTINEL MASTER reports and SENTINEL SET takes back. The scripts are reported only when
# set, and set again only where `sentinel deny-scripts-reconfig no`; master-reboot-down-after-
# period and rename-command are not reported at all.
SCRIPTS = ("notification-script", "client-reconfig-script")
KEPT = ("quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs", *SCRIPTS)


@dataclass(frozen=True)
class MasterSettings:
    """One Sentinel's view of a master: where it monitors it, and its settings (as strings,
    as Sentinel reports them; only the KEPT ones it reported)."""

    sentinel: str
    sentinel_address: str
    ip: str
    port: int
    settings: dict[str, str]

    @property
    def address(self) -> str:
        return address_of(self.ip, self.port)


@dataclass(frozen=True)
class SavedSettings:
    """What `save_settings` writes: the master's settings on every Sentinel that monitored it.

    `auth_host` is the inventory host whose credentials become auth-pass (and auth-user) after
    MONITOR, `auth` says where they come from (a reference such as `password_file …`), both
    None when the master needs none.
    """

    master: str
    saved_at: str
    inventory: str
    auth_host: str | None
    auth: str | None
    sentinels: tuple[MasterSettings, ...]


def read_settings(
    sentinels: Sequence[Host], *, master: str, timeout: float, parallel: int
) -> list[HostResult[MasterSettings]]:
    """Each Sentinel's settings for `master`; one that does not monitor it is an error row."""
    return run_on_hosts(sentinels, lambda host: _read_one(host, master, timeout), parallel=parallel)


def saved_from(
    results: Sequence[HostResult[MasterSettings]],
    inventory: Sequence[Host],
    *,
    master: str,
    inventory_file: str,
) -> SavedSettings:
    """The record to save before removing `master`: RefusedError (exit 3, nothing changed)
    unless every Sentinel answered, monitors it, and they agree on its address."""
    from redisops.fleet.inventory import describe_host

    failed = [f"{r.host}: {r.error}" for r in results if not r.ok]
    if failed:
        raise RefusedError(
            f"not every sentinel can be read: {'; '.join(failed)}; nothing was changed",
            hint="removing the master from only some sentinels would split them",
        )
    views = [r.data for r in results if r.data is not None]
    addresses = sorted({view.address for view in views})
    if len(addresses) != 1:
        named = "; ".join(f"{view.sentinel} names {view.address}" for view in views)
        raise RefusedError(f"the sentinels disagree on {master}'s address ({named})")
    host = find_host(inventory, views[0].ip, views[0].port)
    credentials = host is not None and (
        host.password_env or host.password_file or host.password is not None or host.username
    )
    return SavedSettings(
        master=master,
        saved_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        inventory=inventory_file,
        auth_host=host.name if credentials and host else None,
        auth=describe_host(host).auth if credentials and host else None,
        sentinels=tuple(views),
    )


def refuse_existing(path: Path) -> None:
    """RefusedError when `path` exists: it may hold the only record of an earlier removal."""
    if path.exists():
        raise RefusedError(
            f"{path} exists: it may be the only record of settings removed earlier; "
            "nothing was changed",
            hint=f"put them back with `sentinel monitor --from {path}`, or save to a new file",
        )


def save_settings(path: Path, saved: SavedSettings) -> None:
    """Write `saved` to `path`, created 0600 (a new 0700 folder if needed); RefusedError when
    `path` exists (it may hold the only record of an earlier removal), RedisopsError (exit 1)
    when it cannot be written."""
    from redisops.errors import RedisopsError

    record = {"kind": SETTINGS_KIND, "format": SETTINGS_FORMAT, **asdict(saved)}
    text = json.dumps(record, indent=2) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        refuse_existing(path)
        raise
    except OSError as exc:
        raise RedisopsError(f"{path} cannot be written: {exc.strerror}") from None
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load_settings(path: Path) -> SavedSettings:
    """The settings saved in `path`; UsageError (exit 2) when it is missing or not one."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.pop("kind") != SETTINGS_KIND or record.pop("format") != SETTINGS_FORMAT:
            raise ValueError("not a redisops sentinel settings file")
        record["sentinels"] = tuple(MasterSettings(**entry) for entry in record["sentinels"])
        return SavedSettings(**record)
    except FileNotFoundError:
        raise UsageError(f"settings file {path} not found") from None
    except OSError as exc:
        raise UsageError(f"settings file {path} cannot be read: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path} is not a sentinel settings file ({exc})") from None


def remove_master(
    sentinels: Sequence[Host], saved: SavedSettings, *, timeout: float, parallel: int
) -> list[HostResult[MasterSettings]]:
    """SENTINEL REMOVE the master on each Sentinel (once `saved` is on disk); each row holds
    the settings that Sentinel had."""
    entries = {entry.sentinel: entry for entry in saved.sentinels}

    def remove(host: Host) -> MasterSettings:
        with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as c:
            c.execute_command("SENTINEL", "REMOVE", saved.master)
        return entries[host.name]

    return run_on_hosts(sentinels, remove, parallel=parallel)


def saved_for(saved: SavedSettings, sentinels: Sequence[Host]) -> list[HostResult[MasterSettings]]:
    """The saved settings of the selected Sentinels, as rows (the plan of `monitor_master`);
    UsageError when `saved` has settings for none of them."""
    selected = {host.name for host in sentinels}
    rows = [
        HostResult(entry.sentinel, entry.sentinel_address, True, None, entry)
        for entry in saved.sentinels
        if entry.sentinel in selected
    ]
    if not rows:
        names = ", ".join(entry.sentinel for entry in saved.sentinels)
        raise UsageError(
            f"the settings are for {names}, and none of them is selected",
            hint="use the inventory they were saved with, and a --limit that selects them",
        )
    return rows


def monitor_master(
    saved: SavedSettings,
    sentinels: Sequence[Host],
    inventory: Sequence[Host],
    *,
    timeout: float,
    parallel: int,
) -> list[HostResult[MasterSettings]]:
    """On each Sentinel of `sentinels` that `saved` has settings for: SENTINEL MONITOR (unless
    it already monitors the master at the same address), SENTINEL SET of every saved setting
    and of auth-pass/auth-user from the inventory, then read back. A Sentinel whose settings
    read back different is an error row with what it has now."""
    entries = {entry.sentinel: entry for entry in saved.sentinels}
    auth = auth_host(saved, inventory)
    chosen = [host for host in sentinels if host.name in entries]
    return run_on_hosts(
        chosen,
        lambda host: _monitor_one(host, saved.master, entries[host.name], auth, timeout),
        parallel=parallel,
    )


def auth_host(saved: SavedSettings, inventory: Sequence[Host]) -> Host | None:
    """The inventory host whose credentials become auth-pass; RefusedError when the saved
    record names one the inventory no longer has."""
    if saved.auth_host is None:
        return None
    host = next((h for h in inventory if h.name == saved.auth_host), None)
    if host is None:
        raise RefusedError(
            f"the settings name {saved.auth_host} for auth-pass, and the inventory has no such "
            "host; nothing was changed",
            hint="use the inventory the settings were saved with",
        )
    return host


def drifted(saved: MasterSettings, now: MasterSettings) -> list[str]:
    """The saved settings that `now` does not have, as `name saved -> now` texts."""
    return [
        f"{name} {value} -> {now.settings.get(name, '-')}"
        for name, value in saved.settings.items()
        if now.settings.get(name) != value
    ]


def _read_one(host: Host, master: str, timeout: float) -> MasterSettings:
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        view = _master_view(client, host, master)
    if view is None:
        raise HostError(f"does not monitor a master named {master!r}")
    return view


def _master_view(client: Any, host: Host, master: str) -> MasterSettings | None:
    import redis

    try:
        fields = sentinel_fields(client.execute_command("SENTINEL", "MASTER", master))
    except redis.ResponseError as exc:
        if "No such master" in str(exc):
            return None
        raise
    return MasterSettings(
        sentinel=host.name,
        sentinel_address=host.address,
        ip=str(fields["ip"]),
        port=int(fields["port"]),
        settings={name: str(fields[name]) for name in KEPT if name in fields},
    )


def _monitor_one(
    host: Host, master: str, entry: MasterSettings, auth: Host | None, timeout: float
) -> MasterSettings:
    import redis

    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        current = _master_view(client, host, master)
        if current is None:
            quorum = entry.settings.get("quorum", "2")
            client.execute_command("SENTINEL", "MONITOR", master, entry.ip, entry.port, quorum)
        elif current.address != entry.address:
            raise HostError(
                f"already monitors {master} at {current.address}, not {entry.address}: left alone"
            )
        pairs = [
            word for name, value in entry.settings.items() if name not in SCRIPTS
            for word in (name, value)
        ]  # fmt: skip
        if auth is not None:
            password = resolve_password(auth)
            if auth.username:
                pairs += ["auth-user", auth.username]
            if password:
                pairs += ["auth-pass", password]
        client.execute_command("SENTINEL", "SET", master, *pairs)
        refused = []
        for name in SCRIPTS:  # refused under deny-scripts-reconfig yes: the rest still applies
            if name in entry.settings:
                try:
                    client.execute_command("SENTINEL", "SET", master, name, entry.settings[name])
                except redis.ResponseError as exc:
                    refused.append(f"{name}: {exc}")
        after = _master_view(client, host, master)
    if after is None:
        raise HostError(f"does not monitor {master} after SENTINEL MONITOR")
    differ = drifted(entry, after)
    if differ or refused:
        problems = [f"settings read back different: {', '.join(differ)}"] if differ else []
        raise PartialFailure("; ".join(problems + refused), after)
    return after


def plan_remove(
    sentinels: Sequence[Host],
    inventory: Sequence[Host],
    *,
    master: str,
    save: Path,
    inventory_file: str,
    timeout: float,
    parallel: int,
) -> tuple[ChangePlan[MasterSettings], SavedSettings | None]:
    """`sentinel remove` as a change: each Sentinel's settings (read, nothing changed) and the
    record to save first; refused (no --force lifts it) when FILE exists, when a Sentinel
    cannot be read, or when they disagree on the master's address (saved_from)."""
    refuse_existing(save)
    read = read_settings(sentinels, master=master, timeout=timeout, parallel=parallel)
    try:
        saved: SavedSettings | None = saved_from(
            read, inventory, master=master, inventory_file=inventory_file
        )
        blockers, refused, hint = (), "", None
    except RefusedError as exc:
        saved, blockers, refused, hint = None, (exc.message,), exc.message, exc.hint
    plan = ChangePlan(
        command="sentinel remove",
        rows=read,
        question=f"Save {master}'s settings to {save}, then remove {master} from "
        f"{len(sentinels)} sentinels?",
        pending=len(sentinels),
        summary={"master": master, "settings_file": str(save)},
        blockers=blockers,
        refused=refused,
        hint=hint,
        noun="sentinels",
    )
    return plan, saved


def apply_remove(
    sentinels: Sequence[Host], saved: SavedSettings, save: Path, *, timeout: float, parallel: int
) -> ChangeOutcome[MasterSettings]:
    """Write the record, then SENTINEL REMOVE on each Sentinel."""
    save_settings(save, saved)
    return ChangeOutcome(remove_master(sentinels, saved, timeout=timeout, parallel=parallel))


def plan_monitor(
    saved: SavedSettings, sentinels: Sequence[Host], inventory: Sequence[Host], *, source: Path
) -> ChangePlan[MasterSettings]:
    """`sentinel monitor` as a change: the saved settings of each selected Sentinel.
    RefusedError when the record's auth host is gone; UsageError when it is for none of
    them."""
    rows = saved_for(saved, sentinels)
    auth = auth_host(saved, inventory)
    where = f"auth-pass from {auth.name} ({saved.auth})" if auth else "no auth-pass (none saved)"
    return ChangePlan(
        command="sentinel monitor",
        rows=rows,
        question=f"Monitor {saved.master} on {len(rows)} sentinels with these settings and "
        f"{where}?",
        pending=len(rows),
        summary={"master": saved.master, "settings_file": str(source), "auth": saved.auth},
        noun="sentinels",
    )
