"""`snapshot show --html FILE`: the snapshot as one self-contained HTML page with charts.

Self-contained means no network at all: CSS inline, charts inline SVG made here
(render/svg.py), no script, no font or image to fetch. A Content-Security-Policy of
`default-src 'none'` makes the browser refuse any fetch should one ever slip in. Every text
from the snapshot (host names, key patterns, commands, errors) is escaped; the snapshot holds
no secret (it was redacted before it was written) and the page gets the same last redaction
pass as everything rendered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from redisops.memory.summary import FRAGMENTATION_HIGH, FRAGMENTATION_MIN_USED
from redisops.redaction import redact
from redisops.render import svg
from redisops.render.units import human_bytes, human_count, human_percent, human_us
from redisops.severity import Severity
from redisops.slowlog.digest import Digest
from redisops.snapshot.archive import Snapshot
from redisops.snapshot.figures import (
    CommandLatency,
    HostAudit,
    HostMemory,
    LatencyPoint,
    ReplicaLag,
    fleet_audit,
    host_memory,
    latency_points,
    merged_latency,
    redis_hosts,
    replica_lags,
    slowlog_digest,
)

if TYPE_CHECKING:
    from redisops.render.output import Output

# Enough to see where the time goes; a fleet runs hundreds of distinct commands.
TOP_COMMANDS = 12
TOP_FINGERPRINTS = 10

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1d232b; background: #f6f7f9; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 16px; }
h1 { font-size: 22px; margin: 8px 0 4px; }
h2 { font-size: 17px; margin: 0 0 8px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 14px 16px;
  margin: 14px 0; }
.facts { color: #4a5563; margin: 0 0 6px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 18px; }
svg.chart { display: block; overflow: visible; margin: 6px 0 14px; }
svg .title { font-weight: 600; font-size: 13px; }
svg .label, svg .group { fill: #1d232b; }
svg .group { font-weight: 600; }
svg .note, svg .tick, svg .legend { fill: #4a5563; }
svg .axis-label, svg .empty { fill: #6b7480; font-style: italic; }
.table { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e6e9ed;
  vertical-align: top; overflow-wrap: break-word; }
th { background: #f0f2f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.critical { color: #b3261e; font-weight: 600; }
.warning { color: #8a5a00; font-weight: 600; }
.error { color: #b3261e; }
.ok { color: #1e7b34; }
.muted { color: #6b7480; }
@media (max-width: 600px) { main { padding: 6px; } section { padding: 10px; } }
code { font: 12px ui-monospace, "DejaVu Sans Mono", monospace; }
"""


def snapshot_page(snapshot: Snapshot) -> str:
    """The whole page as text."""
    hosts = redis_hosts(snapshot)
    memory = [host_memory(host) for host in hosts]
    audits = fleet_audit(snapshot)
    # Pictures first; the flags' long tables last, counted in the overview with a link.
    sections = [
        _overview(snapshot, memory, audits),
        _memory(memory),
        _traffic(memory),
        _latency_histograms(merged_latency(snapshot)),
        _slowlog(slowlog_digest(snapshot, top=TOP_FINGERPRINTS)),
        _events(latency_points(snapshot)),
        _replication(snapshot, replica_lags(snapshot)),
        _flags(memory, audits),
    ]
    title = f"redisops snapshot {snapshot.manifest.taken_at}"
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n"
        f"<body><main>\n{''.join(sections)}</main></body></html>\n"
    )
    return redact(page)


def write_snapshot_page(snapshot: Snapshot, path: Path) -> int:
    """Write the page to `path`, 0600 (it names hosts, keys and clients) and atomically;
    returns its size in bytes. Raises OSError as the disk reports it."""
    from redisops.privatefile import private_file

    page = snapshot_page(snapshot)
    with private_file(path) as handle:
        handle.write(page)
    return len(page.encode("utf-8"))


def page_written(output: Output, path: Path, size: int) -> None:
    """Where the page went, on stderr (stdout keeps the tables or the JSON document)."""
    if output.format == "table":
        output.err.print(
            redact(f"wrote {path} ({human_bytes(size)}, 0600)"), highlight=False, markup=False
        )


