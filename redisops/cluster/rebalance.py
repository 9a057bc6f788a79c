"""`cluster rebalance`: a plan of slot moves that brings every master within a tolerance of
the mean by a weight (memory, keys or slots), and carrying one out (redisops.cluster.slotmove).

Measuring, per master, in parallel, over one connection each: CLUSTER NODES (its own slots,
and any slot it has open), `COUNTKEYSINSLOT` of every slot it owns (pipelined), and the
memory of each slot that holds keys: `MEMORY USAGE` of up to SAMPLE_KEYS keys of the slot
(`GETKEYSINSLOT`), their mean times the slot's key count. A slot with at most SAMPLE_KEYS
keys is thus measured exactly; a bigger one is an estimate. The slots a plan moves are then
measured whole (MEMORY USAGE of every key): the bytes and keys each move carries are exact,
and a key above --max-key-size is a refusal before anything moves.

Plan: masters above mean * (1 + tolerance) give slots to masters below mean * (1 -
tolerance): repeatedly the heaviest master gives the lightest one its heaviest slot that
does not overshoot the mean (by slots: its lowest-numbered slot, as redis-cli does), or when
none fits, its lightest slot if that narrows the gap; slots that weigh nothing (no keys) are
never moved by memory or keys. A slot heavier than the spread allows (one hash tag holding a
shard's data) cannot be split: the plan says which master stays outside the tolerance.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from redisops.change import ChangeOutcome, ChangePlan
from redisops.cluster.slotmove import (
    Masters,
    Move,
    MoveState,
    OpenSlot,
    Progress,
    SlotMover,
    now_iso,
    open_slots,
    pipeline,
    read_state,
    read_view,
    recover_slot,
    remove_state,
    state_path,
    write_moves,
    write_state,
)
from redisops.errors import HostError
from redisops.fleet.cluster import Cluster, NodeLine, format_slots
from redisops.fleet.host import Host
from redisops.fleet.resp import RespConnection
from redisops.interrupt import Interrupted
from redisops.keypatterns import key_text
from redisops.results import HostResult
from redisops.serverinfo import parse_info

Weight = Literal["memory", "keys", "slots"]
SAMPLE_KEYS = 8


@dataclass(frozen=True)
class MasterReading:
    """One master as read for a plan: its view, its slots, keys and bytes per slot, and its
    cluster_state (not `ok` on a node that has not yet learnt the slot map: a MIGRATE into
    it fails with CLUSTERDOWN)."""

    node_id: str
    view: tuple[NodeLine, ...]
    slots: tuple[int, ...]
    keys: dict[int, int]
    bytes: dict[int, int]
    state: str


@dataclass(frozen=True)
class MasterLoad:
    """A master before and after the plan (a row of the plan)."""

    node_id: str
    shard: str
    slots_before: int
    slots_after: int
    keys_before: int
    keys_after: int
    bytes_before: int
    bytes_after: int
    share_before: float  # of the mean by the plan's weight (1.0 = the mean)
    share_after: float
    within: bool  # after the plan, within the tolerance (always, for a drain: it has none)


@dataclass(frozen=True)
class MoveGroup:
    """Slots going from one master to another: what the plan shows per line."""

    source: str
    target: str
    slots: list[list[int]]  # ranges [first, last]
    slot_count: int
    keys: int
    bytes: int


@dataclass(frozen=True)
class BigKey:
    slot: int
    key: str
    bytes: int
    node: str


@dataclass(frozen=True)
class SlotPlan:
    """A plan of slot moves (rebalance or drain) and everything needed to carry it out."""

    command: str
    cluster: str
    by: str
    tolerance: float | None  # None for a drain
    masters: tuple[HostResult[MasterLoad], ...]
    groups: tuple[MoveGroup, ...]
    moves: tuple[Move, ...] = field(repr=False)
    recover: tuple[OpenSlot, ...] = ()
    big_keys: tuple[BigKey, ...] = ()
    max_key_size: int = 0
    notes: tuple[str, ...] = ()
    blockers: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()
    resumed_from: str | None = None
    state: Path | None = None
    context: Masters | None = field(default=None, repr=False)

    @property
    def keys(self) -> int:
        return sum(group.keys for group in self.groups)

    @property
    def bytes(self) -> int:
        return sum(group.bytes for group in self.groups)


@dataclass(frozen=True)
class SlotMoveResult:
    moved_slots: int
    keys_moved: int
    seconds: float
    recovered: tuple[str, ...]
    verified: bool
    problems: tuple[str, ...]
    open_slot: str | None = None


# --- reading ------------------------------------------------------------------------------


def read_master(host: Host, *, timeout: float) -> MasterReading:
    """One master's view, key counts per slot, and measured bytes per slot (see the module
    docstring); raises HostError when it does not answer."""
    connection = RespConnection(host, timeout=timeout)
    try:
        view = read_view(connection)
        me = next(line for line in view if "myself" in line.flags)
        slots = tuple(s for first, last in me.slots for s in range(first, last + 1))
        info = connection.call("CLUSTER", "INFO")
        info = info.decode() if isinstance(info, bytes) else str(info)
        state = parse_info(info).get("cluster_state", "unknown")
        if state != "ok":  # it answers CLUSTERDOWN to MEMORY USAGE too: nothing to measure
            return MasterReading(me.node_id, view, slots, {}, {}, state)
        counts = pipeline(connection, [("CLUSTER", "COUNTKEYSINSLOT", s) for s in slots])
        keys = {s: int(n) for s, n in zip(slots, counts, strict=True) if int(n)}
        samples = pipeline(connection, [("CLUSTER", "GETKEYSINSLOT", s, SAMPLE_KEYS) for s in keys])
        sampled = [(s, k) for s, found in zip(keys, samples, strict=True) for k in found]
        sizes = pipeline(connection, [("MEMORY", "USAGE", k) for _, k in sampled])
        total: dict[int, list[int]] = {}
        for (slot, _), size in zip(sampled, sizes, strict=True):
            if isinstance(size, Exception):
                raise HostError(f"{host.address}: MEMORY USAGE of a key of slot {slot}: {size}")
            total.setdefault(slot, []).append(int(size or 0))
        estimated = {s: round(sum(v) / len(v) * keys[s]) for s, v in total.items()}
        return MasterReading(me.node_id, view, slots, keys, estimated, state)
    finally:
        connection.close()


def measure_slots(
    host: Host, slots: Sequence[int], keys: dict[int, int], *, timeout: float, max_key_size: int
) -> tuple[dict[int, int], dict[int, int], list[BigKey]]:
    """Every key of `slots` on `host`: exact keys and bytes per slot, and the keys above
    `max_key_size` (0: no limit)."""
    connection = RespConnection(host, timeout=timeout)
    try:
        wanted = [s for s in slots if keys.get(s)]
        found = pipeline(
            connection, [("CLUSTER", "GETKEYSINSLOT", s, keys[s] + 100) for s in wanted]
        )
        pairs = [(s, k) for s, names in zip(wanted, found, strict=True) for k in names]
        sizes = pipeline(connection, [("MEMORY", "USAGE", k) for _, k in pairs])
    finally:
        connection.close()
    counts: dict[int, int] = {}
    totals: dict[int, int] = {}
    big: list[BigKey] = []
    for (slot, key), size in zip(pairs, sizes, strict=True):
        if isinstance(size, Exception):
            raise HostError(f"{host.address}: MEMORY USAGE of a key of slot {slot}: {size}")
        size = int(size or 0)
        counts[slot] = counts.get(slot, 0) + 1
        totals[slot] = totals.get(slot, 0) + size
        if max_key_size and size > max_key_size:
            big.append(BigKey(slot, key_text(key), size, host.name))
    return counts, totals, big


@dataclass
class ClusterReading:
    """Every live master of a cluster as read for a plan."""

    cluster: Cluster
    masters: dict[str, Host]  # node id -> Host, masters that answered
    readings: dict[str, MasterReading]
    errors: list[str]
    context: Masters


def read_cluster(cluster: Cluster, *, timeout: float, parallel: int) -> ClusterReading:
    """Read every master of `cluster` (slotless ones too: they may receive slots)."""
    from redisops.fleet.fanout import run_on_hosts

    hosts = [
        h for h in cluster.nodes if h.node and h.node.role == "master" and h.node.health != "fail"
    ]
    results = run_on_hosts(hosts, lambda h: read_master(h, timeout=timeout), parallel=parallel)
    readings: dict[str, MasterReading] = {}
    errors = [
        f"{h.name} ({h.address}) is failing ({h.node.health}): fix the cluster first "
        "(`redisops cluster status`)"
        for h in cluster.nodes
        if h.node
        and h.node.role == "master"
        and h.node.slots
        and h.node.health in ("fail", "pfail")
    ]
    for host, result in zip(hosts, results, strict=True):
        if result.ok:
            readings[result.data.node_id] = result.data
            if result.data.state != "ok":
                errors.append(
                    f"{host.name} ({host.address}) says cluster_state:{result.data.state}: "
                    "it does not know who serves every slot yet (just added? see `redisops "
                    "cluster status`)"
                )
        else:
            errors.append(f"{host.name} ({host.address}) did not answer: {result.error}")
    by_id = {h.node.node_id: h for h in cluster.nodes if h.node}
    names = {node_id: host.name for node_id, host in by_id.items()}
    addresses: dict[str, str] = {}
    for reading in readings.values():
        for line in reading.view:
            addresses.setdefault(line.node_id, f"{line.host}:{line.port}")
    masters = {node_id: by_id[node_id] for node_id in readings if node_id in by_id}
    context = Masters(
        hosts=dict(by_id), names=names, addresses=addresses, masters=list(masters), timeout=timeout
    )
    return ClusterReading(cluster, masters, readings, errors, context)


# --- planning -----------------------------------------------------------------------------


def weight_of(reading: MasterReading, slot: int, by: str) -> float:
    if by == "slots":
        return 1.0
    if by == "keys":
        return float(reading.keys.get(slot, 0))
    return float(reading.bytes.get(slot, 0))


def balance_moves(readings: dict[str, MasterReading], by: str, tolerance: float) -> list[Move]:
    """Moves bringing every master within `tolerance` of the mean (see the module docstring)."""
    load = {n: sum(weight_of(r, s, by) for s in r.slots) for n, r in readings.items()}
    if not load:
        return []
    mean = sum(load.values()) / len(load)
    high, low = mean * (1 + tolerance), mean * (1 - tolerance)
    # Each master's movable slots, sorted by (weight, slot) for bisect.
    movable = {
        n: sorted((weight_of(r, s, by), s) for s in r.slots if weight_of(r, s, by) > 0)
        for n, r in readings.items()
    }
    if by == "slots":
        movable = {n: sorted(((1.0, s) for s in r.slots), key=lambda p: -p[1])
                   for n, r in readings.items()}  # fmt: skip
    moves: list[Move] = []
    for _ in range(sum(len(r.slots) for r in readings.values())):
        donor = max(load, key=lambda n: (load[n], n))
        receiver = min(load, key=lambda n: (load[n], n))
        if (load[donor] <= high and load[receiver] >= low) or not movable[donor]:
            break
        slots = movable[donor]
        gap = min(load[donor] - mean, mean - load[receiver])
        if by == "slots":
            index = len(slots) - 1  # the lowest-numbered slot (kept at the end)
        else:
            index = bisect.bisect_right(slots, (gap, float("inf"))) - 1
        if index < 0 or slots[index][0] > gap:
            # Nothing fits under the gap: the lightest (by slots: any) slot, if it narrows it;
            # else a move would only swap which master is off (and could go on forever).
            index = max(index, 0)
            weight = slots[index][0]
            before = max(load[donor] - mean, mean - load[receiver])
            after = max(abs(load[donor] - weight - mean), abs(load[receiver] + weight - mean))
            if after >= before:
                break
        weight, slot = slots.pop(index)
        load[donor] -= weight
        load[receiver] += weight
        moves.append(Move(slot, donor, receiver))
    return moves


def plan_slot_moves(
    reading: ClusterReading,
    moves: Sequence[Move],
    *,
    command: str,
    by: str,
    tolerance: float | None,
    max_key_size: int,
    state_dir: Path,
    force: bool,
    notes: Sequence[str] = (),
    resuming: bool = False,
) -> SlotPlan:
    """The plan for `moves` (measured exactly), with the open slots to close first."""
    from redisops.fleet.fanout import run_on_hosts

    names = reading.context.names
    found_open = open_slots({n: r.view for n, r in reading.readings.items()}, names)
    blockers = list(reading.errors)
    refusals: list[str] = []
    notes = list(notes)
    recover: list[OpenSlot] = []
    if found_open and not resuming:
        described = "; ".join(
            f"slot {o.slot} {names.get(o.source, o.source[:8])} -> "
            f"{names.get(o.target, o.target[:8])} ({o.seen})"
            for o in found_open[:5]
        )
        refusals.append(
            f"{len(found_open)} open slot(s) not left by a redisops run: {described}; "
            "something else may be moving them now"
        )
    if found_open and (resuming or force):
        recover = found_open
    open_numbers = {o.slot for o in recover}
    moves = [m for m in moves if m.slot not in open_numbers]

    by_source: dict[str, list[int]] = {}
    for move in moves:
        by_source.setdefault(move.source, []).append(move.slot)
    hosts = [reading.masters[n] for n in by_source]
    measured = run_on_hosts(
        hosts,
        lambda h: measure_slots(
            h,
            by_source[h.node.node_id],
            reading.readings[h.node.node_id].keys,
            timeout=max(reading.context.timeout, 30.0),
            max_key_size=max_key_size,
        ),
        parallel=8,
    )
    exact_keys: dict[int, int] = {}
    exact_bytes: dict[int, int] = {}
    big: list[BigKey] = []
    for host, result in zip(hosts, measured, strict=True):
        if not result.ok:
            blockers.append(f"{host.name} could not be measured: {result.error}")
            continue
        counts, totals, found = result.data
        exact_keys |= counts
        exact_bytes |= totals
        big += found
    if big:
        refusals.append(
            f"{len(big)} key(s) above --max-key-size {_size(max_key_size)} would block both "
            f"servers while they move (biggest: {max(big, key=lambda b: b.bytes).key!r}, "
            f"{_size(max(b.bytes for b in big))})"
        )
    groups = _groups(moves, names, exact_keys, exact_bytes)
    masters = _loads(reading, moves, by, tolerance, exact_keys, exact_bytes)
    outside = [row.host for row in masters if not row.data.within]
    if outside and moves and tolerance is not None:
        notes.append(
            f"{', '.join(outside)} stay outside ±{tolerance:.0%} of the mean: the slots that "
            "would move are too heavy to split (a hash tag holding much of a shard?)"
        )
    return SlotPlan(
        command=command,
        cluster=reading.cluster.name,
        by=by,
        tolerance=tolerance,
        masters=tuple(masters),
        groups=tuple(groups),
        moves=tuple(moves),
        recover=tuple(recover),
        big_keys=tuple(big[:20]),
        max_key_size=max_key_size,
        notes=tuple(notes),
        blockers=tuple(blockers),
        refusals=tuple(refusals),
        state=state_path(state_dir, reading.cluster.name),
        context=reading.context,
    )


def resume_or_plan(
    reading: ClusterReading, command: str, state_dir: Path, fresh
) -> tuple[list[Move], list[str], bool, str | None, list[str]]:
    """The moves to make: those an interrupted run of `command` left (its state file), else
    `fresh()`. Returns (moves, notes, resuming, resumed_from, blockers). A state file with
    nothing left to do and no slot open (a run killed between its last move and removing
    it) is ignored."""
    state = read_state(state_path(state_dir, reading.cluster.name))
    if state is None:
        return list(fresh()), [], False, None, []
    owner = _owners(reading)
    left: list[Move] = []
    gone = 0
    for move in state.moves[state.next :]:
        if owner.get(move.slot) == move.target:
            continue
        if owner.get(move.slot) != move.source or move.target not in reading.readings:
            gone += 1
            continue
        left.append(move)
    still_open = open_slots({n: r.view for n, r in reading.readings.items()}, {})
    if not left and not still_open:
        return list(fresh()), [], False, None, []
    if state.command != command:
        unfinished = (
            f"an interrupted `{state.command}` of cluster {reading.cluster.name} (started "
            f"{state.started}) is unfinished: run it again to finish it, or look at "
            f"`redisops cluster status` and remove {state.path}"
        )
        return [], [], False, None, [unfinished]
    notes = [
        f"resuming the interrupted `{command}` started {state.started}: "
        f"{len(state.moves) - state.next:,} of {len(state.moves):,} slot moves were left"
        + (f", {gone} no longer possible (slot or master moved meanwhile)" if gone else "")
    ]
    return left, notes, True, state.started, []


def _owners(reading: ClusterReading) -> dict[int, str]:
    owner: dict[int, str] = {}
    for node_id, master in reading.readings.items():
        for slot in master.slots:
            owner.setdefault(slot, node_id)
    return owner


def _groups(moves, names, keys, sizes) -> list[MoveGroup]:
    groups: dict[tuple[str, str], list[int]] = {}
    for move in moves:
        groups.setdefault((move.source, move.target), []).append(move.slot)
    out = []
    for (source, target), slots in groups.items():
        ranges: list[list[int]] = []
        for slot in sorted(slots):
            if ranges and ranges[-1][1] == slot - 1:
                ranges[-1][1] = slot
            else:
                ranges.append([slot, slot])
        out.append(
            MoveGroup(
                names.get(source, source[:8]),
                names.get(target, target[:8]),
                ranges,
                len(slots),
                sum(keys.get(s, 0) for s in slots),
                sum(sizes.get(s, 0) for s in slots),
            )
        )
    return out


def _loads(reading, moves, by, tolerance, exact_keys, exact_bytes) -> list[HostResult[MasterLoad]]:
    counts: dict[str, list[int]] = {}
    for node_id, r in reading.readings.items():
        # Slots measured whole replace their sampled estimate, before as after.
        keys = sum(r.keys.values()) + sum(exact_keys.get(s, n) - n for s, n in r.keys.items())
        size = sum(r.bytes.values()) + sum(exact_bytes.get(s, b) - b for s, b in r.bytes.items())
        weight = {"slots": len(r.slots), "keys": keys, "memory": size}[by]
        counts[node_id] = [len(r.slots), keys, size, weight, len(r.slots), keys, size, weight]
    for move in moves:
        source = reading.readings[move.source]
        keys = exact_keys.get(move.slot, source.keys.get(move.slot, 0))
        size = exact_bytes.get(move.slot, source.bytes.get(move.slot, 0))
        weight = {"slots": 1, "keys": keys, "memory": size}[by]
        for node_id, sign in ((move.source, -1), (move.target, 1)):
            row = counts[node_id]
            row[4] += sign
            row[5] += sign * keys
            row[6] += sign * size
            row[7] += sign * weight
    mean_before = sum(c[3] for c in counts.values()) / max(1, len(counts))
    mean_after = sum(c[7] for c in counts.values()) / max(1, len(counts))
    rows = []
    by_id = {h.node.node_id: h for h in reading.cluster.nodes if h.node}
    for node_id, c in counts.items():
        host = by_id[node_id]
        share_after = c[7] / mean_after if mean_after else 1.0
        load = MasterLoad(
            node_id=node_id,
            shard=host.node.shard,
            slots_before=c[0],
            slots_after=c[4],
            keys_before=c[1],
            keys_after=c[5],
            bytes_before=c[2],
            bytes_after=c[6],
            share_before=round(c[3] / mean_before, 3) if mean_before else 1.0,
            share_after=round(share_after, 3),
            within=tolerance is None or not mean_after or abs(share_after - 1) <= tolerance + 1e-9,
        )
        rows.append(HostResult(host.name, host.address, True, None, load))
    return rows


def _size(value: int) -> str:
    from redisops.tuning.units import redis_size

    return redis_size(value)


# --- applying -----------------------------------------------------------------------------


def apply_slot_plan(plan: SlotPlan, *, rate: float, progress: Progress | None) -> SlotMoveResult:
    """Close the open slots, then make the moves, the state file saying before each slot
    which one is in flight; verify the slot map at the end. A HostError stops the run with
    the slot it left open named (`open_slot`); Interrupted propagates with the state file
    kept (the next run of the same command finishes)."""
    masters = plan.context
    assert masters is not None and plan.state is not None
    mover = SlotMover(masters, rate=rate, progress=progress, total_keys=plan.keys)
    started = time.monotonic()
    started_at = plan.resumed_from or now_iso()
    state = MoveState(plan.command, plan.cluster, plan.moves, 0, None, started_at, plan.state)
    recovered: list[str] = []
    moved = 0
    current: Move | None = None
    try:
        # The old state goes first: a kill between the two writes must not pair the new
        # moves with the old run's index (without a state file, no run resumes).
        remove_state(plan.state)
        write_moves(state)
        if plan.recover:
            write_state(replace(state, in_flight=plan.recover[0].slot))
        for slot in plan.recover:
            current = Move(slot.slot, slot.source, slot.target)
            recovered.append(recover_slot(mover, slot, masters.masters))
        for index, move in enumerate(plan.moves):
            current = move
            write_state(replace(state, next=index, in_flight=move.slot))
            mover.move(move)
            moved += 1
        current = None
        problems = verify(masters, plan.moves)
    except Interrupted as exc:
        exc.done = f"{moved:,} of {len(plan.moves):,} slot moves done" + (
            f"; slot {current.slot} may be open between {masters.name(current.source)} and "
            f"{masters.name(current.target)} (state: {plan.state})"
            if current is not None
            else ""
        )
        raise
    except HostError as exc:
        left = None
        if current is not None:
            left = (
                f"slot {current.slot} may be open between {masters.name(current.source)} and "
                f"{masters.name(current.target)}: {exc.message}"
            )
        masters.close()
        return SlotMoveResult(
            moved, mover.keys_moved, time.monotonic() - started, tuple(recovered), False,
            (exc.message,), left,
        )  # fmt: skip
    finally:
        masters.close()
    if not problems:
        remove_state(plan.state)
    return SlotMoveResult(
        moved, mover.keys_moved, time.monotonic() - started, tuple(recovered), not problems,
        tuple(problems),
    )  # fmt: skip


def verify(masters: Masters, moves: Sequence[Move]) -> list[str]:
    """Every master's own view: each moved slot belongs to its target, and no slot is open."""
    views: dict[str, tuple[NodeLine, ...]] = {}
    problems: list[str] = []
    for node_id in masters.masters:
        try:
            views[node_id] = read_view(masters.conn(node_id))
        except HostError as exc:
            problems.append(f"{masters.name(node_id)} could not be checked: {exc.message}")
    for slot in open_slots(views, masters.names):
        problems.append(
            f"slot {slot.slot} is still open ({slot.seen}): {masters.name(slot.source)} -> "
            f"{masters.name(slot.target)}"
        )
    for node_id, view in views.items():
        owner = {s: line.node_id for line in view if "master" in line.flags
                 for a, b in line.slots for s in range(a, b + 1)}  # fmt: skip
        wrong = [m.slot for m in moves if owner.get(m.slot) != m.target]
        if wrong:
            problems.append(
                f"{masters.name(node_id)} sees {len(wrong)} moved slot(s) elsewhere "
                f"(first: {wrong[0]})"
            )
    return problems


