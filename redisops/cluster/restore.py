"""`cluster restore`: put a cluster backup set back onto a cluster of the same shape.

Shards are matched by their slot ranges: each member's RDB goes to the master that owns
exactly the member's slots, by `backup restore`'s own plan and execution (re-verified backup,
safety backup, staged upload, stop, rename, start, load, key check, roll back on failure).
Before a master is stopped its replicas are stopped and their data files (dbfilename and
AOF) removed: a replica left running could be promoted while its master is down, and one
that kept its data could load it and offer it as the shard's. They are started again once
the master runs on the restored data, and resync from it in full. Shards go one at a time;
the first that fails stops the run (the others are left as they were). The cluster is then
waited for until `cluster status` finds no problem, and each shard's keys are compared with
its member's.

A cluster of another shape (other slot ranges), or one whose nodes give no host access (a
managed cluster), cannot take an RDB per shard: the plan is refused and names, member by
member, the `backup restore-keys` command that loads the same keys routed by slot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from redisops.backup.capture import Progress
from redisops.backup.catalogue import Backup, Catalogue
from redisops.backup.clusterset import ClusterSet, SetMember, check_set
from redisops.backup.restore import (
    RestorePlan,
    RestoreResult,
    execute_restore,
    plan_restore,
    read_target,
    stop_server,
)
from redisops.change import ChangeOutcome, ChangePlan
from redisops.errors import HostError
from redisops.fleet.cluster import Cluster, format_slots
from redisops.fleet.connection import redis_client
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import open_host_access
from redisops.interrupt import pause, raise_if_stopped
from redisops.results import HostResult

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ReplicaReset:
    """A replica stopped, its data files removed, and started again to resync."""

    name: str
    address: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class ShardRestore:
    """One member of the set and where it goes. `master` is None when no master of the
    cluster owns exactly the member's slots; `restore` is `backup restore`'s plan."""

    shard: str
    slots: tuple[tuple[int, int], ...]
    backup_id: str
    backup_host: str
    keys: int | None
    master: str | None
    replicas: tuple[ReplicaReset, ...]
    restore: RestorePlan | None


@dataclass(frozen=True)
class ShardRestored:
    """A shard restored: `backup restore`'s result on its master, the replicas whose link
    came up again, and the keys the cluster counted for it once healthy."""

    shard: str
    master: str
    backup_id: str
    restore: RestoreResult
    replicas_linked: tuple[str, ...]
    keys_expected: int | None
    keys_now: int | None = None


def normalised(slots: Sequence[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Slot ranges sorted, adjacent ones merged: the same slots always compare equal."""
    merged: list[list[int]] = []
    for first, last in sorted((int(a), int(b)) for a, b in slots):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return tuple((a, b) for a, b in merged)


def restore_keys_commands(cluster_set: ClusterSet, target: str, dest: Path | None) -> list[str]:
    """The key-level route: one `backup restore-keys` per member, into the whole cluster."""
    where = f" --dest {dest}" if dest else ""
    return [
        f"redisops -l {target} backup restore-keys {m.backup_id} --all{where}"
        for m in cluster_set.members
    ]


