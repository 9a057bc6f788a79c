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
    confirm_change,
    global_options,
    load_cluster_selection,
    load_selection,
    make_output,
    selected_hosts,
)
from redisops.cli.groups import command_group
from redisops.errors import ExitCode, HostError, RefusedError, UsageError

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
    """
    from redisops.backup.capture import BackupSettings, run_backups
    from redisops.backup.catalogue import catalogue_dirs, load_catalogue
    from redisops.backup.metrics import metrics_text, write_metrics
    from redisops.render.backup import run_table, transfer_progress

    # The process ends after a run: with the heap frozen, the interpreter's teardown skips
    # its garbage collections over every object loaded (~40 ms of a backup here).
    atexit.register(gc.freeze)
    options = global_options(ctx)
    output = make_output(options)
    hosts, sentinels = _redis_hosts(selected_hosts(options, output))
    if not hosts:
        raise UsageError("no Redis host to back up", hint="--limit selected only sentinels")
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
    with transfer_progress(output) as progress:
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
    code = output.host_results(
        "backup run",
        results,
        lambda rows: run_table(output, rows),
        summary={"kind": kind.value, "sentinels_skipped": sentinels},
    )
    output.skipped_sentinels(sentinels, "data set")
    return code


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
    """
    from redisops.fleet.fanout import HostResult
    from redisops.render.backup import list_table, safety_note

    options = global_options(ctx)
    output = make_output(options)
    catalogue, _, _ = _catalogue(options, output, dest)
    rows = [
        HostResult(b.host, b.address, True, None, b)
        if b.good
        else HostResult(b.host, b.address, False, _failure(b), b)
        for b in catalogue.backups
    ]
    safety = sum(1 for b in catalogue.backups if b.safety)
    code = output.host_results(
        "backup list",
        rows,
        lambda shown: list_table(output, shown),
        summary={
            "backups": len(rows),
            "bytes": sum(b.bytes for b in catalogue.backups),
            "safety": safety,
        },
        noun="backups",
    )
    safety_note(output, safety)
    return code


def _failure(backup) -> str:
    problems = backup.verification.problems or ("no detail recorded",)
    return f"{backup.backup_id}: failed verification: {'; '.join(problems)}"