# --- the change engine's view ---------------------------------------------------------------


def slot_plan_change(plan: SlotPlan, *, what: str, pending_extra: int = 0) -> ChangePlan:
    """The plan as the change engine's: one row per master, the moves in the summary."""
    pending = len(plan.moves) + len(plan.recover) + pending_extra
    refused = f"{plan.command} of cluster {plan.cluster} refused: " + "; ".join(
        [*plan.blockers, *plan.refusals][:1]
    )
    return ChangePlan(
        command=plan.command,
        rows=plan.masters,
        question=f"{what}?",
        pending=pending,
        summary=plan_summary(plan),
        blockers=plan.blockers,
        refusals=plan.refusals,
        refused=refused,
        hint=None if plan.blockers else "re-run with --force to go ahead anyway",
        undone="moved",
        noun="masters",
    )


def plan_summary(plan: SlotPlan) -> dict:
    return {
        "cluster": plan.cluster,
        "by": plan.by,
        "tolerance": plan.tolerance,
        "slots": len(plan.moves),
        "keys": plan.keys,
        "bytes": plan.bytes,
        "moves": [vars(group) for group in plan.groups],
        "open_slots": [vars(slot) for slot in plan.recover],
        "big_keys": [vars(key) for key in plan.big_keys],
        "max_key_size": plan.max_key_size,
        "notes": list(plan.notes),
        "resumed_from": plan.resumed_from,
        "state_file": str(plan.state) if plan.state else None,
    }


