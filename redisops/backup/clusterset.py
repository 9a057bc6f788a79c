"""Cluster backup sets: one RDB per shard of a Redis Cluster, recorded as one set.

`backup run` on a cluster picks one node per shard (`choose_sources`: a replica whose link
to its master is up and not syncing, else the master) and backs each up with the ordinary
per-host path (lock, capture, verification, catalogue). When every shard's backup worked,
`record_set` writes the set: the slot map (each shard's ranges), each shard's backup id and
node, and the spread between the first and the last snapshot (the moments the snapshots
were asked for: shards are snapshotted in parallel, never at one instant, so writes that
span shards may be in one shard's RDB and not another's).

A set is `DEST/<cluster>/<set id>.set.json` (0600, written whole), beside nothing else: the
per-host catalogue reads folders only, so it never mistakes a set for a backup. Checking a
set (`check_set`, at the run and by `backup verify`) proves that its shards cover all 16384
slots once each, that every member backup is in the catalogue and not failed, and that every
key in each RDB hashes into its own shard's slots (a key elsewhere means the slot map is not
the one the data was saved under: restored so, that key would be unreachable).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timezone
from pathlib import Path

from redisops.backup.catalogue import (
    FAILED,
    VERIFIED,
    Backup,
    Catalogue,
    Verification,
    format_time,
    now_utc,
    parse_time,
    private_dir,
)
from redisops.errors import HostError
from redisops.fleet.cluster import SLOTS, Cluster, format_slots
from redisops.fleet.fanout import run_on_hosts
from redisops.fleet.host import Host
from redisops.interrupt import raise_if_stopped
from redisops.privatefile import private_file
from redisops.results import HostResult

SET_SUFFIX = ".set.json"
SET_FORMAT = 1


@dataclass(frozen=True)
class SetMember:
    """One shard of a set: its slot ranges, the node backed up and why, and its backup."""

    shard: str
    shard_id: str
    slots: tuple[tuple[int, int], ...]
    host: str
    address: str
    node_id: str
    role: str
    source: str  # why this node: "replica, link up" or "master: …"
    backup_id: str
    snapshot_at: str  # when the snapshot was asked for (the backup's started_at)
    bytes: int
    keys: int | None


@dataclass(frozen=True)
class ClusterSet:
    """One cluster backup set. `spread_seconds` is the time between the first and the last
    shard's snapshot; `slots_covered` counts the slots some member holds."""

    set_id: str
    cluster: str
    started_at: str
    finished_at: str
    spread_seconds: float
    slots_covered: int
    members: tuple[SetMember, ...]
    verification: Verification
    keys_checked: int | None = None  # keys whose slot was checked by the last verification
    path: str = ""

    @property
    def good(self) -> bool:
        return self.verification.status != FAILED

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.members)

    @property
    def keys(self) -> int | None:
        counts = [m.keys for m in self.members]
        return None if None in counts else sum(c for c in counts if c is not None)


@dataclass(frozen=True)
class Source:
    """The node chosen to back up one shard, and why."""

    shard: str
    host: Host
    why: str


@dataclass(frozen=True)
class ClusterPlan:
    """Where a cluster's set comes from: one source per shard (`sources`); `no_set` says why
    no set can be recorded (a selected shard without a usable node: an error), `partial`
    that the selection left whole shards out (no set either, on purpose)."""

    cluster: Cluster
    sources: tuple[Source, ...]
    no_set: str | None = None
    notes: tuple[str, ...] = ()
    partial: bool = False  # the selection left whole shards out: no set, and no error


