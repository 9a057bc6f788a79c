"""`backup restore`: put a catalogued backup back on a host, refusing what would lose data.

The plan is made first and changes nothing: the backup is re-verified, the target is read
(role, replicas, persistence settings as it runs and as its config file will set them at the
next start, what is on disk) and the inventory's sentinels are asked whether they monitor it.
Execution then stages the data beside the live files while the server still runs (so a failed
upload changes nothing), takes a safety backup, stops the server, renames the staged data into
place, starts it, waits until it has loaded and checks the key count against the manifest.

What is installed follows what the server will load at its next start: its config file (and
any `--appendonly` in service_start), not a setting changed at runtime. With `appendonly yes`
the AOF would win over a restored dump.rdb: an RDB is therefore also installed as the base of
a fresh Redis 7 AOF (manifest naming only that base; before Redis 7, as the AOF file itself,
which then starts with an RDB preamble). The AOF that was there is kept beside it, renamed.

Stop, renames and start are never cut in half: a signal waits until they are done. When the
server does not come up on the restored data, or a signal came before it was started on it,
the previous data is put back and the server started on it again.
"""

from __future__ import annotations

import contextlib
import itertools
import shlex
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from redisops.backup.aof import parse_aof_manifest
from redisops.backup.capture import BackupSettings, Progress, back_up_host
from redisops.backup.catalogue import (
    Backup,
    catalogue_dirs,
    host_folder,
    load_catalogue,
    resolve_backup,
)
from redisops.backup.verify import VerifyResult, verify_backup
from redisops.change import ChangeOutcome, ChangePlan
from redisops.datafile import read_stored
from redisops.errors import HostError, UsageError
from redisops.fleet.connection import redis_client
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import HostAccess, open_host_access
from redisops.fleet.server import server_identity
from redisops.interrupt import HANDLED_SIGNALS, Interrupted
from redisops.rdb.format import rdb_load_problem
from redisops.results import HostResult
from redisops.serverinfo import keyspace, replication_role

POLL_SECONDS = 0.1
STAGE_PREFIX = ".redisops-restore-"
# A started server opens its port before it loads any data: one whose port stays closed this
# long after service_start has exited (or died while loading).
START_GRACE = 10.0
INCLUDE_DEPTH = 8  # nested `include` lines followed in a config file
ASIDE_TRIES = 100


