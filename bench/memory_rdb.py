"""`redisops memory rdb` against `redis-check-rdb` on the RDB of the same 1,000,000 keys.

Target (issue 9): redisops' median time <= 4x redis-check-rdb's. redis-check-rdb (the C
reference reader) only validates the file; redisops also computes the full report (patterns,
types, TTL buckets, top 20 keys with element counts, `-o json`) and checks the CRC64. Both
are fresh processes on the same file, alternating; peak RSS by GNU time. Every redisops run
is checked to have read exactly the dataset's key count.

It also measures the memory model's error: each key's estimate against the live server's
`MEMORY USAGE key SAMPLES 0` (skip with --no-model-error; that part takes a minute).
The dataset is bench/memory_dataset.py's (seeded, deterministic).
Run: .venv/bin/python bench/memory_rdb.py [--keys 1000000] [--rounds 5] [--no-model-error]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_servers import start_redis_servers, stop_redis_servers
from memory_dataset import load_dataset

from redisops.datafile import raw_chunks
from redisops.rdb.reader import RdbReader


def timed(argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in KiB (GNU time's %M) and stdout of one run."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True, check=True
    )
    elapsed = time.perf_counter() - started
    return elapsed, int(done.stderr.strip().splitlines()[-1]), done.stdout


def model_error(port: int, rdb: Path) -> dict[str, float]:
    """Estimate vs MEMORY USAGE SAMPLES 0 of every key (streams excluded: approximated)."""
    client = redis.Redis(port=port)
    estimated, actual, errors = 0, 0, []
    batch: list[tuple[bytes, int]] = []

    def flush() -> None:
        nonlocal estimated, actual
        pipe = client.pipeline(transaction=False)
        for key, _ in batch:
            pipe.memory_usage(key, samples=0)
        for (_, estimate), real in zip(batch, pipe.execute(), strict=True):
            estimated += estimate
            actual += real
            errors.append(abs(estimate - real) / real)
        batch.clear()

    for row in RdbReader(raw_chunks(rdb, "none")).records():
        if row.type != "stream":
            batch.append((row.key, row.bytes))
        if len(batch) >= 1000:
            flush()
    flush()
    errors.sort()
    return {
        "total_error_pct": 100 * (estimated - actual) / actual,
        "median_key_error_pct": 100 * statistics.median(errors),
        "p99_key_error_pct": 100 * errors[int(len(errors) * 0.99)],
        "worst_key_error_pct": 100 * errors[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-model-error", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        folder = Path(work)
        servers = start_redis_servers(folder, 1)
        port = servers[0][1]
        rdb = folder / "bench.rdb"
        try:
            load_dataset(port, args.keys)
            subprocess.run(["redis-cli", "-p", str(port), "--rdb", str(rdb)],
                           check=True, capture_output=True)  # fmt: skip
            model = None if args.no_model_error else model_error(port, rdb)
        finally:
            stop_redis_servers(servers)

        size = rdb.stat().st_size
        check = ["redis-check-rdb", str(rdb)]
        ours = [sys.executable, "-m", "redisops", "-o", "json", "memory", "rdb", str(rdb)]
        theirs, mine, ratios, rss_theirs, rss_ours = [], [], [], [], []
        for _ in range(args.rounds):
            anchor, anchor_rss, _ = timed(check)
            elapsed, elapsed_rss, out = timed(ours)
            keys = json.loads(out)["results"][0]["data"]["keys"]
            if keys != args.keys:
                raise SystemExit(f"redisops read {keys} keys, the dataset has {args.keys}")
            theirs.append(anchor)
            mine.append(elapsed)
            ratios.append(elapsed / anchor)
            rss_theirs.append(anchor_rss)
            rss_ours.append(elapsed_rss)

    print(f"keys: {args.keys:,}, rounds: {args.rounds}, RDB {size:,} bytes")
    print(f"redis-check-rdb          median {statistics.median(theirs):.2f} s, "
          f"peak RSS {max(rss_theirs) / 1024:.0f} MiB")  # fmt: skip
    print(f"redisops memory rdb      median {statistics.median(mine):.2f} s, "
          f"peak RSS {max(rss_ours) / 1024:.0f} MiB")  # fmt: skip
    print(f"ratios: {' '.join(f'{ratio:.2f}' for ratio in ratios)}")
    print(f"median ratio (redisops / redis-check-rdb): {statistics.median(ratios):.2f}"
          "  (target <= 4)")  # fmt: skip
    if model is not None:
        print("memory model vs MEMORY USAGE SAMPLES 0: " +
              ", ".join(f"{name} {value:+.2f}" for name, value in model.items()))  # fmt: skip


if __name__ == "__main__":
    main()
