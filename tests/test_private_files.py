"""Files redisops writes are 0600 whatever the umask, and a password file other users can
read is warned about (refused with password_file_strict), on a real lab (issue 21 item 9)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from redisops.fleet.connection import build_client
from tests.cli_helpers import redisops_process


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which makes a plain open() 0644; redisops' processes inherit it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def inventory_with_password_file(lab, folder: Path, mode: int, *, strict: bool | None) -> str:
    """The lab's inventory reading a copy of its password from a file of `mode`."""
    secret = folder / "secret"
    shutil.copyfile(Path(lab.dir) / "secret", secret)
    secret.chmod(mode)
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    data["all"]["vars"]["password_file"] = str(secret)
    if strict is not None:
        data["all"]["vars"]["password_file_strict"] = strict
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_a_password_file_others_can_read_is_warned_about(lab, tmp_path):
    """Before: used without a word."""
    inventory = inventory_with_password_file(lab, tmp_path, 0o644, strict=None)
    run = redisops_process("-i", inventory, "-l", "redis", "inventory", "check")
    assert run.exit_code == 0, run.stderr
    secret = tmp_path / "secret"
    assert run.stderr.splitlines()[0] == (
        f"warning: password_file {secret} is open to other users (mode 0644; node-1 and 5 "
        f"more): chmod 600 {secret}"
    )
    private = inventory_with_password_file(lab, tmp_path, 0o600, strict=None)
    assert "warning" not in redisops_process("-i", private, "inventory", "check").stderr


def test_password_file_strict_refuses_a_file_others_can_read(lab, tmp_path, lab_password):
    inventory = inventory_with_password_file(lab, tmp_path, 0o640, strict=True)
    run = redisops_process("-i", inventory, "-l", "node-1,sentinel-1", "-o", "json",
                           "inventory", "check")  # fmt: skip
    assert run.exit_code == 1
    secret = tmp_path / "secret"
    assert [(r["host"], r["error"]) for r in run.json()["results"]] == [
        (name, f"password_file {secret} is open to other users (mode 0640): refused, "
         f"password_file_strict is set (hint: chmod 600 {secret})")
        for name in ("node-1", "sentinel-1")
    ]  # fmt: skip
    assert lab_password not in run.stdout + run.stderr
    secret.chmod(0o600)
    again = redisops_process("-i", inventory, "-l", "node-1", "inventory", "check")
    assert (again.exit_code, again.stderr.count("warning")) == (0, 0)


def test_keys_csv_is_private_under_umask_022(lab, lab_password, tmp_path, umask_022):
    """Before: 0644 (key names are data)."""
    master = build_client(
        "127.0.0.1", lab.processes[0].port, password=lab_password, timeout=5, decode=True
    )
    try:
        master.save()
        settings = master.config_get("dir") | master.config_get("dbfilename")
        rdb = Path(settings["dir"]) / settings["dbfilename"]
        keys = master.dbsize()
    finally:
        master.close()
    keys_csv = tmp_path / "keys.csv"
    keys_csv.write_text("an older file, world-readable\n")
    keys_csv.chmod(0o644)
    run = redisops_process("memory", "rdb", str(rdb), "--keys-csv", str(keys_csv))
    assert run.exit_code == 0, run.stderr
    assert mode_of(keys_csv) == 0o600
    assert len(keys_csv.read_text().splitlines()) == keys + 1  # the header
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.csv"]  # no temporary left


def test_playbook_export_is_private_under_umask_022(tmp_path, umask_022):
    """Before: 0644 (a run's record names hosts, keys and commands)."""
    playbook = tmp_path / "p.yaml"
    playbook.write_text("name: note\nsteps:\n  - note: hello\n")
    for name in ("run.html", "run.svg", "run.txt"):
        record = tmp_path / name
        run = redisops_process("-i", str(tmp_path / "none.yaml"), "playbook", "run",
                               str(playbook), "--export", str(record))  # fmt: skip
        assert run.exit_code == 0, run.stderr
        assert mode_of(record) == 0o600, name
        assert "hello" in record.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml", "run.html", "run.svg",
                                                          "run.txt"]  # fmt: skip
