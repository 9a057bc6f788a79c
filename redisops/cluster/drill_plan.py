"""Before a cluster drill: which shard, is the cluster healthy enough to lose its master, and
can this mode be carried out? Nothing here changes anything: it reads every node (`cluster
status`), the master's INFO replication and the replicas' settings, and in crash and hang
modes proves the master's pid a Redis process through host access.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from redisops.change import ChangePlan
from redisops.cluster.status import ClusterStatus, cluster_status
from redisops.errors import HostError, UsageError
from redisops.fleet.cluster import Cluster, Shard, format_slots
from redisops.fleet.connection import redis_client
from redisops.fleet.faults import CLIENT_NAME, proven_server_pid
from redisops.fleet.host import Host
from redisops.results import HostResult

MODES = ("failover", "crash", "hang")
# A hang outlasts cluster-node-timeout by this much, so a replica is elected before the master
# wakes (FAIL came 1-2 s after the timeout in the lab, the election ~1 s after that).
HANG_MARGIN_MS = 5000
# A replica whose last interaction with its master is older than this is not in sync.
MAX_ACK_AGE_SECONDS = 10


@dataclass(frozen=True)
class Check:
    """One pre-check: passed or not, and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ClusterDrillPlan:
    """What a drill of one shard will do, and whether the pre-checks allow it (`ready`).

    `replica` is the in-sync replica CLUSTER FAILOVER is sent to (failover mode; any replica
    may win an election in the others); `nodes` the shard's node names, master first. Times
    in milliseconds; `pid` is the master's (crash, hang)."""

    drill_id: str
    cluster: str
    shard: str
    mode: str
    failback: bool
    checks: tuple[Check, ...]
    ready: bool
    key_prefix: str
    old_master: str | None = None
    old_address: str | None = None
    old_id: str | None = None
    slots: tuple[tuple[int, int], ...] = ()
    replica: str | None = None
    nodes: tuple[str, ...] = ()
    other_shards: tuple[str, ...] = ()
    node_timeout_ms: int = 0
    pid: int | None = None
    hang_ms: int | None = None
    actions: tuple[str, ...] = ()

    @property
    def refusal(self) -> str:
        """The failed checks in one line."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)


def promotion_wait_ms(plan: ClusterDrillPlan) -> int:
    """How long the drill waits for a new master: detection (not for CLUSTER FAILOVER), two
    node timeouts (a manual failover's own limit is 5 s) and a margin for a loaded machine."""
    detect = 0 if plan.mode == "failover" else plan.node_timeout_ms
    return detect + 2 * plan.node_timeout_ms + HANG_MARGIN_MS + 5000


def find_shard(
    clusters: Sequence[Cluster],
    selected: Collection[str],
    *,
    shard: str | None,
    node: str | None,
) -> tuple[Cluster, Shard]:
    """The cluster and shard a drill names: `--shard` (name or id), `--node` (its master), or
    neither when the selected hosts (`selected`, names) are in one shard only (`-l
    CLUSTER/SHARD`). UsageError (exit 2) when it names none, a replica, a shard outside the
    selection, or one in several clusters."""
    if shard is not None and node is not None:
        raise UsageError("name the shard to drill with --shard ID or --node NAME, not both")
    found = []
    for cluster in clusters:
        for candidate in cluster.shards:
            if shard is not None and shard in (candidate.name, candidate.shard_id):
                found.append((cluster, candidate))
            elif node is not None and node in candidate.nodes:
                if candidate.nodes[0] != node:
                    raise UsageError(
                        f"{node} is a replica in {cluster.name}/{candidate.name}; a drill fails "
                        "a master",
                        hint=f"--node {candidate.nodes[0]} or --shard {candidate.name}",
                    )
                found.append((cluster, candidate))
            elif shard is None and node is None and set(candidate.nodes) & set(selected):
                found.append((cluster, candidate))
    names = ", ".join(f"{c.name}/{s.name}" for c in clusters for s in c.shards)
    if shard is None and node is None and len(found) != 1:
        raise UsageError(
            "name the shard to drill: --shard ID or --node NAME (or select one shard with "
            "-l CLUSTER/SHARD)",
            hint=f"shards: {names}" if names else None,
        )
    if not found:
        what = f"shard {shard!r}" if shard is not None else f"node {node!r}"
        raise UsageError(
            f"no selected cluster has {what}", hint=f"shards: {names}" if names else None
        )
    if len(found) > 1:
        raise UsageError(
            f"{shard} is in {len(found)} clusters: {', '.join(c.name for c, _ in found)}",
            hint="select one with --limit CLUSTER",
        )
    cluster, chosen = found[0]
    if not set(chosen.nodes) & set(selected):
        raise UsageError(
            f"{cluster.name}/{chosen.name} is outside the selection (--limit)",
            hint=f"-l {cluster.name}/{chosen.name}, or no --limit",
        )
    return cluster, chosen


def plan_cluster_drill(
    cluster: Cluster,
    shard: Shard,
    inventory: Sequence[Host],
    *,
    mode: str,
    failback: bool,
    max_lag: int,
    probe_rate: float,
    timeout: float,
    parallel: int,
) -> ClusterDrillPlan:
    """Run the pre-checks for a drill of `shard` and plan it; failed checks make `ready`
    false, they do not raise (UsageError for an unknown mode)."""
    if mode not in MODES:
        raise UsageError(f"unknown drill mode {mode!r}", hint=f"one of {', '.join(MODES)}")
    drill_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    status = cluster_status(cluster, timeout=timeout, parallel=parallel)
    hosts = {h.name: h for h in cluster.nodes}
    master = hosts.get(shard.nodes[0]) if shard.nodes else None
    checks = [_health_check(status)]
    replica = pid = hang_ms = None
    node_timeout = 0
    if master is not None and master.node is not None:
        check, replica, node_timeout = _replica_check(
            master, [hosts[n] for n in shard.nodes[1:]], mode, max_lag, timeout
        )
        checks.append(check)
        if mode in ("crash", "hang"):
            check, pid = _process_check(master, inventory, mode, timeout)
            checks.append(check)
            if mode == "hang":
                hang_ms = node_timeout + HANG_MARGIN_MS
    plan = ClusterDrillPlan(
        drill_id=drill_id,
        cluster=cluster.name,
        shard=shard.name,
        mode=mode,
        failback=failback,
        checks=tuple(checks),
        ready=all(c.ok for c in checks) and master is not None,
        key_prefix=f"redisops:drill:{drill_id}:",
        old_master=master.name if master else None,
        old_address=master.address if master else None,
        old_id=master.node.node_id if master and master.node else None,
        slots=shard.slots,
        replica=replica,
        nodes=shard.nodes,
        other_shards=tuple(s.name for s in cluster.shards if s.name != shard.name and s.slots),
        node_timeout_ms=node_timeout,
        pid=pid,
        hang_ms=hang_ms,
    )
    return _with_actions(plan, probe_rate)


def _health_check(status: ClusterStatus) -> Check:
    """The whole cluster healthy, as `cluster status` judges it (slots covered, no node
    failing, cluster_state ok, replica links up, no open slot)."""
    if status.healthy:
        return Check(
            "cluster healthy",
            True,
            f"{status.slots_covered} slots covered, {status.nodes_answering} of "
            f"{status.nodes} nodes answer, cluster_state ok",
        )
    return Check("cluster healthy", False, "; ".join(p.message for p in status.problems))


def _replica_check(
    master: Host, replicas: list[Host], mode: str, max_lag: int, timeout: float
) -> tuple[Check, str | None, int]:
    """A replica that can take over: online in the master's INFO, within `max_lag` bytes
    and acknowledging, and (crash, hang) not barred by cluster-replica-no-failover. Also the
    cluster-node-timeout, from the master."""
    name = "in-sync replica"
    try:
        with redis_client(master, timeout=timeout, decode=True, client_name=CLIENT_NAME) as c:
            info = c.info("replication")
            node_timeout = int(c.config_get("cluster-node-timeout")["cluster-node-timeout"])
    except HostError as exc:
        return Check(name, False, exc.message), None, 0
    offset = int(info.get("master_repl_offset", 0))
    ready, behind = [], []
    for replica in replicas:
        link = _link_of(info, replica)
        if link is None:
            behind.append(f"{replica.name} is not connected to {master.name}")
            continue
        lag = offset - int(link.get("offset", 0))
        if link.get("state") != "online" or lag > max_lag:
            behind.append(f"{replica.name} is {link.get('state')} and {lag} bytes behind")
        elif int(link.get("lag", 0)) > MAX_ACK_AGE_SECONDS:
            behind.append(f"{replica.name} last acknowledged {link.get('lag')}s ago")
        elif mode != "failover" and _no_failover(replica, timeout):
            behind.append(f"{replica.name} has cluster-replica-no-failover yes")
        else:
            ready.append(replica.name)
    if not ready:
        why = "; ".join(behind) or f"{master.name} has no replica"
        return Check(name, False, f"no replica can take over: {why}"), None, node_timeout
    detail = f"{', '.join(ready)} within {max_lag} bytes"
    if behind:
        detail += f" ({'; '.join(behind)})"
    return Check(name, True, detail), ready[0], node_timeout


def _link_of(info: dict, replica: Host) -> dict | None:
    """The master's `slaveN:ip=…,port=…,state=…,offset=…,lag=…` entry for `replica`."""
    for key, value in info.items():
        if not key.startswith("slave") or not key[5:].isdigit() or not isinstance(value, dict):
            continue
        fields = value
        if int(fields.get("port", 0)) == replica.port and str(fields.get("ip")) in (
            replica.host,
            "127.0.0.1" if replica.host == "localhost" else replica.host,
        ):
            return fields
    return None


def _no_failover(replica: Host, timeout: float) -> bool:
    try:
        with redis_client(replica, timeout=timeout, decode=True, client_name=CLIENT_NAME) as c:
            setting = c.config_get("cluster-replica-no-failover").get("cluster-replica-no-failover")
    except HostError:
        return False  # an unreachable replica already fails the health check
    return setting == "yes"


def _process_check(
    master: Host, inventory: Sequence[Host], mode: str, timeout: float
) -> tuple[Check, int | None]:
    """The master's pid proven a Redis process through host access; crash mode needs its
    service_start. The master must be an inventory entry of its own: a discovered node
    inherits the seed's host access and service_start, which are the seed's machine's."""
    name = "crash: kill and restart" if mode == "crash" else "hang: freeze and thaw"
    own = any(h.host == master.host and h.port == master.port for h in inventory)
    if not own:
        return Check(
            name,
            False,
            f"{master.name} is not in the inventory (found by discovery): its host access "
            "would be the seed's; add it to signal it",
        ), None
    if not master.has_host_access or (mode == "crash" and not master.service_start):
        needs = "host access and service_start" if mode == "crash" else "host access"
        return Check(name, False, f"{master.name} needs {needs}"), None
    try:
        pid, comm = proven_server_pid(master, timeout=timeout)
    except HostError as exc:
        return Check(name, False, exc.message), None
    return Check(name, True, f"pid {pid} ({comm}) on {master.name}"), pid


def _with_actions(plan: ClusterDrillPlan, probe_rate: float) -> ClusterDrillPlan:
    old = f"{plan.old_master} ({plan.old_address})"
    seconds = f"{(plan.hang_ms or 0) / 1000:g}"
    trigger = {
        "failover": f"CLUSTER FAILOVER on {plan.replica}, a replica of {old}",
        "crash": f"kill -9 {plan.pid} on {old}, the master, through host access",
        "hang": f"kill -STOP {plan.pid} on {old}, the master, through host access; kill -CONT "
        f"{seconds}s later (cluster-node-timeout {plan.node_timeout_ms} ms + {HANG_MARGIN_MS} "
        "ms), by the drill and by a timer on the host itself",
    }[plan.mode]
    others = ", ".join(plan.other_shards) or "no other shard"
    actions = [
        f"write {plan.key_prefix}{{tag}}:<n> at {probe_rate:g}/s to a slot of {plan.shard} "
        f"({format_slots(plan.slots)}) and of each other shard ({others}), routed by slot; "
        "poll CLUSTER NODES on every other node",
        trigger,
        f"wait up to {promotion_wait_ms(plan) / 1000:g}s for a replica to serve the slots",
    ]
    if plan.mode == "crash":
        actions.append(f"restart {plan.old_master} with its service_start")
    actions += [
        f"wait until the cluster is healthy and {plan.old_master} replicates from the new master",
        "check every acknowledged write, then remove the probe keys",
    ]
    if plan.failback:
        actions.append(f"fail back: CLUSTER FAILOVER on {plan.old_master}, then wait until healthy")
    return replace(plan, actions=tuple(actions))


def drill_change(plan: ClusterDrillPlan) -> ChangePlan[ClusterDrillPlan]:
    """`plan` as the change engine's plan: one row, the failed pre-checks its one blocker
    (--force does not skip a pre-check)."""
    where = f"{plan.cluster}/{plan.shard}"
    return ChangePlan(
        command="cluster drill",
        rows=[
            HostResult(
                plan.old_master or where,
                plan.old_address or "-",
                plan.ready,
                plan.refusal or None,
                plan,
            )
        ],
        question=f"Run a {plan.mode} drill on {where} (master {plan.old_master}, "
        f"{plan.old_address})?",
        pending=1,
        blockers=() if plan.ready else (plan.refusal or "the shard has no master",),
        refused=f"drill refused, nothing was triggered: {plan.refusal}",
        hint="fix the cluster first; `redisops cluster status` shows what is wrong",
        undone="triggered",
    )
