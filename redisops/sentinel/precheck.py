"""Before a drill: is the fleet healthy enough to fail over, and can this mode be carried out?

Nothing here changes anything: it reads the sentinels, the master's INFO and CONFIG GET, and in
crash mode runs `cat /proc/<pid>/comm` through host access to be sure the pid is Redis or Valkey.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from redisops.change import ChangePlan
from redisops.errors import HostError, UsageError
from redisops.fleet.connection import redis_client
from redisops.fleet.faults import proven_server_pid
from redisops.fleet.host import Host
from redisops.results import HostResult
from redisops.sentinel.topology import (
    CLIENT_NAME,
    DOWN_FLAGS,
    MAX_ACK_AGE_SECONDS,
    MasterStatus,
    ReplicaStatus,
    SentinelStatus,
    replica_label,
    sentinel_status,
)

MODES = ("failover", "crash", "hang")
# A hang outlasts down-after by this much, so the sentinels have time to promote a replica
# before the master wakes up (promotion took 1-2 s after detection in the lab); waits for a
# promotion allow it on top of failover-timeout, for a loaded machine.
MARGIN_MS = 5000
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class Check:
    """One pre-check: passed or not, and what it found."""

    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class DrillPlan:
    """What a drill will do, and whether the pre-checks allow it (`ready`).

    `nodes` are the inventory names of the master and its replicas: after the drill each must
    be attached to the new master. Times in milliseconds.
    """

    drill_id: str
    master: str
    mode: str
    key_prefix: str
    failback: bool
    max_lag: int
    sentinels: tuple[str, ...]
    checks: tuple[Check, ...]
    ready: bool
    old_master: str | None = None
    old_address: str | None = None
    nodes: tuple[str, ...] = ()
    down_after_ms: int = 0
    failover_timeout_ms: int = 0
    pid: int | None = None
    hang_ms: int | None = None
    actions: tuple[str, ...] = ()
    hang_method: str | None = None  # hang mode: "stop" (SIGSTOP/SIGCONT) or "debug-sleep"

    @property
    def refusal(self) -> str:
        """The failed checks in one line."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.ok)


def plan_drill(
    sentinels: Sequence[Host],
    inventory: Sequence[Host],
    *,
    master: str,
    mode: str,
    max_lag: int,
    failback: bool,
    probe_rate: float,
    timeout: float,
    parallel: int,
) -> DrillPlan:
    """Run the pre-checks for a drill of master `master` and plan it.

    Failed checks make `ready` false; they do not raise. Raises UsageError for an unknown mode,
    or when every Sentinel answered and none monitors `master`.
    """
    if mode not in MODES:
        raise UsageError(f"unknown drill mode {mode!r}", hint=f"one of {', '.join(MODES)}")
    status = sentinel_status(
        sentinels, inventory, timeout=timeout, parallel=parallel, max_lag=max_lag
    )
    found = status.master(master)
    drill_id = time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    prefix = f"redisops:drill:{drill_id}:"
    answered = tuple(r.host for r in status.results if r.ok)
    if found is None:
        _unknown_master(status, master)
        check = Check("sentinels answer", False, _silent(status) or "none answered")
        return DrillPlan(
            drill_id, master, mode, prefix, failback, max_lag, answered, (check,), ready=False
        )
    host = next((h for h in inventory if h.name == found.host), None)
    checks = _fleet_checks(status, found, max_lag)
    pid = hang_ms = hang_method = None
    if host is not None:
        if mode == "crash":
            check, pid = _crash_check(host, timeout)
            checks.append(check)
        elif mode == "hang" and host.has_host_access:
            # SIGSTOP can be undone at once (Ctrl-C); DEBUG SLEEP only where there is no way in.
            hang_ms, hang_method = found.down_after_ms + MARGIN_MS, "stop"
            check, pid = _process_check(host, timeout, "hang: freeze and thaw")
            checks.append(check)
        elif mode == "hang":
            hang_ms, hang_method = found.down_after_ms + MARGIN_MS, "debug-sleep"
            checks.append(_hang_check(host, timeout))
        if failback:
            checks.append(_failback_check(host, timeout))
    nodes = (found.host, *(r.host for r in found.replicas))
    plan = DrillPlan(
        drill_id=drill_id,
        master=master,
        mode=mode,
        key_prefix=prefix,
        failback=failback,
        max_lag=max_lag,
        sentinels=answered,
        checks=tuple(checks),
        ready=all(check.ok for check in checks),
        old_master=found.host,
        old_address=found.address,
        nodes=tuple(name for name in nodes if name),
        down_after_ms=found.down_after_ms,
        failover_timeout_ms=found.failover_timeout_ms,
        pid=pid,
        hang_ms=hang_ms,
        hang_method=hang_method,
    )
    return _with_actions(plan, probe_rate)


