"""The one place that writes results: Rich tables for people, one JSON document for machines.

Data goes to stdout, diagnostics to stderr. Every string passes a last redaction pass for
known secrets, as a safety net behind never putting secrets in results at all.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from redisops.redaction import redact
from redisops.render.documents import note_document
from redisops.results import HostResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

PIPED_WIDTH = 200


class Output:
    """Where one command invocation writes: format chosen once, consoles made on first use."""

    def __init__(self, fmt: str = "table", *, verbose: bool = False) -> None:
        self.format = fmt
        self.verbose = verbose
        self._out: Console | None = None
        self._err: Console | None = None
        # A playbook step's Output keeps the tables a JSON-mode command would have drawn.
        self.views: list[RenderableType] | None = None

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
            if self.views is not None:
                self.views.append(table(results))
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
        self._write_document(command, document, indent=2)

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
        self._write_document(command, document, indent=2)

    def _write_document(
        self, command: str, document: dict[str, Any], *, indent: int | None
    ) -> None:
        text = json.dumps(json_document(document), indent=indent)
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
        self._write_document(str(record.get("command", "")), record, indent=None)

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


class CollectingOutput(Output):
    """A playbook step's Output: the command's JSON document and the tables it would have
    drawn are kept here, for the run to record and show, instead of reaching stdout.
    Diagnostics still go to stderr; whatever else the command prints is dropped, as the
    step's stdout is the playbook's."""

    def __init__(self, *, verbose: bool = False) -> None:
        super().__init__("json", verbose=verbose)
        self.views = []
        self.document: dict[str, Any] | None = None
        self._out = _console(io.StringIO())

    def _write_document(
        self, command: str, document: dict[str, Any], *, indent: int | None
    ) -> None:
        self.document = json_document(document)  # a JSON Lines stream leaves its last record
        note_document(command)


def json_document(value: Any) -> Any:
    """`value` redacted, in JSON's own types as `json.dumps` writes it (text keys, lists for
    tuples and sets, text for bytes and other objects): what stdout carries, and what a
    playbook's expressions read from a step, with no round trip through text."""
    if isinstance(value, str):
        return redact(str.__str__(value))  # a str Enum is its value, as json writes it
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {_json_key(key): json_document(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_document(item) for item in value]
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", errors="backslashreplace"))
    if isinstance(value, (set, frozenset)):
        return [json_document(item) for item in sorted(value)]
    return redact(str(value))


def _json_key(key: Any) -> str:
    """A mapping key as `json.dumps` writes it."""
    if isinstance(key, str):
        return redact(str.__str__(key))
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, (int, float)):
        return json.dumps(json_document(key))
    return redact(str(key))


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
