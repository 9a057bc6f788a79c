"""The snapshot archive: its layout on disk, the atomic private writer, and `load_snapshot`.

An archive is one zstd-compressed tar (`snapshot-20261205T183000Z.tar.zst`, mode 0600) that
`tar --zstd -xf` unpacks to a folder of the same stem:

    manifest.json                  what was captured, from where, when, how long, what failed
    hosts/<host>/<item file>       one file per captured item (ITEM_FILES), secrets redacted

Everything in it was redacted before it was written (see snapshot/redaction.py); the loader
never sees a secret and needs none.

`load_snapshot(path)` returns a `Snapshot` of plain frozen dataclasses:

    Snapshot.manifest: Manifest
        format (1), redisops (version), taken_at (ISO 8601 UTC), started (unix seconds),
        seconds (the whole capture), taken_on (machine), inventory, limit, timeout, parallel,
        hosts: tuple[HostRecord] in inventory order
    HostRecord: name, address, role ("redis" | "sentinel", as the inventory says), server
        ("Redis 7.0.15" or None when INFO failed), ok, error (one line, or None), started,
        seconds, items: tuple[ItemRecord]
    ItemRecord: name (a key of ITEM_FILES), status ("ok" | "failed" | "skipped"), seconds,
        error (why it failed or was skipped), file (path in the archive, or None), bytes
    Snapshot.hosts: tuple[HostSnapshot], same order; every field is empty/None when its item
        was not captured (look at `record.items` for why):
        info: dict[str, str]             INFO ALL, flat name -> raw value (`db0` ->
                                         "keys=1,expires=0,avg_ttl=0"; see `keyspace`)
        config: dict[str, str]           CONFIG GET *, secrets as "(set)"/"(unset)"
        acl: tuple[str]                  ACL LIST lines, `>pass` `<pass` `#hash` `!hash` masked
        slowlog: tuple[SlowlogRecord]    SLOWLOG GET -1, newest first: id, started (unix s),
                                         duration_us, args (str; credentials "(redacted)"),
                                         client_address, client_name
        latency_latest: tuple[LatencyLatest]     event, at (unix s), latest_ms, max_ms
        latency_history: dict[event, tuple[(at unix s, ms), ...]]   oldest first
        latency_histogram: dict[command, LatencyHistogram]  calls, buckets: {upper bound in
                                         usec: calls at or under it (cumulative, as Redis
                                         reports them)}; Redis 7+ only
        memory_stats: dict[str, Any]     MEMORY STATS (numbers stay numbers; `db.0` a dict)
        memory_doctor: str | None        MEMORY DOCTOR's text
        clients: tuple[dict[str, str]]   CLIENT LIST, one dict of its fields per client
        replication: Replication | None  role, offset, master (host, port, link status, last
                                         io seconds), replicas (ip, port, state, offset, lag)
        sentinel: tuple[SentinelMaster]  for role: sentinel hosts: name, address (ip:port),
                                         fields (SENTINEL MASTERS row), replicas, sentinels
                                         (rows of SENTINEL REPLICAS/SENTINELS), ckquorum
        cluster_info: dict[str, str]     CLUSTER INFO, when the node says cluster_enabled:1
        cluster_shards: list[Any]        CLUSTER SHARDS (maps as dicts), same condition
        host_facts: HostFacts | None     with host access: transparent_hugepage,
                                         overcommit_memory, swappiness, mem_total, swap_total,
                                         swap_free (bytes), load (1, 5, 15 min), missing
                                         (fact -> why it could not be read)
        redis_log: str | None            the tail of the server's log file
        kernel_oom: tuple[str]           OOM-killer lines of the kernel log
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redisops.errors import UsageError
from redisops.fleet.hostaccess import fsync_dir

FORMAT = 1
KIND = "redisops-snapshot"
SUFFIX = ".tar.zst"
MANIFEST = "manifest.json"
ZSTD_LEVEL = 9
# An archive that unpacks to more than this is not one redisops wrote (a few MiB per host).
MAX_UNPACKED_BYTES = 1 << 30

OK, FAILED, SKIPPED = "ok", "failed", "skipped"

# Item name -> file under hosts/<host>/. `.txt` files are the server's text as it sent it
# (redacted), `.json` files what the loader reads back into the fields above.
ITEM_FILES: Mapping[str, str] = {
    "info": "info.txt",
    "config": "config.json",
    "acl": "acl.json",
    "slowlog": "slowlog.json",
    "latency_latest": "latency-latest.json",
    "latency_history": "latency-history.json",
    "latency_histogram": "latency-histogram.json",
    "memory_stats": "memory-stats.json",
    "memory_doctor": "memory-doctor.txt",
    "clients": "client-list.txt",
    "replication": "replication.json",
    "sentinel": "sentinel.json",
    "cluster_info": "cluster-info.txt",
    "cluster_shards": "cluster-shards.json",
    "host_facts": "host-facts.json",
    "redis_log": "redis-log.txt",
    "kernel_oom": "kernel-oom.txt",
}


@dataclass(frozen=True)
class ItemRecord:
    name: str
    status: str  # OK | FAILED | SKIPPED
    seconds: float
    error: str | None = None
    file: str | None = None
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class HostRecord:
    name: str
    address: str
    role: str
    server: str | None
    ok: bool
    error: str | None
    started: float
    seconds: float
    items: tuple[ItemRecord, ...]

    def item(self, name: str) -> ItemRecord | None:
        return next((item for item in self.items if item.name == name), None)


@dataclass(frozen=True)
class Manifest:
    format: int
    redisops: str
    taken_at: str
    started: float
    seconds: float
    taken_on: str
    inventory: str | None
    limit: str | None
    timeout: float
    parallel: int
    hosts: tuple[HostRecord, ...]


@dataclass(frozen=True)
class SlowlogRecord:
    """One SLOWLOG GET entry. `args` are text (bytes that are not UTF-8 are kept as surrogate
    escapes: `raw_args` gives the server's bytes back); credentials are "(redacted)"."""

    id: int
    started: int
    duration_us: int
    args: tuple[str, ...]
    client_address: str
    client_name: str

    @property
    def raw_args(self) -> tuple[bytes, ...]:
        return tuple(arg.encode("utf-8", "surrogateescape") for arg in self.args)


@dataclass(frozen=True)
class LatencyLatest:
    event: str
    at: int
    latest_ms: int
    max_ms: int


@dataclass(frozen=True)
class LatencyHistogram:
    calls: int
    buckets: Mapping[int, int]  # upper bound (usec) -> calls at or under it, cumulative


@dataclass(frozen=True)
class ReplicaLink:
    ip: str
    port: int
    state: str
    offset: int
    lag: int


@dataclass(frozen=True)
class Replication:
    role: str  # master | replica
    offset: int  # master_repl_offset
    master_host: str | None = None
    master_port: int | None = None
    master_link_status: str | None = None
    master_last_io_seconds_ago: int | None = None
    replicas: tuple[ReplicaLink, ...] = ()


@dataclass(frozen=True)
class SentinelMaster:
    name: str
    address: str
    fields: Mapping[str, str]
    replicas: tuple[Mapping[str, str], ...]
    sentinels: tuple[Mapping[str, str], ...]
    ckquorum: str


@dataclass(frozen=True)
class HostFacts:
    transparent_hugepage: str | None = None
    overcommit_memory: int | None = None
    swappiness: int | None = None
    mem_total: int | None = None
    swap_total: int | None = None
    swap_free: int | None = None
    load: tuple[float, float, float] | None = None
    missing: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HostSnapshot:
    record: HostRecord
    info: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, str] = field(default_factory=dict)
    acl: tuple[str, ...] = ()
    slowlog: tuple[SlowlogRecord, ...] = ()
    latency_latest: tuple[LatencyLatest, ...] = ()
    latency_history: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    latency_histogram: Mapping[str, LatencyHistogram] = field(default_factory=dict)
    memory_stats: Mapping[str, Any] = field(default_factory=dict)
    memory_doctor: str | None = None
    clients: tuple[Mapping[str, str], ...] = ()
    replication: Replication | None = None
    sentinel: tuple[SentinelMaster, ...] = ()
    cluster_info: Mapping[str, str] = field(default_factory=dict)
    cluster_shards: list[Any] = field(default_factory=list)
    host_facts: HostFacts | None = None
    redis_log: str | None = None
    kernel_oom: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def keyspace(self) -> dict[int, dict[str, int]]:
        """INFO keyspace: db number -> {keys, expires, avg_ttl, …} as integers."""
        return keyspace_of(self.info)


