"""A Redis Cluster failover drill: fail one shard's master, watch it as an application and as
the other nodes do, and measure what clients felt, on that shard and on the others.

In order: start the watcher (CLUSTER NODES on every other node) and one write probe per shard,
each routed by slot; after a baseline (no write acknowledged on the drilled shard: abort,
nothing triggered) inject the fault (CLUSTER FAILOVER on an in-sync replica, SIGKILL or
SIGSTOP of the master); wait for a replica to serve the slots; restart a killed master, thaw
a frozen one; wait until the cluster is healthy and the old master replicates from the new
one; stop the probes; check every acknowledged write; remove the probe keys; fail back if
asked. Never fans out: one shard, one step at a time.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from redisops.cluster.drill_plan import ClusterDrillPlan, promotion_wait_ms
from redisops.cluster.drill_probe import ClusterWatch, SlotWrites, slot_of, tag_in
from redisops.cluster.status import cluster_status
from redisops.errors import HostError, RefusedError
from redisops.fleet.cluster import Cluster
from redisops.fleet.connection import redis_client
from redisops.fleet.faults import (
    CLIENT_NAME,
    checked_pid,
    fault_wind_down,
    freeze_server,
    signal_server,
    start_server,
)
from redisops.fleet.host import Host
from redisops.interrupt import Interrupted, pause
from redisops.results import HostResult
from redisops.sentinel.drill import Step, probe_steps

BASELINE_SECONDS = 3.0  # at most, until every probe has a write acknowledged
POLL_SECONDS = 0.05
SETTLE_POLL_SECONDS = 0.25
# Redis aborts a manual failover that did not complete in 5 s (CLUSTER_MF_TIMEOUT); a margin.
MANUAL_FAILOVER_SECONDS = 6.0


@dataclass(frozen=True)
class ClusterDrillReport:
    """What a cluster drill did and measured (docs/cluster.md explains each figure).

    Durations are ms from the fault (`trigger_ms` after the start), None when it did not
    happen (no PFAIL/FAIL in failover mode). Write downtime is the longest time without an
    acknowledged write from the fault to the end of the probe (about 1000/probe_rate when
    nothing was felt). Writes 1 … writes_acked were acknowledged on the drilled shard,
    `writes_lost` of them missing afterwards (None: not checked); `other_*` are the same for
    the probes of the other shards together.
    """

    drill_id: str
    started_at: str
    cluster: str
    shard: str
    mode: str
    old_master: str
    old_address: str
    new_master: str | None
    node_timeout_ms: int
    trigger_ms: int | None
    pfail_ms: int | None
    detect_ms: int | None
    promotion_ms: int | None
    write_downtime_ms: int | None
    rejoin_ms: int | None
    settled_ms: int | None
    writes_acked: int
    writes_lost: int | None
    write_errors: int
    duplicates: int
    other_shards: tuple[str, ...]
    other_writes_acked: int
    other_writes_lost: int | None
    other_write_errors: int
    other_downtime_ms: int | None
    other_max_latency_ms: int | None
    probe_rate: float
    failed_back: bool | None
    healthy_after: bool
    ok: bool
    problems: tuple[str, ...]
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()
    inventory: str | None = None


StepCallback = Callable[[Step], None]


def run_cluster_drill(
    plan: ClusterDrillPlan,
    cluster: Cluster,
    *,
    probe_rate: float,
    probe_timeout: float,
    settle_timeout: float,
    timeout: float,
    parallel: int,
    on_step: StepCallback | None = None,
    inventory_file: str | None = None,
) -> ClusterDrillReport:
    """Carry out a drill that `plan_cluster_drill` found ready; `on_step` sees each step live.

    Raises RefusedError when the probe cannot write to the shard before the fault (nothing
    was triggered). Every later failure ends up in the report's `problems`, with `ok` false.
    A killed master is restarted, a frozen one thawed, whatever happens; on a stop signal
    the drill winds down within about a second and raises `Interrupted` saying what it did.
    """
    if not plan.ready or plan.old_master is None:
        raise RefusedError(f"the pre-checks did not pass: {plan.refusal}")
    drill = _Drill(plan, cluster, probe_rate, probe_timeout, timeout, parallel, on_step)
    drill.inventory_file = inventory_file
    try:
        return drill.run(settle_timeout)
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        raise Interrupted(signum, drill.wind_down()) from None


class _Drill:
    """The state of one drill run; the public entry point is run_cluster_drill."""

    def __init__(
        self,
        plan: ClusterDrillPlan,
        cluster: Cluster,
        probe_rate: float,
        probe_timeout: float,
        timeout: float,
        parallel: int,
        on_step: StepCallback | None,
    ) -> None:
        self.plan = plan
        self.cluster = cluster
        self.hosts = {h.name: h for h in cluster.nodes}
        self.old = self.hosts[str(plan.old_master)]
        self.probe_rate = probe_rate
        self.probe_timeout = probe_timeout
        self.timeout = timeout
        self.parallel = parallel
        self.on_step = on_step
        self.inventory_file: str | None = None
        self.start = time.monotonic()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.steps: list[tuple[float, str, str, str]] = []
        self.problems: list[str] = []
        self.trigger_at: float | None = None
        self.fault_sent_at: float | None = None  # set before the signal (see wind_down)
        self.rejoin_at: float | None = None
        self.settled_at: float | None = None
        self.healthy = False
        self.failed_back: bool | None = None
        self.killed = self.frozen = False
        self.hang_until: float | None = None
        self.lost: int | None = None
        self.other_lost: int | None = None
        self.probes: list[SlotWrites] = []

    # --- the run --------------------------------------------------------------------------

    def run(self, settle_timeout: float) -> ClusterDrillReport:
        plan = self.plan
        tag = tag_in(plan.slots)
        self.slot = slot_of(tag)
        nodes = list(self.cluster.nodes)
        target = self._probe(nodes, tag)
        others = [
            self._probe(nodes, tag_in(shard.slots))
            for shard in self.cluster.shards
            if shard.name in plan.other_shards
        ]
        self.probes = [target, *others]
        watch = ClusterWatch(
            nodes, old_id=str(plan.old_id), slot=self.slot, timeout=self.probe_timeout
        )
        with watch, contextlib.ExitStack() as stack:
            for probe in self.probes:
                stack.enter_context(probe)
            self.step(
                "probes started",
                f"{self.probe_rate:g} writes/s to slot {self.slot} of {plan.shard}"
                + (f" and to {', '.join(plan.other_shards)}" if others else ""),
            )
            self._baseline(target)
            self._fault_and_promotion(watch)
            if watch.promoted is not None:
                self.healthy = self._settle(time.monotonic() + settle_timeout)
        self.step("probes stopped", f"{len(target.acks)} writes acknowledged on {plan.shard}")
        self._verify_and_clean(target, others)
        if plan.failback and self.healthy:
            self._failback(settle_timeout, str(watch.new_id))
        return self._report(target, others, watch)

    def _probe(self, nodes: list[Host], tag: str) -> SlotWrites:
        return SlotWrites(
            nodes,
            slot=slot_of(tag),
            prefix=f"{self.plan.key_prefix}{{{tag}}}:",
            rate=self.probe_rate,
            timeout=self.probe_timeout,
        )

    def _baseline(self, target: SlotWrites) -> None:
        deadline = time.monotonic() + BASELINE_SECONDS
        while time.monotonic() < deadline and not all(p.acks for p in self.probes):
            pause(POLL_SECONDS)
        pause(0.5)  # a steady rate before the fault, so the downtime has a baseline
        if not target.acks:
            last = target.failures[-1].error if target.failures else "no reply"
            raise RefusedError(
                f"the probe could not write to {self.plan.shard} before the drill ({last}); "
                "nothing was triggered",
                hint="check that the shard's master accepts writes: `redisops cluster status`",
            )

    def _fault_and_promotion(self, watch: ClusterWatch) -> None:
        interrupted = False
        try:
            watch.arm(time.monotonic())
            if self.plan.mode == "failover":
                self.trigger_at = self._ask_failover(self.hosts[str(self.plan.replica)], "trigger")
            elif self.plan.mode == "crash":
                self.trigger_at = self._signal("9")
            else:
                self.trigger_at = self._signal("STOP")
            deadline = self.trigger_at + promotion_wait_ms(self.plan) / 1000
            while watch.promoted is None and time.monotonic() < deadline:
                pause(POLL_SECONDS)
            if watch.promoted is None:
                self.problems.append(
                    f"no replica served the slots within {promotion_wait_ms(self.plan) / 1000:g}s"
                )
            else:
                self._sightings(watch)
        except HostError as exc:
            self.problems.append(exc.message)
            self.step("failed", exc.message)
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if self.killed:
                self._restart()
            if self.frozen:
                try:
                    if not interrupted and self.hang_until is not None:
                        pause(max(0.0, self.hang_until - time.monotonic()))
                finally:
                    self._thaw()

    def _sightings(self, watch: ClusterWatch) -> None:
        for sighting, event in ((watch.pfail, "PFAIL"), (watch.fail, "FAIL")):
            if sighting is not None:
                self.step(event, f"{self.old.name} flagged by {sighting.seen_by}", at=sighting.at)
        promoted = watch.promoted
        if promoted is not None:
            self.step("new master", f"{promoted.detail} of {self.plan.shard}", at=promoted.at)

    # --- faults ---------------------------------------------------------------------------

    def _ask_failover(self, host: Host, event: str) -> float:
        sent = time.monotonic()
        with redis_client(host, timeout=self.timeout, client_name=CLIENT_NAME) as client:
            client.execute_command("CLUSTER", "FAILOVER")
        self.step(event, f"CLUSTER FAILOVER on {host.name} ({host.address})", at=sent)
        return sent

    def _signal(self, name: str) -> float:
        """kill -9 or SIGSTOP (with the timer that thaws it) to the master; when it was sent."""
        old = self.old
        pid = checked_pid(old, self.plan.pid, timeout=self.timeout)
        seconds = (self.plan.hang_ms or 0) / 1000

        def sending() -> None:
            # Before the signal: a stop signal right after it must restart or thaw.
            self.fault_sent_at = time.monotonic()
            if name == "9":
                self.killed = True
            else:
                self.frozen = True
                self.hang_until = self.fault_sent_at + seconds

        if name == "9":
            signal_server(old, pid, "9", timeout=self.timeout, before=sending)
            sent = float(self.fault_sent_at or 0)
            self.step("trigger", f"kill -9 {pid} ({old.name}, {old.address})", at=sent)
            return sent
        freeze_server(old, pid, seconds, timeout=self.timeout, before=sending)
        sent = float(self.fault_sent_at or 0)
        self.step(
            "trigger", f"kill -STOP {pid} ({old.name}, {old.address}) for {seconds:g}s", at=sent
        )
        return sent

    def _restart(self) -> None:
        try:
            start_server(self.old, timeout=self.timeout)
        except HostError as exc:
            self.problems.append(f"restarting {self.old.name} failed: {exc.message}")
            self.step("restart failed", exc.message)
            return
        self.killed = False
        self.step("restarted", f"{self.old.name} with its service_start")

    def _thaw(self) -> None:
        try:
            signal_server(self.old, int(self.plan.pid or 0), "CONT", timeout=self.timeout)
        except HostError as exc:
            self.problems.append(
                f"kill -CONT on {self.old.name} failed: {exc.message} (the timer on the host "
                "sends it at the end of the hang)"
            )
            self.step("thaw failed", exc.message)
            return
        self.frozen = False
        self.step("thawed", f"kill -CONT {self.plan.pid} ({self.old.name})")

    # --- after ----------------------------------------------------------------------------

    def _settle(self, deadline: float, *, rejoined: Host | None = None) -> bool:
        """Until `cluster status` finds nothing wrong and the demoted node (the old master,
        or after a failback the node that replaced it) is a replica with its link up, and a
        replica of the slot's master in every node's view (a master ignores a manual
        failover asked by a node it does not yet know as its replica); True when that
        happened by `deadline`."""
        demoted = rejoined or self.old
        last: list[str] = []
        while True:
            status = cluster_status(self.cluster, timeout=self.timeout, parallel=self.parallel)
            row = next((r for r in status.node_rows if r.host == demoted.name), None)
            data = row.data if row is not None and row.ok else None
            attached = (
                data is not None and data.role == "replica" and data.master_link_status == "up"
            )
            if attached and rejoined is None and self.rejoin_at is None:
                self.rejoin_at = time.monotonic()
                self.step("rejoined", f"{demoted.name} replicates, link up")
            unseen = self._not_yet_replica(demoted) if attached and status.healthy else []
            if attached and status.healthy and not unseen:
                at = time.monotonic()
                if rejoined is None:
                    self.settled_at = at
                self.step("settled", f"cluster {self.cluster.name} healthy", at=at)
                return True
            last = [p.message for p in status.problems]
            if not attached:
                last.append(f"{demoted.name} is not a replica with its link up yet")
            if unseen:
                last.append(f"{', '.join(unseen)} do not see {demoted.name} as a replica yet")
            if time.monotonic() >= deadline:
                self.problems.append("the cluster did not settle: " + "; ".join(last))
                self.step("not settled", "; ".join(last))
                return False
            pause(SETTLE_POLL_SECONDS)

    def _not_yet_replica(self, demoted: Host) -> list[str]:
        """The nodes whose CLUSTER NODES does not show `demoted` as a replica of the master
        serving the probe's slot (a node that does not answer is `cluster status`'s concern)."""
        from redisops.cluster.drill_probe import Router
        from redisops.fleet.cluster import parse_nodes

        demoted_id = demoted.node.node_id if demoted.node else None
        router = Router(self.cluster.nodes, timeout=self.timeout)
        behind = []
        try:
            for node in self.cluster.nodes:
                if node.name == demoted.name:
                    continue
                try:
                    reply = router.call(node, "CLUSTER", "NODES")
                except HostError:
                    continue
                if not isinstance(reply, bytes):
                    continue
                view = parse_nodes(reply.decode())
                owner = next(
                    (
                        n.node_id
                        for n in view
                        if n.role == "master" and any(a <= self.slot <= b for a, b in n.slots)
                    ),
                    None,
                )
                line = next((n for n in view if n.node_id == demoted_id), None)
                if line is None or line.role != "replica" or line.master_id != owner:
                    behind.append(node.name)
        finally:
            router.close()
        return behind

    def _verify_and_clean(self, target: SlotWrites, others: Sequence[SlotWrites]) -> None:
        """Count the acknowledged writes missing now on each probe's slot, then remove every
        key the probes may have written."""
        try:
            self.lost = target.count_missing(len(target.acks))
            self.other_lost = sum(p.count_missing(len(p.acks)) for p in others)
            self.step(
                "checked",
                f"{len(target.acks)} acknowledged writes on {self.plan.shard}, {self.lost} "
                f"missing; {sum(len(p.acks) for p in others)} on the other shards, "
                f"{self.other_lost} missing",
            )
            removed = sum(p.remove() for p in self.probes)
            self.step("cleaned up", f"{removed} probe keys removed")
        except HostError as exc:
            self.problems.append(
                f"checking the writes failed: {exc.message} (probe keys expire within a day)"
            )
        finally:
            for probe in self.probes:
                probe.router.close()

    def _failback(self, settle_timeout: float, new_id: str) -> None:
        """CLUSTER FAILOVER on the original master (a replica now), then healthy again with
        the node that had replaced it as its replica."""
        new = next((h for h in self.cluster.nodes if h.node and h.node.node_id == new_id), None)
        self.failed_back = False
        try:
            since = sent = self._ask_failover(self.old, "failback")
            deadline = since + promotion_wait_ms(self.plan) / 1000
            while not self._serves_slot(self.old):
                if time.monotonic() >= deadline:
                    self.problems.append(f"failback to {self.old.name} did not happen")
                    self.healthy = False
                    return
                if time.monotonic() - sent > MANUAL_FAILOVER_SECONDS:
                    # Redis gave up on it (a node elected less than 4 node timeouts ago may
                    # count its old votes and give up): ask again.
                    sent = self._ask_failover(self.old, "failback again")
                pause(POLL_SECONDS)
        except HostError as exc:
            self.problems.append(f"failback failed: {exc.message}")
            self.healthy = False
            return
        self.step("failed back", f"{self.old.name} is master again")
        self.healthy = self._settle(time.monotonic() + settle_timeout, rejoined=new or self.old)
        self.failed_back = self.healthy

    def _serves_slot(self, host: Host) -> bool:
        """Whether `host` says it is itself the master serving the probe's slot."""
        from redisops.fleet.cluster import parse_nodes
        from redisops.fleet.resp import RespConnection

        connection = RespConnection(host, timeout=self.timeout)
        try:
            text = connection.call("CLUSTER", "NODES").decode()
        finally:
            connection.close()
        return any(
            "myself" in line.flags
            and line.role == "master"
            and any(a <= self.slot <= b for a, b in line.slots)
            for line in parse_nodes(text)
        )

    # --- the record -----------------------------------------------------------------------

    def wind_down(self) -> str:
        """What a stopped drill did, for the `interrupted: …` line (its clean-ups have run)."""
        plan = self.plan
        fault_at = self.trigger_at if self.trigger_at is not None else self.fault_sent_at
        events = {event: detail for _, source, event, detail in self.steps if source == "drill"}
        drill = f"{plan.mode} drill of {plan.cluster}/{plan.shard}"
        parts = fault_wind_down(drill, fault_at, time.monotonic(), events, self.old.name)
        if self.probes:
            acked = sum(len(p.acks) for p in self.probes)
            parts.append(
                f"probes stopped after {acked} acknowledged writes; their keys "
                f"{plan.key_prefix}* expire within a day"
            )
        if fault_at is not None:
            parts.append(
                "the cluster finishes any failover under way by itself: check "
                "`redisops cluster status`"
            )
        return "; ".join(parts)

    def step(self, event: str, detail: str = "", *, at: float | None = None) -> None:
        at = time.monotonic() if at is None else at
        self.steps.append((at, "drill", event, detail))
        if self.on_step is not None:
            self.on_step(Step(round((at - self.start) * 1000), "drill", event, detail))

    def _ms(self, at: float | None, since: float | None = None) -> int | None:
        if at is None:
            return None
        return round((at - (self.start if since is None else since)) * 1000)

    def _report(
        self, target: SlotWrites, others: Sequence[SlotWrites], watch: ClusterWatch
    ) -> ClusterDrillReport:
        plan, trigger = self.plan, self.trigger_at
        timeline = list(self.steps)
        timeline += probe_steps(target, f"probe {plan.shard}")
        for shard, probe in zip(plan.other_shards, others, strict=True):
            timeline += probe_steps(probe, f"probe {shard}")
        timeline.sort(key=lambda entry: entry[0])
        promoted = watch.promoted
        new = self.hosts.get(promoted.seen_by) if promoted else None
        fail = watch.fail.at if watch.fail else None
        # A poll can miss the short PFAIL stage: FAIL implies it was there by then.
        pfail = watch.pfail.at if watch.pfail else fail
        other_errors = sum(1 for p in others for f in p.failures if trigger and f.at >= trigger)
        latencies = [a.latency for p in others for a in p.acks if trigger and a.at >= trigger]
        ok = promoted is not None and self.healthy and self.lost is not None and not self.problems
        return ClusterDrillReport(
            drill_id=plan.drill_id,
            started_at=self.started_at,
            cluster=plan.cluster,
            shard=plan.shard,
            mode=plan.mode,
            old_master=self.old.name,
            old_address=self.old.address,
            new_master=new.name if new else None,
            node_timeout_ms=plan.node_timeout_ms,
            trigger_ms=self._ms(trigger),
            pfail_ms=self._ms(pfail, trigger),
            detect_ms=self._ms(fail, trigger),
            promotion_ms=self._ms(promoted.at if promoted else None, trigger),
            write_downtime_ms=longest_gap_ms(target, trigger),
            rejoin_ms=self._ms(self.rejoin_at, trigger),
            settled_ms=self._ms(self.settled_at, trigger),
            writes_acked=len(target.acks),
            writes_lost=self.lost,
            write_errors=len(target.failures),
            duplicates=sum(1 for ack in target.acks if ack.duplicate),
            other_shards=plan.other_shards,
            other_writes_acked=sum(len(p.acks) for p in others),
            other_writes_lost=self.other_lost,
            other_write_errors=other_errors,
            other_downtime_ms=max((longest_gap_ms(p, trigger) or 0 for p in others), default=None),
            other_max_latency_ms=round(max(latencies) * 1000) if latencies else None,
            probe_rate=self.probe_rate,
            failed_back=self.failed_back,
            healthy_after=self.healthy,
            ok=ok,
            problems=tuple(self.problems),
            steps=tuple(
                Step(round((at - self.start) * 1000), source, event, detail)
                for at, source, event, detail in timeline
            ),
            warnings=drill_warnings(self.lost, len(target.acks), other_errors, plan),
            inventory=self.inventory_file,
        )


