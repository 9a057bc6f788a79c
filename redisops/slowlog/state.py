"""The `--state FILE` of incremental triage: one bookmark per host, written atomically.

The file holds host names, run_ids and entry ids: no passwords, no command arguments. It is
written to a temporary name beside it, flushed and renamed, so a run killed half-way leaves
the previous state whole.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from redisops.errors import RedisopsError, UsageError
from redisops.slowlog.collect import Bookmark

STATE_KIND = "redisops-slowlog-state"
STATE_FORMAT = 1


def load_bookmarks(path: Path) -> dict[str, Bookmark]:
    """The bookmarks saved in `path`; none when it does not exist yet.

    Raises UsageError (exit 2) when the file cannot be read or is not a slowlog state.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageError(f"state file {path} cannot be read: {exc.strerror}") from None
    try:
        document = json.loads(text)
        if document.get("kind") != STATE_KIND or document.get("format") != STATE_FORMAT:
            raise ValueError("not a redisops slowlog state")
        return {
            str(name): Bookmark(
                str(mark["run_id"]),
                None if mark["last_id"] is None else int(mark["last_id"]),
                bool(mark["reset"]),
            )
            for name, mark in document["hosts"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(
            f"state file {path} is not a redisops slowlog state ({exc})",
            hint="point --state at another file, or remove this one to start afresh",
        ) from None


def check_state_writable(path: Path) -> None:
    """Fail before collecting (and maybe resetting) when the state could not be saved after."""
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"state file {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"state file {path}: folder {folder} is not writable")


def save_bookmarks(path: Path, bookmarks: Mapping[str, Bookmark]) -> None:
    """Replace `path` with `bookmarks` atomically (temporary file, fsync, rename); mode 0600."""
    document = {
        "kind": STATE_KIND,
        "format": STATE_FORMAT,
        "saved_at": int(time.time()),
        "hosts": {
            name: {"run_id": mark.run_id, "last_id": mark.last_id, "reset": mark.reset}
            for name, mark in sorted(bookmarks.items())
        },
    }
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise RedisopsError(f"state file {path} cannot be written: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise RedisopsError(f"state file {path} cannot be written: {exc.strerror}") from None
