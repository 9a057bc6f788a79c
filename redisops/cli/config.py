"""`redisops config audit | diff | apply`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from redisops.cli.common import (
    DryRunOption,
    YesOption,
    global_options,
    load_cluster_selection,
    make_output,
    selected_hosts,
)
from redisops.cli.groups import command_group
from redisops.cli.memory import FailOnOption, clusters_summary
from redisops.errors import UsageError
from redisops.exitcode import exit_code

app = command_group("config")


@app.command()
def audit(
    ctx: typer.Context,
    fail_on: FailOnOption = None,
    emit_yaml: Annotated[
        bool,
        typer.Option(
            "--emit-yaml",
            help="Print the recommended settings as a redis_config block for the inventory.",
        ),
    ] = False,
    rate_window: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to measure the replication write rate over (0: skip that rule).",
        ),
    ] = 1.0,
) -> int:
    """Audit every selected Redis host against the production checklist.

    Reads CONFIG GET *, INFO, ACL LIST/DRYRUN (where allowed) and, for hosts with host
    access, the machine's memory, overcommit, THP, somaxconn, swappiness and the Redis
    process's open-files limit. Findings are grouped by severity with the current and
    recommended value, why, and the fix. Rules whose input cannot be read are listed as
    unchecked. Sentinels are skipped. Exit 1 when a host fails, or with --fail-on when a
    finding of that severity or worse is found.
    """
    from redisops.memory.cluster import with_cluster_nodes
    from redisops.render.config import audit_view, audit_yaml
    from redisops.tuning.audit import audit_fleet

    options = global_options(ctx)
    output = make_output(options)
    if emit_yaml and output.format == "json":
        raise UsageError("--emit-yaml prints YAML: use it without -o json")
    inventory, selection = load_cluster_selection(options, output)
    fleet = audit_fleet(
        selection.hosts,
        inventory_hosts=with_cluster_nodes(inventory.hosts, selection.clusters.values()),
        timeout=options.timeout,
        parallel=options.parallel,
        rate_window=rate_window,
        invoked=options.command_line,
    )
    if emit_yaml:
        output.out.print(
            audit_yaml(fleet.results, options.command_line), markup=False, highlight=False, end=""
        )
        for r in fleet.results:
            if r.error:
                output.error(f"{r.host}: {r.error}")
    else:
        output.host_results(
            "config audit",
            fleet.results,
            lambda rows: audit_view(output, rows, options.command_line),
            summary={
                "findings": fleet.findings_by_severity(),
                "sentinels_skipped": list(fleet.skipped_sentinels),
                "rate_window": rate_window,
            },
        )
    output.skipped_sentinels(fleet.skipped_sentinels, "Redis configuration")
    flagged = fleet.hosts_at_or_above(fail_on) if fail_on else []
    if flagged:
        output.warn(f"--fail-on {fail_on.value}: {fail_on.value} or worse on {', '.join(flagged)}")
    return exit_code(fleet.results, flagged=flagged)


@app.command()
def diff(
    ctx: typer.Context,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit 1 when any drift is found.")
    ] = False,
) -> int:
    """Show settings that differ between the selected hosts, and from the inventory.

    Compares CONFIG GET * across hosts (only differing settings are shown; per-instance ones
    such as port, dir, pidfile, replicaof, logfile, and secrets are not compared) and each
    host against its redis_config from the inventory. Values are compared as Redis reads
    them: 1gb equals 1073741824, YES equals yes. The nodes of each Redis Cluster are also
    compared among themselves. Sentinels are skipped.
    """
    from redisops.render.config import drift_view
    from redisops.tuning.drift import diff_fleet

    options = global_options(ctx)
    output = make_output(options)
    hosts = selected_hosts(options, output, clusters=True)
    report = diff_fleet(hosts, timeout=options.timeout, parallel=options.parallel)
    for name in report.ignored:
        output.warn(f"redis_config.{name} is a secret: never compared or shown")
    output.host_results(
        "config diff",
        report.results,
        lambda rows: drift_view(output, report, rows),
        summary={
            "drift": [asdict(drift) for drift in report.fleet],
            "settings_compared": report.compared,
            "sentinels_skipped": list(report.skipped_sentinels),
        }
        | clusters_summary(report.clusters),
    )
    output.skipped_sentinels(report.skipped_sentinels, "Redis configuration")
    drifted = fail_on_drift and bool(report.drifted)
    if drifted:
        output.warn("--fail-on-drift: drift found")
    return exit_code(report.results, flagged=drifted)


@app.command()
def apply(
    ctx: typer.Context,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A setting to apply to every selected host (repeatable); without it, each "
            "host's redis_config from the inventory.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also apply dangerous settings (dir, dbfilename, bind, port, …)."
        ),
    ] = False,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            help="Where to append the record of changes "
            "[default: $XDG_STATE_HOME/redisops/config-changes.jsonl, else ~/.local/state/…].",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Apply settings safely: plan, show, confirm, CONFIG SET, read back, CONFIG REWRITE.

    Per host, all changes go in one CONFIG SET (all or nothing in Redis 7), are read back and
    persisted with CONFIG REWRITE; if a value reads back wrong or the rewrite fails, that host
    is rolled back. Secrets are never applied, unknown settings are refused, dangerous ones
    need --force. Every change is appended to the audit log. Sentinels are skipped.
    """
    from redisops.cli.change import carry_out
    from redisops.fleet.selection import split_sentinels
    from redisops.render.config import changes_view
    from redisops.tuning.apply import apply_config, parse_assignments, plan_config_apply
    from redisops.tuning.auditlog import default_audit_log

    options = global_options(ctx)
    output = make_output(options)
    overrides = parse_assignments(set_ or [])
    hosts, sentinels = split_sentinels(
        selected_hosts(options, output), lacking="Redis configuration"
    )
    log_path = audit_log or default_audit_log()
    plan = plan_config_apply(
        hosts,
        overrides,
        force=force,
        timeout=options.timeout,
        parallel=options.parallel,
        audit_log=log_path,
        sentinels=sentinels,
    )
    try:
        return carry_out(
            output,
            plan,
            lambda: apply_config(plan, hosts, timeout=options.timeout, parallel=options.parallel),
            view=lambda rows: changes_view(output, rows),
            yes=yes,
            dry_run=dry_run,
            audit=lambda _: f"changes recorded in {log_path}",
        )
    finally:
        output.skipped_sentinels(sentinels, "Redis configuration")
