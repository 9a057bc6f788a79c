"""Host results and partial failures: the row every command reports, one per host.

A leaf module (it imports only errors.py) so the core, the CLI and render may all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from redisops.errors import HostError

T = TypeVar("T")


@dataclass(frozen=True)
class HostResult(Generic[T]):
    """A host's outcome: `data` when it worked, a one-line `error` when it did not.

    A task may also return data *and* fail (`ok` false with data), e.g. Redis answered but
    SSH did not; `error` then says what failed.
    """

    host: str
    address: str
    ok: bool
    error: str | None
    data: T | None


class PartialFailure(HostError):
    """Raised by a task that has data to report but found the host failing."""

    def __init__(self, message: str, data: Any) -> None:
        super().__init__(message)
        self.data = data
