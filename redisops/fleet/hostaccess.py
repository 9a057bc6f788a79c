"""Running commands and copying files on a host's machine, locally or over SSH.

One interface, two implementations, so backup, restore and service control never care where a
host lives. Every expected failure is a one-line `HostError`; paramiko is imported only when an
SSH host is opened, so `redisops --help` never pays for it.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import secrets
import select
import shlex
import signal
import socket
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

from redisops.errors import HostError
from redisops.fleet.host import Host

if TYPE_CHECKING:
    from types import TracebackType

    import paramiko

Progress = Callable[[int, int], None]


class _Readable(Protocol):
    def read(self, size: int, /) -> bytes: ...


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
# Temporary copies are named `.<name>.<random>.part` in the destination folder, so a copy cut
# short (even by SIGKILL) never looks like a finished file and is easy to clean up.
PARTIAL_SUFFIX = ".part"

_COPY_CHUNK = 256 * 1024
_SFTP_READ = 32 * 1024  # paramiko's SFTPFile.MAX_REQUEST_SIZE: one read request
# OpenSSH's sftp keeps at most 64 reads in flight; paramiko's default is unbounded, which can
# hang some servers (SFTPClient.get docs) and buffers the whole file in memory on a slow disk.
_PREFETCH_REQUESTS = 64
_STREAM_CHUNK = 64 * 1024
_LOCAL_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError)

# paramiko's transport thread logs failures (with tracebacks) at ERROR; with no handler anywhere,
# Python's last-resort handler would print them to stderr. They reach the user as HostError
# instead, and logging configured on the root logger (-v) still sees them.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind; `command` is the quoted command line, for messages."""

    command: str
    exit_status: int
    stdout: bytes
    stderr: bytes


