"""Faults a drill injects into one server process, and their undoing: shared by the Sentinel
and the Redis Cluster drills.

Every signal goes through host access to a pid read from the server's own INFO, proven a
Redis or Valkey process (`/proc/<pid>/comm`) at the pre-checks and read again just before the
signal, so a restarted server's new pid is never signalled by mistake.
"""

from __future__ import annotations

from collections.abc import Callable

from redisops.errors import HostError
from redisops.fleet.connection import redis_client
from redisops.fleet.host import Host
from redisops.fleet.server import is_server_process

CLIENT_NAME = "redisops-drill"


def server_pid(host: Host, *, timeout: float) -> int:
    """The server's pid as its INFO says; HostError when it does not answer."""
    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        return int(client.info("server")["process_id"])


def proven_server_pid(host: Host, *, timeout: float) -> tuple[int, str]:
    """The server's pid and process name, proven a Redis or Valkey process through host
    access; HostError saying why not."""
    from redisops.fleet.hostaccess import open_host_access

    pid = server_pid(host, timeout=timeout)
    with open_host_access(host, timeout=timeout) as access:
        comm = access.run(["cat", f"/proc/{pid}/comm"]).stdout.decode(errors="replace").strip()
    if not is_server_process(comm):
        raise HostError(f"pid {pid} on {host.name} is {comm!r}, not Redis or Valkey")
    return pid, comm


def checked_pid(host: Host, expected: int | None, *, timeout: float) -> int:
    """`expected`, once the server still runs as that pid (as at the pre-checks)."""
    pid = server_pid(host, timeout=timeout)
    if pid != expected:
        raise HostError(
            f"{host.name} runs as pid {pid} now, not {expected} as at the pre-checks; "
            "no signal was sent"
        )
    return pid


def signal_server(
    host: Host,
    pid: int,
    signal_name: str,
    *,
    timeout: float,
    before: Callable[[], None] | None = None,
) -> None:
    """`kill -<signal_name> <pid>` on the server's host (9, STOP, CONT). `before` runs once
    the host access is open, right before the signal: the moment of the fault, without the
    time an SSH connection takes."""
    from redisops.fleet.hostaccess import open_host_access

    with open_host_access(host, timeout=timeout) as access:
        if before is not None:
            before()
        access.run(["kill", f"-{signal_name}", str(pid)])


def freeze_server(
    host: Host,
    pid: int,
    seconds: float,
    *,
    timeout: float,
    before: Callable[[], None] | None = None,
) -> None:
    """SIGSTOP `pid`, with a timer on the host that sends SIGCONT after `seconds` even if
    redisops dies or loses the host meanwhile (the caller sends it itself too). `before` as
    for signal_server."""
    from redisops.fleet.hostaccess import open_host_access

    # The stop is sent before sh returns (its failure fails the command); only the timer
    # runs on in the background, detached from the command's output.
    script = (
        f"kill -STOP {pid} || exit 1; (sleep {seconds:g}; kill -CONT {pid}) "
        "</dev/null >/dev/null 2>&1 &"
    )
    with open_host_access(host, timeout=timeout) as access:
        if before is not None:
            before()
        access.run(["sh", "-c", script])


def start_server(host: Host, *, timeout: float) -> None:
    """Run the host's service_start (after a kill -9)."""
    from redisops.fleet.hostaccess import open_host_access

    with open_host_access(host, timeout=timeout) as access:
        access.run_shell(str(host.service_start))


def fault_wind_down(
    drill: str, fault_at: float | None, now: float, events: dict[str, str], server: str
) -> list[str]:
    """The first clauses of a stopped drill's `interrupted: …` line: when it stopped against
    the fault (`drill` names it: "crash drill of cache"), and what was undone on `server`
    (`events`: the drill's own steps, event -> detail)."""
    if fault_at is None:
        parts = [f"{drill} stopped before the fault", "nothing was triggered"]
    else:
        parts = [f"{drill} stopped {now - fault_at:.1f}s after the fault"]
    if "restarted" in events:
        parts.append(f"{server} restarted with its service_start")
    elif "restart failed" in events:
        parts.append(f"restarting {server} FAILED: {events['restart failed']}")
    if "thawed" in events:
        parts.append(f"{server} thawed (kill -CONT)")
    elif "thaw failed" in events:
        parts.append(
            f"kill -CONT on {server} FAILED: {events['thaw failed']}; the timer on "
            "the host sends it at the end of the hang"
        )
    return parts
