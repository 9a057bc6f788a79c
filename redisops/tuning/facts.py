"""What the audit rules read about one host: CONFIG GET *, INFO, ACLs, the replication write
rate, and facts of the machine (through host access, when the inventory gives it).

Secrets are masked as soon as they are read (`settings.masked`): no fact ever holds one.
Each input that cannot be read is listed in `Facts.missing` with the reason, so the rules that
need it are reported as unchecked instead of silently passing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redisops.errors import HostError
from redisops.fleet.host import Host
from redisops.fleet.server import is_server_process, refuse_sentinel_as_redis
from redisops.interrupt import pause
from redisops.tuning.settings import masked
from redisops.tuning.units import parse_size

if TYPE_CHECKING:
    import redis

    from redisops.fleet.hostaccess import HostAccess

CLIENT_NAME = "redisops-config"

# Inputs a rule may read besides INFO, which every audited host answers.
CONFIG = "config"
ACL = "acl"
WRITE_RATE = "write_rate"
MEM_TOTAL = "mem_total"
OVERCOMMIT = "overcommit_memory"
THP = "transparent_hugepage"
SOMAXCONN = "somaxconn"
SWAPPINESS = "swappiness"
OPEN_FILES = "open_files"
CLUSTER_INFO = "cluster_info"  # CLUSTER INFO, read on cluster nodes only
SYSTEM_INPUTS = (MEM_TOTAL, OVERCOMMIT, THP, SOMAXCONN, SWAPPINESS, OPEN_FILES)

_SYSTEM_FILES = {
    OVERCOMMIT: "/proc/sys/vm/overcommit_memory",
    THP: "/sys/kernel/mm/transparent_hugepage/enabled",
    SOMAXCONN: "/proc/sys/net/core/somaxconn",
    SWAPPINESS: "/proc/sys/vm/swappiness",
}

# Commands that let whoever runs them wipe data, reconfigure or stop the server, or run code:
# probed with ACL DRYRUN for every user anyone can log in as. (name, arguments)
DANGEROUS_PROBES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CONFIG SET", ("CONFIG", "SET", "maxmemory", "0")),
    ("FLUSHALL", ("FLUSHALL",)),
    ("FLUSHDB", ("FLUSHDB",)),
    ("SHUTDOWN", ("SHUTDOWN",)),
    ("REPLICAOF", ("REPLICAOF", "NO", "ONE")),
    ("ACL SETUSER", ("ACL", "SETUSER", "probe")),
    ("DEBUG", ("DEBUG", "SLEEP", "0")),
    ("MODULE LOAD", ("MODULE", "LOAD", "probe")),
    ("KEYS", ("KEYS", "probe")),
    ("MONITOR", ("MONITOR",)),
)
# Commands that also need a config switch (off by default in Redis 7) besides the ACL.
_SWITCHED = {"DEBUG": "enable-debug-command", "MODULE LOAD": "enable-module-command"}


@dataclass(frozen=True)
class SystemFacts:
    """The machine a host runs on, as /proc and /sys tell it; None where it could not be read.

    `mem_total` is bytes; `transparent_hugepage` the selected mode (always, madvise, never);
    `open_files` the soft limit of the Redis process itself.
    """

    mem_total: int | None = None
    overcommit_memory: int | None = None
    transparent_hugepage: str | None = None
    somaxconn: int | None = None
    swappiness: int | None = None
    open_files: int | None = None


@dataclass(frozen=True)
class AclUser:
    """A user from ACL LIST: whether it can log in, and with or without a password."""

    name: str
    enabled: bool
    nopass: bool


@dataclass(frozen=True)
class AclFacts:
    """Users, and which dangerous commands each user anyone can log in as may run."""

    users: tuple[AclUser, ...]
    open_dangerous: Mapping[str, tuple[str, ...]]

    def user(self, name: str) -> AclUser | None:
        return next((user for user in self.users if user.name == name), None)


@dataclass(frozen=True)
class Facts:
    """Everything the rules may read about one host.

    `config` has secrets masked and is empty when CONFIG GET was refused; `write_rate` is
    bytes per second of replication stream; `ram` is the machine's memory (from /proc/meminfo,
    else INFO total_system_memory); `instances_on_machine` counts the inventory's Redis hosts
    at the same address, which share that memory. `missing` maps an input to why it is unknown.
    """

    info: Mapping[str, Any]
    config: Mapping[str, str]
    acl: AclFacts | None
    write_rate: float | None
    system: SystemFacts
    ram: int | None
    instances_on_machine: int
    missing: Mapping[str, str]
    cluster_info: Mapping[str, str] | None = None

    @property
    def cluster(self) -> bool:
        """True on a node of a Redis Cluster (INFO cluster_enabled:1)."""
        return str(self.info.get("cluster_enabled", 0)) == "1"

    @property
    def role(self) -> str:
        return "replica" if self.info.get("role") == "slave" else str(self.info.get("role", "?"))

    def setting(self, name: str) -> str:
        return self.config.get(name, "")

    def number(self, name: str) -> int:
        """A numeric or size setting as an int (0 when unset or unreadable)."""
        return parse_size(self.setting(name)) or 0

    @property
    def forks(self) -> bool:
        """True when the server forks: RDB save points, AOF rewrites or replicas to sync."""
        replicas = self.role == "master" and int(self.info.get("connected_slaves", 0)) > 0
        return bool(self.setting("save").strip()) or self.setting("appendonly") == "yes" or replicas

    @property
    def keys_with_ttl(self) -> int:
        return sum(
            int(db.get("expires", 0))
            for name, db in self.info.items()
            if name.startswith("db") and isinstance(db, dict)
        )


def collect_facts(
    host: Host, *, timeout: float, rate_window: float, instances_on_machine: int = 1
) -> tuple[Facts, str | None]:
    """Read everything the rules need from `host`; the second item is a host-access error.

    Raises HostError when Redis cannot be read (or is a Sentinel). A failed SSH login is
    returned, not raised, so the Redis findings are still reported.
    """
    from redisops.fleet.connection import redis_client

    missing: dict[str, str] = {}
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        info = client.info()
        refuse_sentinel_as_redis(host, info)
        config = _read_config_or_note(client, missing)
        acl = _read_acl(client, config, missing)
        write_rate = _write_rate(client, info, rate_window, missing)
        cluster_info = _read_cluster_info(client, info, missing)
    system, access_error = _read_system(host, info, timeout, missing)
    ram = system.mem_total or _int(info.get("total_system_memory")) or None
    if ram is not None:
        missing.pop(MEM_TOTAL, None)
    facts = Facts(
        info=info,
        config=config,
        acl=acl,
        write_rate=write_rate,
        system=system,
        ram=ram,
        instances_on_machine=max(1, instances_on_machine),
        missing=missing,
        cluster_info=cluster_info,
    )
    return facts, access_error


def read_config(client: redis.Redis) -> dict[str, str]:
    """CONFIG GET * with secret values masked; raises redis.ResponseError when refused."""
    reply = client.config_get("*")
    return {str(name): masked(str(name), str(value)) or "" for name, value in reply.items()}


def _read_config_or_note(client: redis.Redis, missing: dict[str, str]) -> dict[str, str]:
    import redis

    try:
        return read_config(client)
    except redis.ResponseError as exc:
        missing[CONFIG] = f"CONFIG GET refused: {_first_line(exc)}"
        return {}


def _read_cluster_info(
    client: redis.Redis, info: Mapping[str, Any], missing: dict[str, str]
) -> dict[str, str] | None:
    """CLUSTER INFO of a cluster node as a flat dict, plus `myself_slots`: how many slots this
    node serves (from its own line of CLUSTER NODES). None on servers not in cluster mode."""
    import redis

    if str(info.get("cluster_enabled", 0)) != "1":
        return None
    try:
        reply = client.execute_command("CLUSTER", "INFO")
        nodes = str(client.execute_command("CLUSTER", "NODES"))
    except redis.ResponseError as exc:
        missing[CLUSTER_INFO] = f"CLUSTER INFO/NODES refused: {_first_line(exc)}"
        return None
    if isinstance(reply, dict):  # redis-py parses CLUSTER INFO itself in some versions
        facts = {str(name): str(value) for name, value in reply.items()}
    else:
        facts = dict(line.split(":", 1) for line in str(reply).splitlines() if ":" in line)
    myself = next((line.split() for line in nodes.splitlines() if " myself" in line), [])
    facts["myself_slots"] = str(_slot_count(myself[8:]))
    return facts


def _slot_count(fields: list[str]) -> int:
    """Slots in CLUSTER NODES slot fields (`0-5460`, `7`; `[...]` migration marks skipped)."""
    total = 0
    for field in fields:
        if field.startswith("["):
            continue
        first, _, last = field.partition("-")
        total += int(last or first) - int(first) + 1
    return total


def _read_acl(
    client: redis.Redis, config: Mapping[str, str], missing: dict[str, str]
) -> AclFacts | None:
    """Users from ACL LIST (flags only: password hashes are dropped) and ACL DRYRUN probes."""
    import redis

    try:
        lines = client.execute_command("ACL", "LIST")
        users = tuple(parse_acl_user(str(line)) for line in lines)
        # Anyone can log in as `default` (with the shared requirepass, if any) and as a
        # user without a password: those are the users "everyone" has.
        open_users = [u for u in users if u.enabled and (u.name == "default" or u.nopass)]
        pipe = client.pipeline(transaction=False)
        for user in open_users:
            for _, argv in DANGEROUS_PROBES:
                pipe.execute_command("ACL", "DRYRUN", user.name, *argv)
        replies = iter(pipe.execute(raise_on_error=False))
    except redis.ResponseError as exc:
        missing[ACL] = f"ACL LIST/DRYRUN refused: {_first_line(exc)}"
        return None
    allowed: dict[str, tuple[str, ...]] = {}
    for user in open_users:
        runs = []
        for (name, _), reply in zip(DANGEROUS_PROBES, replies, strict=False):
            # A denied command is a plain reply naming it; an error means no verdict at all.
            if isinstance(reply, redis.ResponseError):
                missing[ACL] = f"ACL DRYRUN failed: {_first_line(reply)}"
                return None
            switch = _SWITCHED.get(name)
            if reply == "OK" and not (switch and config.get(switch, "no") == "no"):
                runs.append(name)
        allowed[user.name] = tuple(runs)
    return AclFacts(users=users, open_dangerous=allowed)


def parse_acl_user(line: str) -> AclUser:
    """One line of ACL LIST: its user's name, on/off and nopass (a snapshot reads them too)."""
    tokens = line.split()
    name = tokens[1] if len(tokens) > 1 else "?"
    return AclUser(name=name, enabled="on" in tokens[2:], nopass="nopass" in tokens[2:])


