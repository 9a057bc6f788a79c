"""`backup restore`: put a catalogued backup back on a host, refusing what would lose data.

The plan is made first and changes nothing: the backup is re-verified, the target is read
(role, replicas, persistence settings, what is on disk) and the inventory's sentinels are
asked whether they monitor it. Execution then stages the data beside the live files while the
server still runs (so a failed upload changes nothing), takes a safety backup, stops the
server, renames the staged data into place, starts it, waits until it has loaded and checks
the key count against the manifest.

With `appendonly yes` the AOF would win over a restored dump.rdb: an RDB is therefore also
installed as the base of a fresh Redis 7 AOF (manifest naming only that base; before Redis 7,
as the AOF file itself, which then starts with an RDB preamble). The AOF that was there is
kept beside it, renamed.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from redisops.backup.capture import BackupSettings, Progress, back_up_host
from redisops.backup.catalogue import Backup, host_folder
from redisops.backup.datafile import read_stored
from redisops.backup.formats import loadable_rdb_version, parse_aof_manifest
from redisops.backup.verify import VerifyResult, verify_backup
from redisops.errors import HostError
from redisops.fleet.connection import redis_client
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import HostAccess, open_host_access

POLL_SECONDS = 0.1
STAGE_PREFIX = ".redisops-restore-"


@dataclass(frozen=True)
class TargetState:
    """The target as it is now: what a restore would replace."""

    role: str
    version: str
    connected_replicas: int
    keys: int
    used_memory: int
    dir: str
    dbfilename: str
    appendonly: bool
    aof_path: str | None  # the AOF folder (Redis 7) or file that would be replaced
    appendfilename: str
    data_file_bytes: int | None
    monitored_by: tuple[str, ...]  # sentinels of the inventory that monitor it

    @property
    def multipart_aof(self) -> bool:
        return int(self.version.split(".")[0]) >= 7


@dataclass(frozen=True)
class RestorePlan:
    """What a restore would do. `refusals` stop it unless forced; `blockers` stop it always."""

    backup_id: str
    backup_host: str
    backup_kind: str
    backup_finished_at: str
    backup_keys: int | None
    backup_bytes: int
    backup_raw_bytes: int
    host: str
    address: str
    target: TargetState
    verification: VerifyResult
    steps: tuple[str, ...]
    refusals: tuple[str, ...]
    blockers: tuple[str, ...]
    safety_backup: bool


@dataclass(frozen=True)
class RestoreStep:
    step: str
    seconds: float
    detail: str


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore. `keys_match` is None when the backup's key count is not exact
    (AOF, or counted by INFO); `set_aside` names the old AOF kept beside the new one."""

    backup_id: str
    host: str
    address: str
    safety_backup_id: str | None
    steps: tuple[RestoreStep, ...]
    keys_expected: int | None
    keys_loaded: int | None
    keys_expired_on_load: int | None
    keys_now: int
    keys_match: bool | None
    set_aside: str | None
    duration_seconds: float


