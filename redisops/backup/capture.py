"""`backup run`: capture RDB or AOF from each host into the catalogue, verified before it counts.

Per host: take the host's lock, clear what a cut-short run left (a partial folder, a server
setting not put back), decide where the snapshot comes from and refuse a fork the machine
cannot afford, capture into `DEST/<host>/.<id>.part/` (streamed: compressed, hashed and
checked as it arrives), verify, write manifest.json, rename the folder to its id. Any failure
or interrupt removes the partial folder, so nothing half-done is ever listed.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from redisops import __version__
from redisops.backup.aof import parse_aof_manifest
from redisops.backup.catalogue import (
    VERIFIED,
    Backup,
    clean_partials,
    format_time,
    host_folder,
    new_backup_id,
    now_utc,
    partial_dir,
    private_dir,
    publish,
)
from redisops.backup.lock import host_locks
from redisops.backup.temp_settings import Warn, repair_left_behind, temporarily_set
from redisops.backup.verify import (
    Findings,
    abort_feeds,
    check_aof_folder,
    check_aof_parts,
    feeds_for,
    new_findings,
)
from redisops.datafile import DataFileWriter, StoredFile
from redisops.errors import HostError, RefusedError
from redisops.fleet.connection import redis_client
from redisops.fleet.fanout import run_on_hosts
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import HostAccess, open_host_access
from redisops.interrupt import pause, raise_if_stopped
from redisops.results import HostResult
from redisops.serverinfo import as_int, keyspace, parse_info, replication_role

if TYPE_CHECKING:
    import redis

    from redisops.backup.replication import RdbSync
    from redisops.fleet.resp import RespConnection

# (host name, bytes done, bytes expected or 0 when unknown)
Progress = Callable[[str, int, int], None]
KINDS = ("rdb", "aof")
VIAS = ("replication", "file")
POLL_SECONDS = 0.1
# While an RDB streams in, every this many bytes the file's dirty pages are handed to the
# disk: the fsync at the end then waits for the last few MiB only, not the whole file
# (24 -> 6 ms for 66 MB here), and a backup does not fill the page cache.
WRITEBACK_BYTES = 8 << 20


@dataclass(frozen=True)
class BackupSettings:
    """How to back up. `via` None picks `replication` for a master (a snapshot that fails
    there never blocks its writes, a failed BGSAVE does) and `file` for a replica with host
    access; AOF backups always copy files.

    `timeout` bounds connecting and each command or wait for data; `save_timeout` bounds
    the server's BGSAVE or BGREWRITEAOF.
    """

    kind: str = "rdb"
    via: str | None = None
    compression: str = "none"
    timeout: float = 5.0
    save_timeout: float = 3600.0
    reason: str = "manual"


@dataclass(frozen=True)
class BackupPlan:
    """How one host will be backed up, decided before anything is asked of it: `refusal` says
    why it must not be (the run then stops, exit 3), `warnings` what to know."""

    via: str
    role: str
    refusal: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass
class _Captured:
    files: list[StoredFile] = field(default_factory=list)
    findings: Findings = field(default_factory=new_findings)
    replid: str | None = None
    repl_offset: int | None = None
    aof_layout: str | None = None
    manifest_text: str | None = None


def run_backups(
    hosts: Sequence[Host],
    dests: dict[str, Path],
    settings: BackupSettings,
    *,
    parallel: int,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> list[HostResult[Backup]]:
    """Back up every host into its catalogue folder, `parallel` at once, in inventory order.

    Takes every host's lock first: RefusedError (exit 3) naming the holder when another run
    has one, before anything is done. Then plans every host (`plan_backup`): RefusedError
    when any host must not fork, before any backup starts. A host that fails is an error row;
    the others go on. `warn` gets each thing the operator should know, as it is found.
    """
    say = warn or _ignore
    with host_locks([(dests[h.name], h.name) for h in hosts], purpose="backup run"):
        plans = run_on_hosts(
            hosts,
            lambda host: plan_backup(host, dests[host.name], settings, warn=say),
            parallel=parallel,
        )
        refused = [f"{r.host}: {r.data.refusal}" for r in plans if r.data and r.data.refusal]
        if refused:
            raise RefusedError(
                "; ".join(refused) + "; nothing was backed up",
                hint="free memory on that machine, or back up a replica of it (-l); where a "
                "BGSAVE was refused, --via replication is safer: a snapshot that fails there "
                "does not block the master's writes",
            )
        ready = {r.host: r.data for r in plans if r.ok and r.data}
        for name, plan in ready.items():
            for warning in plan.warnings:
                say(f"{name}: {warning}")

        def back_up(host: Host) -> Backup:
            plan = ready[host.name]
            return back_up_host(
                host, dests[host.name], settings, plan=plan, progress=progress, warn=say
            )

        ready_hosts = [h for h in hosts if h.name in ready]
        taken = iter(run_on_hosts(ready_hosts, back_up, parallel=parallel))
        return [next(taken) if r.ok else r for r in plans]  # type: ignore[misc]


def _ignore(_message: str) -> None:
    pass


def plan_backup(
    host: Host, dest: Path, settings: BackupSettings, *, warn: Warn | None = None
) -> BackupPlan:
    """Put back any setting an earlier run left changed on `host`, then decide where its
    snapshot comes from and whether its machine can afford the fork (the caller holds the
    host's lock). HostError when the host cannot be asked."""
    repair_left_behind(
        host, host_folder(dest, host.name), timeout=settings.timeout, warn=warn or _ignore
    )
    with redis_client(host, timeout=settings.timeout, decode=True) as client:
        info = client.info("replication") | client.info("memory")
    role = replication_role(info)
    via = settings.via or ("file" if host.has_host_access and role == "replica" else "replication")
    if settings.kind == "aof":
        via = "file"
    if via == "file" and not host.has_host_access:
        raise HostError(
            f"--via file needs host access to {host.name}",
            hint="set connection: local or ssh_* keys in the inventory, or use --via replication",
        )
    if role != "master" or not host.has_host_access:
        return BackupPlan(via, role)
    try:
        memory = _machine_memory(host, settings.timeout)
    except HostError as exc:
        if via == "file":
            raise  # the copy needs this access too
        return BackupPlan(via, role, warnings=(f"fork headroom not checked: {exc.message}",))
    refusal, warning = fork_headroom(
        rss=int(info.get("used_memory_rss", 0)),
        memory=memory,
        bgsave=via == "file" and settings.kind == "rdb",
    )
    return BackupPlan(via, role, refusal, (warning,) if warning else ())


def _machine_memory(host: Host, timeout: float) -> dict[str, int]:
    """/proc/meminfo (bytes) and vm.overcommit_memory (as `overcommit`) of the host's machine;
    what cannot be read is left out."""
    with open_host_access(host, timeout=timeout) as access:
        result = access.run(["cat", "/proc/meminfo", "/proc/sys/vm/overcommit_memory"], check=False)
    memory: dict[str, int] = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        name, colon, value = line.partition(":")
        words = value.split()
        if colon and words and words[0].isdigit():
            memory[name] = int(words[0]) * (1024 if words[1:] == ["kB"] else 1)
        elif not colon and line.strip().isdigit():
            memory["overcommit"] = int(line)
    return memory


def fork_headroom(
    *, rss: int, memory: dict[str, int], bgsave: bool
) -> tuple[str | None, str | None]:
    """(refusal, warning) for asking a master of `rss` bytes to fork on a machine with
    `memory` (from _machine_memory); `bgsave` when the fork is a BGSAVE to disk.

    A fork duplicates the page tables, and copy-on-write needs up to the whole RSS again
    while the child runs if the data set is rewritten meanwhile. Under strict overcommit
    (vm.overcommit_memory=2) the kernel refuses a fork it cannot commit: certain failure,
    refused. When less memory is available than the RSS, a busy save can run out: the OOM
    killer then ends the child (or the server). A failed BGSAVE makes the master refuse
    writes (stop-writes-on-bgsave-error), so that is refused; a failed replication
    snapshot or AOF rewrite only fails the backup, so it is a warning.
    """
    commit_left = (
        memory["CommitLimit"] - memory["Committed_AS"]
        if "CommitLimit" in memory and "Committed_AS" in memory
        else None
    )
    if memory.get("overcommit") == 2 and commit_left is not None and commit_left < rss:
        return (
            f"the kernel would refuse the fork a snapshot needs (vm.overcommit_memory=2: "
            f"{_mib(max(0, commit_left))} left to commit, the server uses {_mib(rss)})",
            None,
        )
    available = memory.get("MemAvailable")
    if available is None or available >= rss:
        return None, None
    shortfall = (
        f"{_mib(available)} of memory available, less than the server's {_mib(rss)} "
        "that copy-on-write may need while it forks"
    )
    if bgsave:
        return (
            f"{shortfall}: a BGSAVE that runs out of memory fails, and the master then "
            "refuses writes (stop-writes-on-bgsave-error)",
            None,
        )
    return None, f"{shortfall}: a busy server may run out of memory during the backup"


def _mib(size: int) -> str:
    return f"{size / (1 << 20):,.1f} MiB"


def back_up_host(
    host: Host,
    dest: Path,
    settings: BackupSettings,
    *,
    plan: BackupPlan | None = None,
    progress: Progress | None = None,
    warn: Warn | None = None,
) -> Backup:
    """One backup of `host` into `dest` (the caller holds the host's lock); HostError if not.

    Without a `plan`, plans it first (RefusedError when the host must not fork); an
    interrupt stops it at the next chunk or wait, leaving nothing.
    """
    say = warn or _ignore
    if plan is None:
        plan = plan_backup(host, dest, settings, warn=say)
        if plan.refusal:
            raise RefusedError(f"{host.name}: {plan.refusal}; nothing was backed up")
        for warning in plan.warnings:
            say(f"{host.name}: {warning}")
    host_dir = host_folder(dest, host.name)
    clean_partials(host_dir)
    via = plan.via
    from redisops.backup.replication import RdbSync
    from redisops.fleet.resp import RespConnection

    connection = RespConnection(host, timeout=settings.timeout)
    try:
        server = _server_facts(connection)
        started, clock = now_utc(), time.monotonic()
        # The snapshot is asked for first: the server forks while the folder, the file and
        # redis-check-rdb are made ready.
        sync = RdbSync(connection) if via == "replication" else None
        if sync is None:
            connection.close()
        backup_id = new_backup_id(host_dir, host.name, started)
        partial = private_dir(partial_dir(host_dir, backup_id))
    except BaseException:
        connection.close()
        raise
    try:
        report = (
            None if progress is None else (lambda done, total: progress(host.name, done, total))
        )
        if settings.kind == "rdb":
            captured = _capture_rdb(host, partial, sync, settings, report)
        else:
            captured = _capture_aof(
                host, partial, settings, report, host_dir=host_dir, run_id=server["run_id"],
                warn=say,
            )  # fmt: skip
        verification = captured.findings.verification()
        if captured.findings.problems:
            raise HostError(
                f"backup of {host.name} failed verification: {captured.findings.problems[0]}",
                hint="nothing was catalogued; see the server's log, then run again",
            )
        facts, tool = captured.findings.facts, captured.findings.tool
        exact = tool is not None and tool.keys is not None and settings.kind == "rdb"
        files = tuple(captured.files)
        backup = Backup(
            backup_id=backup_id,
            host=host.name,
            address=host.address,
            kind=settings.kind,
            via=via,
            reason=settings.reason,
            role=server["role"],
            redis_version=server["version"],
            run_id=server["run_id"],
            replid=captured.replid or (facts.aux.get("repl-id") if facts else None),
            repl_offset=captured.repl_offset
            if captured.repl_offset is not None
            else as_int(facts.aux.get("repl-offset") if facts else None),
            started_at=format_time(started),
            finished_at=format_time(now_utc()),
            duration_seconds=round(time.monotonic() - clock, 3),
            bytes=sum(f.bytes for f in files),
            raw_bytes=sum(f.raw_bytes for f in files),
            sha256=files[0].sha256 if settings.kind == "rdb" else listing_sha256(files),
            compression=settings.compression,
            files=files,
            rdb_version=facts.version if facts else None,
            keys=tool.keys if exact else server["keys"],
            expires=tool.expires if exact else server["expires"],
            keys_source=tool.tool if exact else "info",
            aof_layout=captured.aof_layout,
            verification=verification,
            verified=verification.status == VERIFIED,
            redisops_version=__version__,
        )
        raise_if_stopped()  # an interrupted run catalogues nothing
        return publish(partial, backup)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        connection.close()


def listing_sha256(files: Sequence[StoredFile]) -> str:
    """SHA-256 of a `sha256sum`-style listing of the files: one checksum for a multi-file backup."""
    import hashlib

    listing = "".join(f"{f.sha256}  {f.name}\n" for f in sorted(files, key=lambda f: f.name))
    return hashlib.sha256(listing.encode()).hexdigest()


def _server_facts(connection: RespConnection) -> dict:
    """Role, version, run id and key counts from one INFO (its default sections)."""
    fields = parse_info(connection.call(b"INFO"))
    dbs = keyspace(fields).values()
    return {
        "role": replication_role(fields),
        "version": fields.get("redis_version", "None"),
        "run_id": fields.get("run_id"),
        "keys": sum(db.get("keys", 0) for db in dbs),
        "expires": sum(db.get("expires", 0) for db in dbs),
    }


def _capture_rdb(
    host: Host,
    partial: Path,
    sync: RdbSync | None,
    settings: BackupSettings,
    progress: Callable[[int, int], None] | None,
) -> _Captured:
    """Receive the snapshot `sync` asked for or, without one, BGSAVE and copy the file."""
    captured = _Captured()
    source = "dump.rdb"
    remote = None
    if sync is None:
        remote = _bgsave(host, settings)
        source = Path(remote).name
    probe = StoredFile(source, source, "rdb", 0, "", 0, settings.compression)
    feeds, judge = feeds_for(probe)
    writer = sink = None
    try:
        writer = DataFileWriter(
            partial, source, "rdb", compression=settings.compression, feeds=feeds
        )
        sink = _EarlyWriteback(writer)
        if sync is not None:
            snapshot = sync.receive(sink, progress)
            captured.replid, captured.repl_offset = snapshot.replid, snapshot.offset
        else:
            with open_host_access(host, timeout=settings.timeout) as access:
                access.get_stream(remote, sink, progress=progress)
        captured.files.append(writer.close())
    except BaseException:
        if writer is not None:
            writer.abort()
        abort_feeds(feeds)
        raise
    finally:
        if sink is not None:
            sink.close()
    judge(captured.findings)
    return captured


class _EarlyWriteback:
    """Writes go to `writer`; every WRITEBACK_BYTES the file's writeback starts; an interrupt
    stops the copy at the next chunk (`Interrupted` from `write`).

    POSIX_FADV_DONTNEED starts writing the dirty pages without waiting for them (and drops
    the pages already on disk); DataFileWriter.close still fsyncs before the file counts.
    """

    def __init__(self, writer: DataFileWriter) -> None:
        self._writer = writer
        self._due = WRITEBACK_BYTES
        try:
            self._fd: int | None = os.open(writer.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # advice only: without it the file is still written and fsynced
            self._fd = None

    def write(self, data: bytes | memoryview) -> None:
        raise_if_stopped()
        self._writer.write(data)
        if self._fd is not None and self._writer.raw_bytes >= self._due:
            self._due = self._writer.raw_bytes + WRITEBACK_BYTES
            with contextlib.suppress(OSError):
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def _bgsave(host: Host, settings: BackupSettings) -> str:
    """BGSAVE, wait until it is done, and return the path of the file it wrote.

    Raises HostError when the save fails on the server (disk full, dir not writable, the
    fork killed) or takes longer than `save_timeout`.
    """
    import redis

    deadline = time.monotonic() + settings.save_timeout
    with redis_client(host, timeout=settings.timeout, decode=True) as client:
        folder, filename = _config(client, host, "dir", "dbfilename")
        _wait(client, "rdb_bgsave_in_progress", deadline, host, "a BGSAVE already running")
        before = client.info("persistence").get("rdb_saves")
        try:
            reply = client.execute_command("BGSAVE", "SCHEDULE")
        except redis.ResponseError as exc:
            raise HostError(f"{host.address} refused BGSAVE: {exc}") from None
        running = ["started" in str(reply)]

        def finished(info: dict) -> bool:
            if info.get("rdb_bgsave_in_progress"):
                running[0] = True
                return False
            return running[0] or (before is not None and info.get("rdb_saves", 0) > before)

        info = _poll(client, host, deadline, "BGSAVE", finished)
        if info.get("rdb_last_bgsave_status") != "ok":
            raise _bgsave_failed(client, host, info.get("rdb_last_bgsave_status"))
    return str(Path(folder) / filename)


def _bgsave_failed(client: redis.Redis, host: Host, status: object) -> HostError:
    """The error for a failed BGSAVE, saying whether the server now refuses writes.

    With stop-writes-on-bgsave-error yes (the default) and save points set, a master whose
    last BGSAVE failed refuses every write and even PING (MISCONF), so Sentinel may fail it
    over. It lifts by itself only when a BGSAVE succeeds. PING tells which case this is.
    """
    import redis

    failed = f"BGSAVE failed on {host.address} (rdb_last_bgsave_status: {status})"
    try:
        client.ping()
        blocked = False
    except redis.ResponseError as exc:
        blocked = "MISCONF" in str(exc)
    if not blocked:
        return HostError(
            failed,
            hint="see the server's log: its dir may not be writable, the disk full, "
            "or the fork was killed; nothing was catalogued",
        )
    return HostError(
        f"{failed}: the master now REFUSES WRITES and PING (MISCONF, "
        "stop-writes-on-bgsave-error), and Sentinel may fail it over",
        hint="to unblock it, fix the cause in the server's log (fork killed or out of "
        "memory, disk full, dir not writable), then run BGSAVE until it succeeds: that keeps "
        "the guard against saves failing unnoticed. Only if writes cannot wait: CONFIG SET "
        "stop-writes-on-bgsave-error no unblocks at once, but failed saves then go "
        "unnoticed; set it back to yes after a good save. Nothing was catalogued",
    )


def _capture_aof(
    host: Host,
    partial: Path,
    settings: BackupSettings,
    progress: Callable[[int, int], None] | None,
    *,
    host_dir: Path,
    run_id: str | None,
    warn: Warn,
) -> _Captured:
    """Rewrite the AOF, keep rewrites paused while copying its files, restore the setting.

    The pause is `auto-aof-rewrite-percentage 0`, recorded in `host_dir` before it is set
    and put back however the copy ends (see temp_settings).
    """
    deadline = time.monotonic() + settings.save_timeout
    captured = _Captured()
    with redis_client(host, timeout=settings.timeout, decode=True) as client:
        if not client.info("persistence").get("aof_enabled"):
            raise HostError(
                f"appendonly is off on {host.address}: there is no AOF to back up",
                hint="back up its RDB instead (--kind rdb)",
            )
        version = str(client.info("server").get("redis_version", "0"))
        multipart = int(version.split(".")[0]) >= 7
        folder, filename = _config(client, host, "dir", "appendfilename")
        aof_dir = _config(client, host, "appenddirname")[0] if multipart else ""
        with temporarily_set(
            client, host, host_dir, "auto-aof-rewrite-percentage", "0",
            run_id=run_id, timeout=settings.timeout, warn=warn,
        ):  # fmt: skip
            _rewrite_aof(client, host, deadline)
            with open_host_access(host, timeout=settings.timeout) as access:
                if multipart:
                    captured.aof_layout = "multi-part"
                    base = str(Path(folder) / aof_dir)
                    _copy_multipart(access, base, filename, partial, settings, captured, progress)
                else:
                    captured.aof_layout = "single-file"
                    remote = str(Path(folder) / filename)
                    _copy_part(access, remote, filename, "aof-incr", partial, settings, captured)
    check_aof_parts(captured.findings, captured.files, captured.manifest_text)
    if not captured.findings.problems:
        check_aof_folder(captured.findings, partial, captured.files)
    return captured


def _copy_multipart(
    access: HostAccess,
    aof_dir: str,
    filename: str,
    partial: Path,
    settings: BackupSettings,
    captured: _Captured,
    progress: Callable[[int, int], None] | None,
) -> None:
    manifest_name = f"{filename}.manifest"
    text = io.BytesIO()
    access.get_stream(f"{aof_dir}/{manifest_name}", text)
    captured.manifest_text = text.getvalue().decode(errors="replace")
    try:
        parts = parse_aof_manifest(captured.manifest_text)
    except ValueError as exc:
        raise HostError(f"the AOF manifest in {aof_dir} is unusable: {exc}") from None
    writer = DataFileWriter(
        partial, manifest_name, "aof-manifest", compression=settings.compression
    )
    writer.write(text.getvalue())
    captured.files.append(writer.close())
    # The base first: it never changes; incr files only grow, and are copied as big as they
    # are when opened, which ends on a whole write of whole commands.
    for part in sorted(parts, key=lambda p: p.type != "b"):
        if part.type in ("b", "i"):
            role = "aof-base" if part.type == "b" else "aof-incr"
            _copy_part(access, f"{aof_dir}/{part.name}", part.name, role, partial, settings,
                       captured)  # fmt: skip
            if progress is not None:
                done = sum(f.raw_bytes for f in captured.files)
                progress(done, 0)


def _copy_part(
    access: HostAccess,
    remote: str,
    name: str,
    role: str,
    partial: Path,
    settings: BackupSettings,
    captured: _Captured,
) -> None:
    probe = StoredFile(name, name, role, 0, "", 0, settings.compression)
    feeds, judge = feeds_for(probe)
    writer = DataFileWriter(partial, name, role, compression=settings.compression, feeds=feeds)
    sink = _EarlyWriteback(writer)
    try:
        access.get_stream(remote, sink)
        captured.files.append(writer.close())
    except BaseException:
        writer.abort()
        abort_feeds(feeds)
        raise
    finally:
        sink.close()
    judge(captured.findings)


def _rewrite_aof(client: redis.Redis, host: Host, deadline: float) -> None:
    """BGREWRITEAOF (after any rewrite already running) and wait until it is done and ok."""
    import redis

    _wait(client, "aof_rewrite_in_progress", deadline, host, "an AOF rewrite already running")
    try:
        client.execute_command("BGREWRITEAOF")
    except redis.ResponseError as exc:
        raise HostError(f"{host.address} refused BGREWRITEAOF: {exc}") from None
    info = _poll(
        client,
        host,
        deadline,
        "the AOF rewrite",
        lambda i: not i.get("aof_rewrite_in_progress") and not i.get("aof_rewrite_scheduled"),
    )
    if info.get("aof_last_bgrewrite_status") != "ok":
        raise HostError(
            f"AOF rewrite failed on {host.address}",
            hint="see the server's log (disk full? dir not writable?); nothing was catalogued",
        )


def _wait(client: redis.Redis, flag: str, deadline: float, host: Host, what: str) -> None:
    _poll(client, host, deadline, what, lambda info: not info.get(flag))


def _poll(
    client: redis.Redis, host: Host, deadline: float, what: str, done: Callable[[dict], bool]
) -> dict:
    """INFO persistence until `done` says so; HostError at `deadline` (time.monotonic())."""
    while True:
        info = client.info("persistence")
        if done(info):
            return info
        if time.monotonic() >= deadline:
            raise HostError(f"{host.address}: {what} did not finish in time (--save-timeout)")
        pause(POLL_SECONDS)


def _config(client: redis.Redis, host: Host, *names: str) -> tuple[str, ...]:
    """CONFIG GET each name; HostError naming the one the server would not tell."""
    import redis

    values = []
    for name in names:
        try:
            value = client.config_get(name).get(name)
        except redis.ResponseError as exc:
            raise HostError(f"{host.address} would not tell its {name}: {exc}") from None
        if value is None:
            raise HostError(f"{host.address} has no config {name!r}")
        values.append(value)
    return tuple(values)
