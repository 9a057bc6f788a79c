"""`backup restore-keys`: bring back some keys (or all) from a backup with RESTORE, into any
Redis or Valkey, touching nothing else.

The backup is streamed twice with the RDB reader, never held whole: once for the plan (which
also checks it: every record parsed, its CRC64 and, for a catalogued backup, the SHA-256 of
the stored file; a backup that fails is a blocker, so no key is sent), once to apply. Each
value's serialized bytes from the file, with the 2-byte RDB version and the CRC64 that DUMP
appends, are the RESTORE payload, sent with ABSTTL (the expiry as the backup has it) and
IDLETIME/FREQ when the file carries LRU/LFU data. Keys whose expiry has already passed stay
expired: skipped and counted.

A payload names the RDB version it is encoded in and a server refuses a newer one than it
knows. The value encodings themselves never change between versions, only new types are
added: a value whose type byte the target knows is labelled with the target's version; one
it does not know (a listpack hash of Redis 7 for a Redis 6.2, a Valkey 9 hash with field
TTLs for any Redis) cannot be restored there: the plan counts and names those keys, and the
run is refused unless --force, which restores the others.

Only RESTORE, SELECT (for a db other than the connection's), EXISTS and TYPE are sent, plus
INFO: it works on managed services without CONFIG, DEBUG or files. Commands are pipelined
in batches; between batches a state file records the last key whose reply came back and
the last one sent, so a run cut short (Ctrl-C, kill -9, a lost connection) continues where
it stopped when run again: keys up to the first are skipped, keys between the two that
exist now are taken as restored by the interrupted run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from redisops.backup.catalogue import Backup, Catalogue, resolve_backup
from redisops.change import ChangeOutcome, ChangePlan
from redisops.datafile import CorruptData, raw_chunks, sniff_compression
from redisops.errors import HostError, UsageError
from redisops.fleet.host import Host
from redisops.fleet.resp import RespConnection
from redisops.fleet.server import server_identity, version_tuple
from redisops.interrupt import Interrupted, pause, raise_if_stopped
from redisops.keypatterns import key_text
from redisops.rdb.crc64 import crc64_function
from redisops.rdb.format import (
    CRC_OK,
    HEADER_BYTES,
    RdbChecker,
    RdbFacts,
    loadable_rdb_version,
    rdb_format,
)
from redisops.rdb.reader import RdbError, RdbReader
from redisops.results import HostResult
from redisops.serverinfo import parse_info

if TYPE_CHECKING:
    from redisops.backup.restore_keys_cluster import ClusterPlan

SAMPLES = 10
BATCH_KEYS = 1000
BATCH_BYTES = 1 << 20
EXISTS_BATCH = 1000
STATE_FORMAT = 1
# The state file is rewritten (a rename costs ~1 ms here) when a batch goes past the
# `sent_to` it holds, or STATE_SECONDS after the last write; `sent_to` is set STATE_AHEAD
# records ahead, so a run of 1,000-key batches rewrites it every 20 or so.
STATE_SECONDS = 0.5
STATE_AHEAD = 20_000
TYPE_NAMES = ("string", "list", "set", "zset", "hash", "stream")
# The first Redis RDB version that writes each value type (rdb.h); a payload of that type can
# be labelled with any version from there on, the encoding being the same.
_TYPE_SINCE = {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 9: 2, 10: 2, 11: 2, 12: 2, 13: 2, 14: 7, 5: 8, 6: 8}
_TYPE_SINCE |= {7: 8, 15: 9, 16: 10, 17: 10, 18: 10, 19: 10, 20: 11, 21: 11}
_TYPE_SINCE |= {22: 12, 23: 12, 24: 12, 25: 12}
VALKEY_FORMAT = 80
VALKEY_SHARED_TYPES = 21  # Valkey's format 80 has Redis 7.2's types 0-21 (22 is its own)
REDIS_OF_VALKEY = 11  # the newest Redis RDB version Valkey 8 and 9 load


class KeyNames:
    """Keys named one by one (--keys-from). Shown in JSON as their count: a file may name
    millions."""

    def __init__(self, names: frozenset[bytes] = frozenset()) -> None:
        self.names = names

    def __len__(self) -> int:
        return len(self.names)

    def __str__(self) -> str:
        return f"{len(self.names)} keys"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyNames) and other.names == self.names

    def __hash__(self) -> int:
        return hash(self.names)


@dataclass(frozen=True)
class KeySelection:
    """Which keys of the backup: named by `patterns` (Redis glob, as SCAN MATCH), `keys` (one
    per line of `keys_file`) or `everything`, then narrowed by `types` and `dbs`."""

    patterns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    dbs: tuple[int, ...] = ()
    keys: KeyNames = field(default_factory=KeyNames)
    keys_file: str | None = None
    everything: bool = False

    def check(self) -> None:
        """UsageError when nothing names keys: never everything by accident."""
        if self.everything and (self.patterns or self.keys_file):
            raise UsageError("--all restores every key: leave out --match and --keys-from")
        if not (self.everything or self.patterns or self.keys_file):
            raise UsageError(
                "no keys selected",
                hint="name them with --match PATTERN or --keys-from FILE (narrowed by --type "
                "and --db), or pass --all for every key of the backup",
            )
        unknown = sorted(set(self.types) - set(TYPE_NAMES))
        if unknown:
            raise UsageError(f"unknown --type {unknown[0]}", hint=f"one of {', '.join(TYPE_NAMES)}")

    def fingerprint(self) -> str:
        """Names this selection in the state file: a re-run continues only the same one."""
        text = json.dumps(
            [
                sorted(self.patterns),
                sorted(self.types),
                sorted(self.dbs),
                sorted(k.hex() for k in self.keys.names),
                self.everything,
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def matcher(self) -> Callable[[int, bytes, str], bool]:
        """A predicate on (db, key, type)."""
        regex = (
            re.compile(b"|".join(b"(?:" + glob_regex(p.encode()) + b")" for p in self.patterns))
            if self.patterns
            else None
        )
        keys, types, dbs, everything = (
            self.keys.names,
            frozenset(self.types),
            frozenset(self.dbs),
            (self.everything),
        )

        def selected(db: int, key: bytes, type_name: str) -> bool:
            if dbs and db not in dbs:
                return False
            if types and type_name not in types:
                return False
            if everything or key in keys:
                return True
            return regex is not None and regex.fullmatch(key) is not None

        return selected


def glob_regex(pattern: bytes) -> bytes:
    """A Redis glob (util.c stringmatchlen: `*`, `?`, `[a-z]`, `[^x]`, `\\` escapes) as a
    regular expression over bytes."""
    out, i, n = [b"(?s:"], 0, len(pattern)
    while i < n:
        char = pattern[i : i + 1]
        if char == b"*":
            out.append(b".*")
        elif char == b"?":
            out.append(b".")
        elif char == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i : i + 1]))
        elif char == b"[":
            i += 1
            negate = pattern[i : i + 1] == b"^"
            i += negate
            items = []
            while i < n and pattern[i : i + 1] != b"]":
                if pattern[i : i + 1] == b"\\" and i + 1 < n:
                    i += 1
                    items.append(re.escape(pattern[i : i + 1]))
                elif i + 2 < n and pattern[i + 1 : i + 2] == b"-":
                    low, high = sorted((pattern[i], pattern[i + 2]))
                    items.append(re.escape(bytes((low,))) + b"-" + re.escape(bytes((high,))))
                    i += 2
                else:
                    items.append(re.escape(pattern[i : i + 1]))
                i += 1
            if items:
                out.append(b"[" + (b"^" if negate else b"") + b"".join(items) + b"]")
            else:
                out.append(b"." if negate else b"(?!)")
        else:
            out.append(re.escape(char))
        i += 1
    return b"".join(out) + b")"


def read_keys_file(path: Path) -> KeyNames:
    """The keys of a --keys-from file, one per line (bytes as they are, newline cut)."""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --keys-from {path}: {exc.strerror}") from None
    return KeyNames(
        frozenset(line.rstrip(b"\r") for line in data.split(b"\n") if line.rstrip(b"\r"))
    )


@dataclass(frozen=True)
class KeySource:
    """The RDB to restore from: a catalogued backup (its id, the stored file's SHA-256 and
    its verification as recorded) or a file given by path."""

    label: str
    path: str
    compression: str
    raw_bytes: int
    backup_id: str | None = None
    backup_host: str | None = None
    sha256: str | None = None
    verification: str | None = None
    verification_problem: str | None = None

    @property
    def identity(self) -> str:
        """What a state file records of the source, to continue only from the same one."""
        if self.sha256:
            return f"{self.backup_id}:{self.sha256}"
        stat = os.stat(self.path)
        return f"{os.path.realpath(self.path)}:{stat.st_size}:{stat.st_mtime_ns}"


def locate_source(target: str, catalogue: Callable[[], Catalogue], host: str) -> KeySource:
    """`target` as a file path, else a backup id or `latest` of `host` in the catalogue."""
    path = Path(target).expanduser()
    if path.is_file():
        compression = sniff_compression(path)
        raw = path.stat().st_size if compression == "none" else 0
        return KeySource(path.name, str(path), compression, raw)
    backup = resolve_backup(catalogue(), target, host)
    return source_of_backup(backup)


def source_of_backup(backup: Backup) -> KeySource:
    for stored in backup.files:
        if stored.role == "rdb" or (stored.role == "aof-base" and stored.source.endswith(".rdb")):
            problems = backup.verification.problems
            return KeySource(
                label=backup.backup_id,
                path=str(Path(backup.path) / stored.name),
                compression=stored.compression,
                raw_bytes=stored.raw_bytes,
                backup_id=backup.backup_id,
                backup_host=backup.host,
                sha256=stored.sha256,
                verification=backup.verification.status,
                verification_problem=problems[0] if problems else None,
            )
    raise UsageError(
        f"backup {backup.backup_id} holds no RDB file (an AOF backup without an RDB preamble)",
        hint="restore-keys reads RDB snapshots; take one with `backup run --kind rdb`",
    )


@dataclass(frozen=True)
class TargetInfo:
    """The target as INFO describes it, and which payload versions it loads."""

    label: str  # "Redis 7.0.15"
    flavour: str
    version: str
    role: str  # master | replica
    mode: str  # standalone | cluster
    keys_by_db: dict[int, int]
    loads_rdb: int | None  # newest Redis RDB version; None: unknown (newer than known)
    loads_valkey: bool  # Valkey's own format 80


def read_target(host: Host, *, timeout: float) -> TargetInfo:
    with closing(RespConnection(host, timeout=timeout)) as conn:
        info: dict[str, str] = {}
        for section in (b"server", b"replication", b"keyspace"):
            info |= parse_info(conn.call(b"INFO", section))
    identity = server_identity(info)
    keys = {}
    for name, value in info.items():
        if name.startswith("db") and name[2:].isdigit():
            fields = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
            keys[int(name[2:])] = int(fields.get("keys", 0))
    major = (version_tuple(identity.version) or (0,))[0]
    if identity.flavour == "valkey":
        loads_rdb, loads_valkey = REDIS_OF_VALKEY, major >= 9
    else:
        loads_rdb, loads_valkey = loadable_rdb_version(identity.version), False
    return TargetInfo(
        label=identity.label,
        flavour=identity.flavour,
        version=identity.version,
        role="replica" if info.get("role") == "slave" else "master",
        mode=identity.mode,
        keys_by_db=keys,
        loads_rdb=loads_rdb,
        loads_valkey=loads_valkey,
    )


def payload_version(flavour: str, version: int, kind: int, target: TargetInfo) -> int | None:
    """The RDB version to label a value of type byte `kind` from a `flavour` file of
    `version` with, for `target`; None when the target cannot load that type."""
    if flavour == "valkey":
        if target.loads_valkey:
            return version
        if kind > VALKEY_SHARED_TYPES:
            return None  # Valkey's hash with field TTLs: type 22 means another thing to Redis
        version = REDIS_OF_VALKEY
    elif target.flavour == "valkey" and version > REDIS_OF_VALKEY and kind > VALKEY_SHARED_TYPES:
        return None  # Redis 7.4's hashes with field TTLs
    loads = target.loads_rdb
    if loads is None or version <= loads:
        return version
    since = _TYPE_SINCE.get(kind)
    return loads if since is not None and since <= loads else None


@dataclass(frozen=True)
class KeySample:
    db: int
    key: str
    type: str
    detail: str = ""


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted run stopped, from its state file: records up to `position` (in
    file order) came back OK; records up to `sent_to` may have been restored."""

    position: int
    sent_to: int
    restored: int
    last_key: str
    updated: str