@dataclass(frozen=True)
class TargetState:
    """The target as it is now: what a restore would replace."""

    role: str
    flavour: str  # "redis" | "valkey"
    version: str  # the server's own version (Valkey's, not its compatibility redis_version)
    connected_replicas: int
    keys: int
    used_memory: int
    dir: str
    dbfilename: str
    appendonly: bool  # as it runs now
    appendonly_at_start: bool  # as its config file (and service_start) will set it
    config_file: str  # "" when it was started without one
    start_settings_problem: str | None  # why the start-up settings could not be read
    aof_path: str | None  # the AOF folder (Redis 7) or file it loads at start, if any
    appendfilename: str
    logfile: str
    data_file_bytes: int | None
    monitored_by: tuple[str, ...]  # sentinels of the inventory that monitor it

    @property
    def multipart_aof(self) -> bool:
        return _multipart_aof(self.flavour, self.version)


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
    """A finished restore. `keys_match` is None only when the backup has no key count;
    `problem` says why the key check failed; `set_aside` names the old AOF kept beside the
    new one."""

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
    problem: str | None
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
    replicas_resync: bool = False,
) -> RestorePlan:
    """Verify the backup, read the target, ask the sentinels; change nothing.

    `replicas_resync`: the caller makes the target's replicas take the restored data on
    purpose (a cluster restore), so connected replicas are no reason to refuse."""
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
    if state.start_settings_problem:
        blockers.append(state.start_settings_problem)
    elif backup.kind == "aof":
        if not state.appendonly_at_start:
            blockers.append(
                f"{target.name} runs with appendonly yes set at runtime only: its config file "
                f"{state.config_file or '(none)'} says no, so after the restart it would load "
                f"{state.dbfilename} and ignore a restored AOF (CONFIG REWRITE to keep "
                "appendonly on, or restore an RDB backup)"
                if state.appendonly
                else f"{target.name} has appendonly no: it would ignore a restored AOF "
                "(restore an RDB backup, or enable appendonly first)"
            )
        elif (backup.aof_layout == "multi-part") != state.multipart_aof:
            blockers.append(
                f"the backup's AOF is {backup.aof_layout}, {target.name} "
                f"({state.flavour.capitalize()} {state.version}) uses another layout: restore "
                "an RDB backup instead"
            )
    load_problem = backup.rdb_version and rdb_load_problem(
        state.flavour, state.version, backup.rdb_version
    )
    if load_problem:
        blockers.append(
            f"the backup is RDB version {backup.rdb_version}; {load_problem}, so {target.name} "
            "would not start: restore it onto a server that writes this format or a newer one"
        )
    # Integrity is never a policy: --force does not install what cannot load.
    if verification.status == "failed":
        blockers.append(
            f"the backup does not verify: {verification.problems[0]} (it could not be "
            "loaded; restore another backup)"
        )
    leftover = _leftover(target, state, backup.backup_id, timeout=timeout)
    if leftover:
        blockers.append(
            f"{leftover} is left from an interrupted restore of {backup.backup_id} and may "
            "hold the previous data: look at it, then move it away"
        )
    if state.role == "replica":
        refusals.append(
            f"{target.name} is a replica: it would drop the restored data and resync from its "
            "master (REPLICAOF NO ONE first, or restore its master)"
        )
    if state.connected_replicas and not replicas_resync:
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
    """The target's role, replicas, data settings (now and at its next start) and size, and
    who monitors it."""
    import redis

    with redis_client(target, timeout=timeout, decode=True) as client:
        server = client.info("server")
        replication = client.info("replication")
        persistence = client.info("persistence")
        memory = client.info("memory")
        keyspace = client.info("keyspace")
        config = {}
        for name in ("dir", "dbfilename", "appendfilename", "appenddirname", "logfile"):
            with contextlib.suppress(redis.ResponseError):
                config.update(client.config_get(name))
    identity = server_identity(server)
    multipart = _multipart_aof(identity.flavour, identity.version)
    appendonly = bool(persistence.get("aof_enabled"))
    config_file = str(server.get("config_file") or "")
    at_start, problem = appendonly, None
    if target.has_host_access:
        try:
            at_start = _appendonly_at_start(target, config_file, timeout=timeout)
        except HostError as exc:
            problem = (
                f"cannot read the config file {target.name} starts with, so what it loads at "
                f"its next start is unknown: {exc.message}"
            )
    folder = config.get("dir", target.data_dir or "")
    dbfilename = config.get("dbfilename", "dump.rdb")
    aof_path = None
    if at_start:
        name = config.get("appenddirname") if multipart else config.get("appendfilename")
        aof_path = f"{folder}/{name}"
    return TargetState(
        role=replication_role(replication),
        flavour=identity.flavour,
        version=identity.version,
        connected_replicas=int(replication.get("connected_slaves", 0)),
        keys=_keys(keyspace),
        used_memory=int(memory.get("used_memory", 0)),
        dir=folder,
        dbfilename=dbfilename,
        appendonly=appendonly,
        appendonly_at_start=at_start,
        config_file=config_file,
        start_settings_problem=problem,
        aof_path=aof_path,
        appendfilename=config.get("appendfilename", "appendonly.aof"),
        logfile=config.get("logfile", ""),
        data_file_bytes=_remote_size(target, f"{folder}/{dbfilename}", timeout),
        monitored_by=tuple(_monitors(target, inventory_hosts, timeout=timeout)),
    )


def _multipart_aof(flavour: str, version: str) -> bool:
    """Redis 7+ and every Valkey keep the AOF as a folder of parts with a manifest."""
    return flavour == "valkey" or int(version.split(".")[0]) >= 7


