"""Loading a 5,000-host inventory: `load_inventory` against plain `yaml.safe_load`, alternating.

Target (issue 21 item 8): well under a second for 5,000 hosts; the size limit
(MAX_YAML_BYTES) refuses in milliseconds. Anchors from the same run: `yaml.safe_load` (what a
script reading the file would do: pure-Python PyYAML, no validation) and `yaml.load` with
libyaml's CSafeLoader (the parse alone, the floor for any loader that uses PyYAML).
Run: .venv/bin/python bench/inventory_load.py [--hosts 5000] [--rounds 11]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from redisops.errors import InventoryError
from redisops.fleet.inventory import MAX_YAML_BYTES, load_inventory

GROUPS = 50


def inventory_text(hosts: int) -> str:
    """`hosts` hosts in 50 groups with group vars, host keys and tags, as fleets write them."""
    lines = ["all:", "  vars:", "    password_env: REDIS_PASSWORD", "  children:"]
    per_group = max(1, hosts // GROUPS)
    for group in range(GROUPS):
        lines += [
            f"    group{group}:",
            "      vars:",
            "        redis_config: {maxmemory-policy: allkeys-lru, maxmemory: 4gb}",
            "      hosts:",
        ]
        for index in range(per_group):
            lines.append(
                f"        cache-{group * per_group + index}: {{host: 10.{group}.{index // 250}."
                f"{index % 250 + 1}, port: 6379, ssh_user: redis, tags: [cache, eu]}}"
            )
    return "\n".join(lines) + "\n"


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "inventory.yaml"
        path.write_text(inventory_text(args.hosts))
        size = path.stat().st_size
        assert len(load_inventory(path).hosts) == args.hosts // GROUPS * GROUPS

        runs: dict[str, list[float]] = {"redisops": [], "safe_load": [], "CSafeLoader": []}
        for _ in range(args.rounds):
            runs["safe_load"].append(timed(lambda: yaml.safe_load(path.read_text())))
            runs["redisops"].append(timed(lambda: load_inventory(path)))
            runs["CSafeLoader"].append(
                timed(lambda: yaml.load(path.read_text(), Loader=yaml.CSafeLoader))
            )

        oversized = Path(folder) / "oversized.yaml"
        oversized.write_text("# padding\n" * (MAX_YAML_BYTES // 8))  # 5 MiB
        started = time.perf_counter()
        try:
            load_inventory(oversized)
        except InventoryError as exc:
            refusal = exc.message.split(": ", 1)[1]
        refused = time.perf_counter() - started

    median = {name: statistics.median(times) for name, times in runs.items()}
    print(f"inventory: {args.hosts} hosts, {size / 1024:.0f} KiB; {args.rounds} rounds")
    print(f"yaml.safe_load (pure Python)   median {median['safe_load'] * 1000:6.0f} ms")
    print(f"yaml.load CSafeLoader (libyaml) median {median['CSafeLoader'] * 1000:6.0f} ms")
    print(f"redisops load_inventory        median {median['redisops'] * 1000:6.0f} ms")
    print(f"ratio redisops / safe_load: {median['redisops'] / median['safe_load']:.2f}")
    print(f"oversized file refused in {refused * 1000:.1f} ms: {refusal}")


if __name__ == "__main__":
    main()
