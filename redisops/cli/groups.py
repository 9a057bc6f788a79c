"""The command groups (name, module, one-line help) and how every command's help reads.

`redisops --help` lists the groups from this table and a group's module is imported only when
that group runs (as pip does with its commands), so help stays fast however many groups there
are. Every help page ends with an "Examples" section (the command's `epilog`, one command line
a line) and spells argument names one way: upper case, `[NAME]` when optional.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

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
    "snapshot": (
        "redisops.cli.snapshot",
        "Incident snapshots: capture a fleet's state, show it, compare two.",
    ),
    "cluster": ("redisops.cli.cluster", "Redis Cluster: shards, slot coverage and health."),
    "lab": ("redisops.cli.lab", "A local sandbox fleet: master, replicas, sentinels."),
    "playbook": ("redisops.cli.playbook", "Run YAML runbooks that chain redisops commands."),
}

GROUP_EXAMPLES: dict[str, str] = {
    "inventory": """
        redisops -i inventory.yaml inventory list
        redisops -i inventory.yaml -l cache inventory check -o json
    """,
    "memory": """
        redisops -i inventory.yaml memory summary
        redisops -i inventory.yaml -l cache-1 memory report --top 50
        redisops memory rdb /var/lib/redis/dump.rdb
    """,
    "slowlog": """
        redisops -i inventory.yaml slowlog triage
        redisops -i inventory.yaml -l cache-1 slowlog tail --follow
    """,
    "backup": """
        redisops -i inventory.yaml -l cache-1 backup run
        redisops -i inventory.yaml backup list
        redisops -i inventory.yaml -l cache-1 backup restore latest --dry-run
    """,
    "sentinel": """
        redisops -i inventory.yaml sentinel status
        redisops -i inventory.yaml sentinel drill --master mymaster --dry-run
    """,
    "config": """
        redisops -i inventory.yaml config audit
        redisops -i inventory.yaml config diff
        redisops -i inventory.yaml -l cache config apply --set maxmemory-policy=allkeys-lru
    """,
    "snapshot": """
        redisops -i inventory.yaml snapshot take --dest /var/lib/redisops/snapshots
        redisops snapshot show /var/lib/redisops/snapshots/snapshot-20261205T030000Z.tar.zst
        redisops snapshot diff snapshot-20261204T030000Z.tar.zst snapshot-20261205T030000Z.tar.zst
    """,
    "cluster": """
        redisops -i inventory.yaml cluster status
        redisops -i inventory.yaml -l cache cluster status -o json
    """,
    "lab": """
        redisops lab up --dir /tmp/lab --seed 10000
        redisops lab status --dir /tmp/lab
        redisops lab down --dir /tmp/lab --purge
    """,
    "playbook": """
        redisops -i inventory.yaml playbook run playbooks/memory-pressure.yaml
        redisops -i inventory.yaml playbook run playbooks/memory-pressure.yaml --step
    """,
}

ROOT_EXAMPLES = """
    redisops -i prod.yaml inventory check
    redisops -i prod.yaml -l cache -l '!cache-3' memory summary -o json
    redisops memory report --help
