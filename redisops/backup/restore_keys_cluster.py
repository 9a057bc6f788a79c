"""`backup restore-keys` into a Redis Cluster: every key goes to the master serving its slot.

A backup of any server (standalone, or one node of a cluster of any shape) is loaded into
the cluster `-l CLUSTER` selects. The slot map starts as discovery saw it
(redisops.fleet.cluster); each key's slot is CRC16 of the key or its hash tag
(redisops.memory.slots.key_slot). The plan reads the whole backup as for one server and
asks each key's master whether the key exists (EXISTS, pipelined per master), counting per
shard. Clusters have db 0 only: selected keys of another db are a blocker naming their dbs.

Apply sends RESTOREs in rounds: the rows of the backup are routed to per-master pipelines,
every master gets its part, and the next round is built while the masters work on it (in
parallel); then every reply of the round is read, before the next one is sent. A
`MOVED` reply (the slot moved since the map was read) refreshes the map once for the round
and the key is sent to the node the reply names; `ASK` (the slot is being migrated) sends
`ASKING` + `RESTORE` to the named node. At most REDIRECTS redirections per key, then it is
named as failed. A round is fully answered before the next one, so the state file (keyed by
the cluster, as one target) resumes as for one server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from binascii import crc_hqx
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

from redisops.backup.restore_keys import (
    BATCH_BYTES,
    BATCH_KEYS,
    SAMPLES,
    STATE_AHEAD,
    STATE_SECONDS,
    FailedKey,
    KeySelection,
    KeySource,
    RestoreKeysPlan,
    RestoreKeysResult,
    TargetInfo,
    _batches,
    _classify,
    _ExistenceCheck,
    _format,
    _iso,
    _Run,
    _Tally,
    finish_apply,
    payload_version,
    read_state,
    read_target,
)
from redisops.datafile import CorruptData
from redisops.errors import HostError
from redisops.fleet.cluster import Cluster, format_slots, read_seed
from redisops.fleet.host import Host
from redisops.fleet.resp import RespConnection
from redisops.keypatterns import key_text
from redisops.memory.slots import SLOT_MASK, SLOTS, key_slot
from redisops.rdb.crc64 import crc64_function
from redisops.rdb.reader import RdbError

REDIRECTS = 5
ASKING = b"*1\r\n$6\r\nASKING\r\n"


@dataclass(frozen=True)
class ShardPlan:
    """One shard's part of the plan: keys its master would get, by fate."""

    shard: str
    master: str
    address: str
    slots: str
    create: int = 0
    overwrite: int = 0
    kept: int = 0
    bytes: int = 0

    @property
    def restore(self) -> int:
        return self.create + self.overwrite


@dataclass(frozen=True)
class ClusterPlan:
    """The cluster side of a plan: per shard counts, and selected keys that cannot go there
    (`other_dbs`: db -> keys, a cluster has db 0 only; `unserved`: in slots no master
    serves)."""

    name: str
    shards: tuple[ShardPlan, ...]
    other_dbs: dict[int, int] = field(default_factory=dict)
    unserved: int = 0