def choose_sources(
    cluster: Cluster, selected: Sequence[Host], *, timeout: float, parallel: int
) -> ClusterPlan:
    """Pick one selected node per shard with slots: a replica whose master link is up and not
    syncing (inventory order), else the shard's master. Replicas are asked INFO replication
    in parallel; one that does not answer, or whose link is down, is passed over and named
    in the reason the master was chosen (`master (cache-e link down)`)."""
    from redisops.fleet.connection import redis_client

    nodes = [h for h in selected if h.node is not None and h.node.cluster == cluster.name]
    replicas = [h for h in nodes if h.node.role == "replica" and h.discovery_error is None]

    def link(host: Host) -> dict:
        with redis_client(host, timeout=timeout, decode=True) as client:
            return client.info("replication")

    answers = {r.host: r for r in run_on_hosts(replicas, link, parallel=parallel)}
    sources: list[Source] = []
    notes: list[str] = []
    unusable: list[str] = []
    unselected: list[str] = []
    for shard in cluster.shards:
        if not shard.slots:
            continue
        members = [h for h in nodes if h.node.shard == shard.name]
        if not members:
            unselected.append(shard.name)
            continue
        chosen = None
        passed: list[str] = []
        for host in members:
            if host.node.role != "replica" or host.discovery_error is not None:
                continue
            answer = answers[host.name]
            if not answer.ok:
                passed.append(f"{host.name} did not answer")
                continue
            info = answer.data
            if info.get("master_link_status") == "up" and not info.get("master_sync_in_progress"):
                chosen = Source(shard.name, host, "replica, link up")
                break
            passed.append(f"{host.name} link {info.get('master_link_status', 'unknown')}")
        if chosen is None:
            master = next((h for h in members if h.node.role == "master"), None)
            if master is not None:
                if passed:
                    why = f"master ({'; '.join(passed)})"
                elif len(shard.nodes) > 1:
                    why = "master, no replica selected"
                else:
                    why = "master, the shard has no replica"
                chosen = Source(shard.name, master, why)
        if chosen is None:
            unusable.append(f"{shard.name} ({'; '.join([*passed, 'its master not selected'])})")
            continue
        sources.append(chosen)
    shards = sum(1 for s in cluster.shards if s.slots)
    no_set = None
    if unusable:
        no_set = (
            f"no backup set for cluster {cluster.name}: no node to back up in {', '.join(unusable)}"
        )
    elif unselected:
        # Part of a cluster asked for on purpose (-l CLUSTER/shard-2): its shards' backups
        # are taken, and no set claims to hold the whole cluster.
        notes.append(
            f"no backup set: the selection holds {shards - len(unselected)} of {shards} "
            f"shards (not {', '.join(unselected)}); each is backed up on its own"
        )
        return ClusterPlan(cluster, tuple(sources), None, tuple(notes), partial=True)
    return ClusterPlan(cluster, tuple(sources), no_set, tuple(notes))


def new_set_id(folder: Path, cluster: str, moment_text: str) -> str:
    """`<cluster>-<UTC time>`, with `-2`, `-3`... when taken."""
    stamp = parse_time(moment_text).astimezone(timezone.utc)
    base = f"{cluster}-{stamp:%Y%m%dT%H%M%SZ}"
    candidate, number = base, 1
    while (folder / f"{candidate}{SET_SUFFIX}").exists():
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def build_set(plan: ClusterPlan, backups: dict[str, Backup], folder: Path) -> ClusterSet:
    """The set of `plan`'s shards from their backups (by host name), not yet checked."""
    members = []
    for source in plan.sources:
        backup = backups[source.host.name]
        node = source.host.node
        shard = next(s for s in plan.cluster.shards if s.name == source.shard)
        members.append(
            SetMember(
                shard=shard.name,
                shard_id=shard.shard_id,
                slots=tuple(shard.slots),
                host=source.host.name,
                address=source.host.address,
                node_id=node.node_id,
                role=backup.role,
                source=source.why,
                backup_id=backup.backup_id,
                snapshot_at=backup.started_at,
                bytes=backup.bytes,
                keys=backup.keys,
            )
        )
    snapshots = [parse_time(m.snapshot_at) for m in members]
    started = min(snapshots)
    return ClusterSet(
        set_id=new_set_id(folder, plan.cluster.name, format_time(started)),
        cluster=plan.cluster.name,
        started_at=format_time(started),
        finished_at=max(backups[s.host.name].finished_at for s in plan.sources),
        spread_seconds=round((max(snapshots) - started).total_seconds(), 3),
        slots_covered=_covered(members),
        members=tuple(members),
        verification=Verification("unchecked", format_time(now_utc())),
    )


