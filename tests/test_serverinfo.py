"""The one INFO parser (redisops/serverinfo.py): raw replies, keyspace lines of either client,
and integer fields, as every concern reads them."""

from __future__ import annotations

import pytest

from redisops.serverinfo import as_int, keyspace, parse_info, replicas, replication_role

RAW = (
    b"# Server\r\nredis_version:7.0.15\r\nrun_id:abc:def\r\n\r\n"
    b"# Replication\r\nrole:master\r\n\r\n"
    b"# Keyspace\r\ndb10:keys=2,expires=0,avg_ttl=0\r\ndb0:keys=5,expires=1,avg_ttl=120\r\n"
)


def test_parse_info_reads_names_and_values_and_skips_headers():
    info = parse_info(RAW)
    assert info["redis_version"] == "7.0.15"
    assert info["run_id"] == "abc:def"  # only the first colon separates
    assert info["role"] == "master"
    assert not any(name.startswith("#") for name in info)
    assert parse_info(RAW.decode()) == info


def test_keyspace_reads_raw_lines_and_redis_py_dicts_alike_in_db_order():
    from_raw = keyspace(parse_info(RAW))
    assert from_raw == {
        0: {"keys": 5, "expires": 1, "avg_ttl": 120},
        10: {"keys": 2, "expires": 0, "avg_ttl": 0},
    }
    from_redis_py = keyspace(
        {"db10": {"keys": 2, "expires": 0, "avg_ttl": 0}, "db0": {"keys": 5, "expires": 1,
         "avg_ttl": 120}, "dbfilename": "dump.rdb", "used_memory": 1}
    )  # fmt: skip
    assert from_redis_py == from_raw
    assert list(from_redis_py) == [0, 10]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (12, 12),
        (1.9, 1),  # redis-py gives some counters as floats
        ("6379", 6379),
        (" -1 ", -1),
        ("+5", 5),
        ("", None),
        (None, None),
        ("1.5", None),
        ("yes", None),
        ("+-5", None),
        ("²", None),
        (True, None),
    ],
)
def test_as_int_reads_integers_and_nothing_else(value, expected):
    assert as_int(value) == expected


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        ({"role": "slave"}, "replica"),
        ({"role": "master"}, "master"),
        ({}, "unknown"),
        (parse_info(RAW), "master"),
    ],
)
def test_replication_role_names_replicas_replica(info, expected):
    assert replication_role(info) == expected


def test_replicas_reads_slave_lines_of_either_client_in_order():
    raw = parse_info(
        b"# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"
        b"slave1:ip=127.0.0.1,port=6381,state=wait_bgsave,offset=0,lag=1\r\n"
        b"slave0:ip=127.0.0.1,port=6380,state=online,offset=42,lag=0\r\n"
    )
    found = replicas(raw)
    assert [(r["port"], r["state"], as_int(r["lag"])) for r in found] == [
        ("6380", "online", 0),
        ("6381", "wait_bgsave", 1),
    ]
    parsed = {"role": "master", "slave0": {"ip": "127.0.0.1", "port": 6380, "state": "online"}}
    assert replicas(parsed) == [{"ip": "127.0.0.1", "port": 6380, "state": "online"}]
    assert replicas({"role": "slave", "slave_read_only": 1}) == []
