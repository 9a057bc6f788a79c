"""The key normaliser shared by memory reports and slowlog fingerprints."""

from __future__ import annotations

import pytest

from redisops.keypatterns import PatternCache, key_pattern, key_text


@pytest.mark.parametrize(
    ("key", "pattern"),
    [
        ("user:1234:profile", "user:{id}:profile"),
        (b"user:1234:profile", "user:{id}:profile"),
        ("session:4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b", "session:{uuid}"),
        ("session:4b6f9a2e1c3d4e5f8a9b0c1d2e3f4a5b", "session:{hex}"),
        ("cache:page:5f2b9c1e", "cache:page:{hex}"),
        ("cache:page:deadbeef", "cache:page:deadbeef"),  # letters only: a word, kept
        ("price:-12.5", "price:{num}"),
        ("stats:2024-06-07", "stats:{date}"),
        ("stats:2024-06-07T10:00", "stats:{date}:{id}"),  # ':' splits; honest, not clever
        ("ratelimit:10.0.0.1", "ratelimit:{ip}"),
        ("login:ann@example.com", "login:{email}"),
        ("api:tok:AbCdEfGh12345678IjKlMnOp", "api:tok:{token}"),
        ("queue:emails", "queue:emails"),
        ("plain", "plain"),
        ("", ""),
        ("a::b", "a::b"),
        ("v2:items", "v2:items"),
        (b"bin:\xff\xfe:1", "bin:\\xff\\xfe:{id}"),
    ],
)
def test_auto_patterns(key, pattern):
    assert key_pattern(key) == pattern


@pytest.mark.parametrize(
    ("key", "depth", "pattern"),
    [
        ("user:1234:profile", 1, "user:*"),
        ("user:1234:profile", 2, "user:1234:*"),
        ("user:1234:profile", 3, "user:1234:profile"),
        ("counter", 1, "counter"),
    ],
)
def test_depth_patterns(key, depth, pattern):
    assert key_pattern(key, depth=depth) == pattern


def test_other_separator():
    assert key_pattern("user/42/avatar", separator="/") == "user/{id}/avatar"
    assert key_pattern("user.42.avatar", separator=".", depth=1) == "user.*"


def test_key_text_escapes_bytes_that_are_not_utf8():
    raw = b"k:\x00\xff\xc3\xa9"
    text = key_text(raw)
    assert text == "k:\\x00\\xff\u00e9"
    assert key_text("already text") == "already text"


# Keys that share a digit skeleton with each other but not always a pattern.
SKELETON_KEYS = [
    *(f"user:{n}:profile" for n in (1, 22, 333, 9999)),
    "v1:items",
    "v2:items",
    "stats:2024-06-07",
    "stats:2024-16-07",
    "price:1.5",
    "price:1e5",
    "cache:page:5f2b9c1e",
    "cache:page:1f2b9c1e",
    "ratelimit:10.0.0.1",
    "ratelimit:10.0.0.9",
    "k:\x01:5",
    "k:\x02:5",
    "0",
    "10",
    "100",
    "1:0:0",
    "session:4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
    "session:0b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b:cart",
    "session:4B6F9A2E-1C3D-4E5F-8A9B-0C1D2E3F4A5B",
    "session:x4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
    "session.4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b.4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5c",
    "4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b/1",
    "x-4b6f9a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b",
]


@pytest.mark.parametrize("separator", [":", ".", "/", "-", "0", "10", ""])
@pytest.mark.parametrize("depth", [None, 1, 2])
def test_pattern_cache_gives_what_key_pattern_gives(separator, depth):
    cache = PatternCache(separator, depth, size=4)  # small: the clearing is exercised too
    for _ in range(2):  # the second pass answers from the cache where it can
        for text in SKELETON_KEYS:
            for key in (text, text.encode()):
                expected = key_pattern(key, separator=separator, depth=depth)
                assert cache(key) == expected, (key, separator, depth)