def _appendonly_at_start(target: Host, config_file: str, *, timeout: float) -> bool:
    """`appendonly` as the server will have it after a restart: its config file's last word
    (`include`s followed), then any `--appendonly` in service_start, which Redis applies after
    the file; Redis's default (no) otherwise. A CONFIG SET that was never rewritten into the
    file is lost at the restart, so the runtime value does not count."""
    value = "no"
    if config_file:
        with open_host_access(target, timeout=timeout) as access:
            for name, args in _directives(access, config_file, depth=0):
                if name == "appendonly" and args:
                    value = args[0]
    with contextlib.suppress(ValueError):
        words = shlex.split(target.service_start or "")
        for flag, given in itertools.pairwise(words):
            if flag == "--appendonly":
                value = given
    return value.lower() == "yes"


def _directives(access: HostAccess, path: str, *, depth: int) -> Iterator[tuple[str, list[str]]]:
    """(name, arguments) of each line of a Redis config file, in order, with the lines of its
    `include`s in their place (a relative include is taken from the including file's folder)."""
    if depth > INCLUDE_DEPTH:
        raise HostError(f"{path}: more than {INCLUDE_DEPTH} nested includes")
    text = access.run(["cat", "--", path]).stdout.decode(errors="replace")
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue  # Redis would refuse to start on it; nothing here to learn
        if not words:
            continue
        name, args = words[0].lower(), words[1:]
        if name == "include" and args:
            included = PurePosixPath(path).parent / args[0]
            yield from _directives(access, str(included), depth=depth + 1)
        else:
            yield name, args


def _leftover(target: Host, state: TargetState, backup_id: str, *, timeout: float) -> str | None:
    """The previous data file kept aside by an earlier restore of this backup that was killed
    (SIGKILL, power) before it could put it back or remove it; None when there is none."""
    path = _previous_rdb(state, backup_id)
    if not target.has_host_access:
        return None
    with contextlib.suppress(HostError), open_host_access(target, timeout=timeout) as access:
        if access.run(["test", "-e", path], check=False).exit_status == 0:
            return path
    return None


