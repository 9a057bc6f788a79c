"""`slowlog tail`: the newest slowlog entries of every host, then new ones as they appear.

Polling, not MONITOR: each poll asks a host only for the entries past the last id it showed
(SLOWLOG GET n, n growing until it reaches that id), so a quiet host costs one small reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from redisops.fleet.connection import redis_client
from redisops.fleet.fanout import run_on_hosts
from redisops.fleet.host import Host
from redisops.results import HostResult
from redisops.slowlog.collect import (
    COLLECTOR_NAME,
    RESTARTED,
    Bookmark,
    SlowlogEntry,
    commands_of,
    compare_with,
    connection_address,
    next_bookmark,
    own_entry,
    read_entries,
    refuse_sentinel,
    replication_address,
)
from redisops.slowlog.fingerprint import KeyTable, Shape, fingerprint_args
from redisops.slowlog.keyspecs import learn_key_positions

FIRST_FETCH = 32
# Each fetch asks for 4 times more; 8 fetches reach 500,000 entries, past any sane max-len.
MAX_FETCHES = 8


@dataclass(frozen=True)
class HostPoll:
    """One poll of one host: its new entries (oldest first, redisops' own left out).

    `bookmark` is where the next poll starts; `missed` counts entries that vanished between
    polls (log reset or wrapped); `restarted` is true when the run_id changed; `keys` says
    where this server's commands keep their keys.
    """

    bookmark: Bookmark
    entries: tuple[SlowlogEntry, ...]
    missed: int
    restarted: bool
    keys: KeyTable | None = None


@dataclass(frozen=True)
class TailedEntry:
    """An entry as tail shows it: where it comes from and its fingerprint."""

    host: str
    address: str
    entry: SlowlogEntry
    shape: Shape


@dataclass(frozen=True)
class TailBatch:
    """What one poll of the fleet found: entries in time order, failed hosts, notes."""

    entries: tuple[TailedEntry, ...]
    failures: tuple[HostResult, ...]
    notes: tuple[str, ...]


def poll_slowlog(host: Host, *, timeout: float, after: Bookmark | None, lines: int) -> HostPoll:
    """Entries of `host` after `after`; on a first poll (None), the newest `lines` of them.

    Raises HostError when the host cannot be read or is a Sentinel.
    """
    with redis_client(host, timeout=timeout, client_name=COLLECTOR_NAME) as client:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("CLIENT", "INFO")
        pipe.info()
        client_info, info = pipe.execute(raise_on_error=False)
        refuse_sentinel(host, info)
        run_id = str(info.get("run_id", ""))
        own_address = connection_address(client_info)
        link = replication_address(info)
        # Fetch up to the last id shown, when there is one on this same process.
        last_id = after.last_id if after is not None and after.run_id == run_id else None
        count = max(lines, 1) if after is None else FIRST_FETCH
        for _ in range(MAX_FETCHES):
            reply = client.execute_command("SLOWLOG", "GET", count)
            buffer = read_entries(reply, master_link=link)
            theirs = [e for e in buffer if not own_entry(e, own_address)]
            if (
                len(buffer) < count  # the whole log
                or (last_id is not None and buffer[0].id <= last_id + 1)
                or (after is None and len(theirs) >= lines)
            ):
                break
            count *= 4
        keys, _ = learn_key_positions(client, info, commands_of(theirs))
    since_last, missed, after_id = compare_with(after, run_id, buffer, None)
    fresh = tuple(e for e in theirs if e.id > after_id)
    if after is None:
        fresh = fresh[-lines:] if lines else ()
    return HostPoll(
        bookmark=next_bookmark(after, run_id, buffer, reset=False),
        entries=fresh,
        missed=missed,
        restarted=since_last == RESTARTED,
        keys=keys,
    )


def follow_slowlogs(
    hosts: Sequence[Host],
    *,
    timeout: float,
    parallel: int,
    lines: int,
    follow: bool,
    interval: float,
    stop_at: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[TailBatch]:
    """Poll `hosts` once (the newest `lines` entries), then, with `follow`, every `interval` s.

    Ends after the first poll without `follow`, or at `stop_at` (time.monotonic()) with it;
    otherwise runs until the caller stops iterating (Ctrl-C).
    """
    cursors: dict[str, Bookmark] = {}
    first = True
    while True:
        results = run_on_hosts(
            hosts,
            lambda host: poll_slowlog(
                host, timeout=timeout, after=cursors.get(host.name), lines=lines
            ),
            parallel=parallel,
        )
        tailed: list[TailedEntry] = []
        notes: list[str] = []
        for result in results:
            poll = result.data
            if poll is None:
                continue
            if poll.restarted:
                notes.append(f"{result.host} restarted: following its new slowlog")
            if poll.missed:
                notes.append(
                    f"{result.host}: {poll.missed} entries lost between polls "
                    "(slowlog reset, or wrapped faster than --interval)"
                )
            cursors[result.host] = poll.bookmark
            tailed.extend(
                TailedEntry(result.host, result.address, e, fingerprint_args(e.args, poll.keys))
                for e in poll.entries
            )
        tailed.sort(key=lambda t: (t.entry.started, t.host, t.entry.id))
        if first:
            tailed = tailed[-lines:] if lines else []
            first = False
        yield TailBatch(tuple(tailed), tuple(r for r in results if not r.ok), tuple(notes))
        if not follow:
            return
        remaining = None if stop_at is None else stop_at - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        sleep(interval if remaining is None else min(interval, remaining))
