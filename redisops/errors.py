"""The one exception hierarchy of redisops, and the exit code each kind maps to.

Imports nothing from redisops, so every layer can raise these without cycles.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    REFUSED = 3
    INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C; SIGTERM gives 143


class RedisopsError(Exception):
    """An expected failure with a one-line message and an optional hint.

    `rerun_with` is an option that, added to the same command line, goes ahead (`--yes`,
    `--force`): the error boundary, which knows the command line, prints it whole.
    """

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(
        self, message: str, hint: str | None = None, *, rerun_with: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.rerun_with = rerun_with

    def __str__(self) -> str:
        return self.message


class UsageError(RedisopsError):
    """Bad option, unreadable or invalid input: nothing was attempted."""

    exit_code = ExitCode.USAGE


class InventoryError(UsageError):
    """The inventory file is missing, unparsable or invalid."""


class HostError(RedisopsError):
    """One host could not be worked on; fan-out turns this into an error row."""


class RefusedError(RedisopsError):
    """A safety guard said no: declined prompt, failed pre-check, lock held."""

    exit_code = ExitCode.REFUSED


class LabError(RedisopsError):
    """The local lab could not be started, stopped or read."""
