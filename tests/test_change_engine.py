"""The change engine's sequence (cli/change.py carry_out) on plans of plain rows: what is
shown where, what stops it, what it returns. The commands on it are tested against real
servers in their own files; these pin each branch once, without a server."""

from __future__ import annotations

import json

import pytest

from redisops.change import FORCE_HINT, ChangeOutcome, ChangePlan
from redisops.cli.change import carry_out
from redisops.errors import ExitCode, HostError, RefusedError
from redisops.render.output import Output
from redisops.results import HostResult

A = HostResult("a", "127.0.0.1:1", True, None, {"entries": 3})
B = HostResult("b", "127.0.0.1:2", True, None, {"entries": 4})
DOWN = HostResult("c", "127.0.0.1:3", False, "cannot connect", None)


def plan(**fields) -> ChangePlan:
    base = {
        "command": "thing reset",
        "rows": [A, B],
        "question": "Reset 2 things?",
        "pending": 2,
        "summary": {"things": 2},
        "undone": "reset",
    }
    return ChangePlan(**(base | fields))


class Applied:
    """The apply step: records that it ran and returns `outcome`."""

    def __init__(self, outcome: ChangeOutcome | None = None) -> None:
        self.calls = 0
        self.outcome = outcome or ChangeOutcome([A, B], summary={"reset": 2})

    def __call__(self) -> ChangeOutcome:
        self.calls += 1
        return self.outcome


def run(the_plan: ChangePlan, applied: Applied, fmt: str = "json", **options) -> int:
    output = Output(fmt, verbose=True)
    defaults = {"view": lambda rows: f"{len(rows)} rows", "yes": True, "dry_run": False}
    return carry_out(output, the_plan, applied, **(defaults | options))


@pytest.fixture(autouse=True)
def off_terminal(monkeypatch):
    monkeypatch.setenv("REDISOPS_INTERACTIVE", "0")


def test_applies_and_merges_the_summaries(capsys):
    applied = Applied()
    assert run(plan(), applied) == ExitCode.OK
    assert applied.calls == 1
    document = json.loads(capsys.readouterr().out)
    assert document["summary"] == {
        "hosts": 2, "ok": 2, "failed": 0, "dry_run": False, "things": 2, "reset": 2,
    }  # fmt: skip


def test_a_dry_run_shows_the_plan_and_says_so_in_one_line(capsys):
    applied = Applied()
    assert run(plan(rows=[A, DOWN]), applied, dry_run=True) == ExitCode.FAILED
    assert applied.calls == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["summary"]["dry_run"] is True and document["ok"] is False
    assert captured.err.splitlines()[-1] == "dry run: nothing was reset"


def test_nothing_pending_asks_nothing_and_applies_nothing(capsys):
    applied = Applied()
    assert run(plan(pending=0), applied, yes=False) == ExitCode.OK
    assert applied.calls == 0
    assert "dry run" not in capsys.readouterr().err


def test_off_a_terminal_without_yes_it_refuses_before_applying():
    applied = Applied()
    with pytest.raises(RefusedError) as refused:
        run(plan(), applied, yes=False)
    assert refused.value.message == "Reset 2 things? Refused: not on a terminal and --yes not given"
    assert applied.calls == 0


def test_blockers_stop_it_even_forced_each_reason_on_its_line(capsys):
    applied = Applied()
    blocked = plan(blockers=["a is busy", "b is busy"], refused="refused: a is busy")
    with pytest.raises(RefusedError) as refused:
        run(blocked, applied, fmt="table", force=True)
    assert applied.calls == 0
    assert refused.value.message == "refused: a is busy" and refused.value.rerun_with is None
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert errors == ["error: b is busy"]  # the first is in the refusal's own line


def test_force_lifts_refusals_and_the_hint_says_so():
    refusing = plan(refusals=["a has replicas"], refused="refused; nothing was changed")
    with pytest.raises(RefusedError) as refused:
        run(refusing, Applied())
    assert (refused.value.hint, refused.value.rerun_with) == (FORCE_HINT, "--force")
    applied = Applied()
    assert run(refusing, applied, force=True) == ExitCode.OK
    assert applied.calls == 1


@pytest.mark.parametrize(("rows", "document"), [([A, B], False), ([A, DOWN], True)])
def test_a_json_refusal_writes_the_plan_only_when_a_row_says_why(capsys, rows, document):
    with pytest.raises(RefusedError):
        run(plan(rows=rows, blockers=["no"], refused="refused: no"), Applied())
    out = capsys.readouterr().out
    assert (json.loads(out)["ok"] is False) if document else out == ""


def test_plan_on_stderr_keeps_stdout_for_the_result(capsys):
    assert run(plan(), Applied(), fmt="table", plan_on_stderr=True, dry_run=True) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("2 rows\n")


def test_a_change_nobody_is_asked_about_is_neither_shown_nor_asked(capsys):
    applied = Applied()
    assert run(plan(question=None), applied, fmt="table", yes=False) == ExitCode.OK
    assert applied.calls == 1
    assert capsys.readouterr().out.count("2 rows") == 1  # the result, not the plan


def test_the_outcome_decides_the_exit_code_and_its_errors_keep_their_hints(capsys):
    failed = Applied(ChangeOutcome([A, DOWN], errors=[HostError("c: down", "start it")]))
    assert run(plan(), failed) == ExitCode.FAILED
    assert capsys.readouterr().err.splitlines()[-2:] == ["error: c: down", "hint: start it"]
    lost = Applied(ChangeOutcome([A], failed=True))
    assert run(plan(), lost) == ExitCode.FAILED


def test_audit_runs_after_the_change_and_its_line_shows_with_verbose(capsys):
    recorded = []

    def audit(outcome: ChangeOutcome) -> str:
        recorded.append(len(outcome.rows))
        return "recorded in changes.jsonl"

    assert run(plan(), Applied(), audit=audit) == ExitCode.OK
    assert recorded == [2]
    assert capsys.readouterr().err.splitlines()[-1] == "info: recorded in changes.jsonl"
