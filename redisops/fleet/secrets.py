"""Resolve passwords by reference, and register them (redaction.py) so render can redact
them as a safety net."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

from redisops.errors import HostError
from redisops.fleet.host import Host
from redisops.redaction import remember_secret


def resolve_password(host: Host) -> str | None:
    """The host's password from its environment variable, file or literal value, or None.

    Raises HostError (an error row for that host) when the variable is unset or the file
    unreadable; the message names the reference, never the value.
    """
    if host.password_env:
        value = os.environ.get(host.password_env)
        if not value:
            raise HostError(
                f"password_env {host.password_env} is not set",
                hint=f"export {host.password_env}=… before running redisops",
            )
    elif host.password_file:
        try:
            with open(host.password_file, encoding="utf-8") as handle:
                mode = loose_mode(os.fstat(handle.fileno()).st_mode)
                if mode is not None and host.password_file_strict:
                    raise HostError(
                        f"password_file {host.password_file} is open to other users "
                        f"(mode {mode:04o}): refused, password_file_strict is set",
                        hint=f"chmod 600 {host.password_file}",
                    )
                value = handle.read().rstrip("\r\n")
        except OSError as exc:
            raise HostError(
                f"password_file {host.password_file} cannot be read: {exc.strerror}"
            ) from None
        if not value:
            raise HostError(f"password_file {host.password_file} is empty")
    elif host.password is not None:
        value = host.password.reveal()
    else:
        return None
    remember_secret(value)
    return value


def loose_mode(st_mode: int) -> int | None:
    """The permission bits when group or others may read or write the file, else None."""
    bits = stat.S_IMODE(st_mode)
    return bits if bits & 0o077 else None


def password_file_warnings(hosts: Iterable[Host]) -> list[str]:
    """One warning per password_file that other users can read or write, naming its hosts;
    those with password_file_strict are refused when the password is read (resolve_password).
    A file that cannot be read is left to resolve_password too."""
    users: dict[str, list[str]] = {}
    for host in hosts:
        if host.password_file:
            users.setdefault(host.password_file, []).append(host.name)
    warnings = []
    for path, names in users.items():
        try:
            mode = loose_mode(os.stat(path).st_mode)
        except OSError:
            continue
        if mode is not None:
            used = names[0] if len(names) == 1 else f"{names[0]} and {len(names) - 1} more"
            warnings.append(
                f"password_file {path} is open to other users (mode {mode:04o}; {used}): "
                f"chmod 600 {path}"
            )
    return warnings
