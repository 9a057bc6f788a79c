"""The command groups: name, module and one-line help.

`redisops --help` lists them from this table and a group's module is imported only when that
group runs (as pip does with its commands), so help stays fast however many groups there are.
"""

from __future__ import annotations

import typer

COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "inventory": (
        "redisops.cli.inventory",
        "Show the hosts of the inventory and check that they answer.",
    ),
    "memory": ("redisops.cli.memory", "Memory: which hosts are in trouble, which keys eat it."),
    "slowlog": ("redisops.cli.slowlog", "Slowlog and latency triage across the fleet."),
    "backup": ("redisops.cli.backup", "Backups: RDB and AOF, verified, catalogued, restorable."),
    "sentinel": ("redisops.cli.sentinel", "Sentinel topology status and failover drills."),
    "config": ("redisops.cli.config", "Configuration: audit, drift and safe apply."),
    "lab": ("redisops.cli.lab", "A local sandbox fleet: master, replicas, sentinels."),
    "playbook": ("redisops.cli.playbook", "Run YAML runbooks that chain redisops commands."),
}


def command_group(name: str) -> typer.Typer:
    """The Typer app of one group, with its help from the table and plain help formatting."""
    return typer.Typer(help=COMMAND_GROUPS[name][1], no_args_is_help=True, rich_markup_mode=None)