def _keys(info: dict) -> int:
    return sum(db.get("keys", 0) for db in keyspace(info).values())


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
    runtime_only = state.appendonly and not state.appendonly_at_start
    if backup.kind == "rdb":
        steps.append(f"rename the restored RDB to {state.dir}/{state.dbfilename}")
        if state.appendonly_at_start:
            why = (
                f"appendonly is on at start ({state.config_file} says yes, though it is off "
                "at runtime)"
                if not state.appendonly
                else "appendonly is on"
            )
            steps.append(
                f"{why}, so the AOF would win: install the RDB as the base of a fresh AOF at "
                f"{state.aof_path}, keeping the old one beside it"
            )
        elif runtime_only:
            steps.append(
                f"appendonly yes is set at runtime only ({state.config_file or 'no config file'}"
                f" says no): {target.name} will start with it off and load "
                f"{state.dbfilename}; the AOF on disk is left as it is"
            )
    else:
        steps.append(f"swap the backup's AOF in at {state.aof_path}, keeping the old one beside it")
    steps.append(f"start {target.name}: {target.service_start}")
    steps.append(
        f"wait until it has loaded the data (at most {wait:g}s); if it does not come up, put "
        "the previous data back and start it again"
    )
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

    Raises HostError when a step fails: before the stop nothing has changed; after it, the
    previous data is put back and the server started on it again, and the message says so.
    A signal raises Interrupted once the server runs again, on the previous data or on the
    backup (its `done` says which); nothing is left half-placed.
    """
    started = time.monotonic()
    steps: list[RestoreStep] = []

    def step(name: str, detail: str, since: float) -> None:
        steps.append(RestoreStep(name, round(time.monotonic() - since, 3), detail))

    state = plan.target
    safety_id = None
    with open_host_access(target, timeout=timeout) as access:
        layout = _layout(access, state, plan.backup_id)
        try:
            if plan.safety_backup:
                clock = time.monotonic()
                settings = BackupSettings(kind="rdb", timeout=timeout, reason="safety")
                safety_id = back_up_host(target, dest, settings, progress=progress).backup_id
                step("safety backup", safety_id, clock)
            clock = time.monotonic()
            with _raw_files(backup, dest) as raw:
                _stage(access, backup, raw, state, layout)
            step("upload", f"{len(layout.staged)} file(s) staged in {state.dir}", clock)
        except Interrupted as exc:
            done = f"nothing was changed on {target.name}"
            if safety_id:
                done += f" (safety backup {safety_id} taken)"
            raise Interrupted(exc.signum, done) from None
        set_aside, pending = _swap(access, target, layout, step, timeout=timeout, wait=wait)
        clock = time.monotonic()
        loaded, expired, now = _load_or_roll_back(
            access, plan, target, layout, pending=pending, timeout=timeout, wait=wait
        )
        step("load", f"{now:,} keys", clock)
        _discard(access, layout.previous_rdb)
    match, problem = key_check(backup, target.name, loaded, expired, now)
    return RestoreResult(
        backup_id=plan.backup_id,
        host=target.name,
        address=target.address,
        safety_backup_id=safety_id,
        steps=tuple(steps),
        keys_expected=backup.keys,
        keys_loaded=loaded,
        keys_expired_on_load=expired,
        keys_now=now,
        keys_match=match,
        problem=problem,
        set_aside=set_aside,
        duration_seconds=round(time.monotonic() - started, 3),
    )


def key_check(
    backup: Backup, name: str, loaded: int | None, expired: int | None, now: int
) -> tuple[bool | None, str | None]:
    """(match, why not). An exact count (redis-check-rdb's) must equal what the server loaded
    plus what it dropped as expired on load; any count, exact or from INFO, must be at least
    the keys now held, and at most that plus the backup's keys with a TTL (they may have
    expired since). None when the backup has no count."""
    expected = backup.keys
    if expected is None:
        return None, None
    exact = backup.keys_source == "redis-check-rdb"
    if exact and loaded is not None and loaded + (expired or 0) != expected:
        return False, (
            f"restored, but the key count does not match: {name} loaded {loaded:,} keys "
            f"(+{expired or 0:,} expired) where the backup holds {expected:,}"
        )
    with_ttl = backup.expires or 0
    if not expected - with_ttl <= now <= expected:
        source = "" if exact else " (counted by INFO when it was taken)"
        ttl = f", {with_ttl:,} of them with a TTL" if with_ttl and now < expected else ""
        return False, (
            f"restored, but the key count does not match: {name} holds {now:,} keys where "
            f"the backup holds {expected:,}{ttl}{source}"
        )
    return True, None


@dataclass
class _Layout:
    """Where the data goes on the target and where what it replaces is kept, so a failed or
    interrupted restore puts the previous data back from what is on disk, whatever step it
    stopped at. `staged` fills as the upload goes ("rdb", "aof": staged path)."""

    staged: dict[str, str]
    tag: str
    rdb: str
    previous_rdb: str  # the data file replaced, hidden beside it until the restore is done
    aof: str | None
    aof_aside: str | None  # where the AOF replaced is kept (for good)


def _previous_rdb(state: TargetState, backup_id: str) -> str:
    return f"{state.dir}/{STAGE_PREFIX}{backup_id}.previous.rdb"


def _layout(access: HostAccess, state: TargetState, backup_id: str) -> _Layout:
    aside = None
    if state.aof_path:
        # A name no earlier restore of the same backup has taken.
        candidates = [f"{state.aof_path}.before-{backup_id}"] + [
            f"{state.aof_path}.before-{backup_id}.{n}" for n in range(2, ASIDE_TRIES)
        ]
        aside = next((c for c in candidates if not _exists(access, c)), None)
        if aside is None:
            raise HostError(f"{ASIDE_TRIES} earlier copies of {state.aof_path} are kept aside")
    return _Layout(
        staged={},
        tag=f"{STAGE_PREFIX}{backup_id}",
        rdb=f"{state.dir}/{state.dbfilename}",
        previous_rdb=_previous_rdb(state, backup_id),
        aof=state.aof_path,
        aof_aside=aside,
    )


def _exists(access: HostAccess, path: str) -> bool:
    return access.run(["test", "-e", path], check=False).exit_status == 0


def _discard(access: HostAccess, path: str) -> None:
    access.run(["rm", "-rf", "--", path])


@contextlib.contextmanager
def _held_signals() -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP wait until the block is done: a stop, a rename or a start cut
    in half would leave the server down, or on half the data. The block's list tells which
    came, and the caller decides (the signals are not handled again). Main thread only, where
    Python handles signals."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = {signum: signal.getsignal(signum) for signum in HANDLED_SIGNALS}
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, lambda received, _frame: held.append(received))
    try:
        yield held
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _swap(
    access: HostAccess,
    target: Host,
    layout: _Layout,
    step: Callable[[str, str, float], None],
    *,
    timeout: float,
    wait: float,
) -> tuple[str | None, int | None]:
    """Stop, rename into place, start, with signals held. Returns the AOF kept aside and a
    signal that came during the renames or the start (the caller handles it once the server
    runs). A signal during the stop starts the server again on its own data (Interrupted); a
    failure after the stop puts the previous data back (HostError)."""
    start = target.service_start or ""
    try:
        with _held_signals() as held:
            clock = time.monotonic()
            try:
                stop_server(access, target, timeout=timeout, wait=wait)
            except BaseException:
                _cleanup_staged(access, layout.staged)
                _start_after_failure(access, target, timeout=timeout)
                raise
            step("stop", target.service_stop or "SHUTDOWN NOSAVE", clock)
            if held:
                _cleanup_staged(access, layout.staged)
                access.run_shell(start, timeout=max(timeout, 30.0))
                raise Interrupted(
                    held[0],
                    f"nothing was replaced: {target.name} was started again on its own data",
                )
            try:
                clock = time.monotonic()
                set_aside = _place(access, layout)
                step(
                    "place", f"data renamed into place in {PurePosixPath(layout.rdb).parent}", clock
                )
                clock = time.monotonic()
                access.run_shell(start, timeout=max(timeout, 30.0))
                step("start", start, clock)
            except HostError as exc:
                back = _roll_back(access, target, layout, timeout=timeout, wait=wait)
                raise HostError(f"{exc.message}: {back}", hint=exc.hint) from None
    except Interrupted as exc:
        if exc.done is None:  # came just before the signals were held: nothing was stopped
            _cleanup_staged(access, layout.staged)
            raise Interrupted(exc.signum, f"nothing was changed on {target.name}") from None
        raise
    return set_aside, held[0] if held else None


def _load_or_roll_back(
    access: HostAccess,
    plan: RestorePlan,
    target: Host,
    layout: _Layout,
    *,
    pending: int | None,
    timeout: float,
    wait: float,
) -> tuple[int | None, int | None, int]:
    """Wait until the server has loaded the restored data: (loaded, expired, keys now).

    When it does not come up, the previous data goes back (HostError). When a signal comes
    first (or came during the start: `pending`), the restore stands if the server runs, else
    the previous data goes back; Interrupted either way.
    """
    try:
        if pending is not None:
            raise Interrupted(pending)
        return _wait_loaded(target, timeout=timeout, wait=wait)
    except _NotUp as exc:
        with _held_signals() as held:
            back = _roll_back(access, target, layout, timeout=timeout, wait=wait)
        message = f"{target.name} did not come up on the restored data ({exc.message}): {back}"
        if held:
            raise Interrupted(held[0], message) from None
        raise HostError(message, hint=_log_hint(plan.target)) from None
    except HostError as exc:  # still loading the restored data when --wait ran out
        kept = _exists(access, layout.previous_rdb)
        where = f"; the previous data file is kept at {layout.previous_rdb}" if kept else ""
        raise HostError(f"{exc.message}{where}", hint=_log_hint(plan.target)) from None
    except Interrupted as exc:
        with _held_signals():
            if _comes_up(target, min(START_GRACE, wait)):
                _discard(access, layout.previous_rdb)  # the restore stands
                done = (
                    f"{plan.backup_id} is in place and {target.name} was started on it; the "
                    "key check was not done"
                )
            else:
                back = _roll_back(access, target, layout, timeout=timeout, wait=wait, load=False)
                done = f"{target.name} did not come up on {plan.backup_id}: {back}"
        raise Interrupted(exc.signum, done) from None


def _log_hint(state: TargetState) -> str:
    return f"see the server's log ({state.logfile})" if state.logfile else "see the server's log"


def _roll_back(
    access: HostAccess,
    target: Host,
    layout: _Layout,
    *,
    timeout: float,
    wait: float,
    load: bool = True,
) -> str:
    """Stop the server if it runs, put the previous data back, start it on that; wait until
    it has loaded (`load`) or only until it answers. Returns how it went, for the message."""
    try:
        if _listening(target):
            stop_server(access, target, timeout=timeout, wait=wait)
        _undo(access, layout)
        access.run_shell(target.service_start or "", timeout=max(timeout, 30.0))
        if not load:
            if not _comes_up(target, min(START_GRACE, wait)):
                raise _NotUp(f"its port stayed closed for {min(START_GRACE, wait):g}s")
            return f"the previous data was put back and {target.name} was started again on it"
        _, _, keys = _wait_loaded(target, timeout=timeout, wait=wait)
    except HostError as exc:
        return (
            f"putting the previous data back failed too ({exc.message}); it is in "
            f"{layout.previous_rdb}" + (f" and {layout.aof_aside}" if layout.aof_aside else "")
        )
    return (
        f"the previous data was put back and {target.name} was started again on it ({keys:,} keys)"
    )


def _undo(access: HostAccess, layout: _Layout) -> None:
    """Put the previous data back in place of the restored data (the server is down), judging
    by what is on disk: `_place` may have stopped between any two renames."""
    if "rdb" in layout.staged:
        if _exists(access, layout.previous_rdb):
            access.run(["mv", "-f", "-T", "--", layout.previous_rdb, layout.rdb])
        elif not _exists(access, layout.staged["rdb"]):  # placed, and there was none before
            access.run(["rm", "-f", "--", layout.rdb])
    if "aof" in layout.staged and layout.aof and layout.aof_aside:
        if _exists(access, layout.aof_aside):
            _discard(access, layout.aof)
            access.run(["mv", "-T", "--", layout.aof_aside, layout.aof])
        elif not _exists(access, layout.staged["aof"]):
            _discard(access, layout.aof)
    _cleanup_staged(access, layout.staged)


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
    access: HostAccess, backup: Backup, raw: dict[str, Path], state: TargetState, layout: _Layout
) -> None:
    """Upload what will replace the live data under hidden names in the target's dir.

    Fills `layout.staged` {what: staged path}: "rdb" (the RDB to become dbfilename) and/or
    "aof" (the AOF folder, or file before Redis 7), each named before anything is created, so
    a failure midway removes all of it. Owner and group are set as the dir's, so the server,
    running as another user, can read them.
    """
    staged, tag = layout.staged, layout.tag
    try:
        if backup.kind == "rdb":
            rdb = next(iter(raw.values()))
            _put(access, rdb, staged, "rdb", f"{state.dir}/{tag}.rdb")
            if state.appendonly_at_start and state.multipart_aof:
                name = state.appendfilename
                base = f"{name}.1.base.rdb"
                manifest = f"file {base} seq 1 type b\n".encode()
                _stage_aof_dir(access, state, layout, {base: rdb}, name, manifest)
            elif state.appendonly_at_start:
                _put(access, rdb, staged, "aof", f"{state.dir}/{tag}.aof")
        elif state.multipart_aof:
            manifest_source = next(f.source for f in backup.files if f.role == "aof-manifest")
            manifest = raw[manifest_source].read_bytes()
            names = {p.name for p in parse_aof_manifest(manifest.decode())}
            missing = sorted(names - raw.keys())
            if missing:
                raise HostError(
                    f"the backup's AOF manifest names {', '.join(missing)}, which the backup "
                    "does not hold: it could not be loaded"
                )
            files = {name: path for name, path in raw.items() if name in names}
            _stage_aof_dir(access, state, layout, files, state.appendfilename, manifest)
        else:
            _put(access, next(iter(raw.values())), staged, "aof", f"{state.dir}/{tag}.aof")
        for path in staged.values():
            access.run(["chown", "-R", f"--reference={state.dir}", path])
    except BaseException:
        _cleanup_staged(access, staged)
        raise


def _put(access: HostAccess, local: Path, staged: dict[str, str], what: str, path: str) -> None:
    staged[what] = path
    access.put(local, path)


def _stage_aof_dir(
    access: HostAccess,
    state: TargetState,
    layout: _Layout,
    files: dict[str, Path],
    filename: str,
    manifest: bytes,
) -> None:
    folder = layout.staged["aof"] = f"{state.dir}/{layout.tag}.aofdir"
    _discard(access, folder)  # a copy left by a restore that was killed
    access.run(["mkdir", "-m", "700", folder])
    for name, path in files.items():
        access.put(path, f"{folder}/{name}")
    with tempfile.NamedTemporaryFile(prefix=".manifest-", suffix=".part") as handle:
        handle.write(manifest)
        handle.flush()
        access.put(handle.name, f"{folder}/{filename}.manifest")


def _cleanup_staged(access: HostAccess, staged: dict[str, str]) -> None:
    for path in staged.values():
        with contextlib.suppress(HostError):
            access.run(["rm", "-rf", "--", path], check=False)


def stop_server(access: HostAccess, target: Host, *, timeout: float, wait: float) -> None:
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


def _place(access: HostAccess, layout: _Layout) -> str | None:
    """Rename the staged data into place (the server is down). The data file replaced is kept
    hidden until the restore is done; the AOF replaced is kept aside for good (returned)."""
    if "rdb" in layout.staged:
        if _exists(access, layout.rdb):
            access.run(["mv", "-T", "--", layout.rdb, layout.previous_rdb])
        access.run(["mv", "-T", "--", layout.staged["rdb"], layout.rdb])
    if "aof" not in layout.staged or not layout.aof or not layout.aof_aside:
        return None
    kept = _exists(access, layout.aof)
    if kept:
        access.run(["mv", "-T", "--", layout.aof, layout.aof_aside])
    access.run(["mv", "-T", "--", layout.staged["aof"], layout.aof])
    return layout.aof_aside if kept else None


def _start_after_failure(access: HostAccess, target: Host, *, timeout: float) -> None:
    if target.service_start and not _listening(target):
        with contextlib.suppress(HostError):
            access.run_shell(target.service_start, timeout=max(timeout, 30.0))


class _NotUp(HostError):
    """The server was started but does not run: it exited, or never opened its port."""


def _comes_up(host: Host, seconds: float) -> bool:
    """Whether the server's port opens within `seconds` (at once when it is open)."""
    deadline = time.monotonic() + seconds
    while not _listening(host):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _wait_loaded(host: Host, *, timeout: float, wait: float) -> tuple[int | None, int | None, int]:
    """Wait until the server answers and has loaded its data; (loaded, expired, keys now).

    _NotUp when its port stays closed for START_GRACE seconds (it exited, say on data it
    cannot load); HostError when it is still loading after `wait` seconds.
    """
    deadline = time.monotonic() + wait
    grace = min(START_GRACE, wait)
    down_since: float | None = time.monotonic()
    last = "it did not answer"
    while True:
        try:
            with redis_client(host, timeout=timeout, decode=True) as client:
                persistence = client.info("persistence")
                if not persistence.get("loading"):
                    loaded = persistence.get("rdb_last_load_keys_loaded")
                    expired = persistence.get("rdb_last_load_keys_expired")
                    return loaded, expired, _keys(client.info("keyspace"))
            last, down_since = "still loading", None
        except HostError as exc:
            last = exc.message
            if _listening(host):
                down_since = None
            elif down_since is None:
                down_since = time.monotonic()
        if down_since is not None and time.monotonic() - down_since >= grace:
            raise _NotUp(f"its port stayed closed for {grace:g}s after the start")
        if time.monotonic() >= deadline:
            raise HostError(
                f"{host.name} was started but has not loaded its data within {wait:g}s: {last}",
                hint="see the server's log",
            )
        time.sleep(POLL_SECONDS * 2)


