"""Running the CLI in tests: in-process through Typer's runner, or as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from typer.testing import CliRunner

from redisops.cli.app import app


@dataclass(frozen=True)
class Run:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


def redisops(*args: str, input: str | None = None, env: dict | None = None) -> Run:
    """Invoke the CLI in-process; stdout and stderr are kept apart, as cron sees them."""
    result = CliRunner().invoke(app, list(args), input=input, env=env, catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def redisops_process(*args: str, timeout: float = 60, env: dict | None = None) -> Run:
    """Run `python -m redisops` as a real process (what cron and shell scripts do)."""
    completed = subprocess.run(
        [sys.executable, "-m", "redisops", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


def lab_inventory_with(lab, folder: Path, extra_hosts: dict) -> str:
    """The lab's inventory plus some hosts of the test's own in group `extra`."""
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    data["all"]["children"]["extra"] = {"hosts": extra_hosts}
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)
