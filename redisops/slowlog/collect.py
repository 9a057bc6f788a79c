"""Reading one host's slowlog, its settings and LATENCY LATEST, and telling what is new.

Collector connections carry the client name COLLECTOR_NAME, and entries they cause (and the
HELLO/AUTH of the current connection, logged before its name is set) are left out, so at
`slowlog-log-slower-than 0` collecting never shows up in what is collected, nor `tail` in
what it follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redisops.fleet.connection import describe_redis_error, redis_client
from redisops.fleet.host import Host
from redisops.fleet.server import refuse_sentinel_as_redis
from redisops.serverinfo import as_int, replication_role
from redisops.slowlog.fingerprint import KeyTable
from redisops.slowlog.keyspecs import learn_key_positions

COLLECTOR_NAME = "redisops-slowlog"
# The client name given to commands a replica applies from its master's replication stream
# (Redis logs them, from the master's address, with no name).
REPLICATION = "(replication)"

# How this run's entries relate to the previous run's (incremental mode).
FIRST = "first"  # no bookmark: everything in the buffer is new
CONTINUED = "continued"  # entries after the bookmark, nothing lost in between
RESTARTED = "restarted"  # run_id changed: ids started again, everything is new
LOG_RESET = "log reset"  # someone ran SLOWLOG RESET: entries logged before it are lost
OVERFLOWED = "overflowed"  # the ring buffer wrapped: the oldest new entries are lost


@dataclass(frozen=True)
class SlowlogEntry:
    """One SLOWLOG entry; `started` is the server's clock (unix seconds), `args` as logged."""

    id: int
    started: int
    duration_us: int
    args: tuple[bytes, ...]
    client_address: str
    client_name: str


@dataclass(frozen=True)
class SlowlogSettings:
    """The settings that decide what the slowlog holds; None when CONFIG GET was refused."""

    slower_than_us: int | None
    max_len: int | None
    latency_threshold_ms: int | None


@dataclass(frozen=True)
class LatencyEvent:
    """A LATENCY LATEST row: the event, when it last fired (unix seconds), latest and worst ms."""

    event: str
    at: int
    latest_ms: int
    max_ms: int


@dataclass(frozen=True)
class Bookmark:
    """Where the previous read of a host stopped: its run_id and the newest entry id it saw.

    `last_id` is None when the log was empty: everything after is new, but no gap can be
    judged. `reset` is true when that read emptied the log; its own SLOWLOG GET, logged just
    before the RESET cleared it, then leaves a gap of one id that is not a loss.
    """

    run_id: str
    last_id: int | None
    reset: bool = False


@dataclass(frozen=True)
class HostCapture:
    """What one host's slowlog held that was new since `Bookmark`, and how to read it.

    `entries` are oldest first, without redisops' own. `log_length` and `span_seconds` (from
    oldest to newest) describe the whole buffer; `bookmark` is where the next run starts.
    `missed` counts entries lost between runs when `since_last` is LOG_RESET or OVERFLOWED.
    `keys` tells where the keys of this server's commands are (from its COMMAND INFO);
    `keys_error` why the server could not say (then the static table answers).
    """

    run_id: str
    role: str
    settings: SlowlogSettings
    settings_error: str | None
    latency: tuple[LatencyEvent, ...]
    log_length: int
    span_seconds: int
    entries: tuple[SlowlogEntry, ...]
    since_last: str
    missed: int
    reset: bool
    bookmark: Bookmark
    keys: KeyTable | None = None
    keys_error: str | None = None


@dataclass(frozen=True)
class SlowlogReset:
    """A host's slowlog length, and whether it was reset (`entries` is then what was cleared)."""

    entries: int
    reset: bool


def slowlog_length(host: Host, *, timeout: float) -> SlowlogReset:
    """How many entries `host`'s slowlog holds (read-only: what a reset would clear)."""
    with redis_client(host, timeout=timeout, client_name=COLLECTOR_NAME) as client:
        return SlowlogReset(int(client.execute_command("SLOWLOG", "LEN")), reset=False)


def reset_slowlog(host: Host, *, timeout: float) -> SlowlogReset:
    """Empty `host`'s slowlog; counts what it cleared in the same transaction."""
    with redis_client(host, timeout=timeout, client_name=COLLECTOR_NAME) as client:
        transaction = client.pipeline(transaction=True)
        transaction.execute_command("SLOWLOG", "LEN")
        transaction.execute_command("SLOWLOG", "RESET")
        cleared, _ = transaction.execute()
    return SlowlogReset(int(cleared), reset=True)


def capture_slowlog(
    host: Host, *, timeout: float, after: Bookmark | None = None, reset: bool = False
) -> HostCapture:
    """Read `host`'s whole slowlog; with `reset`, empty it in the same transaction (no gap).

    Raises HostError when the host cannot be read, or is a Sentinel (it has no slowlog).
    """
    with redis_client(host, timeout=timeout, client_name=COLLECTOR_NAME) as client:
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("CLIENT", "INFO")
        pipe.info()
        pipe.execute_command("CONFIG", "GET", "slowlog-*")
        pipe.execute_command("CONFIG", "GET", "latency-monitor-threshold")
        pipe.execute_command("LATENCY", "LATEST")
        client_info, info, slowlog_config, latency_config, latency = pipe.execute(
            raise_on_error=False
        )
        refuse_sentinel(host, info)
        if reset:
            transaction = client.pipeline(transaction=True)
            transaction.execute_command("SLOWLOG", "GET", "-1")
            transaction.execute_command("SLOWLOG", "RESET")
            raw, _ = transaction.execute()
        else:
            raw = client.execute_command("SLOWLOG", "GET", "-1")
        buffer = read_entries(raw, master_link=replication_address(info))
        keys, keys_error = learn_key_positions(client, info, commands_of(buffer))

    settings = _settings(slowlog_config, latency_config)
    refused = next((r for r in (slowlog_config, latency_config) if isinstance(r, Exception)), None)
    run_id = str(info.get("run_id", ""))
    since_last, missed, after_id = compare_with(after, run_id, buffer, settings.max_len)
    own_address = connection_address(client_info)
    entries = tuple(e for e in buffer if e.id > after_id and not own_entry(e, own_address))
    return HostCapture(
        run_id=run_id,
        role=replication_role(info),
        settings=settings,
        settings_error=describe_redis_error(refused, host, timeout) if refused else None,
        latency=_latency(latency),
        log_length=len(buffer),
        span_seconds=buffer[-1].started - buffer[0].started if buffer else 0,
        entries=entries,
        since_last=since_last,
        missed=missed,
        reset=reset,
        bookmark=next_bookmark(after, run_id, buffer, reset=reset),
        keys=keys,
        keys_error=keys_error,
    )


