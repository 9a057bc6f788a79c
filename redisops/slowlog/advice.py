"""Hints for known expensive command shapes, and for slowlog settings that hide what happened."""

from __future__ import annotations

from collections.abc import Mapping

from redisops.slowlog.collect import LOG_RESET, OVERFLOWED, RESTARTED, HostCapture

# A single-threaded server blocked this long has visibly delayed every other client.
SLOW_US = 1_000
LONG_SCRIPT_US = 10_000
# Redis' default slowlog-max-len; fewer entries rarely cover an incident.
USEFUL_MAX_LEN = 128

_WHOLE_READS = {"SMEMBERS": "SSCAN", "HGETALL": "HSCAN", "HKEYS": "HSCAN", "HVALS": "HSCAN"}
_SCRIPTS = ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO")


def shape_hint(
    command: str, *, count: int, max_us: int, whole_range: int, asynchronous: int
) -> str | None:
    """Advice for a fingerprint's command (`CONFIG GET`, `EVALSHA 1a2b3c4d`), or None.

    `whole_range` and `asynchronous` count its calls flagged WHOLE_RANGE and ASYNC.
    """
    name = command.split(" ", 1)[0]
    slowest = f"slowest {max_us / 1000:.1f} ms"
    if name == "KEYS":
        return "KEYS walks every key and blocks the server meanwhile: use SCAN with MATCH and COUNT"
    if name in ("FLUSHALL", "FLUSHDB") and asynchronous < count:
        return f"{name} blocks until every key is freed: {name} ASYNC frees them in the background"
    if name == "DEBUG":
        return "DEBUG commands block the server: keep them off production"
    if name in ("SORT", "SORT_RO"):
        return "SORT blocks for O(N+M*log(M)): sort in the client, or keep the data in a sorted set"
    if name in _SCRIPTS and max_us >= LONG_SCRIPT_US:
        return f"a script blocks the server for its whole run ({slowest}): shorten or split it"
    if max_us < SLOW_US:
        return None
    if name in _WHOLE_READS:
        return (
            f"{name} returns the whole collection in one reply ({slowest}): "
            f"iterate with {_WHOLE_READS[name]}, or keep the collection small"
        )
    if whole_range:
        return (
            f"{whole_range} of {count} calls read the whole collection ({name} key 0 -1, "
            f"{slowest}): page through it"
        )
    if name == "DEL":
        return (
            f"DEL frees big values while clients wait ({slowest}): "
            "UNLINK frees them in the background"
        )
    return None


def host_warnings(capture: HostCapture, *, incremental: bool) -> tuple[str, ...]:
    """What makes this host's slowlog miss things: disabled, too small, full, entries lost."""
    settings = capture.settings
    warnings = []
    if capture.settings_error:
        warnings.append(f"slowlog settings unknown: {capture.settings_error}")
    if settings.slower_than_us is not None and settings.slower_than_us < 0:
        warnings.append("slowlog is disabled (slowlog-log-slower-than < 0)")
    elif settings.max_len == 0:
        warnings.append("slowlog keeps nothing (slowlog-max-len 0)")
    elif settings.max_len is not None and settings.max_len < USEFUL_MAX_LEN:
        warnings.append(f"slowlog keeps only {settings.max_len} entries (slowlog-max-len)")
    if capture.since_last == OVERFLOWED:
        warnings.append(f"slowlog wrapped since the last run: {capture.missed} entries lost")
    elif capture.since_last == LOG_RESET:
        warnings.append(f"slowlog was reset since the last run: {capture.missed} entries lost")
    elif not incremental and _full(capture):
        warnings.append(
            f"slowlog is full: its {capture.log_length} entries cover only the last "
            f"{capture.span_seconds} s; older ones were dropped"
        )
    return tuple(warnings)


def host_notes(capture: HostCapture) -> tuple[str, ...]:
    """Things worth knowing that lose nothing: a restart, a reset done by this run, key
    positions the server would not give."""
    notes = []
    if capture.since_last == RESTARTED:
        notes.append("restarted since the last run (new run_id): all its entries are new")
    if capture.reset:
        notes.append("slowlog reset after reading")
    if capture.keys_error:
        notes.append(capture.keys_error)
    return tuple(notes)


def settings_hints(captures: Mapping[str, HostCapture], *, incremental: bool) -> tuple[str, ...]:
    """One line of advice per kind of settings problem, naming the hosts that have it."""
    disabled, small, dropped, reset_by_others, monitor_off = [], [], [], [], []
    for name, capture in captures.items():
        settings = capture.settings
        if settings.slower_than_us is not None and settings.slower_than_us < 0:
            disabled.append(name)
        if settings.max_len is not None and settings.max_len < USEFUL_MAX_LEN:
            small.append(name)
        if capture.since_last == OVERFLOWED or (not incremental and _full(capture)):
            dropped.append(name)
        if capture.since_last == LOG_RESET:
            reset_by_others.append(name)
        if settings.latency_threshold_ms == 0:
            monitor_off.append(name)
    advice = (
        ("slowlog disabled on", disabled,
         "CONFIG SET slowlog-log-slower-than 10000 logs every command over 10 ms"),
        ("slowlog too small on", small,
         "CONFIG SET slowlog-max-len 1024 keeps enough history for an incident"),
        ("slowlog entries dropped on", dropped,
         "raise slowlog-max-len, or run `redisops slowlog triage --state FILE` from cron "
         "often enough to keep up"),
        ("slowlog reset by someone else on", reset_by_others,
         "leave resets to `redisops slowlog triage --state FILE --reset`, which reads every "
         "entry before it empties the log"),
        ("latency monitor off on", monitor_off,
         "CONFIG SET latency-monitor-threshold 100 records events (fork, fsync, expiry) "
         "over 100 ms"),
    )  # fmt: skip
    return tuple(f"{what} {', '.join(names)}: {fix}" for what, names, fix in advice if names)


def _full(capture: HostCapture) -> bool:
    return bool(capture.settings.max_len) and capture.log_length >= capture.settings.max_len
