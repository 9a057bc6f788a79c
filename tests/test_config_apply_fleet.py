"""`config apply` across hosts is all or nothing (issue 21 item 6), on labs with a real ACL
user that may not run CONFIG on one node: refused before any host is touched when a host
cannot take the change; every changed host set back when one fails during the apply anyway."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from redisops.fleet.connection import build_client
from redisops.fleet.inventory import load_inventory
from tests.cli_helpers import Run, redisops
from tests.test_backup_redis6 import Redis6
from tests.test_config_apply import log_records, password_of, restart, snapshot
from tests.test_config_diff import clients

CHANGE = ("--set", "maxmemory=64mb", "--set", "maxmemory-policy=allkeys-lru")


def with_user(state, folder: Path, node: str, user: str, rules: list[str]) -> str:
    """Create ACL `user` (the lab's password, `rules`) on `node`; an inventory where the
    node is reached as that user."""
    password = password_of(state)
    port = next(p.port for p in state.processes if p.name == node)
    client = build_client("127.0.0.1", port, password=password, timeout=5)
    try:
        client.execute_command("ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", *rules)
    finally:
        client.close()
    data = yaml.safe_load(Path(state.inventory_path).read_text())
    data["all"]["children"]["redis"]["hosts"][node]["username"] = user
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def config_files(state) -> dict[str, str]:
    return {
        p.name: (Path(state.dir) / p.name / "redis.conf").read_text()
        for p in state.processes
        if p.role != "sentinel"
    }


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        # ACL DRYRUN answers for the user.
        (
            ["+@all", "-config|set"],
            "CONFIG SET: the ACL denies it to user 'ops': This user has no permissions to run "
            "the 'config|set' command",
        ),
        # The user may not run ACL DRYRUN either: the no-op CONFIG SET finds it.
        (
            ["+@all", "-config|set", "-acl"],
            "CONFIG SET: the ACL denies it to user 'ops': this user has no permissions to run "
            "the 'config|set' command",
        ),
        # CONFIG SET allowed, CONFIG REWRITE not: the change could not be persisted.
        (
            ["+@all", "-config|rewrite"],
            "CONFIG REWRITE: the ACL denies it to user 'ops': This user has no permissions to "
            "run the 'config|rewrite' command",
        ),
    ],
)
def test_a_host_denied_config_by_its_acl_refuses_the_whole_apply(make_lab, tmp_path, rules, reason):
    """Before: node-1 and node-2 were changed and persisted, node-3 failed, exit 1."""
    state = make_lab(replicas=2)
    inventory = with_user(state, tmp_path, "node-3", "ops", rules)
    before, files = snapshot(state), config_files(state)
    log = tmp_path / "changes.jsonl"

    run = redisops("-i", inventory, "config", "apply", "--yes", "--audit-log", str(log), *CHANGE)
    assert run.exit_code == 3, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    what = reason.split(":")[0]
    assert errors == [
        f"error: node-3: {reason}",
        f"error: refused: {what} on node-3; nothing was changed",
    ]
    assert run.stderr.splitlines()[-1] == (
        "hint: grant the inventory's user CONFIG SET and CONFIG REWRITE, or leave that host out"
    )
    assert snapshot(state) == before
    assert config_files(state) == files
    assert not log.exists()


PROMPT_SECONDS = 60


def run_confirming_after(
    action: Callable[[], None],
    *args: str,
    answered: Callable[[subprocess.Popen], None] | None = None,
) -> Run:
    """Run redisops as a real process that asks for confirmation; when the prompt shows, do
    `action` (a change of the fleet between plan and apply, at the one moment the command
    waits for the operator), then answer "y", then call `answered` with the process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "REDISOPS_INTERACTIVE": "1"},
    )
    assert process.stdin is not None and process.stderr is not None
    shown = b""
    deadline = time.monotonic() + PROMPT_SECONDS
    try:
        while b"[y/N]" not in shown:
            left = deadline - time.monotonic()
            assert left > 0, f"no confirmation prompt; stderr so far: {shown.decode()}"
            ready, _, _ = select.select([process.stderr], [], [], left)
            chunk = os.read(process.stderr.fileno(), 65536) if ready else b""
            assert chunk or not ready, f"redisops ended before asking: {shown.decode()}"
            shown += chunk
        action()
        process.stdin.write(b"y\n")
        process.stdin.flush()
        if answered is not None:
            answered(process)
        stdout, rest = process.communicate(timeout=PROMPT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    return Run(process.returncode, stdout.decode(), (shown + rest).decode())


def test_a_host_failing_during_the_apply_sets_every_other_host_back(make_lab, tmp_path):
    """node-3's user loses CONFIG SET after the plan: node-1 and node-2, already changed and
    rewritten, are set back (runtime and config file); one outcome, exit 1."""
    state = make_lab(replicas=2)
    password = password_of(state)
    inventory = with_user(state, tmp_path, "node-3", "ops", ["+@all"])
    before = snapshot(state)
    log = tmp_path / "changes.jsonl"
    node3 = clients(state)["node-3"]

    def deny() -> None:
        node3.execute_command("ACL", "SETUSER", "ops", "-config|set")

    run = run_confirming_after(
        deny, "-i", inventory, "-o", "json", "config", "apply", "--audit-log", str(log), *CHANGE
    )
    assert run.exit_code == 1, run.stderr
    document = run.json()
    assert document["summary"]["outcome"] == "rolled back"
    rows = {r["host"]: (r["ok"], r["data"]["outcome"]) for r in document["results"]}
    assert rows == {
        "node-1": (False, "rolled back"),
        "node-2": (False, "rolled back"),
        "node-3": (False, "rejected"),
    }
    assert document["results"][0]["error"].startswith("set back because node-3 failed (")
    assert document["results"][0]["error"].endswith(
        "; rolled back: every setting holds its old value again"
    )
    assert document["results"][2]["error"] == (
        "Redis rejected the change: this user has no permissions to run the 'config|set' "
        "command; nothing was changed"
    )
    # The prompt has no newline of its own (the answer came on stdin).
    assert run.stderr.splitlines()[-1].endswith(
        "error: config apply failed on node-3; 2 host(s) set back: every host holds its old values"
    )
    assert snapshot(state) == before
    records = sorted((r["host"], r["setting"], r["outcome"]) for r in log_records(log))
    assert records == [
        ("node-1", "maxmemory", "applied"),
        ("node-1", "maxmemory", "rolled back"),
        ("node-1", "maxmemory-policy", "applied"),
        ("node-1", "maxmemory-policy", "rolled back"),
        ("node-2", "maxmemory", "applied"),
        ("node-2", "maxmemory", "rolled back"),
        ("node-2", "maxmemory-policy", "applied"),
        ("node-2", "maxmemory-policy", "rolled back"),
        ("node-3", "maxmemory", "rejected"),
        ("node-3", "maxmemory-policy", "rejected"),
    ]
    # The rollback was rewritten too: a restart comes back with the old values.
    node1 = next(h for h in load_inventory(inventory).hosts if h.name == "node-1")
    restart(node1, password)
    assert snapshot(state)["node-1"] == before["node-1"]


def test_a_host_that_cannot_be_planned_refuses_the_whole_apply(make_lab, tmp_path):
    """A user that may not even read the configuration: before, the others were changed."""
    state = make_lab(replicas=2)
    inventory = with_user(state, tmp_path, "node-3", "ops", ["+@all", "-config"])
    before, files = snapshot(state), config_files(state)
    run = redisops(
        "-i", inventory, "config", "apply", "--yes",
        "--audit-log", str(tmp_path / "changes.jsonl"), *CHANGE,
    )  # fmt: skip
    assert run.exit_code == 3
    port = next(p.port for p in state.processes if p.name == "node-3")
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: node-3: 127.0.0.1:{port}: the ACL denies it to user 'ops': Command # 1 "
        "(CONFIG GET maxmemory) of pipeline caused error: this user has no permissions to run "
        "the 'config|get' command",
        "error: refused: node-3 could not be planned; nothing was changed",
    ]
    assert run.stderr.splitlines()[-1] == (
        "hint: config apply changes every host or none: fix node-3, or leave it out with "
        "-l '!node-3'"
    )
    assert (snapshot(state), config_files(state)) == (before, files)