def promotion_wait_ms(plan: DrillPlan) -> int:
    """How long the drill waits for a new master: detection (not for SENTINEL FAILOVER), one
    failover-timeout, and a margin for a loaded machine."""
    detect = 0 if plan.mode == "failover" else plan.down_after_ms
    return detect + plan.failover_timeout_ms + MARGIN_MS


def _unknown_master(status: SentinelStatus, master: str) -> None:
    if status.results and all(r.ok for r in status.results):
        known = sorted({m.name for m in status.masters})
        raise UsageError(
            f"no selected Sentinel monitors a master named {master!r}",
            hint=f"they monitor: {', '.join(known)}" if known else "they monitor no master",
        )


def _silent(status: SentinelStatus) -> str:
    return "; ".join(f"{r.host}: {r.error}" for r in status.results if not r.ok)


def _fleet_checks(status: SentinelStatus, found: MasterStatus, max_lag: int) -> list[Check]:
    def problems(*kinds: str) -> list[str]:
        return [p.message for p in found.problems if p.kind in kinds]

    def check(name: str, kinds: tuple[str, ...], fine: str) -> Check:
        found_problems = problems(*kinds)
        return Check(name, not found_problems, "; ".join(found_problems) or fine)

    answering = sum(1 for r in status.results if r.ok)
    missing = [n for n in (found.host, *(r.host for r in found.replicas)) if n is None]
    return [
        check("sentinels answer", ("sentinels",), f"{answering} of {len(status.results)}"),
        check(
            "quorum reachable",
            ("quorum",),
            f"CKQUORUM OK on every sentinel (quorum {found.quorum})",
        ),
        check(
            "sentinels agree",
            ("agreement", "settings"),
            f"all name {found.address}, with the same settings",
        ),
        check("master up", ("master",), f"{found.host} ({found.address}) is master"),
        check("no failover in progress", ("failover",), "none"),
        _replica_check(found, max_lag),
        Check(
            "hosts in inventory",
            not missing,
            "master and replicas found"
            if not missing
            else "the master and every replica must be in the inventory (to check writes "
            f"and the final topology); not found: {_unlisted(found)}",
        ),
    ]


def _unlisted(found: MasterStatus) -> str:
    addresses = [] if found.host else [found.address]
    return ", ".join(addresses + [r.address for r in found.replicas if r.host is None])


def _replica_check(found: MasterStatus, max_lag: int) -> Check:
    """Every replica up and replicating (a drill on a degraded fleet cannot end healthy), and
    one of them promotable (priority > 0) within `max_lag` bytes and acknowledging."""
    down = [p.message for p in found.problems if p.kind in ("replicas", "replica-down")]
    if down:
        return Check("replicas ready", False, "; ".join(down))
    ready = [r for r in found.replicas if _can_take_over(r, max_lag)]
    if not ready:
        return Check(
            "replicas ready",
            False,
            f"no replica with priority > 0 is within {max_lag} bytes and acknowledging",
        )
    names = ", ".join(replica_label(r) for r in ready)
    return Check("replicas ready", True, f"{names} can take over (lag ≤ {max_lag} bytes)")


def _can_take_over(replica: ReplicaStatus, max_lag: int) -> bool:
    return (
        replica.priority > 0
        and replica.link == "up"
        and not DOWN_FLAGS & set(replica.flags)
        and replica.lag_bytes is not None
        and replica.lag_bytes <= max_lag
        and replica.lag_seconds is not None
        and replica.lag_seconds <= MAX_ACK_AGE_SECONDS
    )


def _crash_check(host: Host, timeout: float) -> tuple[Check, int | None]:
    """The master's pid, and proof that host access works and that pid is a Redis process."""
    name = "crash: kill and restart"
    if not host.has_host_access or not host.service_start:
        return Check(
            name,
            False,
            f"{host.name} needs host access and service_start to be killed and restarted",
        ), None
    return _process_check(host, timeout, name)