def restore_target(selection: Sequence[Host], *, limited: bool, command: str = "restore") -> Host:
    """The one Redis host -l named: UsageError when -l was not given (a restore never picks
    its target) or did not select exactly one Redis host."""
    if not limited:
        raise UsageError(
            f"{command} needs its target named with -l HOST, even in a one-host inventory"
        )
    targets = [host for host in selection if not host.is_sentinel]
    if len(targets) != 1:
        raise UsageError(f"{command} needs exactly one Redis host, -l selected {len(targets)}")
    return targets[0]


def restore_source(
    selection: Sequence[Host],
    *,
    limited: bool,
    dest: Path | None,
    backup_id: str,
    from_host: str | None,
) -> tuple[Host, Path, Backup]:
    """The one Redis host -l named, its catalogue folder, and the backup `backup_id` names
    there (`latest`, `latest-safety`, or an id). UsageError when -l was not given (a restore
    never picks its target), or did not select exactly one Redis host."""
    target = restore_target(selection, limited=limited)
    folder = catalogue_dirs(dest, [target])[target.name]
    backup = resolve_backup(load_catalogue([folder]), backup_id, from_host or target.name)
    return target, folder, backup


@contextlib.contextmanager
def restore_lock(folder: Path, target: Host, backup: Backup) -> Iterator[None]:
    """Hold the catalogue locks of the target and of the backup's host from planning to the
    end of the restore: no backup run or prune may change either meanwhile."""
    from redisops.backup.lock import host_locks

    with host_locks(
        sorted({(folder, target.name), (folder, backup.host)}), purpose="backup restore"
    ):
        yield


