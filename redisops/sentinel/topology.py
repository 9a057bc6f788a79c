"""What the sentinels say about the masters they watch, and what is wrong with it.

`read_sentinel` asks one Sentinel (a fan-out task). `sentinel_status` asks every selected
Sentinel, puts their answers side by side per master, adds each master's own INFO (the only
source of replication offsets, hence of lag in bytes) and names the problems. A drill's
pre-checks and its wait for a settled topology read the same status.
"""

from __future__ import annotations

import functools
import socket
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from redisops.fleet.connection import redis_client
from redisops.fleet.fanout import run_on_hosts
from redisops.fleet.host import Host
from redisops.results import HostResult
from redisops.sentinel import DEFAULT_MAX_LAG
from redisops.serverinfo import as_int, replicas

CLIENT_NAME = "redisops-sentinel"
DOWN_FLAGS = frozenset({"s_down", "o_down", "disconnected"})
# Redis's default min-replicas-max-lag: a replica silent for longer is not keeping up.
MAX_ACK_AGE_SECONDS = 10


@dataclass(frozen=True)
class ReplicaView:
    """A replica as one Sentinel lists it; `link` is master-link-status (ok or err) as the
    replica reported it in the Sentinel's last INFO, which may be 10 s old."""

    ip: str
    port: int
    flags: tuple[str, ...]
    link: str
    priority: int


@dataclass(frozen=True)
class PeerView:
    """Another Sentinel watching the same master, as this one sees it."""

    ip: str
    port: int
    flags: tuple[str, ...]


@dataclass(frozen=True)
class MasterView:
    """One monitored master as one Sentinel sees it; times in milliseconds."""

    name: str
    ip: str
    port: int
    flags: tuple[str, ...]
    quorum: int
    down_after_ms: int
    failover_timeout_ms: int
    parallel_syncs: int
    config_epoch: int
    quorum_ok: bool
    ckquorum: str
    replicas: tuple[ReplicaView, ...]
    peers: tuple[PeerView, ...]


@dataclass(frozen=True)
class SentinelReport:
    """Everything one Sentinel told: the masters it monitors."""

    masters: tuple[MasterView, ...]


@dataclass(frozen=True)
class Problem:
    """Something that makes a master unsafe to fail over.

    `kind` groups problems for the drill's pre-checks: sentinels, quorum, agreement, settings,
    master, failover, replicas, replica-down, replica-lag.
    """

    kind: str
    message: str


@dataclass(frozen=True)
class ReplicaStatus:
    """A replica of a monitored master. `link` is up, down, or the master's sync state
    (wait_bgsave, send_bulk); lags come from the master's INFO and are None without it."""

    address: str
    host: str | None
    flags: tuple[str, ...]
    link: str
    lag_bytes: int | None
    lag_seconds: int | None
    priority: int


@dataclass(frozen=True)
class MasterStatus:
    """One master as the sentinels together see it, with its problems (none means healthy).

    `address` is what most sentinels name; `named_by` what each one names; `role` is what the
    master's own INFO says (None when it was not read).
    """

    name: str
    address: str
    host: str | None
    flags: tuple[str, ...]
    role: str | None
    named_by: dict[str, str]
    agreed: bool
    quorum: int
    quorum_ok: bool
    sentinels_seen: int
    down_after_ms: int
    failover_timeout_ms: int
    parallel_syncs: int
    replicas: tuple[ReplicaStatus, ...]
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    healthy: bool


@dataclass(frozen=True)
class SentinelStatus:
    """Per-sentinel answers (fan-out rows) and the per-master verdicts drawn from them."""

    results: list[HostResult[SentinelReport]]
    masters: tuple[MasterStatus, ...]

    @property
    def healthy(self) -> bool:
        return all(r.ok for r in self.results) and all(m.healthy for m in self.masters)

    def master(self, name: str) -> MasterStatus | None:
        return next((m for m in self.masters if m.name == name), None)


