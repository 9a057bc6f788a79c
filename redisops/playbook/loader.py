"""Read a playbook file and check all of it before any step runs.

The file is composed into YAML nodes, as the inventory is (redisops/fleet/inventory.py), so
every error names the file, the line and the key at fault. Each command step is checked
against the real command tree by a callback from the CLI layer (the core knows no Typer).
"""

from __future__ import annotations

import difflib
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from redisops.errors import UsageError
from redisops.options import STEP_OPTIONS, GlobalOptions
from redisops.playbook.expressions import (
    Expression,
    ExpressionError,
    parse_expression,
    render_template,
    template_parts,
)
from redisops.playbook.model import KINDS, Playbook, Step

PLAYBOOK_KEYS = {"name", "description", "vars", "steps"}
# A step may also set the global options of STEP_OPTIONS (redisops/options.py) for itself.
STEP_KEYS = {
    "id", "name", "run", "with", "when", "assert", "on_failure", "confirm", "wait", "note",
    "doctor", *STEP_OPTIONS,
}  # fmt: skip
# A condition wait's `timeout` is how long it waits; its `limit` is the step's --limit.
WAIT_KEYS = {"run", "until", "timeout", "every", "with", "limit"}
MAX_WAIT_SECONDS = 3600.0

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

# Checks a command's words against the real command tree; raises ValueError with the reason.
# `complete` is false while some words still wait for an earlier step's result. Returns
# whether the command takes --yes.
CommandCheck = Callable[[list[str], bool], bool]


class PlaybookError(UsageError):
    """The playbook cannot run as written: nothing was run."""


def load_playbook(
    path: str | Path, *, overrides: Mapping[str, str], check_command: CommandCheck
) -> Playbook:
    """Read, validate and resolve variables; PlaybookError (exit 2) names file, line, reason."""
    from redisops.fleet.inventory import compose_yaml, read_yaml_text

    path = Path(path)
    try:
        text = read_yaml_text(path, PlaybookError, what="playbook")
    except OSError as exc:
        raise PlaybookError(f"playbook {path} cannot be read: {exc.strerror or exc}") from None
    return compose_yaml(
        path,
        text,
        lambda loader, root: _Reader(str(path), loader, check_command).read(root, overrides),
        PlaybookError,
        what="playbook",
    )


