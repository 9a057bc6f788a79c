"""`redisops config audit | diff | apply`."""

from __future__ import annotations

from contextlib import closing
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from redisops.cli.common import (
    DryRunOption,
    YesOption,
    confirm_change,
    global_options,
    load_cluster_selection,
    make_output,
    selected_hosts,
)
from redisops.cli.groups import command_group
from redisops.cli.memory import FailOnOption, clusters_summary
from redisops.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redisops.fleet.fanout import HostResult
    from redisops.tuning.apply import HostChanges

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
        failed = [r.host for r in fleet.results if not r.ok]
        for r in fleet.results:
            if r.error:
                output.error(f"{r.host}: {r.error}")
        code = ExitCode.FAILED if failed else ExitCode.OK
    else:
        code = output.host_results(
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
    if fail_on and (flagged := fleet.hosts_at_or_above(fail_on)):
        output.warn(f"--fail-on {fail_on.value}: {fail_on.value} or worse on {', '.join(flagged)}")
        return ExitCode.FAILED
    return code


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
    code = output.host_results(
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
    if fail_on_drift and report.drifted:
        output.warn("--fail-on-drift: drift found")
        return ExitCode.FAILED
    return code


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
    from redisops.fleet.selection import split_sentinels
    from redisops.render.config import changes_view
    from redisops.tuning.apply import (
        APPLIED,
        apply_fleet,
        parse_assignments,
        plan_fleet,
        refusal,
        refusal_reasons,
    )
    from redisops.tuning.auditlog import AuditLog, default_audit_log

    options = global_options(ctx)
    output = make_output(options)
    overrides = parse_assignments(set_ or [])
    hosts, sentinels = split_sentinels(
        selected_hosts(options, output), lacking="Redis configuration"
    )
    plans = plan_fleet(
        hosts, overrides, force=force, timeout=options.timeout, parallel=options.parallel
    )
    refused = refusal(plans)
    pending = sum(len(r.data.changes) for r in plans if r.data)
    log_path = audit_log or default_audit_log()
    summary = {
        "dry_run": dry_run,
        "changes": pending,
        "audit_log": str(log_path),
        "sentinels_skipped": list(sentinels),
    }
    if dry_run or refused or not pending:
        code = output.host_results(
            "config apply",
            _failing_refusals(plans) if refused else plans,
            lambda rows: changes_view(output, rows),
            summary=summary,
        )
        output.skipped_sentinels(sentinels, "Redis configuration")
        if refused:
            for reason in refusal_reasons(plans):
                output.error(reason)
            raise refused
        if dry_run:
            output.err.print("dry run: nothing was changed", style="dim", highlight=False)
        return code
    output.err.print(changes_view(output, plans))
    with closing(AuditLog(log_path)) as log:
        targets = sum(1 for r in plans if r.data and r.data.changes)
        confirm_change(f"Apply {pending} change(s) to {targets} host(s)?", yes=yes)
        fleet = apply_fleet(
            hosts, plans, timeout=options.timeout, parallel=options.parallel, log=log
        )
    summary["outcome"] = fleet.outcome
    code = output.host_results(
        "config apply", fleet.results, lambda rows: changes_view(output, rows), summary=summary
    )
    if fleet.outcome != APPLIED:
        output.error(fleet.message)
    output.skipped_sentinels(sentinels, "Redis configuration")
    output.note(f"changes recorded in {log_path}")
    return code


def _failing_refusals(plans: Sequence[HostResult[HostChanges]]) -> list[HostResult[HostChanges]]:
    """A host whose plan has a refused setting is a failed row, so a refused apply's JSON
    document says `"ok": false` as its exit code 3 does."""
    return [
        replace(r, ok=False, error=f"refused: {', '.join(i.setting for i in r.data.refused)}")
        if r.data and r.data.refused
        else r
        for r in plans
    ]
