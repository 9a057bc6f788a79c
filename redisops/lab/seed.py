"""Sample data for the lab: N keys of mixed types in realistic key patterns, always the same.

The plan is a pure function of N (fixed random seed), so a test can rely on the exact key names,
types and values. Loading it is idempotent: each key is deleted, then written whole.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

SEED = 20240607
BATCH_KEYS = 100
TTL_RANGE = (3600, 86400)  # long enough never to expire while a test session runs

_WORDS = (
    "alpha", "bravo", "cargo", "delta", "echo", "fable", "gamma", "harbor", "index", "jolly",
    "kilo", "lunar", "metro", "nova", "orbit", "pixel", "quartz", "radar", "sierra", "tango",
    "ultra", "vector", "whisky", "xenon", "yankee", "zulu",
)  # fmt: skip
_QUEUES = ("emails", "webhooks", "thumbnails", "invoices", "exports", "notifications")
_STREAMS = ("orders", "signups", "payments", "audit")
_COUNTRIES = ("DE", "FR", "US", "BR", "IN", "JP", "NG", "SE")
_PLANS = ("free", "pro", "team", "enterprise")

# kind -> weight; session, cache and ratelimit keys carry a TTL (about a third of all keys).
_KINDS = {
    "profile": 15,
    "session": 12,
    "cache": 12,
    "ratelimit": 9,
    "counter": 10,
    "feature": 5,
    "queue": 9,
    "followers": 9,
    "tag": 4,
    "leaderboard": 10,
}


@dataclass(frozen=True)
class SeedKey:
    """One key to write: its Redis type, its value in redis-py terms, its TTL in seconds or None."""

    key: str
    type: str  # string | hash | list | set | zset | stream
    value: object
    ttl: int | None = None


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ttl(rng: random.Random) -> int:
    return rng.randint(*TTL_RANGE)


def _make(kind: str, n: int, rng: random.Random) -> SeedKey:
    """The n-th key (0-based) of `kind`; names embed n, so they never collide."""
    if kind == "profile":
        value = {
            "name": f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}",
            "email": f"user{1000 + n}@example.com",
            "country": rng.choice(_COUNTRIES),
            "plan": rng.choice(_PLANS),
            "logins": str(rng.randint(0, 5000)),
            "created_at": str(1_600_000_000 + rng.randint(0, 100_000_000)),
        }
        return SeedKey(f"user:{1000 + n}:profile", "hash", value)
    if kind == "session":
        body = {"user_id": rng.randint(1000, 9999), "csrf": f"{rng.getrandbits(64):016x}"}
        return SeedKey(f"session:{_uuid(rng)}", "string", json.dumps(body), _ttl(rng))
    if kind == "cache":
        # Rendered pages: 1-16 KB, every 8th up to 64 KB, for the memory report's top keys.
        size = rng.randint(32_768, 65_536) if n % 8 == 7 else rng.randint(1024, 16_384)
        page = f"<html><body><p>{_text(rng, size)}</p></body></html>"
        key = f"cache:page:{rng.getrandbits(64):016x}{n:04x}"
        return SeedKey(key, "string", page, _ttl(rng))
    if kind == "ratelimit":
        ip = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
        return SeedKey(f"ratelimit:{ip}", "string", str(rng.randint(1, 120)), _ttl(rng))
    if kind == "counter":
        return SeedKey(f"stats:page:{n}:views", "string", str(rng.randint(0, 10**7)))
    if kind == "feature":
        flag = {"enabled": rng.random() < 0.5, "rollout": rng.randint(0, 100)}
        return SeedKey(f"feature:{_WORDS[n % len(_WORDS)]}:{n}", "string", json.dumps(flag))
    if kind == "queue":
        jobs = [
            json.dumps({"job": _uuid(rng), "attempt": rng.randint(1, 3)})
            for _ in range(rng.randint(3, 40))
        ]
        name = _QUEUES[n % len(_QUEUES)]
        return SeedKey(f"queue:{name}:{n // len(_QUEUES)}", "list", jobs)
    if kind == "followers":
        members = sorted({str(rng.randint(1000, 99_999)) for _ in range(rng.randint(1, 60))})
        return SeedKey(f"user:{5000 + n}:followers", "set", members)
    if kind == "tag":
        members = sorted({f"post:{rng.randint(1, 10**6)}" for _ in range(rng.randint(1, 30))})
        return SeedKey(f"tag:{_WORDS[n % len(_WORDS)]}:{n}:posts", "set", members)
    if kind == "leaderboard":
        scores = {f"player:{rng.randint(1, 10**5)}": rng.randint(0, 10**6) for _ in range(50)}
        return SeedKey(f"leaderboard:{n}", "zset", scores)
    raise ValueError(f"unknown seed kind {kind!r}")


def _stream(n: int, rng: random.Random) -> SeedKey:
    name = _STREAMS[n % len(_STREAMS)]
    # Explicit entry IDs keep the stream identical from run to run.
    entries = [
        (
            f"{1_700_000_000_000 + i * 1500}-0",
            {"event": name[:-1], "id": _uuid(rng), "amount": str(rng.randint(1, 50_000))},
        )
        for i in range(rng.randint(20, 80))
    ]
    suffix = f":{n // len(_STREAMS)}" if n >= len(_STREAMS) else ""
    return SeedKey(f"events:{name}{suffix}", "stream", entries)


def plan_seed(count: int) -> list[SeedKey]:
    """Exactly `count` distinct keys, the same list for the same count."""
    rng = random.Random(SEED)
    streams = min(2, count // 50)
    keys = [_stream(n, rng) for n in range(streams)]
    kinds = list(_KINDS)
    weights = [_KINDS[k] for k in kinds]
    made = dict.fromkeys(kinds, 0)
    seen = {item.key for item in keys}
    while len(keys) < count:
        kind = rng.choices(kinds, weights)[0]
        item = _make(kind, made[kind], rng)
        made[kind] += 1
        if item.key not in seen:  # random UUIDs could in theory repeat; "exactly N" must hold
            seen.add(item.key)
            keys.append(item)
    return keys


def _write(pipe: redis.client.Pipeline, item: SeedKey) -> None:
    pipe.delete(item.key)
    value = item.value
    if item.type == "string":
        pipe.set(item.key, value)
    elif item.type == "hash":
        pipe.hset(item.key, mapping=value)
    elif item.type == "list":
        pipe.rpush(item.key, *value)
    elif item.type == "set":
        pipe.sadd(item.key, *value)
    elif item.type == "zset":
        pipe.zadd(item.key, value)
    elif item.type == "stream":
        for entry_id, fields in value:
            pipe.xadd(item.key, fields, id=entry_id)
    if item.ttl is not None:
        pipe.expire(item.key, item.ttl)


def load_seed(client: redis.Redis, count: int) -> int:
    """Write the `count` planned keys into the client's db, pipelined in batches; returns count."""
    plan = plan_seed(count)
    for start in range(0, len(plan), BATCH_KEYS):
        pipe = client.pipeline(transaction=False)
        for item in plan[start : start + BATCH_KEYS]:
            _write(pipe, item)
        pipe.execute()
    return len(plan)
