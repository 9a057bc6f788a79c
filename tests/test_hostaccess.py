"""Host access, locally and over SSH to a real sshd on loopback: commands, quoting, deadlines,
big outputs, file copies and host-key checking."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from redisops.errors import HostError
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import HostAccess, LocalAccess, open_host_access
from tests.plugins.sshd import SshServer

TIMEOUT = 10.0
MIB = 1024 * 1024


@pytest.fixture(params=["local", "ssh"])
def access(request: pytest.FixtureRequest) -> Iterator[HostAccess]:
    if request.param == "local":
        host = Host(name="local-1", host="127.0.0.1", connection="local")
    else:
        host = request.getfixturevalue("sshd").host()
    with open_host_access(host, timeout=TIMEOUT) as opened:
        yield opened


def _connect_error(host: Host) -> HostError:
    with pytest.raises(HostError) as caught:
        open_host_access(host, timeout=TIMEOUT).close()
    return caught.value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line contains marker (this machine runs both sides)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# --- commands -----------------------------------------------------------------------------------


def test_run_returns_exact_bytes(access: HostAccess) -> None:
    result = access.run(["printf", "%s\\n%s", "a  b", "c"])
    assert result.stdout == b"a  b\nc"
    assert result.stderr == b""
    assert result.exit_status == 0
    assert access.run(["echo", "hello"]).stdout == b"hello\n"


def test_hostile_arguments_pass_through_literally(access: HostAccess) -> None:
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    values = [
        f"x; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"x && touch {marker} || touch {marker}",
        f"x | touch {marker}",
        f"x\ntouch {marker}",
        f"'; touch {marker}; '",
        f'"; touch {marker}; "',
        "$HOME ~ * ? [a] {a,b} \\ \\n !! %s",
        "ünïcødé ✓ 日本",
        "  leading and trailing  ",
        "-n",
        "",
    ]
    result = access.run(["printf", "%s\\0", *values])
    assert result.stdout == b"".join(value.encode() + b"\0" for value in values)
    assert not marker.exists()


def test_failed_command_raises_with_program_status_and_stderr(access: HostAccess) -> None:
    missing = f"/nonexistent-{uuid.uuid4().hex}"
    with pytest.raises(HostError) as caught:
        access.run(["ls", missing])
    message = str(caught.value)
    assert message.startswith("ls exited with status 2: ")
    assert missing in message
    assert "\n" not in message


def test_failed_command_without_check_returns_result(access: HostAccess) -> None:
    result = access.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (result.exit_status, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert result.command == "sh -c 'echo out; echo err >&2; exit 3'"


def test_large_stdout_and_stderr_at_once(access: HostAccess) -> None:
    script = "head -c 3145728 /dev/urandom >&2 & head -c 2621440 /dev/urandom; wait"
    started = time.monotonic()
    result = access.run(["sh", "-c", script], timeout=30)
    assert len(result.stdout) == 2621440
    assert len(result.stderr) == 3145728
    assert time.monotonic() - started < 20


def test_input_is_fed_while_output_is_read(access: HostAccess) -> None:
    data = os.urandom(3 * MIB)
    result = access.run(["cat"], input=data, timeout=30)
    assert result.stdout == data


def test_deadline_kills_the_command(access: HostAccess) -> None:
    # A unique duration marks the process, so the test can find it afterwards.
    seconds = f"29.{uuid.uuid4().int % 10**9:09d}"
    marker = f"sleep\0{seconds}"
    started = time.monotonic()
    try:
        with pytest.raises(HostError, match=r"^sleep timed out after 1s"):
            access.run(["sleep", seconds], timeout=1)
        assert time.monotonic() - started < 5
        if isinstance(access, LocalAccess):
            for _ in range(50):
                if not _processes_with(marker):
                    break
                time.sleep(0.1)
            assert _processes_with(marker) == []
        # Over SSH the kill is best effort: sshd refuses the "signal" request for root logins
        # (no privilege separation after authentication), which is what this fixture uses.
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)


def test_run_shell_uses_sh(access: HostAccess) -> None:
    result = access.run_shell('printf \'%s|\' one "two  three" && echo "$0"')
    assert result.stdout == b"one|two  three|sh\n"
    with pytest.raises(HostError, match=r"^sh -c 'exit 4' exited with status 4$"):
        access.run_shell("exit 4")


def test_missing_program_is_a_host_error(access: HostAccess) -> None:
    with pytest.raises(HostError):
        access.run([f"no-such-program-{uuid.uuid4().hex}"])


# --- file copies ----------------------------------------------------------------------------------


def _random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def test_put_and_get_copy_whole_files(access: HostAccess, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "source.rdb", 3 * MIB + 123)
    remote_dir = tmp_path / "remote"
    local_dir = tmp_path / "local"
    remote_dir.mkdir()
    local_dir.mkdir()

    calls: list[tuple[int, int]] = []
    sent = access.put(source, str(remote_dir / "dump.rdb"), progress=lambda *c: calls.append(c))
    assert sent == source.stat().st_size
    assert calls[-1] == (sent, sent)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert _sha256(remote_dir / "dump.rdb") == _sha256(source)

    calls.clear()
    got = access.get(
        str(remote_dir / "dump.rdb"), local_dir / "copy.rdb", progress=lambda *c: calls.append(c)
    )
    assert got == sent
    assert calls[-1] == (got, got)
    assert _sha256(local_dir / "copy.rdb") == _sha256(source)

    for copy in (remote_dir / "dump.rdb", local_dir / "copy.rdb"):
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert sorted(p.name for p in remote_dir.iterdir()) == ["dump.rdb"]
    assert sorted(p.name for p in local_dir.iterdir()) == ["copy.rdb"]


def test_copies_replace_an_existing_file(access: HostAccess, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "new", 1000)
    target = tmp_path / "target"
    target.write_bytes(b"old")
    access.put(source, str(target))
    assert target.read_bytes() == source.read_bytes()
    target.write_bytes(b"old")
    access.get(str(source), target)
    assert target.read_bytes() == source.read_bytes()


def test_empty_file_reports_progress_once(access: HostAccess, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    calls: list[tuple[int, int]] = []
    assert access.get(str(empty), tmp_path / "copy", progress=lambda *c: calls.append(c)) == 0
    assert calls == [(0, 0)]
    assert (tmp_path / "copy").read_bytes() == b""


def test_failed_get_leaves_nothing(access: HostAccess, tmp_path: Path) -> None:
    destination = tmp_path / "dest"
    destination.mkdir()
    missing = f"/nonexistent-{uuid.uuid4().hex}/dump.rdb"
    with pytest.raises(HostError, match="No such file"):
        access.get(missing, destination / "dump.rdb")
    assert list(destination.iterdir()) == []


def test_get_interrupted_midway_leaves_nothing(access: HostAccess, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "source", 4 * MIB)
    destination = tmp_path / "dest"
    destination.mkdir()

    def interrupt(done: int, total: int) -> None:
        if done > MIB:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        access.get(str(source), destination / "copy", progress=interrupt)
    assert list(destination.iterdir()) == []
    # The access is still usable after an abandoned copy.
    assert access.get(str(source), destination / "copy") == 4 * MIB
    assert _sha256(destination / "copy") == _sha256(source)


def test_stalled_transfer_fails_after_the_timeout(sshd: SshServer, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "source", 16 * MIB)
    destination = tmp_path / "dest"
    destination.mkdir()
    stopped: list[int] = []

    def freeze_server(done: int, total: int) -> None:
        # The server side of this connection stops answering: a link gone silent mid-copy.
        if done > MIB and not stopped:
            stopped.extend(_descendants(sshd.pid))
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)

    try:
        with open_host_access(sshd.host(), timeout=1) as access:
            started = time.monotonic()
            with pytest.raises(HostError, match=r"^copying .* failed: timed out$"):
                access.get(str(source), destination / "copy", progress=freeze_server)
            assert time.monotonic() - started < 10
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert stopped
    assert list(destination.iterdir()) == []


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def test_failed_put_leaves_nothing(access: HostAccess, tmp_path: Path) -> None:
    source = _random_file(tmp_path / "source", 1000)
    with pytest.raises(HostError):
        access.put(source, str(tmp_path / "missing-dir" / "dump.rdb"))
    with pytest.raises(HostError):
        access.put(tmp_path / "missing-source", str(tmp_path / "dump.rdb"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


# --- SSH connections and host keys ----------------------------------------------------------


def test_unknown_host_key_is_refused_with_its_fingerprint(sshd: SshServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"  # missing: nothing is known
    error = _connect_error(sshd.host(ssh_known_hosts=str(known_hosts)))
    assert f"ssh-ed25519 {sshd.host_key_fingerprint}" in str(error)
    assert f"127.0.0.1:{sshd.port}" in str(error)
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1" in (error.hint or "")
    assert not known_hosts.exists()


def test_default_known_hosts_is_read_from_home_at_call_time(
    sshd: SshServer, isolated_environment: Path
) -> None:
    host = sshd.host(ssh_known_hosts=None)
    assert sshd.host_key_fingerprint in str(_connect_error(host))
    (isolated_environment / ".ssh").mkdir()
    (isolated_environment / ".ssh" / "known_hosts").write_bytes(sshd.known_hosts.read_bytes())
    with open_host_access(host, timeout=TIMEOUT) as access:
        assert access.run(["true"]).exit_status == 0


def test_hashed_known_hosts_entries_match(sshd: SshServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_bytes(sshd.known_hosts.read_bytes())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known_hosts)], check=True, timeout=30)
    assert known_hosts.read_text().startswith("|1|")
    with open_host_access(sshd.host(ssh_known_hosts=str(known_hosts)), timeout=TIMEOUT) as access:
        assert access.run(["true"]).exit_status == 0


def test_changed_host_key_is_refused(sshd: SshServer) -> None:
    before = sshd.wrong_known_hosts.read_bytes()
    error = _connect_error(sshd.host(ssh_known_hosts=str(sshd.wrong_known_hosts)))
    message = str(error)
    assert "CHANGED" in message
    assert sshd.wrong_host_key_fingerprint in message
    assert sshd.host_key_fingerprint in message
    assert sshd.wrong_known_hosts.read_bytes() == before


@pytest.mark.parametrize("known", ["missing", "wrong"])
def test_not_strict_accepts_any_key_and_saves_nothing(
    sshd: SshServer, tmp_path: Path, known: str
) -> None:
    known_hosts = tmp_path / "known_hosts" if known == "missing" else sshd.wrong_known_hosts
    before = known_hosts.read_bytes() if known_hosts.exists() else None
    host = sshd.host(ssh_known_hosts=str(known_hosts), ssh_strict=False)
    with open_host_access(host, timeout=TIMEOUT) as access:
        assert access.run(["echo", "ok"]).stdout == b"ok\n"
    assert (known_hosts.read_bytes() if known_hosts.exists() else None) == before


def test_closed_port_fails_quickly(sshd: SshServer) -> None:
    with socket_on_free_port() as port:
        started = time.monotonic()
        error = _connect_error(sshd.host(ssh_port=port))
    assert f"127.0.0.1:{port}" in str(error)
    assert time.monotonic() - started < 3


def test_silent_server_times_out(sshd: SshServer) -> None:
    with socket_on_free_port(listen=True) as port:
        started = time.monotonic()
        with pytest.raises(HostError, match=rf"^SSH connection to 127\.0\.0\.1:{port} timed out"):
            open_host_access(sshd.host(ssh_port=port), timeout=1).close()
    assert time.monotonic() - started < 5


def test_wrong_key_file_fails_authentication(sshd: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    error = _connect_error(sshd.host(ssh_key_file=str(stranger)))
    assert str(error) == f"SSH authentication failed for {sshd.user}@127.0.0.1:{sshd.port}"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("missing", "cannot be read: No such file or directory"),
        ("garbage", "is not a usable private key"),
        ("encrypted", "is protected by a passphrase"),
    ],
)
def test_bad_key_file_is_named(sshd: SshServer, tmp_path: Path, kind: str, expected: str) -> None:
    key_file = tmp_path / "key"
    if kind == "garbage":
        key_file.write_text("not a key\n")
    elif kind == "encrypted":
        command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", str(key_file)]
        subprocess.run(command, check=True, timeout=30)
    error = _connect_error(sshd.host(ssh_key_file=str(key_file)))
    assert str(error) == f"SSH key file {key_file} for ssh-1 {expected}"


def test_host_without_access_is_refused() -> None:
    error = _connect_error(Host(name="cache-1", host="127.0.0.1", connection="ssh"))
    assert "cache-1" in str(error)


def test_importing_host_access_does_not_import_paramiko() -> None:
    code = "import sys, redisops.fleet.hostaccess; sys.exit('paramiko' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0


@contextlib.contextmanager
def socket_on_free_port(*, listen: bool = False) -> Iterator[int]:
    """A loopback port nobody answers on: closed, or listening but never speaking (`listen`)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        if listen:
            held.listen(8)
        yield held.getsockname()[1]
