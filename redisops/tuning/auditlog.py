"""The audit log of `config apply`: one JSON line per setting changed, rejected or rolled back.

Each line says when (UTC), who (user@machine, and the sudo user behind root), which host,
which setting, old -> new, and the outcome. Secret settings are only ever written as
(set)/(unset), and every value passes the redaction of known passwords.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from redisops.errors import UsageError
from redisops.fleet.host import Host
from redisops.redaction import redact
from redisops.tuning.settings import masked

if TYPE_CHECKING:
    from redisops.tuning.apply import Change

FILE_NAME = "config-changes.jsonl"


def default_audit_log() -> Path:
    """$XDG_STATE_HOME/redisops/config-changes.jsonl, else under ~/.local/state."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "redisops" / FILE_NAME


def operator() -> str:
    """Who runs redisops, as user@machine; `alice (as root)@db-1` under sudo."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        user = str(os.getuid())
    sudo = os.environ.get("SUDO_USER")
    who = f"{sudo} (as {user})" if sudo and sudo != user else user
    return f"{who}@{socket.gethostname()}"


class AuditLog:
    """An append-only log file, opened before anything changes (an unwritable log stops the
    apply with nothing done); thread-safe, each record flushed and fsynced. Close it when done.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self._who = operator()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UsageError(
                f"cannot write the audit log {self.path}: {exc.strerror}",
                hint="choose another file with --audit-log",
            ) from None
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def record(self, host: Host, changes: Sequence[Change], outcome: str) -> None:
        """Append one line per change of `host` with `outcome` (applied, rejected, …)."""
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        lines = "".join(
            json.dumps(
                {
                    "time": when,
                    "who": redact(self._who),
                    "host": host.name,
                    "address": host.address,
                    "setting": change.setting,
                    "old": redact(masked(change.setting, change.old) or ""),
                    "new": redact(masked(change.setting, change.new) or ""),
                    "outcome": outcome,
                }
            )
            + "\n"
            for change in changes
        )
        with self._lock:
            self._file.write(lines)
            self._file.flush()
            os.fsync(self._file.fileno())

    def append(self, entry: dict) -> None:
        """Append one line for a whole run (`entry`'s fields after the time and who)."""
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        line = json.dumps({"time": when, "who": redact(self._who)} | entry) + "\n"
        with self._lock:
            self._file.write(redact(line))
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
