"""`snapshot take` over 50 local redis-server instances, one frozen (SIGSTOP).

Each instance has a full slowlog (128 entries of ordinary commands with 100-byte values), some
keys and a few idle clients, so the archive holds what a real one does. The fan-out should make
the run cost about one --timeout (the frozen host's) plus the slowest healthy host, not the sum
over hosts. The anchor is the script an SRE would otherwise run: per host, under
`timeout T`, redis-cli for each item into files, then one `tar --zstd` of them (sequential).
Runs alternate; medians are printed, with the archive's size per host.
Run: .venv/bin/python bench/snapshot_take.py [--instances 50] [--frozen 1] [--timeout 2]
     [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from local_servers import start_redis_servers, stop_redis_servers

ITEMS = (
    "info all", "config get *", "slowlog get -1", "latency latest", "latency histogram",
    "memory stats", "memory doctor", "client list", "acl list",
)  # fmt: skip
IDLE_CLIENTS = 5


def fill(port: int) -> list:
    """A full slowlog, 1,000 keys and a few idle clients on one instance; returns the clients."""
    import redis

    client = redis.Redis(port=port)
    client.config_set("slowlog-log-slower-than", 0)
    pipe = client.pipeline(transaction=False)
    for i in range(1000):
        pipe.set(f"user:{i}:profile", "x" * 100)
        if i % 4 == 0:
            pipe.hset(f"session:{i}", mapping={"a": "1", "b": "x" * 100})
            pipe.lrange(f"queue:{i % 7}", 0, -1)
    pipe.execute()
    client.config_set("slowlog-log-slower-than", 10000)
    idle = [redis.Redis(port=port, client_name=f"app-{n}") for n in range(IDLE_CLIENTS)]
    for other in idle:
        other.ping()
    return [client, *idle]


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def anchor_script(ports: list[int], timeout: float, out: Path) -> str:
    lines = []
    for port in ports:
        folder = out / str(port)
        calls = "; ".join(
            f"redis-cli -p {port} {item} > {folder}/{item.replace(' ', '-').replace('*', 'all')}"
            for item in ITEMS
        )
        lines.append(f"mkdir -p {folder}; timeout {timeout} sh -c {shlex.quote(calls)}")
    lines.append(f"tar --zstd -cf {out}.tar.zst -C {out} .")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--frozen", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from redisops.snapshot.archive import load_snapshot

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        folder = Path(work)
        servers = start_redis_servers(folder, args.instances)
        ports = [port for _, port in servers]
        clients = []
        try:
            for port in ports:
                clients += fill(port)
            step = len(servers) // args.frozen if args.frozen else 1
            for process, _ in servers[::step][: args.frozen]:
                os.kill(process.pid, signal.SIGSTOP)
            inventory = folder / "inventory.yaml"
            lines = ["all:", "  vars: {connection: local}", "  hosts:"]
            lines += [f"    r{i}: {{host: 127.0.0.1, port: {p}}}" for i, p in enumerate(ports)]
            inventory.write_text("\n".join(lines) + "\n")
            dest = folder / "archives"
            dest.mkdir()
            redisops = [sys.executable, "-m", "redisops", "-i", str(inventory),
                        "--timeout", str(args.timeout), "--parallel", "16",
                        "-o", "json", "snapshot", "take", "--dest", str(dest)]  # fmt: skip
            ours, theirs = [], []
            for round_ in range(args.rounds):
                script = anchor_script(ports, args.timeout, folder / f"anchor-{round_}")
                theirs.append(timed(["sh", "-c", script]))
                ours.append(timed(redisops))
            archives = sorted(dest.glob("*.tar.zst"))
            snapshot = load_snapshot(archives[-1])
            alone = dest / "alone"
            alone.mkdir()
            subprocess.run(
                [*redisops[:-1], str(alone), "-l", "r1"], capture_output=True, check=True
            )
            (one,) = alone.glob("*.tar.zst")
            one_size = one.stat().st_size
            anchor_size = (folder / f"anchor-{args.rounds - 1}.tar.zst").stat().st_size
            size = archives[-1].stat().st_size
        finally:
            for process, _ in servers:
                os.kill(process.pid, signal.SIGCONT)
            for client in clients:
                client.close()
            stop_redis_servers(servers)

    healthy = [h.record for h in snapshot.hosts if h.record.ok]
    frozen = [h.record for h in snapshot.hosts if not h.record.ok]
    per_host = [sum(i.bytes for i in record.items) for record in healthy]
    print(f"instances: {args.instances} ({args.frozen} frozen), timeout {args.timeout:g}s, "
          f"rounds: {args.rounds}, --parallel 16")  # fmt: skip
    print(f"redis-cli script     median {statistics.median(theirs):.2f} s")
    print(f"redisops take        median {statistics.median(ours):.2f} s "
          f"({statistics.median(ours) / args.timeout:.2f} x timeout)")  # fmt: skip
    print(f"inside the last take: capture {snapshot.manifest.seconds:.2f} s; "
          f"slowest healthy host {max(r.seconds for r in healthy):.3f} s; "
          f"frozen host {max((r.seconds for r in frozen), default=0):.2f} s; "
          f"sum over hosts {sum(r.seconds for r in snapshot.manifest.hosts):.2f} s")  # fmt: skip
    print(f"archive {size / 1024:.0f} KiB for {len(snapshot.hosts)} hosts: "
          f"{size / len(snapshot.hosts) / 1024:.1f} KiB per host compressed; "
          f"unpacked per healthy host median {statistics.median(per_host) / 1024:.0f} KiB, "
          f"max {max(per_host) / 1024:.0f} KiB (redis-cli script's archive: "
          f"{anchor_size / 1024:.0f} KiB)")  # fmt: skip
    print(f"archive of one host alone (-l r1): {one_size / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