def _process_check(host: Host, timeout: float, name: str) -> tuple[Check, int | None]:
    """The master's pid (INFO server), proven a Redis process through host access."""
    try:
        pid, comm = proven_server_pid(host, timeout=timeout)
    except HostError as exc:
        return Check(name, False, exc.message), None
    return Check(name, True, f"pid {pid} ({comm}) on {host.name}"), pid


def _hang_check(host: Host, timeout: float) -> Check:
    """Without host access, hang mode uses DEBUG SLEEP: it needs enable-debug-command yes, or
    local with redisops on loopback."""
    name = "hang: DEBUG allowed"
    try:
        with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
            setting = str(client.config_get("enable-debug-command").get("enable-debug-command"))
    except HostError as exc:
        return Check(name, False, exc.message)
    local = host.host in LOOPBACK
    if setting == "yes" or (setting == "local" and local):
        return Check(name, True, f"enable-debug-command {setting} on {host.name}")
    return Check(
        name,
        False,
        f"enable-debug-command is {setting} on {host.name}"
        + ("" if setting != "local" else " and redisops is not on its loopback")
        + "; hang mode uses DEBUG SLEEP (use --mode crash or failover instead)",
    )


def _failback_check(host: Host, timeout: float) -> Check:
    """Failing back promotes the original master again: its replica-priority must allow it."""
    name = "failback possible"
    try:
        with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
            priority = int(client.config_get("replica-priority").get("replica-priority", 100))
    except HostError as exc:
        return Check(name, False, exc.message)
    if priority == 0:
        return Check(name, False, f"{host.name} has replica-priority 0: it cannot be promoted")
    return Check(name, True, f"{host.name} has replica-priority {priority}")


def _hang_action(plan: DrillPlan, old: str) -> str:
    seconds = f"{(plan.hang_ms or 0) / 1000:g}"
    why = f"(down-after {plan.down_after_ms} ms + {MARGIN_MS} ms)"
    if plan.hang_method == "stop":
        return (
            f"kill -STOP {plan.pid} on {old}, the master, through host access; kill -CONT "
            f"{seconds}s later {why}, by the drill and by a timer on the host itself"
        )
    return f"DEBUG SLEEP {seconds} on {old}, the master {why}"


def _with_actions(plan: DrillPlan, probe_rate: float) -> DrillPlan:
    old = f"{plan.old_master} ({plan.old_address})"
    first = plan.sentinels[0] if plan.sentinels else "a sentinel"
    trigger = {
        "failover": f"ask {first} for SENTINEL FAILOVER {plan.master}",
        "crash": f"kill -9 {plan.pid} on {old}, the master, through host access",
        "hang": _hang_action(plan, old),
    }[plan.mode]
    actions = [
        f"write {plan.key_prefix}<n> at {probe_rate:g}/s to the master the sentinels name, "
        "and listen to every sentinel's events",
        trigger,
        f"wait up to {promotion_wait_ms(plan) / 1000:g}s for the sentinels to promote a replica",
    ]
    if plan.mode == "crash":
        actions.append(f"restart {plan.old_master} with its service_start")
    actions += [
        "wait until every node replicates from the new master and the sentinels agree",
        "check every acknowledged write on the new master, then remove the probe keys",
    ]
    if plan.failback:
        actions.append(
            f"fail back to {plan.old_master}: replica-priority 0 on the other replicas for the "
            "time of a SENTINEL FAILOVER, then restore it"
        )
    return replace(plan, actions=tuple(actions))


def drill_change(plan: DrillPlan) -> ChangePlan[DrillPlan]:
    """`plan` as the change engine's plan: one row, and the failed pre-checks as the one
    blocker (--force does not skip a pre-check)."""
    return ChangePlan(
        command="sentinel drill",
        rows=[
            HostResult(
                plan.old_master or plan.master,
                plan.old_address or "-",
                plan.ready,
                plan.refusal or None,
                plan,
            )
        ],
        question=f"Run a {plan.mode} drill on {plan.master} (master {plan.old_master}, "
        f"{plan.old_address})?",
        pending=1,
        blockers=() if plan.ready else (plan.refusal,),
        refused=f"drill refused, nothing was triggered: {plan.refusal}",
        hint="fix the fleet first; `redisops sentinel status` shows what is wrong",
        undone="triggered",
    )
