"""Which server a host runs: flavour, real version, mode, process names, config aliases.

One reading of `INFO server` answers it for every concern. Valkey reports
`redis_version:7.2.4` for client compatibility; its own version is `valkey_version`, its
name `server_name:valkey`, and its mode `server_mode` (no `redis_mode`). Redis 7.0-7.4
has neither `server_name` nor `server_mode`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SERVER_PROCESS_NAMES = ("redis-server", "valkey-server")
SENTINEL_PROCESS_NAMES = ("redis-sentinel", "valkey-sentinel")

# Config names that mean the same setting; the key is the canonical (Redis 7.0) name.
# Valkey 8+ renamed master* to primary*; Redis keeps slaveof etc. as aliases of replica*.
CONFIG_ALIASES: dict[str, tuple[str, ...]] = {
    "masterauth": ("primaryauth",),
    "masteruser": ("primaryuser",),
    "replicaof": ("slaveof",),
    "replica-read-only": ("slave-read-only",),
    "replica-serve-stale-data": ("slave-serve-stale-data",),
    "replica-priority": ("slave-priority",),
    "replica-lazy-flush": ("slave-lazy-flush",),
}
_CANONICAL = {alias: name for name, aliases in CONFIG_ALIASES.items() for alias in aliases}


def canonical_config_name(name: str) -> str:
    """The canonical name of a config setting (`primaryauth` -> `masterauth`), lower case."""
    lowered = name.lower()
    return _CANONICAL.get(lowered, lowered)


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


def version_tuple(version: str) -> tuple[int, ...]:
    """`"7.2.4"` -> (7, 2, 4); parts that are not numbers end the tuple."""
    parts: list[int] = []
    for part in version.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)