def plan_cluster_restore(
    cluster_set: ClusterSet,
    catalogue: Catalogue,
    cluster: Cluster,
    *,
    dest: Path | None,
    safety_backup: bool,
    timeout: float,
    wait: float,
) -> ChangePlan[ShardRestore]:
    """Check the set and the cluster's shape, plan each shard's restore; change nothing."""
    blockers: list[str] = []
    refusals: list[str] = []
    checked = check_set(cluster_set, catalogue)
    if not checked.good:
        blockers.append(
            f"set {cluster_set.set_id} does not verify: {checked.verification.problems[0]}"
        )
    hosts = {h.name: h for h in cluster.nodes}
    owners = {normalised(s.slots): s for s in cluster.shards if s.slots}
    wanted = {normalised(m.slots): m for m in cluster_set.members}
    backups = {b.backup_id: b for b in catalogue.backups}
    rows: list[HostResult[ShardRestore]] = []
    same_shape = owners.keys() == wanted.keys()
    key_route = not same_shape
    if not same_shape:
        key_route = True
        blockers.append(
            f"cluster {cluster.name} is not the shape of set {cluster_set.set_id}: the set has "
            f"{len(wanted)} shards ({_shape(wanted)}), the cluster {len(owners)} masters with "
            f"slots ({_shape(owners)}); an RDB holds its own shard's slots only"
        )
    for member in cluster_set.members:
        shard = owners.get(normalised(member.slots)) if not key_route else None
        if shard is None:
            rows.append(_unplaced(member))
            continue
        master = hosts[shard.nodes[0]]
        backup = backups.get(member.backup_id)
        if backup is None:
            blockers.append(f"{member.shard}: backup {member.backup_id} is not in the catalogue")
            rows.append(_unplaced(member, master.name))
            continue
        try:
            plan = plan_restore(
                backup,
                master,
                (),
                from_host=backup.host,
                safety_backup=safety_backup,
                timeout=timeout,
                wait=wait,
                replicas_resync=True,
            )
            replicas = tuple(_replica_reset(hosts[n], timeout=timeout) for n in shard.nodes[1:])
        except HostError as exc:
            blockers.append(f"{shard.name} ({master.name}): {exc.message}")
            rows.append(_unplaced(member, master.name))
            continue
        blockers += [f"{shard.name} ({master.name}): {b}" for b in plan.blockers]
        blockers += [
            f"{name} has no inventory entry of its own: it would be stopped and started with "
            "the seed's service_stop/service_start (add an entry with its host and port)"
            for name in shard.nodes
            if name.startswith(f"{cluster.name}@")
        ]
        refusals += [f"{shard.name} ({master.name}): {r}" for r in plan.refusals]
        for name in shard.nodes[1:]:
            replica = hosts[name]
            if not replica.has_host_access or not replica.service_start:
                blockers.append(
                    f"{shard.name}: replica {name} has no host access or no service_start in "
                    "the inventory: it could not be stopped, emptied and started again"
                )
        if not master.has_host_access:
            key_route = True
        restore = ShardRestore(
            shard=shard.name,
            slots=normalised(member.slots),
            backup_id=member.backup_id,
            backup_host=member.host,
            keys=member.keys,
            master=master.name,
            replicas=replicas,
            restore=plan,
        )
        rows.append(HostResult(master.name, master.address, True, None, restore))
    hint = None
    if key_route:
        hint = "restore by key instead, routed by slot, one member at a time: " + "; ".join(
            restore_keys_commands(cluster_set, cluster.name, dest)
        )
    if blockers:
        refused = f"cannot restore set {cluster_set.set_id} onto cluster {cluster.name}"
        refused += f": {blockers[0]}" if len(blockers) == 1 else "; nothing was changed"
    else:
        refused = f"restore of {cluster_set.set_id} onto cluster {cluster.name} refused"
    return ChangePlan(
        command="cluster restore",
        rows=rows,
        question=(
            f"Replace the data of all {len(rows)} shards of cluster {cluster.name} with set "
            f"{cluster_set.set_id}?"
        ),
        pending=len(rows),
        summary={
            "set_id": cluster_set.set_id,
            "cluster": cluster.name,
            "same_shape": same_shape,
            "restore_keys": restore_keys_commands(cluster_set, cluster.name, dest)
            if key_route
            else [],
        },
        blockers=blockers,
        refusals=refusals,
        refused=refused,
        hint=hint,
        undone="restored",
        noun="shards",
    )


def _shape(shards: Mapping[tuple[tuple[int, int], ...], object]) -> str:
    return ", ".join(format_slots(slots) for slots in sorted(shards))


def _unplaced(member: SetMember, master: str | None = None) -> HostResult[ShardRestore]:
    restore = ShardRestore(
        shard=member.shard,
        slots=normalised(member.slots),
        backup_id=member.backup_id,
        backup_host=member.host,
        keys=member.keys,
        master=master,
        replicas=(),
        restore=None,
    )
    return HostResult(master or member.shard, "", True, None, restore)


def _replica_reset(replica: Host, *, timeout: float) -> ReplicaReset:
    """The files a replica would load at its next start: they go before it starts again."""
    state = read_target(replica, (), timeout=timeout)
    files = [f"{state.dir}/{state.dbfilename}"]
    if state.aof_path:
        files.append(state.aof_path)
    return ReplicaReset(replica.name, replica.address, tuple(files))