def address_of(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def read_sentinel(host: Host, *, timeout: float, only: str | None = None) -> SentinelReport:
    """What one Sentinel knows about every master it monitors (or only the one named `only`):
    its replicas, its peer sentinels and its CKQUORUM verdict. Two round trips; raises
    HostError when the Sentinel fails."""
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        states = [sentinel_fields(item) for item in client.execute_command("SENTINEL", "MASTERS")]
        states = [state for state in states if only is None or state.get("name") == only]
        pipe = client.pipeline(transaction=False)
        for state in states:
            pipe.execute_command("SENTINEL", "REPLICAS", state["name"])
            pipe.execute_command("SENTINEL", "SENTINELS", state["name"])
            pipe.execute_command("SENTINEL", "CKQUORUM", state["name"])
        replies = pipe.execute(raise_on_error=False) if states else []
        for index, reply in enumerate(replies):
            if isinstance(reply, Exception) and index % 3 != 2:
                raise reply  # REPLICAS and SENTINELS never fail on a monitored name
    masters = []
    for index, state in enumerate(states):
        replicas, peers, verdict = replies[3 * index : 3 * index + 3]
        masters.append(
            MasterView(
                name=str(state["name"]),
                ip=str(state["ip"]),
                port=int(state["port"]),
                flags=_flags(state),
                quorum=int(state.get("quorum", 0)),
                down_after_ms=int(state.get("down-after-milliseconds", 0)),
                failover_timeout_ms=int(state.get("failover-timeout", 0)),
                parallel_syncs=int(state.get("parallel-syncs", 0)),
                config_epoch=int(state.get("config-epoch", 0)),
                quorum_ok=not isinstance(verdict, Exception),
                ckquorum=" ".join(str(verdict).split()),
                replicas=tuple(_replica_view(sentinel_fields(item)) for item in replicas),
                peers=tuple(
                    PeerView(str(f["ip"]), int(f["port"]), _flags(f))
                    for f in map(sentinel_fields, peers)
                ),
            )
        )
    return SentinelReport(tuple(masters))


def sentinel_status(
    sentinels: Sequence[Host],
    inventory: Sequence[Host],
    *,
    timeout: float,
    parallel: int,
    max_lag: int = DEFAULT_MAX_LAG,
    only: str | None = None,
) -> SentinelStatus:
    """Ask every Sentinel in `sentinels`, then each master (found in `inventory` by address)
    for its replication INFO, and judge every monitored master (or only the one named `only`).

    A replica more than `max_lag` bytes behind is a problem. Never raises for a host that
    fails: a Sentinel that fails is an error row, a master that fails is a problem.
    """
    results = run_on_hosts(
        sentinels, lambda host: read_sentinel(host, timeout=timeout, only=only), parallel=parallel
    )
    views: dict[str, list[tuple[str, MasterView]]] = {}
    for result in results:
        for view in result.data.masters if result.ok and result.data else ():
            views.setdefault(view.name, []).append((result.host, view))
    silent = [result.host for result in results if not result.ok]
    chosen = {name: _reference(named) for name, named in views.items()}
    masters = {name: find_host(inventory, view.ip, view.port) for name, view in chosen.items()}
    found = {host.name: host for host in masters.values() if host is not None}
    infos = {
        row.host: row
        for row in run_on_hosts(
            list(found.values()),
            lambda host: _replication(host, timeout=timeout),
            parallel=parallel,
        )
    }
    judged = []
    for name, named in views.items():
        host = masters[name]
        info_row = infos.get(host.name) if host else None
        status = _judge(
            chosen[name], named, host, info_row, inventory, silent=silent, max_lag=max_lag
        )
        absent = _forgotten(results, named)
        if absent:
            problem = Problem(
                "sentinels",
                f"{', '.join(absent)} no longer monitor{'s' * (len(absent) == 1)} {name}, "
                "though the other sentinels know it as a peer (a half-done SENTINEL REMOVE: "
                "`redisops sentinel monitor --from FILE` puts it back)",
            )
            status = replace(status, problems=(problem, *status.problems), healthy=False)
        judged.append(status)
    return SentinelStatus(results, tuple(judged))


def _forgotten(
    results: list[HostResult[SentinelReport]], named: list[tuple[str, MasterView]]
) -> list[str]:
    """Answering sentinels that do not monitor the master while those that do list them as a
    peer of it: the master was removed from some sentinels only. (Sentinels of other masters,
    that never watched this one, are not peers of it.)"""
    peers = {address_of(p.ip, p.port) for _, view in named for p in view.peers}
    watching = {sentinel for sentinel, _ in named}
    return [r.host for r in results if r.ok and r.host not in watching and r.address in peers]


@functools.lru_cache(maxsize=256)
def _resolve(name: str) -> frozenset[str]:
    try:
        return frozenset(str(info[4][0]) for info in socket.getaddrinfo(name, None))
    except OSError:
        return frozenset()


def find_host(hosts: Sequence[Host], ip: str, port: int) -> Host | None:
    """The inventory's Redis host at ip:port as Sentinel names it; host names are resolved
    only when no host is written with that very IP (Sentinel knows addresses, not names)."""
    candidates = [host for host in hosts if not host.is_sentinel and host.port == port]
    for host in candidates:
        if host.host == ip:
            return host
    return next((host for host in candidates if ip in _resolve(host.host)), None)


def _replication(host: Host, *, timeout: float) -> dict[str, Any]:
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        return client.info("replication")


def _reference(named: list[tuple[str, MasterView]]) -> MasterView:
    """The view of the first Sentinel naming the address most of them name."""
    votes = Counter(address_of(view.ip, view.port) for _, view in named)
    address = votes.most_common(1)[0][0]
    return next(view for _, view in named if address_of(view.ip, view.port) == address)


def _judge(
    view: MasterView,
    named: list[tuple[str, MasterView]],
    host: Host | None,
    info_row: HostResult | None,
    inventory: Sequence[Host],
    *,
    silent: list[str],
    max_lag: int,
) -> MasterStatus:
    address = address_of(view.ip, view.port)
    info = info_row.data if info_row is not None and info_row.ok else None
    replicas = tuple(
        sorted(
            (_replica_status(r, info, inventory) for r in view.replicas),
            key=lambda r: (r.host is None, r.host or "", r.address),
        )
    )
    problems: list[Problem] = []
    notes: list[str] = []
    if silent:
        problems.append(Problem("sentinels", f"{', '.join(silent)} did not answer"))
    problems.extend(_sentinel_problems(named))
    if host is None:
        notes.append(f"the master {address} is not in the inventory: lag in bytes unknown")
    elif info is None:
        error = info_row.error if info_row is not None else "not read"
        problems.append(Problem("master", f"master {host.name} does not answer: {error}"))
    elif info.get("role") != "master":
        problems.append(
            Problem("master", f"{host.name} ({address}) reports role {info.get('role')}")
        )
    problems.extend(_replica_problems(replicas, max_lag))
    return MasterStatus(
        name=view.name,
        address=address,
        host=host.name if host else None,
        flags=view.flags,
        role=str(info["role"]) if info else None,
        named_by={sentinel: address_of(v.ip, v.port) for sentinel, v in named},
        agreed=len({address_of(v.ip, v.port) for _, v in named}) == 1,
        quorum=view.quorum,
        quorum_ok=all(v.quorum_ok for _, v in named),
        sentinels_seen=max(len(v.peers) + 1 for _, v in named),
        down_after_ms=view.down_after_ms,
        failover_timeout_ms=view.failover_timeout_ms,
        parallel_syncs=view.parallel_syncs,
        replicas=replicas,
        problems=tuple(problems),
        notes=tuple(notes),
        healthy=not problems,
    )


def _sentinel_problems(named: list[tuple[str, MasterView]]) -> list[Problem]:
    problems = []
    addresses = {address_of(v.ip, v.port) for _, v in named}
    if len(addresses) > 1:
        said = "; ".join(f"{s} names {address_of(v.ip, v.port)}" for s, v in named)
        problems.append(Problem("agreement", f"sentinels disagree on the master: {said}"))
    down_peers: dict[str, str] = {}
    for sentinel, view in named:
        if not view.quorum_ok:
            problems.append(Problem("quorum", f"{sentinel}: {view.ckquorum}"))
        down = sorted(DOWN_FLAGS & set(view.flags))
        if down:
            problems.append(Problem("master", f"{sentinel} sees the master {','.join(down)}"))
        if "failover_in_progress" in view.flags:
            problems.append(Problem("failover", f"{sentinel} has a failover in progress"))
        for peer in view.peers:
            peer_down = sorted(DOWN_FLAGS & set(peer.flags))
            if peer_down:
                down_peers.setdefault(
                    address_of(peer.ip, peer.port), f"{','.join(peer_down)} for {sentinel}"
                )
    for peer, why in down_peers.items():
        problems.append(Problem("sentinels", f"sentinel {peer} is down ({why})"))
    return problems + _settings_drift(named)


# The per-master settings every Sentinel of a master must share: with different down-after or
# quorum, whether and when a failover starts depends on which Sentinel looks first.
COMPARED_SETTINGS = (
    ("quorum", "quorum"),
    ("down-after-milliseconds", "down_after_ms"),
    ("failover-timeout", "failover_timeout_ms"),
    ("parallel-syncs", "parallel_syncs"),
)


def _settings_drift(named: list[tuple[str, MasterView]]) -> list[Problem]:
    """A problem per setting the Sentinels of one master disagree on, with each one's value."""
    problems = []
    for setting, field in COMPARED_SETTINGS:
        values = [(sentinel, getattr(view, field)) for sentinel, view in named]
        if len({value for _, value in values}) > 1:
            said = ", ".join(f"{sentinel} {value}" for sentinel, value in values)
            problems.append(Problem("settings", f"sentinels disagree on {setting}: {said}"))
    return problems


def _replica_problems(replicas: tuple[ReplicaStatus, ...], max_lag: int) -> list[Problem]:
    if not replicas:
        return [Problem("replicas", "no replicas: nothing to fail over to")]
    problems = []
    for replica in replicas:
        label = replica_label(replica)
        down = sorted(DOWN_FLAGS & set(replica.flags))
        if down:
            problems.append(Problem("replica-down", f"replica {label} is down ({','.join(down)})"))
        elif replica.link != "up":
            problems.append(
                Problem("replica-down", f"replica {label} is not replicating (link {replica.link})")
            )
        elif replica.lag_bytes is not None and replica.lag_bytes > max_lag:
            problems.append(
                Problem(
                    "replica-lag",
                    f"replica {label} is {replica.lag_bytes} bytes behind (max lag {max_lag})",
                )
            )
        elif replica.lag_seconds is not None and replica.lag_seconds > MAX_ACK_AGE_SECONDS:
            problems.append(
                Problem(
                    "replica-lag",
                    f"replica {label} last acknowledged {replica.lag_seconds}s ago",
                )
            )
    if all(replica.priority == 0 for replica in replicas):
        problems.append(Problem("replicas", "every replica has priority 0: none can be promoted"))
    return problems


def replica_label(replica: ReplicaStatus) -> str:
    return f"{replica.host} ({replica.address})" if replica.host else replica.address


def _replica_status(
    view: ReplicaView, info: dict[str, Any] | None, inventory: Sequence[Host]
) -> ReplicaStatus:
    host = find_host(inventory, view.ip, view.port)
    link = "up" if view.link == "ok" else "down"
    lag_bytes = lag_seconds = None
    if info is not None:
        entry = _info_replica(info, view.ip, view.port)
        link = "down" if entry is None else _link(str(entry.get("state")))
        if entry is not None:
            lag_bytes = max(0, int(info.get("master_repl_offset", 0)) - int(entry["offset"]))
            lag_seconds = int(entry.get("lag", 0))
    return ReplicaStatus(
        address=address_of(view.ip, view.port),
        host=host.name if host else None,
        flags=view.flags,
        link=link,
        lag_bytes=lag_bytes,
        lag_seconds=lag_seconds,
        priority=view.priority,
    )


def _info_replica(info: dict[str, Any], ip: str, port: int) -> dict[str, Any] | None:
    """The master's INFO entry (slave0, slave1, …) for the replica at ip:port."""
    for entry in replicas(info):
        if str(entry.get("ip")) == ip and as_int(entry.get("port")) == port:
            return dict(entry)
    return None


def _link(state: str) -> str:
    return "up" if state == "online" else state


def _replica_view(fields: dict[str, Any]) -> ReplicaView:
    return ReplicaView(
        ip=str(fields["ip"]),
        port=int(fields["port"]),
        flags=_flags(fields),
        link=str(fields.get("master-link-status", "err")),
        priority=int(fields.get("slave-priority", 100)),
    )


def sentinel_fields(item: dict[str, Any] | list[Any]) -> dict[str, Any]:
    """One entry of a Sentinel reply as a dict (redis-py 8 maps it; older ones pass a flat
    [key, value, key, value, …] list)."""
    if isinstance(item, dict):
        return item
    return dict(zip(item[::2], item[1::2], strict=True))


def _flags(fields: dict[str, Any]) -> tuple[str, ...]:
    return tuple(flag for flag in str(fields.get("flags", "")).split(",") if flag)
