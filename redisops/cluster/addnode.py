"""`cluster add-node`: join an empty cluster-enabled server to a cluster, as a master without
slots or as a replica of a named master.

The plan reads the new node and changes nothing: it must answer with the cluster's password
(the inventory's: fleet/secrets.py), run with `cluster-enabled yes`, hold no key, know no
other node and serve no slot. Applying sends `CLUSTER MEET` from the new node to a node of
the cluster, waits until every node of the cluster knows it (gossip, not a handshake), then
for a replica `CLUSTER REPLICATE` and waits for its link to the master to be up. Every wait
is bounded by `wait` seconds; nothing is retried that is not idempotent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redisops.change import ChangeOutcome, ChangePlan
from redisops.errors import HostError
from redisops.fleet.cluster import Cluster, NodeLine, parse_nodes
from redisops.fleet.connection import redis_client
from redisops.fleet.host import Host
from redisops.fleet.secrets import resolve_password
from redisops.interrupt import pause, raise_if_stopped
from redisops.results import HostResult
from redisops.serverinfo import keyspace

POLL_SECONDS = 0.1
MASTERAUTH = ("masterauth", "primaryauth")  # Valkey 8+ has both names


@dataclass(frozen=True)
class AddNodePlan:
    """What add-node will do. `role` is master or replica; `master*` name a replica's master
    (None for a new master); `meet` is the address CLUSTER MEET is sent to."""

    cluster: str
    node: str
    address: str
    node_id: str | None
    role: str
    master: str | None
    master_id: str | None
    shard: str | None
    meet: str
    cluster_nodes: int
    steps: tuple[str, ...]


@dataclass(frozen=True)
class AddNodeResult:
    """A node added: its id, role, how many nodes of the cluster know it, and how long each
    wait took (seconds)."""

    cluster: str
    node: str
    node_id: str
    role: str
    master: str | None
    known_by: int
    cluster_nodes: int
    meet_seconds: float
    link_seconds: float | None
    slots: int
    note: str


def plan_add_node(
    cluster: Cluster, new: Host, *, replica_of: str | None, timeout: float, wait: float
) -> ChangePlan[AddNodePlan]:
    """Read `new` and the cluster; refuse (blockers) what would not give one healthy cluster."""
    blockers: list[str] = []
    nodes = [h for h in cluster.nodes if h.node is not None]
    if not nodes:
        raise HostError(f"no seed of cluster {cluster.name} answered: nothing to add {new.name} to")
    addresses = {(h.host, h.port) for h in nodes}
    if new.node is not None or (new.host, new.port) in addresses:
        blockers.append(f"{new.name} is already a node of cluster {cluster.name}")
    master = None
    if replica_of is not None:
        master = _find_master(cluster, nodes, replica_of, blockers)
    try:
        blockers += _password_problems(new, nodes[0], cluster.name)
        node_id = _read_new(new, cluster.name, blockers, timeout=timeout)
    except HostError as exc:
        row = HostResult(new.name, new.address, False, exc.message, None)
        return ChangePlan("cluster add-node", [row], None, 0, undone="added", noun="nodes")
    meet = _meet_address(nodes)
    role = "replica" if master is not None else "master"
    steps = [
        f"CLUSTER MEET {meet} from {new.name}",
        f"wait until all {len(nodes)} nodes of {cluster.name} know {new.name} (at most {wait:g}s)",
    ]
    if master is not None:
        steps += [
            f"CLUSTER REPLICATE {master.node.node_id} on {new.name} (replica of {master.name})",
            f"wait until its link to {master.name} is up (at most {wait:g}s)",
        ]
    else:
        steps.append(
            f"{new.name} joins as a master without slots: `redisops -l {cluster.name} cluster "
            "rebalance` gives it some"
        )
    plan = AddNodePlan(
        cluster=cluster.name,
        node=new.name,
        address=new.address,
        node_id=node_id,
        role=role,
        master=master.name if master else None,
        master_id=master.node.node_id if master else None,
        shard=master.node.shard if master else None,
        meet=meet,
        cluster_nodes=len(nodes),
        steps=tuple(steps),
    )
    where = f"a replica of {master.name}" if master else "a master without slots"
    return ChangePlan(
        command="cluster add-node",
        rows=[HostResult(new.name, new.address, True, None, plan)],
        question=f"Add {new.name} to cluster {cluster.name} as {where}?",
        pending=1,
        summary={"cluster": cluster.name, "node": new.name, "role": role},
        blockers=blockers,
        refused=f"cannot add {new.name} to cluster {cluster.name}"
        + (f": {blockers[0]}" if len(blockers) == 1 else "; nothing was changed"),
        undone="added",
        noun="nodes",
    )


def _find_master(
    cluster: Cluster, nodes: Sequence[Host], wanted: str, blockers: list[str]
) -> Host | None:
    """The master `wanted` names: a node's name, a shard (`shard-2`), or a node id (8+
    characters of it); a blocker line when none, or a replica."""
    for host in nodes:
        node = host.node
        if wanted in (host.name, node.shard) or (
            len(wanted) >= 8 and node.node_id.startswith(wanted)
        ):
            if node.role == "master":
                return host
            if wanted != node.shard:
                blockers.append(f"--replica-of {wanted}: {host.name} is a replica; name a master")
                return None
    masters = ", ".join(h.name for h in nodes if h.node.role == "master")
    blockers.append(
        f"--replica-of {wanted}: no master of cluster {cluster.name} has that name, "
        f"shard or node id (masters: {masters})"
    )
    return None


def _password_problems(new: Host, peer: Host, cluster: str) -> list[str]:
    """The new node must take the cluster's password: clients follow MOVED to it with the
    cluster's credentials, and a replica syncs with it (its masterauth). Values never leave
    this function."""
    if resolve_password(new) != resolve_password(peer) or new.username != peer.username:
        return [
            f"{new.name}'s password in the inventory is not cluster {cluster}'s: clients "
            "redirected to it could not authenticate"
        ]
    return []


def _read_new(new: Host, cluster: str, blockers: list[str], *, timeout: float) -> str | None:
    """The new node's id; blocker lines for what makes it unfit (not cluster-enabled, keys,
    known nodes, slots)."""
    import redis

    with redis_client(new, timeout=timeout, decode=True) as client:
        info = client.info()
        if not int(info.get("cluster_enabled", 0)):
            blockers.append(
                f"{new.name} is not cluster-enabled: start it with `cluster-enabled yes`"
            )
            node_id = None
        else:
            node_id = str(client.execute_command("CLUSTER", "MYID"))
            state = _cluster_info(client.execute_command("CLUSTER", "INFO"))
            known = int(state.get("cluster_known_nodes", 1))
            if known > 1:
                blockers.append(
                    f"{new.name} already knows {known - 1} other node(s): it is in a cluster "
                    "(CLUSTER RESET it first if it should leave that one)"
                )
            # Alone, the slots the cluster has assigned are its own.
            elif int(state.get("cluster_slots_assigned", 0)):
                count = int(state["cluster_slots_assigned"])
                blockers.append(f"{new.name} serves {count} slot{'s' if count != 1 else ''}")
        keys = sum(db.get("keys", 0) for db in keyspace(info).values())
        if keys:
            blockers.append(
                f"{new.name} holds {keys:,} key{'s' if keys != 1 else ''}: a new node must "
                "be empty (FLUSHALL it if they are not needed)"
            )
        masterauth = None
        for name in MASTERAUTH:
            try:
                masterauth = client.config_get(name).get(name) or masterauth
            except redis.ResponseError:
                continue
        if (masterauth or None) != resolve_password(new):
            blockers.append(
                f"{new.name}'s masterauth is not the cluster's password: as a replica, or "
                "after a failover, it could not sync from its master (set masterauth in its "
                "config file)"
            )
    return node_id


def _cluster_info(reply: object) -> dict[str, str]:
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    pairs = (line.split(":", 1) for line in str(reply).splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _meet_address(nodes: Sequence[Host]) -> str:
    """IP:port of the first online master (CLUSTER MEET takes an IP, not a name)."""
    best = next(
        (h for h in nodes if h.node.role == "master" and h.node.health == "online"), nodes[0]
    )
    try:
        ip = socket.gethostbyname(best.host)
    except OSError:
        ip = best.host
    return f"{ip}:{best.port}"


def apply_add_node(
    plan: ChangePlan[AddNodePlan], cluster: Cluster, new: Host, *, timeout: float, wait: float
) -> ChangeOutcome[AddNodeResult]:
    """MEET, wait until every node knows the new one, REPLICATE and wait for the link."""
    step = plan.rows[0].data
    try:
        result = _add(step, cluster, new, timeout=timeout, wait=wait)
    except HostError as exc:
        row = HostResult(new.name, new.address, False, exc.message, None)
        return ChangeOutcome([row], errors=[HostError(f"{new.name}: {exc.message}", exc.hint)])
    return ChangeOutcome([HostResult(new.name, new.address, True, None, result)])


def _add(
    step: AddNodePlan, cluster: Cluster, new: Host, *, timeout: float, wait: float
) -> AddNodeResult:
    nodes = [h for h in cluster.nodes if h.node is not None]
    ip, _, port = step.meet.rpartition(":")
    clock = time.monotonic()
    with redis_client(new, timeout=timeout, decode=True) as client:
        client.execute_command("CLUSTER", "MEET", ip, int(port))
        node_id = str(client.execute_command("CLUSTER", "MYID"))
    known_by = _wait_known(nodes, new, node_id, timeout=timeout, wait=wait)
    meet_seconds = round(time.monotonic() - clock, 3)
    link_seconds = None
    if step.master_id:
        clock = time.monotonic()
        _replicate(new, step.master_id, timeout=timeout, wait=wait)
        link_seconds = round(time.monotonic() - clock, 3)
        note = f"replica of {step.master} ({step.shard}), link up"
    else:
        note = (
            f"a master without slots: `redisops -l {cluster.name} cluster rebalance` gives it some"
        )
    return AddNodeResult(
        cluster=cluster.name,
        node=new.name,
        node_id=node_id,
        role=step.role,
        master=step.master,
        known_by=known_by,
        cluster_nodes=len(nodes),
        meet_seconds=meet_seconds,
        link_seconds=link_seconds,
        slots=_own_slots(new, node_id, timeout=timeout),
        note=note,
    )


def _nodes_of(host: Host, *, timeout: float) -> list[NodeLine]:
    """CLUSTER NODES as `host` sees it (over RESP: redis-py would parse the text away)."""
    from redisops.fleet.resp import RespConnection

    connection = RespConnection(host, timeout=timeout)
    try:
        reply = connection.call("CLUSTER", "NODES")
    finally:
        connection.close()
    return parse_nodes(reply.decode() if isinstance(reply, bytes) else str(reply))


def _state_of(host: Host, *, timeout: float) -> str:
    """`host`'s cluster_state as CLUSTER INFO says it."""
    from redisops.fleet.resp import RespConnection

    connection = RespConnection(host, timeout=timeout)
    try:
        reply = connection.call("CLUSTER", "INFO")
    finally:
        connection.close()
    text = reply.decode() if isinstance(reply, bytes) else str(reply)
    return _cluster_info(text).get("cluster_state", "unknown")


