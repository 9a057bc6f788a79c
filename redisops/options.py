"""The global options, declared once: the fields of `GlobalOptions` below.

The root command's options (cli/app.py builds them from these fields), the options a command
reads, the keys a playbook step may set for itself (`limit: …` in a step) and the conversion
of such a mapping into options all come from here, so an option added here is everywhere.
Imports nothing from redisops but errors and commandline, so any layer may use it; the root
command imports it for `--help`, so it stays light.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from redisops.commandline import CommandLine
from redisops.errors import UsageError

# A timeout past a day overflows the clocks of sockets and threads (OverflowError); one under
# 0.1 s fails every host and says nothing about the fleet.
MIN_TIMEOUT = 0.1
MAX_TIMEOUT = 86400.0


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def _option(
    *flags: str,
    help: str,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    repeatable: bool = False,
    show_default: bool = True,
) -> dict[str, Any]:
    """What declares a field a global option: its flags and help for the root command;
    `parse` (text to value) when a playbook step may set it for itself; `repeatable` when the
    values add up (joined with commas, as `-l a -l b` means `-l a,b`)."""
    return {
        "flags": flags,
        "help": help,
        "metavar": metavar,
        "parse": parse,
        "repeatable": repeatable,
        "show_default": show_default,
    }


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before (or after) the subcommand. Checked when made, so a playbook
    step's own options are held to the bounds of the command line's (UsageError, exit 2)."""

    inventory: Path | None = field(default=None, metadata=_option(
        "-i", "--inventory", metavar="PATH", parse=Path, show_default=False,
        help="Inventory file [default: $REDISOPS_INVENTORY, else ./inventory.yaml].",
    ))  # fmt: skip
    limit: str | None = field(default=None, metadata=_option(
        "-l", "--limit", metavar="PATTERN", parse=str, show_default=False, repeatable=True,
        help="Hosts or groups: comma-separated, globs, !name excludes; repeatable (the "
        "patterns add up).",
    ))  # fmt: skip
    output: OutputFormat = field(default=OutputFormat.table, metadata=_option(
        "-o", "--output", metavar="table|json", help="table for people, json for machines."
    ))  # fmt: skip
    parallel: int = field(default=16, metadata=_option(
        "--parallel", metavar="N", parse=int, help="Hosts worked on at once."
    ))  # fmt: skip
    timeout: float = field(default=5.0, metadata=_option(
        "--timeout", metavar="SECONDS", parse=float,
        help=f"Per-host connect and command timeout ({MIN_TIMEOUT:g} to {MAX_TIMEOUT:g}).",
    ))  # fmt: skip
    verbose: bool = field(default=False, metadata=_option(
        "-v", "--verbose", help="More detail on stderr."
    ))  # fmt: skip
    # Not an option: where this run's results go when not to stdout (a playbook step's
    # collecting Output, placed by the runner; cli/common.make_output returns it).
    sink: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise UsageError(f"--parallel must be at least 1, got {self.parallel}")
        check_timeout(self.timeout)

    @classmethod
    def from_command_line(cls, values: Mapping[str, Any]) -> GlobalOptions:
        """The options from the root command's parsed values (repeated ones joined)."""
        given = {}
        for option in declared_options():
            value = values[option.name]
            if option.metadata["repeatable"]:
                value = ",".join(value) if value else None
            given[option.name] = value
        return cls(**given)

    def for_step(self, mapping: Mapping[str, str], *, sink: Any) -> GlobalOptions:
        """These options with a step's own over them (text, templates resolved), results to
        `sink`, as JSON; UsageError naming the key when a value does not parse or is out of
        bounds. An empty value leaves the option out, as `with: {dest: ""}` does: its default
        (`limit: ""` is every host)."""
        changes: dict[str, Any] = {}
        for option in step_options():
            if option.name not in mapping:
                continue
            text = mapping[option.name]
            if text == "":
                changes[option.name] = option.default
                continue
            try:
                changes[option.name] = option.metadata["parse"](text)
            except ValueError:
                flag = option.metadata["flags"][-1]
                raise UsageError(
                    f"step option {option.name}: {text!r} is not a valid {flag} value"
                ) from None
        return replace(self, **changes, output=OutputFormat.json, sink=sink)

    @property
    def command_line(self) -> CommandLine:
        """How this run was invoked, for the command lines it prints to be pasted."""
        return command_line(str(self.inventory) if self.inventory else None, self.limit)


def declared_options() -> Iterator[Field]:
    """Each global option, in the order --help lists them."""
    return (option for option in fields(GlobalOptions) if "flags" in option.metadata)


def step_options() -> tuple[Field, ...]:
    """The global options a playbook step may set for itself."""
    return tuple(option for option in declared_options() if option.metadata["parse"])


STEP_OPTIONS = tuple(option.name for option in step_options())


def check_timeout(seconds: float) -> float:
    """`seconds` when it is a usable --timeout; UsageError (exit 2) when not (inf, nan, 1e12)."""
    if not MIN_TIMEOUT <= seconds <= MAX_TIMEOUT:
        raise UsageError(
            f"--timeout must be {MIN_TIMEOUT:g} to {MAX_TIMEOUT:g} seconds, got {seconds:g}"
        )
    return seconds


def command_line(inventory: str | None, limit: str | None) -> CommandLine:
    """The invocation for printed command lines: the inventory given with -i, else the one
    $REDISOPS_INVENTORY names (a line pasted elsewhere may not have it), and the --limit."""
    from redisops.fleet.inventory import INVENTORY_ENV

    return CommandLine(inventory or os.environ.get(INVENTORY_ENV) or None, limit)


@dataclass(frozen=True)
class StepOptions:
    """A playbook step's global options as the runner hands them to the root command: the
    run's, the step's own mapping over them (converted in the command's error boundary, as
    templates are resolved only when the step runs), and where its results go."""

    run: GlobalOptions
    own: Mapping[str, str]
    sink: Any

    def resolve(self) -> GlobalOptions:
        return self.run.for_step(self.own, sink=self.sink)

    @property
    def inventory(self) -> str | None:
        """The step's inventory as given, for the hints its errors print."""
        return self.own.get("inventory") or (
            str(self.run.inventory) if self.run.inventory else None
        )

    @property
    def command_line(self) -> CommandLine:
        """The step's command line (its -i and -l), for the lines its errors print."""
        return self.run.for_step(self.own, sink=None).command_line
