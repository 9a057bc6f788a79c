"""`backup restore-keys --all` against `redis-cli --pipe` and a redis-py pipeline.

Target (issue 16): loading a 1,000,000-key backup into an empty server, redisops' median
time <= 1.5x that of `redis-cli --pipe` fed the same RESTORE commands from a prepared file
(the loading floor: no parsing, no checks), and below a redis-py pipeline of the same
commands (batches of 1,000, the commands prepared in memory before the clock starts).
- redisops: a fresh process, start to exit: Python start-up, the inventory, INFO, the plan
  (the whole RDB read and checked: every record parsed, CRC64; no EXISTS, the target being
  empty), confirmation skipped by --yes, then the RDB read again and RESTORE sent in
  pipelined batches, a state file written per batch, the audit line, the JSON result.
- redis-cli --pipe: a fresh process reading the prepared file (built beforehand from the
  same RDB by the same payload rules: value bytes, RDB version, CRC64, ABSTTL).
- redis-py: in this process, `pipeline(transaction=False)` of RESTORE, executed per 1,000.
- reader alone: bench's own process reads the RDB with redisops' reader (values mode) and
  sends nothing: the floor of any restore that parses the file in Python (not in a ratio).
Rounds alternate the three; the target is flushed (FLUSHALL SYNC) before each, and its
DBSIZE checked after each (the same count for all three). The dataset is
bench/memory_dataset.py's (seeded, mixed types, 4 big keys).
Run: .venv/bin/python bench/restore_keys.py [--keys 1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
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
from redisops.rdb.crc64 import crc64
from redisops.rdb.reader import RdbReader

BATCH = 1000


def prepare(rdb: Path, resp: Path) -> list[tuple[bytes, bytes, bytes, bool]]:
    """The RESTORE commands of every key of `rdb` (written to `resp` as RESP), and as
    (key, ttl, payload, absttl) for redis-py."""
    now = time.time() * 1000
    commands = []
    with open(rdb, "rb") as handle:
        reader = RdbReader(iter(lambda: handle.read(1 << 20), b""), values=True)
        with open(resp, "wb") as out:
            for batch in reader.batches():
                footer = reader.version.to_bytes(2, "little")
                chunk = []
                for row in batch:
                    expire = row[7]
                    if 0 <= expire <= now:
                        continue
                    body = row[8] + footer
                    body += crc64(body).to_bytes(8, "little")
                    ttl = b"%d" % expire if expire >= 0 else b"0"
                    parts = [b"RESTORE", row[1], ttl, body] + ([b"ABSTTL"] if expire >= 0 else [])
                    chunk.append(
                        b"*%d\r\n" % len(parts)
                        + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
                    )
                    commands.append((row[1], ttl, body, expire >= 0))
                out.write(b"".join(chunk))
    return commands


def run_redisops(folder: Path, rdb: Path) -> float:
    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "redisops", "-i", str(folder / "inventory.yaml"), "-l", "target",
         "-o", "json", "backup", "restore-keys", str(rdb), "--all", "--yes"],
        capture_output=True, env=env, check=False,
    )  # fmt: skip
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"redisops failed: {done.stderr.decode()}")
    return took


def run_redis_cli(port: int, resp: Path) -> float:
    started = time.perf_counter()
    with open(resp, "rb") as stdin:
        done = subprocess.run(
            ["redis-cli", "-p", str(port), "--pipe"], stdin=stdin, capture_output=True, check=False
        )
    took = time.perf_counter() - started
    if done.returncode != 0 or b"errors: 0" not in done.stdout:
        raise SystemExit(f"redis-cli --pipe failed: {done.stdout.decode()} {done.stderr.decode()}")
    return took


def run_redis_py(port: int, commands) -> float:
    import redis

    client = redis.Redis(port=port)
    started = time.perf_counter()
    for start in range(0, len(commands), BATCH):
        pipe = client.pipeline(transaction=False)
        for key, ttl, body, absttl in commands[start : start + BATCH]:
            if absttl:
                pipe.execute_command("RESTORE", key, ttl, body, "ABSTTL")
            else:
                pipe.execute_command("RESTORE", key, ttl, body)
        pipe.execute()
    took = time.perf_counter() - started
    client.close()
    return took


def run_reader(rdb: Path) -> float:
    """The RDB reader alone (values mode, nothing sent): the floor of any run that parses the
    file in Python, as redisops does."""
    started = time.perf_counter()
    with open(rdb, "rb") as handle:
        reader = RdbReader(iter(lambda: handle.read(1 << 20), b""), values=True)
        for _ in reader.batches():
            pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import redis

    folder = Path(tempfile.mkdtemp(prefix="bench-restore-keys-"))
    servers = start_redis_servers(folder, 2)
    try:
        (_, source), (_, target) = servers
        load_dataset(source, args.keys)
        redis.Redis(port=source).save()
        rdb = folder / "backup.rdb"
        shutil.move(folder / "dump.rdb", rdb)
        redis.Redis(port=source).flushall()
        resp = folder / "restore.resp"
        commands = prepare(rdb, resp)
        (folder / "inventory.yaml").write_text(
            f"all:\n  hosts:\n    target: {{host: 127.0.0.1, port: {target}, connection: local}}\n"
        )
        print(f"redisops {redisops.__version__}, {args.keys:,} keys, RDB {rdb.stat().st_size:,} B,"
              f" RESTORE file {resp.stat().st_size:,} B")  # fmt: skip
        client = redis.Redis(port=target)
        runners = {
            "redisops": lambda: run_redisops(folder, rdb),
            "redis-cli --pipe": lambda: run_redis_cli(target, resp),
            "redis-py pipeline": lambda: run_redis_py(target, commands),
            "reader alone": lambda: run_reader(rdb),
        }
        times: dict[str, list[float]] = {name: [] for name in runners}
        names = list(runners)
        for round_ in range(args.rounds):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                client.flushall(asynchronous=False)
                took = runners[name]()
                keys = client.dbsize()
                times[name].append(took)
                print(f"round {round_ + 1} {name:18} {took:6.2f} s  {keys:,} keys")
                if name != "reader alone" and keys < len(commands) - 1000:  # TTLs pass
                    raise SystemExit(f"{name} loaded {keys:,} keys, expected {len(commands):,}")
        med = {name: statistics.median(found) for name, found in times.items()}
        ratios_cli = [
            a / b for a, b in zip(times["redisops"], times["redis-cli --pipe"], strict=True)
        ]
        ratios_py = [
            a / b for a, b in zip(times["redisops"], times["redis-py pipeline"], strict=True)
        ]
        for name, value in med.items():
            print(f"median {name:18} {value:6.2f} s")
        print(f"median ratio redisops / redis-cli --pipe: {statistics.median(ratios_cli):.2f} "
              "(target <= 1.5)")  # fmt: skip
        print(f"median ratio redisops / redis-py pipeline: {statistics.median(ratios_py):.2f} "
              "(target < 1)")  # fmt: skip
    finally:
        stop_redis_servers(servers)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
