"""Moving 1,000 slots holding 500,000 keys between two masters: redisops' slot-move engine
against `redis-cli --cluster reshard --cluster-slots 1000` (its default pipeline: 10 keys a
MIGRATE), on the same lab cluster, alternating.

The lab has 3 masters (the lab's minimum), no replicas; the bench first gives node-1 slots
5461-6460 of node-2 (empty), so node-1 owns 0-6460, then writes 500 keys of 64 bytes into each
of slots 0-999 (a hash tag per slot). Each round moves slots 0-999 one way with one tool and
back with the other (which tool goes first alternates, so each tool moves both ways): the
slots redis-cli takes from a source are its lowest 1,000, which are 0-999 on either master.

redisops' figure is the whole change as `cluster rebalance` carries it out, in one warm
process: discovery, reading every master, the plan (every key of the 1,000 slots measured
with MEMORY USAGE: the big-key check), the fsynced state file before each slot, the moves,
and the verification of every master's slot map afterwards. The password reaches redis-cli
through REDISCLI_AUTH, never its arguments.
Run: .venv/bin/python bench/cluster_reshard.py [--rounds 5] [--keys-per-slot 500]
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
from redisops.cluster.rebalance import apply_slot_plan, plan_slot_moves, read_cluster
from redisops.cluster.slotmove import Masters, Move, SlotMover
from redisops.fleet.cluster import discover_clusters
from redisops.fleet.inventory import load_inventory
from redisops.lab import lab_down
from redisops.memory.slots import key_slot
from tests.plugins.lab import start_cluster_lab

SLOTS = range(0, 1000)


def cluster_of(inventory_path: str):
    inventory = load_inventory(inventory_path)
    return discover_clusters(inventory.hosts, {"redis"}, timeout=5, parallel=16).clusters["redis"]


def owner(cluster, slot: int) -> str:
    return next(
        h.node.node_id for h in cluster.nodes if any(a <= slot <= b for a, b in h.node.slots)
    )


def redisops_move(inventory_path: str, state_dir: Path) -> float:
    """Slots 0-999 to the other of node-1/node-2, planned, moved and verified."""
    started = time.perf_counter()
    cluster = cluster_of(inventory_path)
    ids = {h.name: h.node.node_id for h in cluster.nodes}
    source = owner(cluster, 0)
    target = ids["node-2"] if source == ids["node-1"] else ids["node-1"]
    reading = read_cluster(cluster, timeout=5, parallel=16)
    plan = plan_slot_moves(
        reading,
        [Move(slot, source, target) for slot in SLOTS],
        command="cluster rebalance",
        by="slots",
        tolerance=0.0,
        max_key_size=64 << 20,
        state_dir=state_dir,
        force=False,
    )
    if plan.blockers or plan.refusals:
        raise SystemExit(f"refused: {plan.blockers or plan.refusals}")
    result = apply_slot_plan(plan, rate=0, progress=None)
    elapsed = time.perf_counter() - started
    if not result.verified or result.keys_moved != plan.keys:
        raise SystemExit(f"redisops: {result.problems}")
    return elapsed


def redis_cli_move(inventory_path: str, env: dict) -> float:
    cluster = cluster_of(inventory_path)
    ids = {h.name: h.node.node_id for h in cluster.nodes}
    source = owner(cluster, 0)
    target = ids["node-2"] if source == ids["node-1"] else ids["node-1"]
    seed = next(h for h in cluster.nodes if h.name == "node-1")
    argv = ["redis-cli", "--cluster", "reshard", seed.address, "--cluster-from", source]
    argv += ["--cluster-to", target, "--cluster-slots", str(len(SLOTS)), "--cluster-yes"]
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"redis-cli failed ({done.returncode}): {done.stderr.decode()[:300]}")
    after = cluster_of(inventory_path)
    if owner(after, 0) != target or owner(after, 999) != target:
        raise SystemExit("redis-cli did not move slots 0-999")
    return elapsed


def prepare(state, keys_per_slot: int) -> None:
    """node-1 takes 5461-6460 from node-2; keys_per_slot keys into each of slots 0-999."""
    import redis

    cluster = cluster_of(state.inventory_path)
    ids = {h.name: h.node.node_id for h in cluster.nodes}
    masters = Masters(
        hosts={h.node.node_id: h for h in cluster.nodes},
        names={h.node.node_id: h.name for h in cluster.nodes},
        addresses={h.node.node_id: h.address for h in cluster.nodes},
        masters=[h.node.node_id for h in cluster.nodes],
        timeout=5,
    )
    mover = SlotMover(masters)
    for slot in range(5461, 6461):
        mover.move(Move(slot, ids["node-2"], ids["node-1"]))
    masters.close()
    tags: dict[int, str] = {}
    number = 0
    while len(tags) < len(SLOTS):
        number += 1
        tag = f"{{t{number}}}"
        slot = key_slot(tag.encode())
        if slot in SLOTS and slot not in tags:
            tags[slot] = tag
    password = (Path(state.dir) / "secret").read_text().strip()
    node = redis.Redis(port=state.processes[0].port, password=password)
    value = b"v" * 64
    for slot in SLOTS:
        pipe = node.pipeline(transaction=False)
        for i in range(keys_per_slot):
            pipe.set(f"{tags[slot]}:{i}", value)
        pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys-per-slot", type=int, default=500)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        state = start_cluster_lab(Path(work) / "lab", shards=3, replicas=0)
        try:
            prepare(state, args.keys_per_slot)
            password = (Path(state.dir) / "secret").read_text().strip()
            env = {**os.environ, "REDISCLI_AUTH": password}
            state_dir = Path(work) / "state"
            ours, theirs, ratios = [], [], []
            for round_ in range(args.rounds):
                if round_ % 2 == 0:
                    mine = redisops_move(state.inventory_path, state_dir)
                    anchor = redis_cli_move(state.inventory_path, env)
                else:
                    anchor = redis_cli_move(state.inventory_path, env)
                    mine = redisops_move(state.inventory_path, state_dir)
                ours.append(mine)
                theirs.append(anchor)
                ratios.append(mine / anchor)
                print(f"round {round_ + 1}: redisops {mine:.2f} s, redis-cli {anchor:.2f} s")
            keys = len(SLOTS) * args.keys_per_slot
            print(f"moving {len(SLOTS):,} slots holding {keys:,} keys between two masters")
            print(f"redisops (plan, moves, verification): median {statistics.median(ours):.2f} s")
            print(f"redis-cli --cluster reshard:          median {statistics.median(theirs):.2f} s")
            print(f"ratio (median of per-round ratios):   {statistics.median(ratios):.2f}x")
        finally:
            lab_down(Path(state.dir), purge=True)


if __name__ == "__main__":
    main()