@app.command("verify")
def verify(
    ctx: typer.Context,
    backup_id: Annotated[str | None, typer.Argument(help="The backup to check.")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Check every backup of the selected hosts.")
    ] = False,
    dest: DestOption = None,
) -> int:
    """Re-check backups: sizes and SHA-256 of every file, RDB header and CRC64, AOF commands
    and manifest, redis-check-rdb/-aof when installed. The verdict is recorded in the
    manifest (prune never counts a failed backup as good). Exit 1 when any is corrupt.
    """
    from redisops.backup.catalogue import find_backup
    from redisops.backup.verify import verify_backup
    from redisops.fleet.fanout import HostResult
    from redisops.render.backup import verify_table

    if (backup_id is None) == (not all_):
        raise UsageError("give a backup id or --all (not both)")
    options = global_options(ctx)
    output = make_output(options)
    catalogue, _, _ = _catalogue(options, output, dest)
    chosen = catalogue.backups if all_ else (find_backup(catalogue, backup_id or ""),)
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
    return output.host_results(
        "backup verify",
        rows,
        lambda shown: verify_table(output, shown),
        summary={"backups": len(rows)},
        noun="backups",
    )


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
    from redisops.backup.catalogue import load_catalogue
    from redisops.backup.lock import host_locks
    from redisops.backup.prune import (
        RetentionPolicy,
        delete_pruned,
        plan_checked_prune,
        record_damage,
    )
    from redisops.backup.verify import check_files
    from redisops.fleet.fanout import HostResult
    from redisops.render.backup import prune_table

    policy = RetentionPolicy(keep_last, keep_daily, keep_weekly, keep_monthly, keep_safety_days)
    policy.check()
    options = global_options(ctx)
    output = make_output(options)
    catalogue, _, _ = _catalogue(options, output, dest)
    checked: dict[str, tuple[str, ...]] = {}
    plan = plan_checked_prune(catalogue.backups, policy, checked, check_files)
    doomed = [d for d in plan.decisions if not d.keep]

    def rows(results) -> list:
        """A backup found damaged just now is a failed row, whatever else happened to it."""
        return [
            HostResult(r.host, r.address, False, f"{r.data.backup_id}: {r.data.damage[0]}", r.data)
            if r.ok and r.data.damage
            else r
            for r in results
        ]

    def render(results, deleted: int) -> int:
        for result in results:
            if result.data.damage:
                output.error(
                    f"{result.data.backup_id}: {'; '.join(result.data.damage)}",
                    hint="prune counts it as failed and keeps to the backups that verify now; "
                    "`redisops backup verify ID` tells more",
                )
        return output.host_results(
            "backup prune",
            results,
            lambda shown: prune_table(output, shown),
            summary={
                "dry_run": dry_run,
                "kept": sum(1 for r in results if r.data.keep),
                "deleted": deleted,
                "damaged": sum(1 for r in results if r.data.damage),
            },
            noun="backups",
        )

    planned = rows([HostResult(d.host, d.address, True, None, d) for d in plan.decisions])
    if dry_run or not doomed:
        if dry_run:
            output.err.print("dry run: nothing was deleted", style="dim", highlight=False)
        else:
            for path in record_damage(plan):
                output.warn(f"{path}: manifest not writable: the damage is not recorded")
        return render(planned, 0)
    output.err.print(prune_table(output, planned))
    freed = sum(d.bytes for d in doomed)
    confirm_change(f"Delete {len(doomed)} backup(s) ({freed:,} bytes)?", yes=yes)
    folders = {(Path(d.path).parent.parent, d.host) for d in plan.decisions}
    with host_locks(sorted(folders), purpose="backup prune"):
        # Re-read under the lock: a run may have finished meanwhile (checked only once).
        fresh = load_catalogue({folder for folder, _ in folders}, {h for _, h in folders})
        plan = plan_checked_prune(fresh.backups, policy, checked, check_files)
        for path in record_damage(plan):
            output.warn(f"{path}: manifest not writable: the damage is not recorded")
        results = delete_pruned(plan.decisions, plan.backups)
        return render(rows(results), sum(1 for r in results if r.ok and not r.data.keep))


