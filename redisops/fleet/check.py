"""`inventory check`: is each host up, what is it, and can redisops reach its machine."""

from __future__ import annotations

from dataclasses import dataclass

from redisops.errors import HostError
from redisops.fleet.connection import redis_client
from redisops.fleet.fanout import PartialFailure
from redisops.fleet.host import ClusterNode, Host
from redisops.fleet.server import server_identity


@dataclass(frozen=True)
class HostCheck:
    """What one INFO call (and an SSH round trip, when configured) told about a host.

    Memory figures are bytes; `maxmemory` 0 means no limit; `ssh` is ok, error or skipped
    (skipped for local hosts and for hosts without SSH settings).
    """

    role: str
    version: str  # the server's own version (Valkey's, not its compatibility redis_version)
    flavour: str  # redis | valkey
    uptime_seconds: int
    used_memory: int | None
    maxmemory: int | None
    connected_replicas: int | None
    master_host: str | None
    master_port: int | None
    master_link_status: str | None
    monitored_masters: int | None
    ssh: str
    ssh_error: str | None = None
    cluster: ClusterNode | None = None  # where a discovered node sits: shard, role, slots


def check_host(host: Host, *, timeout: float) -> HostCheck:
    """Check one host; raises HostError if Redis does not answer, PartialFailure if SSH fails."""
    with redis_client(host, timeout=timeout, decode=True) as client:
        info = client.info("everything" if not host.is_sentinel else "default")
        if not info:  # a Redis 6.2 Sentinel answers INFO EVERYTHING with nothing at all
            info = client.info("default")

    identity = server_identity(info)
    role = "sentinel" if identity.is_sentinel else _role(info)
    replica = role == "replica"
    ssh_error = _ssh_error(host, timeout) if _uses_ssh(host) else None
    check = HostCheck(
        role=role,
        version=identity.version,
        flavour=identity.flavour,
        uptime_seconds=int(info.get("uptime_in_seconds", 0)),
        used_memory=_int_or_none(info.get("used_memory")),
        maxmemory=_int_or_none(info.get("maxmemory")),
        connected_replicas=None if role == "sentinel" else int(info.get("connected_slaves", 0)),
        master_host=str(info["master_host"]) if replica and "master_host" in info else None,
        master_port=_int_or_none(info.get("master_port")) if replica else None,
        master_link_status=str(info.get("master_link_status")) if replica else None,
        monitored_masters=_int_or_none(info.get("sentinel_masters")),
        ssh="skipped" if not _uses_ssh(host) else ("error" if ssh_error else "ok"),
        ssh_error=ssh_error,
        cluster=host.node,
    )
    if identity.is_sentinel and not host.is_sentinel:
        raise PartialFailure(
            f"{host.address} is a Sentinel, not a Redis server "
            f"(hint: set `role: sentinel` for {host.name} in the inventory)",
            check,
        )
    if ssh_error:
        raise PartialFailure(f"ssh: {ssh_error}", check)
    return check


def _role(info: dict) -> str:
    return "replica" if info.get("role") == "slave" else str(info.get("role", "unknown"))


def _uses_ssh(host: Host) -> bool:
    return host.connection == "ssh" and host.has_host_access


def _ssh_error(host: Host, timeout: float) -> str | None:
    from redisops.fleet.hostaccess import open_host_access

    try:
        with open_host_access(host, timeout=timeout) as access:
            access.run(["true"], timeout=timeout)
    except HostError as exc:
        return exc.message
    return None


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, float, str)) and str(value).isdigit() else None
