"""redaction.first_line: the one way an exception's message reaches a row or a note, redacted
(tuning's two copies printed Redis's reply as it came, secrets included)."""

from __future__ import annotations

import secrets

import redis

from redisops.redaction import first_line, remember_secret


def test_first_line_redacts_known_secrets_and_keeps_one_line():
    secret = f"s3cret-{secrets.token_hex(8)}"
    remember_secret(secret)
    exc = redis.ResponseError(f"ERR Invalid argument '{secret}' for CONFIG SET\nsecond line")
    assert first_line(exc) == "ERR Invalid argument '***' for CONFIG SET"


def test_first_line_of_an_empty_message():
    assert first_line(redis.ResponseError("")) == "ResponseError"
    assert first_line(redis.ResponseError("  \n "), "refused") == "refused"
    assert first_line(ValueError(), "") == ""


def test_tuning_and_memory_use_the_redacting_helper():
    """No concern keeps a private copy that skips redaction."""
    from redisops.memory import summary
    from redisops.slowlog import keyspecs
    from redisops.tuning import apply, facts

    for module in (apply, facts, summary, keyspecs):
        assert module.first_line is first_line
        assert not hasattr(module, "_first_line")
