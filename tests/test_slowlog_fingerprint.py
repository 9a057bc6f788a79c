"""Fingerprints (command, subcommand, key pattern) and the redaction of --show-args samples."""

from __future__ import annotations

import pytest

from redisops.slowlog.fingerprint import (
    ASYNC,
    REDACTED,
    WHOLE_RANGE,
    fingerprint_args,
    redacted_args,
)


def args(*words: str) -> tuple[bytes, ...]:
    return tuple(word.encode() for word in words)


@pytest.mark.parametrize(
    ("words", "fingerprint", "command", "key_pattern"),
    [
        (("SET", "user:1234:profile", "v"), "SET user:{id}:profile", "SET", "user:{id}:profile"),
        (("get", "user:99:profile"), "GET user:{id}:profile", "GET", "user:{id}:profile"),
        (("CLIENT", "LIST"), "CLIENT LIST", "CLIENT LIST", ""),
        (("config", "get", "maxmemory"), "CONFIG GET", "CONFIG GET", ""),
        (("OBJECT", "ENCODING", "cart:7"), "OBJECT ENCODING cart:{id}", "OBJECT ENCODING",
         "cart:{id}"),
        (("HGETALL", "session:4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b"), "HGETALL session:{uuid}",
         "HGETALL", "session:{uuid}"),
        (("MGET", "price:1", "price:2", "stock:3"), "MGET price:{id} stock:{id}", "MGET",
         "price:{id} stock:{id}"),
        (("MSET", "a:1", "x", "a:2", "y"), "MSET a:{id}", "MSET", "a:{id}"),
        (("DEL", "a:1", "b:1", "c:1", "d:1"), "DEL a:{id} b:{id} c:{id} …", "DEL",
         "a:{id} b:{id} c:{id} …"),
        (("BLPOP", "queue:1", "queue:2", "0"), "BLPOP queue:{id}", "BLPOP", "queue:{id}"),
        (("ZUNIONSTORE", "out:1", "2", "in:1", "in:2", "WEIGHTS", "1", "2"),
         "ZUNIONSTORE out:{id} in:{id}", "ZUNIONSTORE", "out:{id} in:{id}"),
        (("XREADGROUP", "GROUP", "g", "c", "STREAMS", "ev:1", "ev:2", ">", ">"),
         "XREADGROUP ev:{id}", "XREADGROUP", "ev:{id}"),
        (("EVAL", "return 1", "1", "rate:5"), "EVAL e0e1f9fa rate:{id}", "EVAL e0e1f9fa",
         "rate:{id}"),
        (("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", "rate:6"),
         "EVALSHA e0e1f9fa rate:{id}", "EVALSHA e0e1f9fa", "rate:{id}"),
        (("FCALL", "myfn", "0"), "FCALL myfn", "FCALL myfn", ""),
        (("KEYS", "user:*"), "KEYS user:*", "KEYS", "user:*"),
        (("FLUSHALL",), "FLUSHALL", "FLUSHALL", ""),
        (("PING",), "PING", "PING", ""),
        (("JSON.GET", "doc:1"), "JSON.GET", "JSON.GET", ""),  # unknown: no key guessed
        (("not a command", "x"), "?", "?", ""),
        ((), "?", "?", ""),
    ],
)  # fmt: skip
def test_fingerprints(words, fingerprint, command, key_pattern):
    shape = fingerprint_args(args(*words))
    assert (shape.fingerprint, shape.command, shape.key_pattern) == (
        fingerprint,
        command,
        key_pattern,
    )


def test_values_never_enter_a_fingerprint():
    shape = fingerprint_args(args("SET", "token:1", "hunter2-secret-value", "EX", "60"))
    assert "hunter2" not in repr(shape)
    assert fingerprint_args(args("CLIENT", "SETNAME", "payments-7")).fingerprint == "CLIENT SETNAME"


def test_flags_mark_whole_ranges_and_async_flushes():
    assert fingerprint_args(args("LRANGE", "feed:1", "0", "-1")).flag == WHOLE_RANGE
    assert fingerprint_args(args("LRANGE", "feed:1", "0", "9")).flag is None
    assert fingerprint_args(args("FLUSHALL", "async")).flag == ASYNC
    assert fingerprint_args(args("FLUSHDB")).flag is None


def test_server_truncation_is_understood():
    # Redis keeps 31 arguments and says how many it dropped in a 32nd.
    many = args("RPUSH", "list:7", *map(str, range(29)), "... (11 more arguments)")
    assert fingerprint_args(many).fingerprint == "RPUSH list:{id}"
    long_key = b"blob:" + b"9" * 123 + b"... (50 more bytes)"
    assert fingerprint_args((b"GET", long_key)).key_pattern == "blob:{id}…"
    assert redacted_args(many)[-1] == "… (26 more arguments)"  # 15 not shown + 11 Redis cut


@pytest.mark.parametrize(
    ("words", "shown"),
    [
        (("AUTH", "s3cret"), ("AUTH", REDACTED)),
        (("AUTH", "alice", "s3cret"), ("AUTH", REDACTED, REDACTED)),
        (("HELLO", "3", "AUTH", "alice", "s3cret", "SETNAME", "app"),
         ("HELLO", "3", "AUTH", REDACTED, REDACTED, "SETNAME", "app")),
        (("MIGRATE", "h", "6379", "", "0", "5000", "AUTH", "s3cret", "KEYS", "k:1"),
         ("MIGRATE", "h", "6379", "", "0", "5000", "AUTH", REDACTED, "KEYS", "k:1")),
        (("MIGRATE", "h", "6379", "k:1", "0", "5000", "AUTH2", "alice", "s3cret"),
         ("MIGRATE", "h", "6379", "k:1", "0", "5000", "AUTH2", REDACTED, REDACTED)),
        (("CONFIG", "SET", "maxmemory", "1gb", "requirepass", "s3cret"),
         ("CONFIG", "SET", "maxmemory", "1gb", "requirepass", REDACTED)),
        (("config", "set", "MasterAuth", "s3cret"), ("config", "set", "MasterAuth", REDACTED)),
        (("ACL", "SETUSER", "bob", "on", ">s3cret", "~*"),
         ("ACL", "SETUSER", "bob", "on", REDACTED, "~*")),
        (("SENTINEL", "SET", "lab", "auth-pass", "s3cret"),
         ("SENTINEL", "SET", "lab", "auth-pass", REDACTED)),
        (("SET", "user:1", "visible"), ("SET", "user:1", "visible")),
    ],
)  # fmt: skip
def test_credentials_are_always_redacted_in_samples(words, shown):
    assert redacted_args(args(*words)) == shown


def test_samples_are_clipped():
    sample = redacted_args(args("SET", "k", "x" * 500, *map(str, range(20))))
    assert len(sample) == 17
    assert sample[2] == "x" * 63 + "…"
    assert sample[-1] == "… (7 more arguments)"
