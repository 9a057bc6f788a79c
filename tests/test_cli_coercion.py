"""Option values converted without pydantic (redisops/cli/coercion.py) against typer's own
converter, on every parameter of the command tree, and pydantic kept out of a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest
import typer
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from redisops.cli.app import app
from redisops.cli.coercion import plain_converter

SAMPLES = {
    str: ["abc", "", "  spaced ", "ünïcode", "a:b:*"],
    int: ["0", "12", " 7 ", "-1", "+3", "1_000", "1023", "65001", "abc", "1.5", "", "0x10"],
    float: ["0", "0.05", "0.1", "1e3", "2.5", "-3", "1_000.5", "abc", "", "1001"],
    bool: ["", "yes", "No", "1", "0", "TRUE", "off", " y ", "maybe", True, False],
    Path: ["/tmp", "relative/dir", "~/backups", ".", "/nonexistent/x"],
}


def _parameters() -> list[tuple[str, object, object]]:
    """(name, command, parameter) for every parameter, the help options included."""
    found = []

    def walk(command, path: str) -> None:
        context = Context(command, help_option_names=["-h", "--help"])
        for param in command.get_params(context):
            found.append((f"{path} {param.name}", command, param))
        for name in getattr(command, "list_commands", lambda _: [])(context):
            walk(command.get_command(context, name), f"{path} {name}")

    walk(typer.main.get_command(app), "redisops")
    return found


PARAMETERS = _parameters()


def _samples(annotation) -> list:
    if getattr(annotation, "__origin__", None) is list:
        return [("a", "b"), (), ["x"]]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        values = [member.value for member in annotation]
        return [*values, *(str(v).upper() for v in values), "nonsense", "", next(iter(annotation))]
    return SAMPLES[annotation]


def _outcome(converter, value, param, command):
    context = Context(command)
    try:
        return ("value", converter.coerce(value, param=param, ctx=context))
    except BadParameter as exc:
        # pydantic puts "Value error, " before a validator's own words; the plain path does not.
        return ("error", exc.message.removeprefix("Value error, "))


def test_the_whole_tree_is_covered():
    """Every parameter redisops declares gets the plain converter; none falls back to pydantic."""
    assert len(PARAMETERS) > 100
    left = [name for name, _, param in PARAMETERS if plain_converter(param.type_descriptor) is None]
    assert left == []


@pytest.mark.parametrize(("name", "command", "param"), PARAMETERS, ids=[p[0] for p in PARAMETERS])
def test_plain_conversion_equals_typers(name, command, param):
    descriptor = param.type_descriptor
    ours, typers = plain_converter(descriptor), build_runtime_param(descriptor)
    samples = [*_samples(descriptor.annotation), param.default, None]
    for value in samples:
        expected = _outcome(typers, value, param, command)
        assert _outcome(ours, value, param, command) == expected, (name, value)


def test_a_run_never_imports_pydantic_and_bad_values_still_fail_clearly(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("all:\n  hosts:\n    one: {host: 127.0.0.1, port: 1}\n")
    probe = (
        "import sys\n"
        "from redisops.cli.app import app\n"
        "code = app(sys.argv[1:], standalone_mode=False)\n"
        "print(code, 'pydantic' in sys.modules)\n"
    )
    common = ["-i", str(inventory), "--timeout", "2.5", "--parallel", "3", "-o", "json"]
    good = [*common, "backup", "list", "--dest", str(tmp_path / "none")]
    done = subprocess.run(
        [sys.executable, "-c", probe, *good], capture_output=True, text=True, check=False
    )
    assert done.stdout.splitlines()[-1] == "0 False", done.stderr
    document = json.loads(done.stdout.rsplit("\n", 2)[0])
    assert (document["command"], document["results"], document["summary"]["backups"]) == (
        "backup list", [], 0
    )  # fmt: skip

    bad = [*common[:4], "--parallel", "many", "backup", "list"]
    done = subprocess.run(
        [sys.executable, "-c", probe, *bad], capture_output=True, text=True, check=False
    )
    assert done.stdout.splitlines()[-1] == "2 False"
    assert done.stderr.strip() == (
        "error: Invalid value for '--parallel': Input should be a valid integer, "
        "unable to parse string as an integer\nhint: see --help"
    )