def commands_of(entries: Sequence[SlowlogEntry]) -> set[bytes]:
    """The distinct command names (raw, as logged) of `entries`."""
    return {entry.args[0] for entry in entries if entry.args}


def compare_with(
    after: Bookmark | None, run_id: str, buffer: Sequence[SlowlogEntry], max_len: int | None
) -> tuple[str, int, int]:
    """How `buffer` (oldest first) follows the bookmark: (since_last, missed, last old id).

    Entry ids grow by one per logged command for the life of the process (SLOWLOG RESET does
    not restart them), so a gap before the oldest entry means entries were lost: to a reset
    when the buffer has room left, to the ring wrapping when it is full.
    """
    if after is None:
        return FIRST, 0, -1
    if after.run_id != run_id:
        return RESTARTED, 0, -1
    if after.last_id is None:
        return CONTINUED, 0, -1
    if not buffer:
        return CONTINUED, 0, after.last_id
    gap = buffer[0].id - after.last_id - 1 - (1 if after.reset else 0)
    if gap <= 0:
        return CONTINUED, 0, after.last_id
    full = max_len is not None and len(buffer) >= max_len
    return (OVERFLOWED if full else LOG_RESET), gap, after.last_id


def next_bookmark(
    after: Bookmark | None, run_id: str, buffer: Sequence[SlowlogEntry], *, reset: bool
) -> Bookmark:
    """Where the next read starts, after reading `buffer` (oldest first) past `after`."""
    if buffer:
        return Bookmark(run_id, buffer[-1].id, reset)
    if after is not None and after.run_id == run_id:  # nothing new: the old bookmark holds
        return Bookmark(run_id, after.last_id, after.reset or reset)
    return Bookmark(run_id, None, reset)


def own_entry(entry: SlowlogEntry, own_address: str | None) -> bool:
    """True for entries redisops' collector connections caused."""
    return entry.client_name == COLLECTOR_NAME or entry.client_address == own_address


def refuse_sentinel(host: Host, info: Any) -> None:
    """Raise the error INFO (parsed, or the exception in its place) calls for, if any."""
    if isinstance(info, Exception):
        raise info
    refuse_sentinel_as_redis(host, info)


def read_entries(reply: Sequence[Any], *, master_link: str | None) -> list[SlowlogEntry]:
    """A SLOWLOG GET reply (newest first) as entries, oldest first.

    Entries from `master_link` (see `replication_address`) are named REPLICATION.
    """
    entries = (_entry(item, master_link) for item in reply)
    return sorted(entries, key=lambda e: e.id)


def replication_address(info: dict) -> str | None:
    """On a replica, the address its replication stream's commands are logged from."""
    if info.get("role") != "slave" or "master_host" not in info:
        return None
    return f"{info['master_host']}:{info['master_port']}"


def connection_address(client_info: Any) -> str | None:
    """This connection's address as the server logs it, from CLIENT INFO (None if refused)."""
    if isinstance(client_info, Exception):
        return None
    for field in _text(client_info).split():
        if field.startswith("addr="):
            return field[len("addr=") :]
    return None


def _entry(item: Sequence[Any], master_link: str | None) -> SlowlogEntry:
    args, rest = item[3], item[4:]
    if not isinstance(args, list):  # Redis Enterprise puts a complexity figure before the args
        args, rest = item[4], item[5:]
    address = _text(rest[0]) if rest else ""
    name = _text(rest[1]) if len(rest) > 1 else ""
    return SlowlogEntry(
        id=int(item[0]),
        started=int(item[1]),
        duration_us=int(item[2]),
        args=tuple(args),
        client_address=address,
        client_name=REPLICATION if address == master_link else name,
    )


def _settings(slowlog: Any, latency: Any) -> SlowlogSettings:
    values = {**_config_pairs(slowlog), **_config_pairs(latency)}
    return SlowlogSettings(
        slower_than_us=as_int(values.get("slowlog-log-slower-than")),
        max_len=as_int(values.get("slowlog-max-len")),
        latency_threshold_ms=as_int(values.get("latency-monitor-threshold")),
    )


def _config_pairs(reply: Any) -> dict[str, str]:
    if isinstance(reply, dict):  # RESP3 map
        return {_text(k): _text(v) for k, v in reply.items()}
    if isinstance(reply, list):  # RESP2 flat list
        return {_text(k): _text(v) for k, v in zip(reply[::2], reply[1::2], strict=False)}
    return {}


def _latency(reply: Any) -> tuple[LatencyEvent, ...]:
    if not isinstance(reply, list):
        return ()
    return tuple(
        LatencyEvent(_text(row[0]), int(row[1]), int(row[2]), int(row[3]))
        for row in reply
        if isinstance(row, list) and len(row) >= 4
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)
