"""`redisops lab up | status | down` through the CLI, and the issue's end-to-end demo."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.cli_helpers import redisops, redisops_process
from tests.plugins.lab import free_base_port


def test_lab_up_then_inventory_check_shows_six_healthy_hosts(tmp_path):
    lab_dir = tmp_path / "x"
    base = str(free_base_port(2, 3))
    try:
        up = redisops_process("lab", "up", "--dir", str(lab_dir), "--base-port", base)
        assert up.exit_code == 0, up.stderr
        inventory = str(lab_dir / "inventory.yaml")
        check = redisops_process("-i", inventory, "-o", "json", "inventory", "check")
        assert check.exit_code == 0, check.stderr
        document = check.json()
        assert document["summary"] == {"hosts": 6, "ok": 6, "failed": 0}
        assert [r["data"]["role"] for r in document["results"]] == [
            "master", "replica", "replica", "sentinel", "sentinel", "sentinel",
        ]  # fmt: skip
        password = (lab_dir / "secret").read_text().strip()
        for run in (up, check):
            assert password not in run.stdout + run.stderr
    finally:
        down = redisops_process("lab", "down", "--dir", str(lab_dir), "--purge")
    assert down.exit_code == 0, down.stderr
    assert not lab_dir.exists()


def test_up_twice_status_down_status(tmp_path):
    lab_dir = str(tmp_path / "lab")
    base = str(free_base_port(1, 0))
    common = ("--dir", lab_dir)
    first = redisops("-o", "json", "lab", "up", *common, "--replicas", "1", "--sentinels", "0",
                     "--base-port", base, "--seed", "50")  # fmt: skip
    try:
        assert first.exit_code == 0, first.stderr
        rows = first.json()["results"]
        assert [(r["host"], r["data"]["role"], r["ok"]) for r in rows] == [
            ("node-1", "master", True),
            ("node-2", "replica", True),
        ]
        pids = [r["data"]["pid"] for r in rows]

        again = redisops("-o", "json", "lab", "up", *common, "--replicas", "1",
                         "--sentinels", "0", "--base-port", base)  # fmt: skip
        assert again.exit_code == 0
        assert again.stderr.startswith(f"warning: a lab is already running in {Path(lab_dir)}")
        assert [r["data"]["pid"] for r in again.json()["results"]] == pids

        status = redisops("lab", "status", *common)
        assert status.exit_code == 0
        assert [line.split()[:5] for line in status.stdout.splitlines()[1:]] == [
            ["node-1", f"127.0.0.1:{base}", "master", str(pids[0]), "running"],
            ["node-2", f"127.0.0.1:{int(base) + 1}", "replica", str(pids[1]), "running"],
        ]
        password = (Path(lab_dir) / "secret").read_text().strip()
        assert all(password not in run.stdout + run.stderr for run in (first, again, status))
    finally:
        down = redisops("lab", "down", *common)
    assert down.exit_code == 0
    after = redisops("-o", "json", "lab", "status", *common)
    assert after.exit_code == 1
    assert [(r["ok"], r["error"]) for r in after.json()["results"]] == [(False, "not running")] * 2
    assert (Path(lab_dir) / "node-1").is_dir()  # data kept without --purge
    assert redisops("lab", "down", *common, "--purge").exit_code == 0
    assert not Path(lab_dir).exists()


def test_port_in_use_is_a_clear_error(tmp_path):
    base = free_base_port(0, 0)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", base))
        holder.listen()
        run = redisops("lab", "up", "--dir", str(tmp_path / "lab"), "--replicas", "0",
                       "--sentinels", "0", "--base-port", str(base))  # fmt: skip
    assert run.exit_code == 1
    assert run.stderr.startswith(f"error: port {base} is already in use")
    assert run.stdout == ""


def test_status_of_a_folder_that_is_no_lab_is_an_error(tmp_path):
    run = redisops("lab", "status", "--dir", str(tmp_path))
    assert run.exit_code != 0
    assert run.stderr.startswith("error: ")
    assert "Traceback" not in run.stderr
