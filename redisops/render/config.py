"""Views for `config audit | diff | apply`: findings by severity, drift, change plans, YAML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from redisops.fleet.fanout import HostResult
from redisops.fleet.secrets import redact
from redisops.memory.summary import Severity
from redisops.render.output import Output
from redisops.render.units import human_bytes
from redisops.tuning.apply import HostChanges
from redisops.tuning.audit import HostAudit, group_findings, recommended_config
from redisops.tuning.drift import DriftReport, FleetDrift, HostConfig
from redisops.tuning.settings import canonical
from redisops.tuning.units import parse_size

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

    from redisops.commandline import CommandLine

_SEVERITY_STYLE = {Severity.critical: "red", Severity.warning: "yellow"}
_OUTCOME_STYLE = {"applied": "green", "planned": "cyan", "unchanged": "dim"}
# Settings Redis reads as one byte size (MEMORY_CONFIG in Redis 7's config.c): shown in
# KiB/MiB/GiB whichever way they were written (8388608, 8mb); JSON keeps the values as given.
SIZE_SETTINGS = frozenset(
    {
        "maxmemory", "maxmemory-clients", "proto-max-bulk-len", "client-query-buffer-limit",
        "repl-backlog-size", "auto-aof-rewrite-min-size", "active-defrag-ignore-bytes",
        "stream-node-max-bytes",
    }
)  # fmt: skip


def audit_view(
    output: Output, results: Sequence[HostResult[HostAudit]], invoked: CommandLine | None = None
) -> RenderableType:
    """One row per host, then the findings by severity (most severe first), each once for all
    the hosts that have it: current and recommended value, why, and the fix (repeating the
    inventory of `invoked`); then unchecked rules and errors."""
    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    parts: list[RenderableType] = [_audit_hosts(output, results)]
    if not output.out.is_terminal:
        parts.append(Text(""))
    groups = group_findings(results, invoked)
    for severity in reversed(Severity):
        chosen = [group for group in groups if group.finding.severity is severity]
        if not chosen:
            continue
        style = _SEVERITY_STYLE[severity]
        findings = sum(len(group.hosts) for group in chosen)
        plural = "s" if findings != 1 else ""
        parts.append(Text(f"{severity.value} ({findings} finding{plural})", style=f"bold {style}"))
        for group in chosen:
            finding = group.finding
            heading = Text("  ")
            heading.append(finding.rule, style=style)
            heading.append(f"  {redact(finding.setting)} on {redact(', '.join(group.hosts))}")
            details = Table.grid(padding=(0, 2))
            details.add_column(style="dim", no_wrap=True)
            details.add_column(overflow="fold")
            for label, value in (
                ("current", finding.current),
                ("recommended", finding.recommended),
                ("why", finding.why),
                ("fix", group.fix),
            ):
                details.add_row(label, output.cell(value))
            parts += [heading, Padding(details, (0, 0, 0, 4), expand=False)]
        parts.append(Text(""))
    notes = Text()
    for r in results:
        _note_error(notes, r)
        for unchecked in r.data.unchecked if r.data else ():
            notes.append(f"{redact(r.host)} unchecked {unchecked.rule}: ", style="dim")
            notes.append(f"{redact(unchecked.reason)}\n", style="dim")
    if notes.plain:
        notes.rstrip()
        parts.append(notes)
    elif isinstance(parts[-1], Text) and not parts[-1].plain:
        parts.pop()
    return Group(*parts)


def _audit_hosts(output: Output, results: Sequence[HostResult[HostAudit]]) -> Table:
    table = output.table(
        "host", "role", "version", "critical", "warning", "unchecked", "status",
        essential=("host",),
        drop=("unchecked", "version", "role"),
    )  # fmt: skip
    for r in results:
        status = "[green]ok[/]" if r.ok else "[red]error[/]"
        audit = r.data
        if audit is None:
            table.add_row(output.cell(r.host), *["-"] * 5, status)
            continue
        counts = {severity: 0 for severity in Severity}
        for finding in audit.findings:
            counts[finding.severity] += 1
        table.add_row(
            output.cell(r.host),
            output.cell(audit.role),
            output.cell(audit.version),
            _count(counts[Severity.critical], Severity.critical),
            _count(counts[Severity.warning], Severity.warning),
            str(len(audit.unchecked)),
            status,
        )
    return table


def _count(count: int, severity: Severity) -> str:
    return f"[{_SEVERITY_STYLE[severity]}]{count}[/]" if count else "0"


def audit_yaml(results: Sequence[HostResult[HostAudit]], invoked: CommandLine | None = None) -> str:
    """The recommended settings as `redis_config` blocks to paste into the inventory.

    Hosts with the same recommendations share one block; findings that no Redis setting fixes
    (host settings, ACLs) follow as comments.
    """
    import yaml

    blocks: dict[tuple[tuple[str, str], ...], list[str]] = {}
    for r in results:
        config = recommended_config(r.data) if r.data else {}
        if config:
            blocks.setdefault(tuple(config.items()), []).append(r.host)
    text = "\n".join(
        f"# recommended by `redisops config audit` for {', '.join(hosts)}\n"
        + yaml.safe_dump({"redis_config": dict(items)}, sort_keys=False)
        for items, hosts in blocks.items()
    )
    if not text:
        text = "# no finding is fixed by a Redis setting\nredis_config: {}\n"
    by_hand = [
        f"# {group.finding.rule} on {','.join(group.hosts)}: {group.fix}"
        for group in group_findings(results, invoked)
        if not group.finding.in_redis_config
    ]
    if by_hand:
        text += "\n# not Redis settings, to fix by hand:\n" + "\n".join(by_hand) + "\n"
    return redact(text)


def drift_view(
    output: Output, report: DriftReport, results: Sequence[HostResult[HostConfig]]
) -> RenderableType:
    """Settings that differ between hosts (one row per value), then each host's drift from
    the inventory's redis_config, then errors."""
    from rich.console import Group
    from rich.text import Text

    gap = [] if output.out.is_terminal else [Text("")]
    parts: list[RenderableType] = []
    answered = sum(1 for r in results if r.ok)
    whole = f"{answered} hosts"
    clusters = list(report.clusters)
    if len(clusters) == 1 and len(clusters[0].nodes) == answered:
        whole = f"the {answered} nodes of cluster {clusters.pop().cluster}"
    parts += _drift_table(output, report.fleet, whole, report.compared)
    for cluster in clusters:
        where = f"the {len(cluster.nodes)} nodes of cluster {cluster.cluster}"
        parts += [*gap, *_drift_table(output, cluster.drift, where, cluster.compared)]
    desired = [(r.host, d) for r in results if r.data is not None for d in r.data.drift]
    if desired:
        table = output.table(
            "host", "setting", "current", "desired",
            title="drift from the inventory's redis_config",
            essential=("host", "setting"),
        )  # fmt: skip
        for host, drift in desired:
            table.add_row(
                output.cell(host),
                output.cell(drift.setting),
                output.cell(shown_value(drift.setting, drift.current)),
                output.cell(shown_value(drift.setting, drift.desired)),
            )
        parts += [*gap, table] if parts else [table]
    notes = Text()
    for r in results:
        _note_error(notes, r)
    if notes.plain:
        notes.rstrip()
        parts += [*gap, notes]
    return Group(*parts)