class HostAccess(ABC):
    """Commands and file copies on one host's machine; a context manager that closes itself.

    Not thread-safe: each fan-out task opens its own.
    """

    def __init__(self, host: Host, timeout: float) -> None:
        self.host = host
        self.timeout = timeout

    def __enter__(self) -> HostAccess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        input: bytes | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run a program with these exact arguments; no shell ever interprets them.

        `timeout` (seconds, default the access's timeout) bounds the whole command; on expiry the
        command is killed and HostError raised. With `check`, a non-zero exit raises HostError
        naming the program, the status and the first line of stderr.
        """
        if not argv:
            raise ValueError("run() needs a program to run")
        return self._finish(argv[0], list(argv), timeout, input, check)

    def run_shell(
        self, command: str, *, timeout: float | None = None, check: bool = True
    ) -> CommandResult:
        """Run a command line written by the inventory's author (service_start/stop) with sh -c.

        Same deadline and `check` behaviour as `run`.
        """
        label = f"sh -c {shlex.quote(_shorten(command))}"
        return self._finish(label, ["sh", "-c", command], timeout, None, check)

    def _finish(
        self,
        label: str,
        argv: list[str],
        timeout: float | None,
        input: bytes | None,
        check: bool,
    ) -> CommandResult:
        seconds = self.timeout if timeout is None else timeout
        result = self._execute(argv, label=label, timeout=seconds, input=input)
        if check and result.exit_status != 0:
            status = self._describe_status(result.exit_status)
            raise HostError(
                _failure_message(label, status, result.stderr), hint=f"command: {result.command}"
            )
        return result

    def _describe_status(self, exit_status: int) -> str:
        return f"exited with status {exit_status}"

    @abstractmethod
    def _execute(
        self, argv: list[str], *, label: str, timeout: float, input: bytes | None
    ) -> CommandResult:
        """Run argv to completion within `timeout` seconds; raise HostError on expiry."""

    @abstractmethod
    def get(
        self, remote_path: str, local_path: str | Path, *, progress: Progress | None = None
    ) -> int:
        """Copy a file from the host to this machine; return the bytes copied.

        The copy lands under a temporary name beside `local_path` (mode 0600), is fsynced and
        renamed into place only when complete; on any failure nothing is left behind. The file
        is copied as big as it was when opened: one that grows meanwhile yields that prefix, one
        that shrinks fails. `progress(done, total)` is called as bytes arrive, last with
        (total, total).
        """

    @abstractmethod
    def get_stream(
        self, remote_path: str, sink: _Writable, *, progress: Progress | None = None
    ) -> int:
        """Copy a file from the host into `sink` (anything with `write(bytes)`); return the bytes.

        For callers that process the bytes as they arrive (hash, compress, check) and own
        where they land. Same size rules as `get`. Failures reading the file become
        HostError; `sink` should raise its own errors as HostError too, so they keep their
        message.
        """

    @abstractmethod
    def put(
        self, local_path: str | Path, remote_path: str, *, progress: Progress | None = None
    ) -> int:
        """Copy a file from this machine to the host; return the bytes copied.

        Same temporary-name, size-check and cleanup rules as `get`; the new file is mode 0600,
        so callers chmod/chown it when a service running as another user must read it.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the connection; safe to call twice."""


def open_host_access(host: Host, *, timeout: float) -> HostAccess:
    """Open access to the host's machine: LocalAccess or a connected SshAccess.

    `timeout` (seconds) bounds connecting and is the default deadline of each command.
    Raises HostError when the inventory gives no way in or the connection fails.
    """
    if not host.has_host_access:
        raise HostError(
            f"no host access configured for {host.name}",
            hint="set connection: local, or ssh_user/ssh_key_file for SSH, in the inventory",
        )
    if host.connection == "local":
        return LocalAccess(host, timeout)
    return SshAccess(host, timeout, _connect(host, timeout))


class LocalAccess(HostAccess):
    """The host is this machine: subprocesses and plain file copies."""

    def _execute(
        self, argv: list[str], *, label: str, timeout: float, input: bytes | None
    ) -> CommandResult:
        command = shlex.join(argv)
        try:
            # Own process group, so a timeout kills what the command started too (as sshd's
            # killpg does for the SSH side).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise HostError(f"cannot run {label}: {_reason(exc)}") from None
        with proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise HostError(f"{label} timed out after {timeout:g}s") from None
            except BaseException:
                _kill_group(proc)
                raise
        return CommandResult(command, proc.returncode, stdout, stderr)

    def _describe_status(self, exit_status: int) -> str:
        # subprocess reports death by signal N as -N.
        if exit_status < 0:
            return f"was killed by {signal.Signals(-exit_status).name}"
        return super()._describe_status(exit_status)

    def get(
        self, remote_path: str, local_path: str | Path, *, progress: Progress | None = None
    ) -> int:
        return _copy_local(Path(remote_path), Path(local_path), progress)

    def get_stream(
        self, remote_path: str, sink: _Writable, *, progress: Progress | None = None
    ) -> int:
        try:
            with open(remote_path, "rb") as source:
                total = os.fstat(source.fileno()).st_size
                return _pump(source, sink, total, progress)
        except _LOCAL_ERRORS as exc:
            raise HostError(f"reading {remote_path} failed: {_reason(exc)}") from None

    def put(
        self, local_path: str | Path, remote_path: str, *, progress: Progress | None = None
    ) -> int:
        return _copy_local(Path(local_path), Path(remote_path), progress)

    def close(self) -> None:
        """Nothing to release."""


class SshAccess(HostAccess):
    """The host is reached over one SSH connection; SFTP opens on first copy."""

    def __init__(self, host: Host, timeout: float, client: paramiko.SSHClient) -> None:
        super().__init__(host, timeout)
        self._client = client
        self._sftp: paramiko.SFTPClient | None = None
        self._where = _ssh_address(host)

    def _execute(
        self, argv: list[str], *, label: str, timeout: float, input: bytes | None
    ) -> CommandResult:
        command = shlex.join(argv)
        deadline = time.monotonic() + timeout
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise HostError(f"SSH connection to {self._where} is closed")
        try:
            channel = transport.open_session(timeout=timeout)
        except _ssh_errors() as exc:
            raise HostError(
                f"cannot open an SSH session on {self._where}: {_reason(exc)}"
            ) from None
        try:
            channel.exec_command(command)
            if input is None:
                channel.shutdown_write()
            else:
                # A writer thread, so a command that writes before it reads cannot deadlock us.
                threading.Thread(target=_feed, args=(channel, input), daemon=True).start()
            stdout, stderr, finished = _drain(channel, deadline)
            if not finished:
                _kill_remote(channel)
                raise HostError(f"{label} timed out after {timeout:g}s on {self._where}")
            return CommandResult(command, channel.recv_exit_status(), stdout, stderr)
        except _ssh_errors() as exc:
            raise HostError(f"{label} failed on {self._where}: {_reason(exc)}") from None
        finally:
            channel.close()

    def _describe_status(self, exit_status: int) -> str:
        # paramiko reports -1 when the server sent no exit-status, only an exit-signal or nothing.
        if exit_status == -1:
            return "ended without an exit status (killed by a signal, or the connection dropped)"
        return super()._describe_status(exit_status)

    def get(
        self, remote_path: str, local_path: str | Path, *, progress: Progress | None = None
    ) -> int:
        local = Path(local_path)
        what = f"copying {remote_path} from {self._where} to {local}"
        sftp = self._open_sftp()
        try:
            remote = sftp.open(remote_path, "rb")
            total = remote.stat().st_size
        except _ssh_errors() as exc:
            self._drop_sftp()
            raise HostError(f"{what} failed: {_reason(exc)}") from None
        try:
            with remote:
                reader = _PrefetchingReader(remote, total)
                return _receive(reader, total, local, progress, what, errors=_ssh_errors())
        except BaseException:
            self._drop_sftp()
            raise

    def get_stream(
        self, remote_path: str, sink: _Writable, *, progress: Progress | None = None
    ) -> int:
        sftp = self._open_sftp()
        try:
            with sftp.open(remote_path, "rb") as remote:
                total = remote.stat().st_size
                return _pump(_PrefetchingReader(remote, total), sink, total, progress)
        except _ssh_errors() as exc:
            self._drop_sftp()
            raise HostError(
                f"reading {remote_path} on {self._where} failed: {_reason(exc)}"
            ) from None
        except BaseException:
            self._drop_sftp()
            raise

    def put(
        self, local_path: str | Path, remote_path: str, *, progress: Progress | None = None
    ) -> int:
        what = f"copying {local_path} to {remote_path} on {self._where}"
        sftp = self._open_sftp()
        target = PurePosixPath(remote_path)
        partial = str(target.with_name(_partial_name(target.name)))
        try:
            with open(local_path, "rb") as source:
                total = os.fstat(source.fileno()).st_size
                # "x": never reuse an existing name; chmod while still empty, before any data.
                with sftp.open(partial, "wbx") as remote:
                    remote.chmod(0o600)
                    remote.set_pipelined(True)
                    done = _pump(source, remote, total, progress)
            # Closing waited for every pipelined write; now check what actually landed.
            landed = sftp.stat(partial).st_size
            if landed != total:
                raise EOFError(f"{landed} of {total} bytes arrived")
            sftp.posix_rename(partial, remote_path)
        except BaseException as exc:
            with contextlib.suppress(*_ssh_errors()):
                sftp.remove(partial)
            self._drop_sftp()
            if isinstance(exc, _ssh_errors()):
                raise HostError(f"{what} failed: {_reason(exc)}") from None
            raise
        return done

    def close(self) -> None:
        self._drop_sftp()
        self._client.close()

    def _open_sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
            except _ssh_errors() as exc:
                raise HostError(f"cannot start SFTP on {self._where}: {_reason(exc)}") from None
            # A stalled transfer fails after `timeout` seconds without data, however big the file.
            self._sftp.get_channel().settimeout(self.timeout)
        return self._sftp

    def _drop_sftp(self) -> None:
        """Close the SFTP session: after a failed copy its state is unknown; the next opens anew."""
        if self._sftp is not None:
            with contextlib.suppress(*_ssh_errors()):
                self._sftp.close()
            self._sftp = None


class _PrefetchingReader:
    """Reads an SFTP file with at most `_PREFETCH_REQUESTS` reads in flight, a window at a time.

    paramiko's own bound (`max_concurrent_requests`) makes its prefetch thread poll with 10 ms
    sleeps (100 MB took 20 s instead of 1 s here), and that thread polls on forever when a copy
    is abandoned midway. One window at a time, each prefetch thread finishes at once.
    """

    def __init__(self, remote: paramiko.SFTPFile, total: int) -> None:
        self._remote = remote
        self._total = total
        self._position = 0
        self._window_end = 0

    def read(self, size: int) -> bytes:
        if self._position >= self._window_end:
            self._window_end = min(self._total, self._position + _PREFETCH_REQUESTS * _SFTP_READ)
            self._remote.prefetch(self._window_end)
        # Reads of one request's size keep paramiko's position on the request boundaries.
        data = self._remote.read(min(size, _SFTP_READ))
        self._position += len(data)
        return data


def _connect(host: Host, timeout: float) -> paramiko.SSHClient:
    """Log in by key only; check the host key against known_hosts unless ssh_strict is off."""
    import paramiko

    user = host.ssh_user or getpass.getuser()
    key = _load_key(host) if host.ssh_key_file else None
    client = paramiko.SSHClient()
    if host.ssh_strict:
        known_hosts = Path(host.ssh_known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        try:
            client.load_host_keys(str(known_hosts))
        except FileNotFoundError:
            pass  # no file yet: every key is unknown, and refused
        except OSError as exc:
            raise HostError(f"cannot read known_hosts {known_hosts}: {_reason(exc)}") from None
        client.set_missing_host_key_policy(_RejectWithFingerprint(host))
    else:
        # Accept whatever key is offered and remember nothing; the inventory loader warns.
        client.set_missing_host_key_policy(paramiko.MissingHostKeyPolicy())
    started = time.monotonic()
    try:
        client.connect(
            host.host,
            port=host.ssh_port,
            username=user,
            pkey=key,
            look_for_keys=key is None,
            allow_agent=False,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except BaseException as exc:
        client.close()
        if isinstance(exc, HostError):
            raise
        timed_out = time.monotonic() - started >= timeout
        error = _connect_error(exc, host, user, timeout, timed_out=timed_out)
        if error is None:
            raise
        raise error from None
    # paramiko sets no socket options; with Nagle on, each burst of small SFTP read requests
    # waits out the peer's delayed ACK (~40 ms on Linux): 100 MB took 9 s instead of 1 s here.
    client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def _load_key(host: Host) -> paramiko.PKey:
    """Load ssh_key_file up front, so a bad key file is named as such, not as a login failure."""
    import paramiko

    path = Path(host.ssh_key_file or "").expanduser()
    problem = f"SSH key file {path} for {host.name}"
    try:
        return paramiko.PKey.from_path(path)
    except OSError as exc:
        raise HostError(f"{problem} cannot be read: {_reason(exc)}") from None
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        raise HostError(
            f"{problem} is protected by a passphrase",
            hint="redisops needs an unencrypted key file and does not use an agent",
        ) from None
    except (ValueError, paramiko.SSHException, paramiko.pkey.UnknownKeyType):
        raise HostError(f"{problem} is not a usable private key") from None


def _connect_error(
    exc: BaseException, host: Host, user: str, timeout: float, *, timed_out: bool
) -> HostError | None:
    """The one-line HostError for a failed connect, or None for what is not a connection problem.

    paramiko reports a handshake that ran out of time as various SSHExceptions ("Error reading
    SSH protocol banner", "No existing session"), hence `timed_out`, measured by the caller.
    """
    import paramiko

    where = _ssh_address(host)
    if isinstance(exc, paramiko.BadHostKeyException):
        expected, offered = exc.expected_key, exc.key
        return HostError(
            f"SSH host key of {where} has CHANGED: known_hosts has {expected.get_name()} "
            f"{expected.fingerprint}, the server offered "
            f"{offered.get_name()} {offered.fingerprint}",
            hint="this may be an attack; if the host was really rebuilt, check the new key out of "
            f"band, then drop the old one with: ssh-keygen -R {_known_hosts_name(host)}",
        )
    if isinstance(exc, paramiko.PasswordRequiredException):  # a default key, from ~/.ssh
        return HostError(
            f"SSH key for {user}@{where} is protected by a passphrase",
            hint="set ssh_key_file to an unencrypted key; redisops does not use an agent",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return HostError(
            f"SSH authentication failed for {user}@{where}",
            hint="check ssh_user and ssh_key_file; only key authentication is tried",
        )
    if isinstance(exc, socket.gaierror):
        return HostError(f"cannot resolve SSH host {host.host!r} of {host.name}")
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return HostError(f"SSH connection to {where} refused or host unreachable")
    if not isinstance(exc, (paramiko.SSHException, OSError, EOFError)):
        return None
    if timed_out or isinstance(exc, TimeoutError):
        return HostError(f"SSH connection to {where} timed out after {timeout:g}s")
    return HostError(f"SSH connection to {where} failed: {_reason(exc)}")


class _RejectWithFingerprint:
    """paramiko host-key policy: refuse an unknown key, saying what it was and how to trust it.

    Duck-typed (paramiko only calls `missing_host_key`) so this module imports without paramiko.
    """

    def __init__(self, host: Host) -> None:
        self._host = host

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        host = self._host
        keyscan = f"ssh-keyscan -p {host.ssh_port} {host.host}"
        known_hosts = host.ssh_known_hosts or DEFAULT_KNOWN_HOSTS
        raise HostError(
            f"unknown SSH host key for {_ssh_address(host)}: {key.get_name()} {key.fingerprint}",
            hint=f"check the fingerprint out of band, then add it: {keyscan} >> {known_hosts}",
        )


def _drain(channel: paramiko.Channel, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr together until EOF and exit status, or the deadline.

    Both at once: a stream left unread fills the SSH window, the command blocks writing it and
    `recv_exit_status()` never returns. Returns (stdout, stderr, finished in time).
    """
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    while True:
        if time.monotonic() >= deadline:
            return b"".join(stdout), b"".join(stderr), False
        # One chunk of each per turn, so a flood on one stream never starves the other.
        got_out = channel.recv_ready()
        if got_out:
            stdout.append(channel.recv(_STREAM_CHUNK))
        got_err = channel.recv_stderr_ready()
        if got_err:
            stderr.append(channel.recv_stderr(_STREAM_CHUNK))
        if got_out or got_err:
            continue
        if channel.eof_received or channel.closed:
            break
        # The channel's fileno is readable when either stream has data, or at EOF.
        select.select([channel], [], [], max(0.0, deadline - time.monotonic()))
    finished = channel.status_event.wait(max(0.0, deadline - time.monotonic()))
    return b"".join(stdout), b"".join(stderr), finished


def _feed(channel: paramiko.Channel, data: bytes) -> None:
    """Send stdin, then EOF; a closed channel (timeout, command gone) just ends the feed."""
    with contextlib.suppress(OSError, EOFError):
        channel.sendall(data)
        channel.shutdown_write()


def _kill_remote(channel: paramiko.Channel) -> None:
    """Ask sshd to SIGKILL the command's process group (RFC 4254 "signal"; OpenSSH >= 7.9).

    Closing the channel alone leaves the command running on the host. paramiko has no public
    call for this request, so it is sent the way Channel.exec_command sends its own.
    """
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message

    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)
    message.add_string("KILL")
    with contextlib.suppress(Exception):
        channel.transport._send_user_message(message)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _copy_local(source: Path, target: Path, progress: Progress | None) -> int:
    what = f"copying {source} to {target}"
    try:
        src = open(source, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise HostError(f"{what} failed: {_reason(exc)}") from None
    with src:
        total = os.fstat(src.fileno()).st_size
        return _receive(src, total, target, progress, what, errors=_LOCAL_ERRORS)


def _receive(
    source: _Readable,
    total: int,
    target: Path,
    progress: Progress | None,
    what: str,
    *,
    errors: tuple[type[Exception], ...],
) -> int:
    """Copy `total` bytes from source into a 0600 temporary beside target, then rename it in.

    `errors` are the expected failures of the source; they become HostError, others propagate.
    """
    partial = target.with_name(_partial_name(target.name))
    try:
        # O_EXCL with 0600: private from the first byte, never clobbering another file.
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise HostError(f"{what} failed: {_reason(exc)}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            done = _pump(source, out, total, progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        if isinstance(exc, errors):
            raise HostError(f"{what} failed: {_reason(exc)}") from None
        raise
    fsync_dir(target.parent)
    return done


def _pump(source: _Readable, target: _Writable, total: int, progress: Progress | None) -> int:
    """Copy exactly `total` bytes; fewer means the source shrank mid-copy, which is an error."""
    done = 0
    while done < total:
        data = source.read(min(_COPY_CHUNK, total - done))
        if not data:
            raise EOFError(f"source ended after {done} of {total} bytes (shrank while copying?)")
        target.write(data)
        done += len(data)
        if progress is not None:
            progress(done, total)
    if progress is not None and total == 0:
        progress(0, 0)
    return done


def fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; some filesystems refuse fsync on folders, which is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _ssh_errors() -> tuple[type[Exception], ...]:
    """What an SSH or SFTP operation raises when the host or the link fails (not a bug)."""
    import paramiko

    return (OSError, EOFError, paramiko.SSHException, paramiko.SFTPError)


def _partial_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def _failure_message(label: str, status: str, stderr: bytes) -> str:
    text = stderr.decode(errors="replace")
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{label} {status}: {_shorten(first_line)}" if first_line else f"{label} {status}"


def _shorten(text: str, limit: int = 160) -> str:
    """First line of text, cut to `limit` characters, so messages stay on one line."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else ""
    if len(line) > limit or len(lines) > 1:
        return line[: limit - 1] + "…"
    return line


def _reason(exc: BaseException) -> str:
    """A one-line reason from an exception: strerror for OS errors, else its text or type."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError):  # paramiko raises it bare when a channel times out
        return "timed out"
    return _shorten(str(exc)) or type(exc).__name__


def _ssh_address(host: Host) -> str:
    return f"[{host.host}]:{host.ssh_port}" if ":" in host.host else f"{host.host}:{host.ssh_port}"


def _known_hosts_name(host: Host) -> str:
    """How known_hosts names the host: bare on port 22, `[host]:port` otherwise (as OpenSSH)."""
    return host.host if host.ssh_port == 22 else f"'[{host.host}]:{host.ssh_port}'"
