"""Progress bars on stderr, one factory for every long task: per-host (or per-file) bars that
show only when a person watches, never in JSON, in a pipe or under cron.

Callers hand the yielded function to the core as its progress callback, `(label, done, total)`;
it is safe to call from the fan-out's threads, and redraws at most 10 times a second per bar
(redrawing on every 64 KiB of a transfer cost more than the copy). `total` 0 means unknown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from redisops.render.output import Output

Advance = Callable[[str, int, int], None]
REDRAW_SECONDS = 0.1


@contextmanager
def progress_bars(output: Output, unit: Literal["bytes", "keys"]) -> Iterator[Advance | None]:
    """Bars counting `unit` (bytes: size and speed; keys: n of m and keys/s), each with its
    ETA, on stderr when a person watches; None off a terminal or with JSON output."""
    if not output.interactive or not output.err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    if unit == "bytes":
        counters = (DownloadColumn(), TransferSpeedColumn())
    else:
        counters = (MofNCompleteColumn(), TextColumn("{task.fields[rate]:>9,.0f} keys/s"))
    started: dict[str, tuple[int, float]] = {}  # label -> (task, first call)
    drawn: dict[str, float] = {}
    lock = threading.Lock()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *counters,
        TimeRemainingColumn(),
        console=output.err,
        transient=True,
    ) as bars:

        def advance(label: str, done: int, total: int) -> None:
            now = time.monotonic()
            with lock:
                if label not in started:
                    started[label] = (bars.add_task(label, total=total or None, rate=0.0), now)
                elif now - drawn.get(label, 0.0) < REDRAW_SECONDS and done != total:
                    return
                drawn[label] = now
                task, since = started[label]
            rate = done / (now - since) if now > since else 0.0
            bars.update(task, completed=done, total=total or None, rate=rate)

        yield advance