def _one_target(options, selection, command: str):
    """The one Redis host -l names; UsageError otherwise."""
    targets, _ = _redis_hosts(selection)
    if not options.limit:
        raise UsageError(
            f"{command} needs its target named with -l HOST, even in a one-host inventory"
        )
    if len(targets) != 1:
        raise UsageError(f"{command} needs exactly one Redis host, -l selected {len(targets)}")
    return targets[0]


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
    from redisops.backup.catalogue import catalogue_dirs, load_catalogue, resolve_backup
    from redisops.backup.lock import host_locks
    from redisops.backup.restore import execute_restore, plan_restore
    from redisops.fleet.fanout import HostResult
    from redisops.render.backup import restore_plan_view, restore_result_view, transfer_progress

    options = global_options(ctx)
    output = make_output(options)
    inventory, selection = load_selection(options, output)
    target = _one_target(options, selection, "restore")
    folder = catalogue_dirs(dest, [target])[target.name]
    catalogue = load_catalogue([folder])
    backup = resolve_backup(catalogue, backup_id, from_host or target.name)
    with host_locks(
        sorted({(folder, target.name), (folder, backup.host)}), purpose="backup restore"
    ):
        plan = plan_restore(
            backup,
            target,
            inventory.hosts,
            from_host=from_host,
            safety_backup=not no_safety_backup,
            timeout=options.timeout,
            wait=wait,
        )
        if output.format == "table":
            output.err.print(restore_plan_view(output, plan))
        if plan.blockers:
            raise RefusedError(f"cannot restore onto {target.name}: {plan.blockers[0]}")
        if plan.refusals and not force:
            raise RefusedError(
                f"restore refused: {'; '.join(plan.refusals)}",
                hint="fix that first, or re-run with --force if you are sure",
                rerun_with="--force",
            )
        if dry_run:
            if output.format == "table":
                output.err.print("dry run: nothing was changed", style="dim", highlight=False)
                return ExitCode.OK
            row = HostResult(target.name, target.address, True, None, plan)
            return output.host_results("backup restore", [row], lambda rows: "", noun="hosts")
        confirm_change(f"Replace the data of {target.name} with {backup.backup_id}?", yes=yes)
        try:
            with transfer_progress(output) as progress:
                result = execute_restore(
                    plan,
                    backup,
                    target,
                    folder,
                    timeout=options.timeout,
                    wait=wait,
                    progress=progress,
                )
            row = HostResult(
                target.name, target.address, not result.problem, result.problem, result
            )
        except HostError as exc:
            row = HostResult(target.name, target.address, False, exc.message, None)
            output.error(f"{target.name}: {exc.message}", exc.hint)
        else:
            if result.problem:
                output.error(f"{target.name}: {result.problem}")
    return output.host_results(
        "backup restore",
        [row],
        lambda rows: restore_result_view(output, rows),
        summary={"backup_id": backup.backup_id, "dry_run": False},
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
    from redisops.backup.restore_keys import (
        KeyNames,
        KeySelection,
        apply_restore_keys,
        audit_entry,
        default_state_dir,
        locate_source,
        plan_restore_keys,
        read_keys_file,
    )
    from redisops.backup.restore_keys_cluster import (
        apply_cluster_restore_keys,
        masters_of,
        plan_cluster_restore_keys,
    )
    from redisops.fleet.fanout import HostResult
    from redisops.interrupt import Interrupted
    from redisops.render.restore_keys import (
        failed_keys,
        key_progress,
        plan_view,
        result_view,
        run_note,
    )
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
        target = _one_target(options, chosen.hosts, "restore-keys")
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
    with key_progress(output, "reading the backup") as progress:
        if cluster is None:
            plan = plan_restore_keys(
                source,
                target,
                selection,
                replace=replace,
                state_dir=default_state_dir(),
                timeout=options.timeout,
                count=dry_run or not yes,
                progress=progress,
            )
        else:
            plan = plan_cluster_restore_keys(
                source,
                cluster,
                selection,
                replace=replace,
                state_dir=default_state_dir(),
                timeout=options.timeout,
                progress=progress,
            )
    if output.format == "table":
        output.err.print(plan_view(output, plan))
    if plan.blockers:
        raise RefusedError(f"cannot restore keys into {name}: {plan.blockers[0]}")
    if plan.refusals and not force:
        raise RefusedError(
            f"restore-keys refused: {'; '.join(plan.refusals)}",
            hint="restore into a newer server, or re-run with --force to restore the others",
            rerun_with="--force",
        )
    row = HostResult(plan.host, address, True, None, plan)
    if dry_run or (plan.counted and not plan.restore):
        if output.format == "table":
            output.err.print(
                f"{'dry run: ' if dry_run else ''}{plan.restore:,} keys to restore: nothing was "
                "sent",
                style="dim",
                highlight=False,
            )
            return ExitCode.OK
        return output.host_results(
            "backup restore-keys", [row], lambda rows: "", summary={"dry_run": dry_run}
        )
    log = AuditLog(audit_log or default_audit_log().with_name("restore-keys.jsonl"))
    try:
        confirm_change(f"Restore {plan.restore:,} key(s) into {name}?", yes=yes)
        with key_progress(output, "restoring") as progress:
            try:
                if cluster is None:
                    result = apply_restore_keys(
                        plan, target, rate=rate, timeout=options.timeout, progress=progress
                    )
                else:
                    result = apply_cluster_restore_keys(
                        plan, cluster, rate=rate, timeout=options.timeout, progress=progress
                    )
            except Interrupted:
                log.append(audit_entry(plan, None, "interrupted"))
                raise
        outcome = "failed" if result.problem or result.failed else "restored"
        log.append(audit_entry(plan, result, outcome))
    finally:
        log.close()
    if result.problem:
        output.error(f"{name}: {result.problem}")
    failed_keys(output, result)
    run_note(output, result)
    problem = result.problem or (
        f"{result.failed:,} key(s) rejected by {name}" if result.failed else None
    )
    return output.host_results(
        "backup restore-keys",
        [HostResult(plan.host, address, problem is None, problem, result)],
        lambda rows: result_view(output, rows),
        summary={"dry_run": False, "planned": plan.restore, "state_file": result.state_file},
    )
