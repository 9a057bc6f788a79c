"""`redisops memory report` against `redis-cli --memkeys` on the same 1,000,000-key server.

Target (issue 3): redisops' median time <= 0.8x redis-cli's, with patterns, types, TTL buckets
and top keys computed, and client memory bounded (peak RSS printed for both). Runs alternate;
the dataset is bench/memory_dataset.py's (seeded, deterministic).
Run: .venv/bin/python bench/memory_report.py [--keys 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_servers import start_redis_servers, stop_redis_servers
from memory_dataset import load_dataset


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS in KiB (GNU time's %M) of one run."""
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, int(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        servers = start_redis_servers(Path(work), 1)
        port = servers[0][1]
        try:
            load_dataset(port, args.keys)
            inventory = Path(work) / "inventory.yaml"
            inventory.write_text(
                f"all:\n  hosts:\n    bench: {{host: 127.0.0.1, port: {port}, connection: local}}\n"
            )
            memkeys = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--memkeys"]
            report = [sys.executable, "-m", "redisops", "-i", str(inventory), "--timeout", "30",
                      "-o", "json", "memory", "report"]  # fmt: skip
            theirs, ours, ratios, rss_theirs, rss_ours = [], [], [], [], []
            for _ in range(args.rounds):
                anchor, anchor_rss = timed(memkeys)
                mine, mine_rss = timed(report)
                theirs.append(anchor)
                ours.append(mine)
                ratios.append(mine / anchor)
                rss_theirs.append(anchor_rss)
                rss_ours.append(mine_rss)
        finally:
            stop_redis_servers(servers)

    print(f"keys: {args.keys:,}, rounds: {args.rounds}")
    print(f"redis-cli --memkeys      median {statistics.median(theirs):.2f} s, "
          f"peak RSS {max(rss_theirs) / 1024:.0f} MiB")  # fmt: skip
    print(f"redisops memory report   median {statistics.median(ours):.2f} s, "
          f"peak RSS {max(rss_ours) / 1024:.0f} MiB")  # fmt: skip
    print(f"median ratio (redisops / redis-cli): {statistics.median(ratios):.2f}  (target <= 0.8)")


if __name__ == "__main__":
    main()
