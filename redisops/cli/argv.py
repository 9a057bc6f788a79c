"""Global options anywhere on the command line.

Click reads an option only at the level that declares it, so `redisops inventory list -o json`
used to fail with "No such option: -o". Before parsing, the root's options found after the
command path are moved in front of it: only options the root declares, never past `--`, never
an option of the command itself, and never a token that is the value of one of the command's
own options (`--match -l` keeps `-l` as the pattern). tests/test_cli_shell.py checks that no
command declares a name the root uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redisops.errors import UsageError
from redisops.options import declared_options

# Root options that may be given more than once: the values are joined with commas.
_COMBINED = {option.name for option in declared_options() if option.metadata["repeatable"]}


@dataclass(frozen=True)
class Arranged:
    """The arguments with global options first, and what was read on the way."""

    args: list[str]
    command: str  # the command path as far as it could be read, e.g. "inventory list"
    json: bool  # -o json was asked for: a failure still owes stdout one JSON document
    inventory: str | None  # -i as given
    error: UsageError | None = None  # what is wrong with the global options, to raise


def arrange_arguments(root: Any, args: list[str]) -> Arranged:
    """Move the root's options found after the command path in front of it.

    `error` says when a root option lacks its value, or one other than -l is given twice with
    two values;
    it is returned, not raised, so that the caller knows the output format first.
    """
    root_options = _option_table(root.params)
    front: list[str] = []
    given: list[tuple[str, str, str | None]] = []  # (parameter, option as typed, value)
    index = _take_options(args, 0, root_options, {}, front, given, leaf=False)
    path: list[str] = []
    rest: list[str] = []
    node = root
    context = _bare_context(root)
    while index < len(args) and hasattr(node, "get_command"):
        word = args[index]
        if word.startswith("-"):
            break
        found = node.get_command(context, word)
        if found is None:
            break
        path.append(word)
        rest.append(word)
        node = found
        index = _take_options(
            args,
            index + 1,
            root_options,
            _option_table(node.params),
            rest,
            given,
            leaf=not hasattr(node, "get_command"),
        )
    rest.extend(args[index:])
    hoisted = [token for _, typed, value in given for token in _tokens(typed, value)]
    values: dict[str, list[str]] = {}
    for name, _, value in given:
        values.setdefault(name, []).append(value or "")
    return Arranged(
        args=[*hoisted, *front, *rest],
        command=" ".join(path),
        json=values.get("output", [""])[-1] == "json",
        inventory=values.get("inventory", [None])[-1],
        error=_problem(given, root_options),
    )


def _take_options(
    args: list[str],
    index: int,
    root_options: dict[str, tuple[str, bool]],
    own_options: dict[str, tuple[str, bool]],
    kept: list[str],
    given: list[tuple[str, str, str | None]],
    *,
    leaf: bool,
) -> int:
    """Read the arguments of one level from `index`: root options go to `given`, the level's
    own ones (with their values) and, on a command (`leaf`), its other arguments to `kept`.
    Returns the index of the next command word (the end on a command)."""
    while index < len(args):
        token = args[index]
        if token == "--":
            kept.extend(args[index:])  # everything after `--` is the command's own
            return len(args)
        if not token.startswith("-") or token == "-":
            if not leaf:
                return index  # the next command word
            kept.append(token)
            index += 1
            continue
        own = _match(token, own_options)
        if own is not None:
            _, takes_value, attached = own
            kept.append(token)
            if takes_value and attached is None and index + 1 < len(args):
                kept.append(args[index + 1])
                index += 1
            index += 1
            continue
        found = _match(token, root_options)
        if found is None:
            kept.append(token)  # click reports it, or it is --help / --version
            index += 1
            continue
        name, takes_value, attached = found
        typed = token.split("=", 1)[0] if attached is not None and "=" in token else token[:2]
        if not takes_value:
            given.append((name, token, None))
        elif attached is not None:
            given.append((name, typed, attached))
        elif index + 1 < len(args):
            given.append((name, token, args[index + 1]))
            index += 1
        else:
            given.append((name, token, None))  # _problem() says the value is missing
        index += 1
    return index


def _match(token: str, options: dict[str, tuple[str, bool]]) -> tuple[str, bool, str | None] | None:
    """(parameter, takes a value, value attached to the token) when `token` names an option."""
    if token in options:
        return (*options[token], None)
    if token.startswith("--") and "=" in token:
        name, value = token.split("=", 1)
        if name in options and options[name][1]:
            return (*options[name], value)
        return None
    if not token.startswith("--") and len(token) > 2 and token[:2] in options:
        name, takes_value = options[token[:2]]
        if takes_value:
            return name, True, token[2:]
    return None


def _option_table(params: list[Any]) -> dict[str, tuple[str, bool]]:
    """Each option name of `params` -> (parameter name, takes a value)."""
    table = {}
    for param in params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        takes_value = not (param.is_flag or getattr(param, "count", False))
        for name in (*param.opts, *param.secondary_opts):
            table[name] = (param.name, takes_value)
    return table


def _problem(
    given: list[tuple[str, str, str | None]], root_options: dict[str, tuple[str, bool]]
) -> UsageError | None:
    seen: dict[str, tuple[str, str | None]] = {}
    for name, typed, value in given:
        if value is None and root_options[typed][1]:
            return UsageError(f"Option '{typed}' requires an argument.")
        repeated = name in seen and name not in _COMBINED and value is not None
        if repeated and value != seen[name][1]:
            first_typed, first_value = seen[name]
            return UsageError(
                f"{typed} given twice ({first_value!r} and {value!r})",
                hint=f"give {first_typed} once; only -l may be repeated (the values add up)",
            )
        seen.setdefault(name, (typed, value))
    return None


def _tokens(typed: str, value: str | None) -> list[str]:
    return [typed] if value is None else [typed, value]


def _bare_context(command: Any) -> Any:
    from typer._click import Context

    return Context(command, resilient_parsing=True)