@dataclass(frozen=True)
class Snapshot:
    path: Path
    manifest: Manifest
    hosts: tuple[HostSnapshot, ...]

    def host(self, name: str) -> HostSnapshot | None:
        return next((host for host in self.hosts if host.name == name), None)


def keyspace_of(info: Mapping[str, str]) -> dict[int, dict[str, int]]:
    """The `dbN:keys=…,expires=…` lines of a flat INFO as db number -> integer fields."""
    dbs: dict[int, dict[str, int]] = {}
    for name, value in info.items():
        if name.startswith("db") and name[2:].isdigit():
            fields = dict(part.partition("=")[::2] for part in value.split(","))
            dbs[int(name[2:])] = {k: _int(v) for k, v in fields.items()}
    return dict(sorted(dbs.items()))


def parse_client_list(text: str) -> tuple[dict[str, str], ...]:
    """CLIENT LIST text as one dict per client (`name=value` fields; values have no spaces)."""
    clients = []
    for line in text.splitlines():
        if line.strip():
            clients.append(dict(part.partition("=")[::2] for part in line.split(" ") if part))
    return tuple(clients)


def encode_item(name: str, value: Any) -> bytes:
    """An item's value as its file's bytes: text as UTF-8, everything else as JSON."""
    if ITEM_FILES[name].endswith(".txt"):
        return str(value).encode("utf-8", "surrogateescape")
    return json.dumps(value, indent=1, sort_keys=False, ensure_ascii=True).encode() + b"\n"


