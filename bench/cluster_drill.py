"""`cluster drill` figures on a lab cluster (3 shards x 1 replica), next to its
cluster-node-timeout: each mode runs --rounds times, rotating over the shards (a master votes
for one failover of a given shard per 2 node timeouts, so back-to-back drills of one shard
would measure that wait instead), with the cluster healthy again between runs. Prints per
mode the medians (and ranges) of suspicion (PFAIL seen), detection (FAIL seen), promotion,
write downtime on the drilled shard, failed attempts and the longest gap on the other
shards, and when the cluster was healthy with the old master a replica.
There is no anchor: redis-cli has no drill; the reference is cluster-node-timeout itself.
Run: .venv/bin/python bench/cluster_drill.py [--rounds 3] [--modes failover,crash,hang]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from redisops.cluster.drill import ClusterDrillReport, run_cluster_drill
from redisops.cluster.drill_plan import find_shard, plan_cluster_drill
from redisops.cluster.status import cluster_status
from redisops.fleet.cluster import discover_clusters
from redisops.fleet.inventory import load_inventory
from redisops.lab import lab_down
from tests.plugins.lab import start_cluster_lab

FIGURES = (
    ("pfail", "pfail_ms"),
    ("detect", "detect_ms"),
    ("promote", "promotion_ms"),
    ("downtime", "write_downtime_ms"),
    ("others gap", "other_downtime_ms"),
    ("healthy", "settled_ms"),
)


def discover(inventory_path: str):
    inventory = load_inventory(inventory_path)
    discovery = discover_clusters(inventory.hosts, {"redis"}, timeout=5, parallel=8)
    return inventory, discovery.clusters["redis"]


def wait_healthy(inventory_path: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        _, cluster = discover(inventory_path)
        status = cluster_status(cluster, timeout=5, parallel=8)
        if status.healthy:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the lab cluster stayed unhealthy: {status.problems}")
        time.sleep(0.2)


def one_drill(inventory_path: str, shard: str, mode: str) -> ClusterDrillReport:
    inventory, cluster = discover(inventory_path)
    cluster, found = find_shard([cluster], [h.name for h in cluster.nodes], shard=shard, node=None)
    plan = plan_cluster_drill(
        cluster, found, inventory.hosts, mode=mode, failback=False, max_lag=1 << 20,
        probe_rate=50, timeout=5, parallel=8,
    )  # fmt: skip
    if not plan.ready:
        raise SystemExit(f"refused: {plan.refusal}")
    report = run_cluster_drill(
        plan, cluster, probe_rate=50, probe_timeout=0.5, settle_timeout=60, timeout=5, parallel=8
    )
    if not report.ok:
        raise SystemExit(f"{mode} drill of {shard} failed: {report.problems}")
    return report


def show(values: list[int | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    median = statistics.median(known) / 1000
    return f"{median:.2f}s ({min(known) / 1000:.2f}-{max(known) / 1000:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="failover,crash,hang")
    args = parser.parse_args()
    shards = ["shard-1", "shard-2", "shard-3"]
    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        state = start_cluster_lab(Path(work) / "lab", seed_keys=1000)
        try:
            wait_healthy(state.inventory_path)
            reports: dict[str, list[ClusterDrillReport]] = {}
            turn = 0
            for mode in args.modes.split(","):
                for _ in range(args.rounds):
                    shard = shards[turn % len(shards)]
                    turn += 1
                    report = one_drill(state.inventory_path, shard, mode)
                    reports.setdefault(mode, []).append(report)
                    print(
                        f"{mode:8} {shard}: promote {report.promotion_ms} ms, downtime "
                        f"{report.write_downtime_ms} ms, others failed "
                        f"{report.other_write_errors}",
                        file=sys.stderr,
                    )
                    wait_healthy(state.inventory_path)
        finally:
            lab_down(Path(state.dir), purge=True)
    timeout = next(iter(reports.values()))[0].node_timeout_ms
    print(f"cluster-node-timeout {timeout} ms; medians (min-max) of {args.rounds} runs per mode")
    print("mode      " + "".join(f"{name:>22}" for name, _ in FIGURES) + "   lost  others failed")
    for mode, runs in reports.items():
        cells = "".join(f"{show([getattr(r, f) for r in runs]):>22}" for _, f in FIGURES)
        lost = sum(r.writes_lost or 0 for r in runs)
        failed = statistics.median(r.other_write_errors for r in runs)
        print(f"{mode:8}  {cells}   {lost:>4}  {failed:>13g}")


if __name__ == "__main__":
    main()