def _wait_known(
    nodes: Sequence[Host], new: Host, node_id: str, *, timeout: float, wait: float
) -> int:
    """Until every node lists `node_id` past the handshake, the new node knows them all and
    says cluster_state:ok (it has learnt who serves every slot: until then it answers
    CLUSTERDOWN, and a MIGRATE into it fails); the count of nodes that know it."""
    deadline = time.monotonic() + wait
    while True:
        raise_if_stopped()
        unaware = []
        for host in nodes:
            try:
                lines = _nodes_of(host, timeout=timeout)
            except HostError:
                unaware.append(host.name)
                continue
            if not any(n.node_id == node_id and "handshake" not in n.flags for n in lines):
                unaware.append(host.name)
        own = [n for n in _nodes_of(new, timeout=timeout) if "handshake" not in n.flags]
        state = _state_of(new, timeout=timeout)
        if not unaware and len(own) >= len(nodes) + 1 and state == "ok":
            return len(nodes)
        if time.monotonic() >= deadline:
            missing = ", ".join(unaware[:5]) or (
                f"{new.name} itself ({len(own) - 1} known, cluster_state {state})"
            )
            raise HostError(
                f"CLUSTER MEET sent, but after {wait:g}s these nodes do not know {new.name} "
                f"yet: {missing}",
                hint="check that the cluster bus port (port + 10000) is open both ways; "
                "`redisops cluster status` shows what each node sees",
            )
        pause(POLL_SECONDS)