@dataclass(frozen=True)
class RestoreKeysPlan:
    """What a run would do. Counts are keys: `selected` of `records` in the backup; of those,
    `expired` (already past their TTL), `unloadable` (a type the target does not know),
    `done` (handled by an interrupted run), `kept` (present now, left alone: never sent) and
    `restore`, the keys RESTORE is sent for: `create` (absent now) and `overwrite` (present,
    --replace). `bytes` are the payloads to send.
    `blockers` stop it always; `refusals` unless --force. `in_flight` are the records of an
    interrupted run's last batch found on the target (taken as restored)."""

    source: KeySource
    host: str
    address: str
    target: TargetInfo
    selection: KeySelection
    replace: bool
    rdb_flavour: str
    rdb_version: int | None
    records: int
    selected: int
    restore: int
    create: int
    overwrite: int
    kept: int
    expired: int
    unloadable: int
    done: int
    bytes: int
    samples: dict[str, tuple[KeySample, ...]]
    blockers: tuple[str, ...]
    refusals: tuple[str, ...]
    state_file: str
    resume: ResumePoint | None
    in_flight: tuple[int, ...] = ()
    counted: bool = True  # False: only checked; the run counts the keys as it sends them
    cluster: ClusterPlan | None = None  # a cluster target (restore_keys_cluster)


