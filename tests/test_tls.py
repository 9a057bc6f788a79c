"""TLS to Redis for real: a redis-server with tls-port and certificates made for the test."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
import yaml

from tests.cli_helpers import redisops
from tests.servers import start_redis_server


def _certificates(folder: Path) -> dict[str, Path]:
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


def _start_tls_redis(folder: Path, cert: Path, key: Path, ca: Path) -> tuple:
    return start_redis_server(
        folder, "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
    )  # fmt: skip


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    paths = _certificates(folder)
    good, good_port = _start_tls_redis(folder, paths["good_cert"], paths["good_key"], paths["ca"])
    wrong, wrong_port = _start_tls_redis(
        folder, paths["wrong_cert"], paths["wrong_key"], paths["ca"]
    )
    yield {"good": good_port, "wrong": wrong_port, "ca": str(paths["ca"]), "folder": folder}
    for process in (good, wrong):
        process.terminate()
        process.wait(timeout=10)


def _check(tls_servers, tmp_path, tls, server="good"):
    host = {"host": "127.0.0.1", "port": tls_servers[server], "connection": "local", "tls": tls}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"tls-host": host}}}))
    return redisops("-i", str(path), "--timeout", "3", "-o", "json", "inventory", "check")


def test_tls_with_the_right_ca_connects(tls_servers, tmp_path):
    run = _check(tls_servers, tmp_path, {"ca_file": tls_servers["ca"]})
    assert run.exit_code == 0, run.stdout
    assert run.json()["results"][0]["data"]["role"] == "master"
    assert run.stderr.strip() == ""


def test_untrusted_certificate_is_a_verify_error(tls_servers, tmp_path):
    run = _check(tls_servers, tmp_path, True)  # system CAs: our test CA is not among them
    assert run.exit_code == 1
    error = run.json()["results"][0]["error"]
    assert error.startswith(f"cannot connect to 127.0.0.1:{tls_servers['good']}:")
    assert "CERTIFICATE_VERIFY_FAILED" in error or "certificate verify failed" in error
    assert "\n" not in error


def test_wrong_hostname_is_refused(tls_servers, tmp_path):
    run = _check(tls_servers, tmp_path, {"ca_file": tls_servers["ca"]}, server="wrong")
    assert run.exit_code == 1
    error = run.json()["results"][0]["error"]
    assert "mismatch" in error.lower() or "not valid for" in error.lower()


def test_verify_false_is_an_explicit_warned_opt_out(tls_servers, tmp_path):
    run = _check(tls_servers, tmp_path, {"verify": False}, server="wrong")
    assert run.exit_code == 0
    assert run.stderr.startswith(
        "warning: host tls-host: tls verify is false, certificates are not checked"
    )
