"""Settings as Redis reads them: sizes, yes/no, enums, multi-part values, dangerous and secret
names. The normaliser is checked against what a real redis-server reads back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from redisops.errors import UsageError
from redisops.fleet.connection import build_client
from redisops.tuning.apply import parse_assignments
from redisops.tuning.settings import (
    SET,
    UNSET,
    buffer_limit,
    canonical,
    danger,
    masked,
    normalised,
    same_value,
)
from redisops.tuning.units import parse_size, redis_size
from tests.servers import start_redis_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    process, port = start_redis_server(tmp_path_factory.mktemp("settings"))
    client = build_client("127.0.0.1", port, password=None, timeout=5, decode=True)
    try:
        yield client
    finally:
        client.close()
        process.kill()
        process.wait(timeout=10)


def test_sizes_follow_redis_units():
    assert parse_size("1gb") == 1073741824
    assert parse_size("1g") == 1000000000
    assert parse_size("64MB") == 64 * 1024 * 1024
    assert parse_size("5k") == 5000
    assert parse_size("100") == 100
    assert parse_size("-1") == -1
    assert parse_size("1.5gb") is None
    assert parse_size("allkeys-lru") is None
    assert redis_size(268435456) == "256mb"
    assert redis_size(1073741824) == "1gb"
    assert redis_size(1000) == "1000"


@pytest.mark.parametrize(
    ("setting", "written"),
    [
        ("maxmemory", "1gb"),
        ("maxmemory", "1g"),
        ("maxmemory", "100MB"),
        ("repl-backlog-size", "2mb"),
        ("maxmemory-policy", "ALLKEYS-LRU"),
        ("appendfsync", "EverySec"),
        ("lazyfree-lazy-eviction", "YES"),
        ("save", "3600 1 300 100"),
        ("save", ""),
        ("client-output-buffer-limit", "normal 0 0 0 replica 512mb 128mb 60 pubsub 32mb 8mb 60"),
        ("notify-keyspace-events", "KEA"),
        ("notify-keyspace-events", "Kgx$lshzetd"),
        ("latency-tracking-info-percentiles", "50.0 99 99.90"),
    ],
)
def test_normalised_value_equals_what_redis_reads_back(server, setting, written):
    server.config_set(setting, written)
    read_back = server.config_get(setting)[setting]
    assert same_value(setting, written, read_back)
    assert normalised(setting, written) == normalised(setting, read_back)


def test_different_values_stay_different():
    assert not same_value("maxmemory", "1gb", "1000000000")
    assert not same_value("maxmemory-policy", "allkeys-lru", "allkeys-lfu")
    assert not same_value("save", "3600 1", "")
    # Paths and other strings are case-sensitive in Redis.
    assert not same_value("dbfilename", "Dump.rdb", "dump.rdb")


def test_client_output_buffer_limit_compares_the_classes_given():
    current = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
    assert same_value("client-output-buffer-limit", "replica 256mb 64mb 60", current)
    assert not same_value("client-output-buffer-limit", "replica 512mb 64mb 60", current)
    assert buffer_limit(current, "replica") == (268435456, 67108864, 60)


def test_aliases_secrets_and_dangerous_settings():
    assert canonical("SLAVE-PRIORITY") == "replica-priority"
    assert masked("requirepass", "s3cret-value") == SET
    assert masked("masterauth", "") == UNSET
    assert masked("maxmemory", "0") == "0"
    assert danger("dir", "/tmp") and danger("dbfilename", "x.rdb")
    assert danger("protected-mode", "no") and danger("protected-mode", "yes") is None
    assert danger("maxmemory", "1gb") is None


def test_set_options_are_parsed_strictly():
    assert parse_assignments(["maxmemory=1gb", "save=", "slave-priority=5"]) == {
        "maxmemory": "1gb",
        "save": "",
        "replica-priority": "5",
    }
    for bad in (["maxmemory"], ["max*=1"], ["=1"], ["a=1", "A=2"]):
        with pytest.raises(UsageError):
            parse_assignments(bad)


def test_every_rule_is_documented():
    from redisops.tuning.rules import RULES

    text = (Path(__file__).parent.parent / "docs" / "config.md").read_text()
    assert [rule.id for rule in RULES if f"`{rule.id}`" not in text] == []
