"""`inventory list | check` end to end against the lab's real redis-server and sentinels."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.cli_helpers import lab_inventory_with, redisops, redisops_process
from tests.servers import free_port, frozen_redis_server

ENVELOPE_KEYS = {"command", "ok", "results", "summary"}
RESULT_KEYS = {"host", "address", "ok", "error", "data"}


def test_check_on_the_lab_reports_six_healthy_hosts_with_roles(lab):
    run = redisops("-i", lab.inventory_path, "-o", "json", "inventory", "check")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert set(document) == ENVELOPE_KEYS
    assert document["command"] == "inventory check"
    assert document["ok"] is True
    assert document["summary"] == {"hosts": 6, "ok": 6, "failed": 0}
    results = document["results"]
    assert all(set(r) == RESULT_KEYS and r["ok"] and r["error"] is None for r in results)
    roles = {r["host"]: r["data"]["role"] for r in results}
    assert roles == {
        "node-1": "master",
        "node-2": "replica",
        "node-3": "replica",
        "sentinel-1": "sentinel",
        "sentinel-2": "sentinel",
        "sentinel-3": "sentinel",
    }
    by_name = {r["host"]: r for r in results}
    master_port = int(by_name["node-1"]["address"].rsplit(":", 1)[1])
    assert by_name["node-1"]["data"]["connected_replicas"] == 2
    for replica in ("node-2", "node-3"):
        data = by_name[replica]["data"]
        assert (data["master_host"], data["master_port"]) == ("127.0.0.1", master_port)
        assert data["master_link_status"] == "up"
    for name, result in by_name.items():
        data = result["data"]
        assert data["version"].count(".") == 2
        assert data["ssh"] == "skipped"  # lab hosts are local
        if name.startswith("node"):
            assert data["used_memory"] > 100_000
            assert data["maxmemory"] == 0
        else:
            assert data["monitored_masters"] == 1


def test_check_table_has_a_row_per_host(lab):
    run = redisops("-i", lab.inventory_path, "inventory", "check")
    assert run.exit_code == 0
    lines = run.stdout.splitlines()
    assert lines[0].split()[:3] == ["host", "address", "role"]
    assert [line.split()[0] for line in lines[1:]] == [
        "node-1", "node-2", "node-3", "sentinel-1", "sentinel-2", "sentinel-3",
    ]  # fmt: skip
    assert "\x1b[" not in run.stdout  # no colour codes when piped
    assert run.stderr.strip() == "6 of 6 hosts ok"


def test_closed_port_is_one_error_row_and_exit_1(lab, tmp_path):
    port = free_port()
    inventory = lab_inventory_with(
        lab, tmp_path, {"dead": {"host": "127.0.0.1", "port": port, "connection": "local"}}
    )
    run = redisops("-i", inventory, "-o", "json", "inventory", "check")
    assert run.exit_code == 1
    document = run.json()
    assert document["ok"] is False
    assert document["summary"] == {"hosts": 7, "ok": 6, "failed": 1}
    dead = [r for r in document["results"] if not r["ok"]]
    assert dead == [
        {
            "host": "dead",
            "address": f"127.0.0.1:{port}",
            "ok": False,
            "error": f"cannot connect to 127.0.0.1:{port}: Connection refused",
            "data": None,
        }
    ]


def test_limit_selects_groups_and_excludes(lab):
    run = redisops(
        "-i", lab.inventory_path, "-l", "redis,!node-3", "-o", "json", "inventory", "list"
    )
    assert run.exit_code == 0
    assert [r["host"] for r in run.json()["results"]] == ["node-1", "node-2"]


@pytest.fixture
def frozen_redis(tmp_path):
    """A real redis-server that accepts connections but never answers (SIGSTOP)."""
    with frozen_redis_server(tmp_path) as port:
        yield port


def test_a_frozen_host_costs_one_timeout_and_does_not_stall_the_rest(lab, tmp_path, frozen_redis):
    inventory = lab_inventory_with(
        lab,
        tmp_path,
        {"frozen": {"host": "127.0.0.1", "port": frozen_redis, "connection": "local"}},
    )
    started = time.monotonic()
    run = redisops("-i", inventory, "--timeout", "1", "-o", "json", "inventory", "check")
    elapsed = time.monotonic() - started
    assert run.exit_code == 1
    results = {r["host"]: r for r in run.json()["results"]}
    assert results["frozen"]["error"] == f"127.0.0.1:{frozen_redis} did not answer within 1s"
    assert sum(r["ok"] for r in results.values()) == 6
    assert elapsed < 4, f"took {elapsed:.1f}s: the frozen host was retried or serialised"


def test_unset_password_env_is_an_error_row_naming_the_variable(tmp_path, lab):
    inventory = lab_inventory_with(
        lab,
        tmp_path,
        {"other": {"host": "127.0.0.1", "port": free_port(), "password_env": "NOT_SET_HERE"}},
    )
    run = redisops("-i", inventory, "-l", "other", "inventory", "check")
    assert run.exit_code == 1
    assert "error: password_env NOT_SET_HERE is not set" in run.stdout


def test_lab_password_appears_in_no_output(lab, lab_password, tmp_path):
    literal = lab_inventory_with(
        lab, tmp_path, {"lit": {"host": "127.0.0.1", "port": 1, "password": lab_password}}
    )
    runs = [
        redisops("-i", lab.inventory_path, "inventory", "check"),
        redisops("-i", lab.inventory_path, "-o", "json", "-v", "inventory", "check"),
        redisops("-i", literal, "inventory", "list"),
        redisops("-i", literal, "-o", "json", "inventory", "list"),
        redisops("-i", literal, "-o", "json", "inventory", "check"),
    ]
    for run in runs:
        assert lab_password not in run.stdout
        assert lab_password not in run.stderr
    listed = {r["host"]: r["data"]["auth"] for r in runs[3].json()["results"]}
    assert listed["lit"] == "password (literal)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "/nonexistent/inventory.yaml", "inventory", "list"],
         "error: inventory file /nonexistent/inventory.yaml not found (use -i or "
         "REDISOPS_INVENTORY)"),
        (["--parallel", "0", "inventory", "list"], "error: --parallel must be at least 1, got 0"),
        (["--timeout", "0", "inventory", "list"], "error: --timeout must be 0.1 to 86400 seconds"),
        (["-o", "yaml", "inventory", "list"], "error: Invalid value for '-o' / '--output'"),
        (["--frob", "inventory", "list"], "error: No such option: --frob"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_and_exit_2(args, message):
    run = redisops(*args)
    assert run.exit_code == 2
    assert run.stdout == ""
    assert run.stderr.startswith(message)
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2  # the error, and maybe a hint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("all:\n  hosts:\n    a: {port: 1\n", "invalid YAML"),
        ("all:\n  hosts:\n    a: {prot: 1}\n", "unknown key 'prot' (did you mean 'port'?)"),
        ("all:\n  hosts:\n    a: {port: abc}\n", "expected an integer, got 'abc'"),
    ],
)
def test_bad_inventory_is_one_line_exit_2(tmp_path, text, message):
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    run = redisops("-i", str(path), "inventory", "check")
    assert run.exit_code == 2
    assert run.stderr.startswith(f"error: {path}:")
    assert message in run.stderr


def test_limit_matching_nothing_exits_2(lab):
    run = redisops("-i", lab.inventory_path, "-l", "nothing-like-this", "inventory", "check")
    assert run.exit_code == 2
    assert run.stderr.startswith("error: --limit 'nothing-like-this' matches no host or group")


def test_inventory_from_environment_variable(lab):
    run = redisops("inventory", "list", env={"REDISOPS_INVENTORY": lab.inventory_path})
    assert run.exit_code == 0
    assert "sentinel-3" in run.stdout


def test_real_subprocess_json_and_exit_code(lab):
    run = redisops_process("-i", lab.inventory_path, "-o", "json", "inventory", "check")
    assert run.exit_code == 0, run.stderr
    assert run.json()["summary"] == {"hosts": 6, "ok": 6, "failed": 0}
    assert run.stderr == ""


def test_help_reads_well_for_every_group():
    from redisops.cli.groups import COMMAND_GROUPS

    top = redisops("--help")
    assert top.exit_code == 0 and "--inventory" in top.stdout
    for name, (_, text) in COMMAND_GROUPS.items():
        assert f"  {name}" in top.stdout and text in top.stdout
        run = redisops(name, "--help")
        assert run.exit_code == 0, name
        assert run.stdout.startswith(f"Usage: redisops {name} [OPTIONS] COMMAND")
        assert "Commands:" in run.stdout


def test_help_imports_no_command_module_and_no_heavy_library():
    """--help must stay fast: groups load on demand; redis-py, paramiko, yaml never load."""
    probe = (
        "import sys; from redisops.cli.app import app; from typer.testing import CliRunner;"
        "CliRunner().invoke(app, ['--help']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('redis', 'paramiko', 'yaml')"
        " or m.startswith(('redisops.cli.memory', 'redisops.backup', 'redisops.sentinel'))))"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_ssh_reachability_is_checked_for_hosts_with_ssh_settings(lab, sshd, tmp_path):
    master_port = int(lab.processes[0].port)
    ssh = {
        "host": "127.0.0.1",
        "port": master_port,
        "password_file": str(Path(lab.dir) / "secret"),
        "connection": "ssh",
        "ssh_user": sshd.user,
        "ssh_port": sshd.port,
        "ssh_key_file": str(sshd.key_file),
    }
    inventory = lab_inventory_with(
        lab,
        tmp_path,
        {
            "via-ssh": {**ssh, "ssh_known_hosts": str(sshd.known_hosts)},
            "stranger": {**ssh, "ssh_known_hosts": str(tmp_path / "empty_known_hosts")},
        },
    )
    run = redisops("-i", inventory, "-l", "extra", "-o", "json", "inventory", "check")
    assert run.exit_code == 1
    good, stranger = run.json()["results"]
    assert (good["ok"], good["data"]["ssh"], good["data"]["role"]) == (True, "ok", "master")
    assert stranger["ok"] is False
    assert stranger["data"]["ssh"] == "error"
    assert stranger["data"]["role"] == "master"  # Redis answered; only SSH failed
    assert stranger["error"].startswith("ssh: ")
    assert sshd.host_key_fingerprint in stranger["error"]
