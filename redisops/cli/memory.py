"""`redisops memory summary | report | rdb`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from redisops.cli.common import (
    global_options,
    load_cluster_selection,
    load_selection,
    make_output,
    selected_hosts,
)
from redisops.cli.groups import command_group
from redisops.errors import ExitCode
from redisops.memory.summary import Severity

app = command_group("memory")

FailOnOption = Annotated[
    Severity | None,
    typer.Option(
        "--fail-on",
        help="Exit 1 when a host has a flag of this severity or worse [default: flags "
        "never change the exit code].",
        show_default=False,
    ),
]

SeparatorOption = Annotated[str, typer.Option(help="Key segment separator for patterns.")]
DepthOption = Annotated[
    int | None,
    typer.Option(help="Keep the first N segments (user:1234:x -> user:* at 1) instead of auto."),
]
TopOption = Annotated[int, typer.Option(min=0, help="How many of the biggest keys to list.")]


def clusters_summary(clusters: Sequence[object]) -> dict[str, list]:
    """The JSON summary's `clusters`, only when the run met a Redis Cluster: runs without one
    keep the summary they always had."""
    return {"clusters": [asdict(cluster) for cluster in clusters]} if clusters else {}


@app.command("summary")
def summary(ctx: typer.Context, fail_on: FailOnOption = None) -> int:
    """Memory of every selected Redis host, most urgent first, with flags explained.

    From INFO and MEMORY DOCTOR: used, peak and RSS memory, fragmentation, % of maxmemory,
    eviction policy, evicted and expired keys, hit ratio, keys, the last fork's cost. Sentinels
    hold no data and are skipped. Nodes of a Redis Cluster are named with their shard, and
    each cluster gets its shards' figures (masters') and totals. Exit 1 when a host fails,
    or with --fail-on when a flag of that severity or worse is found.
    """
    from redisops.memory.summary import summarise_fleet
    from redisops.render.memory_summary import memory_summary_view

    options = global_options(ctx)
    output = make_output(options)
    hosts = selected_hosts(options, output, clusters=True)
    fleet = summarise_fleet(hosts, timeout=options.timeout, parallel=options.parallel)
    shards = {h.name: f"{h.node.cluster}/{h.node.shard}" for h in hosts if h.node}
    code = output.host_results(
        "memory summary",
        fleet.results,
        lambda rows: memory_summary_view(output, rows, fleet.clusters, shards),
        summary={
            "flagged": fleet.hosts_by_severity(),
            "sentinels_skipped": list(fleet.skipped_sentinels),
        }
        | clusters_summary(fleet.clusters),
    )
    output.skipped_sentinels(fleet.skipped_sentinels, "data set")
    flagged = fleet.flagged(fail_on) if fail_on else []
    if flagged:
        output.warn(
            f"--fail-on {fail_on.value}: {len(flagged)} host(s) flagged {fail_on.value} "
            f"or worse: {', '.join(flagged)}"
        )
        return ExitCode.FAILED
    return code


@app.command("report")
def report(
    ctx: typer.Context,
    separator: SeparatorOption = ":",
    depth: DepthOption = None,
    top: TopOption = 20,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Throttle: at most this many keys per second per host "
            "[default: 20000 on a master, full speed on a replica; 0: full speed].",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[
        float | None, typer.Option(help="Examine only this fraction of keys (totals estimated).")
    ] = None,
    max_keys: Annotated[
        int | None, typer.Option(help="Stop after this many keys per host (totals estimated).")
    ] = None,
    samples: Annotated[
        int, typer.Option(min=0, help="MEMORY USAGE SAMPLES per key (0: every element, exact).")
    ] = 5,
    encodings: Annotated[
        bool, typer.Option("--encodings", help="Also fetch OBJECT ENCODING per key.")
    ] = False,
    on_master: Annotated[
        bool,
        typer.Option(
            "--on-master", help="Scan masters themselves even when a replica is available."
        ),
    ] = False,
) -> int:
    """Key-level report: patterns, types, TTLs, biggest keys.

    SCAN with bounded COUNT (never KEYS), pipelined TYPE + MEMORY USAGE + PTTL, over all
    dbs. Masters are scanned on an online replica from the inventory unless --on-master.
    A Redis Cluster is scanned once per shard, all shards at once, with totals per shard
    and for the cluster, and keys and bytes by hash slot and by hash tag.
    """
    from redisops.memory.cluster import with_cluster_nodes
    from redisops.memory.report import ReportOptions, report_fleet
    from redisops.render.memory_report import memory_report_view, scan_progress

    options = global_options(ctx)
    output = make_output(options)
    inventory, selection = load_cluster_selection(options, output)
    hosts = selection.hosts
    settings = ReportOptions(
        separator=separator,
        depth=depth,
        top=top,
        rate=rate,
        sample=sample,
        max_keys=max_keys,
        samples=samples,
        encodings=encodings,
        on_master=on_master,
    )
    with scan_progress(output) as progress:
        fleet = report_fleet(
            hosts,
            with_cluster_nodes(inventory.hosts, selection.clusters.values()),
            settings,
            timeout=options.timeout,
            parallel=options.parallel,
            progress=progress,
        )
    for name, why in fleet.skipped.items():
        output.note(f"{name}: skipped, {why}")
    return output.host_results(
        "memory report",
        fleet.results,
        lambda rows: memory_report_view(output, rows, fleet.clusters),
        summary={"skipped": fleet.skipped} | clusters_summary(fleet.clusters),
    )


@app.command("rdb")
def rdb(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Argument(metavar="FILE|BACKUP_ID", help="An RDB file, or a backup id.")
    ],
    dest: Annotated[
        Path | None,
        typer.Option(
            "--dest",
            help="Catalogue folder to find BACKUP_ID in [default: each host's backup_dir].",
            show_default=False,
        ),
    ] = None,
    separator: SeparatorOption = ":",
    depth: DepthOption = None,
    top: TopOption = 20,
    encodings: Annotated[
        bool, typer.Option("--encodings", help="Also break totals down by encoding.")
    ] = False,
    keys_csv: Annotated[
        Path | None,
        typer.Option("--keys-csv", help="Also write one CSV line per key to this file."),
    ] = None,
) -> int:
    """The `memory report` of an RDB file or a catalogued backup, without touching Redis.

    Reads the file once, in chunks (zstd/gzip backups decompressed as they stream), checks
    its CRC64, and estimates each key's MEMORY USAGE from its encoding. Redis RDB 1-12 and
    Valkey's format 80. A truncated or corrupted file, or one Redis would refuse to load,
    fails (exit 1) naming the byte offset and the key; so does an unknown format, named.
    """
    from redisops.memory.rdb.analysis import analyse_rdb, locate_rdb
    from redisops.memory.report import ReportOptions
    from redisops.render.memory_rdb import rdb_notes
    from redisops.render.memory_report import bytes_progress, memory_report_view

    options = global_options(ctx)
    output = make_output(options)
    settings = ReportOptions(
        separator=separator, depth=depth, top=top, samples=0, encodings=encodings
    )
    source = locate_rdb(target, _catalogues(options, output, target, dest))
    with bytes_progress(output) as progress:
        result, details = analyse_rdb(source, settings, keys_csv=keys_csv, progress=progress)
    summary = {"backup_id": source.backup_id, "source": source.address}
    if details is not None:
        summary |= vars(details)
    code = output.host_results(
        "memory rdb",
        [result],
        lambda rows: memory_report_view(output, rows),
        summary=summary,
        noun="files",
    )
    if details is not None:
        rdb_notes(output, source.label, details)
    return code


def _catalogues(options, output, target: str, dest: Path | None) -> list[Path]:
    """Where to look BACKUP_ID up: --dest, else the inventory's backup_dirs (no inventory is
    read when TARGET is a file)."""
    if dest is not None:
        return [dest]
    if Path(target).expanduser().is_file():
        return []
    _, hosts = load_selection(options, output)
    return sorted({Path(h.backup_dir).expanduser() for h in hosts if h.backup_dir})