def host_member(host: str, item: str) -> str:
    """The path of a host's item inside the archive (below the top folder)."""
    return f"hosts/{host}/{ITEM_FILES[item]}"


def archive_name(started: float) -> str:
    import time

    return "snapshot-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + SUFFIX


def write_archive(
    dest: Path, name: str, manifest: Mapping[str, Any], members: Mapping[str, bytes]
) -> Path:
    """Write `manifest` and `members` (path below the top folder -> bytes) as `dest/name`.

    0600 from the first byte, written at a temporary name, fsynced, then linked into place
    (never over an existing archive: a second snapshot within the same second gets `-2`).
    Returns the path written. Raises OSError as the disk reports it; nothing is left behind.
    """
    import time

    import zstandard

    stem = name.removesuffix(SUFFIX)
    mtime = int(manifest.get("started") or time.time())
    fd, temporary = tempfile.mkstemp(dir=dest, prefix=f".{stem}.", suffix=".part")
    try:
        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        with open(fd, "wb") as handle:
            with (
                compressor.stream_writer(handle, closefd=False) as writer,
                tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                _add(tar, f"{stem}/{MANIFEST}", _manifest_bytes(manifest), mtime)
                for path, data in members.items():
                    _add(tar, f"{stem}/{path}", data, mtime)
            handle.flush()
            os.fsync(handle.fileno())
        final = _link_new_name(temporary, dest, stem)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    fsync_dir(dest)
    return final


def load_snapshot(path: Path | str) -> Snapshot:
    """Read an archive `write_archive` wrote. Raises UsageError (exit 2) when `path` cannot be
    read or is not a redisops snapshot."""
    path = Path(path)
    files = _read_members(path)
    try:
        raw_manifest = json.loads(files[MANIFEST])
        if raw_manifest.get("kind") != KIND:
            raise ValueError("its manifest is not a snapshot's")
        if int(raw_manifest.get("format", 0)) > FORMAT:
            raise UsageError(
                f"{path} is a format {raw_manifest['format']} snapshot; this redisops reads "
                f"format {FORMAT} and older",
                hint="read it with a newer redisops",
            )
        manifest = _manifest(raw_manifest)
        hosts = tuple(_host_snapshot(record, files) for record in manifest.hosts)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path} is not a readable redisops snapshot: {_reason(exc)}") from None
    return Snapshot(path=path, manifest=manifest, hosts=hosts)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def _manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps({"kind": KIND, **manifest}, indent=1).encode() + b"\n"


def _link_new_name(temporary: str, dest: Path, stem: str) -> Path:
    for attempt in range(1, 1000):
        final = dest / (f"{stem}{SUFFIX}" if attempt == 1 else f"{stem}-{attempt}{SUFFIX}")
        try:
            os.link(temporary, final)
        except FileExistsError:
            continue
        return final
    raise FileExistsError(f"no free archive name for {stem} in {dest}")


