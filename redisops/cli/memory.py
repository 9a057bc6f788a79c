"""`redisops memory summary | report`."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Memory: which hosts are in trouble, which keys eat it.", no_args_is_help=True
)