def apply_cluster_restore(
    plan: ChangePlan[ShardRestore],
    cluster: Cluster,
    backups: Mapping[str, Backup],
    dest: Path,
    *,
    timeout: float,
    parallel: int,
    wait: float,
    progress: Progress | None = None,
) -> ChangeOutcome[ShardRestored]:
    """Restore shard by shard (stopping at the first failure), then wait until the cluster
    is healthy and count each shard's keys."""
    hosts = {h.name: h for h in cluster.nodes}
    rows: list[HostResult[ShardRestored]] = []
    errors: list[str | HostError] = []
    failed: str | None = None
    for row in plan.rows:
        shard = row.data
        if failed is not None:
            rows.append(
                HostResult(row.host, row.address, False, f"not restored: {failed} failed first")
            )
            continue
        try:
            done = _restore_shard(
                shard, hosts, backups[shard.backup_id], dest,
                timeout=timeout, wait=wait, progress=progress,
            )  # fmt: skip
        except HostError as exc:
            failed = shard.shard
            rows.append(HostResult(row.host, row.address, False, exc.message))
            errors.append(HostError(f"{shard.shard} ({row.host}): {exc.message}", exc.hint))
            continue
        ok = done.restore.problem is None
        rows.append(HostResult(row.host, row.address, ok, done.restore.problem, done))
        if not ok:
            errors.append(f"{shard.shard} ({row.host}): {done.restore.problem}")
    if failed is not None:
        return ChangeOutcome(rows, errors=errors, summary={"healthy": None})
    status = wait_healthy(cluster, timeout=timeout, parallel=parallel, wait=wait)
    counts = {normalised(s.slots): s.keys for s in status.shards}
    rows = [
        HostResult(
            r.host, r.address, r.ok, r.error,
            _with_keys(r.data, counts.get(normalised(_slots_of(plan, r.host)))),
        )
        for r in rows
    ]  # fmt: skip
    if not status.healthy:
        errors += [f"cluster {cluster.name}: {p.message}" for p in status.problems]
    return ChangeOutcome(
        rows, errors=errors, summary={"healthy": status.healthy}, failed=not status.healthy
    )


def _slots_of(plan: ChangePlan[ShardRestore], host: str) -> tuple[tuple[int, int], ...]:
    return next(r.data.slots for r in plan.rows if r.host == host)


def _with_keys(done: ShardRestored | None, keys: int | None) -> ShardRestored | None:
    if done is None:
        return None
    return dataclasses.replace(done, keys_now=keys)


def _restore_shard(
    shard: ShardRestore,
    hosts: Mapping[str, Host],
    backup: Backup,
    dest: Path,
    *,
    timeout: float,
    wait: float,
    progress: Progress | None,
) -> ShardRestored:
    """Replicas stopped and emptied, the master restored, the replicas started again (also
    when the restore failed: they then resync from the master's previous data)."""
    master = hosts[str(shard.master)]
    replicas = [hosts[r.name] for r in shard.replicas]
    with _replicas_down(shard.replicas, replicas, timeout=timeout, wait=wait):
        result = execute_restore(
            shard.restore, backup, master, dest, timeout=timeout, wait=wait, progress=progress
        )
    linked = tuple(
        replica.name for replica in replicas if _link_up(replica, timeout=timeout, wait=wait)
    )
    return ShardRestored(
        shard=shard.shard,
        master=master.name,
        backup_id=shard.backup_id,
        restore=result,
        replicas_linked=linked,
        keys_expected=shard.keys,
    )


@contextlib.contextmanager
def _replicas_down(
    resets: Sequence[ReplicaReset], replicas: Sequence[Host], *, timeout: float, wait: float
) -> Iterator[None]:
    """Stop each replica and remove its data files; start them all again on the way out."""
    stopped: list[Host] = []
    try:
        for reset, replica in zip(resets, replicas, strict=True):
            with open_host_access(replica, timeout=timeout) as access:
                stop_server(access, replica, timeout=timeout, wait=wait)
                stopped.append(replica)
                access.run(["rm", "-rf", "--", *reset.files])
        yield
    finally:
        for replica in stopped:
            with open_host_access(replica, timeout=timeout) as access:
                access.run_shell(str(replica.service_start), timeout=max(timeout, 30.0))


def _link_up(replica: Host, *, timeout: float, wait: float) -> bool:
    """Whether the replica's link to its master comes up within `wait` seconds (a full
    resync of the restored data)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        raise_if_stopped()
        with (
            contextlib.suppress(HostError),
            redis_client(replica, timeout=timeout, decode=True) as client,
        ):
            info = client.info("replication")
            syncing = str(info.get("master_sync_in_progress", 0)) != "0"
            if info.get("master_link_status") == "up" and not syncing:
                return True
        pause(POLL_SECONDS)
    return False


def wait_healthy(cluster: Cluster, *, timeout: float, parallel: int, wait: float):
    """`cluster status` until it finds no problem, or its last reading after `wait` seconds
    (a restarted master is FAIL for the others until gossip clears it)."""
    from redisops.cluster.status import cluster_status

    deadline = time.monotonic() + wait
    while True:
        raise_if_stopped()
        status = cluster_status(cluster, timeout=timeout, parallel=parallel)
        if status.healthy or time.monotonic() >= deadline:
            return status
        pause(POLL_SECONDS)
