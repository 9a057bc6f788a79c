"""`redisops slowlog triage | tail | reset`."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from redisops.cli.common import (
    DryRunOption,
    YesOption,
    confirm_change,
    global_options,
    make_output,
    selected_hosts,
)
from redisops.cli.groups import command_group
from redisops.errors import ExitCode

app = command_group("slowlog")


class SortKey(str, Enum):
    total = "total"
    count = "count"
    max = "max"


@app.command()
def triage(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Only entries from then on: 30m, 1h, 2d ago, or 2026-11-23T18:00."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Only entries up to then (same forms as --since).")
    ] = None,
    sort: Annotated[
        SortKey, typer.Option(help="Rank fingerprints by total, count or max time.")
    ] = SortKey.total,
    top: Annotated[int, typer.Option(min=0, help="Fingerprints to show (0: all).")] = 20,
    show_args: Annotated[
        bool,
        typer.Option(
            "--show-args",
            help="Also show each fingerprint's slowest call with its argument values "
            "(credentials stay redacted).",
        ),
    ] = False,
    state: Annotated[
        Path | None,
        typer.Option(help="Incremental mode: digest only entries newer than the last run's."),
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Empty each host's slowlog as it is read.")
    ] = False,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
) -> int:
    """Digest slowlogs by command fingerprint.

    Reads every selected host's whole slowlog and ranks fingerprints, costliest first. A
    fingerprint is the command (and subcommand) with its key pattern: ids, numbers, UUIDs and
    hashes collapsed (SET user:{id}:profile). Per fingerprint: calls, total/avg/p50/p95/max
    time, hosts, top clients, a histogram; per host: slowlog settings and LATENCY LATEST;
    then hints. Argument values are shown only with --show-args. Sentinels keep no slowlog
    and are skipped. With --dry-run nothing is reset and the state file is not saved.
    """
    from redisops.fleet.selection import split_sentinels
    from redisops.render.slowlog import triage_summary, triage_view
    from redisops.slowlog.state import check_state_writable, load_bookmarks, save_bookmarks
    from redisops.slowlog.triage import triage_slowlogs
    from redisops.slowlog.window import parse_moment

    options = global_options(ctx)
    output = make_output(options)
    now = time.time()
    low = parse_moment(since, now=now, option="--since") if since else None
    high = parse_moment(until, now=now, option="--until") if until else None
    hosts, sentinels = split_sentinels(
        selected_hosts(options, output, clusters=True), lacking="slowlog"
    )
    bookmarks = load_bookmarks(state) if state else None
    if state and not dry_run:
        check_state_writable(state)
    if dry_run:
        output.err.print(
            "dry run: slowlogs are read, not reset; the state file is not saved",
            style="dim",
            highlight=False,
        )
    elif reset:
        names = ", ".join(host.name for host in hosts)
        output.err.print(
            f"plan: read the slowlog of {len(hosts)} hosts ({names}), and empty each in the "
            "same transaction that reads it",
            highlight=False,
            markup=False,
        )
        confirm_change(f"Reset the slowlog of {len(hosts)} hosts after reading it?", yes=yes)
    result = triage_slowlogs(
        hosts,
        timeout=options.timeout,
        parallel=options.parallel,
        bookmarks=bookmarks,
        reset=reset and not dry_run,
        since=low,
        until=high,
        sort=sort.value,
        top=top,
        show_args=show_args,
    )
    for row in result.results:
        for warning in row.data.warnings if row.data else ():
            output.warn(f"{row.host}: {warning}")
    code = output.host_results(
        "slowlog triage",
        result.results,
        lambda rows: triage_view(output, result, rows),
        summary=triage_summary(
            result,
            skipped=sentinels,
            since=low,
            until=high,
            sort=sort.value,
            state=str(state) if state else None,
        ),
    )
    output.skipped_sentinels(sentinels, "slowlog")
    if state and not dry_run:
        save_bookmarks(state, result.bookmarks)
    return code


@app.command()
def tail(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep polling for new entries.")
    ] = False,
    lines: Annotated[
        int, typer.Option("--lines", "-n", min=0, help="Newest entries to show first.")
    ] = 10,
    interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between polls with --follow.")
    ] = 1.0,
    for_seconds: Annotated[
        float | None,
        typer.Option("--for", min=0, help="Stop following after this many seconds."),
    ] = None,
    show_args: Annotated[
        bool,
        typer.Option(
            "--show-args",
            help="Also show each entry's argument values (credentials stay redacted).",
        ),
    ] = False,
) -> int:
    """Show the newest slowlog entries; --follow for new ones.

    Without --follow, the newest --lines entries of the fleet, in time order, and exit.
    One line per entry (with -o json, one JSON object per line), de-duplicated by entry id,
    until Ctrl-C or --for. A host that fails is reported on stderr once, and again when it
    answers; the exit code is then 1. Sentinels keep no slowlog and are skipped.
    """
    from redisops.fleet.selection import split_sentinels
    from redisops.render.slowlog import tail_line, tail_record
    from redisops.slowlog.tail import follow_slowlogs

    options = global_options(ctx)
    output = make_output(options)
    hosts, sentinels = split_sentinels(
        selected_hosts(options, output, clusters=True), lacking="slowlog"
    )
    output.skipped_sentinels(sentinels, "slowlog")
    batches = follow_slowlogs(
        hosts,
        timeout=options.timeout,
        parallel=options.parallel,
        lines=lines,
        follow=follow,
        interval=interval,
        stop_at=None if for_seconds is None else time.monotonic() + for_seconds,
    )
    failing: dict[str, str] = {}
    failed = False
    try:
        for batch in batches:
            for tailed in batch.entries:
                if output.format == "json":
                    output.json_line(tail_record(tailed, show_args=show_args))
                else:
                    tail_line(output, tailed, show_args=show_args)
            errors = {r.host: r.error or "failed" for r in batch.failures}
            for name, error in errors.items():
                if failing.get(name) != error:
                    output.error(f"{name}: {error}")
            for name in failing.keys() - errors.keys():
                output.warn(f"{name} answers again")
            failing, failed = errors, failed or bool(errors)
            for note in batch.notes:
                output.warn(note)
    except KeyboardInterrupt:
        output.note("interrupted")
    return ExitCode.FAILED if failed else ExitCode.OK


@app.command()
def reset(ctx: typer.Context, yes: YesOption = False, dry_run: DryRunOption = False) -> int:
    """Empty the slowlog of every selected host.

    Shows how many entries each holds first, then asks (or needs --yes off a terminal).
    Hosts that cannot be read are error rows and are not touched. Sentinels are skipped.
    """
    from redisops.fleet.fanout import run_on_hosts
    from redisops.fleet.selection import split_sentinels
    from redisops.render.slowlog import reset_table
    from redisops.slowlog.collect import reset_slowlog, slowlog_length

    options = global_options(ctx)
    output = make_output(options)
    hosts, sentinels = split_sentinels(selected_hosts(options, output), lacking="slowlog")
    plan = run_on_hosts(
        hosts,
        lambda host: slowlog_length(host, timeout=options.timeout),
        parallel=options.parallel,
    )
    summary = {"dry_run": dry_run, "sentinels_skipped": list(sentinels)}
    reachable = [host for host, row in zip(hosts, plan, strict=True) if row.ok]
    if dry_run or not reachable:
        code = output.host_results(
            "slowlog reset", plan, lambda rows: reset_table(output, rows), summary=summary
        )
        output.skipped_sentinels(sentinels, "slowlog")
        if dry_run:
            output.err.print("dry run: nothing was reset", style="dim", highlight=False)
        return code
    held = sum(row.data.entries for row in plan if row.data)
    output.err.print(reset_table(output, plan))
    confirm_change(f"Reset the slowlog of {len(reachable)} hosts ({held} entries)?", yes=yes)
    done = iter(
        run_on_hosts(
            reachable,
            lambda host: reset_slowlog(host, timeout=options.timeout),
            parallel=options.parallel,
        )
    )
    results = [next(done) if row.ok else row for row in plan]
    code = output.host_results(
        "slowlog reset", results, lambda rows: reset_table(output, rows), summary=summary
    )
    output.skipped_sentinels(sentinels, "slowlog")
    return code