def _replicate(new: Host, master_id: str, *, timeout: float, wait: float) -> None:
    """CLUSTER REPLICATE (idempotent: asked again while the node does not know the master
    yet), then until master_link_status:up."""
    deadline = time.monotonic() + wait
    last = ""
    while True:
        raise_if_stopped()
        try:
            with redis_client(new, timeout=timeout, decode=True) as client:
                info = client.info("replication")
                if info.get("role") != "slave":
                    client.execute_command("CLUSTER", "REPLICATE", master_id)
                    last = "replication asked"
                elif info.get("master_link_status") == "up":
                    return
                else:
                    last = f"master_link_status:{info.get('master_link_status')}"
        except HostError as exc:  # the node does not know the master yet, say
            last = exc.message
        if time.monotonic() >= deadline:
            raise HostError(
                f"{new.name} is not a linked replica of {master_id[:8]} after {wait:g}s: {last}",
                hint="see the server's log; the node is in the cluster, as a master without "
                "slots until the replication works",
            )
        pause(POLL_SECONDS)


def _own_slots(new: Host, node_id: str, *, timeout: float) -> int:
    for line in _nodes_of(new, timeout=timeout):
        if line.node_id == node_id:
            return sum(last - first + 1 for first, last in line.slots)
    return 0


def add_node_audit(plan: AddNodePlan, outcome: ChangeOutcome[AddNodeResult]) -> dict:
    """The audit log's line for one run (config apply's log format: time and who first)."""
    row = outcome.rows[0]
    return {
        "command": "cluster add-node",
        "cluster": plan.cluster,
        "host": plan.node,
        "address": plan.address,
        "role": plan.role,
        "master": plan.master,
        "node_id": row.data.node_id if row.ok else plan.node_id,
        "outcome": "added" if row.ok else "failed",
        "error": row.error,
    }