def test_an_interrupt_during_the_apply_sets_back_the_hosts_changed(make_lab, tmp_path):
    """SIGINT once node-1 holds the change while node-2 and node-3 are paused: every host
    changed is set back before redisops exits 130."""
    state = make_lab(replicas=2)
    before = snapshot(state)
    log = tmp_path / "changes.jsonl"
    nodes = clients(state)

    def pause_the_others() -> None:
        for name in ("node-2", "node-3"):
            nodes[name].execute_command("CLIENT", "PAUSE", "3000", "ALL")

    def interrupt_once_node_1_changed(process: subprocess.Popen) -> None:
        deadline = time.monotonic() + PROMPT_SECONDS
        while nodes["node-1"].config_get("maxmemory")["maxmemory"] == "0":
            assert time.monotonic() < deadline, "node-1 was never changed"
            assert process.poll() is None, "redisops ended before node-1 was changed"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)

    run = run_confirming_after(
        pause_the_others,
        "-i", state.inventory_path, "--timeout", "10", "config", "apply",
        "--audit-log", str(log), *CHANGE,
        answered=interrupt_once_node_1_changed,
    )  # fmt: skip
    assert run.exit_code == 130, run.stderr
    # After the prompt, which has no newline of its own; the paused hosts may or may not have
    # started before the signal, so the count is 1 or 3.
    last = run.stderr.splitlines()[-1].split("[y/N]:")[-1]
    assert last in (
        "interrupted: SIGINT; 1 of 3 hosts changed, all set back",
        "interrupted: SIGINT; 3 of 3 hosts changed, all set back",
    ), last
    assert snapshot(state) == before
    outcomes = {(r["host"], r["outcome"]) for r in log_records(log)}
    assert ("node-1", "applied") in outcomes and ("node-1", "rolled back") in outcomes