def longest_gap_ms(probe: SlotWrites, since: float | None) -> int | None:
    """The longest time between two acknowledged writes from `since` on (the last one
    before it counts as the start): what the probe's clients went without; None when no
    write was acknowledged after `since`."""
    if since is None:
        return None
    before = [a.at for a in probe.acks if a.at < since]
    after = [a.at for a in probe.acks if a.at >= since]
    if not after:
        return None
    times = before[-1:] + after
    if len(times) < 2:
        return 0
    return round(max(b - a for a, b in itertools.pairwise(times)) * 1000)


def drill_warnings(
    lost: int | None, acked: int, other_errors: int, plan: ClusterDrillPlan
) -> tuple[str, ...]:
    """What clients lost or felt beyond the drilled shard, and what to configure: a drill can
    end healthy and `ok` while an application lost data."""
    out = []
    if lost:
        out.append(
            f"{lost} of {acked} acknowledged writes on {plan.shard} were lost: replication is "
            "asynchronous and the replica had not received them when the master went away. "
            "WAIT 1 <ms> after writes that must survive a failover; CLUSTER FAILOVER (without "
            "FORCE) loses none."
        )
    if other_errors:
        out.append(
            f"{other_errors} write attempts to other shards failed while {plan.shard} was down: "
            "with cluster-require-full-coverage yes (the default) every node refuses queries "
            "(CLUSTERDOWN) while any slot has no master. Set it to no where serving the other "
            "shards matters more than a complete key space."
        )
    return tuple(out)


def drill_result(report: ClusterDrillReport) -> HostResult[ClusterDrillReport]:
    """A drill as its JSON envelope's one row: failed when the drill failed (no promotion,
    not healthy after, writes not checked)."""
    error = "; ".join(report.problems) or None
    return HostResult(report.old_master, report.old_address, report.ok, error, report)