"""

# Each command's examples, by its path: real command lines, checked against the command tree
# by tests/test_cli_shell.py. A command may give its own with `epilog=`.
COMMAND_EXAMPLES: dict[str, str] = {
    "cluster status": """
        redisops -i prod.yaml cluster status
        redisops -i prod.yaml -l cache,sessions cluster status -o json
    """,
    "cluster drill": """
        redisops -i prod.yaml cluster drill --shard shard-2 --dry-run
        redisops -i prod.yaml -l cache cluster drill --node cache-3 --mode crash --yes
        redisops -i prod.yaml cluster drill --shard shard-1 --mode failover --failback --yes
        redisops -i prod.yaml cluster drill --history --last 5
    """,
    "cluster rebalance": """
        redisops -i prod.yaml -l cache cluster rebalance --dry-run
        redisops -i prod.yaml -l cache cluster rebalance --tolerance 10 --rate 5000 --yes
        redisops -i prod.yaml -l cache cluster rebalance --by slots -o json --yes
    """,
    "cluster drain": """
        redisops -i prod.yaml -l cache cluster drain cache-c --dry-run
        redisops -i prod.yaml -l cache cluster drain 10.0.2.12:6379 --rate 5000 --yes
    """,
    "inventory list": """
        redisops -i prod.yaml inventory list
        redisops -i prod.yaml -l 'cache-*,!cache-3' inventory list -o json
    """,
    "inventory check": """
        redisops -i prod.yaml inventory check
        redisops -i prod.yaml -l sentinels --timeout 2 inventory check -o json
    """,
    "memory summary": """
        redisops -i prod.yaml memory summary
        redisops -i prod.yaml -l cache memory summary --fail-on critical
    """,
    "memory report": """
        redisops -i prod.yaml -l cache-2 memory report
        redisops -i prod.yaml -l cache-2 memory report --top 50 --encodings
        redisops -i prod.yaml -l cache-1 memory report --on-master --rate 5000 --sample 0.1
        redisops -i prod.yaml -l sessions/shard-2 memory report -o json
    """,
    "memory rdb": """
        redisops memory rdb /var/lib/redis/dump.rdb
        redisops -i prod.yaml memory rdb cache-1-20261205T030000Z --keys-csv keys.csv
    """,
    "slowlog triage": """
        redisops -i prod.yaml slowlog triage
        redisops -i prod.yaml -l cache slowlog triage --since 1h --sort max --top 10
        redisops -i prod.yaml slowlog triage --state slowlog.state --reset --yes
    """,
    "slowlog tail": """
        redisops -i prod.yaml -l cache-1 slowlog tail -n 20
        redisops -i prod.yaml -l cache slowlog tail --follow --for 300
    """,
    "slowlog reset": """
        redisops -i prod.yaml -l cache slowlog reset --dry-run
        redisops -i prod.yaml -l cache slowlog reset --yes
    """,
    "backup run": """
        redisops -i prod.yaml -l cache-1 backup run
        redisops -i prod.yaml -l cache backup run --kind aof --compress zstd --reason scheduled
    """,
    "backup list": """
        redisops -i prod.yaml backup list
        redisops -i prod.yaml -l cache-1 backup list -o json
    """,
    "backup verify": """
        redisops -i prod.yaml backup verify cache-1-20261205T030000Z
        redisops -i prod.yaml -l cache backup verify --all
    """,
    "backup prune": """
        redisops -i prod.yaml backup prune --keep-last 7 --keep-daily 14 --dry-run
        redisops -i prod.yaml backup prune --keep-last 7 --keep-daily 14 --yes
    """,
    "backup restore": """
        redisops -i prod.yaml -l cache-1 backup restore latest --dry-run
        redisops -i prod.yaml -l cache-1 backup restore cache-1-20261205T030000Z --yes
        redisops -i staging.yaml -l cache-1 backup restore latest --from-host prod-cache-1
    """,
    "backup restore-keys": """
        redisops -i prod.yaml -l cache-1 backup restore-keys latest --match 'user:42:*' --dry-run
        redisops -i prod.yaml -l cache-1 backup restore-keys latest --match 'cart:*' --yes
        redisops -i prod.yaml -l managed-1 backup restore-keys dump.rdb --all --rate 5000 --yes
        redisops -i prod.yaml -l sessions backup restore-keys old-cache.rdb --all --dry-run
    """,
    "sentinel status": """
        redisops -i prod.yaml sentinel status
        redisops -i prod.yaml -l sentinels sentinel status -o json
    """,
    "sentinel drill": """
        redisops -i prod.yaml sentinel drill --master mymaster --dry-run
        redisops -i prod.yaml sentinel drill --master mymaster --mode crash --max-lost 0 --yes
        redisops -i prod.yaml sentinel drill --history --last 5
    """,
    "sentinel remove": """
        redisops -i prod.yaml sentinel remove --master mymaster --save cache.sentinel.json --dry-run
        redisops -i prod.yaml sentinel remove --master mymaster --save cache.sentinel.json --yes
    """,
    "sentinel monitor": """
        redisops -i prod.yaml sentinel monitor --from cache.sentinel.json --dry-run
        redisops -i prod.yaml sentinel monitor --from cache.sentinel.json --yes
    """,
    "config audit": """
        redisops -i prod.yaml config audit
        redisops -i prod.yaml -l cache config audit --fail-on warning
        redisops -i prod.yaml -l cache config audit --emit-yaml
    """,
    "config diff": """
        redisops -i prod.yaml config diff
        redisops -i prod.yaml -l cache config diff --fail-on-drift
    """,
    "config apply": """
        redisops -i prod.yaml -l cache config apply --dry-run
        redisops -i prod.yaml -l cache-1 config apply --set maxmemory-policy=allkeys-lru --yes
    """,
    "snapshot take": """
        redisops -i prod.yaml snapshot take --dest /var/lib/redisops/snapshots
        redisops -i prod.yaml -l cache --timeout 2 snapshot take --dest . -o json
        redisops -i prod.yaml snapshot take --dest /var/lib/redisops/snapshots --keep 30
    """,
    "snapshot show": """
        redisops snapshot show snapshot-20261205T030000Z.tar.zst
        redisops snapshot show snapshot-20261205T030000Z.tar.zst --top 0 -o json
        redisops snapshot show snapshot-20261205T030000Z.tar.zst --html incident.html
    """,
    "snapshot diff": """
        redisops snapshot diff snapshot-20261204T030000Z.tar.zst snapshot-20261205T030000Z.tar.zst
        redisops snapshot diff --in /var/lib/redisops/snapshots --fail-on-change -o json
    """,
    "lab up": """
        redisops lab up --dir /tmp/lab --seed 10000
        redisops lab up --dir /tmp/lab --replicas 1 --sentinels 0 --base-port 7100
    """,
    "lab down": """
        redisops lab down --dir /tmp/lab
        redisops lab down --dir /tmp/lab --purge
    """,
    "lab status": """
        redisops lab status --dir /tmp/lab
        redisops lab status --dir /tmp/lab -o json
    """,
    "playbook run": """
        redisops -i prod.yaml -l cache-1 playbook run playbooks/memory-pressure.yaml
        redisops -i prod.yaml playbook run playbooks/nightly-backup.yaml --dry-run
        redisops -i prod.yaml playbook run playbooks/latency-spike.yaml --step
    """,
    "cluster add-node": """
        redisops -i prod.yaml cluster add-node cache-7 --cluster cache --dry-run
        redisops -i prod.yaml cluster add-node cache-7 --cluster cache --yes
        redisops -i prod.yaml cluster add-node cache-8 --cluster cache --replica-of cache-7 --yes
    """,
    "cluster restore": """
        redisops -i prod.yaml cluster restore cache-20261205T020000Z --dest /srv/backups --dry-run
        redisops -i prod.yaml cluster restore cache-20261205T020000Z --dest /srv/backups --yes
        redisops -i staging.yaml cluster restore cache-20261205T020000Z --cluster cache-staging
    """,
}

# What an option's value is, by its annotation, where the option names no metavar itself.
_VALUE_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


def command_group(name: str) -> typer.Typer:
    """The Typer app of one group: its help from the table, plain help formatting, and
    commands whose help reads as every redisops command's does."""
    return _GroupApp(
        help=COMMAND_GROUPS[name][1],
        epilog=GROUP_EXAMPLES[name],
        no_args_is_help=True,
        rich_markup_mode=None,
        cls=RedisopsSubgroup,
    )


