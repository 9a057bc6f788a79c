"""The seeded dataset of the memory benchmarks: N keys of mixed types, loaded with redis-cli --pipe.

Composition per 100 keys: 40 small strings, 20 strings with a TTL, 20 hashes (5-10 fields),
8 lists (10 items), 6 sets (8 members), 6 sorted sets (10 members); plus 4 big keys (a hash of
100,000 fields, a list of 100,000 items, a sorted set of 50,000 members, a 5 MB string).
Deterministic for a given seed. Used by bench/memory_report.py; also runnable on its own:
    .venv/bin/python bench/memory_dataset.py --port 6379 --keys 1000000
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import uuid


def _command(*parts: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def dataset_commands(keys: int, seed: int = 7) -> bytes:
    """RESP for exactly `keys` keys (the 4 big keys included)."""
    rng = random.Random(seed)
    out: list[bytes] = []
    small = keys - 4
    for index in range(small):
        slot = index % 100
        ident = 100000 + index
        if slot < 40:
            out.append(_command("SET", f"user:{ident}:name", f"name-{rng.randrange(10**6)}"))
        elif slot < 60:
            token = uuid.UUID(int=rng.getrandbits(128))
            out.append(_command("SET", f"session:{token}", "x" * rng.randrange(20, 200),
                                "EX", rng.randrange(60, 7 * 86400)))  # fmt: skip
        elif slot < 80:
            fields: list[bytes | str | int] = []
            for field in range(rng.randrange(5, 11)):
                fields += [f"f{field}", rng.randrange(10**9)]
            out.append(_command("HSET", f"user:{ident}:profile", *fields))
        elif slot < 88:
            out.append(_command("RPUSH", f"queue:feed:{ident}", *[f"item-{i}" for i in range(10)]))
        elif slot < 94:
            out.append(
                _command("SADD", f"tags:{ident}", *[f"t{rng.randrange(50)}" for _ in range(8)])
            )
        else:
            members: list[bytes | str | int] = []
            for member in range(10):
                members += [rng.randrange(1000), f"player-{member}"]
            out.append(_command("ZADD", f"leaderboard:{ident}", *members))
    for start in range(0, 100_000, 1000):
        fields = []
        for field in range(start, start + 1000):
            fields += [f"field-{field}", field]
        out.append(_command("HSET", "big:hash", *fields))
        out.append(
            _command("RPUSH", "big:list", *[f"entry-{i}" for i in range(start, start + 1000)])
        )
    for start in range(0, 50_000, 1000):
        members = []
        for member in range(start, start + 1000):
            members += [member, f"member-{member}"]
        out.append(_command("ZADD", "big:zset", *members))
    out.append(_command("SET", "big:string", b"s" * (5 * 1024 * 1024)))
    return b"".join(out)


def load_dataset(port: int, keys: int, seed: int = 7, password: str | None = None) -> None:
    """Load the dataset into the server on 127.0.0.1:`port` (db 0) with redis-cli --pipe."""
    env = {**os.environ, "REDISCLI_AUTH": password} if password else None
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
        input=dataset_commands(keys, seed),
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    load_dataset(args.port, args.keys, args.seed)


if __name__ == "__main__":
    main()
