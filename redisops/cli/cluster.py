"""`redisops cluster status | drill | rebalance | drain | add-node | restore`."""

from __future__ import annotations

from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from redisops.cli.common import (
    AllInventoriesOption,
    DryRunOption,
    FailbackOption,
    HistoryLastOption,
    YesOption,
    global_options,
    load_cluster_selection,
    make_output,
)
from redisops.cli.groups import command_group
from redisops.errors import ExitCode, HostError, UsageError
from redisops.exitcode import exit_code

app = command_group("cluster")


@app.command()
def status(ctx: typer.Context) -> int:
    """Health and load of each selected Redis Cluster.

    What `redis-cli --cluster check` checks (all 16384 slots covered, no slot migrating or
    importing, every node agreeing on the slot map and config epochs, FAIL and PFAIL nodes)
    plus masters without a working replica, cluster_state and replica links on every node,
    and per shard keys, used memory and ops/s with their imbalance (max/mean) and the slots
    with the most keys. Every node of a cluster is read, whatever part --limit selects. Exit
    1 when any cluster has a problem (one line each) or a node does not answer.
    """
    from redisops.cluster.status import cluster_status
    from redisops.render.cluster import status_summary, status_view

    options = global_options(ctx)
    output = make_output(options)
    _, selection = load_cluster_selection(options, output)
    if not selection.clusters:
        raise UsageError(
            "no cluster selected: no selected host says `cluster: true`",
            hint="mark a seed node or its group with `cluster: true` in the inventory",
        )
    outside = [host.name for host in selection.hosts if host.cluster_name is None]
    if outside:
        output.warn(
            f"{len(outside)} selected host(s) in no cluster, left out: {', '.join(outside[:5])}"
            + (", …" if len(outside) > 5 else "")
        )
    statuses = [
        cluster_status(cluster, timeout=options.timeout, parallel=options.parallel)
        for cluster in selection.clusters.values()
    ]
    rows = [row for status in statuses for row in status.node_rows]
    output.host_results(
        "cluster status",
        rows,
        lambda _rows: status_view(output, statuses),
        summary=status_summary(statuses),
        noun="nodes",
    )
    unhealthy = [s.cluster for s in statuses if not s.healthy]
    if unhealthy:
        output.warn(f"unhealthy: {', '.join(unhealthy)}")
    return exit_code(rows, flagged=unhealthy)


class ClusterDrillMode(str, Enum):
    failover = "failover"
    crash = "crash"
    hang = "hang"


