"""Where each lab process lives under DIR, and the text of its config file and of the inventory.

Pure functions of names, ports and paths: nothing here touches the disk or a process.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

MASTER_NAME = "lab"
HOST = "127.0.0.1"
SENTINEL_PORT_OFFSET = 100
MAX_MEMBERS = SENTINEL_PORT_OFFSET - 1
# Quick drills: a silent master is down after 2 s; a failover is retried after 10 s.
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10000


@dataclass(frozen=True)
class Member:
    """One process of the lab: a Redis node or a Sentinel, and its folder under DIR."""

    name: str
    role: str  # "master" | "replica" | "sentinel", the role it was started as
    port: int
    folder: Path

    @property
    def is_sentinel(self) -> bool:
        return self.role == "sentinel"

    @property
    def _stem(self) -> str:
        return "sentinel" if self.is_sentinel else "redis"

    @property
    def config(self) -> Path:
        return self.folder / f"{self._stem}.conf"

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{self._stem}.pid"

    @property
    def logfile(self) -> Path:
        return self.folder / f"{self._stem}.log"


def plan_members(lab_dir: Path, *, replicas: int, sentinels: int, base_port: int) -> list[Member]:
    """Names, roles and ports: node-1 master on base_port, node-2… replicas, sentinel-1… at +100."""
    members = [Member("node-1", "master", base_port, lab_dir / "node-1")]
    for i in range(1, replicas + 1):
        members.append(Member(f"node-{i + 1}", "replica", base_port + i, lab_dir / f"node-{i + 1}"))
    for i in range(sentinels):
        port = base_port + SENTINEL_PORT_OFFSET + i
        members.append(Member(f"sentinel-{i + 1}", "sentinel", port, lab_dir / f"sentinel-{i + 1}"))
    return members


def plan_cluster_members(
    lab_dir: Path, *, shards: int, replicas: int, base_port: int
) -> list[Member]:
    """node-1…node-N masters on base_port…, then each master's replicas in turn."""
    count = shards * (replicas + 1)
    return [
        Member(f"node-{i + 1}", "master" if i < shards else "replica", base_port + i,
               lab_dir / f"node-{i + 1}")
        for i in range(count)
    ]  # fmt: skip


def cluster_replicas_of(members: list[Member], replicas: int) -> dict[str, list[Member]]:
    """Each master's replicas, in the order plan_cluster_members laid them out."""
    masters = [m for m in members if m.role == "master"]
    others = [m for m in members if m.role == "replica"]
    return {
        master.name: others[i * replicas : (i + 1) * replicas] for i, master in enumerate(masters)
    }


def quorum(sentinels: int) -> int:
    """A majority of the sentinels."""
    return sentinels // 2 + 1