@dataclass(frozen=True)
class FailedKey:
    db: int
    key: str
    error: str


@dataclass(frozen=True)
class RestoreKeysResult:
    """A run's outcome: `restored` keys came back; `kept` existed when their RESTORE came
    (BUSYKEY: left alone); `failed` were rejected by the target (each named in
    `failed_keys`, the first SAMPLES), the others went on; `expired` (past their TTL when
    the run reached them) and `unloadable` (a type the target does not know) were skipped."""

    host: str
    address: str
    restored: int
    kept: int
    failed: int
    failed_keys: tuple[FailedKey, ...]
    records: int
    selected: int  # of `records`, this run's (keys an interrupted run handled left out)
    expired: int
    unloadable: int
    done_before: int
    seconds: float
    keys_per_second: float
    bytes_sent: int
    state_file: str | None  # kept only when the run did not finish
    problem: str | None = None
    by_master: dict[str, int] = field(default_factory=dict)  # a cluster: restored per master
    redirects: int = 0  # a cluster: MOVED and ASK replies followed


@dataclass
class _Tally:
    records: int = 0
    selected: int = 0
    create: int = 0
    overwrite: int = 0
    kept: int = 0
    expired: int = 0
    unloadable: int = 0
    done: int = 0
    bytes: int = 0
    samples: dict[str, list[KeySample]] = field(default_factory=dict)
    in_flight: list[int] = field(default_factory=list)

    def sample(self, kind: str, db: int, key: bytes, type_name: str, detail: str = "") -> None:
        found = self.samples.setdefault(kind, [])
        if len(found) < SAMPLES:
            found.append(KeySample(db, key_text(key), type_name, detail))


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/redisops/restore-keys, else under ~/.local/state."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "redisops" / "restore-keys"


