"""The write probe's loop: what an application sees of a failover, one numbered write at a
time. Shared by the Sentinel drill (which finds the master through Sentinel) and the Redis
Cluster drill (which routes by slot); each says how to write one key and where it went.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from redisops.errors import HostError
from redisops.redaction import first_line

VALUE = b"1"
# Probe keys expire by themselves should a drill be cut short before it removes them.
KEY_TTL_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Ack:
    """Write `number` acknowledged at `at` (time.monotonic()) by the master at `address`,
    `latency` seconds after it was sent.

    `duplicate`: the reply said the key was already set, so an earlier attempt that failed
    for the probe had in fact been applied (a non-idempotent write would now be applied twice).
    """

    number: int
    at: float
    address: str
    duplicate: bool
    latency: float = 0.0


@dataclass(frozen=True)
class Failure:
    """An attempt at write `number` that failed at `at`, talking to `address` if one was known."""

    number: int
    at: float
    address: str | None
    error: str


class NumberedWrites:
    """Writes `<prefix><n>` for n = 1, 2, … at `rate` per second, in a thread of its own.

    Each write is SET NX PX of a fixed value (by the subclass's `_write`): idempotent, so a
    write that failed is retried (same n) at the next tick until it is acknowledged; writes
    are never reordered, so the acknowledged writes are exactly 1 … len(acks). A context
    manager: writing between entry and exit; read `acks` and `failures` after exit.

    A subclass defines `_write(key) -> (applied, address)` (applied: the key was new),
    `_where()` (the address a failed write went to, if known), `_close()`, and the
    `expected` error types that are failed writes (anything else is a bug and stops it).
    """

    expected: tuple[type[BaseException], ...] = (OSError,)
    thread_name = "redisops-write-probe"

    def __init__(self, *, prefix: str, rate: float, timeout: float) -> None:
        self.prefix = prefix
        self.acks: list[Ack] = []
        self.failures: list[Failure] = []
        self.next_number = 1
        self._interval = 1.0 / rate
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def key(self, number: int) -> str:
        return f"{self.prefix}{number}"

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop writing; returns once the write in flight has finished or timed out."""
        self._stop.set()
        if self._thread is not None:
            # A write in flight takes at most a connect and a command: two timeouts.
            self._thread.join(timeout=2 * self._timeout + 1)

    def _write(self, key: str) -> tuple[bool, str]:
        raise NotImplementedError

    def _where(self) -> str | None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        tick = time.monotonic()
        retrying = False
        try:
            while not self._stop.is_set():
                number = self.next_number
                started = time.monotonic()
                try:
                    applied, address = self._write(self.key(number))
                except self.expected as exc:
                    self.failures.append(Failure(number, started, self._where(), describe(exc)))
                    retrying = True
                else:
                    done = time.monotonic()
                    duplicate = retrying and not applied
                    self.acks.append(Ack(number, done, address, duplicate, done - started))
                    self.next_number += 1
                    retrying = False
                # Keep the pace without bursts: a slow write delays the next tick, never doubles it.
                tick = max(tick + self._interval, time.monotonic())
                self._stop.wait(tick - time.monotonic())
        finally:
            self._close()


def describe(exc: BaseException) -> str:
    """An exception in one line: its type (unless it is redisops' own HostError, whose
    message says it all) and first line."""
    if isinstance(exc, HostError):
        return exc.message
    text = first_line(exc, "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
