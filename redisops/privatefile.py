"""Files redisops writes for the operator (key lists, run records): private and whole.

Key names and incident records can be sensitive; under the usual umask 022 a plain `open`
makes them 0644. Backups have their own writers (datafile.py, backup/catalogue.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from redisops.fleet.hostaccess import fsync_dir


@contextlib.contextmanager
def private_file(path: Path, **open_options: Any) -> Iterator[IO[str]]:
    """A text file to write `path` through: 0600 from its first byte whatever the umask, at a
    temporary name beside `path`, fsynced and renamed over it when the block ends cleanly,
    removed when the block raises (an interrupt included). `open_options` go to `open`
    (e.g. `newline=""` for csv)."""
    path = Path(path)
    # mkstemp: O_EXCL and mode 0600, and a name no other run uses.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with open(fd, "w", encoding="utf-8", **open_options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_dir(path.parent)
