"""Playbooks are checked whole before any step runs: the expression form, and the errors a
playbook can have, each with its file, line and reason (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from redisops.playbook.expressions import ExpressionError, parse_expression, render_template
from tests.cli_helpers import redisops, redisops_process

RESULTS = {
    "summary": {
        "ok": True,
        "results": [
            {"host": "node-1", "ok": True, "data": {"used_memory": 3000}},
            {"host": "node-2", "ok": True, "data": {"used_memory": 9000}},
            {"host": "node-3", "ok": False, "data": None},
        ],
        "summary": {"hosts": 3, "failed": 1},
    },
    "keep": 7,
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("summary.summary.failed == 1", True),
        ("summary.summary.failed > 0 and not summary.ok", False),
        ("summary.ok or keep >= 7", True),
        ("summary.results.0.host", "node-1"),
        ("summary.results.-1.ok == false", True),
        ("max_by(summary.results, 'data.used_memory').host", "node-2"),
        ("len(summary.results) != 3", False),
        ("(keep < 3 or keep <= 7) and 'a' < 'b'", True),
        ("summary.results.2.data == null", True),
        ("keep == 7.0", True),
    ],
)
def test_expressions_evaluate_against_results(text, value):
    assert parse_expression(text).evaluate(RESULTS) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keep ==", "'keep ==' ends too soon"),
        ("keep === 7", "cannot read '= 7' in 'keep === 7'"),
        ("keep + 1", "cannot read '+ 1' in 'keep + 1'"),
        ("__import__('os')",
         "unknown function __import__() in \"__import__('os')\" (known: len, max_by)"),
        ("keep 7", "unexpected '7' in 'keep 7'"),
    ],
)  # fmt: skip
def test_bad_expressions_are_refused(text, message):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("summary.results.5.host", "index 5 out of range (length 3)"),
        ("summary.nope", "no field 'nope' (has: ok, results, summary)"),
        ("summary.ok < 3", "cannot compare True < 3"),
    ],
)
def test_evaluation_errors_say_what_is_missing(text, message):
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text).evaluate(RESULTS)
    assert str(caught.value) == message


def test_templates_fill_known_values_and_mark_the_rest():
    text = "-l {{ summary.results.1.host }} --keep {{ keep }} {{ later.x }}"
    assert render_template(text, RESULTS, lambda expr: f"<{expr}>") == (
        "-l node-2 --keep 7 <later.x>"
    )


GOOD_HEAD = "name: broken\nvars: {keep: 7}\nsteps:\n"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        (
            "  - id: one\n    run: memory sumary\n",
            "5: steps[1].run: unknown command 'sumary' for 'redisops memory' "
            "(did you mean 'summary'?)",
        ),
        (
            "  - run: memory summary --bogus\n",
            "4: steps[1].run: memory summary: no such option '--bogus'",
        ),
        (
            "  - run: backup prune\n    with: {keep_lats: 3}\n",
            "4: steps[1].run: backup prune: no such option '--keep-lats' "
            "(did you mean '--keep-last'?)",
        ),
        (
            "  - run: memory report --top many\n",
            "4: steps[1].run: memory report: Invalid value for '--top': Input should be a valid "
            "integer, unable to parse string as an integer",
        ),
        (
            "  - run: memory report --top '{{ kept }}'\n",
            "4: steps[1].run: undefined variable 'kept'",
        ),
        (
            "  - run: memory summary\n    when: later.ok\n  - id: later\n    note: hi\n",
            "5: steps[1].when: undefined variable 'later' (not a var or an earlier step id)",
        ),
        (
            "  - id: s\n    run: memory summary\n    assert: s.summary.failed = 0\n",
            "6: steps[1].assert: bad expression: cannot read '= 0' in 's.summary.failed = 0'",
        ),
        ("  - wait: soon\n", "4: steps[1].wait: 'soon' is not a duration (e.g. 30s, 500ms, 2m)"),
        ("  - wait: 2h\n", "4: steps[1].wait: waits are bounded: 0 to 3600 seconds"),
        ("  - note: a\n    run: memory summary\n", "4: steps[1]: a step needs exactly one of "
         "run, confirm, wait, note, doctor"),
        ("  - nte: hi\n", "4: steps[1]: unknown key 'nte' (did you mean 'note'?)"),
        ("  - run: playbook run x.yaml\n", "4: steps[1].run: unknown command 'playbook' for "
         "'redisops'"),
        ("  - run: sentinel\n", "4: steps[1].run: incomplete command 'redisops sentinel'"),
        ("  - doctor: memory\n", "4: steps[1].doctor: the one doctor built in is 'latency'"),
        ("  - note: x\n    on_failure: retry\n", "5: steps[1].on_failure: expected stop or "
         "continue"),
        ("  - {id: a, note: x}\n  - {id: a, note: y}\n", "5: steps[2].id: step id 'a' is used "
         "twice"),
        ("  - run: [memory, summary\n", "5: invalid YAML: did not find expected ',' or ']'"),
    ],
)  # fmt: skip
def test_an_invalid_playbook_is_rejected_with_file_line_and_reason(tmp_path, steps, message):
    path = tmp_path / "broken.yaml"
    path.write_text(GOOD_HEAD + steps)
    run = redisops("-i", str(tmp_path / "none.yaml"), "playbook", "run", str(path))
    assert run.exit_code == 2
    assert run.stdout == ""
    assert run.stderr.splitlines()[0] == f"error: {path}:{message}"


def test_unknown_var_override_and_missing_keys_are_usage_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD_HEAD + "  - note: hi\n")
    run = redisops("playbook", "run", str(path), "--var", "kep=3")
    assert (run.exit_code, run.stderr.splitlines()[0]) == (
        2,
        f"error: {path}: --var kep: the playbook has no such variable",
    )
    path.write_text("description: no name\nsteps: []\n")
    run = redisops("playbook", "run", str(path))
    assert (run.exit_code, run.stderr.splitlines()[0]) == (
        2,
        f"error: {path}:1: missing key 'name'",
    )


def test_nothing_runs_when_a_later_step_is_invalid(lab, tmp_path):
    """The first step would write backups; the third is wrong: no backup is taken."""
    dest = tmp_path / "backups"
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: late-error\nsteps:\n"
        f"  - run: backup run --dest {dest}\n"
        "  - note: fine\n"
        "  - run: memory summary --fail-on sometimes\n"
    )
    run = redisops("-i", lab.inventory_path, "playbook", "run", str(path), "--yes")
    assert run.exit_code == 2
    assert "p.yaml:5: steps[3].run: memory summary: Invalid value for '--fail-on'" in run.stderr
    assert not dest.exists()
    assert "step 1/3" not in run.stdout + run.stderr


def test_shipped_playbooks_load(tmp_path):
    for path in sorted(Path("playbooks").glob("*.yaml")):
        run = redisops("-i", str(tmp_path / "none.yaml"), "playbook", "run", str(path), "--dry-run")
        assert run.exit_code == 0, (path, run.stderr)


@pytest.mark.parametrize(("byte", "code"), [(b"\x00", "0000"), (b"\x07", "0007")])
def test_a_control_byte_in_a_playbook_is_one_line_naming_file_and_line(tmp_path, byte, code):
    """Issue 21 item 7: PyYAML's ReaderError used to escape as a ~200-line traceback."""
    path = tmp_path / "p.yaml"
    path.write_bytes(GOOD_HEAD.encode() + b"  - note: ding" + byte + b"\n")
    run = redisops_process("-i", str(tmp_path / "none.yaml"), "playbook", "run", str(path))
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [
        f"error: {path}:4: invalid YAML: control character U+{code} at column 15 "
        "(not allowed in YAML; remove it)"
    ]


def test_a_playbook_that_is_not_utf8_is_one_line(tmp_path):
    """Was an AttributeError traceback (UnicodeDecodeError has no strerror)."""
    path = tmp_path / "p.yaml"
    path.write_bytes(GOOD_HEAD.encode() + b"  - note: caf\xe9\n")
    run = redisops_process("-i", str(tmp_path / "none.yaml"), "playbook", "run", str(path))
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [
        f"error: {path}:4: not UTF-8: byte 0xE9 at column 14 (save the file as UTF-8)"
    ]
