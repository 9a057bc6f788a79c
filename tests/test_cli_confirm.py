"""The shared guard every mutating command uses: --yes, a terminal prompt, or exit 3."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from redisops.cli.common import YesOption, confirm_change
from redisops.errors import ExitCode, RefusedError

probe = typer.Typer()


@probe.command()
def change(yes: YesOption = False) -> None:
    confirm_change("Reset 3 slowlogs?", yes=yes)
    typer.echo("changed")


@probe.command()
def other() -> None:
    """A second command, so that `change` stays a named subcommand."""


def invoke(*args: str, **kwargs):
    return CliRunner().invoke(probe, list(args), **kwargs)


def test_off_a_terminal_without_yes_is_refused():
    run = invoke("change", env={"REDISOPS_INTERACTIVE": "0"})
    assert "changed" not in run.stdout
    assert isinstance(run.exception, RefusedError)
    assert run.exception.exit_code == ExitCode.REFUSED
    assert run.exception.message == (
        "Reset 3 slowlogs? Refused: not on a terminal and --yes not given"
    )


def test_yes_goes_ahead_without_asking():
    run = invoke("change", "--yes", env={"REDISOPS_INTERACTIVE": "0"})
    assert run.stdout == "changed\n"


def test_terminal_prompt_accepted_and_declined():
    accepted = invoke("change", input="y\n", env={"REDISOPS_INTERACTIVE": "1"})
    assert accepted.stdout.endswith("changed\n")
    declined = invoke("change", input="n\n", env={"REDISOPS_INTERACTIVE": "1"})
    assert isinstance(declined.exception, RefusedError)
    assert declined.exception.message == "declined; nothing was changed"
