"""`redisops backup run | list | verify | prune | restore | restore-keys`."""

from __future__ import annotations

import atexit
import gc
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from redisops.cli.common import (
    DryRunOption,
    YesOption,
    global_options,
    load_cluster_selection,
    load_selection,
    make_output,
)
from redisops.cli.groups import command_group
from redisops.errors import HostError, RefusedError, UsageError
from redisops.exitcode import exit_code

app = command_group("backup")


class Kind(str, Enum):
    rdb = "rdb"
    aof = "aof"


class Via(str, Enum):
    replication = "replication"
    file = "file"


class Compression(str, Enum):
    none = "none"
    zstd = "zstd"
    gzip = "gzip"


class Reason(str, Enum):
    """Why a run is taken; `safety` is the restore's own and cannot be given."""

    manual = "manual"
    scheduled = "scheduled"


DestOption = Annotated[
    Path | None,
    typer.Option(
        "--dest",
        help="Catalogue folder on this machine [default: each host's backup_dir].",
        show_default=False,
    ),
]


def _redis_hosts(hosts):
    redis_hosts = [h for h in hosts if not h.is_sentinel]
    return redis_hosts, [h.name for h in hosts if h.is_sentinel]


@app.command("run")
def run(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Option(help="rdb: a snapshot; aof: the append-only files.")] = (
        Kind.rdb
    ),
    via: Annotated[
        Via | None,
        typer.Option(
            help="RDB from the replication protocol (no shell access needed) or BGSAVE and "
            "a file copy [default: replication from a master (a failed BGSAVE would block "
            "its writes), file from a replica with host access].",
            show_default=False,
        ),
    ] = None,
    compress: Annotated[
        Compression, typer.Option(help="Compress while streaming.")
    ] = Compression.none,
    dest: DestOption = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(help="Write Prometheus textfile metrics here (atomically), for cron."),
    ] = None,
    save_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds a server's BGSAVE or AOF rewrite may take.")
    ] = 3600.0,
    reason: Annotated[
        Reason,
        typer.Option(
            help="Recorded in the manifest and shown by `backup list`; cron passes scheduled."
        ),
    ] = Reason.manual,
) -> int:
    """Back up the selected hosts into the catalogue, verified.

    Each backup streams into DEST/<host>/.<id>.part (compressed, SHA-256 and CRC64 checked
    as it arrives, redis-check-rdb fed alongside when installed), is fsynced and verified,
    then renamed to DEST/<host>/<id> with its manifest.json. A run holds one lock per
    catalogue and host: an overlapping run exits 3 naming the holder. One host failing
    does not stop the others (exit 1). Sentinels hold no data and are skipped.

    On a Redis Cluster: one RDB per shard (an in-sync replica, else the master), recorded
    as a cluster backup set (slot map, members, snapshot spread) and checked at once.
    """
    from redisops.backup.capture import BackupSettings, run_backups
    from redisops.backup.catalogue import catalogue_dirs, load_catalogue
    from redisops.backup.metrics import metrics_text, write_metrics
    from redisops.cli.backup_sets import backup_sources, record_cluster_sets
    from redisops.render.backup import run_table, with_sets
    from redisops.render.progress import progress_bars

    # The process ends after a run: with the heap frozen, the interpreter's teardown skips
    # its garbage collections over every object loaded (~40 ms of a backup here).
    atexit.register(gc.freeze)
    options = global_options(ctx)
    output = make_output(options)
    hosts, sentinels, plans = backup_sources(options, output, kind.value)
    if kind is Kind.aof and via is Via.replication:
        raise UsageError("--kind aof copies files: it cannot use --via replication")
    dests = catalogue_dirs(dest, hosts)
    settings = BackupSettings(
        kind=kind.value,
        via=via.value if via else None,
        compression=compress.value,
        timeout=options.timeout,
        save_timeout=save_timeout,
        reason=reason.value,
    )
    with progress_bars(output, "bytes") as progress:
        results = run_backups(
            hosts, dests, settings, parallel=options.parallel, progress=progress, warn=output.warn
        )
    if metrics_file is not None:
        catalogue = load_catalogue(set(dests.values()), [h.name for h in hosts])
        write_metrics(metrics_file, metrics_text(results, catalogue, kind.value))
    for result in results:
        if not result.ok:
            output.error(f"{result.host}: {result.error}")
        elif not result.data.verified:
            output.warn(f"{result.host}: {'; '.join(result.data.verification.problems)}")
    sets = record_cluster_sets(plans, results, dests, output, options)
    output.host_results(
        "backup run",
        results + sets,
        lambda rows: with_sets(output, run_table(output, results), sets),
        summary={"kind": kind.value, "sentinels_skipped": sentinels, "sets": len(sets)},
    )
    output.skipped_sentinels(sentinels, "data set")
    return exit_code(results + sets)