def write_examples(epilog: str | None, formatter: Any) -> None:
    """The "Examples" section: each non-blank line of `epilog` as it is (never re-wrapped, so
    it can be pasted)."""
    lines = [line.strip() for line in (epilog or "").splitlines() if line.strip()]
    if not lines:
        return
    with formatter.section("Examples"):
        for line in lines:
            formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


class RedisopsSubgroup(TyperGroup):
    """A command group whose help ends with its examples."""

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        write_examples(self.epilog, formatter)


class RedisopsCommand(TyperCommand):
    """A command whose help names values in upper case (`BACKUP_ID`, `PATH`) and ends with
    its examples (its `epilog`, else COMMAND_EXAMPLES)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is not None:
                continue
            if param.param_type_name == "argument":
                param.metavar = param.name.upper()
            elif not (param.is_flag or param.count):
                param.metavar = _value_name(param)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar if param.required else f"[{param.metavar}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((param.metavar, record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        write_examples(self.epilog or examples_of(ctx.command_path), formatter)


def examples_of(command_path: str) -> str:
    """The examples of a command, by its path (`redisops memory report`)."""
    return COMMAND_EXAMPLES.get(command_path.removeprefix("redisops").strip(), "")


def _value_name(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return "TEXT"
    if descriptor.is_choice:
        return "|".join(str(getattr(choice, "value", choice)) for choice in descriptor.choices)
    annotation = descriptor.annotation
    if getattr(annotation, "__origin__", None) is list:
        annotation = annotation.__args__[0]
    return _VALUE_NAMES.get(getattr(annotation, "__name__", ""), "TEXT")


class _GroupApp(typer.Typer):
    """A Typer app whose commands are RedisopsCommand unless they say otherwise."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["cls"] = kwargs.get("cls") or RedisopsCommand
        return super().command(*args, **kwargs)
