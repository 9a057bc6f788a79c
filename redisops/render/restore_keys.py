"""Views for `backup restore-keys`: the plan, the outcome, and progress bars."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from redisops.render.output import Output
from redisops.render.units import human_bytes, human_count, human_duration

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from redisops.backup.restore_keys import RestoreKeysPlan, RestoreKeysResult
    from redisops.results import HostResult

SHOWN_SAMPLES = 5
_SAMPLE_TITLES = (
    ("overwrite", "would overwrite (--replace)"),
    ("kept", "exist now, left alone (no --replace)"),
    ("create", "would create"),
    ("expired", "expired by now, skipped"),
    ("unloadable", "of a type the target cannot load"),
)


def plan_view(output: Output, plan: RestoreKeysPlan) -> RenderableType:
    """Where from, where to, which keys, how many of each fate, samples, and what stops it."""
    from rich.console import Group
    from rich.text import Text

    source = plan.source
    selection = plan.selection
    chosen = (
        ["every key"]
        if selection.everything
        else [f"--match {p}" for p in selection.patterns]
        + (
            [f"--keys-from {selection.keys_file} ({len(selection.keys):,})"]
            if selection.keys_file
            else []
        )
    )
    chosen += [f"--type {t}" for t in selection.types] + [f"--db {d}" for d in selection.dbs]
    table = output.table("", "", essential=("",))
    table.add_row("from", output.cell(f"{source.label} ({_format(plan)})"))
    into = (
        f"cluster {plan.host} ({plan.address}, {plan.target.label}), keys by slot"
        if plan.cluster
        else f"{plan.host} ({plan.address}, {plan.target.label}, {plan.target.role})"
    )
    table.add_row("into", output.cell(into))
    table.add_row("keys", output.cell(", ".join(chosen)))
    count = human_count
    if not plan.counted:
        table.add_row("counts", "as the keys are sent (--yes: the backup was checked, not counted)")
        reasons = _reasons(plan)
        title = Text(f"plan: restore keys of {source.label} into {plan.host}", style="bold")
        return Group(title, table, reasons) if reasons else Group(title, table)
    table.add_row("selected", f"{count(plan.selected)} of {count(plan.records)} in the backup")
    table.add_row(
        "restore",
        f"{count(plan.restore)} ({count(plan.create)} new, {count(plan.overwrite)} overwritten), "
        f"~{human_bytes(plan.bytes)} in memory",
    )
    if plan.kept:
        table.add_row("left alone", f"{count(plan.kept)} exist now (--replace overwrites them)")
    table.add_row("expired", f"{count(plan.expired)} already past their TTL: skipped")
    if plan.unloadable:
        table.add_row("unloadable", f"{count(plan.unloadable)} of a type the target does not know")
    if plan.resume is not None:
        table.add_row(
            "resuming",
            output.cell(
                f"{count(plan.done)} handled by an interrupted run (last: {plan.resume.last_key}, "
                f"{plan.resume.updated})"
            ),
        )
    if plan.cluster and plan.cluster.other_dbs:
        other = ", ".join(f"db{db} {count(n)}" for db, n in sorted(plan.cluster.other_dbs.items()))
        table.add_row("other dbs", f"{other}: a cluster has db 0 only")
    lines = Text()
    for kind, title in _SAMPLE_TITLES:
        found = plan.samples.get(kind, ())
        if not found or (kind == "create" and (plan.overwrite or plan.kept)):
            continue
        lines.append(f"{title}:\n", style="bold")
        for sample in found[:SHOWN_SAMPLES]:
            detail = f"  ({sample.detail})" if sample.detail else ""
            lines.append(f"  db{sample.db} {sample.key} [{sample.type}]{detail}\n")
    lines.append_text(_reasons(plan))
    lines.rstrip()
    title = Text(f"plan: restore keys of {source.label} into {plan.host}", style="bold")
    parts = [title, table]
    if plan.cluster:
        parts.append(_shards_view(output, plan))
    return Group(*parts, lines) if lines else Group(*parts)


def _shards_view(output: Output, plan: RestoreKeysPlan) -> Table:
    """The plan's counts per shard of a cluster target."""
    table = output.table(
        "shard", "master", "slots", "restore", "new", "overwritten", "left alone", "bytes",
        essential=("shard", "restore"), drop=("slots", "bytes", "master"),
    )  # fmt: skip
    for shard in plan.cluster.shards:
        table.add_row(
            shard.shard,
            output.cell(shard.master),
            shard.slots,
            human_count(shard.restore),
            human_count(shard.create),
            human_count(shard.overwrite),
            human_count(shard.kept),
            human_bytes(shard.bytes),
        )
    return table


