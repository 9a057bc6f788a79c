"""pytest plugin: real lab fleets on free loopback ports.

- `free_base_port(replicas, sentinels)`: a base port whose lab ports are all free right now.
- `lab` (session): a lab with 2 replicas, 3 sentinels and 200 seeded keys; purged at the end.
- `lab_password` (session): the password of that lab, read from DIR/secret.
- `make_lab` (function): starts extra small labs for destructive tests; purges them after.
- `start_cluster_lab(dir, shards=3, replicas=1)`: a Redis Cluster lab on free node and bus ports.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from redisops.errors import LabError
from redisops.lab import LabState, lab_down, lab_up
from redisops.lab.daemon import CLUSTER_BUS_OFFSET, port_in_use
from redisops.lab.layout import SENTINEL_PORT_OFFSET

PORT_RANGE = (20000, 50000)
PORT_TRIES = 200
START_TRIES = 3  # another process may grab a port between the check and the start


def lab_ports(base: int, replicas: int, sentinels: int) -> list[int]:
    """Every port a lab with this shape listens on."""
    sentinel_base = base + SENTINEL_PORT_OFFSET
    return [*range(base, base + replicas + 1), *range(sentinel_base, sentinel_base + sentinels)]


def free_base_port(replicas: int = 2, sentinels: int = 3) -> int:
    """A random base port in 20000-50000 whose lab ports are all free on 127.0.0.1."""
    rng = random.Random()
    for _ in range(PORT_TRIES):
        base = rng.randint(*PORT_RANGE)
        if not any(port_in_use(port) for port in lab_ports(base, replicas, sentinels)):
            return base
    raise RuntimeError(f"no free base port for a lab after {PORT_TRIES} tries")


def start_lab(lab_dir: Path, *, replicas: int = 2, sentinels: int = 3, **options) -> LabState:
    """lab_up on a free base port, trying again when a port was taken in the meantime."""
    for attempt in range(START_TRIES):
        base = free_base_port(replicas, sentinels)
        try:
            return lab_up(
                lab_dir, replicas=replicas, sentinels=sentinels, base_port=base, **options
            )
        except LabError as exc:
            if "already in use" not in exc.message or attempt == START_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def start_cluster_lab(lab_dir: Path, *, shards: int = 3, replicas: int = 1, **options) -> LabState:
    """lab_up --cluster on a base port whose node ports and cluster bus ports (+10000) are
    free, below the ephemeral range (32768+) so no client socket takes a bus port meanwhile."""
    rng = random.Random()
    nodes = shards * (replicas + 1)
    for attempt in range(START_TRIES):
        for _ in range(PORT_TRIES):
            base = rng.randint(20000, 32767 - CLUSTER_BUS_OFFSET - nodes)
            ports = [p + o for p in range(base, base + nodes) for o in (0, CLUSTER_BUS_OFFSET)]
            if not any(port_in_use(port) for port in ports):
                break
        else:
            raise RuntimeError(f"no free base port for a cluster lab after {PORT_TRIES} tries")
        try:
            return lab_up(
                lab_dir, replicas=replicas, sentinels=0, base_port=base, shards=shards, **options
            )
        except LabError as exc:
            if "already in use" not in exc.message or attempt == START_TRIES - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    """A running lab: node-1 master, node-2/3 replicas, sentinel-1..3, 200 keys in db 0."""
    state = start_lab(tmp_path_factory.mktemp("lab"), replicas=2, sentinels=3, seed_keys=200)
    try:
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(scope="session")
def lab_password(lab: LabState) -> str:
    return (Path(lab.dir) / "secret").read_text().strip()


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., LabState]]:
    """`make_lab(replicas=0, sentinels=0, **lab_up_options)` starts a lab under tmp_path."""
    dirs: list[Path] = []

    def make(*, replicas: int = 0, sentinels: int = 0, **options) -> LabState:
        lab_dir = tmp_path / f"lab-{len(dirs) + 1}"
        dirs.append(lab_dir)
        return start_lab(lab_dir, replicas=replicas, sentinels=sentinels, **options)

    yield make
    for lab_dir in dirs:
        if (lab_dir / "lab.json").exists():
            lab_down(lab_dir, purge=True)
