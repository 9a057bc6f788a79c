"""Views for `backup run | list | verify | prune | restore`, and transfer progress bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.backup.catalogue import FAILED, SAFETY, VERIFIED, Backup, now_utc, parse_time
from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count, human_duration

if TYPE_CHECKING:
    # Types only: `backup run` should not load the restore, prune and verify modules.
    from rich.console import RenderableType
    from rich.table import Table

    from redisops.backup.clusterset import ClusterSet
    from redisops.backup.prune import PruneDecision
    from redisops.backup.restore import RestorePlan, RestoreResult
    from redisops.backup.verify import VerifyResult
    from redisops.results import HostResult


def _status(output: Output, status: str) -> str:
    colour = {VERIFIED: "green", FAILED: "red"}.get(status, "yellow")
    return f"[{colour}]{output.cell(status)}[/]"


def _reason(output: Output, reason: str) -> str:
    """Why a backup was taken; a safety backup stands out (it is never `latest`)."""
    return f"[yellow]{output.cell(reason)}[/]" if reason == SAFETY else output.cell(reason)


def _when(stamp: str) -> str:
    return parse_time(stamp).strftime("%Y-%m-%d %H:%M:%S")


def _age(stamp: str) -> str:
    return human_duration(max(0.0, (now_utc() - parse_time(stamp)).total_seconds()))


# A backup id starts with its host's name (`<host>-<UTC time>`): the host column is the first
# to go on a narrow terminal, the id (the name to copy) is never cut.


def run_table(output: Output, results: Sequence[HostResult[Backup]]) -> Table:
    table = output.table(
        "host", "backup id", "kind", "via", "size", "keys", "took", "verified", "status",
        essential=("backup id",),
        drop=("host", "via", "took", "kind", "keys"),
    )  # fmt: skip
    for result in results:
        backup = result.data
        if backup is None:
            error = f"[red]error: {output.cell(result.error)}[/]"
            table.add_row(output.cell(result.host), *["-"] * 7, error)
            continue
        table.add_row(
            output.cell(result.host),
            output.cell(backup.backup_id),
            backup.kind,
            backup.via,
            human_bytes(backup.bytes),
            human_count(backup.keys),
            human_duration(backup.duration_seconds),
            _status(output, backup.verification.status),
            "[green]ok[/]",
        )
    return table


def list_table(output: Output, results: Sequence[HostResult[Backup]]) -> Table:
    table = output.table(
        "host", "backup id", "kind", "finished (UTC)", "age", "size", "keys", "verified", "reason",
        essential=("backup id",),
        drop=("host", "finished (UTC)", "kind", "keys", "size"),
    )  # fmt: skip
    for result in results:
        backup = result.data
        table.add_row(
            output.cell(backup.host),
            output.cell(backup.backup_id),
            backup.kind + ("" if backup.compression == "none" else f"+{backup.compression}"),
            _when(backup.finished_at),
            _age(backup.finished_at),
            human_bytes(backup.bytes),
            human_count(backup.keys),
            _status(output, backup.verification.status),
            _reason(output, backup.reason),
        )
    return table


def with_sets(
    output: Output, table: RenderableType, sets: Sequence[HostResult[ClusterSet]]
) -> RenderableType:
    """`table` (the backups), and under it the cluster backup sets, one line each."""
    if not sets:
        return table
    from rich.console import Group

    return Group(table, sets_table(output, sets))


def sets_table(output: Output, results: Sequence[HostResult[ClusterSet]]) -> Table:
    """One line per cluster backup set: its shards and slots, the spread between the first
    and last shard's snapshot, size, keys and the last check; `no set` for a cluster whose
    set could not be recorded (the reason is on stderr). `backup verify SET_ID` shows its
    member backups."""
    table = output.table(
        "cluster", "set id", "taken (UTC)", "age", "shards", "slots", "spread", "size", "keys",
        "checked",
        title="cluster backup sets",
        essential=("set id",),
        drop=("cluster", "taken (UTC)", "keys", "size", "age", "spread"),
    )  # fmt: skip
    for result in results:
        found = result.data
        if found is None:  # why is the error line on stderr; the row only says it failed
            table.add_row(output.cell(result.host), *["-"] * 8, "[red]no set[/]")
            continue
        table.add_row(
            output.cell(found.cluster),
            output.cell(found.set_id),
            _when(found.started_at),
            _age(found.started_at),
            str(len(found.members)),
            f"{found.slots_covered:,}",
            f"{found.spread_seconds:.2f} s",
            human_bytes(found.bytes),
            human_count(found.keys),
            _status(output, found.verification.status),
        )
    return table


def safety_note(output: Output, count: int) -> None:
    """Under `backup list`: what the safety rows are, so nobody restores one by mistake."""
    if count and output.format == "table":
        output.err.print(
            f"{count} safety backup{'s' if count > 1 else ''} (a restore's copy of what it "
            "replaced): not chosen by `latest` nor counted by prune's rules; "
            "restore one by its id or `latest-safety`",
            style="dim",
            highlight=False,
            markup=False,
        )


def verify_table(output: Output, results: Sequence[HostResult[VerifyResult]]) -> Table:
    table = output.table(
        "host", "backup id", "kind", "size", "result", "detail",
        essential=("backup id",),
        drop=("host", "kind", "size"),
    )  # fmt: skip
    for result in results:
        checked = result.data
        detail = "; ".join(checked.problems) or "; ".join(checked.checks[-2:])
        if not checked.recorded:
            detail += " (result not recorded: manifest not writable)"
        table.add_row(
            output.cell(checked.host),
            output.cell(checked.backup_id),
            checked.kind,
            human_bytes(checked.bytes),
            _status(output, checked.status),
            output.cell(detail),
        )
    return table


def prune_table(output: Output, results: Sequence[HostResult[PruneDecision]]) -> Table:
    table = output.table(
        "host", "backup id", "kind", "finished (UTC)", "size", "verified", "action", "why",
        essential=("backup id",),
        drop=("host", "finished (UTC)", "kind", "size"),
    )  # fmt: skip
    for result in results:
        decision = result.data
        if not result.ok and not decision.damage:
            action = f"[red]error: {output.cell(result.error)}[/]"
        elif decision.keep:
            action = "keep"
        else:
            action = "[yellow]delete[/]"
        if decision.damage:
            action = f"[red]damaged[/], {action}"
        unkept = "safety backup past its days" if decision.backup_reason == SAFETY else ""
        table.add_row(
            output.cell(decision.host),
            output.cell(decision.backup_id),
            decision.kind,
            _when(decision.finished_at),
            human_bytes(decision.bytes),
            _status(output, decision.status),
            action,
            output.cell(", ".join(decision.reasons) or unkept or "no rule keeps it"),
        )
    return table


def restore_plan_view(output: Output, plan: RestorePlan) -> RenderableType:
    """What would be replaced by what, the checks, the steps, and why it would be refused."""
    from rich.console import Group
    from rich.text import Text

    target = plan.target
    table = output.table("", "now on " + output.cell(plan.host), "from the backup", essential=("",))
    table.add_row(
        "host", output.cell(f"{plan.host} ({plan.address})"), output.cell(plan.backup_host)
    )
    table.add_row("what", output.cell(target.role), output.cell(plan.backup_id))
    table.add_row("keys", human_count(target.keys), human_count(plan.backup_keys))
    table.add_row(
        "data",
        f"{human_bytes(target.data_file_bytes)} {output.cell(target.dir + '/' + target.dbfilename)}"
        if target.data_file_bytes is not None
        else output.cell(f"{target.dir}/{target.dbfilename}"),
        f"{human_bytes(plan.backup_raw_bytes)} {plan.backup_kind}, finished "
        f"{_when(plan.backup_finished_at)} UTC ({_age(plan.backup_finished_at)} ago)",
    )
    table.add_row("memory", human_bytes(target.used_memory), "")
    table.add_row(
        "appendonly",
        "yes" if target.appendonly else "no",
        _status(output, plan.verification.status),
    )
    lines = Text()
    for number, step in enumerate(plan.steps, 1):
        lines.append(f"{number}. {step}\n")
    for reason in plan.blockers:
        lines.append("cannot: ", style="red")
        lines.append(reason + "\n")
    for reason in plan.refusals:
        lines.append("refused unless --force: ", style="yellow")
        lines.append(reason + "\n")
    lines.rstrip()
    return Group(
        Text(f"plan: restore {plan.backup_id} onto {plan.host}", style="bold"), table, lines
    )


def restore_result_view(output: Output, results: Sequence[HostResult[RestoreResult]]) -> Table:
    table = output.table("step", "took", "detail", essential=("step",))
    for result in results:
        restored = result.data
        if restored is None:
            table.add_row("restore", "-", f"[red]error: {output.cell(result.error)}[/]")
            continue
        for step in restored.steps:
            table.add_row(step.step, human_duration(step.seconds), output.cell(step.detail))
        count = human_count
        if restored.keys_match is None:
            check = f"{count(restored.keys_now)} keys now (backup: {count(restored.keys_expected)})"
        else:
            verdict = "[green]match[/]" if restored.keys_match else "[red]MISMATCH[/]"
            if restored.keys_loaded is None:  # no load counters (AOF, before Redis 7.0)
                loaded = f"{count(restored.keys_now)} keys now"
            else:
                loaded = (
                    f"{count(restored.keys_loaded)} loaded + "
                    f"{count(restored.keys_expired_on_load)} expired"
                )
            check = f"{loaded} vs {count(restored.keys_expected)} in the backup: {verdict}"
        table.add_row("keys", "", check)
        if restored.set_aside:
            table.add_row("kept", "", output.cell(f"the previous AOF is at {restored.set_aside}"))
    return table
