"""`inventory check` over 50 local redis-server instances, some frozen (SIGSTOP).

Fan-out should make the run cost about one timeout (the frozen host's), not the sum over
hosts. The anchor is what an SRE would otherwise script: a loop of
`timeout T redis-cli -p PORT info` over the same instances (sequential, as such loops are).
Runs alternate; medians and the median ratio are printed.
Run: .venv/bin/python bench/check_fanout.py [--instances 50] [--frozen 1] [--timeout 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_servers import start_redis_servers, stop_redis_servers


def timed(argv: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--frozen", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        folder = Path(work)
        servers = start_redis_servers(folder, args.instances)
        ports = [port for _, port in servers]
        try:
            step = len(servers) // args.frozen if args.frozen else 1
            for process, _ in servers[::step][: args.frozen]:
                os.kill(process.pid, signal.SIGSTOP)

            inventory = folder / "inventory.yaml"
            lines = ["all:", "  vars: {connection: local}", "  hosts:"]
            lines += [f"    r{i}: {{host: 127.0.0.1, port: {p}}}" for i, p in enumerate(ports)]
            inventory.write_text("\n".join(lines) + "\n")

            redisops = [sys.executable, "-m", "redisops", "-i", str(inventory),
                        "--timeout", str(args.timeout), "--parallel", "64",
                        "-o", "json", "inventory", "check"]  # fmt: skip
            loop = "; ".join(
                f"timeout {args.timeout} redis-cli -p {p} info >/dev/null" for p in ports
            )
            ours, theirs, ratios = [], [], []
            for _ in range(args.rounds):
                anchor = timed(["sh", "-c", loop])
                mine = timed(redisops)
                theirs.append(anchor)
                ours.append(mine)
                ratios.append(mine / anchor)
        finally:
            for process, _ in servers:
                os.kill(process.pid, signal.SIGCONT)
            stop_redis_servers(servers)

    print(f"instances: {args.instances} ({args.frozen} frozen), timeout {args.timeout:g}s, "
          f"rounds: {args.rounds}")  # fmt: skip
    print(f"redis-cli loop      median {statistics.median(theirs):.2f} s")
    print(f"redisops check      median {statistics.median(ours):.2f} s")
    print(f"median ratio (redisops / redis-cli loop): {statistics.median(ratios):.2f}")
    print(f"redisops time / timeout: {statistics.median(ours) / args.timeout:.2f}")


if __name__ == "__main__":
    main()