def _covered(members: Iterable[SetMember]) -> int:
    owned = bytearray(SLOTS)
    for member in members:
        for first, last in member.slots:
            owned[first : last + 1] = b"\x01" * (last - first + 1)
    return SLOTS - owned.count(0)


def set_folder(dest: Path, cluster: str) -> Path:
    """DEST/<cluster>, created 0700 (with DEST) if missing."""
    private_dir(dest)
    return private_dir(dest / cluster)


def write_set(folder: Path, cluster_set: ClusterSet) -> ClusterSet:
    """`<set id>.set.json` in `folder`, replaced whole (temporary name, fsync, rename), 0600."""
    document = {"format": SET_FORMAT, **asdict(cluster_set)}
    document.pop("path")
    path = folder / f"{cluster_set.set_id}{SET_SUFFIX}"
    with private_file(path) as handle:
        handle.write(json.dumps(document, indent=2) + "\n")
    return replace(cluster_set, path=str(path))


def read_set(path: Path) -> ClusterSet:
    """The set in `path`; ValueError when it is unreadable or not one of ours."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: unreadable ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg})") from None
    if not isinstance(document, dict) or document.pop("format", None) != SET_FORMAT:
        raise ValueError(f"{path}: not a redisops cluster backup set (format 1)")
    try:
        members = tuple(
            SetMember(**(m | {"slots": tuple(tuple(r) for r in m["slots"])}))
            for m in document.pop("members")
        )
        checked = document.pop("verification")
        verification = Verification(
            status=checked["status"],
            checked_at=checked["checked_at"],
            checks=tuple(checked.get("checks", ())),
            problems=tuple(checked.get("problems", ())),
        )
        return ClusterSet(**document, members=members, verification=verification, path=str(path))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: lacks or misnames a field ({exc})") from None


def load_sets(
    dests: Iterable[Path], clusters: Iterable[str] | None = None
) -> tuple[list[ClusterSet], list[str]]:
    """Every set under `dests` (of `clusters` only, when given), oldest first, and what was
    unreadable."""
    wanted = set(clusters) if clusters is not None else None
    found: list[ClusterSet] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for dest in dests:
        dest = dest.expanduser()
        if not dest.is_dir() or dest.resolve() in seen:
            continue
        seen.add(dest.resolve())
        for folder in sorted(dest.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            if wanted is not None and folder.name not in wanted:
                continue
            for path in sorted(folder.glob(f"*{SET_SUFFIX}")):
                if path.name.startswith("."):
                    continue
                try:
                    found.append(read_set(path))
                except ValueError as exc:
                    problems.append(str(exc))
    found.sort(key=lambda s: (s.started_at, s.set_id))
    return found, problems


def find_set(sets: Sequence[ClusterSet], set_id: str) -> ClusterSet | None:
    return next((s for s in sets if s.set_id == set_id), None)


def check_set(cluster_set: ClusterSet, catalogue: Catalogue) -> ClusterSet:
    """The set with a fresh verdict: coverage, members present and not failed, and every key
    of each member's RDB in its shard's slots. Reads each RDB whole (its CRC64 checked on
    the way). The verdict is not written: see `record_set_check`."""
    checks: list[str] = []
    problems: list[str] = []
    problems.extend(_coverage_problems(cluster_set.members))
    if not problems:
        checks.append(f"{len(cluster_set.members)} shards cover all {SLOTS} slots once")
    backups = {b.backup_id: b for b in catalogue.backups}
    keys = 0
    for member in cluster_set.members:
        raise_if_stopped()
        backup = backups.get(member.backup_id)
        if backup is None:
            problems.append(
                f"{member.shard}: backup {member.backup_id} is not in the catalogue "
                "(pruned or deleted?)"
            )
            continue
        if not backup.good:
            problems.append(f"{member.shard}: backup {member.backup_id} failed verification")
            continue
        try:
            count, stray = _keys_outside(backup, member.slots)
        except HostError as exc:
            problems.append(f"{member.shard}: {member.backup_id}: {exc.message}")
            continue
        keys += count
        if stray:
            key, slot, outside = stray
            problems.append(
                f"{member.shard}: key {key} in {member.backup_id} hashes to slot {slot}, "
                f"outside the shard's slots {format_slots(member.slots)}"
                + (f" ({outside:,} keys outside in all)" if outside > 1 else "")
            )
        else:
            checks.append(f"{member.shard}: {count:,} keys, all in its slots")
    status = FAILED if problems else VERIFIED
    verification = Verification(status, format_time(now_utc()), tuple(checks), tuple(problems))
    return replace(
        cluster_set,
        verification=verification,
        keys_checked=keys,
        slots_covered=_covered(cluster_set.members),
    )


def _coverage_problems(members: Sequence[SetMember]) -> list[str]:
    owner: list[str | None] = [None] * SLOTS
    overlaps: list[str] = []
    for member in members:
        for first, last in member.slots:
            for slot in range(max(0, first), min(SLOTS - 1, last) + 1):
                if owner[slot] is not None and not overlaps:
                    overlaps.append(f"slot {slot} is in both {owner[slot]} and {member.shard}")
                owner[slot] = member.shard
    problems = overlaps
    missing = [slot for slot in range(SLOTS) if owner[slot] is None]
    if missing:
        problems.append(
            f"the set covers {SLOTS - len(missing)} of {SLOTS} slots: "
            f"{format_slots(_ranges(missing))} in no shard's backup"
        )
    return problems


def _ranges(slots: Sequence[int]) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    for slot in slots:
        if ranges and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot)
        else:
            ranges.append((slot, slot))
    return ranges


def _keys_outside(
    backup: Backup, slots: Sequence[tuple[int, int]]
) -> tuple[int, tuple[str, int, int] | None]:
    """(keys read, None or (first key outside `slots` shown, its slot, how many are outside)).

    HostError (RdbError) when the RDB cannot be read whole."""
    from redisops.datafile import CorruptData, raw_chunks
    from redisops.keypatterns import key_text
    from redisops.memory.slots import key_slot
    from redisops.rdb.reader import RdbReader

    owned = bytearray(SLOTS)
    for first, last in slots:
        owned[first : last + 1] = b"\x01" * (last - first + 1)
    rdb = next((f for f in backup.files if f.role == "rdb"), None)
    if rdb is None:
        raise HostError(f"no RDB file in backup {backup.backup_id} (a set holds RDB backups)")
    count, outside, first_stray = 0, 0, None
    try:
        reader = RdbReader(raw_chunks(Path(backup.path) / rdb.name, rdb.compression))
        for batch in reader.batches():
            raise_if_stopped()
            count += len(batch)
            for row in batch:
                slot = key_slot(row[1])
                if not owned[slot]:
                    outside += 1
                    if first_stray is None:
                        first_stray = (repr(key_text(row[1])), slot)
    except (CorruptData, OSError) as exc:
        raise HostError(f"cannot read its RDB: {exc}") from None
    if first_stray is None:
        return count, None
    return count, (*first_stray, outside)


def record_set_check(cluster_set: ClusterSet) -> tuple[ClusterSet, bool]:
    """Write a checked set back over its file; False when it could not be written."""
    try:
        write_set(Path(cluster_set.path).parent, cluster_set)
    except OSError:
        return cluster_set, False
    return cluster_set, True


def record_sets(
    plans: Sequence[ClusterPlan],
    results: Sequence[HostResult[Backup]],
    dests: dict[str, Path],
    catalogue_of: Callable[[], Catalogue],
    rediscover: Callable[[Cluster], Cluster] | None = None,
) -> list[HostResult[ClusterSet]]:
    """One row per cluster: its set, written and checked when every shard's backup worked;
    an error row saying why not otherwise. `catalogue_of()` loads the catalogue of the
    members (called once, when some set is to be checked); `rediscover(cluster)` asks the
    cluster its slot map again after the backups: a set taken while slots moved fails."""
    taken = {r.host: r.data for r in results if r.ok and r.data is not None}
    rows: list[HostResult[ClusterSet]] = []
    catalogue: Catalogue | None = None
    for plan in plans:
        name = plan.cluster.name
        if plan.partial:
            continue
        if plan.no_set:
            rows.append(HostResult(name, "", False, plan.no_set, None))
            continue
        failed = [s.shard for s in plan.sources if s.host.name not in taken]
        if failed:
            rows.append(
                HostResult(
                    name, "", False,
                    f"no backup set for cluster {name}: the backup of {', '.join(failed)} "
                    "failed (the other shards' backups are kept as host backups)",
                    None,
                )
            )  # fmt: skip
            continue
        folder = set_folder(dests[plan.sources[0].host.name], name)
        built = build_set(plan, taken, folder)
        if catalogue is None:
            catalogue = catalogue_of()
        checked = check_set(built, catalogue)
        if rediscover is not None:
            checked = _with_slot_map_check(checked, plan.cluster, rediscover(plan.cluster))
        checked = write_set(folder, checked)
        error = None if checked.good else f"{checked.set_id}: {checked.verification.problems[0]}"
        rows.append(HostResult(name, "", checked.good, error, checked))
    return rows


def _with_slot_map_check(cluster_set: ClusterSet, before: Cluster, after: Cluster) -> ClusterSet:
    """The set with the slot map as the cluster tells it after the backups compared with the
    one they were taken under: slots that moved meanwhile may have keys in two RDBs or none."""
    verification = cluster_set.verification
    if after.seed is None:
        note = "slot map after the backups not compared: no seed answered"
        checked = replace(verification, checks=(*verification.checks, note))
        return replace(cluster_set, verification=checked)
    moved = slot_map_changes(before, after)
    if moved is None:
        note = "slot map unchanged during the backups"
        checked = replace(verification, checks=(*verification.checks, note))
    else:
        checked = replace(verification, status=FAILED, problems=(*verification.problems, moved))
    return replace(cluster_set, verification=checked)


def slot_map_changes(before: Cluster, after: Cluster) -> str | None:
    """None when every slot is still with the slots it was with (a failover inside a shard
    changes nothing), else how many slots went to another shard or to none.

    Shards are matched by their slots, not by ids (Redis 7.0 names a shard after its
    master, which a failover changes): each shard after is the shard before that most of
    its slots come from; a slot that came from another one moved.
    """
    from collections import Counter

    old, new = _owners(before), _owners(after)
    origin: dict[int, Counter] = {}
    for slot in range(SLOTS):
        if new[slot] is not None:
            origin.setdefault(new[slot], Counter())[old[slot]] += 1
    label = {shard: counts.most_common(1)[0][0] for shard, counts in origin.items()}
    moved = [
        slot
        for slot in range(SLOTS)
        if (label[new[slot]] if new[slot] is not None else None) != old[slot]
    ]
    if not moved:
        return None
    return (
        f"the slot map changed during the backups: {len(moved):,} slots "
        f"({format_slots(_ranges(moved))}) moved to another shard or to none; take the "
        "backup again"
    )


def _owners(cluster: Cluster) -> list[int | None]:
    """Each slot's shard, as its index in `cluster.shards` (None when no shard has it)."""
    owners: list[int | None] = [None] * SLOTS
    for index, shard in enumerate(cluster.shards):
        for first, last in shard.slots:
            owners[first : last + 1] = [index] * (last - first + 1)
    return owners
