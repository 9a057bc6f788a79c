"""Verification of backup data: at capture (fed while it streams) and later (`backup verify`).

A backup is *verified* when every stored file has its recorded size and SHA-256 and its
content proves itself right: the RDB's own CRC64 (checked here, no tool needed), AOF
commands well formed, and redis-check-rdb / redis-check-aof agreeing where installed. It is
*unverifiable* when nothing could prove the content (an RDB trailer of 0 means Redis saved it
with `rdbchecksum no`), and *failed* when anything is wrong.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from redisops.backup import checktool
from redisops.backup.aof import AofChecker, parse_aof_manifest
from redisops.backup.catalogue import (
    FAILED,
    UNVERIFIABLE,
    VERIFIED,
    Backup,
    Verification,
    format_time,
    now_utc,
    record_verification,
)
from redisops.datafile import CorruptData, StoredFile, read_stored
from redisops.rdb.format import (
    CRC_ABSENT,
    CRC_DISABLED,
    CRC_OK,
    RdbChecker,
    RdbFacts,
)


@dataclass
class Findings:
    """What checking found: `checks` passed, `problems` (corruption), `unproven` (could not
    be checked); `facts` of the RDB (or AOF base) and redis-check-rdb's verdict."""

    checks: list[str]
    problems: list[str]
    unproven: list[str]
    facts: RdbFacts | None = None
    tool: checktool.ToolVerdict | None = None

    def verification(self) -> Verification:
        if self.problems:
            status = FAILED
        elif self.unproven:
            status = UNVERIFIABLE
        else:
            status = VERIFIED
        return Verification(
            status=status,
            checked_at=format_time(now_utc()),
            checks=tuple(self.checks),
            problems=tuple(self.problems + self.unproven),
        )


@dataclass(frozen=True)
class VerifyResult:
    """One backup re-checked by `backup verify`; `recorded` is False when the manifest could
    not be updated with the result (read-only catalogue)."""

    backup_id: str
    host: str
    kind: str
    path: str
    status: str
    verified: bool
    checks: tuple[str, ...]
    problems: tuple[str, ...]
    bytes: int
    keys: int | None
    recorded: bool


def new_findings() -> Findings:
    return Findings([], [], [])


def judge_rdb(findings: Findings, label: str, facts: RdbFacts) -> None:
    """Add what an RDB file's header and trailer say."""
    findings.facts = facts
    findings.problems.extend(f"{label}: {problem}" for problem in facts.problems)
    if facts.problems:
        return
    if facts.trailing:  # Redis loads such a file: a warning, not a failure
        findings.checks.append(
            f"{label}: warning: {facts.trailing:,} bytes after the end of the RDB (ignored, "
            "as Redis ignores them)"
        )
    kind = "Valkey RDB format" if facts.flavour == "valkey" else "RDB version"
    if facts.crc == CRC_OK:
        findings.checks.append(f"{label}: {kind} {facts.version}, CRC64 ok")
    elif facts.crc == CRC_DISABLED:
        findings.unproven.append(
            f"{label}: CRC64 trailer is 0 (saved with rdbchecksum no): content cannot be verified"
        )
    elif facts.crc == CRC_ABSENT:
        findings.unproven.append(f"{label}: {kind} {facts.version} has no checksum")


def judge_tool(findings: Findings, verdict: checktool.ToolVerdict | None, tool: str) -> None:
    """Add a Redis checker's verdict; a missing tool is only noted (redisops' checks stand)."""
    if verdict is None:
        findings.checks.append(f"{tool} not installed: skipped")
        return
    tool = verdict.tool
    if verdict.too_old:  # as if not installed: redisops' own checks stand, INFO counts keys
        findings.checks.append(f"{tool}: {verdict.message}")
        return
    if tool in checktool.CHECK_RDB_TOOLS.values():
        findings.tool = verdict
    if verdict.ok:
        findings.checks.append(f"{tool}: {verdict.message}")
    else:
        findings.problems.append(f"{tool}: {verdict.message}")