def _catalogue(options, output, dest: Path | None):
    """The catalogue of the selected hosts (all hosts' backups when no --limit is given)."""
    from redisops.backup.catalogue import catalogue_dirs, load_catalogue

    _, selection = load_selection(options, output)
    hosts, _ = _redis_hosts(selection)
    dirs = catalogue_dirs(dest, hosts) if dest else catalogue_dirs(None, _with_dir(hosts))
    names = [h.name for h in hosts] if options.limit else None
    catalogue = load_catalogue(set(dirs.values()), names)
    for problem in catalogue.problems:
        output.warn(problem)
    return catalogue, hosts, dirs


def _with_dir(hosts):
    """Hosts that name a backup_dir; UsageError when none does (and no --dest was given)."""
    chosen = [h for h in hosts if h.backup_dir]
    if not chosen:
        raise UsageError(
            "no backup catalogue: no selected host has a backup_dir",
            hint="pass --dest DIR, or set backup_dir in the inventory",
        )
    return chosen


@app.command("list")
def list_(ctx: typer.Context, dest: DestOption = None) -> int:
    """The catalogue, oldest first: host, kind, time, age, size, keys, verification, reason.

    Only finished backups are listed; runs cut short leave nothing here. --limit filters by
    host. A failed backup is a failed row (exit 1), as its last verification recorded it.
    Cluster backup sets follow, one line each.
    """
    from redisops.cli.backup_sets import catalogue_and_sets, set_rows
    from redisops.render.backup import list_table, safety_note, with_sets
    from redisops.results import HostResult

    options = global_options(ctx)
    output = make_output(options)
    catalogue, sets = catalogue_and_sets(options, output, dest)
    rows = [
        HostResult(b.host, b.address, True, None, b)
        if b.good
        else HostResult(b.host, b.address, False, _failure(b), b)
        for b in catalogue.backups
    ]
    safety = sum(1 for b in catalogue.backups if b.safety)
    sets_shown = set_rows(sets)
    output.host_results(
        "backup list",
        rows + sets_shown,
        lambda shown: with_sets(output, list_table(output, rows), sets_shown),
        summary={
            "backups": len(rows),
            "sets": len(sets_shown),
            "bytes": sum(b.bytes for b in catalogue.backups),
            "safety": safety,
        },
        noun="backups",
    )
    safety_note(output, safety)
    return exit_code(rows + sets_shown)


def _failure(backup) -> str:
    problems = backup.verification.problems or ("no detail recorded",)
    return f"{backup.backup_id}: failed verification: {'; '.join(problems)}"


@app.command("verify")
def verify(
    ctx: typer.Context,
    backup_id: Annotated[
        str | None, typer.Argument(help="The backup, or cluster backup set, to check.")
    ] = None,
    all_: Annotated[
        bool,
        typer.Option("--all", help="Check every backup and set of the selected hosts."),
    ] = False,
    dest: DestOption = None,
) -> int:
    """Re-check backups: sizes and SHA-256 of every file, RDB header and CRC64, AOF commands
    and manifest, redis-check-rdb/-aof when installed. The verdict is recorded in the
    manifest (prune never counts a failed backup as good). Exit 1 when any is corrupt.
    A cluster backup set id checks the set too: all 16384 slots covered once, and every key
    of each shard's RDB in that shard's slots.
    """
    from redisops.backup.verify import verify_backup
    from redisops.cli.backup_sets import catalogue_and_sets, choose_to_verify, verify_sets
    from redisops.render.backup import verify_table, with_sets
    from redisops.results import HostResult

    if (backup_id is None) == (not all_):
        raise UsageError("give a backup id or --all (not both)")
    options = global_options(ctx)
    output = make_output(options)
    catalogue, sets = catalogue_and_sets(options, output, dest)
    chosen, sets = choose_to_verify(catalogue, sets, None if all_ else backup_id)
    rows = []
    for backup in chosen:
        checked = verify_backup(backup)
        failed = checked.status == "failed"
        error = f"{checked.backup_id}: {checked.problems[0]}" if failed else None
        rows.append(HostResult(backup.host, backup.address, not failed, error, checked))
        if failed:
            output.error(error)
        elif checked.status == "unverifiable":
            output.warn(f"{checked.backup_id}: {'; '.join(checked.problems)}")
    checked_sets = verify_sets(sets, catalogue, output)
    output.host_results(
        "backup verify",
        rows + checked_sets,
        lambda shown: with_sets(output, verify_table(output, rows), checked_sets),
        summary={"backups": len(rows), "sets": len(checked_sets)},
        noun="backups",
    )
    return exit_code(rows + checked_sets)


