"""Which JSON documents a run wrote to stdout, for the CLI's error boundary.

With -o json stdout carries exactly one document: the boundary writes the failure's document
only when the command wrote none. Apart from render/output.py, which imports far more, so that
`redisops --help` does not pay for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Set by the boundary for one run (a playbook step is a run of its own).
_documents: ContextVar[list[str] | None] = ContextVar("redisops_documents", default=None)


@contextmanager
def recording_documents() -> Iterator[list[str]]:
    """Note the command of each JSON document written inside."""
    written: list[str] = []
    token = _documents.set(written)
    try:
        yield written
    finally:
        _documents.reset(token)


def note_document(command: str) -> None:
    """Record that `command`'s JSON document reached stdout."""
    written = _documents.get()
    if written is not None:
        written.append(command)