def _reasons(plan: RestoreKeysPlan) -> Text:
    from rich.text import Text

    lines = Text()
    for reason in plan.blockers:
        lines.append("cannot: ", style="red")
        lines.append(reason + "\n")
    for reason in plan.refusals:
        lines.append("refused unless --force: ", style="yellow")
        lines.append(reason + "\n")
    lines.rstrip()
    return lines


def run_note(output: Output, result: RestoreKeysResult) -> None:
    """One line on stderr: what the run selected and what became of it."""
    if output.format != "table":
        return
    count = human_count
    text = (
        f"{count(result.selected)} of {count(result.records)} keys in the backup selected"
        + (
            f" ({count(result.done_before)} handled by the interrupted run)"
            if result.done_before
            else ""
        )
        + f": {count(result.restored)} restored, {count(result.kept)} left alone (they exist), "
        f"{count(result.expired)} expired, {count(result.failed)} rejected"
        + (
            f", {count(result.unloadable)} of a type the target cannot load"
            if result.unloadable
            else ""
        )
    )
    if result.by_master:
        text += "; by master: " + ", ".join(
            f"{name} {count(n)}" for name, n in result.by_master.items()
        )
    if result.redirects:
        text += f"; {count(result.redirects)} MOVED/ASK redirection(s) followed"
    if not result.selected and not result.done_before:
        text = f"0 keys of {count(result.records)} in the backup selected: nothing was sent"
    output.err.print(text, style="dim", highlight=False, markup=False)


def result_view(output: Output, results: Sequence[HostResult[RestoreKeysResult]]) -> Table:
    table = output.table(
        "host", "restored", "left alone", "failed", "took", "keys/s", "status",
        essential=("host", "restored"), drop=("keys/s", "took"),
    )  # fmt: skip
    for result in results:
        done = result.data
        if done is None:
            table.add_row(
                output.cell(result.host), *["-"] * 5, f"[red]{output.cell(result.error)}[/]"
            )
            continue
        status = "[green]ok[/]" if result.ok else f"[red]{output.cell(result.error)}[/]"
        table.add_row(
            output.cell(result.host),
            human_count(done.restored),
            human_count(done.kept),
            human_count(done.failed),
            human_duration(done.seconds),
            human_count(int(done.keys_per_second)),
            status,
        )
    return table


def failed_keys(output: Output, result: RestoreKeysResult) -> None:
    """Name the keys the target rejected (the first few) on stderr."""
    for failed in result.failed_keys:
        output.error(f"{result.host}: db{failed.db} {failed.key}: {failed.error}")
    if result.failed > len(result.failed_keys):
        output.error(
            f"{result.host}: {result.failed - len(result.failed_keys):,} more key(s) rejected"
        )


def _format(plan: RestoreKeysPlan) -> str:
    if plan.rdb_version is None:
        return "format unknown"
    if plan.rdb_flavour == "valkey":
        return f"Valkey RDB format {plan.rdb_version}"
    return f"RDB version {plan.rdb_version}"


def show_result(
    output: Output,
    rows: Sequence[HostResult],
    summary: Mapping[str, Any],
    draw: Callable[[Sequence[HostResult]], RenderableType],
) -> None:
    """The run's rows, after the keys the target rejected and the run's one-line note."""
    result = rows[0].data if rows else None
    if result is not None and hasattr(result, "failed_keys"):
        failed_keys(output, result)
        run_note(output, result)
    output.host_results("backup restore-keys", rows, draw, summary=dict(summary))