@app.command("prune")
def prune(
    ctx: typer.Context,
    keep_last: Annotated[int, typer.Option(min=0, help="Keep the newest N.")] = 0,
    keep_daily: Annotated[int, typer.Option(min=0, help="Keep the newest of N days.")] = 0,
    keep_weekly: Annotated[int, typer.Option(min=0, help="Keep the newest of N weeks.")] = 0,
    keep_monthly: Annotated[int, typer.Option(min=0, help="Keep the newest of N months.")] = 0,
    keep_safety_days: Annotated[
        int, typer.Option(min=0, help="Keep each restore's safety backup N days.")
    ] = 30,
    dest: DestOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Delete backups no retention rule keeps, per host and kind.

    Failed backups never fill a slot; the newest verified backup of a host is always kept.
    Safety backups are outside the rules: kept --keep-safety-days after they were taken.
    Every backup the plan keeps is re-read first (size and SHA-256 of its files): one that
    fails counts as failed, is recorded so, and makes the run exit 1 after deleting only what
    the corrected plan allows. Shows the plan, then asks (or needs --yes off a terminal);
    --dry-run stops at the plan.
    """
    from redisops.backup.prune import (
        RetentionPolicy,
        apply_backup_prune,
        plan_backup_prune,
        record_prune_damage,
    )
    from redisops.backup.verify import check_files
    from redisops.cli.change import carry_out
    from redisops.render.backup import prune_table

    policy = RetentionPolicy(keep_last, keep_daily, keep_weekly, keep_monthly, keep_safety_days)
    policy.check()
    options = global_options(ctx)
    output = make_output(options)
    catalogue, _, _ = _catalogue(options, output, dest)
    checked: dict[str, tuple[str, ...]] = {}
    plan = plan_backup_prune(catalogue.backups, policy, checked, check_files)
    if not dry_run and not plan.pending:
        # Nothing to delete, but a backup found damaged is recorded so (no question asked).
        for warning in record_prune_damage(catalogue.backups, policy, checked, check_files):
            output.warn(warning)

    def show(rows, summary, draw) -> None:
        for row in rows:
            if row.data.damage:
                output.error(
                    f"{row.data.backup_id}: {'; '.join(row.data.damage)}",
                    hint="prune counts it as failed and keeps to the backups that verify now; "
                    "`redisops backup verify ID` tells more",
                )
        output.host_results(plan.command, rows, draw, summary=dict(summary), noun=plan.noun)

    return carry_out(
        output,
        plan,
        lambda: apply_backup_prune(plan, policy, checked, check_files),
        view=lambda rows: prune_table(output, rows),
        show=show,
        yes=yes,
        dry_run=dry_run,
    )


def _cluster_target(options, chosen):
    """The cluster -l names, when the selection is a whole cluster; None when it holds no
    cluster node. A part of a cluster (a node, the replicas) is refused: keys go to their
    slot's master, so the target is the cluster."""
    nodes = [h for h in chosen.hosts if h.node is not None or h.cluster]
    if not nodes:
        return None
    names = sorted({str(h.cluster_name) for h in nodes})
    if len(names) > 1 or len(nodes) != len(chosen.hosts):
        raise UsageError(
            "restore-keys needs exactly one target: a Redis host or one whole cluster, "
            f"-l selected {len(chosen.hosts)} hosts"
            + (f" of clusters {', '.join(names)}" if len(names) > 1 else "")
        )
    cluster = chosen.clusters.get(names[0])
    if cluster is None or cluster.seed is None:
        failed = next((h for h in nodes if h.discovery_error), nodes[0])
        raise HostError(f"{failed.name}: {failed.discovery_error or 'cluster not discovered'}")
    from redisops.backup.restore_keys_cluster import masters_of

    if not masters_of(cluster):
        raise HostError(
            f"no master of cluster {cluster.name} serves slots (see `redisops cluster status`)"
        )
    picked = {h.name for h in chosen.hosts}
    missing = [h.name for h in masters_of(cluster) if h.name not in picked]
    if missing:
        shown = ", ".join(sorted(picked)[:3]) + (", …" if len(picked) > 3 else "")
        raise RefusedError(
            f"cannot restore keys into {shown}: a node of cluster {cluster.name} is not a "
            f"target on its own (keys go to their slot's master; {', '.join(missing[:3])} "
            "not selected)",
            hint=f"select the whole cluster: -l {cluster.name}",
        )
    return cluster


@app.command("restore")
def restore(
    ctx: typer.Context,
    backup_id: Annotated[
        str,
        typer.Argument(
            help="The backup to restore, `latest` (newest verified, safety backups left out) "
            "or `latest-safety` (the newest safety backup)."
        ),
    ],
    from_host: Annotated[
        str | None,
        typer.Option(help="Allow restoring a backup of this other host (prod -> staging)."),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Go ahead despite replicas or watching sentinels (never with a backup that "
            "does not verify).",
        ),
    ] = False,
    no_safety_backup: Annotated[
        bool,
        typer.Option("--no-safety-backup", help="Do not back up the target's data first."),
    ] = False,
    wait: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the stop and for loading.")
    ] = 300.0,
    dest: DestOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Restore a backup onto the one host given with -l.

    Re-verifies the backup and shows the plan: what is replaced, sizes, key counts, steps.
    Refuses (exit 3), unless --force, a replica, a master with connected replicas, and a
    master the inventory's sentinels monitor; never restores a backup that does not verify.
    Then: safety backup, data uploaded beside the live files, stop (service_stop, else
    SHUTDOWN NOSAVE), atomic rename into place (as the server will load it at start: with
    appendonly on in its config file, as the base of a fresh AOF), start (service_start),
    wait for loading, key count check (exit 1 on a mismatch). If the server does not come
    up, the previous data goes back and it is started again on that (exit 1).
    """
    from redisops.backup.restore import (
        apply_restore,
        plan_restore,
        restore_change,
        restore_lock,
        restore_source,
    )
    from redisops.cli.change import carry_out
    from redisops.render.backup import restore_plan_view, restore_result_view
    from redisops.render.progress import progress_bars

    options = global_options(ctx)
    output = make_output(options)
    inventory, selection = load_selection(options, output)
    target, folder, backup = restore_source(
        selection, limited=bool(options.limit), dest=dest, backup_id=backup_id, from_host=from_host
    )
    with restore_lock(folder, target, backup):
        plan = plan_restore(
            backup,
            target,
            inventory.hosts,
            from_host=from_host,
            safety_backup=not no_safety_backup,
            timeout=options.timeout,
            wait=wait,
        )

        def apply():
            with progress_bars(output, "bytes") as progress:
                return apply_restore(
                    plan,
                    backup,
                    target,
                    folder,
                    timeout=options.timeout,
                    wait=wait,
                    progress=progress,
                )

        return carry_out(
            output,
            restore_change(plan, target),
            apply,
            view=lambda rows: restore_plan_view(output, rows[0].data),
            result_view=lambda rows: restore_result_view(output, rows),
            yes=yes,
            dry_run=dry_run,
            force=force,
            plan_on_stderr=True,
        )


@app.command("restore-keys")
def restore_keys(
    ctx: typer.Context,
    backup_id: Annotated[
        str,
        typer.Argument(
            metavar="BACKUP_ID|FILE",
            help="A backup of the catalogue, `latest` (the newest verified one of the target, "
            "or of --from-host), or an RDB file (.zst/.gz read as they are).",
        ),
    ],
    match: Annotated[
        list[str] | None,
        typer.Option("--match", help="Keys matching this glob, as SCAN MATCH (repeatable)."),
    ] = None,
    type_: Annotated[
        list[str] | None,
        typer.Option(
            "--type", help="Only keys of this type: string, list, set, zset, hash, stream."
        ),
    ] = None,
    db: Annotated[
        list[int] | None, typer.Option("--db", min=0, help="Only keys of this db (repeatable).")
    ] = None,
    keys_from: Annotated[
        Path | None, typer.Option("--keys-from", help="The keys listed in this file, one a line.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every key of the backup (a whole logical load).")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite keys that exist on the target now.")
    ] = False,
    rate: Annotated[
        float, typer.Option(min=0, help="At most this many keys a second (0: no limit).")
    ] = 0.0,
    from_host: Annotated[
        str | None, typer.Option(help="`latest` means the newest backup of this host.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Go ahead when some keys are of a type the target cannot load."
        ),
    ] = False,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            help="Where to append the run's record [default: restore-keys.jsonl beside "
            "config apply's audit log].",
            show_default=False,
        ),
    ] = None,
    dest: DestOption = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Bring back some keys (or all) from a backup into the host or cluster -l names, by RESTORE.

    Shows the plan first (keys to create, to overwrite with --replace, left alone, expired
    by now and skipped), having read and checked the whole backup; then asks (--yes off a
    terminal). With --yes the backup is checked (CRC64, SHA-256) but not counted first: the
    counts come with the result (--dry-run shows them before). Keys are restored with their
    TTL (absolute) and LRU/LFU data, pipelined; keys that exist are never overwritten
    without --replace. A cluster (-l CLUSTER) gets each key on its slot's master, counted
    per shard (always before sending), db 0 only. Refused (exit 3): a replica, one node of
    a cluster, keys of another db than 0 for a cluster, a backup that does not verify. A
    key the target rejects is named and the others go on (exit 1). Interrupted, the same
    command continues where it stopped.
    """
    from redisops.backup.catalogue import LATEST, LATEST_SAFETY, catalogue_dirs, load_catalogue
    from redisops.backup.restore import restore_target
    from redisops.backup.restore_keys import (
        KeyNames,
        KeySelection,
        apply_restore_keys,
        audit_entry,
        default_state_dir,
        locate_source,
        plan_restore_keys,
        read_keys_file,
        restore_keys_change,
        restore_keys_outcome,
    )
    from redisops.backup.restore_keys_cluster import (
        apply_cluster_restore_keys,
        masters_of,
        plan_cluster_restore_keys,
    )
    from redisops.cli.change import carry_out
    from redisops.interrupt import Interrupted
    from redisops.render.progress import progress_bars
    from redisops.render.restore_keys import plan_view, result_view, show_result
    from redisops.tuning.auditlog import AuditLog, default_audit_log

    selection = KeySelection(
        patterns=tuple(match or ()),
        types=tuple(type_ or ()),
        dbs=tuple(db or ()),
        keys=read_keys_file(keys_from) if keys_from else KeyNames(),
        keys_file=str(keys_from) if keys_from else None,
        everything=all_,
    )
    selection.check()
    options = global_options(ctx)
    output = make_output(options)
    _, chosen = load_cluster_selection(options, output)
    cluster = _cluster_target(options, chosen)
    if cluster is None:
        target = restore_target(chosen.hosts, limited=bool(options.limit), command="restore-keys")
        masters = [target]
        name, address = target.name, target.address
    else:
        masters = list(masters_of(cluster))
        name, address = f"cluster {cluster.name}", f"{len(masters)} masters"
    latest = backup_id in (LATEST, LATEST_SAFETY) and not Path(backup_id).is_file()
    if cluster is not None and latest and not from_host:
        raise UsageError(
            f"`{backup_id}` of cluster {cluster.name} names no one host's backup",
            hint="name the host the backup was taken on with --from-host HOST, or the backup "
            "by its id or file",
        )
    folders = catalogue_dirs(dest, masters) if dest or masters[0].backup_dir else {}
    source = locate_source(
        backup_id,
        lambda: load_catalogue(list(dict.fromkeys(folders.values()))),
        from_host or (cluster.name if cluster else target.name),
    )
    with progress_bars(output, "bytes") as bar:
        reading = bar and (lambda done, total: bar("reading the backup", done, total))
        if cluster is None:
            plan = plan_restore_keys(
                source,
                target,
                selection,
                replace=replace,
                state_dir=default_state_dir(),
                timeout=options.timeout,
                count=dry_run or not yes,
                progress=reading,
            )
        else:
            plan = plan_cluster_restore_keys(
                source,
                cluster,
                selection,
                replace=replace,
                state_dir=default_state_dir(),
                timeout=options.timeout,
                progress=reading,
            )

    def apply():
        log = AuditLog(audit_log or default_audit_log().with_name("restore-keys.jsonl"))
        try:
            with progress_bars(output, "keys") as bar:
                restoring = bar and (lambda done, total: bar("restoring", done, total))
                try:
                    if cluster is None:
                        result = apply_restore_keys(
                            plan, target, rate=rate, timeout=options.timeout, progress=restoring
                        )
                    else:
                        result = apply_cluster_restore_keys(
                            plan, cluster, rate=rate, timeout=options.timeout, progress=restoring
                        )
                except Interrupted:
                    log.append(audit_entry(plan, None, "interrupted"))
                    raise
            outcome = "failed" if result.problem or result.failed else "restored"
            log.append(audit_entry(plan, result, outcome))
        finally:
            log.close()
        return restore_keys_outcome(plan, result, name, address)

    return carry_out(
        output,
        restore_keys_change(plan, name, address),
        apply,
        view=lambda rows: plan_view(output, rows[0].data),
        result_view=lambda rows: result_view(output, rows),
        show=lambda rows, summary, draw: show_result(output, rows, summary, draw),
        yes=yes,
        dry_run=dry_run,
        force=force,
        plan_on_stderr=True,
    )