def _drift_table(
    output: Output, drifts: Sequence[FleetDrift], between: str, compared: int
) -> list[RenderableType]:
    """One row per value of each drifting setting; a line when nothing drifts."""
    from rich.text import Text

    if not drifts:
        if not compared:
            return []
        return [
            Text(
                f"no drift between {between} ({compared} settings compared; "
                "per-instance settings and secrets are not)",
                style="green",
            )
        ]
    table = output.table(
        "setting", "value", "hosts", title=f"drift between {between}", essential=("setting",)
    )
    for drift in drifts:
        for index, group in enumerate(drift.values):
            table.add_row(
                output.cell(drift.setting) if index == 0 else "",
                output.cell(shown_value(drift.setting, group.value)),
                output.cell(", ".join(group.hosts)),
            )
    return [table]


def changes_view(output: Output, results: Sequence[HostResult[HostChanges]]) -> RenderableType:
    """One row per change (or refused setting) per host with what became of it; errors and
    notes under the table."""
    from rich.console import Group
    from rich.text import Text

    table = output.table(
        "host", "setting", "current", "new", "outcome", essential=("host", "setting")
    )
    notes = Text("" if output.out.is_terminal else "\n")
    for r in results:
        changes = r.data
        _note_error(notes, r)
        if changes is None:
            table.add_row(output.cell(r.host), "-", "-", "-", "[red]error[/]")
            continue
        if changes.note:
            notes.append(f"{redact(r.host)} note: {redact(changes.note)}\n", style="yellow")
        style = _OUTCOME_STYLE.get(changes.outcome, "red")
        for change in changes.changes:
            forced = f" [yellow](forced: {output.cell(change.danger)})[/]" if change.danger else ""
            table.add_row(
                output.cell(r.host),
                output.cell(change.setting),
                output.cell(shown_value(change.setting, change.old)),
                output.cell(shown_value(change.setting, change.new)),
                f"[{style}]{output.cell(changes.outcome)}[/]{forced}",
            )
        for refused in changes.refused:
            table.add_row(
                output.cell(r.host),
                output.cell(refused.setting),
                "-",
                "-",
                f"[red]refused: {output.cell(refused.reason)}[/]",
            )
        if not changes.changes and not changes.refused:
            done = f"nothing to change ({len(changes.unchanged)} already set)"
            table.add_row(output.cell(r.host), "-", "-", "-", f"[dim]{done}[/]")
    if not notes.plain.strip():
        return table
    notes.rstrip()
    return Group(table, notes)


def _note_error(notes: Text, result: HostResult) -> None:
    """A line under a table for a host that failed: the message would wrap a table cell."""
    if result.error:
        notes.append(f"{redact(result.host)} ", style="bold")
        notes.append("error", style="red")
        notes.append(f": {redact(result.error)}\n")


def shown_value(setting: str, value: str | None) -> str | None:
    """A setting's value for a table: sizes in binary units, an empty value as `""`."""
    if value == "":
        return '""'
    if value is not None and canonical(setting) in SIZE_SETTINGS:
        size = parse_size(value)
        if size is not None:
            return human_bytes(size)
    return value