def parse_seconds(value: Any) -> float:
    """`30`, `30s`, `500ms`, `2m`, `1h` in seconds; ValueError otherwise."""
    match = _DURATION.match(str(value).strip())
    if match is None or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 500ms, 2m)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class _Reader:
    def __init__(self, path: str, loader: Any, check_command: CommandCheck) -> None:
        self.path = path
        self.loader = loader
        self.check_command = check_command

    def read(self, root: Any, overrides: Mapping[str, str]) -> Playbook:
        import yaml

        fields = self._mapping(root, "", PLAYBOOK_KEYS)
        for required in ("name", "steps"):
            if required not in fields:
                self._fail(root, "", f"missing key {required!r}")
        variables = self._vars(fields.get("vars"))
        unknown = sorted(set(overrides) - set(variables))
        if unknown:
            raise PlaybookError(
                f"{self.path}: --var {unknown[0]}: the playbook has no such variable",
                hint=f"its variables: {', '.join(variables) or 'none'}",
            )
        variables.update({name: _scalar(value) for name, value in overrides.items()})
        steps_node = fields["steps"][1]
        if not isinstance(steps_node, yaml.SequenceNode) or not steps_node.value:
            self._fail(steps_node, "steps", "expected a list of steps")
        steps: list[Step] = []
        for index, node in enumerate(steps_node.value):
            steps.append(self._step(node, f"steps[{index + 1}]", index, variables, steps))
        return Playbook(
            self.path,
            self._text(*fields["name"], "name"),
            self._text(*fields["description"], "description") if "description" in fields else "",
            variables,
            tuple(steps),
        )

    def _vars(self, entry: tuple[Any, Any] | None) -> dict[str, Any]:
        if entry is None:
            return {}
        fields = self._mapping(entry[1], "vars", None)
        variables = {}
        for name, (key_node, node) in fields.items():
            if not _ID.match(name):
                self._fail(key_node, "vars", f"{name!r} is not a valid variable name")
            value = self.loader.construct_object(node)
            if isinstance(value, (dict, list)):
                self._fail(node, f"vars.{name}", "a variable holds one value, not a structure")
            variables[name] = "" if value is None else value
        return variables

    def _step(
        self, node: Any, where: str, index: int, variables: dict[str, Any], earlier: list[Step]
    ) -> Step:
        fields = self._mapping(node, where, STEP_KEYS)
        kinds = [kind for kind in KINDS if kind in fields]
        if len(kinds) != 1:
            self._fail(node, where, f"a step needs exactly one of {', '.join(KINDS)}")
        kind = kinds[0]
        step_id = self._text(*fields["id"], f"{where}.id") if "id" in fields else f"step{index + 1}"
        if not _ID.match(step_id) or step_id in variables:
            self._fail(fields.get("id", (node, node))[1], f"{where}.id", f"bad step id {step_id!r}")
        if any(step.id == step_id for step in earlier):
            self._fail(fields["id"][1], f"{where}.id", f"step id {step_id!r} is used twice")
        known = set(variables) | {step.id for step in earlier}
        options = {
            key: self._template(*fields[key], f"{where}.{key}", known, variables)
            for key in STEP_OPTIONS
            if key in fields
        }
        for key, value in options.items():
            self._check_option(fields[key][1], f"{where}.{key}", key, value)
        step: dict[str, Any] = {
            "id": step_id,
            "kind": kind,
            "line": _line(node),
            "options": options,
        }
        value_node = fields[kind][1]
        if kind == "run":
            step["words"], step["takes_yes"] = self._command(fields, where, known, variables)
        elif kind == "wait":
            self._wait(value_node, f"{where}.wait", known | {step_id}, variables, step, fields)
        elif kind == "doctor":
            if self._text(value_node, value_node, f"{where}.doctor") != "latency":
                self._fail(value_node, f"{where}.doctor", "the one doctor built in is 'latency'")
        else:
            step["message"] = self._template(
                value_node, value_node, f"{where}.{kind}", known, variables
            )
        for key, attr in (("when", "when"), ("assert", "check")):
            if key in fields:
                own = known | ({step_id} if key == "assert" else set())
                step[attr] = self._expression(fields[key][1], f"{where}.{key}", own)
        if "on_failure" in fields:
            choice = self._text(*fields["on_failure"], f"{where}.on_failure")
            if choice not in ("stop", "continue"):
                self._fail(
                    fields["on_failure"][1], f"{where}.on_failure", "expected stop or continue"
                )
            step["on_failure"] = choice
        title = fields.get("name")
        step["title"] = self._text(*title, f"{where}.name") if title else _default_title(step)
        return Step(**step)

    def _command(
        self, fields: dict, where: str, known: set[str], variables: dict[str, Any]
    ) -> tuple[tuple[str, ...], bool]:
        import yaml

        key_node, node = fields["run"]
        if isinstance(node, yaml.SequenceNode):
            words = [
                self._template(item, item, f"{where}.run", known, variables) for item in node.value
            ]
        else:
            text = self._template(key_node, node, f"{where}.run", known, variables)
            try:
                words = shlex.split(text)
            except ValueError as exc:
                self._fail(node, f"{where}.run", f"cannot split the command: {exc}")
        if "with" in fields:
            for name, (name_node, value) in self._mapping(
                fields["with"][1], f"{where}.with", None
            ).items():
                words.extend(
                    self._option(name, name_node, value, f"{where}.with.{name}", known, variables)
                )
        if not words:
            self._fail(node, f"{where}.run", "empty command")
        complete = "{{" not in " ".join(words)
        try:
            takes_yes = self.check_command(list(words), complete)
        except ValueError as exc:
            self._fail(node, f"{where}.run", str(exc))
        return tuple(words), takes_yes

    def _option(
        self, name: str, name_node: Any, node: Any, where: str, known: set[str], variables: dict
    ) -> list[str]:
        """`with: {dest: X}` gives `--dest X`; true a flag; false, null or "" leave it out."""
        value = self.loader.construct_object(node)
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            return [flag]
        if value is False or value is None:
            return []
        text = self._template(name_node, node, where, known, variables)
        return [flag, text] if text != "" else []

    def _wait(
        self, node: Any, where: str, known: set[str], variables: dict, step: dict, fields: dict
    ) -> None:
        import yaml

        try:
            if isinstance(node, yaml.ScalarNode):
                step["seconds"] = parse_seconds(
                    self._template(node, node, where, set(variables), variables)
                )
            else:
                spec = self._mapping(node, where, WAIT_KEYS)
                for required in ("run", "until", "timeout"):
                    if required not in spec:
                        self._fail(node, where, f"a condition wait needs {required!r}")
                for key, attr in (("timeout", "seconds"), ("every", "every")):
                    if key in spec:
                        text = self._template(
                            *spec[key], f"{where}.{key}", set(variables), variables
                        )
                        step[attr] = parse_seconds(text)
                step["until"] = self._expression(spec["until"][1], f"{where}.until", known)
                step["words"], _ = self._command(spec, where, known - {step["id"]}, variables)
                if "limit" in spec:
                    own = known - {step["id"]}
                    limit = self._template(*spec["limit"], f"{where}.limit", own, variables)
                    self._check_option(spec["limit"][1], f"{where}.limit", "limit", limit)
                    step["options"] = step["options"] | {"limit": limit}
        except ValueError as exc:
            self._fail(node, where, str(exc))
        if not 0 <= step["seconds"] <= MAX_WAIT_SECONDS or step.get("every", 1.0) <= 0:
            self._fail(node, where, f"waits are bounded: 0 to {MAX_WAIT_SECONDS:g} seconds")

    def _check_option(self, node: Any, where: str, key: str, value: str) -> None:
        """A step's own global option, checked as the command line's is; one that waits for
        an earlier step's result is checked when the step runs."""
        if "{{" in value:
            return
        try:
            GlobalOptions().for_step({key: value}, sink=None)
        except UsageError as exc:
            self._fail(node, where, exc.message)

    def _template(
        self, key_node: Any, node: Any, where: str, known: set[str], variables: dict[str, Any]
    ) -> str:
        """A scalar with its variables filled in; step results stay as `{{ … }}` until run."""
        text = self._text(key_node, node, where)
        try:
            for expression in template_parts(text):
                missing = sorted(expression.names() - known)
                if missing:
                    raise ExpressionError(f"undefined variable {missing[0]!r}")
            return render_template(text, variables, lambda expr: "{{ " + expr + " }}")
        except ExpressionError as exc:
            self._fail(node, where, str(exc))

    def _expression(self, node: Any, where: str, known: set[str]) -> Expression:
        try:
            expression = parse_expression(self._text(node, node, where))
        except ExpressionError as exc:
            self._fail(node, where, f"bad expression: {exc}")
        missing = sorted(expression.names() - known)
        if missing:
            self._fail(
                node, where, f"undefined variable {missing[0]!r} (not a var or an earlier step id)"
            )
        return expression

    def _mapping(self, node: Any, where: str, keys: set[str] | None) -> dict[str, tuple[Any, Any]]:
        import yaml

        if not isinstance(node, yaml.MappingNode):
            self._fail(node, where, "expected a mapping")
        self.loader.flatten_mapping(node)
        fields: dict[str, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:
            key = str(self.loader.construct_object(key_node))
            if keys is not None and key not in keys:
                close = difflib.get_close_matches(key, sorted(keys), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self._fail(key_node, where, f"unknown key {key!r}{hint}")
            fields[key] = (key_node, value_node)
        return fields

    def _text(self, key_node: Any, node: Any, where: str) -> str:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            self._fail(node, where, "expected text")
        value = self.loader.construct_object(node)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)

    def _fail(self, node: Any, where: str, message: str) -> None:
        place = f" {where}:" if where else ""
        raise PlaybookError(f"{self.path}:{_line(node)}:{place} {message}")


def _scalar(text: str) -> Any:
    """A --var value read as YAML reads a scalar (3 a number, true a boolean), as in Ansible."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) else text


def _line(node: Any) -> int:
    return node.start_mark.line + 1


def _default_title(step: dict[str, Any]) -> str:
    if step["kind"] == "doctor":
        return "LATENCY DOCTOR"
    if step["kind"] == "run":
        return " ".join(step["words"])
    if step["kind"] == "wait":
        return " ".join(step.get("words", ())) or f"wait {step['seconds']:g}s"
    return step["kind"]
