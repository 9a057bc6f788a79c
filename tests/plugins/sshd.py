"""A real OpenSSH server on a loopback port, for tests of host access over SSH.

`sshd` (session-scoped) starts `/usr/sbin/sshd -D -e` with a throwaway host key and a throwaway
user key for the user running the tests, logging to a file in its tmp dir, and yields an
`SshServer` describing how to reach it, including a known_hosts with a WRONG key for the
changed-key case.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from redisops.fleet.host import Host

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
_START_ATTEMPTS = 3
_READY_SECONDS = 10.0


@dataclass(frozen=True)
class SshServer:
    """How to reach the test sshd; fingerprints are as `ssh-keygen -l` prints them."""

    port: int
    pid: int
    user: str
    key_file: Path
    known_hosts: Path
    host_key_fingerprint: str
    wrong_known_hosts: Path
    wrong_host_key_fingerprint: str
    log_file: Path

    def host(self, **overrides: Any) -> Host:
        """A Host that logs in to this server by key and checks its host key; override any field."""
        fields: dict[str, Any] = {
            "name": "ssh-1",
            "host": HOST,
            "connection": "ssh",
            "ssh_user": self.user,
            "ssh_port": self.port,
            "ssh_key_file": str(self.key_file),
            "ssh_known_hosts": str(self.known_hosts),
            "ssh_configured": True,
        }
        fields.update(overrides)
        return Host(**fields)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not os.access(SSHD, os.X_OK):
        pytest.skip(f"{SSHD} is not installed")
    folder = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(folder / "host_key")
    wrong_host_key = _keygen(folder / "wrong_host_key")
    user_key = _keygen(folder / "user_key")
    (folder / "authorized_keys").write_text(_public_key(user_key) + "\n")
    # sshd refuses to start without its privilege-separation folder (not needed when not root).
    with contextlib.suppress(PermissionError):
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    log_file = folder / "sshd.log"

    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        config = _write_config(folder, port, host_key)
        with log_file.open("ab") as log:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if _wait_for_banner(proc, port):
            break
        _stop(proc)  # most likely the port was taken between probing and binding: try another
    else:
        pytest.fail(f"sshd did not start; see {log_file}:\n{log_file.read_text()[-2000:]}")

    known_hosts = folder / "known_hosts"
    known_hosts.write_text(f"[{HOST}]:{port} {_public_key(host_key)}\n")
    wrong_known_hosts = folder / "wrong_known_hosts"
    wrong_known_hosts.write_text(f"[{HOST}]:{port} {_public_key(wrong_host_key)}\n")
    try:
        yield SshServer(
            port=port,
            pid=proc.pid,
            user=getpass.getuser(),
            key_file=user_key,
            known_hosts=known_hosts,
            host_key_fingerprint=_fingerprint(host_key),
            wrong_known_hosts=wrong_known_hosts,
            wrong_host_key_fingerprint=_fingerprint(wrong_host_key),
            log_file=log_file,
        )
    finally:
        _stop(proc)


def _write_config(folder: Path, port: int, host_key: Path) -> Path:
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        f"ListenAddress {HOST}\n"
        f"HostKey {host_key}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "LogLevel VERBOSE\n"
        "Subsystem sftp internal-sftp\n"
    )
    return config


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    return path


def _public_key(private_key: Path) -> str:
    """`type base64` of the key, without its comment."""
    key_type, blob = private_key.with_suffix(".pub").read_text().split()[:2]
    return f"{key_type} {blob}"


def _fingerprint(private_key: Path) -> str:
    """SHA256:… as OpenSSH itself prints it, independent of the code under test."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(private_key.with_suffix(".pub"))],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return out.split()[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_for_banner(proc: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=1) as conn:
                if conn.recv(256).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