def _overview(snapshot: Snapshot, memory: Sequence[HostMemory], audits: Sequence[HostAudit]) -> str:
    manifest = snapshot.manifest
    failed = [host for host in manifest.hosts if not host.ok]
    scope = f"inventory {manifest.inventory}" if manifest.inventory else "inventory ?"
    if manifest.limit:
        scope += f", --limit {manifest.limit}"
    facts = (
        f"Taken {manifest.taken_at} on {manifest.taken_on} by redisops {manifest.redisops} in "
        f"{manifest.seconds:.1f}s; {scope}; {len(manifest.hosts)} hosts, {len(failed)} failed."
    )
    rows = []
    for host in manifest.hosts:
        problems = [item for item in host.items if not item.ok]
        notes = "; ".join(f"{item.name} {item.status}: {item.error or '?'}" for item in problems)
        status = (
            '<span class="ok">ok</span>'
            if host.ok
            else f'<span class="error">error: {_e(host.error or "failed")}</span>'
        )
        rows.append(
            [
                _e(host.name),
                _e(host.address),
                _e(host.role),
                _e(host.server or "-"),
                status,
                _num(f"{host.seconds:.2f}s"),
                f'<span class="muted">{_e(notes)}</span>' if notes else "",
            ]
        )
    table = _table(["host", "address", "role", "server", "capture", "took", "not captured"], rows)
    return (
        f'<section id="overview"><h1>Incident snapshot</h1><p class="facts">{_e(facts)}</p>'
        f"{_flag_counts(memory, audits)}{table}</section>\n"
    )


def _flag_counts(memory: Sequence[HostMemory], audits: Sequence[HostAudit]) -> str:
    """One line: how many flags of each severity, on how many hosts, linking to the list."""
    severities = [flag.severity for m in memory for flag in m.summary.flags]
    severities += [finding.severity for audit in audits for finding in audit.findings]
    flagged = {m.host for m in memory if m.summary.flags}
    flagged |= {audit.host for audit in audits if audit.findings}
    if not severities:
        return '<p class="ok">No memory summary flag and no config audit finding.</p>'
    counts = ", ".join(
        f'<span class="{severity.value}">{_plural(severities.count(severity), severity.value)}'
        "</span>"
        for severity in reversed(Severity)
        if severity in severities
    )
    return (
        f"<p>{counts} on {_plural(len(flagged), 'host')}: "
        '<a href="#flags">memory summary and config audit flags</a>.</p>'
    )


def _flags(memory: Sequence[HostMemory], audits: Sequence[HostAudit]) -> str:
    """The flags `memory summary` and `config audit` raise; a finding alike on several hosts
    is one row naming them all, as `config audit` groups them."""
    memory_hosts: dict[tuple[str, str, str], list[str]] = {}
    for m in memory:
        for flag in m.summary.flags:
            memory_hosts.setdefault((flag.severity.value, flag.id, flag.why), []).append(m.host)
    memory_rows = [
        [_severity(Severity(severity)), _e(flag), _e(why), _e(", ".join(hosts))]
        for (severity, flag, why), hosts in sorted(memory_hosts.items(), key=_most_severe)
    ]
    audit_hosts: dict[tuple[str, str, str, str, str, str], list[str]] = {}
    for audit in audits:
        for f in audit.findings:
            key = (f.severity.value, f.rule, f.setting, f.current, f.recommended, f.why)
            audit_hosts.setdefault(key, []).append(audit.host)
    audit_rows = [
        [_severity(Severity(key[0])), *(_e(text) for text in key[1:]), _e(", ".join(hosts))]
        for key, hosts in sorted(audit_hosts.items(), key=_most_severe)
    ]
    unchecked: dict[tuple[str, str], list[str]] = {}
    for audit in audits:
        for rule in audit.unchecked:
            unchecked.setdefault((rule.rule, rule.reason), []).append(audit.host)
    unchecked_rows = [
        [_e(rule), _e(reason), _e(", ".join(hosts))] for (rule, reason), hosts in unchecked.items()
    ]
    parts = ['<section id="flags"><h2>Flags</h2><h3>memory summary</h3>']
    parts.append(
        _table(["severity", "flag", "why", "hosts"], memory_rows)
        if memory_rows
        else '<p class="ok">No memory flag on any host.</p>'
    )
    parts.append("<h3>config audit</h3>")
    parts.append(
        _table(
            ["severity", "rule", "setting", "current", "recommended", "why", "hosts"], audit_rows
        )
        if audit_rows
        else '<p class="ok">No audit finding on any host.</p>'
    )
    if unchecked_rows:
        parts.append('<p class="muted">Rules the snapshot cannot judge:</p>')
        parts.append(_table(["rule", "why unchecked", "hosts"], unchecked_rows))
    parts.append("</section>\n")
    return "".join(parts)


