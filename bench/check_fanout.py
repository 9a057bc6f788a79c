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
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise SystemExit(f"redis-server on port {port} did not start")


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
        ports = [free_port() for _ in range(args.instances)]
        servers = [
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--dir",
                    work,
                    "--logfile",
                    str(folder / f"{port}.log"),
                ],
            )
            for port in ports
        ]
        try:
            deadline = time.monotonic() + 30
            for port in ports:
                wait_for_port(port, deadline)
            step = len(servers) // args.frozen if args.frozen else 1
            for server in servers[::step][: args.frozen]:
                os.kill(server.pid, signal.SIGSTOP)

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
            for server in servers:
                os.kill(server.pid, signal.SIGCONT)
                server.kill()
                server.wait()

    print(f"instances: {args.instances} ({args.frozen} frozen), timeout {args.timeout:g}s, "
          f"rounds: {args.rounds}")  # fmt: skip
    print(f"redis-cli loop      median {statistics.median(theirs):.2f} s")
    print(f"redisops check      median {statistics.median(ours):.2f} s")
    print(f"median ratio (redisops / redis-cli loop): {statistics.median(ratios):.2f}")
    print(f"redisops time / timeout: {statistics.median(ours) / args.timeout:.2f}")


if __name__ == "__main__":
    main()
