"""`cluster status` on a 6-node lab cluster against `redis-cli --cluster check` on the same.

The anchor is what an SRE runs today; redisops does more (reads every node's INFO and
CLUSTER INFO, counts keys per slot on masters, checks epochs, replicas and links). Runs
alternate; medians and the median ratio are printed. Two redisops figures: the command as a
user runs it (a new Python process: interpreter, imports, inventory, discovery, status), and
discovery + status alone in one warm process (what the command costs past start-up); and,
for scale, `redisops --version`: the start-up floor every redisops command pays.
Run it with `env -u PYTHONDONTWRITEBYTECODE` (after one warm-up run writes the `.pyc`
caches) for what an installed redisops costs; the sessions here compile every module anew.
The password reaches redis-cli through REDISCLI_AUTH, never its arguments.
Run: .venv/bin/python bench/cluster_status.py [--rounds 21] [--keys 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from redisops.cluster.status import cluster_status
from redisops.fleet.cluster import discover_clusters
from redisops.fleet.inventory import load_inventory
from redisops.lab import lab_down
from tests.plugins.lab import start_cluster_lab


def timed(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({done.returncode}): {done.stderr.decode()[:300]}")
    return elapsed


def in_process(inventory_path: str) -> float:
    started = time.perf_counter()
    inventory = load_inventory(inventory_path)
    discovery = discover_clusters(inventory.hosts, {"redis"}, timeout=5, parallel=16)
    status = cluster_status(discovery.clusters["redis"], timeout=5, parallel=16)
    elapsed = time.perf_counter() - started
    if not status.healthy:
        raise SystemExit(f"the lab cluster is unhealthy: {status.problems}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--keys", type=int, default=10000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        state = start_cluster_lab(Path(work) / "lab", seed_keys=args.keys)
        try:
            password = (Path(state.dir) / "secret").read_text().strip()
            env = {**os.environ, "REDISCLI_AUTH": password}
            first = state.processes[0].port
            anchor_argv = ["redis-cli", "--cluster", "check", f"127.0.0.1:{first}"]
            ours_argv = [sys.executable, "-m", "redisops", "-i", state.inventory_path,
                         "-o", "json", "cluster", "status"]  # fmt: skip
            deadline = time.monotonic() + 30
            while subprocess.run(ours_argv, capture_output=True, env=env).returncode != 0:
                if time.monotonic() > deadline:  # replicas report `loading` for a moment
                    raise SystemExit("the lab cluster did not become healthy in 30 s")
                time.sleep(0.2)
            floor_argv = [sys.executable, "-m", "redisops", "--version"]
            anchor, ours, warm, floor, ratios, warm_ratios = [], [], [], [], [], []
            for _ in range(args.rounds):
                theirs = timed(anchor_argv, env)
                mine = timed(ours_argv, env)
                inside = in_process(state.inventory_path)
                floor.append(timed(floor_argv, env))
                anchor.append(theirs)
                ours.append(mine)
                warm.append(inside)
                ratios.append(mine / theirs)
                warm_ratios.append(inside / theirs)
        finally:
            lab_down(Path(state.dir), purge=True)

    print(f"6-node cluster (3 shards x 1 replica), {args.keys} keys, rounds: {args.rounds}")
    print(f"redis-cli --cluster check          median {statistics.median(anchor) * 1000:7.1f} ms")
    print(f"redisops cluster status (process)  median {statistics.median(ours) * 1000:7.1f} ms")
    print(f"discovery + status (in process)    median {statistics.median(warm) * 1000:7.1f} ms")
    print(f"redisops --version (start-up)      median {statistics.median(floor) * 1000:7.1f} ms")
    print(f"median ratio, command / redis-cli:            {statistics.median(ratios):.2f}")
    print(f"median ratio, in process / redis-cli:         {statistics.median(warm_ratios):.2f}")


if __name__ == "__main__":
    main()
