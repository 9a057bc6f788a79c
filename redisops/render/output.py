"""The one place that writes results: Rich tables for people, one JSON document for machines.

Data goes to stdout, diagnostics to stderr. Every string passes a last redaction pass for
known secrets, as a safety net behind never putting secrets in results at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from redisops.redaction import redact
from redisops.render.documents import note_document
from redisops.results import HostResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

PIPED_WIDTH = 200

# Set while a playbook step runs with -o json: the tables it would have shown are kept here.
_step_views: ContextVar[list[Any] | None] = ContextVar("redisops_step_views", default=None)


@contextmanager
def collecting_views() -> Iterator[list[RenderableType]]:
    """Keep the tables of JSON-mode commands run inside, so a playbook shows each step's table
    without running the step twice."""
    views: list[RenderableType] = []
    token = _step_views.set(views)
    try:
        yield views
    finally:
        _step_views.reset(token)


class Output:
    """Where one command invocation writes: format chosen once, consoles made on first use."""

    def __init__(self, fmt: str = "table", *, verbose: bool = False) -> None:
        self.format = fmt
        self.verbose = verbose
        self._out: Console | None = None
        self._err: Console | None = None

    @property
    def out(self) -> Console:
        if self._out is None:
            self._out = _console(sys.stdout)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            self._err = _console(sys.stderr)
        return self._err

    @property
    def interactive(self) -> bool:
        """True when a person is watching stdout (progress bars and colour are welcome)."""
        return self.format == "table" and self.out.is_terminal

    # --- diagnostics on stderr ---------------------------------------------------------------

    def warn(self, message: str) -> None:
        self._line("warning", message, "yellow")

    def error(self, message: str, hint: str | None = None) -> None:
        self._line("error", message, "red")
        if hint:
            self._line("hint", hint, "dim")

    def interrupted(self, signal_name: str, done: str | None) -> None:
        """The one line a stopped command leaves: which signal, and what had been done."""
        self._line("interrupted", f"{signal_name}; {done or 'stopped before any result'}", "red")

    def note(self, message: str) -> None:
        """A detail shown only with --verbose."""
        if self.verbose:
            self._line("info", message, "dim")

    def _line(self, label: str, message: str, style: str) -> None:
        from rich.text import Text

        text = Text(f"{label}: ", style=style)
        text.append(printable(redact(" ".join(message.split()))))
        self.err.print(text, soft_wrap=True, highlight=False)

    # --- results on stdout -------------------------------------------------------------------

    def host_results(
        self,
        command: str,
        results: Sequence[HostResult],
        table: Callable[[Sequence[HostResult]], RenderableType],
        summary: dict[str, Any] | None = None,
        noun: str = "hosts",
    ) -> None:
        """Render fan-out results: the table (or the JSON document) and, on stderr, how many
        worked. The exit code is the command's to compute (redisops/exitcode.py)."""
        failed = sum(1 for r in results if not r.ok)
        summary = {"hosts": len(results), "ok": len(results) - failed, "failed": failed} | (
            summary or {}
        )
        if self.format == "json":
            self.json(command, results, summary)
            views = _step_views.get()
            if views is not None:
                views.append(table(results))
        else:
            self.out.print(table(results))
            self.err.print(
                f"{summary['ok']} of {summary['hosts']} {noun} ok"
                + (f", {failed} failed" if failed else ""),
                style="red" if failed else "dim",
                highlight=False,
            )

    def json(self, command: str, results: Sequence[HostResult], summary: dict[str, Any]) -> None:
        """Write exactly one JSON document (the envelope of DESIGN.md) to stdout."""
        document = {
            "command": command,
            "ok": all(r.ok for r in results),
            "results": [dataclasses.asdict(r) for r in results],
            "summary": summary,
        }
        text = json.dumps(_redacted(document), indent=2, default=_jsonable)
        self._write_document(command, text)

    def failure(self, command: str, message: str, hint: str | None, exit_code: int) -> None:
        """The JSON document of a run stopped by an error (usage, refusal) before it wrote its
        own: `ok` false and the error, so `| jq` sees the failure."""
        document = {
            "command": command,
            "ok": False,
            "error": " ".join(message.split()),
            "hint": hint,
            "exit_code": int(exit_code),
            "results": [],
            "summary": {},
        }
        self._write_document(command, json.dumps(_redacted(document), indent=2))

    def _write_document(self, command: str, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        note_document(command)

    def skipped_sentinels(self, names: Sequence[str], holds: str) -> None:
        """Say on stderr which Sentinels were left out, so a shorter table is no surprise."""
        if names and self.format == "table":
            self.err.print(
                f"{len(names)} Sentinel hosts skipped (no {holds}): {', '.join(names)}",
                style="dim",
                highlight=False,
                markup=False,
            )

    def json_line(self, record: dict[str, Any]) -> None:
        """Write one compact JSON object and a newline to stdout, flushed (for JSON Lines)."""
        text = json.dumps(_redacted(record), default=_jsonable)
        self._write_document(str(record.get("command", "")), text)

    def table(
        self,
        *columns: str,
        title: str | None = None,
        essential: Sequence[str] = (),
        drop: Sequence[str] = (),
    ) -> Table:
        """A table styled for the terminal, or plain columns when piped (for grep and cron).

        It fits the width it is printed at (render/layout.py): `essential` columns (names,
        keys, ids) are never cut or dropped, `drop` columns go first to last when the rest
        does not fit, and below that each row turns into `label  value` lines.
        """
        from rich import box

        from redisops.render.layout import FitTable

        style: dict[str, Any] = (
            {"box": box.SIMPLE_HEAD, "header_style": "bold"}
            if self.out.is_terminal
            else {"box": None, "show_edge": False, "header_style": "", "pad_edge": False}
        )
        return FitTable(*columns, title=title, essential=essential, drop=drop, **style)

    def cell(self, value: Any) -> str:
        """A table cell as markup-safe text, secrets redacted, None shown as a dash, control
        and bidi characters escaped (a key or message may hold any byte)."""
        from rich.markup import escape

        if value is None:
            return "-"
        return escape(printable(redact(str(value))))


def printable(text: str) -> str:
    """`text` with the characters a terminal would act on or hide (ESC, U+202E, zero-width
    ones) escaped as key names are (`keypatterns.key_text`); line breaks are kept."""
    if text.isprintable():
        return text
    from redisops.keypatterns import key_text

    return "\n".join(key_text(line) for line in text.split("\n"))


def _console(stream: Any) -> Console:
    from rich.console import Console

    terminal = stream.isatty() if hasattr(stream, "isatty") else False
    width = None if terminal or os.environ.get("COLUMNS") else PIPED_WIDTH
    # Rich already honours NO_COLOR and drops colour when the stream is not a terminal.
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)
