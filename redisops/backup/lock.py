"""One lock per catalogue folder and host, so overlapping runs (cron and a person) never write
or delete the same host's backups at once.

The lock is `DEST/<host>/.lock`, held with flock(2): the kernel drops it when its process
dies, however it dies, so a lock left by a killed run is never stale. The file says who holds
it, for the refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from redisops.backup.catalogue import format_time, host_folder, now_utc
from redisops.errors import RefusedError

LOCK_FILE = ".lock"


@contextmanager
def host_locks(folders: Sequence[tuple[Path, str]], *, purpose: str) -> Iterator[None]:
    """Hold the lock of every (catalogue folder, host) pair, or none.

    Raises RefusedError (exit 3) naming each holder when any lock is taken; nothing has been
    done then. `purpose` ("backup run", ...) is what other runs are told.
    """
    with ExitStack() as stack:
        held_by: list[str] = []
        for dest, host in dict.fromkeys(folders):
            holder = stack.enter_context(_try_lock(dest, host, purpose))
            if holder is not None:
                held_by.append(f"{host} in {dest} is locked by {holder}")
        if held_by:
            raise RefusedError(
                "; ".join(held_by),
                hint="another redisops run is working on these backups: wait for it to finish",
            )
        yield


@contextmanager
def _try_lock(dest: Path, host: str, purpose: str) -> Iterator[str | None]:
    """Yield None holding the lock, or a description of its holder (not holding it)."""
    path = host_folder(dest, host) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield _holder(fd)
            return
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": purpose,
            "since": format_time(now_utc()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield None
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return (
            f"pid {record['pid']} on {record['host']} ({record['command']}, "
            f"since {record['since']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not said who yet)"