def _most_severe(item: tuple[tuple[str, ...], list[str]]) -> tuple[int, str]:
    return (-Severity(item[0][0]).rank, item[0][1])


def _memory(memory: Sequence[HostMemory]) -> str:
    rows = []
    for m in memory:
        s = m.summary
        if m.dataset_bytes is not None and m.overhead_bytes is not None:
            segments = (
                svg.Segment("dataset", m.dataset_bytes),
                svg.Segment("overhead", m.overhead_bytes),
            )
        else:
            segments = (svg.Segment("used", s.used_memory),)
        if s.maxmemory:
            note = f"{human_bytes(s.used_memory)} of {human_bytes(s.maxmemory)} ({s.used_percent}%)"
        else:
            note = f"{human_bytes(s.used_memory)}, no maxmemory"
        rows.append(svg.BarRow(m.host, segments, note, limit=s.maxmemory or None))
    used = svg.bar_chart(
        "memory",
        "Used memory vs maxmemory",
        rows,
        unit=human_bytes,
        axis_label="used_memory, bytes",
        limit_label="maxmemory",
        binary=True,
    )
    fragmentation = []
    for m in memory:
        ratio = m.summary.mem_fragmentation_ratio or 0.0
        judged = m.summary.used_memory >= FRAGMENTATION_MIN_USED
        note = f"{ratio:.2f} (RSS {human_bytes(m.summary.used_memory_rss)})"
        if not judged:
            note += " *"
        fragmentation.append(svg.BarRow(m.host, (svg.Segment("RSS / used", ratio),), note))
    frag = svg.bar_chart(
        "fragmentation",
        "Fragmentation (RSS / used memory)",
        fragmentation,
        unit=lambda value: f"{value:.2f}",
        axis_label=f"RSS / used; * under {human_bytes(FRAGMENTATION_MIN_USED)} used: not judged",
        references=(
            svg.Reference(1.0, "1.0: RSS equals used memory; under it, part is swapped out"),
            svg.Reference(FRAGMENTATION_HIGH, f"{FRAGMENTATION_HIGH}: memory summary flags it"),
        ),
    )
    return f'<section id="memory"><h2>Memory</h2>{used}{frag}</section>\n'


def _traffic(memory: Sequence[HostMemory]) -> str:
    ops = svg.bar_chart(
        "ops",
        "Operations per second",
        [
            svg.BarRow(m.host, (svg.Segment("ops/s", m.ops_per_sec),), f"{m.ops_per_sec:,} ops/s")
            for m in memory
        ],
        unit=lambda value: human_count(int(value)),
        axis_label="INFO instantaneous_ops_per_sec",
    )
    hits = svg.bar_chart(
        "hit-ratio",
        "Keyspace hit ratio",
        [
            svg.BarRow(
                m.host,
                (svg.Segment("hits", m.summary.hit_ratio or 0.0),),
                f"{human_percent(m.summary.hit_ratio)} of "
                f"{human_count(m.summary.keyspace_hits + m.summary.keyspace_misses)} lookups",
            )
            for m in memory
        ],
        unit=lambda value: human_percent(value, 0),
        axis_label="hits / (hits + misses) since restart",
        scale_max=1.0,
    )
    return (
        f'<section id="traffic"><h2>Traffic</h2><div class="grid"><div>{ops}</div>'
        f"<div>{hits}</div></div></section>\n"
    )


def _latency_histograms(latencies: Sequence[CommandLatency]) -> str:
    charts = []
    for latency in latencies[:TOP_COMMANDS]:
        columns = [
            svg.Column(
                human_us(bucket.upper_us),
                bucket.calls,
                f"{latency.command}: {_plural(bucket.calls, 'call')} over "
                f"{human_us(bucket.upper_us / 2)}, up to {human_us(bucket.upper_us)}",
            )
            for bucket in latency.buckets
        ]
        hosts = ", ".join(latency.hosts)
        charts.append(
            "<div>"
            + svg.histogram_chart(
                f"latency-{latency.command}",
                f"{latency.command}: {_plural(latency.calls, 'call')} on "
                f"{_plural(len(latency.hosts), 'host')}",
                columns,
                axis_label=f"latency ({hosts})",
                count=lambda count: _plural(count, "call"),
            )
            + "</div>"
        )
    more = len(latencies) - TOP_COMMANDS
    tail = f'<p class="muted">{more} more commands not drawn.</p>' if more > 0 else ""
    body = (
        f'<div class="grid">{"".join(charts)}</div>{tail}'
        if charts
        else '<p class="muted">No LATENCY HISTOGRAM in the snapshot (Redis 7+ only).</p>'
    )
    return (
        '<section id="latency-histograms"><h2>Latency per command, all hosts</h2>'
        '<p class="facts">LATENCY HISTOGRAM buckets summed across hosts, most called first.</p>'
        f"{body}</section>\n"
    )