def plan_restore(
    backup: Backup,
    target: Host,
    inventory_hosts: Sequence[Host],
    *,
    from_host: str | None,
    safety_backup: bool,
    timeout: float,
    wait: float,
) -> RestorePlan:
    """Verify the backup, read the target, ask the sentinels; change nothing."""
    verification = verify_backup(backup)
    state = read_target(target, inventory_hosts, timeout=timeout)
    blockers, refusals = [], []
    if backup.host != target.name and from_host != backup.host:
        blockers.append(
            f"{backup.backup_id} is a backup of {backup.host}, not of {target.name}: pass "
            f"--from-host {backup.host} to restore it onto {target.name}"
        )
    if not target.has_host_access:
        blockers.append(f"no host access to {target.name}: the data file cannot be placed")
    if not target.service_start:
        blockers.append(
            f"{target.name} has no service_start in the inventory: it could not be started again"
        )
    if backup.kind == "aof":
        if not state.appendonly:
            blockers.append(
                f"{target.name} has appendonly no: it would ignore a restored AOF "
                "(restore an RDB backup, or enable appendonly first)"
            )
        elif (backup.aof_layout == "multi-part") != state.multipart_aof:
            blockers.append(
                f"the backup's AOF is {backup.aof_layout}, {target.name} (Redis "
                f"{state.version}) uses another layout: restore an RDB backup instead"
            )
    loadable = loadable_rdb_version(state.version)
    if backup.rdb_version and loadable and backup.rdb_version > loadable:
        blockers.append(
            f"the backup is RDB version {backup.rdb_version}; Redis {state.version} on "
            f"{target.name} loads up to version {loadable} and would not start: restore it "
            "onto a Redis at least as new as the one it came from"
        )
    if verification.status == "failed":
        refusals.append(
            f"the backup does not verify: {verification.problems[0]} (checksum mismatch or "
            "damage; restore another backup)"
        )
    if state.role == "replica":
        refusals.append(
            f"{target.name} is a replica: it would drop the restored data and resync from its "
            "master (REPLICAOF NO ONE first, or restore its master)"
        )
    if state.connected_replicas:
        refusals.append(
            f"{target.name} is a master with {state.connected_replicas} connected replica(s): "
            "they would resync and take the restored data too (detach them with REPLICAOF NO "
            "ONE or stop them first)"
        )
    refusals.extend(
        f"{name} monitors {target.name}: it would fail over while the server restarts "
        f"(SENTINEL REMOVE it on every sentinel first, and MONITOR it again after)"
        if not name.startswith("cannot ")
        else name
        for name in state.monitored_by
    )
    return RestorePlan(
        backup_id=backup.backup_id,
        backup_host=backup.host,
        backup_kind=backup.kind,
        backup_finished_at=backup.finished_at,
        backup_keys=backup.keys,
        backup_bytes=backup.bytes,
        backup_raw_bytes=backup.raw_bytes,
        host=target.name,
        address=target.address,
        target=state,
        verification=verification,
        steps=tuple(_steps(backup, target, state, safety_backup=safety_backup, wait=wait)),
        refusals=tuple(refusals),
        blockers=tuple(blockers),
        safety_backup=safety_backup,
    )


def read_target(target: Host, inventory_hosts: Sequence[Host], *, timeout: float) -> TargetState:
    """The target's role, replicas, data settings and size, and who monitors it."""
    import redis

    with redis_client(target, timeout=timeout, decode=True) as client:
        server = client.info("server")
        replication = client.info("replication")
        persistence = client.info("persistence")
        memory = client.info("memory")
        keyspace = client.info("keyspace")
        config = {}
        for name in ("dir", "dbfilename", "appendfilename", "appenddirname"):
            with contextlib.suppress(redis.ResponseError):
                config.update(client.config_get(name))
    version = str(server.get("redis_version", "0"))
    multipart = int(version.split(".")[0]) >= 7
    appendonly = bool(persistence.get("aof_enabled"))
    folder = config.get("dir", target.data_dir or "")
    dbfilename = config.get("dbfilename", "dump.rdb")
    aof_path = None
    if appendonly:
        name = config.get("appenddirname") if multipart else config.get("appendfilename")
        aof_path = f"{folder}/{name}"
    return TargetState(
        role="replica" if replication.get("role") == "slave" else "master",
        version=version,
        connected_replicas=int(replication.get("connected_slaves", 0)),
        keys=_keys(keyspace),
        used_memory=int(memory.get("used_memory", 0)),
        dir=folder,
        dbfilename=dbfilename,
        appendonly=appendonly,
        aof_path=aof_path,
        appendfilename=config.get("appendfilename", "appendonly.aof"),
        data_file_bytes=_remote_size(target, f"{folder}/{dbfilename}", timeout),
        monitored_by=tuple(_monitors(target, inventory_hosts, timeout=timeout)),
    )