@app.command()
def drill(
    ctx: typer.Context,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="ID",
            help="The shard to drill: shard-N or its id [default: the one shard -l selects].",
            show_default=False,
        ),
    ] = None,
    node: Annotated[
        str | None,
        typer.Option("--node", metavar="NAME", help="The master to drill (its shard)."),
    ] = None,
    mode: Annotated[
        ClusterDrillMode,
        typer.Option(
            help="failover: CLUSTER FAILOVER on an in-sync replica; crash: SIGKILL the master "
            "(restarted after); hang: SIGSTOP it for cluster-node-timeout + 5s."
        ),
    ] = ClusterDrillMode.failover,
    probe_rate: Annotated[
        float, typer.Option(min=1, max=1000, help="Probe writes per second, per shard.")
    ] = 50.0,
    probe_timeout: Annotated[
        float,
        typer.Option(min=0.05, help="The probe's connect and write timeout, in seconds."),
    ] = 0.5,
    max_lag: Annotated[
        int,
        typer.Option(min=0, help="A replica more than this many bytes behind is not in sync."),
    ] = 1024 * 1024,
    settle_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds to wait for the cluster to be healthy again.")
    ] = 60.0,
    failback: FailbackOption = False,
    history: Annotated[
        bool, typer.Option("--history", help="List past cluster drills instead of running one.")
    ] = False,
    history_file: Annotated[
        Path | None,
        typer.Option(
            help="Drill history (JSON Lines) [default: $XDG_STATE_HOME/redisops/"
            "cluster-drills.jsonl, else ~/.local/state/redisops/cluster-drills.jsonl].",
            show_default=False,
        ),
    ] = None,
    last: HistoryLastOption = 20,
    all_inventories: AllInventoriesOption = False,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Rehearse losing one shard's master and measure what clients feel.

    Pre-checks (exit 3, nothing triggered, when one fails): the whole cluster is healthy (as
    `cluster status` judges it) and the shard has a replica online within --max-lag; crash
    and hang modes need the master in the inventory with host access (and service_start for
    crash). Then, after the plan and a confirmation: one probe per shard writes numbered keys
    routed by slot at --probe-rate, a watcher polls CLUSTER NODES on every other node, the
    fault is injected, and the drill waits for a replica to serve the slots and for the
    cluster to be healthy with the old master a replica. Reports suspicion (PFAIL) and
    detection (FAIL), promotion, write downtime, acknowledged writes lost, what the other
    shards felt, and when the old master rejoined. Each drill is appended to the history.
    Exit 1 when the drill failed (no promotion, not healthy after). Ctrl-C stops it within
    about a second, restarting a killed master and thawing a frozen one.
    """
    from redisops.cluster.drill_history import default_history_path
    from redisops.fleet.inventory import resolve_inventory_path

    options = global_options(ctx)
    output = make_output(options)
    path = history_file or default_history_path()
    inventory_file = str(resolve_inventory_path(options.inventory).resolve())
    if history:
        return _show_drill_history(
            output, path, last=last, inventory=None if all_inventories else inventory_file
        )
    from redisops.change import ChangeOutcome
    from redisops.cli.change import carry_out
    from redisops.cluster.drill import drill_result, run_cluster_drill
    from redisops.cluster.drill_history import append_drill
    from redisops.cluster.drill_plan import drill_change, find_shard, plan_cluster_drill
    from redisops.render.cluster_drill import drill_view, plan_view
    from redisops.render.sentinel import step_line

    inventory, selection = load_cluster_selection(options, output)
    cluster, found = find_shard(
        list(selection.clusters.values()),
        [host.name for host in selection.hosts],
        shard=shard,
        node=node,
    )
    plan = plan_cluster_drill(
        cluster,
        found,
        inventory.hosts,
        mode=mode.value,
        failback=failback,
        max_lag=max_lag,
        probe_rate=probe_rate,
        timeout=options.timeout,
        parallel=options.parallel,
    )

    def apply() -> ChangeOutcome:
        report = run_cluster_drill(
            plan,
            cluster,
            probe_rate=probe_rate,
            probe_timeout=probe_timeout,
            settle_timeout=settle_timeout,
            timeout=options.timeout,
            parallel=options.parallel,
            on_step=(lambda step: step_line(output, step)) if output.err.is_terminal else None,
            inventory_file=inventory_file,
        )
        # The table shows the warnings; a JSON document's reader gets them on stderr.
        shown = report.warnings if output.format == "json" else ()
        return ChangeOutcome([drill_result(report)], warnings=shown)

    def audit(outcome: ChangeOutcome) -> str:
        report = outcome.rows[0].data
        append_drill(path, report)
        return f"drill {report.drill_id} appended to {path}"

    def show(rows, summary, draw) -> None:
        if output.format == "json":
            output.json("cluster drill", list(rows), dict(summary))
        else:
            output.out.print(draw(rows))

    return carry_out(
        output,
        replace(drill_change(plan), summary={"history_file": str(path)}),
        apply,
        view=lambda rows: plan_view(output, rows[0].data),
        result_view=lambda rows: drill_view(output, rows[0].data),
        show=show,
        yes=yes,
        dry_run=dry_run,
        audit=audit,
    )


def _show_drill_history(output, path: Path, *, last: int, inventory: str | None) -> int:
    """The cluster drills of `inventory` (every inventory's when None), newest last."""
    from redisops.cluster.drill import drill_result
    from redisops.cluster.drill_history import read_history
    from redisops.render.cluster_drill import history_table

    past = read_history(path, last=last, inventory=inventory)
    if past.unreadable:
        output.warn(f"{past.unreadable} unreadable line(s) in {path} skipped")
    rows = [drill_result(report) for report in past.drills]
    if output.format == "json":
        summary = {"history_file": str(path), "drills": len(rows), "inventory": inventory}
        output.json("cluster drill", rows, summary)
    elif rows:
        output.out.print(history_table(output, rows, with_inventory=inventory is None))
    else:
        where = f" for inventory {inventory}" if inventory else ""
        output.err.print(f"no cluster drills recorded in {path}{where}", style="dim")
    if past.other_inventories:
        output.err.print(
            f"{past.other_inventories} drill(s) of other inventories not shown "
            "(--all-inventories lists them)",
            style="dim",
            highlight=False,
        )
    return ExitCode.OK


def _one_cluster(options, output):
    """The one cluster -l selects (a usage error for none or several)."""
    _, selection = load_cluster_selection(options, output)
    if len(selection.clusters) != 1:
        raise UsageError(
            f"{'no cluster' if not selection.clusters else 'several clusters'} selected: "
            "this command changes one cluster",
            hint="name it with --limit CLUSTER",
        )
    cluster = next(iter(selection.clusters.values()))
    if cluster.seed is None:
        raise HostError(f"no seed of cluster {cluster.name} answered")
    return cluster


def _max_key_size(text: str) -> int:
    from redisops.tuning.units import parse_size

    size = parse_size(text)
    if size is None or size < 0:
        raise UsageError(f"--max-key-size {text!r} is not a size (64mb, 1gb, 0 for no limit)")
    return size


class By(str, Enum):
    memory = "memory"
    keys = "keys"
    slots = "slots"


_BY_HELP = "What to even out: memory (measured per slot), keys, or slots."
_RATE_HELP = "At most this many keys a second (0: no limit)."
_MAX_KEY_HELP = (
    "Refuse to move a key bigger than this without --force: MIGRATE blocks both servers "
    "while one key moves (64mb; 0: no limit)."
)
_AUDIT_HELP = "Where to append the run's record [default: cluster-changes.jsonl beside config apply's audit log]."  # noqa: E501


def _slot_moves_apply(output, plan, apply, audit_log, on_result, rerun):
    """The apply closure: progress bar, audit line (also when interrupted), and on Ctrl-C the
    `interrupted:` line naming the slot left open and the command that finishes it."""
    from redisops.cluster.rebalance import audit_entry
    from redisops.interrupt import Interrupted
    from redisops.render.progress import progress_bars
    from redisops.tuning.auditlog import AuditLog, default_audit_log

    def run():
        log = AuditLog(audit_log or default_audit_log().with_name("cluster-changes.jsonl"))
        try:
            with progress_bars(output, "keys") as bar:
                try:
                    result, moves, failed = apply(bar)
                except Interrupted as exc:
                    log.append(audit_entry(plan, None, "interrupted"))
                    exc.done = f"{exc.done or 'stopped'}; run `{rerun}` to finish"
                    raise
            log.append(audit_entry(plan, moves, "failed" if failed else "done"))
        finally:
            log.close()
        return on_result(result, moves)

    return run


@app.command()
def rebalance(
    ctx: typer.Context,
    by: Annotated[By, typer.Option("--by", help=_BY_HELP)] = By.memory,
    tolerance: Annotated[
        float, typer.Option(min=0, max=100, help="Each master within this % of the mean.")
    ] = 10.0,
    rate: Annotated[float, typer.Option(min=0, help=_RATE_HELP)] = 0.0,
    max_key_size: Annotated[str, typer.Option(help=_MAX_KEY_HELP)] = "64mb",
    force: Annotated[
        bool, typer.Option("--force", help="Move big keys, and finish open slots not ours.")
    ] = False,
    audit_log: Annotated[Path | None, typer.Option(help=_AUDIT_HELP, show_default=False)] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Move slots so every master is within --tolerance of the mean by memory, keys or slots.

    Memory per slot is measured (MEMORY USAGE of sampled keys, times the slot's key count);
    the slots that move are then measured key by key: the plan shows each move's slots,
    keys and bytes, and each master before and after. Slots move as redis-cli --cluster
    reshard moves them (IMPORTING/MIGRATING, MIGRATE in batches, SETSLOT NODE on every
    master), throttled by --rate; a key above --max-key-size is refused without --force.
    Interrupted (Ctrl-C, kill -9, a node restart), the same command finishes the slot left
    open and the moves left. Refused (exit 3): a master down, open slots some other tool
    left (without --force), big keys.
    """
    from redisops.cli.change import carry_out
    from redisops.cluster.rebalance import (
        apply_slot_plan,
        plan_rebalance,
        slot_move_outcome,
        slot_plan_change,
    )
    from redisops.cluster.slotmove import default_state_dir
    from redisops.render.cluster_rebalance import masters_view, show_moved, slot_plan_view

    options = global_options(ctx)
    output = make_output(options)
    cluster = _one_cluster(options, output)
    plan = plan_rebalance(
        cluster,
        by=by.value,
        tolerance=tolerance / 100,
        max_key_size=_max_key_size(max_key_size),
        state_dir=default_state_dir(),
        force=force,
        timeout=options.timeout,
        parallel=options.parallel,
    )
    rerun = options.command_line.redisops("cluster", "rebalance", "--yes")

    def apply(bar):
        moving = bar and (lambda label, done, total: bar(label, done, total))
        result = apply_slot_plan(plan, rate=rate, progress=moving)
        return result, result, bool(result.problems)

    def outcome(result, _moves):
        show_moved(output, plan, {"moved_slots": result.moved_slots,
                                  "keys_moved": result.keys_moved, "seconds": result.seconds,
                                  "verified": result.verified})  # fmt: skip
        return slot_move_outcome(plan, result, rerun)

    what = f"Move {len(plan.moves):,} slot(s) ({plan.keys:,} keys) in cluster {plan.cluster}"
    return carry_out(
        output,
        slot_plan_change(plan, what=what),
        _slot_moves_apply(output, plan, apply, audit_log, outcome, rerun),
        view=lambda rows: slot_plan_view(output, plan, rows),
        result_view=lambda rows: masters_view(output, plan, rows),
        yes=yes,
        dry_run=dry_run,
        force=force,
    )


@app.command()
def drain(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The master to empty: name, host:port or node id.")],
    by: Annotated[By, typer.Option("--by", help=_BY_HELP)] = By.memory,
    rate: Annotated[float, typer.Option(min=0, help=_RATE_HELP)] = 0.0,
    max_key_size: Annotated[str, typer.Option(help=_MAX_KEY_HELP)] = "64mb",
    force: Annotated[
        bool, typer.Option("--force", help="Move big keys, and finish open slots not ours.")
    ] = False,
    audit_log: Annotated[Path | None, typer.Option(help=_AUDIT_HELP, show_default=False)] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Move every slot of a master to the others, then take it out of the cluster.

    Slots are spread over the other masters by --by (each to the lightest), by the engine of
    `cluster rebalance` (throttled, big keys refused, resumable). Then the node's replicas
    are re-pointed to the masters with the fewest replicas, every other node runs CLUSTER
    FORGET on it, and it is reset (CLUSTER RESET SOFT): its process keeps running, empty.
    """
    from redisops.cli.change import carry_out
    from redisops.cluster.drain import apply_drain, plan_drain
    from redisops.cluster.rebalance import slot_move_outcome, slot_plan_change
    from redisops.cluster.slotmove import default_state_dir
    from redisops.render.cluster_rebalance import masters_view, show_moved, slot_plan_view

    options = global_options(ctx)
    output = make_output(options)
    cluster = _one_cluster(options, output)
    plan = plan_drain(
        cluster,
        node,
        by=by.value,
        max_key_size=_max_key_size(max_key_size),
        state_dir=default_state_dir(),
        force=force,
        timeout=options.timeout,
        parallel=options.parallel,
    )
    rerun = options.command_line.redisops("cluster", "drain", plan.node, "--yes")

    def apply(bar):
        moving = bar and (lambda label, done, total: bar(label, done, total))
        result = apply_drain(plan, rate=rate, progress=moving)
        return result, result.moves, bool(result.problems)

    def outcome(result, moves):
        from redisops.change import ChangeOutcome
        from redisops.cluster.rebalance import SlotMoveResult

        moves = moves or SlotMoveResult(0, 0, 0.0, (), True, ())
        show_moved(output, plan.slots, {"moved_slots": moves.moved_slots,
                                        "keys_moved": moves.keys_moved,
                                        "seconds": moves.seconds,
                                        "verified": moves.verified})  # fmt: skip
        base = slot_move_outcome(plan.slots, moves, rerun, {"steps": list(result.steps)})
        errors = list(base.errors)
        if result.problems and not moves.problems:
            errors += [*result.problems, f"run `{rerun}` to finish"]
        for step in result.steps:
            output.note(step)
        warnings = list(base.warnings)
        seed = any(h.name == plan.node and h.cluster for h in cluster.nodes)
        if seed and not result.problems:
            warnings.append(
                f"{plan.node} is out of cluster {cluster.name} but still a seed in the "
                "inventory: remove it there (until then `cluster status` reports it as a node "
                "of another cluster)"
            )
        return ChangeOutcome(
            base.rows, base.summary, errors, warnings, failed=bool(result.problems)
        )

    change = slot_plan_change(
        plan.slots,
        what=f"Move {len(plan.slots.moves):,} slot(s) off {plan.node} and remove it from "
        f"cluster {cluster.name}",
        pending_extra=1,
    )
    return carry_out(
        output,
        change,
        _slot_moves_apply(output, plan.slots, apply, audit_log, outcome, rerun),
        view=lambda rows: slot_plan_view(output, plan.slots, rows, drain=plan),
        result_view=lambda rows: masters_view(output, plan.slots, rows),
        yes=yes,
        dry_run=dry_run,
        force=force,
    )


@app.command("add-node")
def add_node(
    ctx: typer.Context,
    new: Annotated[
        str,
        typer.Argument(
            metavar="NEW", help="The inventory host to add: an empty, cluster-enabled server."
        ),
    ],
    cluster: Annotated[
        str,
        typer.Option(
            "--cluster", metavar="NAME", help="The cluster to add it to (its inventory name)."
        ),
    ],
    replica_of: Annotated[
        str | None,
        typer.Option(
            "--replica-of",
            metavar="MASTER",
            help="Add it as a replica of this master: a node name, a shard (shard-2) or a "
            "node id. Without it, the node joins as a master without slots.",
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(min=1, help="Seconds to wait for the cluster to know it, and for the link."),
    ] = 60.0,
    audit_log: Annotated[
        Path | None,
        typer.Option(
            help="Where to append the run's record [default: cluster-changes.jsonl beside "
            "config apply's audit log].",
            show_default=False,
        ),
    ] = None,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Add an empty server to a cluster: as a master without slots, or as a replica.

    Refused (exit 3) when NEW holds keys, is not cluster-enabled, already knows other nodes or
    serves slots, does not take the cluster's password (masterauth included), or when
    --replica-of names no master. Then CLUSTER MEET from NEW, a bounded wait until every node
    knows it, and with --replica-of CLUSTER REPLICATE and a wait for the link. A new master
    gets slots from `cluster rebalance`. Recorded in the audit log.
    """
    from redisops.cli.change import carry_out
    from redisops.cluster.addnode import add_node_audit, apply_add_node, plan_add_node
    from redisops.render.cluster_addnode import add_node_plan_view, add_node_result_view
    from redisops.tuning.auditlog import AuditLog, default_audit_log

    options = global_options(ctx)
    output = make_output(options)
    inventory, found = _named_cluster(options, output, cluster)
    host = next((h for h in inventory.hosts if h.name == new and not h.is_sentinel), None)
    if host is None:
        raise UsageError(f"{new} is not a Redis host of the inventory")
    plan = plan_add_node(found, host, replica_of=replica_of, timeout=options.timeout, wait=wait)
    log_path = audit_log or default_audit_log().with_name("cluster-changes.jsonl")

    def audit(outcome) -> str:
        log = AuditLog(log_path)
        try:
            log.append(add_node_audit(plan.rows[0].data, outcome))
        finally:
            log.close()
        return f"recorded in {log_path}"

    return carry_out(
        output,
        plan,
        lambda: apply_add_node(plan, found, host, timeout=options.timeout, wait=wait),
        view=lambda rows: add_node_plan_view(output, rows),
        result_view=lambda rows: add_node_result_view(output, rows),
        yes=yes,
        dry_run=dry_run,
        audit=audit,
    )


def _named_cluster(options, output, name: str):
    """The inventory and its cluster `name`, discovered; UsageError when it is none."""
    inventory, selection = load_cluster_selection(replace(options, limit=name), output)
    found = selection.clusters.get(name)
    if found is None:
        raise UsageError(f"{name} is not a cluster of the inventory (no seed says `cluster: true`)")
    if found.seed is None:
        raise HostError(f"no seed of cluster {name} answered", hint="see `redisops cluster status`")
    return inventory, found


@app.command("restore")
def restore(
    ctx: typer.Context,
    set_id: Annotated[str, typer.Argument(metavar="SET_ID", help="The cluster backup set.")],
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="NAME",
            help="Restore onto this cluster [default: the one the set was taken of].",
        ),
    ] = None,
    dest: Annotated[
        Path | None,
        typer.Option("--dest", help="The backup catalogue [default: backup_dir of the inventory]."),
    ] = None,
    no_safety_backup: Annotated[
        bool,
        typer.Option("--no-safety-backup", help="Do not back up each master's data first."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Go ahead although sentinels watch a master."),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(min=1, help="Seconds to wait for each stop, load, resync and for health."),
    ] = 300.0,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Restore a cluster backup set onto a cluster of the same shape, shard by shard.

    Shards are matched by slot ranges; each member's RDB goes onto the master owning them
    with `backup restore`'s safety rules (re-verified, safety backup, staged upload, stop,
    rename, start, key check, rolled back on failure). The shard's replicas are stopped and
    emptied first and resync from the restored master. Then waits until `cluster status`
    finds no problem and compares each shard's keys. Refused (exit 3): a set that does not
    verify, a cluster of another shape or without host access to its nodes (the refusal
    names the `backup restore-keys` commands that load the set by key instead).
    """
    from redisops.backup.catalogue import catalogue_dirs, load_catalogue
    from redisops.backup.clusterset import find_set, load_sets
    from redisops.backup.lock import host_locks
    from redisops.backup.restore_keys_cluster import masters_of
    from redisops.cli.change import carry_out
    from redisops.cluster.restore import apply_cluster_restore, plan_cluster_restore
    from redisops.fleet.inventory import load_inventory, resolve_inventory_path
    from redisops.render.cluster_restore import (
        cluster_restore_plan_view,
        cluster_restore_result_view,
    )
    from redisops.render.progress import progress_bars

    options = global_options(ctx)
    output = make_output(options)
    if cluster is None:
        inventory = load_inventory(resolve_inventory_path(options.inventory))
        names = {str(h.cluster_name) for h in inventory.hosts if h.cluster and h.cluster_name}
        cluster = max((n for n in names if set_id.startswith(f"{n}-")), key=len, default=None)
        if cluster is None:
            raise UsageError(
                f"{set_id} names no cluster of the inventory",
                hint="name the cluster to restore onto with --cluster NAME",
            )
    _, found = _named_cluster(options, output, cluster)
    masters = list(masters_of(found))
    if not masters:
        raise HostError(f"no master of cluster {cluster} serves slots")
    dirs = catalogue_dirs(dest, masters)
    folders = sorted(set(dirs.values()))
    sets, problems = load_sets(folders)
    for problem in problems:
        output.warn(problem)
    chosen = find_set(sets, set_id)
    if chosen is None:
        raise UsageError(
            f"no cluster backup set {set_id!r} in {', '.join(map(str, folders))}",
            hint="see `redisops backup list` for set ids",
        )
    catalogue = load_catalogue(folders)
    folder = folders[0]
    locked = [(dirs[m.name], m.name) for m in masters] + [(folder, m.host) for m in chosen.members]
    with host_locks(sorted(set(locked)), purpose="cluster restore"):
        plan = plan_cluster_restore(
            chosen,
            catalogue,
            found,
            dest=dest,
            safety_backup=not no_safety_backup,
            timeout=options.timeout,
            wait=wait,
        )
        backups = {b.backup_id: b for b in catalogue.backups}

        def apply():
            with progress_bars(output, "bytes") as progress:
                return apply_cluster_restore(
                    plan,
                    found,
                    backups,
                    folder,
                    timeout=options.timeout,
                    parallel=options.parallel,
                    wait=wait,
                    progress=progress,
                )

        return carry_out(
            output,
            plan,
            apply,
            view=lambda rows: cluster_restore_plan_view(output, rows),
            result_view=lambda rows: cluster_restore_result_view(output, rows),
            yes=yes,
            dry_run=dry_run,
            force=force,
        )