def _read_members(path: Path) -> dict[str, bytes]:
    import zstandard

    files: dict[str, bytes] = {}
    unpacked = 0
    try:
        with (
            open(path, "rb") as handle,
            zstandard.ZstdDecompressor().stream_reader(handle) as reader,
            tarfile.open(fileobj=reader, mode="r|") as tar,
        ):
            for member in _regular(tar):
                unpacked += member.size
                if unpacked > MAX_UNPACKED_BYTES:
                    raise UsageError(f"{path} unpacks to more than 1 GiB: not a snapshot")
                extracted = tar.extractfile(member)
                _, _, below = member.name.partition("/")
                files[below] = extracted.read() if extracted else b""
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tarfile.TarError, zstandard.ZstdError, EOFError) as exc:
        raise UsageError(f"{path} is not a redisops snapshot: {_reason(exc)}") from None
    if MANIFEST not in files:
        raise UsageError(f"{path} is not a redisops snapshot: it has no {MANIFEST}")
    return files


def _regular(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        if member.isfile():
            yield member


def _manifest(raw: Mapping[str, Any]) -> Manifest:
    hosts = tuple(
        HostRecord(
            name=str(host["name"]),
            address=str(host["address"]),
            role=str(host["role"]),
            server=host.get("server"),
            ok=bool(host["ok"]),
            error=host.get("error"),
            started=float(host["started"]),
            seconds=float(host["seconds"]),
            items=tuple(
                ItemRecord(
                    name=str(item["name"]),
                    status=str(item["status"]),
                    seconds=float(item["seconds"]),
                    error=item.get("error"),
                    file=item.get("file"),
                    bytes=int(item.get("bytes", 0)),
                )
                for item in host["items"]
            ),
        )
        for host in raw["hosts"]
    )
    return Manifest(
        format=int(raw["format"]),
        redisops=str(raw.get("redisops", "?")),
        taken_at=str(raw["taken_at"]),
        started=float(raw["started"]),
        seconds=float(raw["seconds"]),
        taken_on=str(raw.get("taken_on", "?")),
        inventory=raw.get("inventory"),
        limit=raw.get("limit"),
        timeout=float(raw["timeout"]),
        parallel=int(raw["parallel"]),
        hosts=hosts,
    )


def _host_snapshot(record: HostRecord, files: Mapping[str, bytes]) -> HostSnapshot:
    values: dict[str, Any] = {}
    for item in record.items:
        if item.ok and item.file in files:
            values[item.name] = _decode(item.name, files[item.file])
    return HostSnapshot(record=record, **_fields(values))


def _decode(name: str, data: bytes) -> Any:
    if ITEM_FILES[name].endswith(".txt"):
        return data.decode("utf-8", "surrogateescape")
    return json.loads(data)


def _fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Item values (as decoded from their files) as HostSnapshot's keyword arguments."""
    from redisops.serverinfo import parse_info

    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("info", "cluster_info"):
            out[name] = parse_info(value.encode("utf-8", "surrogateescape"))
        elif name == "acl":
            out[name] = tuple(value)
        elif name == "slowlog":
            out[name] = tuple(SlowlogRecord(**{**e, "args": tuple(e["args"])}) for e in value)
        elif name == "latency_latest":
            out[name] = tuple(LatencyLatest(**row) for row in value)
        elif name == "latency_history":
            out[name] = {event: tuple(tuple(p) for p in points) for event, points in value.items()}
        elif name == "latency_histogram":
            out[name] = {
                command: LatencyHistogram(
                    calls=int(h["calls"]), buckets={int(k): int(v) for k, v in h["buckets"].items()}
                )
                for command, h in value.items()
            }
        elif name == "clients":
            out[name] = parse_client_list(value)
        elif name == "replication":
            replicas = tuple(ReplicaLink(**r) for r in value.get("replicas", ()))
            out[name] = Replication(**{**value, "replicas": replicas})
        elif name == "sentinel":
            out[name] = tuple(
                SentinelMaster(
                    **{**m, "replicas": tuple(m["replicas"]), "sentinels": tuple(m["sentinels"])}
                )
                for m in value
            )
        elif name == "host_facts":
            load = value.get("load")
            out[name] = HostFacts(**{**value, "load": tuple(load) if load else None})
        elif name == "kernel_oom":
            out[name] = tuple(line for line in value.splitlines() if line.strip())
        else:
            out[name] = value
    return out


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return 0


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
