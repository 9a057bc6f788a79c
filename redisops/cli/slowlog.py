"""`redisops slowlog triage | tail | reset`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Slowlog and latency triage across the fleet.", no_args_is_help=True)