def restore_change(plan: RestorePlan, target: Host) -> ChangePlan[RestorePlan]:
    """`plan` as the change engine's plan: one row, its blockers and its refusals (--force
    lifts those), each reason on its own line."""
    if plan.blockers:
        refused = f"cannot restore onto {target.name}: {plan.blockers[0]}"
    else:
        refused = f"restore onto {target.name} refused; nothing was changed"
    return ChangePlan(
        command="backup restore",
        rows=[HostResult(target.name, target.address, True, None, plan)],
        question=f"Replace the data of {target.name} with {plan.backup_id}?",
        pending=1,
        summary={"backup_id": plan.backup_id},
        blockers=plan.blockers,
        refusals=plan.refusals,
        refused=refused,
    )


def apply_restore(
    plan: RestorePlan,
    backup: Backup,
    target: Host,
    dest: Path,
    *,
    timeout: float,
    wait: float,
    progress: Progress | None = None,
) -> ChangeOutcome[RestoreResult]:
    """execute_restore as the change engine's outcome: a failed step or a key count that
    does not match is a failed row and an error line."""
    try:
        result = execute_restore(
            plan, backup, target, dest, timeout=timeout, wait=wait, progress=progress
        )
    except HostError as exc:
        row = HostResult(target.name, target.address, False, exc.message, None)
        return ChangeOutcome([row], errors=[HostError(f"{target.name}: {exc.message}", exc.hint)])
    row = HostResult(target.name, target.address, not result.problem, result.problem, result)
    errors = [f"{target.name}: {result.problem}"] if result.problem else []
    return ChangeOutcome([row], errors=errors)
