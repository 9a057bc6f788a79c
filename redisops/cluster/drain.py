"""`cluster drain NODE`: move every slot of a master to the others, then take it out.

Slots go by the rebalance engine (redisops.cluster.slotmove), spread by a weight: the
drained master's slots, heaviest first, each to the master that is lightest at that point
(ties: fewer slots). Then, in this order:

1. each replica of the drained master is re-pointed (`CLUSTER REPLICATE`) to the remaining
   master with the fewest replicas: the cluster keeps its redundancy (a replica full-syncs
   from its new master); to remove those machines too, drain is not the tool — forget them
   after;
2. `CLUSTER FORGET` of the drained node on every other node (a node cannot forget its own
   master, hence step 1 first; all within the 60 s forget ban, so gossip does not bring it
   back);
3. `CLUSTER RESET SOFT` on the drained node: it forgets the cluster in turn (and refuses if
   it still holds a key). Its process keeps running, empty: stop it, or add it back later.

Interrupted, the same command finishes: slot moves from the state file, and the steps after
them are repeated harmlessly (an unknown node to FORGET is not an error).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from redisops.cluster.rebalance import (
    SlotMoveResult,
    SlotPlan,
    apply_slot_plan,
    plan_slot_moves,
    read_cluster,
    resume_or_plan,
    weight_of,
)
from redisops.cluster.slotmove import Move, Progress
from redisops.errors import HostError, UsageError
from redisops.fleet.cluster import Cluster
from redisops.fleet.host import Host


@dataclass(frozen=True)
class Repoint:
    replica: str
    node_id: str
    to: str  # master's name
    to_id: str


@dataclass(frozen=True)
class DrainPlan:
    node: str
    node_id: str
    address: str
    slots: SlotPlan
    repoint: tuple[Repoint, ...]
    forget_on: tuple[str, ...]  # node ids that will forget the drained node


@dataclass(frozen=True)
class DrainResult:
    moves: SlotMoveResult | None
    steps: tuple[str, ...]
    problems: tuple[str, ...]


def find_node(cluster: Cluster, name: str) -> Host:
    """The node `name` names: its host name, `host:port`, or a node id (4+ characters)."""
    for host in cluster.nodes:
        node = host.node
        if node is None:
            continue
        if name in (host.name, host.address) or (len(name) >= 4 and node.node_id.startswith(name)):
            return host
    raise UsageError(
        f"no node {name!r} in cluster {cluster.name}",
        hint=f"see the nodes with `redisops -l {cluster.name} inventory list`",
    )


def drain_moves(readings, node_id: str, by: str) -> list[Move]:
    """Every slot of `node_id` to the other masters, heaviest first to the lightest."""
    source = readings[node_id]
    load = {
        n: [sum(weight_of(r, s, by) for s in r.slots), len(r.slots)]
        for n, r in readings.items()
        if n != node_id
    }
    moves = []
    for slot in sorted(source.slots, key=lambda s: (-weight_of(source, s, by), s)):
        target = min(load, key=lambda n: (load[n][0], load[n][1], n))
        load[target][0] += weight_of(source, slot, by)
        load[target][1] += 1
        moves.append(Move(slot, node_id, target))
    return sorted(moves, key=lambda m: (m.target, m.slot))


def plan_drain(
    cluster: Cluster,
    name: str,
    *,
    by: str,
    max_key_size: int,
    state_dir: Path,
    force: bool,
    timeout: float,
    parallel: int,
) -> DrainPlan:
    host = find_node(cluster, name)
    if host.node.role != "master":
        raise UsageError(
            f"{host.name} is a replica: drain moves a master's slots",
            hint=f"drain its master, or forget the replica with CLUSTER FORGET {host.node.node_id}",
        )
    node_id = host.node.node_id
    reading = read_cluster(cluster, timeout=timeout, parallel=parallel)
    command = f"cluster drain {host.name}"
    blockers: list[str] = []
    if node_id not in reading.readings:
        blockers.append(f"{host.name} does not answer: its keys cannot be moved")
    if len(reading.readings) < 2:
        blockers.append(f"{host.name} is the only master of cluster {cluster.name}")

    def fresh() -> list[Move]:
        if blockers:
            return []
        return drain_moves(reading.readings, node_id, by)

    moves, notes, resuming, started, more = resume_or_plan(reading, command, state_dir, fresh)
    slots = plan_slot_moves(
        reading,
        moves,
        command=command,
        by=by,
        tolerance=None,
        max_key_size=max_key_size,
        state_dir=state_dir,
        force=force,
        notes=notes,
        resuming=resuming,
    )
    slots = replace(slots, blockers=(*slots.blockers, *blockers, *more), resumed_from=started)
    others = [n for n in reading.readings if n != node_id]
    replicas = [h for h in cluster.nodes if h.node and h.node.master_id == node_id]
    count = {n: sum(1 for h in cluster.nodes if h.node and h.node.master_id == n) for n in others}
    repoint = []
    for replica in replicas:
        if not others:
            break
        target = min(others, key=lambda n: (count[n], n))
        count[target] += 1
        repoint.append(
            Repoint(replica.name, replica.node.node_id, reading.context.name(target), target)
        )
    forget_on = tuple(h.node.node_id for h in cluster.nodes if h.node and h.node.node_id != node_id)
    return DrainPlan(host.name, node_id, host.address, slots, tuple(repoint), forget_on)


def apply_drain(plan: DrainPlan, *, rate: float, progress: Progress | None) -> DrainResult:
    """Move the slots, then re-point the replicas, FORGET the node everywhere and reset it."""
    moves = None
    context = plan.slots.context
    if plan.slots.moves or plan.slots.recover:
        moves = apply_slot_plan(plan.slots, rate=rate, progress=progress)
        if moves.problems:
            return DrainResult(moves, (), moves.problems)
    steps: list[str] = []
    problems: list[str] = []
    try:
        owned = _slots_owned(context, plan.node_id)
        if owned:
            return DrainResult(
                moves, (), (f"{plan.node} still owns {owned} slot(s): not forgotten",)
            )
        for step in plan.repoint:
            context.conn(step.node_id).call("CLUSTER", "REPLICATE", step.to_id)
            steps.append(f"{step.replica} now replicates {step.to}")
        for node_id in plan.forget_on:
            try:
                context.conn(node_id).call("CLUSTER", "FORGET", plan.node_id)
            except HostError as exc:
                if "Unknown node" not in exc.message:
                    problems.append(f"{context.name(node_id)}: FORGET failed: {exc.message}")
        steps.append(f"{plan.node} forgotten by {len(plan.forget_on) - len(problems)} node(s)")
        if not problems:
            context.conn(plan.node_id).call("CLUSTER", "RESET", "SOFT")
            steps.append(f"{plan.node} reset (CLUSTER RESET SOFT): it is out of the cluster")
    except HostError as exc:
        problems.append(exc.message)
    finally:
        context.close()
    return DrainResult(moves, tuple(steps), tuple(problems))


def _slots_owned(context, node_id: str) -> int:
    from redisops.cluster.slotmove import read_view

    view = read_view(context.conn(node_id))
    me = next(line for line in view if "myself" in line.flags)
    return sum(b - a + 1 for a, b in me.slots)