def _conf_str(value: str) -> str:
    """A value quoted for a Redis config file (sdssplitargs rules), so paths may hold spaces."""
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("a line break or NUL in a config value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _common_lines(member: Member, password: str) -> list[str]:
    return [
        "# Written by `redisops lab up`. Holds the lab password: keep it mode 0600.",
        f"bind {HOST}",
        f"port {member.port}",
        "protected-mode yes",
        "daemonize yes",
        f"pidfile {_conf_str(str(member.pidfile))}",
        f"logfile {_conf_str(str(member.logfile))}",
        f"dir {_conf_str(str(member.folder))}",
        f"requirepass {password}",
    ]


def node_config(
    member: Member,
    master: Member,
    password: str,
    *,
    version: tuple[int, ...] = (7,),
    cluster: bool = False,
) -> str:
    """redis.conf of a Redis node; replicas follow `master`. `version` is the server's own
    (Valkey's numbering too): directives it would reject as "Bad directive" are left out."""
    lines = [
        *_common_lines(member, password),
        f"masterauth {password}",
        "dbfilename dump.rdb",
        # Explicit save points so SIGTERM / SHUTDOWN keep the data, as `lab down` promises.
        "save 3600 1 300 100 60 10000",
        "appendonly no",
        # Redis 7 waits 5 s for more replicas before a diskless full sync; a lab wants it now.
        "repl-diskless-sync-delay 0",
    ]
    if version >= (7,):  # added in 7.0; DEBUG is open to all before it
        # Fault-injection tests use DEBUG SLEEP; `local` allows it from loopback only.
        lines.append("enable-debug-command local")
    if cluster:
        lines += [
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            # Quick drills, as for Sentinel: a silent node is failing after 2 s.
            f"cluster-node-timeout {DOWN_AFTER_MS}",
        ]
    elif member.role == "replica":
        lines.append(f"replicaof {HOST} {master.port}")
    return "\n".join(lines) + "\n"


def sentinel_config(member: Member, master: Member, password: str, *, sentinels: int) -> str:
    """sentinel.conf: monitors `master` as `lab`; sentinels require and use the lab password."""
    lines = [
        *_common_lines(member, password),
        # Sentinels authenticate to each other with this password (Redis >= 6.2).
        f"sentinel sentinel-pass {password}",
        f"sentinel monitor {MASTER_NAME} {HOST} {master.port} {quorum(sentinels)}",
        f"sentinel auth-pass {MASTER_NAME} {password}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER_NAME} 1",
    ]
    return "\n".join(lines) + "\n"


def start_argv(member: Member, redis_server: str, redis_sentinel: str | None) -> list[str]:
    """The command that starts `member` (it daemonizes itself)."""
    if not member.is_sentinel:
        return [redis_server, str(member.config)]
    if redis_sentinel:
        return [redis_sentinel, str(member.config)]
    return [redis_server, str(member.config), "--sentinel"]


def inventory_data(
    lab_dir: Path,
    members: list[Member],
    redis_server: str,
    redis_sentinel: str | None,
    *,
    cluster: bool = False,
) -> dict:
    """The inventory as plain data, in the Ansible shape redisops reads."""

    def host_entry(member: Member) -> dict:
        entry: dict = {"host": HOST, "port": member.port}
        if not member.is_sentinel:
            entry["data_dir"] = str(member.folder)
        entry["service_start"] = shlex.join(start_argv(member, redis_server, redis_sentinel))
        entry["service_stop"] = f"kill -TERM $(cat {shlex.quote(str(member.pidfile))})"
        return entry

    children: dict = {
        "redis": {"hosts": {m.name: host_entry(m) for m in members if not m.is_sentinel}}
    }
    if cluster:
        children["redis"] = {"vars": {"cluster": True}, **children["redis"]}
    sentinel_hosts = {m.name: host_entry(m) for m in members if m.is_sentinel}
    if sentinel_hosts:
        children["sentinels"] = {"vars": {"role": "sentinel"}, "hosts": sentinel_hosts}
    return {
        "all": {
            "vars": {"connection": "local", "password_file": str(lab_dir / "secret")},
            "children": children,
        }
    }


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) or value in _PLAIN_WORDS:
        return str(value)
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(value, ensure_ascii=False)


# Values written bare, as a person would; everything else is JSON-quoted.
_PLAIN_WORDS = frozenset({HOST, "local", "sentinel"})


def _yaml_flow(mapping: dict) -> str:
    return "{" + ", ".join(f"{k}: {_yaml_scalar(v)}" for k, v in mapping.items()) + "}"


def inventory_text(data: dict) -> str:
    """`data` (from inventory_data) as YAML with one flow-style line per host."""
    top = data["all"]
    lines = [
        "# Written by `redisops lab up`. The password is in password_file, never in this file.",
        "all:",
        "  vars:",
        *(f"    {k}: {_yaml_scalar(v)}" for k, v in top["vars"].items()),
        "  children:",
    ]
    for group, body in top["children"].items():
        lines.append(f"    {group}:")
        if "vars" in body:
            lines.append(f"      vars: {_yaml_flow(body['vars'])}")
        lines.append("      hosts:")
        lines.extend(f"        {name}: {_yaml_flow(h)}" for name, h in body["hosts"].items())
    return "\n".join(lines) + "\n"
