"""The CLI shell: help, global options anywhere, the error boundary under -o json, and the
command lines redisops prints being pasteable (issue 20 items 6, 8, 9, 10; issue 21 items 7,
10)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer._click import Context

from redisops.cli.app import app
from redisops.cli.argv import arrange_arguments
from tests.cli_helpers import redisops, redisops_process

ROOT = typer.main.get_command(app)


def _commands() -> list[tuple[str, object]]:
    """(path, command) for the root, every group and every command."""
    found = []

    def walk(command, path: str) -> None:
        found.append((path, command))
        context = Context(command)
        for name in getattr(command, "list_commands", lambda _: [])(context):
            walk(command.get_command(context, name), f"{path} {name}")

    walk(ROOT, "redisops")
    return found


COMMANDS = _commands()
LEAVES = [(path, command) for path, command in COMMANDS if not hasattr(command, "list_commands")]


@pytest.fixture
def hosts_file(tmp_path) -> str:
    """An inventory of three hosts nobody has to reach (`inventory list` reads it only)."""
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "all:\n  children:\n"
        "    cache:\n      hosts:\n"
        "        cache-1: {host: 127.0.0.1, port: 1}\n"
        "        cache-2: {host: 127.0.0.1, port: 2}\n"
        "    queue:\n      hosts:\n"
        "        queue-1: {host: 127.0.0.1, port: 3}\n"
    )
    return str(path)


def _hosts(run) -> list[str]:
    return [r["host"] for r in run.json()["results"]]


# --- item 6: bare commands show their help --------------------------------------------------


def test_bare_redisops_prints_its_help_on_stdout_and_exits_0():
    run = redisops_process()
    assert run.exit_code == 0
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    assert lines[0] == "Usage: redisops [OPTIONS] COMMAND [ARGS]..."
    assert "Commands:" in lines and "Examples:" in lines
    assert "  -i, --inventory PATH" in run.stdout
    assert not any(line.startswith("error:") for line in lines)


def test_a_bare_group_prints_its_help_on_stderr_and_exits_2():
    run = redisops("memory")
    assert run.exit_code == 2
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert lines[0] == "Usage: redisops memory [OPTIONS] COMMAND [ARGS]..."
    assert "Commands:" in lines
    assert lines[-1] == "error: redisops memory needs a command: summary, report, rdb"
    assert len(lines) > 10  # the help, as written: one line per entry


def test_a_bare_group_under_json_also_prints_one_document():
    run = redisops("-o", "json", "backup")
    assert run.exit_code == 2
    document = run.json()
    assert document["ok"] is False
    assert document["command"] == "backup"
    assert document["error"].startswith("redisops backup needs a command: run, list, verify")


# --- item 8: global options anywhere, -l repeated --------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["inventory", "list", "-o", "json", "-i", "{inv}"],
        ["inventory", "-o", "json", "list", "--inventory", "{inv}"],
        ["-i", "{inv}", "inventory", "list", "--output=json"],
        ["inventory", "list", "-ojson", "-i{inv}", "-v", "--timeout", "3", "--parallel", "2"],
    ],
)
def test_global_options_are_accepted_after_the_command(hosts_file, args):
    run = redisops(*[arg.replace("{inv}", hosts_file) for arg in args])
    assert run.exit_code == 0, run.stderr
    assert _hosts(run) == ["cache-1", "cache-2", "queue-1"]


def test_limit_given_twice_adds_up(hosts_file):
    run = redisops("-i", hosts_file, "-l", "queue", "inventory", "list", "-l", "cache-2", "-ojson")
    assert run.exit_code == 0, run.stderr
    assert _hosts(run) == ["cache-2", "queue-1"]
    run = redisops(
        "-i", hosts_file, "-l", "cache", "-l", "!cache-1", "-o", "json", "inventory", "list"
    )
    assert _hosts(run) == ["cache-2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "json", "inventory", "list", "-o", "table"],
         "error: -o given twice ('json' and 'table')"),
        (["-i", "a.yaml", "inventory", "list", "--inventory", "b.yaml"],
         "error: --inventory given twice ('a.yaml' and 'b.yaml')"),
        (["--timeout", "3", "inventory", "list", "--timeout=4"],
         "error: --timeout given twice ('3' and '4')"),
    ],
)  # fmt: skip
def test_other_global_options_given_twice_are_refused(args, message):
    run = redisops(*args)
    assert run.exit_code == 2
    assert run.stderr.splitlines()[0] == message


def test_a_global_option_without_its_value_at_the_end_says_so():
    run = redisops("inventory", "list", "-l")
    assert (run.exit_code, run.stderr) == (2, "error: Option '-l' requires an argument.\n")
    run = redisops("-o", "json", "inventory", "list", "--timeout")
    assert run.exit_code == 2
    assert run.json()["error"] == "Option '--timeout' requires an argument."


def test_the_same_value_twice_is_no_conflict(hosts_file):
    run = redisops("-o", "json", "-i", hosts_file, "inventory", "list", "-o", "json")
    assert run.exit_code == 0, run.stderr
    assert len(_hosts(run)) == 3


def test_values_and_double_dash_are_never_taken_for_global_options():
    def arranged(*args: str) -> list[str]:
        return arrange_arguments(ROOT, list(args)).args

    # -l as the value of the command's own option stays where it is.
    assert arranged("memory", "report", "--separator", "-l", "-o", "json") == [
        "-o", "json", "memory", "report", "--separator", "-l",
    ]  # fmt: skip
    # Past `--`, everything is the command's.
    assert arranged("memory", "rdb", "--", "-o", "-i") == ["memory", "rdb", "--", "-o", "-i"]
    # A positional word before a global option.
    assert arranged("memory", "rdb", "dump.rdb", "-o", "json", "--top", "5") == [
        "-o", "json", "memory", "rdb", "dump.rdb", "--top", "5",
    ]  # fmt: skip
    # Unknown options are left for click to report, --help stays at its level.
    assert arranged("inventory", "list", "--frob", "--help") == [
        "inventory", "list", "--frob", "--help",
    ]  # fmt: skip


def test_no_command_declares_an_option_name_the_root_uses():
    context = Context(ROOT)
    root_names = {n for p in ROOT.get_params(context) for n in (*p.opts, *p.secondary_opts)}
    root_names -= {"-h", "--help"}
    clashes = {
        path: sorted(names & root_names)
        for path, command in COMMANDS[1:]
        if (names := {n for p in command.params for n in (*p.opts, *p.secondary_opts)}) & root_names
    }
    assert clashes == {}


# --- item 8: printed command lines carry the inventory -------------------------------------


def test_audit_fix_lines_carry_the_inventory_and_paste_as_they_are(lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./inventory.yaml here: a fix without -i would fail
    run = redisops("-i", lab.inventory_path, "-l", "node-1", "-o", "json", "config", "audit")
    assert run.exit_code == 0, run.stderr
    findings = run.json()["results"][0]["data"]["findings"]
    fixes = [f["fix"] for f in findings if f["fix"].startswith("redisops ")]
    assert fixes, findings
    prefix = f"redisops -i {shlex.quote(lab.inventory_path)} -l node-1 config apply --set "
    assert all(fix.startswith(prefix) for fix in fixes), fixes
    table = redisops("-i", lab.inventory_path, "-l", "node-1", "config", "audit")
    assert fixes[0] in " ".join(table.stdout.split())
    pasted = shlex.split(fixes[0].split(" (")[0])[1:]
    dry = redisops(*pasted, "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.stderr
    assert dry.json()["summary"]["changes"] == 1


def test_a_refusal_for_want_of_yes_prints_the_whole_command_to_paste(lab):
    run = redisops(
        "-i", lab.inventory_path, "slowlog", "reset", "-l", "node-1",
        env={"REDISOPS_INTERACTIVE": "0"},
    )  # fmt: skip
    assert run.exit_code == 3
    hint = run.stderr.splitlines()[-1]
    line = shlex.join(["redisops", "-i", lab.inventory_path, "-l", "node-1", "slowlog", "reset"])
    assert hint == (
        f"hint: re-run with --yes to go ahead (or --dry-run to see the plan only): {line} --yes"
    )


def test_hints_naming_a_command_carry_the_inventory(hosts_file):
    run = redisops("-i", hosts_file, "-l", "nothing-like-it", "inventory", "list")
    assert run.exit_code == 2
    assert f"`redisops -i {hosts_file} inventory list`" in run.stderr


# --- item 9: every help has examples and upper-case argument names --------------------------


def _help(path: str) -> str:
    run = redisops(*path.split()[1:], "--help")
    assert run.exit_code == 0, (path, run.stderr)
    return run.stdout


def _examples(text: str) -> list[str]:
    section = text.split("\nExamples:\n", 1)[1]
    return [line.strip() for line in section.splitlines() if line.strip()]


def _parses(line: str) -> None:
    """Parse an example against the real command tree (nothing runs)."""
    args = arrange_arguments(ROOT, shlex.split(line)[1:]).args
    if args[-1:] == ["--help"]:
        return
    context = ROOT.make_context("redisops", list(args))
    command: object = ROOT
    while hasattr(command, "resolve_command"):
        rest = [*context._protected_args, *context.args]
        name, command, rest = command.resolve_command(context, rest)
        context = command.make_context(name, rest, parent=context)


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_help_has_real_examples_and_one_spelling_of_names(path, command):
    text = _help(path)
    examples = _examples(text)
    assert len(examples) >= 2, path
    for example in examples:
        assert example.startswith("redisops "), example
        _parses(example)
    usage = text.splitlines()[0]
    assert "{" not in usage and "<" not in usage, usage
    words = usage.removeprefix(f"Usage: {path} ").split()
    assert all(re.fullmatch(r"\[?[A-Z][A-Z_|]*\]?(\.\.\.)?", word) for word in words), usage
    options = text.split("\nOptions:\n", 1)[1].split("\n\n", 1)[0]
    for line in options.splitlines():
        row = re.match(r"  (?:-\w, )?--[\w-]+(?: (\S+))?(?:  |$)", line)
        value = row and row.group(1)
        if value:  # PATH, KEY=VALUE, or the choices themselves (table|json); never <path>
            assert re.fullmatch(r"[A-Z][A-Z_=|]*|[a-z0-9-]+(\|[a-z0-9-]+)+", value), line
    if command in dict(LEAVES).values():
        arguments = [p for p in command.params if p.param_type_name == "argument"]
        for param in arguments:
            assert param.metavar and param.metavar == param.metavar.upper(), (path, param.name)
            assert f"\n  {param.metavar}  " in text, (path, param.metavar)


def test_argument_names_are_spelled_one_way():
    assert _help("redisops backup restore").startswith(
        "Usage: redisops backup restore [OPTIONS] BACKUP_ID\n"
    )
    assert _help("redisops backup verify").startswith(
        "Usage: redisops backup verify [OPTIONS] [BACKUP_ID]\n"
    )
    assert _help("redisops memory rdb").startswith(
        "Usage: redisops memory rdb [OPTIONS] FILE|BACKUP_ID\n"
    )
    missing = redisops("backup", "restore")
    assert missing.stderr.startswith("error: Missing argument 'BACKUP_ID'")


# --- item 10 / issue 21 item 10: one JSON document for every failure ------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--parallel", "0", "inventory", "list", "-o", "json"],
         "--parallel must be at least 1, got 0"),
        (["-o", "json", "inventory", "list", "--frob"], "No such option: --frob"),
        (["inventory", "list", "-o", "json", "-l", "nothing-like-it", "-i", "{inv}"],
         "--limit 'nothing-like-it' matches no host or group"),
    ],
)  # fmt: skip
def test_usage_errors_under_json_print_one_document(hosts_file, args, error):
    run = redisops(*[arg.replace("{inv}", hosts_file) for arg in args])
    assert run.exit_code == 2
    document = json.loads(run.stdout)  # exactly one document: a second would not parse
    assert document["ok"] is False
    assert document["command"] == "inventory list"
    assert document["error"].startswith(error)
    assert document["exit_code"] == 2
    assert document["results"] == []
    assert run.stderr.startswith(f"error: {error}")


def test_refusal_under_json_prints_one_document(lab):
    run = redisops(
        "-i", lab.inventory_path, "-l", "node-1", "-o", "json", "slowlog", "reset",
        env={"REDISOPS_INTERACTIVE": "0"},
    )  # fmt: skip
    assert run.exit_code == 3
    document = run.json()
    assert (document["command"], document["ok"], document["exit_code"]) == (
        "slowlog reset", False, 3
    )  # fmt: skip
    assert document["error"].endswith("Refused: not on a terminal and --yes not given")


def test_refused_config_apply_says_ok_false(lab):
    run = redisops(
        "-i", lab.inventory_path, "-l", "node-1", "-o", "json", "config", "apply",
        "--set", "hz=15", "--set", "requirepass=whatever", "--dry-run",
    )  # fmt: skip
    assert run.exit_code == 3
    document = run.json()
    assert document["ok"] is False
    node = document["results"][0]
    assert (node["host"], node["ok"], node["error"]) == ("node-1", False, "refused: requirepass")
    assert node["data"]["changes"][0]["setting"] == "hz"  # the plan is still there


def test_missing_default_inventory_names_the_file_and_the_ways_to_give_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = redisops("inventory", "list")
    assert run.exit_code == 2
    assert run.stderr.splitlines()[0] == (
        "error: inventory file ./inventory.yaml not found (use -i or REDISOPS_INVENTORY)"
    )


# --- issue 21 item 7: --timeout bounds ------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "1e12", "nan", "86401", "0.05", "-1"])
def test_timeout_out_of_bounds_is_one_line_and_exit_2(lab, value):
    run = redisops_process("-i", lab.inventory_path, "--timeout", value, "inventory", "check")
    assert run.exit_code == 2
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        f"error: --timeout must be 0.1 to 86400 seconds, got {float(value):g}"
    ]


def test_timeout_at_the_bounds_is_accepted(lab):
    for value in ("0.1", "86400"):
        run = redisops(
            "-i", lab.inventory_path, "-l", "node-1", "--timeout", value, "inventory", "list"
        )
        assert run.exit_code == 0, run.stderr


def test_the_playbooks_the_examples_name_are_shipped():
    shipped = {p.name for p in (Path(__file__).parents[1] / "playbooks").glob("*.yaml")}
    words = [word for line in _examples(_help("redisops playbook run")) for word in line.split()]
    named = {Path(word).name for word in words if word.startswith("playbooks/")}
    assert named and named <= shipped


def test_a_playbook_steps_own_timeout_is_bounded_too(lab, tmp_path):
    """Checked with the rest of the playbook, before any step runs, as the root checks it."""
    playbook = tmp_path / "doctor.yaml"
    playbook.write_text(
        "name: doctor\ndescription: one step\n"
        "steps:\n  - id: doctor\n    doctor: latency\n    timeout: 1e12\n    limit: node-1\n"
    )
    run = redisops("-i", lab.inventory_path, "-o", "json", "playbook", "run", str(playbook))
    assert run.stderr.splitlines() == [
        f"error: {playbook}:6: steps[1].timeout: --timeout must be 0.1 to 86400 seconds, got 1e+12"
    ]
    assert run.exit_code == 2


def test_an_interrupted_run_under_json_still_prints_one_document(make_lab):
    lab = make_lab(seed_keys=3000)
    password = (Path(lab.dir) / "secret").read_text().strip()
    port = lab.processes[0].port
    before = _scan_calls(port, password)
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", lab.inventory_path, "-l", "node-1",
         "memory", "report", "--rate", "200", "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while _scan_calls(port, password) <= before + 1:  # the scan is under way
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the scan never started"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    document = json.loads(stdout)
    assert document == {
        "command": "memory report",
        "ok": False,
        "error": "interrupted: SIGINT; 0 of 1 hosts finished",
        "hint": None,
        "exit_code": 130,
        "results": [],
        "summary": {},
    }
    assert stderr.strip().splitlines()[-1] == "interrupted: SIGINT; 0 of 1 hosts finished"


def _scan_calls(port: int, password: str) -> int:
    import redis

    client = redis.Redis(port=port, password=password, socket_timeout=5)
    try:
        return int(client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))
    finally:
        client.close()