class SlotMap:
    """Which master serves each slot, and the Host to reach each node: the discovered nodes
    as they are (a replica promoted since keeps its inventory entry); a node discovery did
    not see inherits the first master's credentials, TLS and access."""

    def __init__(self, cluster: Cluster) -> None:
        self.masters = masters = masters_of(cluster)
        self.cluster = cluster.name
        self.template = masters[0]
        self.hosts = {host.address: host for host in masters}  # masters first: shard order
        self.hosts |= {h.address: h for h in cluster.nodes if h.address not in self.hosts}
        self.owner: list[str | None] = [None] * SLOTS
        for host in masters:
            for first, last in host.node.slots:
                self.owner[first : last + 1] = [host.address] * (last - first + 1)

    def host(self, address: str) -> Host:
        """The Host of a node by `host:port` (as MOVED and ASK name it)."""
        found = self.hosts.get(address)
        if found is None:
            name, _, port = address.rpartition(":")
            found = dataclasses.replace(
                self.template,
                name=f"{self.cluster}@{address}",
                host=name.strip("[]"),
                port=int(port),
                node=None,
            )
            self.hosts[address] = found
        return found

    def refresh(self, timeout: float) -> None:
        """Read the slots again from the first node that answers (after a MOVED)."""
        problems = []
        for host in list(self.hosts.values()):
            try:
                view = read_seed(host, timeout=timeout)
            except HostError as exc:
                problems.append(f"{host.name}: {exc.message}")
                continue
            owner: list[str | None] = [None] * SLOTS
            for node in view.nodes:
                if node.role != "master" or node.health == "fail" or not node.host:
                    continue
                address = f"[{node.host}]:{node.port}" if ":" in node.host else (
                    f"{node.host}:{node.port}"
                )  # fmt: skip
                self.host(address)
                for first, last in node.slots:
                    owner[first : last + 1] = [address] * (last - first + 1)
            self.owner = owner
            return
        raise HostError(f"cannot read the slot map of cluster {self.cluster}: {problems[0]}")


def masters_of(cluster: Cluster) -> tuple[Host, ...]:
    """The masters that serve slots, shard by shard."""
    return tuple(h for h in cluster.nodes if h.node and h.node.role == "master" and h.node.slots)


