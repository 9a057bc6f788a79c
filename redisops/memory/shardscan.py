"""The shards of a cluster scanned in child processes, one per shard, all at once.

Threads do not scan shards in parallel: the scan's client side is Python work under the GIL,
and a thread back from its socket waits for the GIL behind the others (the convoy effect), so
three threads took about as long as three scans one after another (bench/README.md,
`cluster_memory_report.py`). A forked child per shard runs its own interpreter. Children send
their progress and their result (or a one-line error) back on a queue. They ignore SIGINT and
SIGHUP (a terminal sends them to the whole process group): the parent owns the interrupt and
terminates every child still running, whatever ends its wait. A scan only reads, so a child
cut short leaves nothing behind.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from redisops.errors import HostError
from redisops.interrupt import raise_if_stopped
from redisops.results import HostResult

PROGRESS_EVERY = 0.2  # seconds between a child's progress messages
POLL = 0.1  # seconds the parent waits on the queue before checking for a stop

Scan = Callable[[Any, Callable[[str, int, int], None] | None], Any]


def scan_in_processes(
    plans: Sequence[Any],
    scan: Scan,
    *,
    host_of: Callable[[Any], tuple[str, str]],
    parallel: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[HostResult]:
    """`scan(plan, progress)` for every plan in a forked child, at most `parallel` at once.

    Results come back in plan order as HostResults named by `host_of(plan)` (name, address).
    A HostError in a child is that plan's error row; any other exception is a bug and is
    raised here (RuntimeError with the child's traceback).
    """
    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    results: list[HostResult | None] = [None] * len(plans)
    waiting = list(range(len(plans)))
    running: dict[int, multiprocessing.process.BaseProcess] = {}
    try:
        while waiting or running:
            while waiting and len(running) < max(1, parallel):
                index = waiting.pop(0)
                child = context.Process(
                    target=_child,
                    args=(scan, plans[index], index, messages, progress is not None),
                    daemon=True,
                )
                child.start()
                running[index] = child
            raise_if_stopped()
            try:
                message = messages.get(timeout=POLL)
            except queue.Empty:
                _check_alive(running, results, plans, host_of)
                continue
            kind, index, *payload = message
            name, address = host_of(plans[index])
            if kind == "progress":
                if progress is not None:
                    progress(*payload)
                continue
            running.pop(index).join()
            if kind == "bug":
                raise RuntimeError(f"scan of {name} failed in its process:\n{payload[0]}")
            ok = kind == "done"
            results[index] = HostResult(
                name, address, ok, None if ok else payload[0], payload[0] if ok else None
            )
    finally:
        for child in running.values():
            child.terminate()
        for child in running.values():
            child.join()
        messages.close()
    return [r for r in results if r is not None]


def _check_alive(running: dict, results: list, plans: Sequence[Any], host_of: Callable) -> None:
    """A child that died without a word (killed, out of memory) is an error row."""
    for index, child in list(running.items()):
        if not child.is_alive() and child.exitcode not in (0, None):
            running.pop(index)
            name, address = host_of(plans[index])
            why = f"scan process ended with exit code {child.exitcode}"
            results[index] = HostResult(name, address, False, why, None)


def _child(scan: Scan, plan: Any, index: int, messages: Any, report_progress: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    last = [0.0]

    def forward(name: str, seen: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            messages.put(("progress", index, name, seen, total))

    try:
        data = scan(plan, forward if report_progress else None)
    except HostError as exc:
        text = exc.message if not exc.hint else f"{exc.message} (hint: {exc.hint})"
        messages.put(("error", index, " ".join(text.split())))
    except BaseException:  # a bug: the parent raises it with this traceback
        messages.put(("bug", index, traceback.format_exc()))
    else:
        messages.put(("done", index, data))
    messages.close()
    messages.join_thread()
