"""A lab Redis Cluster: slots split evenly over the masters, replicas attached, all nodes met.

The steps `redis-cli --cluster create` takes, done over redis-py so the password never enters
a process's arguments: ADDSLOTS on each master, a distinct config epoch per master (so no two
masters start with the same one), MEET every node to the first, wait until every node knows
every other, CLUSTER REPLICATE for the replicas, then wait for `cluster_state:ok` everywhere.
Every wait polls a real condition until the lab's deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from redisops.errors import LabError
from redisops.lab.layout import HOST, Member
from redisops.lab.readiness import NotReady, call_member

SLOTS = 16384
T = TypeVar("T")
Wait = Callable[[Callable[[], T]], T]


def slot_ranges(shards: int) -> list[range]:
    """The slots of each master: 16384 split into `shards` contiguous, near-equal ranges."""
    bounds = [SLOTS * i // shards for i in range(shards + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(shards)]


def form_cluster(
    masters: list[Member], replicas_of: dict[str, list[Member]], password: str, wait: Wait
) -> None:
    """Turn freshly started, empty cluster-enabled nodes into one healthy cluster."""
    nodes = [*masters, *(r for m in masters for r in replicas_of[m.name])]
    for epoch, (master, slots) in enumerate(
        zip(masters, slot_ranges(len(masters)), strict=True), start=1
    ):
        # Not retried: a second ADDSLOTS of the same slots fails ("busy"), so once is the rule.
        _once(master, password, "CLUSTER", "ADDSLOTS", *slots)
        _once(master, password, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
    first = nodes[0]
    for node in nodes[1:]:
        _once(node, password, "CLUSTER", "MEET", HOST, first.port)
    for node in nodes:
        wait(lambda n=node: _knows_all(n, password, len(nodes)))
    ids = {master.name: node_id(master, password) for master in masters}
    for master in masters:
        for replica in replicas_of[master.name]:
            # REPLICATE needs the replica to know the master already; _knows_all saw to that.
            wait(lambda r=replica, m=master: _replicate(r, password, ids[m.name]))
    wait_healthy(nodes, password, wait)


def _once(member: Member, password: str, *command: object) -> None:
    try:
        call_member(member, password, lambda c: c.execute_command(*command))
    except NotReady as exc:
        raise LabError(
            f"{member.name}: {' '.join(map(str, command[:2]))} failed: {exc.reason}",
            hint=f"see its log: {member.logfile}",
        ) from None


def _replicate(member: Member, password: str, master_id: str) -> None:
    call_member(member, password, lambda c: c.execute_command("CLUSTER", "REPLICATE", master_id))


def wait_healthy(nodes: list[Member], password: str, wait: Wait) -> None:
    """Until every node says `cluster_state:ok` and every replica's link to its master is up."""
    replicas = sum(1 for node in nodes if node.role == "replica")
    for node in nodes:
        wait(lambda n=node: _state_ok(n, password))
        # Gossip spreads each replica's new role: every node must see all of them as replicas.
        wait(lambda n=node: _sees_replicas(n, password, replicas))
    for node in nodes:
        wait(lambda n=node: _replica_linked(n, password))


def node_id(member: Member, password: str) -> str:
    return str(call_member(member, password, lambda c: c.execute_command("CLUSTER", "MYID")))


def _node_flags(member: Member, password: str) -> list[str]:
    text = call_member(member, password, lambda c: c.execute_command("CLUSTER", "NODES"))
    if isinstance(text, dict):  # redis-py may parse CLUSTER NODES into {address: fields}
        return [str(fields.get("flags", "")) for fields in text.values()]
    return [line.split()[2] for line in str(text).splitlines() if line.strip()]


def _sees_replicas(member: Member, password: str, count: int) -> None:
    seen = sum(1 for flags in _node_flags(member, password) if "slave" in flags.split(","))
    if seen != count:
        raise NotReady(member, f"sees {seen} of {count} replicas")


def _knows_all(member: Member, password: str, count: int) -> None:
    flags = _node_flags(member, password)
    known = [f for f in flags if "handshake" not in f and "noaddr" not in f]
    if len(known) < count:
        raise NotReady(member, f"knows {len(known)} of {count} cluster nodes")


def _state_ok(member: Member, password: str) -> None:
    info = call_member(member, password, lambda c: c.execute_command("CLUSTER", "INFO"))
    state = info.get("cluster_state") if isinstance(info, dict) else None
    if state != "ok" and "cluster_state:ok" not in str(info):
        raise NotReady(member, "cluster_state is not ok yet")


def _replica_linked(member: Member, password: str) -> None:
    info = call_member(member, password, lambda c: c.info("replication"))
    if info.get("role") == "slave" and info.get("master_link_status") != "up":
        raise NotReady(member, "master_link_status is not up")