def _write_rate(
    client: redis.Redis, info: Mapping[str, Any], window: float, missing: dict[str, str]
) -> float | None:
    """Bytes per second the replication stream grew over `window` seconds."""
    if window <= 0:
        missing[WRITE_RATE] = "not measured (--rate-window 0)"
        return None
    started = time.monotonic()
    pause(window)
    later = client.info("replication")
    elapsed = time.monotonic() - started
    grown = _int(later.get("master_repl_offset")) - _int(info.get("master_repl_offset"))
    return max(0.0, grown / elapsed)


def _read_system(
    host: Host, info: Mapping[str, Any], timeout: float, missing: dict[str, str]
) -> tuple[SystemFacts, str | None]:
    from redisops.fleet.hostaccess import open_host_access

    if not host.has_host_access:
        for name in SYSTEM_INPUTS:
            missing[name] = "no host access in the inventory (connection: local or ssh_*)"
        return SystemFacts(), None
    try:
        with open_host_access(host, timeout=timeout) as access:
            facts = _system_facts(access, _int(info.get("process_id")), missing)
    except HostError as exc:
        for name in SYSTEM_INPUTS:
            missing[name] = f"host access failed: {exc.message}"
        return SystemFacts(), exc.message
    return facts, None


def _system_facts(access: HostAccess, pid: int, missing: dict[str, str]) -> SystemFacts:
    def read(path: str, name: str) -> str | None:
        result = access.run(["cat", path], check=False)
        if result.exit_status != 0:
            reason = result.stderr.decode(errors="replace").strip().splitlines()
            missing[name] = f"cannot read {path}: {reason[0] if reason else 'failed'}"
            return None
        return result.stdout.decode(errors="replace")

    values: dict[str, Any] = {}
    meminfo = read("/proc/meminfo", MEM_TOTAL)
    if meminfo is not None:
        values[MEM_TOTAL] = _meminfo_total(meminfo)
    for name, path in _SYSTEM_FILES.items():
        text = read(path, name)
        if text is not None:
            values[name] = thp_mode(text) if name == THP else _int(text.strip())
    if not pid:
        missing[OPEN_FILES] = "INFO gave no process_id"
    comm = read(f"/proc/{pid}/comm", OPEN_FILES) if pid else None
    if comm is not None and not is_server_process(comm):
        missing[OPEN_FILES] = (
            f"process {pid} on the host is {comm.strip()!r}, not Redis or Valkey (in a container?)"
        )
    elif comm is not None:
        limits = read(f"/proc/{pid}/limits", OPEN_FILES)
        if limits is not None:
            values[OPEN_FILES] = _open_files(limits)
    return SystemFacts(**values)


def _meminfo_total(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024  # /proc/meminfo says kB and means KiB
    return None


def thp_mode(text: str) -> str:
    """The selected mode of "always [madvise] never"."""
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return text.strip()


def _open_files(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("Max open files"):
            soft = line.split()[3]
            return None if soft == "unlimited" else int(soft)
    return None


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
