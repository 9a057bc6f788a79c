"""One Ctrl-C, SIGTERM or SIGHUP stops a command promptly and lets its clean-up run.

Python's default turns SIGINT into KeyboardInterrupt in the main thread only, and SIGTERM and
SIGHUP kill the process outright: no `finally`, so a setting changed for a backup stays
changed (`timeout` and systemd send SIGTERM). Here all three set one process-wide flag and
raise `Interrupted` in the main thread; worker threads call `raise_if_stopped()` between
units of work, so a fan-out winds down within one unit (a SCAN batch, a copy chunk), each
worker running its own clean-up. Further signals while winding down are ignored: clean-up is
bounded by the per-host timeout, and a second Ctrl-C must not cut it short.

Imports nothing from redisops, so any layer may use it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_stopping = threading.Event()
_received: list[int] = []


class Interrupted(KeyboardInterrupt):
    """The user (or a supervisor) asked the command to stop.

    A KeyboardInterrupt, so `except Exception` blocks never swallow it. `done` says what
    had been completed when it stopped, for the one `interrupted: …` line.
    """

    def __init__(self, signum: int = signal.SIGINT, done: str | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.done = done

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as shells report it: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + self.signum


def stop_requested() -> bool:
    return _stopping.is_set()


def raise_if_stopped() -> None:
    """Raise `Interrupted` in the calling thread when a stop was asked for."""
    if _stopping.is_set():
        raise Interrupted(_received[0] if _received else signal.SIGINT)


def pause(seconds: float) -> None:
    """Sleep, waking at once (with `Interrupted`) when a stop is asked for: for worker threads,
    which a signal never wakes."""
    if seconds > 0:
        _stopping.wait(seconds)
    raise_if_stopped()


def _on_signal(signum: int, _frame: object) -> None:
    if _stopping.is_set():
        return  # already winding down; let the clean-up finish
    _received.append(signum)
    _stopping.set()
    raise Interrupted(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP to `Interrupted` for the duration (main thread only);
    the previous handlers come back afterwards, and the flag is cleared for the next command."""
    nested = signal.getsignal(signal.SIGINT) is _on_signal  # a playbook step inside a run
    if nested or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    _stopping.clear()
    _received.clear()
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, _on_signal)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _stopping.clear()
        _received.clear()
