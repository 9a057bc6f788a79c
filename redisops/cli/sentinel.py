"""`redisops sentinel status | drill`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Sentinel topology status and failover drills.", no_args_is_help=True)
