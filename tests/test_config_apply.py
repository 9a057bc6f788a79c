"""`config apply` on labs of its own: fixes drift, survives a restart (CONFIG REWRITE), rolls a
host back whole when a value is rejected or reads back wrong, refuses dangerous, unknown and
secret settings, follows the confirmation rules, and logs every change without secrets."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from redisops.fleet.connection import build_client
from redisops.fleet.host import Host
from redisops.fleet.hostaccess import open_host_access
from redisops.fleet.inventory import load_inventory
from redisops.lab import LabState
from redisops.tuning.auditlog import operator
from tests.cli_helpers import redisops
from tests.servers import start_redis_server
from tests.test_config_diff import clients, has_row, inventory_with

RESTART_SECONDS = 15
SETTINGS = ("maxmemory", "maxmemory-policy", "slowlog-max-len", "hz", "save")


def password_of(state: LabState) -> str:
    return (Path(state.dir) / "secret").read_text().strip()


def snapshot(state: LabState) -> dict[str, dict[str, str]]:
    return {
        name: {key: client.config_get(key)[key] for key in SETTINGS}
        for name, client in clients(state).items()
    }


def log_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def restart(host: Host, password: str) -> None:
    """Stop and start one lab node with its own service commands; wait until it answers."""
    with open_host_access(host, timeout=10) as access:
        access.run_shell(host.service_stop or "false")
        deadline = time.monotonic() + RESTART_SECONDS
        while _listening(host.port):
            assert time.monotonic() < deadline, f"{host.name} did not stop"
            time.sleep(0.05)
        access.run_shell(host.service_start or "false")
    client = build_client(host.host, host.port, password=password, timeout=2)
    try:
        while True:
            try:
                if client.ping():
                    return
            except Exception:
                assert time.monotonic() < deadline, f"{host.name} did not start"
                time.sleep(0.05)
    finally:
        client.close()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_apply_fixes_drift_survives_restart_and_is_logged(make_lab, tmp_path):
    state = make_lab(replicas=1)
    password = password_of(state)
    desired = {"maxmemory": "64mb", "maxmemory-policy": "allkeys-lru", "save": "900 1"}
    inventory = inventory_with(state, tmp_path, group_config=desired)
    log = tmp_path / "changes.jsonl"
    assert redisops("-i", inventory, "config", "diff", "--fail-on-drift").exit_code == 1

    run = redisops("-i", inventory, "config", "apply", "--yes", "--audit-log", str(log))
    assert run.exit_code == 0, run.stderr
    assert has_row(run.stdout, "node-1", "maxmemory", "0 B", "64.0 MiB", "applied")
    for values in snapshot(state).values():
        assert (values["maxmemory"], values["maxmemory-policy"], values["save"]) == (
            "67108864",
            "allkeys-lru",
            "900 1",
        )
    assert "maxmemory 64mb" in (Path(state.dir) / "node-1" / "redis.conf").read_text()

    hosts = load_inventory(inventory).hosts
    for host in hosts:
        restart(host, password)
    after = snapshot(state)
    assert {name: values["maxmemory-policy"] for name, values in after.items()} == {
        "node-1": "allkeys-lru",
        "node-2": "allkeys-lru",
    }
    assert after["node-1"]["maxmemory"] == "67108864"
    again = redisops("-i", inventory, "config", "diff", "--fail-on-drift")
    assert again.exit_code == 0, again.stdout

    records = log_records(log)  # hosts are applied in parallel: any order between them
    assert sorted((r["host"], r["setting"], r["old"], r["new"], r["outcome"]) for r in records) == [
        ("node-1", "maxmemory", "0", "64mb", "applied"),
        ("node-1", "maxmemory-policy", "noeviction", "allkeys-lru", "applied"),
        ("node-1", "save", "3600 1 300 100 60 10000", "900 1", "applied"),
        ("node-2", "maxmemory", "0", "64mb", "applied"),
        ("node-2", "maxmemory-policy", "noeviction", "allkeys-lru", "applied"),
        ("node-2", "save", "3600 1 300 100 60 10000", "900 1", "applied"),
    ]
    assert {r["who"] for r in records} == {operator()}
    assert password not in log.read_text() + run.stdout + run.stderr


def test_dry_run_and_the_confirmation_rules(make_lab, tmp_path):
    state = make_lab(replicas=1)
    inventory = state.inventory_path
    log = tmp_path / "changes.jsonl"
    before = snapshot(state)
    change = ("-i", inventory, "config", "apply", "--set", "hz=20", "--audit-log", str(log))

    dry = redisops(*change, "--dry-run")
    assert dry.exit_code == 0
    assert has_row(dry.stdout, "node-2", "hz", "10", "20", "planned")
    assert "dry run: nothing was changed" in dry.stderr
    off_terminal = redisops(*change, env={"REDISOPS_INTERACTIVE": "0"})
    assert off_terminal.exit_code == 3
    assert "not on a terminal and --yes not given" in off_terminal.stderr
    declined = redisops(*change, input="n\n", env={"REDISOPS_INTERACTIVE": "1"})
    assert declined.exit_code == 3
    assert snapshot(state) == before
    assert not log.exists() or log.read_text() == ""

    accepted = redisops(*change, input="y\n", env={"REDISOPS_INTERACTIVE": "1"})
    assert accepted.exit_code == 0, accepted.stderr
    assert {values["hz"] for values in snapshot(state).values()} == {"20"}
    nothing_left = redisops(*change, "--yes")
    assert nothing_left.exit_code == 0
    assert "nothing to change (1 already set)" in nothing_left.stdout


def test_one_bad_value_among_several_changes_nothing(make_lab, tmp_path):
    state = make_lab(replicas=1)
    log = tmp_path / "changes.jsonl"
    before = snapshot(state)
    run = redisops(
        "-i", state.inventory_path, "-o", "json", "config", "apply", "--yes",
        "--audit-log", str(log),
        "--set", "maxmemory=32mb", "--set", "slowlog-max-len=512",
        "--set", "maxmemory-policy=not-a-policy",
    )  # fmt: skip
    assert run.exit_code == 1
    assert snapshot(state) == before
    document = run.json()
    # The first host takes the change alone: its rejection stops the apply there.
    assert [r["data"]["outcome"] for r in document["results"]] == ["rejected", "not applied"]
    assert "nothing was changed" in document["results"][0]["error"]
    assert document["results"][1]["error"] == "not applied: node-1 failed first"
    assert document["summary"]["outcome"] == "rolled back"
    assert {(r["host"], r["outcome"]) for r in log_records(log)} == {("node-1", "rejected")}
    assert run.stderr.splitlines()[-1] == (
        "error: config apply failed on node-1; 0 host(s) set back: every host holds its old values"
    )


def test_wrong_read_back_rolls_the_host_back(make_lab, tmp_path):
    state = make_lab()
    log = tmp_path / "changes.jsonl"
    config_file = Path(state.dir) / "node-1" / "redis.conf"
    config_before = config_file.read_text()
    before = snapshot(state)
    # Redis accepts hz 1000 but caps it at 500.
    run = redisops(
        "-i", state.inventory_path, "config", "apply", "--yes", "--audit-log", str(log),
        "--set", "maxmemory=32mb", "--set", "hz=1000",
    )  # fmt: skip
    assert run.exit_code == 1
    assert "hz read back as '500', not '1000'" in run.stdout
    assert "rolled back: every setting holds its old value again" in run.stdout
    assert snapshot(state) == before
    assert config_file.read_text() == config_before
    assert [r["outcome"] for r in log_records(log)] == ["rolled back", "rolled back"]


@pytest.mark.parametrize(
    ("assignment", "force"),
    [
        ("dir=/tmp", False),
        ("dbfilename=evil.rdb", False),
        ("protected-mode=no", False),
        ("no-such-setting=1", True),
        ("requirepass=new-password", True),
        ("masterauth=new-password", True),
    ],
)
def test_dangerous_unknown_and_secret_settings_are_refused(make_lab, tmp_path, assignment, force):
    state = make_lab()
    before = snapshot(state)
    options = ["--force"] if force else []
    run = redisops(
        "-i", state.inventory_path, "config", "apply", "--yes", *options,
        "--audit-log", str(tmp_path / "changes.jsonl"),
        "--set", "hz=20", "--set", assignment,
    )  # fmt: skip
    assert run.exit_code == 3
    setting = assignment.split("=")[0]
    assert f"refused: {setting} on node-1; nothing was changed" in run.stderr
    assert has_row(run.stdout, "node-1", setting, "-", "-", "refused:")  # the plan is shown
    assert snapshot(state) == before
    assert "new-password" not in run.stdout + run.stderr


def test_forced_protected_config_is_still_refused_by_redis(make_lab, tmp_path):
    state = make_lab()
    node = clients(state)["node-1"]
    before = node.config_get("dir")["dir"]
    run = redisops(
        "-i", state.inventory_path, "config", "apply", "--yes", "--force",
        "--audit-log", str(tmp_path / "changes.jsonl"), "--set", f"dir={tmp_path}",
    )  # fmt: skip
    # Found while planning (a CONFIG SET of the value it holds), before any host is touched.
    assert run.exit_code == 3
    assert run.stderr.splitlines()[-3:-1] == [
        "error: node-1: CONFIG SET: Redis refuses it here: CONFIG SET failed (possibly related "
        "to argument 'dir') - can't set protected config",
        "error: refused: CONFIG SET on node-1; nothing was changed",
    ]
    assert node.config_get("dir")["dir"] == before
    assert not (tmp_path / "changes.jsonl").exists()


def test_server_without_a_config_file_is_changed_but_not_persisted(tmp_path):
    process, port = start_redis_server(tmp_path)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        f"all:\n  hosts:\n    plain: {{host: 127.0.0.1, port: {port}, connection: local}}\n"
    )
    try:
        run = redisops(
            "-i", str(inventory), "-o", "json", "config", "apply", "--yes",
            "--audit-log", str(tmp_path / "log.jsonl"), "--set", "maxmemory=16mb",
        )  # fmt: skip
        client = build_client("127.0.0.1", port, password=None, timeout=5, decode=True)
        assert client.config_get("maxmemory")["maxmemory"] == str(16 * 1024 * 1024)
        client.close()
    finally:
        process.kill()
        process.wait(timeout=10)
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["outcome"], data["persisted"]) == ("applied", False)
    assert data["note"] == "no config file to rewrite: the change lasts until Redis restarts"
    assert log_records(tmp_path / "log.jsonl")[0]["outcome"] == "applied, not persisted"


def test_audit_log_defaults_to_the_state_dir(make_lab, tmp_path, monkeypatch, isolated_environment):
    state = make_lab()
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    run = redisops("-i", state.inventory_path, "config", "apply", "--yes", "--set", "hz=15")
    assert run.exit_code == 0, run.stderr
    default = isolated_environment / ".local" / "state" / "redisops" / "config-changes.jsonl"
    assert log_records(default)[0]["new"] == "15"
    assert default.stat().st_mode & 0o777 == 0o600

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    redisops("-i", state.inventory_path, "config", "apply", "--yes", "--set", "hz=16")
    assert log_records(tmp_path / "state" / "redisops" / "config-changes.jsonl")[0]["new"] == "16"


def test_plan_on_the_shared_lab_skips_sentinels(lab, lab_password):
    run = redisops(
        "-i", lab.inventory_path, "-o", "json", "config", "apply", "--dry-run",
        "--set", "maxmemory=1gb", "--set", "requirepass=whatever",
    )  # fmt: skip
    assert run.exit_code == 3
    document = run.json()
    assert document["summary"]["sentinels_skipped"] == ["sentinel-1", "sentinel-2", "sentinel-3"]
    plan = document["results"][0]["data"]
    assert plan["changes"] == [{"setting": "maxmemory", "old": "0", "new": "1gb", "danger": None}]
    assert plan["refused"][0]["setting"] == "requirepass"
    assert lab_password not in run.stdout + run.stderr