def state_path(state_dir: Path, source: KeySource, host: Host, selection: KeySelection,
               replace: bool) -> Path:  # fmt: skip
    """One state file per source, target, selection and --replace: only the same run resumes."""
    text = f"{source.identity}|{host.address}|{selection.fingerprint()}|{replace}"
    return state_dir / f"{host.name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"


def read_state(path: Path) -> ResumePoint | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"the state file {path} of an interrupted run is unreadable: {exc}",
            hint="look at it, then remove it to start over",
        ) from None
    if data.get("format") != STATE_FORMAT:
        raise UsageError(f"the state file {path} is of another format: remove it to start over")
    return ResumePoint(
        data["position"], data["sent_to"], data["restored"], data["last_key"], data["updated"]
    )


def _write_state(path: Path, point: ResumePoint) -> None:
    """Replace the state file whole (a temporary name, then rename: a kill leaves the old one
    or the new one). Not fsynced: it survives a killed process, not a power cut."""
    record = {"format": STATE_FORMAT} | vars(point)
    temporary = path.with_name(f".{path.name}.part")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record))
    os.replace(temporary, path)


def _batches(
    source: KeySource,
    on_stored: Callable[[bytes], None] | None = None,
    *,
    values: Callable[[str, int], bool] | bool = True,
) -> tuple[RdbReader, Iterator[list[tuple]]]:
    """(reader, the file's rows in batches). `values` may be a predicate on the file's format
    (flavour, version), for readers that need the serialized values only for some formats."""
    chunks = raw_chunks(Path(source.path), source.compression, on_stored)
    if callable(values):
        head = b""
        for chunk in chunks:
            head += chunk
            if len(head) >= HEADER_BYTES:
                break
        try:
            found = rdb_format(head[:HEADER_BYTES])
            values = values(found.flavour, found.version)
        except ValueError:
            values = False  # the reader says what is wrong
        chunks = itertools.chain((head,), chunks)
    reader = RdbReader(chunks, values=values)

    def batches() -> Iterator[list[tuple]]:
        for batch in reader.batches():
            raise_if_stopped()
            yield batch

    return reader, batches()