def cluster_state_path(
    state_dir: Path, source: KeySource, cluster: Cluster, selection: KeySelection, replace: bool
) -> Path:
    """The cluster as one target: its name and its inventory seeds (addresses that stay
    when slots move or a replica takes over), so a re-run after a failover still resumes."""
    seeds = ",".join(sorted(seed.address for seed in cluster.seeds))
    text = f"{source.identity}|cluster:{cluster.name}|{seeds}|{selection.fingerprint()}|{replace}"
    return state_dir / f"{cluster.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def plan_cluster_restore_keys(
    source: KeySource,
    cluster: Cluster,
    selection: KeySelection,
    *,
    replace: bool,
    state_dir: Path,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> RestoreKeysPlan:
    """Read every master and the whole backup (checking it), and count per shard what a run
    would do; changes nothing. Always counts (the db check needs every key read)."""
    masters = masters_of(cluster)
    targets = [read_target(host, timeout=timeout) for host in masters]
    state = cluster_state_path(state_dir, source, cluster, selection, replace)
    resume = read_state(state)
    blockers: list[str] = []
    for host, target in zip(masters, targets, strict=True):
        if target.role == "replica":
            blockers.append(
                f"{host.name} ({host.node.shard}) is a replica now: the slot map changed since "
                "discovery; run again"
            )
    if source.verification == "failed":
        blockers.append(
            f"{source.label} failed verification: {source.verification_problem or 'no detail'}"
            "; no key was sent"
        )
    target = _combined(targets)
    tally = _Tally()
    shard_tallies = {host.address: _Tally() for host in masters}
    slot_map = SlotMap(cluster)
    other_dbs: dict[int, int] = {}
    unserved = 0
    selected = (
        None
        if selection.everything and not selection.types and not selection.dbs
        else (selection.matcher())
    )
    digest = hashlib.sha256()
    now = time.time() * 1000
    position = resume.position if resume is not None else 0

    def relabelled(flavour: str, version: int) -> bool:
        return payload_version(flavour, version, 255, target) is None

    reader, batches = _batches(source, digest.update, values=relabelled)
    ordinal = 0
    with ExitStack() as stack:
        checkers = {
            host.address: _ExistenceCheck(
                stack.enter_context(closing(RespConnection(host, timeout=timeout))),
                found.keys_by_db,
            )
            for host, found in zip(masters, targets, strict=True)
        }
        try:
            for batch in batches:
                if progress is not None:
                    progress(reader.offset, source.raw_bytes)
                pending: dict[str, list] = {}
                for row in batch:
                    ordinal += 1
                    if selected is not None and not selected(row[0], row[1], row[2]):
                        continue
                    tally.selected += 1
                    if row[0] != 0:
                        other_dbs[row[0]] = other_dbs.get(row[0], 0) + 1
                        continue
                    if ordinal <= position:
                        tally.done += 1
                        continue
                    expire = row[7]
                    if 0 <= expire <= now:
                        tally.expired += 1
                        tally.sample("expired", row[0], row[1], row[2], f"expired {_iso(expire)}")
                        continue
                    if len(row) > 8:
                        kind = row[8][0]
                        if payload_version(reader.flavour, reader.version, kind, target) is None:
                            tally.unloadable += 1
                            tally.sample("unloadable", row[0], row[1], row[2], f"type byte {kind}")
                            continue
                    owner = slot_map.owner[key_slot(row[1])]
                    if owner is None:
                        unserved += 1
                        continue
                    pending.setdefault(owner, []).append((ordinal, row))
                for owner, rows in pending.items():
                    _classify(checkers[owner], rows, shard_tallies[owner], replace, resume)
        except (RdbError, CorruptData) as exc:
            blockers.append(f"{source.label} does not verify: {exc}; no key was sent")
        else:
            if source.sha256 and digest.hexdigest() != source.sha256:
                blockers.append(
                    f"{source.label} does not verify: its SHA-256 differs from the manifest's "
                    "(the stored file changed since it was taken); no key was sent"
                )
    tally.records = ordinal
    if other_dbs:
        named = ", ".join(f"db{db} ({count:,})" for db, count in sorted(other_dbs.items()))
        blockers.append(
            f"a cluster has db 0 only, and {sum(other_dbs.values()):,} selected key(s) are in "
            f"{named}: select db 0 with --db 0, or restore those into a standalone server"
        )
    if unserved:
        blockers.append(
            f"{unserved:,} selected key(s) hash to slots no master of {cluster.name} serves: "
            "see `redisops cluster status`"
        )
    shards = []
    for host in masters:
        part = shard_tallies[host.address]
        _merge(tally, part)
        shards.append(
            ShardPlan(
                shard=host.node.shard,
                master=host.name,
                address=host.address,
                slots=format_slots(host.node.slots),
                create=part.create,
                overwrite=part.overwrite,
                kept=part.kept,
                bytes=part.bytes,
            )
        )
    refusals = []
    if tally.unloadable:
        refusals.append(
            f"{tally.unloadable:,} selected key(s) are of a type {target.label} cannot load "
            f"from {_format(reader.flavour, reader.version)}: they cannot be restored there "
            "(--force restores the others)"
        )
    return RestoreKeysPlan(
        source=source,
        host=cluster.name,
        address=f"{len(masters)} masters",
        target=target,
        selection=selection,
        replace=replace,
        rdb_flavour=reader.flavour,
        rdb_version=reader.version,
        records=tally.records,
        selected=tally.selected,
        restore=tally.create + tally.overwrite,
        create=tally.create,
        overwrite=tally.overwrite,
        kept=tally.kept,
        expired=tally.expired,
        unloadable=tally.unloadable,
        done=tally.done,
        bytes=tally.bytes,
        samples={kind: tuple(found) for kind, found in tally.samples.items()},
        blockers=tuple(blockers),
        refusals=tuple(refusals),
        state_file=str(state),
        resume=resume,
        in_flight=tuple(sorted(tally.in_flight)),
        cluster=ClusterPlan(cluster.name, tuple(shards), other_dbs, unserved),
    )


def _combined(targets: Sequence[TargetInfo]) -> TargetInfo:
    """The masters as one target: payloads labelled for the oldest of them."""
    loads = [t.loads_rdb for t in targets]
    known = [v for v in loads if v is not None]
    keys: dict[int, int] = {}
    for target in targets:
        for db, count in target.keys_by_db.items():
            keys[db] = keys.get(db, 0) + count
    oldest = min(targets, key=lambda t: t.loads_rdb if t.loads_rdb is not None else 1 << 30)
    return dataclasses.replace(
        oldest,
        role="master",
        mode="cluster",
        keys_by_db=keys,
        loads_rdb=min(known) if known else None,
        loads_valkey=all(t.loads_valkey for t in targets),
    )