def _keys(keyspace: dict) -> int:
    return sum(int(v.get("keys", 0)) for k, v in keyspace.items() if k.startswith("db"))


def _remote_size(host: Host, path: str, timeout: float) -> int | None:
    if not host.has_host_access:
        return None
    with contextlib.suppress(HostError), open_host_access(host, timeout=timeout) as access:
        done = access.run(["stat", "-c", "%s", path], check=False)
        if done.exit_status == 0:
            return int(done.stdout.strip() or 0)
    return None


def _monitors(target: Host, inventory_hosts: Sequence[Host], *, timeout: float) -> list[str]:
    """Names of the inventory's sentinels that monitor `target` as a master (or, when one
    cannot be asked, "cannot ask NAME: why")."""
    addresses = {target.host}
    with contextlib.suppress(OSError):
        addresses.add(socket.gethostbyname(target.host))
    found = []
    for sentinel in (h for h in inventory_hosts if h.is_sentinel):
        try:
            with redis_client(sentinel, timeout=timeout, decode=True) as client:
                masters = client.sentinel_masters()
        except HostError as exc:
            found.append(f"cannot ask {sentinel.name} whether it monitors {target.name}: {exc}")
            continue
        for state in masters.values():
            if state.get("ip") in addresses and int(state.get("port", 0)) == target.port:
                found.append(sentinel.name)
                break
    return found


def _steps(
    backup: Backup, target: Host, state: TargetState, *, safety_backup: bool, wait: float
) -> list[str]:
    steps = []
    if safety_backup:
        steps.append(f"take a safety backup (RDB) of {target.name} into the catalogue")
    else:
        steps.append("no safety backup (--no-safety-backup): the current data is not kept")
    steps.append(f"upload the backup beside the live files in {state.dir} while it still runs")
    stop = target.service_stop or "SHUTDOWN NOSAVE"
    steps.append(f"stop {target.name}: {stop}")
    if backup.kind == "rdb":
        steps.append(f"rename the restored RDB to {state.dir}/{state.dbfilename}")
        if state.appendonly:
            steps.append(
                f"appendonly is on, so the AOF would win: install the RDB as the base of a "
                f"fresh AOF at {state.aof_path}, keeping the old one beside it"
            )
    else:
        steps.append(f"swap the backup's AOF in at {state.aof_path}, keeping the old one beside it")
    steps.append(f"start {target.name}: {target.service_start}")
    steps.append(f"wait until it has loaded the data (at most {wait:g}s)")
    expected = "-" if backup.keys is None else f"{backup.keys:,}"
    steps.append(f"check the key count: {expected} in the backup")
    return steps


