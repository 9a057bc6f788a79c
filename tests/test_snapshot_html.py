"""`snapshot show --html`: a real lab's snapshot as one self-contained page, opened by Chromium.

One lab for the module (a master, a replica, a sentinel) with traffic, slow calls, latency
events, a masterauth set by CONFIG SET and a key name made of markup; one snapshot of it; the
page is checked as bytes, as charts, and as Chromium renders it.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis

from redisops.fleet.inventory import load_inventory
from redisops.fleet.selection import select_hosts
from redisops.lab import lab_down
from redisops.memory.summary import Severity, summarise_host
from redisops.render import svg
from redisops.render.snapshot_html import snapshot_page, write_snapshot_page
from redisops.snapshot.archive import HostSnapshot, Snapshot, load_snapshot
from redisops.snapshot.capture import take_snapshot
from redisops.snapshot.figures import fleet_audit, host_memory, merged_latency, redis_hosts
from redisops.tuning.audit import audit_host
from tests.chromium import load_page, read_png, require_chromium, screenshot
from tests.cli_helpers import redisops
from tests.plugins.lab import start_lab

MARKUP_KEY = '<script>alert("k")</script>:&x'
MAXMEMORY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Report:
    snapshot: Snapshot
    page: Path
    html: str
    password: str
    masterauth: str
    hosts: tuple
    pids: dict[str, int]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    lab_dir = tmp_path_factory.mktemp("snapshot-html-lab")
    state = start_lab(lab_dir, replicas=1, sentinels=1, seed_keys=200)
    try:
        password = (lab_dir / "secret").read_text().strip()
        masterauth = "masterauth-" + secrets.token_hex(8)
        hosts = select_hosts(load_inventory(state.inventory_path), None)
        ports = {host.name: host.port for host in hosts}
        master = redis.Redis(port=ports["node-1"], password=password, decode_responses=True)
        replica = redis.Redis(port=ports["node-2"], password=password, decode_responses=True)
        master.config_set("maxmemory", MAXMEMORY)
        master.config_set("latency-monitor-threshold", 1)
        master.config_set("slowlog-log-slower-than", 0)
        replica.config_set("maxmemory-policy", "allkeys-lru")  # with maxmemory 0: flagged
        # A masterauth nobody uses (the lab master has no master): a secret all the same.
        master.config_set("masterauth", masterauth)
        pipe = master.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"user:{i}", "x" * i)
            pipe.get(f"user:{i}")
        pipe.execute()
        for i in range(120):
            replica.get(f"user:{i}")
        # Busy Lua on a key named in markup: the slowest calls (the top fingerprints, with
        # the key pattern shown) and latency events of a few ms.
        for loops in (1_000_000, 2_000_000):
            master.eval(f"local i=0 while i<{loops} do i=i+1 end return 1", 1, MARKUP_KEY)
        taken = take_snapshot(
            hosts, dest=lab_dir, timeout=5, parallel=4, inventory=state.inventory_path
        )
        snapshot = load_snapshot(taken.path)
        page = lab_dir / "report.html"
        write_snapshot_page(snapshot, page)
        pids = {process.name: process.pid for process in state.processes if process.pid}
        yield Report(snapshot, page, page.read_text(), password, masterauth, hosts, pids)
    finally:
        lab_down(lab_dir, purge=True)


def _chart(html: str, chart_id: str) -> str:
    match = re.search(rf'<svg class="chart" data-chart="{re.escape(chart_id)}".*?</svg>', html)
    assert match, f"chart {chart_id} missing"
    return match.group(0)


def test_page_is_private_self_contained_and_secret_free(report: Report) -> None:
    assert report.page.stat().st_mode & 0o777 == 0o600
    raw = report.page.read_bytes()
    assert report.password.encode() not in raw
    assert report.masterauth.encode() not in raw
    # Nothing to fetch: no URL at all, no script, no external style, image or frame.
    assert not re.search(rb"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", raw, re.IGNORECASE)
    for tag in (b"<script", b"<link", b"<img", b"<iframe", b"<object", b"url(", b"@import"):
        assert tag not in raw.lower(), tag
    assert b"default-src 'none'" in raw
    # Untrusted text (a key name in the slowlog) is escaped, never markup.
    assert b'<script>alert("k")' not in raw
    assert b"&lt;script&gt;alert(&quot;k&quot;)&lt;/script&gt;" in raw


def test_show_html_writes_the_page(report: Report, tmp_path: Path) -> None:
    page = tmp_path / "incident.html"
    run = redisops("-o", "json", "snapshot", "show", str(report.snapshot.path), "--html", str(page))
    assert run.exit_code == 0, run.stderr
    assert run.json()["summary"]["html"] == str(page)
    assert page.stat().st_mode & 0o777 == 0o600
    assert page.read_text() == snapshot_page(load_snapshot(report.snapshot.path))
    run = redisops("snapshot", "show", str(report.snapshot.path), "--html", str(page))
    assert run.exit_code == 0
    assert f"wrote {page} (" in run.stderr
    missing = tmp_path / "no-such-folder" / "incident.html"
    run = redisops("snapshot", "show", str(report.snapshot.path), "--html", str(missing))
    assert run.exit_code == 2
    assert f"--html {missing}: cannot write it: No such file or directory" in run.stderr
    assert not missing.parent.exists()


def test_every_chart_has_a_bar_per_host(report: Report) -> None:
    html = report.html
    nodes = ["node-1", "node-2"]
    memory = _chart(html, "memory")
    assert re.findall(r'class="bar" data-label="([^"]+)" data-series="dataset"', memory) == nodes
    assert len(re.findall(r'data-series="overhead"', memory)) == 2
    assert memory.count('class="limit"') == 1  # only the master has maxmemory
    for chart_id in ("fragmentation", "ops", "hit-ratio"):
        assert re.findall(r'class="bar" data-label="([^"]+)"', _chart(html, chart_id)) == nodes
    replication = _chart(html, "replication")
    assert re.findall(r'class="bar" data-label="([^"]+)"', replication) == ["node-2"]
    assert "master node-1" in replication
    events = _chart(html, "latency-events")
    history = sum(
        len(points) for host in report.snapshot.hosts for points in host.latency_history.values()
    )
    assert history >= 1
    assert events.count('class="point"') == history
    slowlog = _chart(html, "slowlog")
    assert 1 <= slowlog.count('class="bar"') <= 10
    assert "EVAL" in slowlog


def test_latency_histogram_is_summed_across_hosts(report: Report) -> None:
    calls_by_host = {
        host.name: host.latency_histogram["get"].calls
        for host in report.snapshot.hosts
        if "get" in host.latency_histogram
    }
    assert set(calls_by_host) == {"node-1", "node-2"}
    assert calls_by_host["node-2"] >= 120
    get = next(latency for latency in merged_latency(report.snapshot) if latency.command == "get")
    assert get.calls == sum(calls_by_host.values())
    assert sum(bucket.calls for bucket in get.buckets) == get.calls
    chart = _chart(report.html, "latency-get")
    counts = [int(count) for count in re.findall(r'data-count="(\d+)"', chart)]
    assert counts == [bucket.calls for bucket in get.buckets]
    assert sum(counts) == get.calls


def test_flags_are_those_memory_summary_and_config_audit_raise(report: Report) -> None:
    """The page's flags come from the commands' own rules; live runs on the same hosts agree,
    except the rules a snapshot cannot judge (listed as such)."""
    hosts = {host.name: host for host in report.hosts}
    audits = {audit.host: audit for audit in fleet_audit(report.snapshot)}
    for captured in redis_hosts(report.snapshot):
        live_memory = summarise_host(hosts[captured.name], timeout=5)
        assert [f.id for f in host_memory(captured).summary.flags] == [
            f.id for f in live_memory.flags
        ]
        live = audit_host(hosts[captured.name], timeout=5, rate_window=0, instances_on_machine=2)
        unjudged = {rule.rule for rule in audits[captured.name].unchecked}
        assert {f.rule for f in audits[captured.name].findings} == {
            f.rule for f in live.findings if f.rule not in unjudged
        }
    assert [f.id for f in host_memory(report.snapshot.host("node-2")).summary.flags] == [
        "no-maxmemory"
    ]
    # The overview counts them: node-2's no-maxmemory at least; the machine's sysctls decide
    # whether node-1 has findings too (overcommit, swappiness).
    severities = [
        f.severity for h in redis_hosts(report.snapshot) for f in host_memory(h).summary.flags
    ]
    severities += [f.severity for audit in audits.values() for f in audit.findings]
    flagged = {h.name for h in redis_hosts(report.snapshot) if host_memory(h).summary.flags}
    flagged |= {audit.host for audit in audits.values() if audit.findings}
    overview = report.html[: report.html.index('<section id="memory"')]
    warnings = severities.count(Severity.warning)
    plural = "s" if warnings != 1 else ""
    assert f'<span class="warning">{warnings} warning{plural}</span>' in overview
    assert f"on {len(flagged)} host{'s' if len(flagged) != 1 else ''}: " in overview
    flags = report.html[report.html.index('<section id="flags"') :]
    assert "no-maxmemory" in flags
    assert "maxmemory-unset" in flags
    assert "dangerous-commands-open" in flags  # unchecked: a snapshot holds no ACL DRYRUN


def test_chromium_renders_the_page_without_errors(report: Report, tmp_path: Path) -> None:
    require_chromium()
    loaded = load_page(report.page)
    assert loaded.console == []
    for chart_id in ("memory", "fragmentation", "ops", "hit-ratio", "latency-get", "slowlog"):
        assert f'data-chart="{chart_id}"' in loaded.dom
    png = tmp_path / "report.png"
    screenshot(report.page, png, width=1280, height=1400)
    picture = read_png(png)
    assert (picture.width, picture.height) == (1280, 1400)
    assert len(picture.colours) > 50, "the screenshot is blank or nearly so"
    # The bars themselves were painted: the first series' colour and the maxmemory marker.
    for colour in (svg.PALETTE[0], svg.LIMIT_COLOUR):
        assert bytes.fromhex(colour[1:]) in {c[:3] for c in picture.colours}, colour


def test_charts_escape_untrusted_text() -> None:
    hostile = "h<\"&'>\x1b[31m"
    chart = svg.bar_chart(
        "x",
        hostile,
        [svg.BarRow(hostile, (svg.Segment(hostile, 5),), hostile, limit=10, group=hostile)],
        unit=str,
        axis_label=hostile,
    )
    chart += svg.histogram_chart("y", hostile, [svg.Column(hostile, 3, hostile)], axis_label="a")
    chart += svg.timeline_chart(
        "z",
        hostile,
        [svg.Mark(hostile, 1.0, 2.0, hostile)],
        unit=str,
        time_label=str,
        axis_label="",
    )
    assert '<"' not in chart and "\x1b" not in chart
    assert chart.count("h&lt;&quot;&amp;&#x27;&gt;\ufffd[31m") >= 10


def test_empty_charts_say_so() -> None:
    assert "nothing to show" in svg.bar_chart("a", "t", [], unit=str, axis_label="")
    assert "nothing to show" in svg.histogram_chart("b", "t", [], axis_label="")
    assert "nothing to show" in svg.timeline_chart(
        "c", "t", [], unit=str, time_label=str, axis_label=""
    )


def test_scales_end_on_round_steps() -> None:
    assert svg.nice_ticks(1.7) == [0.0, 1.0, 2.0]
    assert svg.nice_ticks(100) == [0, 50, 100]
    assert svg.nice_ticks(0) == [0.0, 1.0]
    mib = 1024 * 1024
    assert svg.nice_ticks(600 * mib, binary=True) == [0, 256 * mib, 512 * mib, 768 * mib]


def test_page_of_a_snapshot_without_hosts_data(report: Report) -> None:
    """A snapshot whose hosts all failed still renders: every chart says it has nothing."""
    hosts = tuple(HostSnapshot(record=host.record) for host in report.snapshot.hosts)
    failed = replace(report.snapshot, hosts=hosts)
    html = snapshot_page(failed)
    assert html.count("nothing to show") >= 6


def test_frozen_host_is_an_error_row_and_the_others_are_charted(report: Report) -> None:
    pid = report.pids["node-2"]
    os.kill(pid, signal.SIGSTOP)
    try:
        taken = take_snapshot(report.hosts, dest=report.page.parent, timeout=1, parallel=4)
    finally:
        os.kill(pid, signal.SIGCONT)
    html = snapshot_page(load_snapshot(taken.path))
    overview = html[: html.index('<section id="memory"')]
    row = re.search(r"<tr><td>node-2</td>.*?</tr>", overview)
    assert row and '<span class="error">error: ' in row.group(0)
    for chart_id in ("memory", "ops", "hit-ratio", "fragmentation"):
        labels = re.findall(r'class="bar" data-label="([^"]+)"', _chart(html, chart_id))
        assert set(labels) == {"node-1"}, chart_id
