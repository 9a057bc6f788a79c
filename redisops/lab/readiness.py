"""Waiting, with a deadline, until the lab's processes answer and agree on the topology.

Every wait polls until `deadline` (a time.monotonic() value) and then raises LabError naming
the process that was not ready, why, and its log file. The password never enters a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from redisops.errors import LabError
from redisops.fleet.connection import build_client
from redisops.lab import daemon
from redisops.lab.layout import HOST, MASTER_NAME, Member

if TYPE_CHECKING:
    import redis

T = TypeVar("T")
POLL_SECONDS = 0.05
# Sentinel flags that mean it does not (yet, or any more) see an instance as healthy.
UNHEALTHY_FLAGS = frozenset({"s_down", "o_down", "disconnected"})


class NotReady(Exception):
    """One poll found `member` not ready yet, for `reason`."""

    def __init__(self, member: Member, reason: str) -> None:
        super().__init__(reason)
        self.member = member
        self.reason = reason


def connect(member: Member, password: str, *, timeout: float = 1.0) -> redis.Redis:
    """A client for one lab process (Redis node or Sentinel); the caller closes it.

    No retries: redis-py 6+ retries three times by default, which would stretch each poll.
    """
    return build_client(HOST, member.port, password=password, timeout=timeout, decode=True)


def poll(check: Callable[[], T], *, deadline: float, timeout: float) -> T:
    """Call `check` until it returns instead of raising NotReady; LabError at `deadline`."""
    while True:
        try:
            return check()
        except NotReady as exc:
            if time.monotonic() >= deadline:
                raise LabError(
                    f"{exc.member.name} was not ready within {timeout:g}s: {exc.reason}",
                    hint=f"see its log: {exc.member.logfile}",
                ) from None
        time.sleep(POLL_SECONDS)


def call_member(member: Member, password: str, fn: Callable[[redis.Redis], T]) -> T:
    """Run `fn` on a fresh client; connection trouble and errors become NotReady."""
    import redis

    client = connect(member, password)
    try:
        return fn(client)
    except (redis.RedisError, OSError) as exc:
        # redis-py messages carry no password; redact anyway in case a server echoes one.
        reason = (str(exc).splitlines() or [type(exc).__name__])[0].replace(password, "***")
        raise NotReady(member, f"{type(exc).__name__}: {reason}") from None
    finally:
        client.close()


def ping(member: Member, password: str, *, log_offset: int = 0) -> None:
    """One PING with auth. Raises LabError at once when the start failed for good: the
    process died, or its log (past `log_offset`) says Redis is aborting."""
    pid = daemon.read_pid(member)
    if pid is None or not daemon.alive(pid):
        failure = daemon.startup_failure(member, log_offset)
        if failure or pid is not None:
            reason = (failure or "the process exited").replace(password, "***")
            raise LabError(
                f"{member.name} failed to start: {reason}"[:300],
                hint=f"see its log: {member.logfile}",
            )
    call_member(member, password, lambda c: c.ping())


def _replication(member: Member, password: str) -> dict:
    return call_member(member, password, lambda c: c.info("replication"))


def topology(nodes: list[Member], password: str) -> Member:
    """The one master, when every other node is its replica with the link up; else NotReady."""
    infos = {m.name: _replication(m, password) for m in nodes}
    masters = [m for m in nodes if infos[m.name].get("role") == "master"]
    if len(masters) != 1:
        names = ", ".join(m.name for m in masters) or "none"
        raise NotReady(nodes[0], f"expected one master, found {names}")
    master = masters[0]
    for node in nodes:
        info = infos[node.name]
        if node is master:
            continue
        if info.get("role") != "slave" or int(info.get("master_port", 0)) != master.port:
            raise NotReady(node, f"not yet a replica of {master.name}")
        if info.get("master_link_status") != "up":
            raise NotReady(node, "master_link_status is not up")
    return master


def master_port(sentinel: Member, password: str) -> int:
    """The port `sentinel` names for the master of `lab`."""
    address = call_member(
        sentinel, password, lambda c: c.sentinel_get_master_addr_by_name(MASTER_NAME)
    )
    if not address:
        raise NotReady(sentinel, f"knows no master named {MASTER_NAME}")
    return int(address[1])


def follow(nodes: list[Member], master: Member, password: str) -> None:
    """Make every node but `master` its replica (REPLICAOF, then CONFIG REWRITE), as Sentinel
    itself would, so a node restarted with a stale role cannot stay a second master."""

    def replicate(client: redis.Redis) -> None:
        client.execute_command("REPLICAOF", HOST, master.port)
        client.config_rewrite()

    for node in nodes:
        if node is master:
            continue
        info = _replication(node, password)
        if info.get("role") != "slave" or int(info.get("master_port", 0)) != master.port:
            call_member(node, password, replicate)


def caught_up(replicas: list[Member], master: Member, password: str, offset: int) -> None:
    """NotReady until every replica has processed the master's stream up to `offset`."""
    for replica in replicas:
        info = _replication(replica, password)
        if int(info.get("slave_repl_offset", -1)) < offset:
            raise NotReady(replica, f"replication offset behind {master.name}")


def master_offset(master: Member, password: str) -> int:
    return int(_replication(master, password).get("master_repl_offset", 0))


def _healthy_ports(entries: list[dict]) -> set[int]:
    """Ports of the entries the sentinel sees up and that answered its PING.

    `last-ping-sent` is non-zero from the moment an instance is discovered until a PING gets a
    valid reply, and stays so when it gets -NOAUTH: a fresh entry is not proof that auth works.
    """
    ports = set()
    for entry in entries:
        flags = set(str(entry.get("flags", "")).split(","))
        if not flags & UNHEALTHY_FLAGS and int(entry.get("last-ping-sent", 1)) == 0:
            ports.add(int(entry["port"]))
    return ports


def sentinel_view(
    sentinel: Member, password: str, master: Member, replicas: list[Member], peers: list[Member]
) -> None:
    """NotReady until `sentinel` sees `master` healthy, and every replica and peer sentinel."""

    def look(client: redis.Redis) -> tuple[dict, list[dict], list[dict]]:
        return (
            client.sentinel_master(MASTER_NAME),
            client.sentinel_slaves(MASTER_NAME),
            client.sentinel_sentinels(MASTER_NAME),
        )

    state, replica_entries, sentinel_entries = call_member(sentinel, password, look)
    if int(state.get("port", 0)) != master.port or not _healthy_ports([state]):
        raise NotReady(sentinel, f"does not yet see {master.name} as a healthy master")
    missing = {r.port for r in replicas} - _healthy_ports(replica_entries)
    if missing:
        raise NotReady(sentinel, f"does not yet see the replica(s) on port(s) {sorted(missing)}")
    missing = {p.port for p in peers} - _healthy_ports(sentinel_entries)
    if missing:
        raise NotReady(sentinel, f"does not yet see the sentinel(s) on port(s) {sorted(missing)}")
