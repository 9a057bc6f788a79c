"""The backup catalogue: `DEST/<host>/<backup id>/` folders, each with its data files and
`manifest.json`.

A backup is in the catalogue only once its folder has its final name: runs write into
`DEST/<host>/.<id>.part/` and rename it when complete and verified, so anything starting with
a dot is unfinished (or being deleted) and is never listed. Folders are 0700, files 0600,
whatever the umask.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from redisops.datafile import StoredFile
from redisops.errors import UsageError
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import fsync_dir
from redisops.rdb.source import RdbInput, rdb_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
PARTIAL_SUFFIX = ".part"

VERIFIED = "verified"
UNVERIFIABLE = "unverifiable"
FAILED = "failed"

# Why a backup was taken. A safety backup is a restore's copy of the data it replaced: often
# an empty or damaged state, so `latest` and the retention rules leave it out.
MANUAL = "manual"
SCHEDULED = "scheduled"
SAFETY = "safety"
LATEST = "latest"
LATEST_SAFETY = "latest-safety"


@dataclass(frozen=True)
class Verification:
    """The last verification: `status` is verified, unverifiable (nothing could prove the data
    right, e.g. RDB saved with rdbchecksum no) or failed; `checks` say what was found right,
    `problems` what was wrong or could not be checked."""

    status: str
    checked_at: str
    checks: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backup:
    """One catalogued backup: its manifest, and `path`, the folder it was found in.

    `bytes` and `sha256` describe the stored data (for AOF, `sha256` is that of the
    sha256sum-style listing of its files); `keys`/`expires` come from redis-check-rdb
    (`keys_source` "redis-check-rdb", exact) or from INFO keyspace at capture ("info").
    """

    backup_id: str
    host: str
    address: str
    kind: str  # rdb | aof
    via: str  # replication | file
    reason: str  # manual | scheduled | safety
    role: str
    redis_version: str | None
    run_id: str | None
    replid: str | None
    repl_offset: int | None
    started_at: str
    finished_at: str
    duration_seconds: float
    bytes: int
    raw_bytes: int
    sha256: str
    compression: str
    files: tuple[StoredFile, ...]
    rdb_version: int | None
    keys: int | None
    expires: int | None
    keys_source: str | None
    aof_layout: str | None  # multi-part | single-file, for AOF backups
    verification: Verification
    verified: bool
    redisops_version: str
    path: str = ""

    @property
    def finished(self) -> datetime:
        return parse_time(self.finished_at)

    @property
    def good(self) -> bool:
        """Restorable as far as redisops can tell: verified, or unverifiable (not failed)."""
        return self.verification.status != FAILED

    @property
    def safety(self) -> bool:
        """Taken by a restore of what it replaced: never `latest`, never in a retention slot."""
        return self.reason == SAFETY


@dataclass(frozen=True)
class Catalogue:
    """Every backup found under some catalogue folders, oldest first, and what was unreadable."""

    backups: tuple[Backup, ...]
    problems: tuple[str, ...] = ()

    def of_host(self, host: str) -> list[Backup]:
        return [b for b in self.backups if b.host == host]


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with an explicit offset (fromisoformat reads it on Python 3.10)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def catalogue_dirs(dest: Path | None, hosts: Sequence[Host]) -> dict[str, Path]:
    """Each host's catalogue folder: `--dest`, else its inventory `backup_dir`.

    Raises UsageError naming the hosts that have neither.
    """
    if dest is not None:
        return {host.name: dest.expanduser() for host in hosts}
    missing = [host.name for host in hosts if not host.backup_dir]
    if missing:
        raise UsageError(
            f"no backup catalogue for {', '.join(missing)}",
            hint="pass --dest DIR, or set backup_dir in the inventory",
        )
    return {host.name: Path(host.backup_dir).expanduser() for host in hosts if host.backup_dir}


def host_folder(dest: Path, host: str) -> Path:
    """DEST/<host>, created 0700 (with DEST) if missing."""
    private_dir(dest)
    return private_dir(dest / host)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != 0o700:
        path.chmod(0o700)  # mkdir's mode is filtered by the umask
    return path


def new_backup_id(host_dir: Path, host: str, started: datetime) -> str:
    """`<host>-<UTC time>`, with `-2`, `-3`... when that name is taken (same second)."""
    base = f"{host}-{started.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"
    candidate, number = base, 1
    while (host_dir / candidate).exists() or partial_dir(host_dir, candidate).exists():
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def partial_dir(host_dir: Path, backup_id: str) -> Path:
    return host_dir / f".{backup_id}{PARTIAL_SUFFIX}"


def clean_partials(host_dir: Path) -> list[str]:
    """Remove what runs cut short left behind (the caller holds the host's lock)."""
    removed = []
    if not host_dir.is_dir():
        return removed
    for entry in host_dir.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def publish(partial: Path, backup: Backup) -> Backup:
    """Write the manifest into `partial`, then rename it to its final name: now it counts."""
    write_manifest(partial, backup)
    final = partial.parent / backup.backup_id
    os.rename(partial, final)
    fsync_dir(partial.parent)
    return replace(backup, path=str(final))


def write_manifest(folder: Path, backup: Backup) -> None:
    """manifest.json in `folder`, replaced atomically (temporary name, fsync, rename), 0600."""
    document = {"format": MANIFEST_FORMAT, **asdict(backup)}
    document.pop("path")
    data = (json.dumps(document, indent=2) + "\n").encode()
    temporary = folder / f".{MANIFEST}{PARTIAL_SUFFIX}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, folder / MANIFEST)
    fsync_dir(folder)


def read_backup(folder: Path) -> Backup:
    """The backup in `folder`; ValueError when its manifest is missing or not one of ours."""
    try:
        document = json.loads((folder / MANIFEST).read_text())
    except OSError as exc:
        raise ValueError(f"{folder}: no readable {MANIFEST} ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{folder}: {MANIFEST} is not valid JSON ({exc.msg})") from None
    if not isinstance(document, dict) or document.pop("format", None) != MANIFEST_FORMAT:
        raise ValueError(f"{folder}: {MANIFEST} is not a redisops manifest (format 1)")
    try:
        files = tuple(StoredFile(**item) for item in document.pop("files"))
        verification = document.pop("verification")
        verification = Verification(
            status=verification["status"],
            checked_at=verification["checked_at"],
            checks=tuple(verification.get("checks", ())),
            problems=tuple(verification.get("problems", ())),
        )
        return Backup(**document, files=files, verification=verification, path=str(folder))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{folder}: {MANIFEST} lacks or misnames a field ({exc})") from None


def load_catalogue(dests: Iterable[Path], hosts: Iterable[str] | None = None) -> Catalogue:
    """Every finished backup under `dests` (of `hosts` only, when given), oldest first."""
    wanted = set(hosts) if hosts is not None else None
    backups: list[Backup] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for dest in dests:
        dest = dest.expanduser()
        if dest.resolve() in seen or not dest.is_dir():
            continue
        seen.add(dest.resolve())
        for host_dir in sorted(dest.iterdir()):
            if host_dir.name.startswith(".") or not host_dir.is_dir():
                continue
            if wanted is not None and host_dir.name not in wanted:
                continue
            for folder in sorted(host_dir.iterdir()):
                if folder.name.startswith(".") or not folder.is_dir():
                    continue
                try:
                    backups.append(read_backup(folder))
                except ValueError as exc:
                    problems.append(str(exc))
    backups.sort(key=lambda b: (b.finished_at, b.backup_id))
    return Catalogue(tuple(backups), tuple(problems))


def find_backup(catalogue: Catalogue, backup_id: str) -> Backup:
    """The backup called `backup_id`; UsageError when the catalogue has none."""
    for backup in catalogue.backups:
        if backup.backup_id == backup_id:
            return backup
    raise UsageError(
        f"no backup {backup_id!r} in the catalogue",
        hint="see `redisops backup list` for ids",
    )


def locate_rdb(target: str, dests: Sequence[Path]) -> RdbInput:
    """`target` as a file path, else as a backup id in the catalogues under `dests`.

    Raises UsageError when it is neither, or when the backup holds no RDB file.
    """
    path = Path(target).expanduser()
    if path.is_file():
        return rdb_file(path)
    if not dests:
        raise UsageError(
            f"{target}: no such file, and no backup catalogue to look the id up in",
            hint="pass a file, or --dest DIR, or set backup_dir in the inventory",
        )
    backup = find_backup(load_catalogue(dests), target)
    for stored in backup.files:
        if stored.role == "rdb" or (stored.role == "aof-base" and stored.source.endswith(".rdb")):
            return RdbInput(
                backup.host,
                str(Path(backup.path) / stored.name),
                Path(backup.path) / stored.name,
                stored.compression,
                stored.raw_bytes,
                backup.role,
                backup.backup_id,
            )
    raise UsageError(
        f"backup {target} holds no RDB file (an AOF backup without an RDB preamble)",
        hint="`memory rdb` reads RDB snapshots; take one with `backup run --kind rdb`",
    )


def newest(
    backups: Iterable[Backup], *, verified_only: bool = False, safety: bool = False
) -> Backup | None:
    """The newest backup; among safety backups only when `safety`, else among the others."""
    chosen = [b for b in backups if (b.verified or not verified_only) and b.safety == safety]
    return max(chosen, key=lambda b: (b.finished_at, b.backup_id), default=None)


def resolve_backup(catalogue: Catalogue, backup_id: str, host: str) -> Backup:
    """`latest` (the newest verified backup of `host` that is not a safety backup),
    `latest-safety` (its newest verified safety backup), else the backup of that id.

    Raises UsageError when there is none.
    """
    if backup_id not in (LATEST, LATEST_SAFETY):
        return find_backup(catalogue, backup_id)
    safety = backup_id == LATEST_SAFETY
    chosen = newest(catalogue.of_host(host), verified_only=True, safety=safety)
    if chosen is None:
        what = "safety backup" if safety else "backup (safety backups left out)"
        raise UsageError(
            f"no verified {what} of {host} in the catalogue",
            hint="see `redisops backup list`; a safety backup is chosen by its id or "
            "`latest-safety`",
        )
    return chosen


def record_verification(backup: Backup, verification: Verification) -> tuple[Backup, bool]:
    """`backup` with this verdict, written to its manifest; False when it could not be
    written (read-only catalogue): the verdict still holds for this run."""
    updated = replace(backup, verification=verification, verified=verification.status == VERIFIED)
    try:
        write_manifest(Path(backup.path), updated)
    except OSError:
        return updated, False
    return updated, True


def remove_backup(backup: Backup) -> None:
    """Delete a backup folder: renamed to a hidden partial name first, so a crash midway
    leaves nothing that looks like a backup (the next run clears it)."""
    folder = Path(backup.path)
    doomed = partial_dir(folder.parent, f"{backup.backup_id}.deleting")
    os.rename(folder, doomed)
    fsync_dir(folder.parent)
    shutil.rmtree(doomed)
