"""Resolve passwords by reference, and remember them so render can redact them as a safety net."""

from __future__ import annotations

import os
import threading

from redisops.errors import HostError
from redisops.fleet.host import Host

REDACTED = "***"

_known: set[str] = set()
_known_lock = threading.Lock()


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


def remember_secret(value: str) -> None:
    """Register a secret for the last redaction pass of everything rendered."""
    if len(value) >= 4:
        with _known_lock:
            _known.add(value)


def redact(text: str) -> str:
    """`text` with every remembered secret replaced, longest first."""
    with _known_lock:
        secrets = sorted(_known, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
