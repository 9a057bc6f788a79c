"""`redisops config audit | diff | apply`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Configuration: audit, drift and safe apply.", no_args_is_help=True)
