"""The last redaction pass: secrets seen while running are replaced wherever text is shown.

A leaf module (it imports nothing from redisops) so render can redact without importing the
fleet layer that resolves passwords (fleet/secrets.py registers each one here).
"""

from __future__ import annotations

import threading

REDACTED = "***"


class Redactor:
    """A set of known secrets and the pass that hides them; thread-safe (fan-out resolves
    passwords from worker threads)."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, value: str) -> None:
        # Shorter values would redact ordinary words and numbers all over the output.
        if len(value) >= 4:
            with self._lock:
                self._known.add(value)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._known, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


# One per process: a secret resolved by any command run in it (a playbook runs several) stays
# hidden in everything shown afterwards.
_process = Redactor()


def remember_secret(value: str) -> None:
    """Register a secret for the last redaction pass of everything rendered."""
    _process.remember(value)


def redact(text: str) -> str:
    """`text` with every remembered secret replaced, longest first."""
    return _process.redact(text)


def first_line(exc: BaseException, empty: str | None = None) -> str:
    """The first line of an exception's message, redacted: drivers put whole replies in theirs
    (an AUTH error, a CONFIG SET refusal naming the value). With no message: `empty`, else the
    exception's type name."""
    lines = str(exc).strip().splitlines()
    if lines:
        return redact(lines[0])
    return type(exc).__name__ if empty is None else empty
