"""Which server a host runs: flavour, real version, mode, process names, config aliases.

One reading of `INFO server` answers it for every concern. Valkey reports
`redis_version:7.2.4` for client compatibility; its own version is `valkey_version`, its
name `server_name:valkey`, and its mode `server_mode` (no `redis_mode`). Redis 7.0-7.4
has neither `server_name` nor `server_mode`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redisops.errors import HostError

if TYPE_CHECKING:
    from redisops.fleet.host import Host

SERVER_PROCESS_NAMES = ("redis-server", "valkey-server")
SENTINEL_PROCESS_NAMES = ("redis-sentinel", "valkey-sentinel")

# Old or other-flavour name -> the name Redis 7 uses. Settings are compared, masked and applied
# under that name, so an alias can never slip past a check made on the canonical one (Redis
# 7.0 matches an alias only as the first pair of a multi-setting CONFIG SET; Valkey 8+ calls
# masterauth/masteruser primaryauth/primaryuser and accepts both).
CONFIG_ALIASES: Mapping[str, str] = {
    "primaryauth": "masterauth",
    "primaryuser": "masteruser",
    "slaveof": "replicaof",
    "slave-serve-stale-data": "replica-serve-stale-data",
    "slave-read-only": "replica-read-only",
    "slave-ignore-maxmemory": "replica-ignore-maxmemory",
    "slave-lazy-flush": "replica-lazy-flush",
    "slave-priority": "replica-priority",
    "slave-announce-ip": "replica-announce-ip",
    "slave-announce-port": "replica-announce-port",
    "min-slaves-to-write": "min-replicas-to-write",
    "min-slaves-max-lag": "min-replicas-max-lag",
    "repl-ping-slave-period": "repl-ping-replica-period",
    "cluster-slave-validity-factor": "cluster-replica-validity-factor",
    "cluster-slave-no-failover": "cluster-replica-no-failover",
    "hash-max-ziplist-entries": "hash-max-listpack-entries",
    "hash-max-ziplist-value": "hash-max-listpack-value",
    "zset-max-ziplist-entries": "zset-max-listpack-entries",
    "zset-max-ziplist-value": "zset-max-listpack-value",
    "list-max-ziplist-size": "list-max-listpack-size",
    "lua-time-limit": "busy-reply-threshold",
}


def canonical_config_name(name: str) -> str:
    """The canonical name of a config setting (`primaryauth` -> `masterauth`), lower case."""
    lowered = name.strip().lower()
    return CONFIG_ALIASES.get(lowered, lowered)


def is_server_process(comm: str) -> bool:
    """True when a process name (`/proc/PID/comm`, argv[0]) is a Redis or Valkey server or
    sentinel; Redis and Valkey rename their process title, so the start of the name counts."""
    base = comm.strip().rsplit("/", 1)[-1]
    return base.startswith(("redis", "valkey"))


@dataclass(frozen=True)
class ServerIdentity:
    """What a host runs, read from its `INFO server` section."""

    flavour: str  # "redis" | "valkey"
    version: str  # the server's own version: "7.0.15", "9.1.2"
    mode: str  # "standalone" | "sentinel" | "cluster"

    @property
    def label(self) -> str:
        """`Redis 7.0.15`, `Valkey 9.1.2`: how a person names it."""
        return f"{self.flavour.capitalize()} {self.version}"

    @property
    def is_sentinel(self) -> bool:
        return self.mode == "sentinel"


def server_identity(info: Mapping[str, Any]) -> ServerIdentity:
    """The identity from INFO (the `server` section, or all of INFO)."""
    flavour = str(info.get("server_name") or "redis").lower()
    version = str(info.get(f"{flavour}_version") or info.get("redis_version") or "?")
    mode = str(info.get("server_mode") or info.get("redis_mode") or "standalone").lower()
    return ServerIdentity(flavour=flavour, version=version, mode=mode)


def refuse_sentinel_as_redis(host: Host, info: Mapping[str, Any]) -> ServerIdentity:
    """The identity of a host declared as Redis; HostError (an error row) when it is a Sentinel,
    which would otherwise answer with empty keyspaces, slowlogs and configs."""
    identity = server_identity(info)
    if identity.is_sentinel:
        raise HostError(
            f"{host.address} is a Sentinel, not a Redis server",
            hint=f"set `role: sentinel` for {host.name} in the inventory",
        )
    return identity


def version_tuple(version: str) -> tuple[int, ...]:
    """`"7.2.4"` -> (7, 2, 4); parts that are not numbers end the tuple."""
    parts: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)
