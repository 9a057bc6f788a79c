"""Digest 100,000 captured slowlog entries: CPU seconds of `digest_entries` (target < 1 s).

Generates a deterministic capture file (JSON Lines, one SLOWLOG entry per line, as collected
from 20 hosts: command arguments, client address and name, duration, server time), loads it,
then times the digest alone with `time.process_time`, alternating with a naive baseline that
computes the same figures the obvious way: one digest per host plus one for the fleet (so
every entry is fingerprinted twice), percentiles with `statistics.quantiles`, clients and
histograms with Counters. Both use the same fingerprints (`fingerprint_args`), so the ratio
measures the digest's structure, not the key normaliser. Medians and the median ratio are
printed.
Run: .venv/bin/python bench/slowlog_digest.py [--entries 100000] [--rounds 5] [--file PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from pathlib import Path

from redisops.slowlog.collect import SlowlogEntry
from redisops.slowlog.digest import HISTOGRAM_EDGES_US, digest_entries
from redisops.slowlog.fingerprint import fingerprint_args

SEED = 20261123
HOSTS = 20
START = 1_795_000_000


def workload(rng: random.Random) -> list[str]:
    """One command as a production slowlog would hold it (ids, UUIDs, hashes in keys)."""
    user = rng.randint(1, 2_000_000)
    uuid = "-".join(f"{rng.getrandbits(4 * n):0{n}x}" for n in (8, 4, 4, 4, 12))
    shapes = [
        ["GET", f"user:{user}:profile"],
        ["SET", f"session:{uuid}", "x" * 40, "EX", "3600"],
        ["HGETALL", f"cart:{user}"],
        ["HSET", f"cart:{user}", f"sku:{rng.randint(1, 90000)}", "1"],
        ["LRANGE", f"feed:{user}", "0", "-1"],
        ["LRANGE", f"feed:{user}", "0", "49"],
        ["ZADD", f"leaderboard:{rng.randint(1, 50)}", str(rng.random()), f"user:{user}"],
        ["ZRANGE", f"leaderboard:{rng.randint(1, 50)}", "0", "99", "WITHSCORES"],
        ["SMEMBERS", f"tags:{rng.getrandbits(64):016x}"],
        ["MGET", *(f"price:{rng.randint(1, 99999)}" for _ in range(rng.randint(2, 12)))],
        ["DEL", f"tmp:{uuid}", f"tmp:{uuid}:lock"],
        ["EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", f"rate:{user}", "100"],
        ["KEYS", "user:*"],
        ["CLIENT", "LIST"],
        ["CONFIG", "GET", "maxmemory"],
        ["XADD", f"events:{rng.randint(1, 8)}", "*", "user", str(user)],
        ["INCRBY", f"stats:2026-11-{rng.randint(10, 28)}:hits", "1"],
        ["AUTH", "(redacted)"],
    ]
    weights = [30, 20, 8, 8, 3, 6, 6, 5, 3, 4, 3, 4, 1, 1, 1, 3, 4, 1]
    return rng.choices(shapes, weights)[0]


def generate(path: Path, entries: int) -> None:
    rng = random.Random(SEED)
    clients = [(f"10.0.{i // 250}.{i % 250 + 1}", f"app-{i % 7}") for i in range(60)]
    with path.open("w", encoding="utf-8") as stream:
        for index in range(entries):
            address, name = rng.choice(clients)
            record = {
                "host": f"cache-{index % HOSTS + 1}",
                "id": index // HOSTS,
                "time": START + index // 50,
                "duration_us": int(rng.lognormvariate(7, 1.3)),
                "args": workload(rng),
                "client_address": f"{address}:{rng.randint(30000, 60000)}",
                "client_name": name,
            }
            stream.write(json.dumps(record) + "\n")


def load(path: Path) -> dict[str, list[SlowlogEntry]]:
    by_host: dict[str, list[SlowlogEntry]] = defaultdict(list)
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            record = json.loads(line)
            by_host[record["host"]].append(
                SlowlogEntry(
                    id=record["id"],
                    started=record["time"],
                    duration_us=record["duration_us"],
                    args=tuple(arg.encode() for arg in record["args"]),
                    client_address=record["client_address"],
                    client_name=record["client_name"],
                )
            )
    return dict(by_host)


def naive_digest(by_host: dict[str, list[SlowlogEntry]]) -> list[tuple]:
    """The obvious version: the same outputs, one digest per host and one more for the fleet."""
    for entries in by_host.values():
        naive_group(entries)
    return naive_group([entry for entries in by_host.values() for entry in entries])


def naive_group(entries: list[SlowlogEntry]) -> list[tuple]:
    durations: dict[str, list[int]] = defaultdict(list)
    clients: dict[str, Counter] = defaultdict(Counter)
    client_time: dict[str, Counter] = defaultdict(Counter)
    seen: dict[str, list[int]] = defaultdict(list)
    for entry in entries:
        fingerprint = fingerprint_args(entry.args).fingerprint
        client = (entry.client_address.rsplit(":", 1)[0], entry.client_name)
        durations[fingerprint].append(entry.duration_us)
        clients[fingerprint][client] += 1
        client_time[fingerprint][client] += entry.duration_us
        seen[fingerprint].append(entry.started)
    rows = []
    for fingerprint, values in durations.items():
        cuts = statistics.quantiles(values, n=20) if len(values) > 1 else values * 19
        Counter(bisect_right(HISTOGRAM_EDGES_US, value) for value in values)  # histogram
        client_time[fingerprint].most_common(3)
        times = seen[fingerprint]
        p95, p50 = int(cuts[18]), statistics.median(values)
        rows.append((fingerprint, sum(values), p95, p50, max(values), min(times), max(times)))
    return sorted(rows, key=lambda row: -row[1])


def cpu_seconds(function, *args, **kwargs) -> tuple[float, object]:
    started = time.process_time()
    result = function(*args, **kwargs)
    return time.process_time() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--file", type=Path, help="capture file to write and read (else a temp)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        path = args.file or Path(work) / "slowlog-capture.jsonl"
        generate(path, args.entries)
        load_seconds, by_host = cpu_seconds(load, path)
        ours, theirs, ratios = [], [], []
        for _ in range(args.rounds):
            mine, digest = cpu_seconds(digest_entries, by_host, top=20)
            naive, _ = cpu_seconds(naive_digest, by_host)
            ours.append(mine)
            theirs.append(naive)
            ratios.append(mine / naive)

    total = sum(len(entries) for entries in by_host.values())
    print(f"entries: {total} from {len(by_host)} hosts, {digest.distinct} fingerprints; "
          f"rounds: {args.rounds}")  # fmt: skip
    print(f"load capture file   {load_seconds:.2f} s CPU (not part of the digest)")
    print(f"naive digest        median {statistics.median(theirs):.3f} s CPU")
    print(f"redisops digest     median {statistics.median(ours):.3f} s CPU (target < 1 s)")
    print(f"median ratio (redisops / naive): {statistics.median(ratios):.2f}")
    print(f"top: {digest.fingerprints[0].fingerprint} ({digest.fingerprints[0].count} calls)")


if __name__ == "__main__":
    main()
