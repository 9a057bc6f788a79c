"""`redisops memory report` over a 3-shard cluster against each shard alone and redis-cli --memkeys.

A lab cluster (3 masters x 1 replica, `redisops lab up --cluster`) loaded with
bench/memory_dataset.py's 1,000,000 keys, each command sent with `redis-cli --pipe` to the
master that serves its key's slot. Per round, alternating, all fresh processes:
- redisops on the whole cluster (`-o json memory report`: one scan per shard, on its replica,
  all shards at once, plus the by-slot view);
- redisops on each shard alone (`-l redis/shard-N`), one after another: the slowest of these
  is "the slowest shard's own scan";
- `redis-cli --memkeys` against each master one after another (what a user does today).

Targets (issue 15): whole-cluster time <= 1.2x the slowest shard's own scan, and <= 0.8x the
redis-cli loop; median ratios over the rounds. It also prints, from the cluster run's JSON, the
slowest shard's scan time inside that run (how much the shards slowed each other).
Run: .venv/bin/python bench/cluster_memory_report.py [--keys 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from memory_dataset import dataset_commands

from redisops.fleet.inventory import load_inventory
from redisops.lab import lab_down, lab_up
from redisops.lab.daemon import CLUSTER_BUS_OFFSET, port_in_use
from redisops.memory.slots import key_slot

SHARDS = 3
NODES = SHARDS * 2


def free_cluster_base() -> int:
    """A base port whose node and bus ports are free, below the ephemeral range."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randint(20000, 32767 - CLUSTER_BUS_OFFSET - NODES)
        ports = [p + o for p in range(base, base + NODES) for o in (0, CLUSTER_BUS_OFFSET)]
        if not any(port_in_use(port) for port in ports):
            return base
    raise SystemExit("no free base port for the cluster")


def masters_by_slot(inventory: Path, password: str) -> list[tuple[int, range]]:
    """(port, slots) of each master, from CLUSTER SHARDS of the first node."""
    import redis

    port = load_inventory(inventory).hosts[0].port
    with redis.Redis(port=port, password=password, decode_responses=True) as client:
        shards = client.execute_command("CLUSTER", "SHARDS")
    masters = []
    for shard in map(_pairs, shards):
        slots = shard["slots"]
        nodes = [_pairs(node) for node in shard["nodes"]]
        master = next(node for node in nodes if node["role"] == "master")
        masters.append((int(master["port"]), range(int(slots[0]), int(slots[1]) + 1)))
    return sorted(masters, key=lambda m: m[1].start)


def _pairs(item: dict | list) -> dict:
    """A CLUSTER SHARDS map (redis-py parses some versions' replies into dicts itself)."""
    return item if isinstance(item, dict) else dict(zip(item[::2], item[1::2], strict=True))


def load_by_slot(masters: list[tuple[int, range]], keys: int, password: str) -> None:
    """Split the dataset's commands by their key's slot and pipe each part to its master."""
    import hiredis

    parts: dict[int, list[bytes]] = {port: [] for port, _ in masters}
    owner = [0] * 16384
    for port, slots in masters:
        for slot in slots:
            owner[slot] = port
    # Fed in chunks: hiredis' reader moves its unread bytes on every reply, so one
    # 100 MB feed would cost quadratic time.
    reader, data, chunk = hiredis.Reader(), dataset_commands(keys), 1 << 16
    for start in range(0, len(data), chunk):
        reader.feed(data[start : start + chunk])
        while (command := reader.gets()) is not False:
            parts[owner[key_slot(command[1])]].append(hiredis.pack_command(tuple(command)))
    env = {**os.environ, "REDISCLI_AUTH": password}
    for port, commands in parts.items():
        subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--pipe"],
            input=b"".join(commands), env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip


def wait_replicas(ports: list[int], password: str, masters: list[tuple[int, range]]) -> None:
    """Poll until the replicas hold as many keys as the masters (bounded: 120 s)."""
    import redis

    deadline = time.monotonic() + 120
    while True:
        total = 0
        for port in ports:
            with redis.Redis(port=port, password=password) as client:
                if client.info("replication")["role"] == "slave":
                    total += client.dbsize()
        expected = masters_dbsize(masters, password)
        if total == expected:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"replicas hold {total:,} of {expected:,} keys after 120 s")
        time.sleep(0.2)


