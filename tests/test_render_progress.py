"""The one progress-bar factory (render/progress.py): bars only for a person at a terminal,
counted in bytes or keys, fed from many threads at once."""

from __future__ import annotations

import io
import threading

import pytest
from rich.console import Console

from redisops.render.output import Output
from redisops.render.progress import progress_bars


def _output(fmt: str = "table", *, terminal: bool = True) -> tuple[Output, io.StringIO]:
    output = Output(fmt)
    err = io.StringIO()
    output._out = Console(file=io.StringIO(), force_terminal=terminal, width=100)
    output._err = Console(file=err, force_terminal=terminal, width=100, color_system=None)
    return output, err


@pytest.mark.parametrize(("fmt", "terminal"), [("json", True), ("table", False)])
def test_no_bars_for_json_or_off_a_terminal(fmt, terminal):
    output, err = _output(fmt, terminal=terminal)
    with progress_bars(output, "bytes") as advance:
        assert advance is None
    assert err.getvalue() == ""


def test_byte_bars_fed_by_threads_end_complete():
    output, err = _output()
    total = 4 * 1024 * 1024
    with progress_bars(output, "bytes") as advance:
        assert advance is not None

        def copy(host: str) -> None:
            for done in range(0, total + 1, 64 * 1024):
                advance(host, done, total)

        threads = [threading.Thread(target=copy, args=(f"cache-{n}",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    text = err.getvalue()
    for n in range(4):
        assert f"cache-{n}" in text
    assert "4.2/4.2 MB" in text  # every bar's last call (done == total) is drawn


def test_key_bars_show_count_and_rate():
    output, err = _output()
    with progress_bars(output, "keys") as advance:
        assert advance is not None
        for seen in range(0, 501, 100):
            advance("cache-1", seen, 500)
    text = err.getvalue()
    assert "500/500" in text
    assert "keys/s" in text
