"""Every exit code of DESIGN.md's table, for every command group, each pinned to its cause.

One parametrised case per (group, code, cause), the way httpie tests each ExitStatus: 0 all
well, 1 a host failed or a finding/flag at or above --fail-on, 2 a usage error, 3 a refusal.
Reads use the shared lab; what changes data works on a one-node lab of this module's own.
inventory, lab and memory change nothing on a server and have no refusal: the last test
checks that none of their commands takes --yes (so none can ask, nor refuse).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from redisops.errors import ExitCode
from redisops.exitcode import exit_code
from redisops.lab.sandbox import lab_down
from redisops.results import HostResult
from tests.cli_helpers import lab_inventory_with, redisops
from tests.plugins.lab import start_lab

OFF_TERMINAL = {"REDISOPS_INTERACTIVE": "0"}


class Case(NamedTuple):
    group: str
    code: ExitCode
    cause: str
    args: tuple[str, ...]  # {inv}, {dead}, {own}, {dir}, {tmp}, {playbook:NAME} are filled in
    says: str  # in stderr


CASES = [
    # --- inventory
    Case(
        "inventory",
        ExitCode.OK,
        "every host answers",
        ("-i", "{inv}", "inventory", "check"),
        "6 of 6 hosts ok",
    ),
    Case(
        "inventory",
        ExitCode.FAILED,
        "a host is down",
        ("-i", "{dead}", "-l", "node-1,dead", "inventory", "check"),
        "1 failed",
    ),
    Case(
        "inventory",
        ExitCode.USAGE,
        "--limit matches nothing",
        ("-i", "{inv}", "-l", "nowhere", "inventory", "list"),
        "error: ",
    ),
    # --- lab
    Case(
        "lab",
        ExitCode.OK,
        "every process runs",
        ("lab", "status", "--dir", "{dir}"),
        "6 of 6 processes ok",
    ),
    Case(
        "lab",
        ExitCode.FAILED,
        "no lab in the folder",
        ("lab", "status", "--dir", "{tmp}"),
        "error: ",
    ),
    Case(
        "lab",
        ExitCode.USAGE,
        "an option out of range",
        ("lab", "up", "--dir", "{tmp}", "--replicas", "99"),
        "error: ",
    ),
    # --- memory
    Case(
        "memory",
        ExitCode.OK,
        "every host answers",
        ("-i", "{inv}", "memory", "summary"),
        "3 of 3 hosts ok",
    ),
    Case(
        "memory",
        ExitCode.FAILED,
        "a host is down",
        ("-i", "{dead}", "-l", "node-1,dead", "memory", "summary"),
        "1 failed",
    ),
    Case(
        "memory",
        ExitCode.USAGE,
        "an unknown --fail-on",
        ("-i", "{inv}", "memory", "summary", "--fail-on", "bogus"),
        "error: ",
    ),
    # --- slowlog
    Case(
        "slowlog",
        ExitCode.OK,
        "every host read",
        ("-i", "{inv}", "slowlog", "triage"),
        "3 of 3 hosts ok",
    ),
    Case(
        "slowlog",
        ExitCode.OK,
        "a dry run",
        ("-i", "{inv}", "slowlog", "reset", "--dry-run"),
        "dry run: nothing was reset",
    ),
    Case(
        "slowlog",
        ExitCode.FAILED,
        "a host is down",
        ("-i", "{dead}", "-l", "node-1,dead", "slowlog", "triage"),
        "1 failed",
    ),
    Case(
        "slowlog",
        ExitCode.USAGE,
        "an unreadable --since",
        ("-i", "{inv}", "slowlog", "triage", "--since", "soon"),
        "error: ",
    ),
    Case(
        "slowlog",
        ExitCode.REFUSED,
        "no --yes off a terminal",
        ("-i", "{own}", "slowlog", "reset"),
        "Refused: not on a terminal",
    ),
    # --- backup
    Case(
        "backup",
        ExitCode.OK,
        "a verified backup",
        ("-i", "{own}", "backup", "run", "--dest", "{tmp}/b"),
        "1 of 1 hosts ok",
    ),
    Case(
        "backup",
        ExitCode.FAILED,
        "a host is down",
        ("-i", "{dead}", "-l", "dead", "backup", "run", "--dest", "{tmp}/b"),
        "1 failed",
    ),
    Case(
        "backup",
        ExitCode.USAGE,
        "neither an id nor --all",
        ("-i", "{own}", "backup", "verify", "--dest", "{tmp}"),
        "error: give a backup id or --all",
    ),
    Case(
        "backup",
        ExitCode.REFUSED,
        "a restore without --yes off a terminal",
        ("-i", "{own}", "-l", "node-1", "backup", "restore", "latest", "--dest", "{backups}"),
        "Refused: not on a terminal",
    ),
    Case(
        "backup",
        ExitCode.REFUSED,
        "a restore onto a master with replicas",
        (
            "-i",
            "{inv}",
            "-l",
            "node-1",
            "backup",
            "restore",
            "latest",
            "--dest",
            "{backups}",
            "--dry-run",
        ),
        "node-1 is a master with 2 connected replica(s)",
    ),
    # --- sentinel
    Case(
        "sentinel",
        ExitCode.OK,
        "a healthy topology",
        ("-i", "{inv}", "-l", "sentinels", "sentinel", "status"),
        "3 of 3 sentinels ok",
    ),
    Case(
        "sentinel",
        ExitCode.OK,
        "a drill's dry run",
        ("-i", "{inv}", "-l", "sentinels", "sentinel", "drill", "--master", "lab", "--dry-run"),
        "dry run: nothing was triggered",
    ),
    Case(
        "sentinel",
        ExitCode.FAILED,
        "a sentinel is down",
        ("-i", "{dead}", "-l", "sentinels,dead-sentinel", "sentinel", "status"),
        "1 failed",
    ),
    Case(
        "sentinel",
        ExitCode.USAGE,
        "a drill without --master",
        ("-i", "{inv}", "-l", "sentinels", "sentinel", "drill"),
        "error: --master NAME is required",
    ),
    Case(
        "sentinel",
        ExitCode.REFUSED,
        "a drill without --yes off a terminal",
        ("-i", "{inv}", "-l", "sentinels", "sentinel", "drill", "--master", "lab"),
        "Refused: not on a terminal",
    ),
    Case(
        "sentinel",
        ExitCode.REFUSED,
        "a failed pre-check",
        (
            "-i",
            "{dead}",
            "-l",
            "sentinels,dead-sentinel",
            "sentinel",
            "drill",
            "--master",
            "lab",
            "--dry-run",
        ),
        "error: drill refused, nothing was triggered",
    ),
    # --- cluster ({cluster}: a lab cluster of 3 masters without replicas, started lazily)
    Case(
        "cluster",
        ExitCode.OK,
        "an empty drill history",
        ("-i", "{cluster}", "cluster", "drill", "--history", "--history-file", "{tmp}/d.jsonl"),
        "no cluster drills recorded in ",
    ),
    Case(
        "cluster",
        ExitCode.FAILED,
        "a shard without a replica",
        ("-i", "{cluster}", "cluster", "status"),
        "warning: unhealthy: redis",
    ),
    Case(
        "cluster",
        ExitCode.REFUSED,
        "a drill on a cluster whose shard has no replica",
        ("-i", "{cluster}", "cluster", "drill", "--shard", "shard-1", "--yes"),
        "error: drill refused, nothing was triggered: cluster healthy: ",
    ),
    Case(
        "cluster",
        ExitCode.USAGE,
        "a drill naming no shard",
        ("-i", "{cluster}", "cluster", "drill", "--dry-run"),
        "error: name the shard to drill: --shard ID or --node NAME (or select one",
    ),
    # --- config
    Case(
        "config",
        ExitCode.OK,
        "a dry run",
        ("-i", "{inv}", "config", "apply", "--set", "hz=10", "--dry-run"),
        "dry run: nothing was changed",
    ),
    Case(
        "config",
        ExitCode.FAILED,
        "a finding at --fail-on",
        ("-i", "{inv}", "config", "audit", "--rate-window", "0", "--fail-on", "warning"),
        "--fail-on warning",
    ),
    Case(
        "config",
        ExitCode.FAILED,
        "a host is down",
        ("-i", "{dead}", "-l", "node-1,dead", "config", "diff"),
        "1 failed",
    ),
    Case(
        "config",
        ExitCode.USAGE,
        "a --set without a value",
        ("-i", "{inv}", "config", "apply", "--set", "hz"),
        "error: ",
    ),
    Case(
        "config",
        ExitCode.REFUSED,
        "a dangerous setting without --force",
        (
            "-i",
            "{own}",
            "config",
            "apply",
            "--yes",
            "--set",
            "dir=/tmp",
            "--audit-log",
            "{tmp}/log",
        ),
        "error: refused: dir on node-1; nothing was changed",
    ),
    # --- playbook
    Case(
        "playbook",
        ExitCode.OK,
        "every step ok",
        ("-i", "{inv}", "playbook", "run", "{playbook:ok}"),
        "",
    ),
    Case(
        "playbook",
        ExitCode.FAILED,
        "a step failed",
        ("-i", "{dead}", "-l", "node-1,dead", "playbook", "run", "{playbook:ok}"),
        "",
    ),
    Case(
        "playbook",
        ExitCode.USAGE,
        "an unknown command in a step",
        ("-i", "{inv}", "playbook", "run", "{playbook:unknown}"),
        "unknown command",
    ),
    Case(
        "playbook",
        ExitCode.REFUSED,
        "a confirm step off a terminal",
        ("-i", "{inv}", "playbook", "run", "{playbook:confirm}"),
        "",
    ),
]

PLAYBOOKS = {
    "ok": "name: ok\nsteps:\n  - id: check\n    run: inventory check\n",
    "unknown": "name: unknown\nsteps:\n  - id: x\n    run: nowhere list\n",
    "confirm": "name: confirm\nsteps:\n  - confirm: Go ahead?\n"
    "  - id: check\n    run: inventory list\n",
}


OK_ROW = HostResult("a", "127.0.0.1:1", True, None, {})
FAILED_ROW = HostResult("b", "127.0.0.1:2", False, "cannot connect", None)


@pytest.mark.parametrize(
    ("rows", "options", "code"),
    [
        ([OK_ROW], {}, ExitCode.OK),
        ([], {}, ExitCode.OK),
        ([OK_ROW, FAILED_ROW], {}, ExitCode.FAILED),
        ([OK_ROW], {"flagged": ["a"]}, ExitCode.FAILED),
        ([OK_ROW], {"flagged": True}, ExitCode.FAILED),
        ([OK_ROW], {"flagged": []}, ExitCode.OK),
        ([OK_ROW], {"failed": True}, ExitCode.FAILED),
        ([FAILED_ROW], {"refused": True}, ExitCode.REFUSED),
    ],
    ids=["ok", "no-rows", "a-row-failed", "flagged-hosts", "flagged", "nothing-flagged",
         "failed", "refused-wins"],
)  # fmt: skip
def test_exit_code_from_results(rows, options, code) -> None:
    assert exit_code(rows, **options) == code


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A one-node lab this module may change (its node-1 is the shared lab's namesake, so its
    backup is one `restore latest` finds for either)."""
    state = start_lab(tmp_path_factory.mktemp("own"), replicas=0, sentinels=0, seed_keys=20)
    try:
        yield Path(state.inventory_path)
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(scope="module")
def places(lab, own, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("exit-codes")
    dead = lab_inventory_with(
        lab,
        folder,
        {
            "dead": {"host": "127.0.0.1", "port": closed_port(), "connection": "local"},
            "dead-sentinel": {
                "host": "127.0.0.1",
                "port": closed_port(),
                "role": "sentinel",
                "connection": "local",
            },
        },
    )
    backups = folder / "backups"
    taken = redisops("-i", str(own), "backup", "run", "--dest", str(backups))
    assert taken.exit_code == 0, taken.stderr
    filled = {
        "inv": lab.inventory_path,
        "dead": dead,
        "own": str(own),
        "dir": lab.dir,
        "backups": str(backups),
    }
    for name, text in PLAYBOOKS.items():
        path = folder / f"{name}.yaml"
        path.write_text(text)
        filled[f"playbook:{name}"] = str(path)
    return filled


@pytest.fixture(scope="module")
def cluster_inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster lab of 3 masters and no replica (no shard can fail over)."""
    from tests.plugins.lab import start_cluster_lab

    state = start_cluster_lab(tmp_path_factory.mktemp("cluster"), shards=3, replicas=0)
    try:
        yield state.inventory_path
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.group}-{int(c.code)}-{c.cause.replace(' ', '_')}" for c in CASES]
)
def test_exit_code(
    case: Case, places: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    fill = places | {"tmp": str(tmp_path)}
    if any("{cluster}" in arg for arg in case.args):
        fill["cluster"] = request.getfixturevalue("cluster_inventory")
    args = [_filled(arg, fill) for arg in case.args]
    run = redisops(*args, env=OFF_TERMINAL)
    assert run.exit_code == case.code, f"{args}\n{run.stdout}\n{run.stderr}"
    assert case.says in run.stderr


def _filled(arg: str, fill: dict[str, str]) -> str:
    if arg.startswith("{playbook:"):
        return fill[arg[1:-1]]
    for name, value in fill.items():
        arg = arg.replace("{" + name + "}", value)
    return arg


def test_every_group_and_code_is_covered() -> None:
    covered = {(case.group, case.code) for case in CASES}
    for group in (
        "inventory",
        "lab",
        "memory",
        "slowlog",
        "backup",
        "sentinel",
        "config",
        "playbook",
        "cluster",
    ):
        codes = (0, 1, 2) if group in NO_REFUSAL else (0, 1, 2, 3)
        assert {(group, code) for code in codes} <= covered, group


NO_REFUSAL = ("inventory", "lab", "memory")


@pytest.mark.parametrize("group", NO_REFUSAL)
def test_groups_without_a_refusal_change_nothing(group: str) -> None:
    """No command of these groups takes --yes: none asks, so none can exit 3 (a change that
    could must go through the change engine, and take --yes)."""
    import importlib

    import typer

    from redisops.cli.groups import COMMAND_GROUPS

    click_group = typer.main.get_group(importlib.import_module(COMMAND_GROUPS[group][0]).app)
    options = {
        name
        for command in click_group.commands.values()
        for param in command.params
        for name in param.opts
    }
    assert "--yes" not in options


# --- cluster rebalance and drain: their own 3-master cluster, 60 keys on node-1's slots only


@pytest.fixture(scope="module")
def skewed_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """node-1 holds 60 keys of 2 KB (the others none): unbalanced by keys, keys above 1kb."""
    from tests.plugins.lab import start_cluster_lab
    from tests.test_cluster_rebalance import keys_in_slots, write

    state = start_cluster_lab(tmp_path_factory.mktemp("cluster-exit"), shards=3, replicas=0)
    try:
        write(state, keys_in_slots(state, 0, 5460, 60, 2000, "k"))
        yield state.inventory_path
    finally:
        lab_down(Path(state.dir), purge=True)


CLUSTER_CASES = [
    Case(
        "cluster",
        ExitCode.OK,
        "a rebalance dry run",
        ("cluster", "rebalance", "--by", "keys", "--dry-run"),
        "dry run: nothing was moved",
    ),
    Case(
        "cluster",
        ExitCode.USAGE,
        "drain of a node the cluster does not have",
        ("cluster", "drain", "nowhere", "--yes"),
        "error: no node 'nowhere' in cluster redis",
    ),
    Case(
        "cluster",
        ExitCode.REFUSED,
        "a key above --max-key-size",
        ("cluster", "rebalance", "--by", "keys", "--max-key-size", "1kb", "--yes"),
        "above --max-key-size 1kb would block both servers",
    ),
    Case(
        "cluster",
        ExitCode.REFUSED,
        "a rebalance off a terminal without --yes",
        ("cluster", "rebalance", "--by", "keys"),
        "Refused: not on a terminal and --yes not given",
    ),
    Case(
        "cluster",
        ExitCode.REFUSED,
        "a drain off a terminal without --yes",
        ("cluster", "drain", "node-2"),
        "Refused: not on a terminal and --yes not given",
    ),
]


@pytest.mark.parametrize(
    "case",
    CLUSTER_CASES,
    ids=[f"{c.group}-{int(c.code)}-{c.cause.replace(' ', '_')}" for c in CLUSTER_CASES],
)
def test_cluster_change_exit_code(case: Case, skewed_cluster: str) -> None:
    run = redisops("-i", skewed_cluster, *case.args, env=OFF_TERMINAL)
    assert run.exit_code == case.code, f"{case.args}\n{run.stdout}\n{run.stderr}"
    assert case.says in run.stderr


# --- cluster add-node / cluster restore: on a cluster lab of their own (3 masters), with the
# one-node lab's node-1 (20 keys, not cluster-enabled, another password) as a host to add.
CLUSTER_CHANGE_CASES = [
    Case(
        "cluster",
        ExitCode.REFUSED,
        "add-node: the new node holds keys and is not cluster-enabled",
        ("-i", "{cluster}", "cluster", "add-node", "spare", "--cluster", "redis", "--yes"),
        "spare is not cluster-enabled",
    ),
    Case(
        "cluster",
        ExitCode.REFUSED,
        "add-node: the new node's password is not the cluster's",
        ("-i", "{cluster}", "cluster", "add-node", "spare", "--cluster", "redis", "--dry-run"),
        "spare's password in the inventory is not cluster redis's",
    ),
    Case(
        "cluster",
        ExitCode.REFUSED,
        "add-node: --replica-of names no master",
        (
            "-i",
            "{cluster}",
            "cluster",
            "add-node",
            "spare",
            "--cluster",
            "redis",
            "--replica-of",
            "nobody",
            "--dry-run",
        ),
        "--replica-of nobody: no master of cluster redis",
    ),
    Case(
        "cluster",
        ExitCode.USAGE,
        "add-node: --cluster names no cluster",
        ("-i", "{cluster}", "cluster", "add-node", "spare", "--cluster", "nowhere"),
        "error: ",
    ),
    Case(
        "cluster",
        ExitCode.USAGE,
        "restore: no such set",
        ("-i", "{cluster}", "cluster", "restore", "redis-20200101T000000Z", "--dest", "{tmp}"),
        "no cluster backup set 'redis-20200101T000000Z'",
    ),
]


@pytest.fixture(scope="module")
def cluster_places(own, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    import yaml

    from tests.plugins.lab import start_cluster_lab

    folder = tmp_path_factory.mktemp("exit-codes-cluster")
    state = start_cluster_lab(folder / "lab", replicas=0, seed_keys=0)
    try:
        data = yaml.safe_load(Path(state.inventory_path).read_text())
        node = yaml.safe_load(own.read_text())["all"]["children"]["redis"]["hosts"]["node-1"]
        spare = {
            "host": node["host"],
            "port": node["port"],
            "password_file": str(own.parent / "secret"),
        }
        data["all"]["children"]["spares"] = {"hosts": {"spare": spare}}
        path = folder / "inventory.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        yield {"cluster": str(path)}
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.mark.parametrize(
    "case",
    CLUSTER_CHANGE_CASES,
    ids=[f"{c.group}-{int(c.code)}-{c.cause.replace(' ', '_')}" for c in CLUSTER_CHANGE_CASES],
)
def test_cluster_addnode_restore_exit_code(
    case: Case, cluster_places: dict[str, str], tmp_path: Path
):
    fill = cluster_places | {"tmp": str(tmp_path)}
    args = [_filled(arg, fill) for arg in case.args]
    run = redisops(*args, env=OFF_TERMINAL)
    assert run.exit_code == case.code, f"{args}\n{run.stdout}\n{run.stderr}"
    assert case.says in run.stderr
