"""`redisops snapshot take | show | diff`.

`show` loads the archive once (`snapshot.archive.load_snapshot`) and renders it; its
`--html FILE` option (render/snapshot_html.py) writes the HTML page from that same loaded
`Snapshot`, in the marked place of `show` below.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from redisops.cli.common import global_options, make_output, selected_hosts
from redisops.cli.groups import command_group
from redisops.errors import UsageError
from redisops.exitcode import exit_code

if TYPE_CHECKING:
    from redisops.render.output import Output

app = command_group("snapshot")

ArchiveArgument = Annotated[
    Path, typer.Argument(help="A snapshot archive (snapshot-….tar.zst) written by `take`.")
]


@app.command()
def take(
    ctx: typer.Context,
    dest: Annotated[
        Path,
        typer.Option(
            help="Folder the archive is written to (snapshot-<UTC time>.tar.zst, mode 0600).",
            file_okay=False,
        ),
    ],
    keep: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="Then remove all but the newest N snapshot archives in --dest (0: keep all).",
        ),
    ] = 0,
) -> int:
    """Capture the selected hosts' state into one redacted archive.

    In parallel, within --timeout per host: INFO ALL, CONFIG GET *, ACL LIST, SLOWLOG GET,
    LATENCY LATEST/HISTORY/HISTOGRAM, MEMORY STATS and DOCTOR, CLIENT LIST, the replication
    view, each Sentinel's view of its masters, CLUSTER INFO/SHARDS on cluster nodes, and
    with host access THP, overcommit, swap, load, the tail of the Redis log and the kernel's
    OOM-killer lines. Passwords, credentials in slowlog arguments and ACL password rules are
    redacted before anything is written. A host that fails is an error entry of the manifest;
    the others are complete. Exit 1 when a host or one of its items failed.
    """
    from redisops.render.snapshot import take_footer, take_summary, take_table
    from redisops.snapshot.capture import take_snapshot

    options = global_options(ctx)
    output = make_output(options)
    hosts = selected_hosts(options, output)
    taken = take_snapshot(
        hosts,
        dest=dest,
        timeout=options.timeout,
        parallel=options.parallel,
        inventory=str(options.inventory) if options.inventory else None,
        limit=options.limit,
        keep=keep,
    )
    output.host_results(
        "snapshot take",
        taken.results,
        lambda rows: take_table(output, rows),
        summary=take_summary(taken),
    )
    take_footer(output, taken)
    return exit_code(taken.results)


@app.command()
def show(
    ctx: typer.Context,
    archive: ArchiveArgument,
    top: Annotated[int, typer.Option(min=0, help="Slowlog fingerprints to list (0: all).")] = 10,
    html: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Also write the snapshot as one self-contained HTML page with charts "
            "(mode 0600; it fetches nothing).",
            dir_okay=False,
        ),
    ] = None,
) -> int:
    """Show a snapshot archive as tables: no server is contacted.

    Per host: role, server, memory, fragmentation, ops/s, hit ratio, keys, clients,
    replication, slowlog and latency counts, THP and load, and what was not captured and why;
    then the fleet's slowlog by fingerprint, the latency events and what each Sentinel sees.
    With --html FILE, also a page with charts: memory vs maxmemory, fragmentation, ops/s and
    hit ratio, latency histograms per command summed over hosts, top slowlog fingerprints,
    latency events on one timeline, replica lag, and the flags of memory summary and config
    audit. Exit 1 when the archive records a failed host.
    """
    from redisops.render.snapshot import show_header, show_summary, show_view
    from redisops.render.snapshot_html import page_written, write_snapshot_page
    from redisops.snapshot.archive import load_snapshot
    from redisops.snapshot.overview import overview

    options = global_options(ctx)
    output = make_output(options)
    snapshot = load_snapshot(archive)
    if html is not None:
        try:
            size = write_snapshot_page(snapshot, html)
        except OSError as exc:
            raise UsageError(f"--html {html}: cannot write it: {exc.strerror or exc}") from None
        page_written(output, html, size)
    view = overview(snapshot, top=top)
    show_header(output, snapshot)
    summary = show_summary(snapshot, view)
    if html is not None:
        summary["html"] = str(html)
    output.host_results(
        "snapshot show",
        view.hosts,
        lambda rows: show_view(output, view, rows),
        summary=summary,
    )
    return exit_code(view.hosts)


@app.command()
def diff(
    ctx: typer.Context,
    before: Annotated[
        Path | None, typer.Argument(help="The older snapshot archive (A).", show_default=False)
    ] = None,
    after: Annotated[
        Path | None, typer.Argument(help="The newer snapshot archive (B).", show_default=False)
    ] = None,
    newest_in: Annotated[
        Path | None,
        typer.Option(
            "--in",
            help="Instead of A and B: the two newest archives in this folder (what `take "
            "--dest` wrote last, against the one before).",
            file_okay=False,
        ),
    ] = None,
    fail_on_change: Annotated[
        bool, typer.Option("--fail-on-change", help="Exit 1 when anything differs.")
    ] = False,
) -> int:
    """What changed between two snapshots of the same fleet, host by host.

    Capture failures, versions and restarts, roles and masters, replicas, each Sentinel's
    view of its masters, cluster state, every config setting (secrets only as set/unset),
    memory (from 10% and 1 MiB on), key counts per db, clients (count from 20% on, source
    addresses and names that came or went), and slowlog fingerprints new in B.
    """
    from redisops.render.snapshot import diff_summary, diff_view
    from redisops.snapshot.archive import load_snapshot
    from redisops.snapshot.diff import diff_snapshots

    options = global_options(ctx)
    output = make_output(options)
    before, after = _pair(before, after, newest_in, output)
    result = diff_snapshots(load_snapshot(before), load_snapshot(after))
    output.host_results(
        "snapshot diff",
        result.hosts,
        lambda rows: diff_view(output, result, rows),
        summary=diff_summary(result),
    )
    return exit_code(result.hosts, flagged=bool(fail_on_change and result.changes))


def _pair(
    before: Path | None, after: Path | None, folder: Path | None, output: Output
) -> tuple[Path, Path]:
    """A and B as given, or the two newest of --in DIR; the first night DIR holds one
    archive, compared with itself (a note says so), so a nightly run does not fail."""
    from redisops.snapshot.capture import newest_archives

    if folder is None:
        if before is None or after is None:
            raise UsageError("give two archives (A B), or --in DIR for its two newest")
        return before, after
    if before is not None:
        raise UsageError("give either two archives or --in DIR, not both")
    newest = newest_archives(folder)
    if not newest:
        raise UsageError(f"--in {folder} holds no snapshot archive")
    if len(newest) == 1:
        output.warn(f"{newest[0]} is the only archive in {folder}: nothing to compare it with yet")
        return newest[0], newest[0]
    return newest[1], newest[0]