def _merge(tally: _Tally, part: _Tally) -> None:
    tally.create += part.create
    tally.overwrite += part.overwrite
    tally.kept += part.kept
    tally.done += part.done
    tally.bytes += part.bytes
    tally.in_flight.extend(part.in_flight)
    for kind, found in part.samples.items():
        into = tally.samples.setdefault(kind, [])
        into.extend(found[: max(0, SAMPLES - len(into))])


def apply_cluster_restore_keys(
    plan: RestoreKeysPlan,
    cluster: Cluster,
    *,
    rate: float,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> RestoreKeysResult:
    """Send the plan's RESTOREs, each to its slot's master (see the module docstring);
    outcomes as apply_restore_keys."""
    slot_map = SlotMap(cluster)
    run = _ClusterRun(plan, slot_map.template, rate=rate, timeout=timeout, progress=progress,
                      slot_map=slot_map)  # fmt: skip
    return finish_apply(run, plan)


class _ClusterRun(_Run):
    """Rounds of RESTOREs routed by slot: one round in flight while the next is built."""

    def __init__(self, plan, host, *, rate, timeout, progress, slot_map: SlotMap) -> None:
        super().__init__(plan, host, rate=rate, timeout=timeout, progress=progress)
        self.map = slot_map
        self.conns: dict[str, RespConnection] = {}
        self.by_master = {host.name: 0 for host in slot_map.masters}  # shard order
        self.redirects = 0

    def all(self) -> None:
        plan = self.plan
        self.state.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        selection = plan.selection
        selected = (
            None
            if selection.everything and not selection.types and not selection.dbs
            else (selection.matcher())
        )
        skip_to, in_flight, target = self.position, frozenset(plan.in_flight), plan.target
        head = b"*%d\r\n$7\r\nRESTORE\r\n"
        plain = head + b"$%d\r\n%b\r\n$1\r\n0\r\n$%d\r\n%b%b\r\n%b"  # as _Run.all
        timed = head + b"$%d\r\n%b\r\n$%d\r\n%d\r\n$%d\r\n%b%b\r\n%b"
        replace = b"$7\r\nREPLACE\r\n" if plan.replace else b""
        absttl = replace + b"$6\r\nABSTTL\r\n"
        fixed = 4 + bool(plan.replace)
        limit = BATCH_KEYS * len(self.map.masters)
        if self.rate > 0:
            limit = max(1, min(limit, int(self.rate / 10)))
        checksum = crc64_function()
        footers: dict[int, bytes | None] = {}
        ordinal = sent = selected_count = expired = unloadable = size = count = 0
        work: dict[str, list] = {}
        last_row: tuple = ()
        previous: tuple | None = None  # the round in flight
        now = time.time() * 1000
        owner = self.map.owner
        reader, batches = _batches(plan.source)
        for batch in batches:
            for row in batch:
                ordinal += 1
                if ordinal <= skip_to or ordinal in in_flight:
                    continue
                if selected is not None and not selected(row[0], row[1], row[2]):
                    continue
                selected_count += 1
                if row[0] != 0:
                    continue  # the plan refused any; a cluster has db 0 only
                expire = row[7]
                if 0 <= expire <= now:
                    expired += 1
                    continue
                payload = row[8]
                kind = payload[0]
                if kind not in footers:
                    version = payload_version(reader.flavour, reader.version, kind, target)
                    footers[kind] = None if version is None else version.to_bytes(2, "little")
                footer = footers[kind]
                if footer is None:
                    unloadable += 1
                    continue
                body, key = payload + footer, row[1]
                if row[9] >= 0 or row[10] >= 0:
                    command = self._command(head, fixed, key, expire, body, checksum, replace,
                                            absttl, row[9], row[10])  # fmt: skip
                elif expire < 0:
                    command = plain % (
                        fixed, len(key), key, len(body) + 8, body,
                        checksum(body).to_bytes(8, "little"), replace,
                    )  # fmt: skip
                else:
                    command = timed % (
                        fixed + 1, len(key), key, len(b"%d" % expire), expire, len(body) + 8,
                        body, checksum(body).to_bytes(8, "little"), absttl,
                    )  # fmt: skip
                slot = key_slot(key) if b"{" in key else crc_hqx(key, 0) & SLOT_MASK
                address = owner[slot] or next(iter(self.map.hosts))
                work.setdefault(address, []).append((command, row, False))
                last_row = row
                size += len(command)
                count += 1
                if count >= limit or size >= BATCH_BYTES * len(self.map.masters):
                    if previous is not None:
                        self._collect(previous)  # the servers ran it while this one was built
                    previous = self._send(work, ordinal, row)
                    sent += count
                    work, size, count = {}, 0, 0
                    owner = self.map.owner  # refreshed after a MOVED
                    self._throttle(sent)
        self.records, self.selected = ordinal, selected_count
        self.expired, self.unloadable = expired, unloadable
        if previous is not None:
            self._collect(previous)
        if work:
            self._collect(self._send(work, ordinal, last_row))
        self.finished = True
        self.state.unlink(missing_ok=True)

    def _send(self, work: dict[str, list], last_ordinal: int, last_row: tuple) -> tuple:
        """Record the state when needed and send a round; returns what _collect needs."""
        if last_ordinal > self.saved_to or time.monotonic() - self.saved_at > STATE_SECONDS:
            self._save(sent_to=last_ordinal + STATE_AHEAD)
        self._send_work(work)
        return work, last_ordinal, last_row

    def _send_work(self, work: dict[str, list]) -> None:
        for address, items in work.items():
            data = b"".join(ASKING + c if asking else c for c, _, asking in items)
            self._conn(address).send(data)
            self.bytes_sent += len(data)

    def _collect(self, sent: tuple) -> None:
        """Read every reply of a round sent, following redirections; then record it. Nothing
        else is in flight meanwhile, so a redirected key's reply is the next one read."""
        from hiredis import ReplyError

        work, last_ordinal, last_row = sent
        for tries in range(REDIRECTS + 1):
            if tries:
                self._send_work(work)
            again: dict[str, list] = {}
            moved = False
            for address, items in work.items():
                conn = self._conn(address)
                replies = conn.replies(len(items) + sum(asking for _, _, asking in items))
                name = self.map.host(address).name
                if replies.count(b"OK") == len(replies):  # the usual case, at once
                    self.restored += len(items)
                    self.by_master[name] = self.by_master.get(name, 0) + len(items)
                    continue
                answers = iter(replies)
                for command, row, asking in items:
                    if asking:
                        next(answers)  # ASKING's OK
                    reply = next(answers)
                    if not isinstance(reply, ReplyError):
                        self.restored += 1
                        self.by_master[name] = self.by_master.get(name, 0) + 1
                        continue
                    text = str(reply)
                    if text.startswith("BUSYKEY"):
                        self.kept += 1
                    elif text.startswith(("MOVED ", "ASK ")) and tries < REDIRECTS:
                        kind, _, where = text.split(" ")
                        moved |= kind == "MOVED"
                        again.setdefault(where, []).append((command, row, kind == "ASK"))
                        self.redirects += 1
                    else:
                        self._failed(row, text)
            if not again:
                break
            if moved:
                self.map.refresh(self.timeout)
            work = again
        self.position, self.last_key = last_ordinal, f"db{last_row[0]} {key_text(last_row[1])}"
        if self.progress is not None:
            self.progress(self.restored + self.kept + self.failed, self.plan.restore)

    def _failed(self, row, error: str) -> None:
        self.failed += 1
        if len(self.failed_keys) < SAMPLES:
            self.failed_keys.append(FailedKey(row[0], key_text(row[1]), error))

    def _conn(self, address: str) -> RespConnection:
        conn = self.conns.get(address)
        if conn is None:
            conn = self.conns[address] = RespConnection(
                self.map.host(address), timeout=self.timeout
            )
        return conn

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()

    def result(self) -> RestoreKeysResult:
        return dataclasses.replace(
            super().result(), by_master=dict(self.by_master), redirects=self.redirects
        )