def execute_restore(
    plan: RestorePlan,
    backup: Backup,
    target: Host,
    dest: Path,
    *,
    timeout: float,
    wait: float,
    progress: Progress | None = None,
) -> RestoreResult:
    """Carry out `plan` (the caller has confirmed it and holds the locks).

    Raises HostError when a step fails; if that happens after the server was stopped, it is
    started again with whatever data is in place, and the message says so.
    """
    started = time.monotonic()
    steps: list[RestoreStep] = []

    def step(name: str, detail: str, since: float) -> None:
        steps.append(RestoreStep(name, round(time.monotonic() - since, 3), detail))

    safety_id = None
    if plan.safety_backup:
        clock = time.monotonic()
        settings = BackupSettings(kind="rdb", timeout=timeout, reason="safety")
        safety_id = back_up_host(target, dest, settings, progress=progress).backup_id
        step("safety backup", safety_id, clock)
    state = plan.target
    tag = f"{STAGE_PREFIX}{plan.backup_id}"
    with open_host_access(target, timeout=timeout) as access, _raw_files(backup, dest) as raw:
        clock = time.monotonic()
        staged = _stage(access, backup, raw, state, tag)
        step("upload", f"{len(staged)} file(s) staged in {state.dir}", clock)
        clock = time.monotonic()
        try:
            _stop(access, target, timeout=timeout, wait=wait)
            step("stop", target.service_stop or "SHUTDOWN NOSAVE", clock)
            clock = time.monotonic()
            set_aside = _place(access, backup, state, staged, tag)
            step("place", f"data renamed into place in {state.dir}", clock)
        except BaseException:
            _cleanup_staged(access, staged)
            _start_after_failure(access, target, timeout=timeout)
            raise
        clock = time.monotonic()
        access.run_shell(target.service_start or "", timeout=max(timeout, 30.0))
        step("start", target.service_start or "", clock)
    clock = time.monotonic()
    loaded, expired, now = _wait_loaded(target, timeout=timeout, wait=wait)
    step("load", f"{now:,} keys", clock)
    expected = backup.keys
    match = None
    if expected is not None and backup.keys_source == "redis-check-rdb" and loaded is not None:
        match = loaded + (expired or 0) == expected
    return RestoreResult(
        backup_id=plan.backup_id,
        host=target.name,
        address=target.address,
        safety_backup_id=safety_id,
        steps=tuple(steps),
        keys_expected=expected,
        keys_loaded=loaded,
        keys_expired_on_load=expired,
        keys_now=now,
        keys_match=match,
        set_aside=set_aside,
        duration_seconds=round(time.monotonic() - started, 3),
    )


@contextlib.contextmanager
def _raw_files(backup: Backup, dest: Path):
    """Local paths of the backup's files as Redis wrote them: the stored files themselves, or
    decompressed copies in a private scratch folder of the catalogue (removed after)."""
    folder = Path(backup.path)
    if all(f.compression == "none" for f in backup.files):
        yield {f.source: folder / f.name for f in backup.files}
        return
    scratch = Path(
        tempfile.mkdtemp(prefix=".restore-", suffix=".part", dir=host_folder(dest, backup.host))
    )
    try:
        raw = {}
        for stored in backup.files:
            path = scratch / stored.source
            with open(path, "wb") as out:
                read_stored(folder / stored.name, stored.compression, out.write)
            raw[stored.source] = path
        yield raw
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stage(
    access: HostAccess, backup: Backup, raw: dict[str, Path], state: TargetState, tag: str
) -> dict[str, str]:
    """Upload what will replace the live data under hidden names in the target's dir.

    Returns {what: staged path}: "rdb" (the RDB to become dbfilename) and/or "aof" (the AOF
    folder, or file before Redis 7). Owner and group are set as the dir's, so the server,
    running as another user, can read them.
    """
    staged: dict[str, str] = {}
    try:
        if backup.kind == "rdb":
            rdb = next(iter(raw.values()))
            staged["rdb"] = f"{state.dir}/{tag}.rdb"
            access.put(rdb, staged["rdb"])
            if state.appendonly and state.multipart_aof:
                name = state.appendfilename
                base = f"{name}.1.base.rdb"
                files = {base: rdb}
                manifest = f"file {base} seq 1 type b\n".encode()
                staged["aof"] = _stage_aof_dir(access, state, tag, files, name, manifest)
            elif state.appendonly:
                staged["aof"] = f"{state.dir}/{tag}.aof"
                access.put(rdb, staged["aof"])
        else:
            if state.multipart_aof:
                manifest_source = next(f.source for f in backup.files if f.role == "aof-manifest")
                manifest = raw[manifest_source].read_bytes()
                names = {p.name for p in parse_aof_manifest(manifest.decode())}
                files = {name: path for name, path in raw.items() if name in names}
                staged["aof"] = _stage_aof_dir(
                    access, state, tag, files, state.appendfilename, manifest
                )
            else:
                staged["aof"] = f"{state.dir}/{tag}.aof"
                access.put(next(iter(raw.values())), staged["aof"])
        for path in staged.values():
            access.run(["chown", "-R", f"--reference={state.dir}", path])
    except BaseException:
        _cleanup_staged(access, staged)
        raise
    return staged