def rdb_tool_feed() -> checktool.RdbToolFeed:
    """The checker that matches the RDB (redis-check-rdb, valkey-check-rdb) reading a pipe,
    started once the header shows which; its verdict says when none is installed."""
    return checktool.RdbToolFeed()


def check_aof_folder(findings: Findings, folder: Path, files: Sequence[StoredFile]) -> None:
    """The AOF checker that matches the AOF (redis-check-aof, valkey-check-aof) over the AOF of
    `folder`, decompressed into a scratch folder first when stored compressed. Skipped, and
    noted, when that checker is not installed."""
    target = _aof_target(files)
    if target is None:
        return
    if all(f.compression == "none" for f in files):
        _judge_aof(findings, files, target, lambda stored: folder / stored.name)
        return
    scratch = Path(tempfile.mkdtemp(prefix=".aof-check-", suffix=".part", dir=folder))
    try:
        for stored in files:
            with open(scratch / stored.source, "wb") as out:
                read_stored(folder / stored.name, stored.compression, out.write)
        _judge_aof(findings, files, target, lambda stored: scratch / stored.source)
    except (OSError, CorruptData):
        return  # the per-file checks already name what is wrong with that file
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _judge_aof(
    findings: Findings,
    files: Sequence[StoredFile],
    target: StoredFile,
    path_of: Callable[[StoredFile], Path],
) -> None:
    base = next((f for f in files if f.role == "aof-base"), target)
    try:
        with open(path_of(base), "rb") as head:
            name = checktool.aof_tool_for(head.read(8))
    except OSError:
        return  # the per-file checks already name a missing or unreadable file
    tool = checktool.find_tool(name)
    if tool is None:
        judge_tool(findings, None, name)
        return
    judge_tool(findings, checktool.check_aof(tool, str(path_of(target)), tool=name), name)


def _aof_target(files: Sequence[StoredFile]) -> StoredFile | None:
    """What redis-check-aof is pointed at: the manifest (Redis 7), else the single AOF file."""
    for role in ("aof-manifest", "aof-incr", "aof-base"):
        for stored in files:
            if stored.role == role:
                return stored
    return None


def feeds_for(stored: StoredFile) -> tuple[list, Callable[[Findings], None]]:
    """The checkers that suit one file, and how to judge them once it has been fed."""
    label = stored.source
    if stored.role == "rdb" or (stored.role == "aof-base" and label.endswith(".rdb")):
        checker = RdbChecker()
        tool = rdb_tool_feed() if stored.role == "rdb" else None

        def judge_rdb_file(findings: Findings) -> None:
            judge_rdb(findings, label, checker.finish())
            if stored.role == "rdb":
                judge_tool(findings, tool.finish(), checktool.CHECK_RDB)

        return [checker, *([tool] if tool else [])], judge_rdb_file
    if stored.role in ("aof-base", "aof-incr") and stored.source.endswith(".aof"):
        aof = AofChecker()

        def judge_commands(findings: Findings) -> None:
            problem = aof.finish()
            if problem:
                findings.problems.append(f"{label}: {problem}")
                return
            if aof.preamble is not None:  # an RDB first: judged as one, facts kept
                judge_rdb(findings, f"{label} (RDB preamble)", aof.preamble)
                if aof.preamble.crc != CRC_OK:
                    return  # where the commands start is not known: redis-check-aof's part
            findings.checks.append(f"{label}: {aof.commands} commands well formed")

        return [aof], judge_commands
    return [], lambda findings: None


def abort_feeds(feeds: Sequence) -> None:
    for feed in feeds:
        if isinstance(feed, checktool.RdbToolFeed):
            feed.abort()