def slot_move_outcome(plan: SlotPlan, result: SlotMoveResult, rerun: str,
                      extra: dict | None = None) -> ChangeOutcome:  # fmt: skip
    """The run as the change engine's outcome: a problem fails the run (exit 1), naming the
    slot left open and the command that finishes it."""
    errors: list[str] = []
    if result.open_slot:
        errors.append(f"{result.open_slot}; run `{rerun}` to finish it (state: {plan.state})")
    elif result.problems:
        errors += [*result.problems, f"run `{rerun}` to finish (state: {plan.state})"]
    return ChangeOutcome(
        plan.masters,
        summary={
            "moved_slots": result.moved_slots,
            "keys_moved": result.keys_moved,
            "seconds": round(result.seconds, 3),
            "recovered": list(result.recovered),
            "verified": result.verified,
            **(extra or {}),
        },
        errors=errors,
        warnings=list(result.recovered),
        failed=bool(result.problems),
    )


def audit_entry(plan: SlotPlan, result: SlotMoveResult | None, outcome: str) -> dict:
    return {
        "command": plan.command,
        "cluster": plan.cluster,
        "by": plan.by,
        "tolerance": plan.tolerance,
        "planned_slots": len(plan.moves),
        "planned_keys": plan.keys,
        "moves": [
            {
                "from": g.source,
                "to": g.target,
                "slots": format_slots([tuple(r) for r in g.slots], most=10),
            }
            for g in plan.groups
        ],
        "moved_slots": result.moved_slots if result else 0,
        "keys_moved": result.keys_moved if result else 0,
        "recovered": list(result.recovered) if result else [],
        "outcome": outcome,
    }


def plan_rebalance(
    cluster: Cluster,
    *,
    by: str,
    tolerance: float,
    max_key_size: int,
    state_dir: Path,
    force: bool,
    timeout: float,
    parallel: int,
) -> SlotPlan:
    """Read the cluster and plan `cluster rebalance` (or the rest of an interrupted one)."""
    reading = read_cluster(cluster, timeout=timeout, parallel=parallel)
    moves, notes, resuming, started, blockers = resume_or_plan(
        reading,
        "cluster rebalance",
        state_dir,
        lambda: balance_moves(reading.readings, by, tolerance),
    )
    plan = plan_slot_moves(
        reading,
        moves,
        command="cluster rebalance",
        by=by,
        tolerance=tolerance,
        max_key_size=max_key_size,
        state_dir=state_dir,
        force=force,
        notes=notes,
        resuming=resuming,
    )
    return replace(plan, blockers=(*plan.blockers, *blockers), resumed_from=started)
