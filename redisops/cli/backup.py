"""`redisops backup run | list | verify | prune | restore`."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Backups: RDB and AOF, verified, catalogued, restorable.", no_args_is_help=True
)