def verify_backup(backup: Backup) -> VerifyResult:
    """Re-check every file of `backup` and record the verdict in its manifest."""
    folder = Path(backup.path)
    findings = new_findings()
    manifest_text: str | None = None
    present = []
    for stored in backup.files:
        feeds, judge = feeds_for(stored)
        collected: list[bytes] = []
        raw = 0

        def on_raw(data: bytes, feeds=feeds, collected=collected, stored=stored) -> None:
            nonlocal raw
            raw += len(data)
            for feed in feeds:
                feed.feed(data)
            if stored.role == "aof-manifest":
                collected.append(data)

        try:
            size, digest = read_stored(folder / stored.name, stored.compression, on_raw)
        except FileNotFoundError:
            abort_feeds(feeds)
            findings.problems.append(f"{stored.name}: missing")
            continue
        except OSError as exc:
            abort_feeds(feeds)
            findings.problems.append(f"{stored.name}: unreadable ({exc.strerror})")
            continue
        except CorruptData as exc:
            abort_feeds(feeds)
            findings.problems.append(f"{stored.name}: {exc}")
            continue
        mismatch = _mismatch(stored, size, digest)
        if mismatch:
            findings.problems.append(mismatch)
        else:
            findings.checks.append(f"{stored.name}: SHA-256 ok")
        present.append(stored)
        if raw != stored.raw_bytes:
            findings.problems.append(
                f"{stored.name}: {raw:,} bytes of data, the manifest says {stored.raw_bytes:,}"
            )
        judge(findings)
        if stored.role == "aof-manifest":
            manifest_text = b"".join(collected).decode(errors="replace")
    if backup.kind == "aof":
        check_aof_parts(findings, present, manifest_text)
        if not findings.problems:
            check_aof_folder(findings, folder, backup.files)
    verification = findings.verification()
    updated, recorded = record_verification(backup, verification)
    return VerifyResult(
        backup_id=backup.backup_id,
        host=backup.host,
        kind=backup.kind,
        path=backup.path,
        status=verification.status,
        verified=updated.verified,
        checks=verification.checks,
        problems=verification.problems,
        bytes=backup.bytes,
        keys=backup.keys,
        recorded=recorded,
    )


def check_files(backup: Backup) -> tuple[str, ...]:
    """The problems of `backup`'s stored files against its manifest (size and SHA-256, read
    without decompressing): the quick re-check `backup prune` makes of what it keeps."""
    folder = Path(backup.path)
    problems = []
    for stored in backup.files:
        try:
            size, digest = read_stored(folder / stored.name, "none", _discard)
        except FileNotFoundError:
            problems.append(f"{stored.name}: missing")
            continue
        except OSError as exc:
            problems.append(f"{stored.name}: unreadable ({exc.strerror})")
            continue
        mismatch = _mismatch(stored, size, digest)
        if mismatch:
            problems.append(mismatch)
    return tuple(problems)


def failed_verification(problems: Sequence[str]) -> Verification:
    """The verdict on a backup whose files were found damaged."""
    return Verification(FAILED, format_time(now_utc()), problems=tuple(problems))


def _mismatch(stored: StoredFile, size: int, digest: str) -> str | None:
    if size == stored.bytes and digest == stored.sha256:
        return None
    return (
        f"{stored.name}: SHA-256 mismatch ({size:,} bytes, the manifest says "
        f"{stored.bytes:,}): the file was changed or damaged"
    )


def _discard(data: bytes) -> None:
    """read_stored's raw-chunk callback when only the stored bytes' size and digest matter."""


def check_aof_parts(
    findings: Findings, files: Sequence[StoredFile], manifest_text: str | None
) -> None:
    """A Redis 7 AOF backup must hold a readable manifest and every base/incr file it names."""
    if manifest_text is None:
        if not any(f.role == "aof-manifest" for f in files):
            return  # a single-file AOF: nothing to cross-check
        findings.problems.append("AOF manifest could not be read")
        return
    try:
        parts = parse_aof_manifest(manifest_text)
    except ValueError as exc:
        findings.problems.append(f"AOF manifest: {exc}")
        return
    held = {f.source for f in files}
    missing = [p.name for p in parts if p.type in ("b", "i") and p.name not in held]
    if missing:
        findings.problems.append(f"AOF manifest names missing part(s): {', '.join(missing)}")
    else:
        findings.checks.append(f"AOF manifest: {len(parts)} part(s), all present")