def _slowlog(digest: Digest) -> str:
    rows = [
        svg.BarRow(
            stats.fingerprint,
            (svg.Segment("total time", stats.total_us),),
            f"{_plural(stats.count, 'call')}, avg {human_us(stats.avg_us)}, "
            f"max {human_us(stats.max_us)}",
        )
        for stats in digest.fingerprints
    ]
    chart = svg.bar_chart(
        "slowlog",
        f"Top slowlog fingerprints by total time ({digest.entries:,} entries, "
        f"{digest.distinct:,} fingerprints)",
        rows,
        unit=human_us,
        axis_label="total time in SLOWLOG",
    )
    table = _table(
        ["fingerprint", "calls", "total", "avg", "p95", "max", "hosts"],
        [
            [
                f"<code>{_e(stats.fingerprint)}</code>",
                _num(human_count(stats.count)),
                _num(human_us(stats.total_us)),
                _num(human_us(stats.avg_us)),
                _num(human_us(stats.p95_us)),
                _num(human_us(stats.max_us)),
                _e(", ".join(stats.hosts)),
            ]
            for stats in digest.fingerprints
        ],
    )
    return f'<section id="slowlog"><h2>Slowlog</h2>{chart}{table if rows else ""}</section>\n'


def _events(points: Sequence[LatencyPoint]) -> str:
    marks = [
        svg.Mark(
            f"{point.host} · {point.event}",
            point.at,
            point.ms,
            f"{point.host} {point.event}: {point.ms:,} ms at {_clock(point.at)}",
        )
        for point in points
    ]
    chart = svg.timeline_chart(
        "latency-events",
        "Latency events (LATENCY HISTORY), all hosts on one time axis",
        marks,
        unit=lambda ms: f"{ms:,.0f} ms",
        time_label=_clock,
        axis_label="server clock, UTC",
    )
    return f'<section id="events"><h2>Latency events</h2>{chart}</section>\n'


def _replication(snapshot: Snapshot, lags: Sequence[ReplicaLag]) -> str:
    rows = [
        svg.BarRow(
            lag.replica,
            (svg.Segment("bytes behind", lag.bytes_behind),),
            f"{human_bytes(lag.bytes_behind)} behind, last ack {lag.lag_seconds}s ago, {lag.state}",
            group=f"master {lag.master}",
        )
        for lag in lags
    ]
    chart = svg.bar_chart(
        "replication",
        "Replication: how far each replica is behind its master",
        rows,
        unit=human_bytes,
        axis_label="master_repl_offset minus the replica's offset",
        binary=True,
    )
    table_rows = []
    for host in snapshot.hosts:
        replication = host.replication
        if replication is None:
            continue
        if replication.role == "master":
            link = f"{len(replication.replicas)} replicas"
        else:
            link = (
                f"of {replication.master_host}:{replication.master_port}, link "
                f"{replication.master_link_status}, last I/O "
                f"{replication.master_last_io_seconds_ago}s ago"
            )
        table_rows.append(
            [_e(host.name), _e(replication.role), _num(human_count(replication.offset)), _e(link)]
        )
    table = _table(["host", "role", "offset", "link"], table_rows) if table_rows else ""
    return f'<section id="replication"><h2>Replication</h2>{chart}{table}</section>\n'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table from cells that are already HTML (escaped by the caller)."""
    head = "".join(f"<th>{_e(header)}</th>" for header in headers)
    body = "".join(
        "<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
        for row in rows
    )
    # In a scrolling box: on a phone a wide table scrolls instead of overflowing the page.
    return (
        f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        "</table></div>"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _num(text: str) -> str:
    return f'<td class="num">{_e(text)}</td>'


def _severity(severity: Severity) -> str:
    return f'<span class="{severity.value}">{_e(severity.value)}</span>'


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))


def _e(text: object) -> str:
    return svg.esc(text)
