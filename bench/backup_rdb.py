"""`redisops backup run --via replication` against `redis-cli --rdb` on the same 1,000,000 keys.

Target (issue 5): redisops' median time <= 1.1x redis-cli's. Both are timed as fresh
processes, alternately, from start to exit, each writing a new file:
- redis-cli --rdb (7.0.15, src/redis-cli.c getRDB): REPLCONF capa eof and rdb-only, SYNC,
  the snapshot copied in 4 KiB reads to the file, then ftruncate and fsync. No checksum,
  no check of what it received, nothing else written.
- redisops: Python start-up, option parsing (typer), the inventory, the catalogue lock, INFO,
  REPLCONF capa eof and rdb-only, PSYNC; while the snapshot streams: SHA-256, RDB header and
  CRC64 checks, redis-check-rdb fed alongside (key counts for the manifest); then fsync,
  manifest.json (fsynced), atomic rename of the folder, directory fsync, the JSON result.
Every redisops backup is checked to be verified, its key count between the server's
DBSIZE before and after it (keys with a TTL expire as the rounds go by). The capture is
also timed in-process, to tell the interpreter's start-up and imports from the streaming.

Two layouts of the CPUs, alternated within each round:
- shared: server and client on the same cores, as when the backup runs on the Redis host.
  On 2 vCPUs the server's fork, its main process relaying the snapshot, redisops and
  redis-check-rdb then compete for two cores.
- split: the server (its fork inherits this) on the last core, both clients on the others,
  as when the backup is taken over the network from another machine: --via replication is
  the way for hosts without shell access, so this is its usual case.
redisops' bytecode is compiled first, as installing a package does (without it, a
PYTHONDONTWRITEBYTECODE environment recompiles any module edited since, on every run).
The dataset is bench/memory_dataset.py's (seeded, deterministic).
Run: .venv/bin/python bench/backup_rdb.py [--keys 1000000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_servers import start_redis_servers, stop_redis_servers
from memory_dataset import load_dataset

import redisops
from redisops.backup.capture import BackupSettings, back_up_host
from redisops.fleet.inventory import load_inventory

LAYOUTS = ("shared", "split")


def place(layout: str, server_pid: int) -> None:
    """Set the CPUs of the server (every thread; a fork inherits them) and of this process
    (the clients it starts inherit them)."""
    cpus = sorted(os.sched_getaffinity(0) | os.sched_getaffinity(server_pid))
    if layout == "split":
        server, clients = set(cpus[-1:]), set(cpus[:-1])
    else:
        server = clients = set(cpus)
    for thread in os.listdir(f"/proc/{server_pid}/task"):
        os.sched_setaffinity(int(thread), server)
    os.sched_setaffinity(0, clients)


def timed(argv: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def dbsize(port: int) -> int:
    argv = ["redis-cli", "-p", str(port), "dbsize"]
    return int(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--compress", default="none", choices=("none", "zstd", "gzip"))
    args = parser.parse_args()
    compileall.compile_dir(Path(redisops.__file__).parent, quiet=1)
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        raise SystemExit("the split layout needs at least 2 CPUs")

    with tempfile.TemporaryDirectory(prefix="redisops-bench-") as work:
        folder = Path(work)
        servers = start_redis_servers(folder, 1)
        port = servers[0][1]
        try:
            load_dataset(port, args.keys)
            # Both sides would otherwise wait Redis's default 5 s for more replicas.
            subprocess.run(["redis-cli", "-p", str(port), "config", "set",
                            "repl-diskless-sync-delay", "0"], check=True,
                           capture_output=True)  # fmt: skip
            inventory = folder / "inventory.yaml"
            inventory.write_text(f"all:\n  hosts:\n    bench: {{host: 127.0.0.1, port: {port}}}\n")
            dest = folder / "catalogue"
            cli_rdb = folder / "cli.rdb"
            cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port), "--rdb",
                   str(cli_rdb)]  # fmt: skip
            ours = [sys.executable, "-m", "redisops", "-i", str(inventory), "--timeout", "30",
                    "-o", "json", "backup", "run", "--via", "replication", "--dest", str(dest),
                    "--compress", args.compress]  # fmt: skip
            host = load_inventory(inventory).hosts[0]
            settings = BackupSettings(via="replication", compression=args.compress, timeout=30)
            times = {layout: {"cli": [], "ours": [], "core": []} for layout in LAYOUTS}
            sizes = []
            for _ in range(args.rounds):
                for layout in LAYOUTS:
                    place(layout, servers[0][0].pid)
                    measured = times[layout]
                    cli_rdb.unlink(missing_ok=True)  # a new file, as redisops writes
                    measured["cli"].append(timed(cli)[0])
                    started = time.perf_counter()
                    shutil.rmtree(back_up_host(host, dest, settings).path)
                    measured["core"].append(time.perf_counter() - started)
                    before = dbsize(port)
                    mine, out = timed(ours)
                    data = json.loads(out)["results"][0]["data"]
                    # Keys with a TTL (60 s and up) expire as the rounds go by.
                    if not (data["verified"] and dbsize(port) <= data["keys"] <= before):
                        raise SystemExit(f"backup not verified or wrong key count: {data}")
                    sizes.append(data["bytes"])
                    shutil.rmtree(dest / "bench" / data["backup_id"])
                    measured["ours"].append(mine)
        finally:
            stop_redis_servers(servers)

    print(f"keys: {args.keys:,}, rounds: {args.rounds}, RDB {sizes[0] / 1e6:.0f} MB stored "
          f"({args.compress}), {cpus} CPUs")  # fmt: skip
    labels = {
        "cli": "redis-cli --rdb",
        "ours": "redisops backup run --via replication",
        "core": "  of which the capture itself (in-process)",
    }
    for layout in LAYOUTS:
        measured = times[layout]
        ratios = [ours / cli for ours, cli in zip(measured["ours"], measured["cli"], strict=True)]
        print(f"{layout}:")
        for name, label in labels.items():
            print(f"  {label:<44} median {statistics.median(measured[name]):.2f} s")
        print(f"  median ratio (redisops / redis-cli): {statistics.median(ratios):.2f}  "
              f"(rounds {min(ratios):.2f}-{max(ratios):.2f}; target <= 1.1)")  # fmt: skip


if __name__ == "__main__":
    main()
