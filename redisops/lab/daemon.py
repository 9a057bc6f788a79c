"""Lab processes as the operating system sees them: free ports, pidfiles, start, stop.

Linux only: ownership of a pid is checked through /proc.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from redisops.errors import LabError
from redisops.fleet.server import is_server_process
from redisops.lab.layout import HOST, Member

POLL_SECONDS = 0.05


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something listens on (or holds) host:port, so Redis could not bind it.

    SO_REUSEADDR as Redis itself sets it: ports left in TIME_WAIT by a stopped lab count as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


CLUSTER_BUS_OFFSET = 10000


def check_ports_free(members: list[Member], *, cluster_bus: bool = False) -> None:
    """Raise LabError naming the first port of `members` that is taken (with `cluster_bus`,
    also each node's cluster bus port, its port + 10000)."""
    for member in members:
        ports = [(member.port, member.name)]
        if cluster_bus:
            ports.append((member.port + CLUSTER_BUS_OFFSET, f"the cluster bus of {member.name}"))
        for port, user in ports:
            if port_in_use(port):
                raise LabError(
                    f"port {port} is already in use (needed by {user})",
                    hint="choose another --base-port, or stop what listens there",
                )


def log_size(member: Member) -> int:
    """Where the member's log ends now, so a later look reads only what a new start wrote."""
    try:
        return member.logfile.stat().st_size
    except OSError:
        return 0


def startup_failure(member: Member, log_offset: int) -> str | None:
    """The line in which Redis gave up starting, if it logged one after `log_offset`.

    Some failures (e.g. "Failed listening on port …, aborting.") happen after daemonizing and
    before the pidfile is written, so only the log tells.
    """
    try:
        with member.logfile.open("rb") as handle:
            handle.seek(log_offset)
            text = handle.read(1 << 20).decode(errors="replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if "aborting" in line.lower() or "fatal" in line.lower():
            # Drop Redis's "pid:role date time level" prefix.
            return line.split(" # ", 1)[-1].split(" * ", 1)[-1].strip()
    return None


def start(member: Member, argv: list[str], *, timeout: float, redact: str) -> None:
    """Run `argv`, which starts `member` and daemonizes; returns once the launcher has exited.

    The umask keeps every file Redis writes (including Sentinel's own config rewrites, which
    reset the mode to 0644 & ~umask) private. `redact` is removed from any message. The caller
    has made sure the member is not running: a pidfile left by a killed process is removed, so
    it cannot pass for the new process.
    """
    member.pidfile.unlink(missing_ok=True)
    try:
        done = subprocess.run(
            argv,
            cwd=member.folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=max(timeout, 0.5),
            umask=0o077,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(
            f"{member.name} did not daemonize within {timeout:.0f}s",
            hint=f"see its log: {member.logfile}",
        ) from exc
    except OSError as exc:
        raise LabError(f"could not run {argv[0]}: {exc.strerror}") from exc
    if done.returncode != 0:
        output = done.stdout.decode(errors="replace").replace(redact, "***")
        last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
        raise LabError(
            f"{member.name} failed to start (exit {done.returncode}): {last}"[:300],
            hint=f"see its log: {member.logfile}",
        )


def binary_version(binary: str) -> tuple[int, ...]:
    """The version a server binary reports (`Redis server v=7.0.15 …`, `Valkey server v=9.1.2`)."""
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, timeout=10, check=False, text=True
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"could not run {binary} --version: {exc}") from None
    found = re.search(r" v=(\d+(?:\.\d+)*)", done.stdout)
    if done.returncode != 0 or found is None:
        raise LabError(
            f"{binary} is not a Redis or Valkey server (--version: {done.stdout[:80]!r})"
        )
    return tuple(int(part) for part in found.group(1).split("."))


def read_pid(member: Member) -> int | None:
    """The pid in the member's pidfile, or None when there is none."""
    try:
        text = member.pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie (PID 1 here may never reap our daemons)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself hold spaces or ")".
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X", "")


def owned_pid(member: Member) -> int | None:
    """The live pid of `member`, only if it really is this Redis process (not a reused pid)."""
    pid = read_pid(member)
    if pid is None or not alive(pid):
        return None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # Redis rewrites its title to e.g. "redis-server 127.0.0.1:7000" (proc-title-template).
    if not argv or not is_server_process(argv[0].split(b" ")[0].decode(errors="replace")):
        return None
    try:
        same_dir = os.path.samefile(f"/proc/{pid}/cwd", member.folder)
    except OSError:
        same_dir = False
    if not same_dir and f":{member.port}".encode() not in b" ".join(argv):
        return None
    return pid


def stop(members: list[Member], *, deadline: float) -> list[str]:
    """SIGTERM each running member, wait until `deadline`, then SIGKILL what is left.

    Redis saves its data on SIGTERM (the lab configures save points). Returns the names that
    had to be killed.
    """
    pids: dict[str, int] = {}
    for member in members:
        pid = owned_pid(member)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            pids[member.name] = pid
    while pids and time.monotonic() < deadline:
        pids = {name: pid for name, pid in pids.items() if alive(pid)}
        if pids:
            time.sleep(POLL_SECONDS)
    killed = sorted(name for name, pid in pids.items() if alive(pid))
    for name in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[name], signal.SIGKILL)
    grace = time.monotonic() + 2.0
    while any(alive(pids[name]) for name in killed) and time.monotonic() < grace:
        time.sleep(POLL_SECONDS)
    return killed
