"""Prometheus textfile metrics of a backup run, for node_exporter's textfile collector.

Figures about "the last successful backup" come from the catalogue, not from this run: a
failed night leaves the last success where it was, which is what an alert on its age needs.
The file is replaced atomically, so the collector never reads half of it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from redisops.backup.catalogue import Backup, Catalogue, newest, now_utc
from redisops.errors import UsageError
from redisops.fleet.hostaccess import fsync_dir
from redisops.results import HostResult

PREFIX = "redisops_backup"
METRICS = (
    ("last_run_timestamp_seconds", "Unix time this host's last backup run ended."),
    ("last_run_success", "1 if this host's last backup run succeeded, else 0."),
    ("last_success_timestamp_seconds", "Unix time the newest good backup finished."),
    ("last_success_duration_seconds", "How long the newest good backup took."),
    ("last_success_bytes", "Stored size of the newest good backup."),
    ("last_success_verified", "1 if the newest good backup is verified (0: unverifiable)."),
    ("last_success_keys", "Keys in the newest good backup."),
)


def metrics_text(results: Sequence[HostResult[Backup]], catalogue: Catalogue, kind: str) -> str:
    """The textfile: one sample per metric and host (label `kind` too)."""
    ended = now_utc().timestamp()
    values: dict[str, list[tuple[str, float]]] = {name: [] for name, _ in METRICS}
    for result in results:
        labels = f'host="{_label(result.host)}",kind="{kind}"'
        values["last_run_timestamp_seconds"].append((labels, ended))
        values["last_run_success"].append((labels, 1 if result.ok else 0))
        good = newest(b for b in catalogue.of_host(result.host) if b.kind == kind and b.good)
        if good is None:
            continue
        values["last_success_timestamp_seconds"].append((labels, good.finished.timestamp()))
        values["last_success_duration_seconds"].append((labels, good.duration_seconds))
        values["last_success_bytes"].append((labels, good.bytes))
        values["last_success_verified"].append((labels, 1 if good.verified else 0))
        if good.keys is not None:
            values["last_success_keys"].append((labels, good.keys))
    lines = []
    for name, help_text in METRICS:
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
        lines += [f"{PREFIX}_{name}{{{labels}}} {_number(value)}" for labels, value in values[name]]
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, text: str) -> None:
    """Replace `path` atomically (temporary name in the same folder, fsync, rename), 0644:
    the collector runs as another user, and the file holds no secret."""
    temporary = path.with_name(f".{path.name}.part")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        raise UsageError(f"cannot write --metrics-file {path}: {exc.strerror}") from None
    fsync_dir(path.parent)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"