def _stage_aof_dir(
    access: HostAccess,
    state: TargetState,
    tag: str,
    files: dict[str, Path],
    filename: str,
    manifest: bytes,
) -> str:
    folder = f"{state.dir}/{tag}.aofdir"
    access.run(["mkdir", "-m", "700", folder])
    for name, path in files.items():
        access.put(path, f"{folder}/{name}")
    with tempfile.NamedTemporaryFile(prefix=".manifest-", suffix=".part") as handle:
        handle.write(manifest)
        handle.flush()
        access.put(handle.name, f"{folder}/{filename}.manifest")
    return folder


def _cleanup_staged(access: HostAccess, staged: dict[str, str]) -> None:
    for path in staged.values():
        with contextlib.suppress(HostError):
            access.run(["rm", "-rf", "--", path], check=False)


def _stop(access: HostAccess, target: Host, *, timeout: float, wait: float) -> None:
    """service_stop, else SHUTDOWN NOSAVE (never a plain SHUTDOWN: it would save over the
    data about to be restored... and take time); then wait until the port is closed."""
    import redis

    if target.service_stop:
        access.run_shell(target.service_stop, timeout=max(timeout, 30.0))
    else:
        with (
            contextlib.suppress(HostError, redis.ConnectionError),
            redis_client(target, timeout=timeout) as client,
        ):
            client.execute_command("SHUTDOWN", "NOSAVE")
    deadline = time.monotonic() + wait
    while _listening(target):
        if time.monotonic() >= deadline:
            raise HostError(f"{target.name} did not stop within {wait:g}s; nothing was replaced")
        time.sleep(POLL_SECONDS)


def _listening(host: Host) -> bool:
    try:
        with socket.create_connection((host.host, host.port), timeout=1.0):
            return True
    except OSError:
        return False


def _place(
    access: HostAccess, backup: Backup, state: TargetState, staged: dict[str, str], tag: str
) -> str | None:
    """Rename the staged data into place (the server is down); the old AOF is kept aside."""
    if "rdb" in staged:
        access.run(["mv", "-f", "--", staged["rdb"], f"{state.dir}/{state.dbfilename}"])
    if "aof" not in staged or not state.aof_path:
        return None
    aside = f"{state.aof_path}.before-{tag[len(STAGE_PREFIX) :]}"
    exists = access.run(["test", "-e", state.aof_path], check=False).exit_status == 0
    if exists:
        access.run(["mv", "-T", "--", state.aof_path, aside])
    access.run(["mv", "-T", "--", staged["aof"], state.aof_path])
    return aside if exists else None


def _start_after_failure(access: HostAccess, target: Host, *, timeout: float) -> None:
    if target.service_start and not _listening(target):
        with contextlib.suppress(HostError):
            access.run_shell(target.service_start, timeout=max(timeout, 30.0))


def _wait_loaded(host: Host, *, timeout: float, wait: float) -> tuple[int | None, int | None, int]:
    """Wait until the server answers and has loaded its data; (loaded, expired, keys now)."""
    deadline = time.monotonic() + wait
    last = "it did not answer"
    while True:
        try:
            with redis_client(host, timeout=timeout, decode=True) as client:
                persistence = client.info("persistence")
                if not persistence.get("loading"):
                    loaded = persistence.get("rdb_last_load_keys_loaded")
                    expired = persistence.get("rdb_last_load_keys_expired")
                    return loaded, expired, _keys(client.info("keyspace"))
                last = "still loading"
        except HostError as exc:
            last = exc.message
        if time.monotonic() >= deadline:
            raise HostError(
                f"{host.name} was started but has not loaded its data within {wait:g}s: {last}",
                hint="see the server's log",
            )
        time.sleep(POLL_SECONDS * 2)
