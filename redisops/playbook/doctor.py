"""The `doctor: latency` built-in: LATENCY DOCTOR on every selected Redis host.

No redisops command asks for LATENCY DOCTOR (slowlog triage reads LATENCY LATEST), and an
incident runbook wants the server's own reading, so the playbook runner has it built in. A
step runs it as the hidden command `redisops playbook latency-doctor` (cli/playbook.py), so it
has the one parser and the one error boundary every command has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redisops.fleet.host import Host
from redisops.results import HostResult

DOCTOR_COMMAND = ("playbook", "latency-doctor")

# Phrases of LATENCY DOCTOR's report (Redis 7.0 latency.c) that say what kind of answer it is.
OFF_MARKER = "Latency monitoring is disabled"
QUIET_MARKERS = ("no latency spike was observed", "I have no latency reports to show")


@dataclass(frozen=True)
class LatencyDoctor:
    """One host's LATENCY DOCTOR report; `state` is off (monitor disabled), quiet (no event
    recorded) or spikes (the report explains them)."""

    state: str
    report: str


def read_latency_doctors(
    hosts: Sequence[Host], *, timeout: float, parallel: int
) -> tuple[list[HostResult[LatencyDoctor]], list[str]]:
    """LATENCY DOCTOR per Redis host (Sentinels, which have none, are returned by name)."""
    from redisops.fleet.fanout import run_on_hosts
    from redisops.fleet.selection import split_sentinels

    redis_hosts, sentinels = split_sentinels(hosts, lacking="latency monitor")
    results = run_on_hosts(redis_hosts, lambda host: _ask(host, timeout=timeout), parallel=parallel)
    return results, list(sentinels)


def _ask(host: Host, *, timeout: float) -> LatencyDoctor:
    from redisops.fleet.connection import redis_client

    with redis_client(host, timeout=timeout, decode=True) as client:
        reply = client.execute_command("LATENCY", "DOCTOR")
    text = reply if isinstance(reply, str) else bytes(reply).decode("utf-8", "replace")
    if OFF_MARKER in text:
        state = "off"
    elif any(marker in text for marker in QUIET_MARKERS):
        state = "quiet"
    else:
        state = "spikes"
    return LatencyDoctor(state, text.strip())
