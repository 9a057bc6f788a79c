"""TLS to Redis for real: a redis-server with tls-port and certificates made for the test."""

from __future__ import annotations

import pytest
import yaml

from tests.cli_helpers import redisops
from tests.servers import start_tls_redis_server, tls_certificates


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    paths = tls_certificates(folder)
    good, good_port = start_tls_redis_server(
        folder, paths["good_cert"], paths["good_key"], paths["ca"]
    )
    wrong, wrong_port = start_tls_redis_server(
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
