"""An RDB file to read and where it came from: a path given as is, or a catalogued backup's
data file (backup/catalogue.py finds those), so the reader's callers need not know which."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from redisops.datafile import sniff_compression


@dataclass(frozen=True)
class RdbInput:
    """An RDB to read: `label` names it in the report (the backup's host, else the file name),
    `address` says where it is; `raw_bytes` is its uncompressed size, for progress (0 when
    unknown)."""

    label: str
    address: str
    path: Path
    compression: str
    raw_bytes: int
    role: str
    backup_id: str | None = None


def rdb_file(path: Path) -> RdbInput:
    """`path` as an RDB to read; a backup's .zst/.gz data file given by path is read as such."""
    compression = sniff_compression(path)
    raw_bytes = path.stat().st_size if compression == "none" else 0
    return RdbInput(path.name, str(path), path, compression, raw_bytes, "file")