@pytest.fixture
def redis6(tmp_path) -> Iterator[Redis6]:
    folder = tmp_path / "redis6"
    folder.mkdir()
    server = Redis6(folder, appendonly=False)
    try:
        yield server
    finally:
        server.stop()


def test_redis_6_2_applies_one_setting_and_refuses_several(redis6, tmp_path):
    """Redis 6.2 has no ACL DRYRUN (the probe answers) and takes one setting per CONFIG SET:
    several could not change all or nothing, so they are refused up front (was: rejected
    half-way, exit 1)."""
    server = redis6
    client = server.client()
    log = ("--audit-log", str(tmp_path / "changes.jsonl"))
    one = redisops("-i", str(server.inventory), "config", "apply", "--yes", *log, "--set", "hz=12")
    assert one.exit_code == 0, one.stderr
    assert client.config_get("hz")["hz"] == "12"
    several = redisops("-i", str(server.inventory), "config", "apply", "--yes", *log,
                       "--set", "hz=13", "--set", "maxmemory=10mb")  # fmt: skip
    assert several.exit_code == 3
    assert [line for line in several.stderr.splitlines() if line.startswith("error: ")] == [
        "error: old: CONFIG SET: this server takes one setting per CONFIG SET (before Redis 7), "
        "so several cannot change all or nothing: apply one --set at a time",
        "error: refused: CONFIG SET on old; nothing was changed",
    ]
    assert (client.config_get("hz")["hz"], client.config_get("maxmemory")["maxmemory"]) == (
        "12",
        "0",
    )
