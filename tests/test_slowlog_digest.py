"""The digest, hints, continuity between runs, time windows and the state file, on plain data."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone

import pytest

from redisops.errors import ExitCode, UsageError
from redisops.slowlog.advice import host_warnings, settings_hints, shape_hint
from redisops.slowlog.collect import (
    CONTINUED,
    FIRST,
    LOG_RESET,
    OVERFLOWED,
    RESTARTED,
    Bookmark,
    HostCapture,
    SlowlogEntry,
    SlowlogSettings,
    compare_with,
    next_bookmark,
)
from redisops.slowlog.digest import digest_entries
from redisops.slowlog.state import check_state_writable, load_bookmarks, save_bookmarks
from redisops.slowlog.window import parse_moment

T0 = 1_795_000_000


def entry(
    ident: int,
    *words: str,
    us: int = 100,
    at: int = T0,
    client: str = "10.0.0.1:5000",
    name: str = "app",
) -> SlowlogEntry:
    return SlowlogEntry(ident, at, us, tuple(w.encode() for w in words), client, name)


def test_fleet_and_host_digests_rank_fingerprints_by_total_time():
    node1 = [
        entry(1, "GET", "user:1:profile", us=10, at=T0),
        entry(2, "GET", "user:2:profile", us=20, at=T0 + 5, client="10.0.0.2:6000", name="web"),
        entry(3, "HGETALL", "cart:9", us=500, at=T0 + 7),
    ]
    node2 = [entry(i, "GET", f"user:{i}:profile", us=i * 10, at=T0 + i) for i in range(3, 11)]
    digest = digest_entries({"node-1": node1, "node-2": node2})

    assert digest.entries == 11
    assert digest.entries_by_host == {"node-1": 3, "node-2": 8}
    assert digest.distinct == 2
    get, hgetall = digest.fingerprints
    assert (get.fingerprint, get.command, get.key_pattern) == (
        "GET user:{id}:profile",
        "GET",
        "user:{id}:profile",
    )
    durations = [10, 20, *range(30, 101, 10)]
    assert (get.count, get.total_us, get.max_us) == (10, sum(durations), 100)
    assert get.avg_us == round(sum(durations) / 10)
    assert (get.p50_us, get.p95_us) == (50, 100)  # nearest rank
    assert get.hosts == ("node-1", "node-2")
    assert (get.first_seen, get.last_seen) == (T0, T0 + 10)
    assert [(c.address, c.name, c.count) for c in get.clients] == [
        ("10.0.0.1", "app", 9),  # connections from one address and name count as one client
        ("10.0.0.2", "web", 1),
    ]
    # Buckets up to 10, 32, 100 µs…: 10 | 20, 30 | 40…100.
    assert get.histogram == (1, 2, 7, *[0] * 9)
    assert hgetall.hosts == ("node-1",)
    assert [s.fingerprint for s in digest.by_host["node-1"]] == [
        "HGETALL cart:{id}",
        "GET user:{id}:profile",
    ]
    assert digest.by_host["node-1"][1].count == 2
    assert hgetall.sample is None  # values only with show_args


def test_sort_top_and_window():
    entries = [entry(1, "KEYS", "*", us=9000)] + [
        entry(i, "GET", f"k:{i}", us=100, at=T0 + i) for i in range(2, 12)
    ]
    by_count = digest_entries({"a": entries}, sort="count")
    assert [s.command for s in by_count.fingerprints] == ["GET", "KEYS"]
    by_total = digest_entries({"a": entries}, sort="total", top=1)
    assert [s.command for s in by_total.fingerprints] == ["KEYS"]
    assert by_total.distinct == 2
    window = digest_entries({"a": entries}, since=T0 + 5, until=T0 + 7)
    assert window.entries == 3
    assert window.fingerprints[0].count == 3
    with pytest.raises(ValueError):
        digest_entries({"a": entries}, sort="loudest")


def test_sample_is_the_slowest_call_redacted():
    entries = [
        entry(1, "CONFIG", "SET", "requirepass", "s3cret-value", us=50),
        entry(2, "CONFIG", "SET", "maxmemory", "1gb", us=10),
    ]
    (stats,) = digest_entries({"a": entries}, show_args=True).fingerprints
    assert stats.sample == ("CONFIG", "SET", "requirepass", "(redacted)")


def test_shape_hints():
    assert "SCAN" in shape_hint("KEYS", count=1, max_us=5, whole_range=0, asynchronous=0)
    assert shape_hint("HGETALL", count=1, max_us=999, whole_range=0, asynchronous=0) is None
    assert "HSCAN" in shape_hint("HGETALL", count=1, max_us=5000, whole_range=0, asynchronous=0)
    assert "3 of 4 calls" in shape_hint(
        "LRANGE", count=4, max_us=2000, whole_range=3, asynchronous=0
    )
    assert "UNLINK" in shape_hint("DEL", count=1, max_us=40_000, whole_range=0, asynchronous=0)
    assert "ASYNC" in shape_hint("FLUSHALL", count=2, max_us=5, whole_range=0, asynchronous=1)
    assert shape_hint("FLUSHALL", count=2, max_us=5, whole_range=0, asynchronous=2) is None
    assert "script" in shape_hint(
        "EVALSHA 1a2b3c4d", count=1, max_us=20_000, whole_range=0, asynchronous=0
    )
    assert "DEBUG" in shape_hint("DEBUG SLEEP", count=1, max_us=5, whole_range=0, asynchronous=0)
    assert shape_hint("GET", count=9, max_us=90_000, whole_range=0, asynchronous=0) is None


def buffer(*ids: int) -> list[SlowlogEntry]:
    return [entry(i, "GET", "k") for i in ids]


@pytest.mark.parametrize(
    ("bookmark", "run_id", "ids", "max_len", "expected"),
    [
        (None, "r1", (5, 6), 128, (FIRST, 0, -1)),
        (Bookmark("r0", 40), "r1", (0, 1), 128, (RESTARTED, 0, -1)),
        (Bookmark("r1", 6), "r1", (5, 6, 7, 8), 128, (CONTINUED, 0, 6)),
        (Bookmark("r1", 6), "r1", (), 128, (CONTINUED, 0, 6)),
        (Bookmark("r1", 6), "r1", (12, 13), 128, (LOG_RESET, 5, 6)),
        (Bookmark("r1", 6), "r1", (12, 13), 2, (OVERFLOWED, 5, 6)),
        # Our own reset leaves one id (our SLOWLOG GET) unseen: not a loss.
        (Bookmark("r1", 6, reset=True), "r1", (8, 9), 128, (CONTINUED, 0, 6)),
        (Bookmark("r1", 6, reset=True), "r1", (9,), 128, (LOG_RESET, 1, 6)),
        # The log was empty last time: everything is new, and no gap can be judged.
        (Bookmark("r1", None), "r1", (5000, 5001), 128, (CONTINUED, 0, -1)),
    ],
)
def test_continuity_between_runs(bookmark, run_id, ids, max_len, expected):
    assert compare_with(bookmark, run_id, buffer(*ids), max_len) == expected


def test_next_bookmark():
    assert next_bookmark(None, "r1", buffer(3, 4), reset=False) == Bookmark("r1", 4)
    assert next_bookmark(None, "r1", [], reset=True) == Bookmark("r1", None, reset=True)
    kept = Bookmark("r1", 4, reset=True)
    assert next_bookmark(kept, "r1", [], reset=False) == kept  # the reset's allowance stays
    assert next_bookmark(kept, "r2", [], reset=False) == Bookmark("r2", None)


def capture(**changes) -> HostCapture:
    values = {
        "run_id": "r1",
        "role": "master",
        "settings": SlowlogSettings(10_000, 128, 100),
        "settings_error": None,
        "latency": (),
        "log_length": 10,
        "span_seconds": 60,
        "entries": (),
        "since_last": FIRST,
        "missed": 0,
        "reset": False,
        "bookmark": Bookmark("r1", 9),
    }
    return HostCapture(**(values | changes))


def test_settings_warnings_and_hints():
    disabled = capture(settings=SlowlogSettings(-1, 128, 0))
    small = capture(settings=SlowlogSettings(10_000, 16, 100), log_length=16, span_seconds=42)
    healthy = capture()
    assert host_warnings(disabled, incremental=False) == (
        "slowlog is disabled (slowlog-log-slower-than < 0)",
    )
    assert host_warnings(small, incremental=False) == (
        "slowlog keeps only 16 entries (slowlog-max-len)",
        "slowlog is full: its 16 entries cover only the last 42 s; older ones were dropped",
    )
    assert host_warnings(healthy, incremental=False) == ()
    hints = settings_hints({"a": disabled, "b": small, "c": healthy}, incremental=False)
    assert [hint.split(":")[0] for hint in hints] == [
        "slowlog disabled on a",
        "slowlog too small on b",
        "slowlog entries dropped on b",
        "latency monitor off on a",
    ]
    lost = capture(since_last=OVERFLOWED, missed=7)
    assert host_warnings(lost, incremental=True) == (
        "slowlog wrapped since the last run: 7 entries lost",
    )


def test_moments_as_durations_or_dates():
    now = 1_800_000_000.0
    assert parse_moment("90s", now=now, option="--since") == now - 90
    assert parse_moment("1h30m", now=now, option="--since") == now - 5400
    assert parse_moment("2d", now=now, option="--since") == now - 172800
    utc = datetime(2026, 11, 23, 18, 0, tzinfo=timezone.utc).timestamp()
    assert parse_moment("2026-11-23T18:00Z", now=now, option="--since") == utc
    local = datetime(2026, 11, 23, 18, 0).timestamp()
    assert parse_moment("2026-11-23 18:00", now=now, option="--until") == local
    with pytest.raises(UsageError) as caught:
        parse_moment("yesterday", now=now, option="--until")
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message == "--until 'yesterday' is neither a duration nor a date"


def test_state_round_trip_is_atomic_and_private(tmp_path):
    path = tmp_path / "slowlog.state"
    assert load_bookmarks(path) == {}
    marks = {
        "node-1": Bookmark("r1", 41),
        "node-2": Bookmark("r2", 7, reset=True),
        "node-3": Bookmark("r3", None),
    }
    save_bookmarks(path, marks)
    assert load_bookmarks(path) == marks
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["slowlog.state"]  # no temporary file left behind
    document = json.loads(path.read_text())
    assert document["kind"] == "redisops-slowlog-state"
    assert set(document["hosts"]["node-1"]) == {"run_id", "last_id", "reset"}


def test_bad_state_files_are_usage_errors(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"kind": "something else"}')
    with pytest.raises(UsageError, match="is not a redisops slowlog state"):
        load_bookmarks(path)
    path.write_text("not json")
    with pytest.raises(UsageError):
        load_bookmarks(path)
    with pytest.raises(UsageError, match="does not exist"):
        check_state_writable(tmp_path / "missing" / "state.json")