def plan_restore_keys(
    source: KeySource,
    host: Host,
    selection: KeySelection,
    *,
    replace: bool,
    state_dir: Path,
    timeout: float,
    count: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> RestoreKeysPlan:
    """Read the target and the whole backup (checking it) and count what a run would do;
    changes nothing. Each selected key that may exist is looked up with EXISTS (pipelined),
    except in a db where the target holds no key.

    Without `count` (a run already agreed to, --yes), the backup is only checked (CRC64 and
    the manifest's SHA-256, no parsing: several times faster) and the keys are counted as
    they are sent, when that check can decide alone: the file has a CRC64, the target loads
    its version (nothing can be refused key by key) and no interrupted run is continued.
    """
    target = read_target(host, timeout=timeout)
    state = state_path(state_dir, source, host, selection, replace)
    resume = read_state(state)
    blockers: list[str] = []
    if target.role == "replica":
        blockers.append(
            f"{host.name} is a replica: it refuses writes and would drop restored keys at its "
            "next resync; restore into its master"
        )
    if source.verification == "failed":
        blockers.append(
            f"{source.label} failed verification: {source.verification_problem or 'no detail'}"
            "; no key was sent"
        )
    tally = _Tally()
    flavour, version, counted = "redis", None, False
    if target.mode == "cluster" or host.cluster:
        blockers.append(
            f"{host.name} is a cluster node: keys go to their slot's master only when the "
            "whole cluster is the target; mark it `cluster: true` in the inventory and select "
            "the cluster with -l CLUSTER"
        )
    else:
        counted = True
        if not count and resume is None and not blockers:
            facts, problem = _check_file(source)
            if problem:
                blockers.append(f"{source.label} does not verify: {problem}; no key was sent")
            if problem or (
                facts.crc == CRC_OK
                and payload_version(facts.flavour, facts.version, 255, target) is not None
            ):
                counted = False
                flavour, version = facts.flavour, facts.version
        if counted:
            flavour, version = _count(source, host, target, selection, replace, resume, tally,
                                      blockers, timeout, progress)  # fmt: skip
    refusals = []
    if tally.unloadable:
        refusals.append(
            f"{tally.unloadable:,} selected key(s) are of a type {target.label} cannot load "
            f"from {_format(flavour, version)}: they cannot be restored there (--force "
            "restores the others)"
        )
    return RestoreKeysPlan(
        source=source,
        host=host.name,
        address=host.address,
        target=target,
        selection=selection,
        replace=replace,
        rdb_flavour=flavour,
        rdb_version=version,
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
        in_flight=tuple(tally.in_flight),
        counted=counted,
    )


def _check_file(source: KeySource) -> tuple[RdbFacts, str | None]:
    """The file's header, end and CRC64 (and the manifest's SHA-256 for a catalogued
    backup), without parsing records; (facts, the first problem or None)."""
    checker = RdbChecker()
    digest = hashlib.sha256()
    try:
        for chunk in raw_chunks(Path(source.path), source.compression, digest.update):
            raise_if_stopped()
            checker.feed(chunk)
    except CorruptData as exc:
        return checker.finish(), str(exc)
    facts = checker.finish()
    if facts.problems:
        return facts, facts.problems[0]
    if source.sha256 and digest.hexdigest() != source.sha256:
        return (
            facts,
            "its SHA-256 differs from the manifest's (the stored file changed since it was taken)",
        )
    return facts, None


def _count(source, host, target, selection, replace, resume, tally, blockers, timeout, progress):
    """The plan's pass over the backup: fills `tally`; a backup that does not read or verify
    is a blocker. Returns the file's (flavour, version). The values themselves are read only
    when the target may not load the file's version (their type byte decides)."""
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
    with closing(RespConnection(host, timeout=timeout)) as conn:
        checker = _ExistenceCheck(conn, target.keys_by_db)
        try:
            for batch in batches:
                if progress is not None:
                    progress(reader.offset, source.raw_bytes)
                pending = []
                for row in batch:
                    ordinal += 1
                    if selected is not None and not selected(row[0], row[1], row[2]):
                        continue
                    tally.selected += 1
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
                    pending.append((ordinal, row))
                _classify(checker, pending, tally, replace, resume)
        except (RdbError, CorruptData) as exc:
            blockers.append(f"{source.label} does not verify: {exc}; no key was sent")
        else:
            if source.sha256 and digest.hexdigest() != source.sha256:
                blockers.append(
                    f"{source.label} does not verify: its SHA-256 differs from the manifest's "
                    "(the stored file changed since it was taken); no key was sent"
                )
    tally.records = ordinal
    return reader.flavour, reader.version


def _classify(checker, pending, tally: _Tally, replace: bool, resume) -> None:
    """Count `pending` (ordinal, row) as created, overwritten, kept or already done, by
    whether their keys exist now."""
    found = checker.exists([row for _, row in pending])
    if found is None:  # in dbs the target holds no key in
        tally.create += len(pending)
        tally.bytes += sum(row[3] for _, row in pending)
        for _, row in pending[: max(0, SAMPLES - len(tally.samples.get("create", ())))]:
            tally.sample("create", row[0], row[1], row[2])
        return
    # Without --replace, a key the interrupted run may have sent is taken as restored by it;
    # with --replace it is sent again (RESTORE REPLACE of the same value changes nothing).
    sent_to = resume.sent_to if resume is not None and not replace else 0
    for (ordinal, row), exists in zip(pending, found, strict=True):
        db, key, type_name = row[0], row[1], row[2]
        if not exists:
            tally.create += 1
            tally.bytes += row[3]
            tally.sample("create", db, key, type_name)
        elif ordinal <= sent_to:
            tally.done += 1
            tally.in_flight.append(ordinal)
        elif replace:
            tally.overwrite += 1
            tally.bytes += row[3]
            detail = checker.type_detail(tally, "overwrite", db, key)
            tally.sample("overwrite", db, key, type_name, detail)
        else:
            tally.kept += 1
            tally.sample("kept", db, key, type_name, checker.type_detail(tally, "kept", db, key))


class _ExistenceCheck:
    """EXISTS for many keys in one round trip; no question for a db the target holds no key
    in (an empty server costs nothing). TYPE only for the keys shown as samples."""

    def __init__(self, conn: RespConnection, keys_by_db: dict[int, int]) -> None:
        self.conn = conn
        self.keys_by_db = keys_by_db
        self.db = 0  # RespConnection starts in db 0

    def exists(self, rows: Sequence[tuple]) -> list[bool] | None:
        """Whether each row's key exists; None when none can (their dbs hold no key)."""
        import hiredis

        if not any(self.keys_by_db.get(db) for db in {row[0] for row in rows}):
            return None
        found = [False] * len(rows)
        commands: list[bytes] = []
        asked: list[int | None] = []
        for index, row in enumerate(rows):
            db, key = row[0], row[1]
            if not self.keys_by_db.get(db):
                continue
            if db != self.db:
                commands.append(hiredis.pack_command((b"SELECT", db)))
                asked.append(None)
                self.db = db
            commands.append(hiredis.pack_command((b"EXISTS", key)))
            asked.append(index)
        if commands:
            self.conn.send(b"".join(commands))
            for index, reply in zip(asked, self.conn.replies(len(asked)), strict=True):
                if isinstance(reply, hiredis.ReplyError):
                    raise HostError(f"{self.conn.host.address} replied with an error: {reply}")
                if index is not None:
                    found[index] = reply == 1
        return found

    def type_detail(self, tally: _Tally, kind: str, db: int, key: bytes) -> str:
        if len(tally.samples.get(kind, ())) >= SAMPLES:
            return ""
        if db != self.db:
            self.conn.call(b"SELECT", db)
            self.db = db
        now = self.conn.call(b"TYPE", key)
        return f"now a {now.decode() if isinstance(now, bytes) else now}"


def apply_restore_keys(
    plan: RestoreKeysPlan,
    host: Host,
    *,
    rate: float,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> RestoreKeysResult:
    """Send the plan's RESTOREs, pipelined (at most `rate` keys a second when > 0), recording
    progress in the plan's state file; removes it once every key was sent and answered.

    A key the target rejects is named and the others go on. A lost connection or a backup
    that no longer reads stops the run (`problem` says why; the state file stays, so the same
    command continues). Interrupted gets `done` saying what came back before the stop.
    """
    return finish_apply(_Run(plan, host, rate=rate, timeout=timeout, progress=progress), plan)


def finish_apply(run: _Run, plan: RestoreKeysPlan) -> RestoreKeysResult:
    """Run `run` to the end: Interrupted says what was restored; a lost connection or a
    backup that no longer reads becomes the result's `problem`."""
    try:
        run.all()
    except Interrupted as exc:
        exc.done = (
            f"{run.restored:,} key(s) restored into {plan.host} before the stop; run the same "
            f"command again to continue (state in {plan.state_file})"
        )
        raise
    except (HostError, RdbError, CorruptData) as exc:
        run.problem = (
            f"stopped after {run.restored:,} key(s): {exc}; run the same command again to continue"
        )
    finally:
        run.close()
    return run.result()


class _Run:
    """One apply: batches of RESTORE commands, one batch in flight while the next is built."""

    def __init__(self, plan, host, *, rate, timeout, progress) -> None:
        self.plan, self.host, self.rate, self.progress = plan, host, rate, progress
        self.timeout = timeout
        self.state = Path(plan.state_file)
        resume = plan.resume
        self.position = resume.position if resume else 0
        self.last_key = resume.last_key if resume else ""
        self.done_before = resume.restored if resume else 0
        self.restored = self.kept = self.failed = self.bytes_sent = 0
        self.records = self.selected = self.expired = self.unloadable = 0
        self.failed_keys: list[FailedKey] = []
        self.problem: str | None = None
        self.started = time.monotonic()
        self.conn: RespConnection | None = None
        self.finished = False
        self.saved_to = -1  # the sent_to the state file holds
        self.saved_at = 0.0

    def all(self) -> None:
        """Read the backup again and send what the plan counted."""
        plan = self.plan
        self.state.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.conn = RespConnection(self.host, timeout=self.timeout)
        selection = plan.selection
        selected = (
            None
            if selection.everything and not selection.types and not selection.dbs
            else (selection.matcher())
        )
        skip_to, in_flight, target = self.position, frozenset(plan.in_flight), plan.target
        resuming = bool(skip_to or in_flight)
        head = b"*%d\r\n$7\r\nRESTORE\r\n"
        plain = head + b"$%d\r\n%b\r\n$1\r\n0\r\n$%d\r\n%b%b\r\n%b"  # no TTL, LRU, LFU
        timed = head + b"$%d\r\n%b\r\n$%d\r\n%d\r\n$%d\r\n%b%b\r\n%b"  # ABSTTL
        replace = b"$7\r\nREPLACE\r\n" if plan.replace else b""
        absttl = replace + b"$6\r\nABSTTL\r\n"
        fixed = 4 + bool(plan.replace)  # RESTORE key ttl payload [REPLACE]
        per_batch = BATCH_KEYS if self.rate <= 0 else max(1, min(BATCH_KEYS, int(self.rate / 10)))
        checksum = crc64_function()
        footers: dict[int, bytes | None] = {}
        db = ordinal = sent = selected_count = expired = unloadable = 0
        commands: list[bytes] = []
        meta: list[tuple | None] = []  # the row of each command (None: a SELECT)
        append_command, append_meta = commands.append, meta.append
        size = 0
        previous: tuple[list, int] | None = None
        now = time.time() * 1000
        reader, batches = _batches(plan.source)
        for batch in batches:
            for row in batch:
                ordinal += 1
                if resuming and (ordinal <= skip_to or ordinal in in_flight):
                    continue
                if selected is not None and not selected(row[0], row[1], row[2]):
                    continue
                selected_count += 1
                expire = row[7]
                if 0 <= expire <= now:
                    expired += 1
                    continue
                payload = row[8]
                kind = payload[0]
                if kind in footers:
                    footer = footers[kind]
                else:
                    version = payload_version(reader.flavour, reader.version, kind, target)
                    footer = footers[kind] = (
                        None if version is None else version.to_bytes(2, "little")
                    )
                if footer is None:
                    unloadable += 1
                    continue
                if row[0] != db:
                    db = row[0]
                    append_command(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n" % (len(b"%d" % db), db))
                    append_meta(None)
                body = payload + footer
                key = row[1]
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
                append_command(command)
                append_meta(row)
                size += len(command)
                if len(meta) >= per_batch or size >= BATCH_BYTES:
                    previous = self._send(commands, (meta, ordinal), previous)
                    sent += len(meta)
                    commands, meta, size = [], [], 0
                    append_command, append_meta = commands.append, meta.append
                    self._throttle(sent)
        self.records, self.selected = ordinal, selected_count
        self.expired, self.unloadable = expired, unloadable
        if meta:
            previous = self._send(commands, (meta, ordinal), previous)
        if previous is not None:
            self._collect(previous)
        self.finished = True
        self.state.unlink(missing_ok=True)

    @staticmethod
    def _command(head, fixed, key, expire, body, checksum, replace, absttl, idle, freq) -> bytes:
        """RESTORE with an expiry (ABSTTL), LRU idle time or LFU counter."""
        ttl = b"%d" % expire if expire >= 0 else b"0"
        tail = absttl if expire >= 0 else replace
        count = fixed + (expire >= 0)
        if idle >= 0:
            text = b"%d" % idle
            tail += b"$8\r\nIDLETIME\r\n$%d\r\n%b\r\n" % (len(text), text)
            count += 2
        if freq >= 0:
            text = b"%d" % freq
            tail += b"$4\r\nFREQ\r\n$%d\r\n%b\r\n" % (len(text), text)
            count += 2
        return (head % count) + b"$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b%b\r\n%b" % (
            len(key), key, len(ttl), ttl, len(body) + 8, body,
            checksum(body).to_bytes(8, "little"), tail,
        )  # fmt: skip

    def _send(self, commands, sending, previous):
        """Record the state when needed, send `commands` (`sending`: their rows and the
        ordinal of the last record read), then read the replies of the batch sent before
        them (so the server works on one while the next is built). Returns `sending`."""
        last_ordinal = sending[1]
        if last_ordinal > self.saved_to or time.monotonic() - self.saved_at > STATE_SECONDS:
            self._save(sent_to=last_ordinal + STATE_AHEAD)
        data = b"".join(commands)
        self.conn.send(data)
        self.bytes_sent += len(data)
        if previous is not None:
            self._collect(previous)
        return sending

    def _collect(self, sent) -> None:
        meta, last_ordinal = sent
        replies = self.conn.replies(len(meta))
        if replies.count(b"OK") == len(replies):
            self.restored += len(meta) - meta.count(None)
        else:
            self._tally(meta, replies)
        last = next(row for row in reversed(meta) if row is not None)
        self.position, self.last_key = last_ordinal, f"db{last[0]} {key_text(last[1])}"
        if self.progress is not None:
            self.progress(self.restored + self.kept + self.failed, self.plan.restore)

    def _tally(self, meta, replies) -> None:
        import hiredis

        for entry, reply in zip(meta, replies, strict=True):
            if entry is None:
                if isinstance(reply, hiredis.ReplyError):
                    raise HostError(f"{self.host.address} refused SELECT: {reply}")
            elif not isinstance(reply, hiredis.ReplyError):
                self.restored += 1
            elif str(reply).startswith("BUSYKEY"):
                self.kept += 1  # it appeared since the plan: left alone
            else:
                self.failed += 1
                if len(self.failed_keys) < SAMPLES:
                    self.failed_keys.append(FailedKey(entry[0], key_text(entry[1]), str(reply)))

    def _save(self, *, sent_to: int) -> None:
        _write_state(
            self.state,
            ResumePoint(
                position=self.position,
                sent_to=sent_to,
                restored=self.done_before + self.restored,
                last_key=self.last_key,
                updated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            ),
        )
        self.saved_to, self.saved_at = sent_to, time.monotonic()

    def _throttle(self, sent: int) -> None:
        raise_if_stopped()
        if self.rate > 0:
            pause(sent / self.rate - (time.monotonic() - self.started))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def result(self) -> RestoreKeysResult:
        seconds = time.monotonic() - self.started
        return RestoreKeysResult(
            host=self.plan.host,
            address=self.plan.address,
            restored=self.restored,
            kept=self.kept,
            failed=self.failed,
            failed_keys=tuple(self.failed_keys),
            records=self.records,
            selected=self.selected,
            expired=self.expired,
            unloadable=self.unloadable,
            done_before=self.plan.done,
            seconds=seconds,
            keys_per_second=self.restored / seconds if seconds > 0 else 0.0,
            bytes_sent=self.bytes_sent,
            state_file=None if self.finished else str(self.state),
            problem=self.problem,
        )


def audit_entry(plan: RestoreKeysPlan, result: RestoreKeysResult | None, outcome: str) -> dict:
    """The audit log's line for one run (plan counts, what came back, the outcome)."""
    selection = plan.selection
    return {
        "command": "backup restore-keys",
        "host": plan.host,
        "address": plan.address,
        "source": plan.source.backup_id or plan.source.path,
        "selection": {
            "match": list(selection.patterns),
            "type": list(selection.types),
            "db": list(selection.dbs),
            "keys_from": selection.keys_file,
            "all": selection.everything,
        },
        "replace": plan.replace,
        "planned": plan.restore,
        **({"restored_by_master": result.by_master if result else {}} if plan.cluster else {}),
        "restored": result.restored if result else 0,
        "kept": result.kept if result else plan.kept,
        "failed": result.failed if result else 0,
        "outcome": outcome,
    }


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _format(flavour: str, version: int | None) -> str:
    return f"Valkey RDB format {version}" if flavour == "valkey" else f"RDB version {version}"


def restore_keys_change(
    plan: RestoreKeysPlan, name: str, address: str
) -> ChangePlan[RestoreKeysPlan]:
    """`plan` as the change engine's: one row for the target (a host, or `cluster NAME`);
    nothing to do once counted and empty (with --yes the keys are counted as they are sent,
    so the run goes ahead)."""
    if plan.blockers:
        refused = f"cannot restore keys into {name}: {plan.blockers[0]}"
        hint = None
    else:
        refused = f"restore-keys refused: {'; '.join(plan.refusals)}"
        hint = "restore into a newer server, or re-run with --force to restore the others"
    return ChangePlan(
        command="backup restore-keys",
        rows=[HostResult(plan.host, address, True, None, plan)],
        question=f"Restore {plan.restore:,} key(s) into {name}?",
        pending=plan.restore if plan.counted else 1,
        blockers=plan.blockers,
        refusals=plan.refusals,
        refused=refused,
        hint=hint,
        undone="sent",
    )


def restore_keys_outcome(
    plan: RestoreKeysPlan, result: RestoreKeysResult, name: str, address: str
) -> ChangeOutcome[RestoreKeysResult]:
    """A run as the change engine's outcome: a problem, or keys the target rejected, fail
    the row (exit 1)."""
    problem = result.problem or (
        f"{result.failed:,} key(s) rejected by {name}" if result.failed else None
    )
    return ChangeOutcome(
        [HostResult(plan.host, address, problem is None, problem, result)],
        summary={"planned": plan.restore, "state_file": result.state_file},
        errors=[f"{name}: {result.problem}"] if result.problem else [],
    )
