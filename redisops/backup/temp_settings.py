"""Server settings a backup changes for its duration, put back afterwards, and recorded before
the change so that one left behind is put back by the next run.

A run killed with -9 (or one whose server froze during the clean-up) cannot put a setting
back: `auto-aof-rewrite-percentage` would stay 0 for good, and the next run would read 0 as
the original. So the original goes to `DEST/<host>/.settings.json` (0600, fsynced) before the
CONFIG SET, and leaves it only once put back. The record sits beside the host's lock, and
only the lock's holder reads or writes it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from redisops.backup.catalogue import format_time, now_utc
from redisops.errors import HostError
from redisops.fleet.connection import redis_client
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import fsync_dir

if TYPE_CHECKING:
    import redis

RECORD_FILE = ".settings.json"
# After the server stopped answering, putting a setting back gets this long, not another
# whole --timeout: a frozen server must fail a backup within about one timeout. The record
# stays, and the next run puts the setting back.
AFTER_TIMEOUT_SECONDS = 0.5

Warn = Callable[[str], None]


@dataclass(frozen=True)
class ChangedSetting:
    """One setting changed on `address` (server run `run_id`) from `original` to `value`."""

    address: str
    run_id: str | None
    name: str
    original: str
    value: str
    pid: int
    since: str


@contextmanager
def temporarily_set(
    client: redis.Redis,
    host: Host,
    host_dir: Path,
    name: str,
    value: str,
    *,
    run_id: str | None,
    timeout: float,
    warn: Warn,
) -> Iterator[str]:
    """CONFIG SET `name` to `value` for the block, yielding the original; put back on any exit.

    The original is recorded first. When it cannot be put back, `warn` says so and how to
    do it by hand; the block's own outcome (result, error or interrupt) stands.
    """
    import redis

    original = client.config_get(name).get(name)
    if original is None:
        raise HostError(f"{host.address} has no config {name!r}")
    change = ChangedSetting(
        host.address, run_id, name, original, value, os.getpid(), format_time(now_utc())
    )
    _record(host_dir, change)
    budget = timeout
    try:
        client.config_set(name, value)
        yield original
    except (TimeoutError, redis.TimeoutError):
        budget = min(timeout, AFTER_TIMEOUT_SECONDS)
        raise
    finally:
        try:
            with redis_client(host, timeout=budget) as fresh:
                fresh.config_set(name, original)
        except HostError as exc:
            warn(_left_behind(change, exc.message))
        else:
            _forget(host_dir, name)


def repair_left_behind(host: Host, host_dir: Path, *, timeout: float, warn: Warn) -> None:
    """Put back each setting an earlier run recorded and did not put back; `warn` says what
    was found and done. HostError (the record kept) when the server cannot be asked."""
    for change in _recorded(host_dir):
        what = (
            f"{change.name} on {change.address} was left at {change.value!r} by a backup run "
            f"that did not finish (pid {change.pid}, since {change.since})"
        )
        if change.address != host.address:
            warn(f"{what}; {host.name} is now {host.address}: not changed there")
            _forget(host_dir, change.name)
            continue
        with redis_client(host, timeout=timeout, decode=True) as client:
            run_id = client.info("server").get("run_id")
            current = client.config_get(change.name).get(change.name)
            if run_id != change.run_id:
                warn(f"{what}; the server has restarted since, and has {current!r} from its config")
            elif current != change.value:
                warn(f"{what}; it is now {current!r} (changed since): left as it is")
            else:
                client.config_set(change.name, change.original)
                warn(f"{what}; put back to {change.original!r}")
        _forget(host_dir, change.name)


def _left_behind(change: ChangedSetting, reason: str) -> str:
    return (
        f"{change.name} on {change.address} could not be put back to {change.original!r} "
        f"({reason}): it is left at {change.value!r}; the next backup run of this host puts it "
        f"back, or run CONFIG SET {change.name} {change.original}"
    )


def _path(host_dir: Path) -> Path:
    return host_dir / RECORD_FILE


def _recorded(host_dir: Path) -> list[ChangedSetting]:
    try:
        entries = json.loads(_path(host_dir).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise HostError(
            f"cannot read {_path(host_dir)}: {exc}",
            hint="it records server settings a backup run changed; check them, then delete it",
        ) from None
    return [ChangedSetting(**entry) for entry in entries]


def _record(host_dir: Path, change: ChangedSetting) -> None:
    entries = [c for c in _recorded(host_dir) if c.name != change.name] + [change]
    _write(host_dir, entries)


def _forget(host_dir: Path, name: str) -> None:
    entries = [c for c in _recorded(host_dir) if c.name != name]
    if entries:
        _write(host_dir, entries)
    else:
        with contextlib.suppress(FileNotFoundError):
            _path(host_dir).unlink()


def _write(host_dir: Path, entries: list[ChangedSetting]) -> None:
    """Atomically, and durably before the change it records is made."""
    temporary = host_dir / f"{RECORD_FILE}.part"  # a leftover is cleaned as partials are
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump([asdict(c) for c in entries], handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, _path(host_dir))
    fsync_dir(host_dir)
