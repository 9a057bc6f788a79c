"""`slowlog reset` as a change: plan (each host's slowlog length), then empty the reachable ones."""

from __future__ import annotations

from collections.abc import Sequence

from redisops.change import ChangeOutcome, ChangePlan
from redisops.fleet.fanout import run_on_hosts
from redisops.fleet.host import Host
from redisops.slowlog.collect import SlowlogReset, reset_slowlog, slowlog_length


def plan_reset(
    hosts: Sequence[Host], *, sentinels: Sequence[str], timeout: float, parallel: int
) -> ChangePlan[SlowlogReset]:
    """How many entries each host holds; a host that cannot be read is an error row and is
    left out of the reset."""
    rows = run_on_hosts(
        hosts, lambda host: slowlog_length(host, timeout=timeout), parallel=parallel
    )
    reachable = sum(1 for row in rows if row.ok)
    held = sum(row.data.entries for row in rows if row.data)
    return ChangePlan(
        command="slowlog reset",
        rows=rows,
        question=f"Reset the slowlog of {reachable} hosts ({held} entries)?",
        pending=reachable,
        summary={"sentinels_skipped": list(sentinels)},
        undone="reset",
    )


def apply_reset(
    plan: ChangePlan[SlowlogReset], hosts: Sequence[Host], *, timeout: float, parallel: int
) -> ChangeOutcome[SlowlogReset]:
    """Empty the slowlog of every host the plan could read; the others keep their error row."""
    reachable = [host for host, row in zip(hosts, plan.rows, strict=True) if row.ok]
    done = iter(
        run_on_hosts(
            reachable, lambda host: reset_slowlog(host, timeout=timeout), parallel=parallel
        )
    )
    return ChangeOutcome([next(done) if row.ok else row for row in plan.rows])