def masters_dbsize(masters: list[tuple[int, range]], password: str) -> int:
    import redis

    total = 0
    for port, _ in masters:
        with redis.Redis(port=port, password=password) as client:
            total += client.dbsize()
    return total


def timed(argv: list[str], env: dict | None = None) -> tuple[float, str, float]:
    """Wall seconds, stdout, and CPU seconds (user + system) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, done.stdout, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        lab = Path(work) / "cluster"
        state = lab_up(lab, replicas=1, sentinels=0, shards=SHARDS, base_port=free_cluster_base())
        try:
            password = (lab / "secret").read_text().strip()
            inventory = Path(state.inventory_path)
            masters = masters_by_slot(inventory, password)
            started = time.perf_counter()
            load_by_slot(masters, args.keys, password)
            wait_replicas([p.port for p in state.processes], password, masters)
            print(f"loaded {args.keys:,} keys in {time.perf_counter() - started:.1f} s")
            rounds = run_rounds(inventory, masters, password, args)
        finally:
            lab_down(lab, purge=True)
    report(rounds, args)


def run_rounds(inventory: Path, masters: list, password: str, args) -> list[dict]:
    redisops = [sys.executable, "-m", "redisops", "-i", str(inventory), "--timeout", "60"]
    env = {**os.environ, "REDISCLI_AUTH": password}
    rounds = []
    for number in range(args.rounds):
        measured: dict = {}
        order = ["cluster", "alone", "memkeys"]
        for kind in order[number % 3 :] + order[: number % 3]:  # alternate who goes first
            if kind == "cluster":
                before = masters_dbsize(masters, password)
                wall, out, cpu = timed([*redisops, "-o", "json", "memory", "report"])
                after = masters_dbsize(masters, password)
                document = json.loads(out)
                keys = document["summary"]["clusters"][0]["keys"]
                # Keys with a short TTL (60 s and up) expire while the benchmark runs: a replica
                # hides them at once, a master counts them until it deletes them. Exactness is
                # tests/test_cluster_reads.py's job; here the report must be within 0.1%.
                assert after - after // 1000 <= keys <= before, (
                    f"report {keys:,}, DBSIZE {before:,}..{after:,}"
                )
                scans = [r["data"]["duration_seconds"] for r in document["results"]]
                measured |= {"cluster": wall, "slowest_in_run": max(scans), "cpu": cpu}
            elif kind == "alone":
                alone = [
                    timed([*redisops, "-l", f"redis/shard-{n}", "-o", "json", "memory",
                           "report"])
                    for n in range(1, SHARDS + 1)
                ]  # fmt: skip
                measured["alone"] = [wall for wall, _, _ in alone]
                measured["alone_cpu"] = [cpu for _, _, cpu in alone]
            else:
                measured["memkeys"] = [
                    timed(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--memkeys"], env)[0]
                    for port, _ in masters
                ]
        rounds.append(measured)
        print(
            f"round {number + 1}: cluster {measured['cluster']:.2f} s "
            f"(CPU {measured['cpu']:.2f} s; slowest shard inside "
            f"{measured['slowest_in_run']:.2f} s), shards alone "
            + ", ".join(
                f"{t:.2f} (CPU {c:.2f})"
                for t, c in zip(measured["alone"], measured["alone_cpu"], strict=True)
            )
            + f" s, redis-cli --memkeys {sum(measured['memkeys']):.2f} s",
            flush=True,
        )
    return rounds


def report(rounds: list[dict], args) -> None:
    cluster = [r["cluster"] for r in rounds]
    slowest = [max(r["alone"]) for r in rounds]
    memkeys = [sum(r["memkeys"]) for r in rounds]
    print(f"keys: {args.keys:,}, shards: {SHARDS}, rounds: {args.rounds}")
    print(f"redisops, whole cluster         median {statistics.median(cluster):.2f} s")
    print(f"redisops, slowest shard alone   median {statistics.median(slowest):.2f} s")
    print(f"redis-cli --memkeys, 3 masters  median {statistics.median(memkeys):.2f} s")
    vs_shard = statistics.median(c / s for c, s in zip(cluster, slowest, strict=True))
    vs_cli = statistics.median(c / m for c, m in zip(cluster, memkeys, strict=True))
    print(f"median ratio cluster / slowest shard alone: {vs_shard:.2f}  (target <= 1.2)")
    print(f"median ratio cluster / redis-cli loop:      {vs_cli:.2f}  (target <= 0.8)")


if __name__ == "__main__":
    main()
