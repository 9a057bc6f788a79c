"""Run one task per host in parallel; results come back in inventory order, one per host."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from redisops.errors import HostError
from redisops.fleet.host import Host
from redisops.interrupt import Interrupted

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


def run_on_hosts(
    hosts: Sequence[Host], task: Callable[[Host], T], *, parallel: int
) -> list[HostResult[T]]:
    """Call `task(host)` for every host, at most `parallel` at once.

    Each task opens and closes its own connections (nothing is shared across threads) and
    must bound its own work by the timeout it was given. A HostError becomes that host's
    error row; any other exception is a bug and propagates. A host with a `discovery_error`
    (redisops.fleet.cluster) is that error row and its task is not called.
    """
    results: list[HostResult[T] | None] = [None] * len(hosts)
    if not hosts:
        return []
    # A host that cluster discovery found unusable is an error row; the task never sees it.
    for index, host in enumerate(hosts):
        if host.discovery_error is not None:
            results[index] = HostResult(host.name, host.address, False, host.discovery_error, None)
    usable = [i for i, host in enumerate(hosts) if host.discovery_error is None]
    if len(usable) < len(hosts):
        for index, result in zip(
            usable, run_on_hosts([hosts[i] for i in usable], task, parallel=parallel), strict=True
        ):
            results[index] = result
        return [result for result in results if result is not None]
    workers = max(1, min(parallel, len(hosts)))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="redisops-host")
    try:
        futures = {pool.submit(task, host): index for index, host in enumerate(hosts)}
        for future in as_completed(futures):
            index = futures[future]
            results[index] = _host_result(hosts[index], future)
    except Interrupted as exc:
        # Hosts not started are never started; running tasks see the stop flag at their next
        # unit of work and run their own clean-up before the pool lets go.
        pool.shutdown(wait=True, cancel_futures=True)
        finished = sum(1 for result in results if result is not None)
        raise Interrupted(exc.signum, f"{finished} of {len(hosts)} hosts finished") from None
    finally:
        pool.shutdown(wait=True)
    return [result for result in results if result is not None]


def _host_result(host: Host, future: Future[T]) -> HostResult[T]:
    try:
        data = future.result()
    except PartialFailure as exc:
        return HostResult(host.name, host.address, False, _line(exc), exc.data)
    except HostError as exc:
        return HostResult(host.name, host.address, False, _line(exc), None)
    return HostResult(host.name, host.address, True, None, data)


def _line(exc: HostError) -> str:
    text = exc.message if not exc.hint else f"{exc.message} (hint: {exc.hint})"
    return " ".join(text.split())
