"""A failover drill: cause a failover, watch it as an application and as the sentinels do, and
measure what clients felt.

In order: listen to every sentinel's events and start the write probe; after a baseline second
(no write acknowledged by then: abort, nothing triggered) inject the fault (SENTINEL FAILOVER,
SIGKILL of the master, or DEBUG SLEEP); wait for a new master; restart a killed master; wait
until the topology settles; stop the probe; check every acknowledged write on the new master;
remove the probe keys; fail back if asked. Never fans out: one master, one step at a time.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from redisops.errors import HostError, RefusedError
from redisops.fleet.connection import redis_client
from redisops.fleet.faults import (
    checked_pid,
    fault_wind_down,
    freeze_server,
    signal_server,
    start_server,
)
from redisops.fleet.host import Host
from redisops.fleet.writeprobe import NumberedWrites
from redisops.interrupt import Interrupted
from redisops.results import HostResult
from redisops.sentinel.events import EventListener, SentinelEvent
from redisops.sentinel.precheck import MARGIN_MS, DrillPlan, promotion_wait_ms
from redisops.sentinel.probe import WriteProbe
from redisops.sentinel.topology import (
    CLIENT_NAME,
    DOWN_FLAGS,
    SentinelStatus,
    address_of,
    find_host,
    sentinel_status,
)

BASELINE_SECONDS = 1.0
POLL_SECONDS = 0.25
KEY_BATCH = 1000
# Probe failures are shown as runs (same write, same error); a long flapping outage is cut here.
MAX_FAILURE_RUNS = 25
# Sentinels re-read a replica's INFO (and so its replica-priority) every 10 seconds.
PRIORITY_WAIT_SECONDS = 15.0


@dataclass(frozen=True)
class Step:
    """One line of the timeline; `at_ms` counts from the drill's start (the probe's start)."""

    at_ms: int
    source: str  # drill, probe, or the sentinel that published the event
    event: str
    detail: str


@dataclass(frozen=True)
class DrillReport:
    """What a drill did and measured (docs/sentinel.md explains each figure).

    Durations are ms from the moment of the fault (`trigger_ms` after the start), None when it
    did not happen (no +odown in failover mode). The acknowledged writes are 1 … writes_acked;
    `writes_lost` of them were missing on the new master afterwards (None: not checked);
    `stale_writes` were acknowledged by the old master after the promotion. `warnings` say
    why acknowledged writes were lost and what to configure; more than `max_lost` lost (when
    given) is a problem. `inventory` is the inventory file's absolute path (None in records
    written before it was kept): the history is listed per inventory.
    """

    drill_id: str
    started_at: str
    master: str
    mode: str
    old_master: str
    old_address: str
    new_master: str | None
    new_address: str | None
    trigger_ms: int | None
    detect_ms: int | None
    promotion_ms: int | None
    write_downtime_ms: int | None
    rejoin_ms: int | None
    settled_ms: int | None
    writes_acked: int
    writes_lost: int | None
    stale_writes: int
    duplicates: int
    write_errors: int
    probe_rate: float
    failed_back: bool | None
    healthy_after: bool
    ok: bool
    problems: tuple[str, ...]
    steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()
    max_lost: int | None = None
    inventory: str | None = None


StepCallback = Callable[[Step], None]


def run_drill(
    plan: DrillPlan,
    *,
    inventory: Sequence[Host],
    probe_rate: float,
    probe_timeout: float,
    settle_timeout: float,
    timeout: float,
    parallel: int,
    on_step: StepCallback | None = None,
    max_lost: int | None = None,
    inventory_file: str | None = None,
) -> DrillReport:
    """Carry out a drill that `plan_drill` found ready; `on_step` sees each drill step live.

    Raises RefusedError when the probe cannot write before the fault (nothing was triggered)
    and HostError when a sentinel cannot be listened to. Every later failure ends up in the
    report's `problems`, with `ok` false; so do more than `max_lost` lost acknowledged writes.
    A killed master is restarted whatever happens. On a stop signal (`Interrupted`) the drill
    winds down within about a second and re-raises with what it did (see `_wind_down`).
    """
    if not plan.ready or plan.old_master is None:
        raise RefusedError(f"the pre-checks did not pass: {plan.refusal}")
    drill = _Drill(plan, inventory, probe_rate, probe_timeout, timeout, parallel, on_step)
    drill.max_lost = max_lost
    drill.inventory_file = inventory_file
    return drill.run(settle_timeout)


class _Drill:
    """The state of one drill run; the public entry point is run_drill."""

    def __init__(
        self,
        plan: DrillPlan,
        inventory: Sequence[Host],
        probe_rate: float,
        probe_timeout: float,
        timeout: float,
        parallel: int,
        on_step: StepCallback | None,
    ) -> None:
        self.plan = plan
        self.inventory = inventory
        self.hosts = {host.name: host for host in inventory}
        self.sentinels = [self.hosts[name] for name in plan.sentinels]
        self.old = self.hosts[str(plan.old_master)]
        self.probe_rate = probe_rate
        self.probe_timeout = probe_timeout
        self.timeout = timeout
        self.parallel = parallel
        self.on_step = on_step
        self.start = time.monotonic()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.steps: list[tuple[float, str, str, str]] = []
        self.problems: list[str] = []
        self.trigger_at: float | None = None
        # When the kill or stop signal was sent, set before it: a stop signal that lands
        # between the signal and its step must still be told as "after the fault".
        self.fault_sent_at: float | None = None
        self.promoted_at: float | None = None
        self.rejoin_at: float | None = None
        self.settled_at: float | None = None
        self.lost: int | None = None
        self.failed_back: bool | None = None
        self.healthy = False
        self.max_lost: int | None = None
        self.inventory_file: str | None = None
        self.probe: WriteProbe | None = None
        self.killed = False
        self.frozen = False
        self.hang_until: float | None = None

    # --- the run --------------------------------------------------------------------------

    def run(self, settle_timeout: float) -> DrillReport:
        """The drill; on a stop signal, the clean-ups of every step run on the way out (a
        killed master restarted, priorities put back, probe and listeners stopped), then
        `Interrupted` says what was done."""
        try:
            return self._run(settle_timeout)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            raise Interrupted(signum, self._wind_down()) from None

    def _run(self, settle_timeout: float) -> DrillReport:
        plan = self.plan
        with EventListener(self.sentinels, plan.master, timeout=self.timeout) as events:
            probe = WriteProbe(
                self.sentinels,
                self.old,
                name=plan.master,
                prefix=plan.key_prefix,
                rate=self.probe_rate,
                timeout=self.probe_timeout,
            )
            self.probe = probe
            with probe:
                self.step("probe started", f"{self.probe_rate:g} writes/s to {plan.key_prefix}<n>")
                self._baseline(probe)
                new_address = self._fault_and_promotion(events, settle_timeout)
            self.step("probe stopped", f"{len(probe.acks)} writes acknowledged")
            current = self._current_master(new_address)
            if current is not None:
                self._verify_and_clean(probe, current)
            if plan.failback and self.healthy and new_address != plan.old_address:
                self._failback(events, settle_timeout)
            sentinel_events = events.events()
            listener_failures = list(events.failures)
        return self._report(probe, new_address, sentinel_events, listener_failures)

    def _baseline(self, probe: WriteProbe) -> None:
        time.sleep(BASELINE_SECONDS)
        if not probe.acks:
            last = probe.failures[-1].error if probe.failures else "no reply"
            raise RefusedError(
                f"the probe could not write to {self.plan.master} before the drill ({last}); "
                "nothing was triggered",
                hint="check that the sentinels name a master that accepts writes",
            )

    def _fault_and_promotion(self, events: EventListener, settle_timeout: float) -> str | None:
        """Inject the fault, wait for the new master and the settled topology; the new
        master's address, or None when no replica was promoted."""
        hang: threading.Thread | None = None
        interrupted = False
        new_address = None
        try:
            if self.plan.mode == "failover":
                self.trigger_at = self._ask_failover("trigger")
            elif self.plan.mode == "crash":
                self.trigger_at = self._kill()
            elif self.plan.hang_method == "stop":
                self.trigger_at = self._freeze()
            else:
                self.trigger_at, hang = self._hang()
            new_address, self.promoted_at = self._await_master(
                events,
                since=self.trigger_at,
                deadline=self.trigger_at + promotion_wait_ms(self.plan) / 1000,
                away_from=self.plan.old_address,
            )
            if new_address is None:
                self.problems.append(
                    f"no replica was promoted within {promotion_wait_ms(self.plan) / 1000:g}s"
                )
            else:
                self.step("new master", self._name(new_address), at=self.promoted_at)
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
                        time.sleep(max(0.0, self.hang_until - time.monotonic()))
                finally:
                    self._thaw()
            if hang is not None and not interrupted:  # DEBUG SLEEP cannot be cut short
                hang.join(timeout=(self.plan.hang_ms or 0) / 1000 + self.timeout + 1)
        if new_address is not None:
            self.healthy = self._settle(new_address, time.monotonic() + settle_timeout)
        return new_address

    # --- faults ---------------------------------------------------------------------------

    def _ask_failover(self, event: str) -> float:
        """SENTINEL FAILOVER through the first sentinel; when it was sent."""
        sentinel = self.sentinels[0]
        sent = time.monotonic()
        with redis_client(sentinel, timeout=self.timeout, client_name=CLIENT_NAME) as client:
            client.execute_command("SENTINEL", "FAILOVER", self.plan.master)
        self.step(event, f"SENTINEL FAILOVER {self.plan.master} via {sentinel.name}", at=sent)
        return sent

    def _checked_pid(self) -> int:
        """The master's pid, once it is still the one the pre-checks proved Redis."""
        return checked_pid(self.old, self.plan.pid, timeout=self.timeout)

    def _kill(self) -> float:
        """SIGKILL the master; when it was sent."""
        old = self.old
        pid = self._checked_pid()

        def sending() -> None:
            self.killed = True  # before the kill: a stop signal right after it must restart
            self.fault_sent_at = time.monotonic()

        signal_server(old, pid, "9", timeout=self.timeout, before=sending)
        sent = float(self.fault_sent_at or 0)
        self.step("trigger", f"kill -9 {pid} ({old.name}, {old.address})", at=sent)
        return sent

    def _restart(self) -> None:
        old = self.old
        try:
            start_server(old, timeout=self.timeout)
        except HostError as exc:
            self.problems.append(f"restarting {old.name} failed: {exc.message}")
            self.step("restart failed", exc.message)
            return
        self.step("restarted", f"{old.name} with its service_start")

    def _freeze(self) -> float:
        """SIGSTOP the master; when it was sent. A timer started on the host with it sends the
        SIGCONT at the end of the hang even if redisops dies or loses the host meanwhile; the
        drill sends it itself too (`_thaw`), at once when it is stopped."""
        old = self.old
        pid = self._checked_pid()
        seconds = (self.plan.hang_ms or 0) / 1000

        def sending() -> None:
            self.frozen = True  # before the signal: a stop signal right after it must thaw
            self.fault_sent_at = time.monotonic()
            self.hang_until = self.fault_sent_at + seconds

        freeze_server(old, pid, seconds, timeout=self.timeout, before=sending)
        sent = float(self.fault_sent_at or 0)
        self.step(
            "trigger", f"kill -STOP {pid} ({old.name}, {old.address}) for {seconds:g}s", at=sent
        )
        return sent

    def _thaw(self) -> None:
        old = self.old
        try:
            signal_server(old, int(self.plan.pid or 0), "CONT", timeout=self.timeout)
        except HostError as exc:
            self.problems.append(
                f"kill -CONT on {old.name} failed: {exc.message} (the timer on the host sends "
                "it at the end of the hang)"
            )
            self.step("thaw failed", exc.message)
            return
        self.frozen = False
        self.step("thawed", f"kill -CONT {self.plan.pid} ({old.name})")

    def _hang(self) -> tuple[float, threading.Thread]:
        """DEBUG SLEEP in a thread of its own (its connection is blocked for the whole sleep);
        when it was sent, and the thread."""
        seconds = (self.plan.hang_ms or 0) / 1000
        outcome: list[str] = []

        def sleep() -> None:
            try:
                with redis_client(
                    self.old, timeout=seconds + self.timeout, client_name=CLIENT_NAME
                ) as client:
                    client.execute_command("DEBUG", "SLEEP", f"{seconds:g}")
            except HostError as exc:
                outcome.append(exc.message)
            self.step("woke up", outcome[0] if outcome else f"{self.old.name} answers again")

        thread = threading.Thread(target=sleep, name="redisops-drill-hang", daemon=True)
        sent = time.monotonic()
        self.hang_until = sent + seconds
        thread.start()
        self.step("trigger", f"DEBUG SLEEP {seconds:g} on {self.old.name}", at=sent)
        return sent, thread

    # --- watching -------------------------------------------------------------------------

    def _await_master(
        self,
        events: EventListener,
        *,
        since: float,
        deadline: float,
        away_from: str | None = None,
        to: str | None = None,
    ) -> tuple[str | None, float | None]:
        """The master the sentinels switch to (away from one address, or to one address), and
        when: their +switch-master event, or, should events be missed, what they answer."""

        def wanted(address: str) -> bool:
            return address != away_from if to is None else address == to

        def switched(event: SentinelEvent) -> bool:
            return (
                event.channel == "+switch-master"
                and event.at >= since
                and wanted(_switch_target(event.message))
            )

        while True:
            event = events.wait_for(switched, deadline=min(deadline, time.monotonic() + 1.0))
            if event is not None:
                return _switch_target(event.message), event.at
            named = [a for a in self._named_addresses() if wanted(a)]
            if named:
                return named[0], time.monotonic()
            if time.monotonic() >= deadline:
                return None, None

    def _status(self) -> SentinelStatus:
        return sentinel_status(
            self.sentinels,
            self.inventory,
            timeout=self.timeout,
            parallel=self.parallel,
            max_lag=self.plan.max_lag,
            only=self.plan.master,
        )

    def _named_addresses(self) -> list[str]:
        """The master address each answering sentinel names now."""
        addresses = []
        for sentinel in self.sentinels:
            try:
                with redis_client(
                    sentinel, timeout=self.timeout, decode=True, client_name=CLIENT_NAME
                ) as client:
                    reply = client.sentinel_get_master_addr_by_name(self.plan.master)
            except HostError:
                continue
            if reply:
                addresses.append(address_of(str(reply[0]), int(reply[1])))
        return addresses

    def _settle(self, address: str, deadline: float) -> bool:
        """Wait until the sentinels agree on `address`, find nothing wrong, and every node of
        the plan replicates from it with its link up; True when that happened by `deadline`."""
        expected = {name for name in self.plan.nodes if name != self._name(address)}
        last: tuple[str, ...] = ()
        while True:
            status = self._status()
            master = status.master(self.plan.master)
            if master is not None and master.address == address:
                attached = {
                    r.host
                    for r in master.replicas
                    if r.link == "up" and not DOWN_FLAGS & set(r.flags)
                }
                if self.rejoin_at is None and self.plan.old_master in attached:
                    self.rejoin_at = time.monotonic()
                    self.step(
                        "rejoined", f"{self.plan.old_master} replicates from {self._name(address)}"
                    )
                if status.healthy and expected <= attached:
                    self.settled_at = self.settled_at or time.monotonic()
                    self.step(
                        "settled", f"{len(attached)} replicas attached to {self._name(address)}"
                    )
                    return True
                last = tuple(p.message for p in master.problems) + tuple(
                    f"{name} is not attached yet" for name in sorted(expected - attached)
                )
            else:
                last = ("the sentinels do not all name the new master yet",)
            if time.monotonic() >= deadline:
                self.problems.append("the topology did not settle: " + "; ".join(last))
                self.step("not settled", "; ".join(last))
                return False
            time.sleep(POLL_SECONDS)

    # --- after ----------------------------------------------------------------------------

    def _current_master(self, new_address: str | None) -> Host | None:
        """The inventory host the sentinels name as master now (for checks and clean-up)."""
        named = [new_address] if new_address else self._named_addresses()
        for address in named:
            host = self._host_at(address)
            if host is not None:
                return host
        self.problems.append("no master in the inventory to check the writes on")
        return None

    def _verify_and_clean(self, probe: WriteProbe, master: Host) -> None:
        """Count the acknowledged writes (1 … acks) missing on `master`, then remove every key
        the probe may have written."""
        acked = len(probe.acks)
        try:
            with redis_client(master, timeout=self.timeout, client_name=CLIENT_NAME) as client:
                missing = 0
                for first in range(1, acked + 1, KEY_BATCH):
                    pipe = client.pipeline(transaction=False)
                    for number in range(first, min(first + KEY_BATCH, acked + 1)):
                        pipe.exists(probe.key(number))
                    missing += sum(1 for found in pipe.execute() if not found)
                self.lost = missing
                self.step(
                    "checked", f"{acked} acknowledged writes, {missing} missing on {master.name}"
                )
                removed = 0
                for first in range(1, probe.next_number + 1, KEY_BATCH):
                    last = min(first + KEY_BATCH, probe.next_number + 1)
                    removed += client.unlink(*(probe.key(n) for n in range(first, last)))
            self.step("cleaned up", f"{removed} probe keys removed")
        except HostError as exc:
            self.problems.append(
                f"checking the writes failed: {exc.message} (probe keys expire within a day)"
            )

    def _failback(self, events: EventListener, settle_timeout: float) -> None:
        """Make the original master the master again: the other replicas get replica-priority
        0 for the time of a SENTINEL FAILOVER (restored whatever happens)."""
        plan = self.plan
        current = self._current_master(None)
        others = [
            self.hosts[name]
            for name in plan.nodes
            if name != plan.old_master and (current is None or name != current.name)
        ]
        saved: dict[str, str] = {}
        self.failed_back = False
        try:
            for host in others:
                with redis_client(
                    host, timeout=self.timeout, decode=True, client_name=CLIENT_NAME
                ) as c:
                    saved[host.name] = str(c.config_get("replica-priority")["replica-priority"])
                    c.config_set("replica-priority", 0)
            if others:
                self.step("failback", "replica-priority 0 on " + ", ".join(saved))
                self._await_priorities({h.name for h in others})
            since = self._ask_failover("failback")
            address, _ = self._await_master(
                events,
                since=since,
                deadline=since + (plan.failover_timeout_ms + MARGIN_MS) / 1000,
                to=plan.old_address,
            )
        except HostError as exc:
            self.problems.append(f"failback failed: {exc.message}")
            address = None
        finally:
            for name, priority in saved.items():
                try:
                    with redis_client(
                        self.hosts[name], timeout=self.timeout, client_name=CLIENT_NAME
                    ) as c:
                        c.config_set("replica-priority", priority)
                except HostError as exc:
                    self.problems.append(
                        f"restoring replica-priority on {name} failed: {exc.message}"
                    )
            if saved:
                self.step("failback", "replica-priority restored on " + ", ".join(saved))
        if address is None:
            self.problems.append(f"failback to {plan.old_master} did not happen")
            self.healthy = False
            return
        self.step("failed back", f"{plan.old_master} is master again")
        self.healthy = self._settle(address, time.monotonic() + settle_timeout)
        self.failed_back = self.healthy

    def _await_priorities(self, names: set[str]) -> None:
        deadline = time.monotonic() + PRIORITY_WAIT_SECONDS
        while True:
            master = self._status().master(self.plan.master)
            zero = {r.host for r in master.replicas if r.priority == 0} if master else set()
            if names <= zero:
                return
            if time.monotonic() >= deadline:
                raise HostError(
                    f"the sentinels did not see replica-priority 0 in {PRIORITY_WAIT_SECONDS:g}s"
                )
            time.sleep(POLL_SECONDS)

    # --- the record -----------------------------------------------------------------------

    def _wind_down(self) -> str:
        """What a stopped drill did, for the `interrupted: …` line (its clean-ups have run)."""
        plan = self.plan
        fault_at = self.trigger_at if self.trigger_at is not None else self.fault_sent_at
        events = {event: detail for _, source, event, detail in self.steps if source == "drill"}
        drill = f"{plan.mode} drill of {plan.master}"
        parts = fault_wind_down(drill, fault_at, time.monotonic(), events, self.old.name)
        thaw_said = "thawed" in events or "thaw failed" in events
        sleeping = (
            self.plan.hang_method == "debug-sleep" and (self.hang_until or 0) > time.monotonic()
        )
        if sleeping and not thaw_said:
            parts.append(
                f"{self.old.name} is in DEBUG SLEEP (it cannot be woken early) and answers "
                f"again by itself in {self.hang_until - time.monotonic():.1f}s"
            )
        if self.failed_back is False and "failback" in events:
            parts.append(events["failback"])
        if self.probe is not None:
            parts.append(
                f"probe stopped after {len(self.probe.acks)} acknowledged writes; its keys "
                f"{plan.key_prefix}* expire within a day"
            )
        if fault_at is not None:
            parts.append(
                "the sentinels finish any failover under way by themselves: check "
                "`redisops sentinel status`"
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
        origin = self.start if since is None else since
        return round((at - origin) * 1000)

    def _host_at(self, address: str) -> Host | None:
        ip, _, port = address.rpartition(":")
        return find_host(self.inventory, ip.strip("[]"), int(port))

    def _name(self, address: str) -> str:
        host = self._host_at(address)
        return host.name if host else address

    def _report(
        self,
        probe: WriteProbe,
        new_address: str | None,
        events: list[SentinelEvent],
        listener_failures: list[SentinelEvent],
    ) -> DrillReport:
        trigger = self.trigger_at
        odown = next(
            (e.at for e in events if e.channel == "+odown" and trigger and e.at >= trigger), None
        )
        timeline = list(self.steps)
        timeline += [(e.at, e.sentinel, e.channel, e.message) for e in events]
        timeline += [(e.at, e.sentinel, e.channel, e.message) for e in listener_failures]
        timeline += probe_steps(probe)
        timeline.sort(key=lambda entry: entry[0])
        self.problems += [f"{e.sentinel}: {e.channel}: {e.message}" for e in listener_failures]
        verified = self.lost is not None
        old_address = str(self.plan.old_address)
        stale = sum(
            1
            for ack in probe.acks
            if self.promoted_at and ack.at >= self.promoted_at and ack.address == old_address
        )
        if self.lost and self.max_lost is not None and self.lost > self.max_lost:
            self.problems.append(
                f"{self.lost} acknowledged writes lost, more than --max-lost {self.max_lost}"
            )
        ok = new_address is not None and self.healthy and verified and not self.problems
        return DrillReport(
            drill_id=self.plan.drill_id,
            started_at=self.started_at,
            master=self.plan.master,
            mode=self.plan.mode,
            old_master=self.old.name,
            old_address=old_address,
            new_master=self._name(new_address) if new_address else None,
            new_address=new_address,
            trigger_ms=self._ms(trigger),
            detect_ms=self._ms(odown, trigger),
            promotion_ms=self._ms(self.promoted_at, trigger),
            write_downtime_ms=_downtime_ms(probe, trigger, new_address),
            rejoin_ms=self._ms(self.rejoin_at, trigger),
            settled_ms=self._ms(self.settled_at, trigger),
            writes_acked=len(probe.acks),
            writes_lost=self.lost,
            stale_writes=stale,
            duplicates=sum(1 for ack in probe.acks if ack.duplicate),
            write_errors=len(probe.failures),
            probe_rate=self.probe_rate,
            failed_back=self.failed_back,
            healthy_after=self.healthy,
            ok=ok,
            problems=tuple(self.problems),
            steps=tuple(
                Step(round((at - self.start) * 1000), source, event, detail)
                for at, source, event, detail in timeline
            ),
            warnings=loss_warnings(self.lost, len(probe.acks), stale, self.old.name),
            max_lost=self.max_lost,
            inventory=self.inventory_file,
        )


def loss_warnings(lost: int | None, acked: int, stale: int, old_master: str) -> tuple[str, ...]:
    """Why acknowledged writes were lost and what to configure: a drill can end healthy and
    `ok` while an application lost data, and that must not pass unnoticed."""
    if not lost:
        return ()
    if stale:
        cause = (
            f"{stale} of them were acknowledged by {old_master} after the promotion: the old "
            "master stayed writable until the sentinels converted it (Redis 7.0 leaves it "
            "writable about 10 s after SENTINEL FAILOVER) and the clients kept writing to it"
        )
    else:
        cause = "the replicas had not received them when the master went away"
    return (
        f"{lost} of {acked} acknowledged writes were lost: {cause}. Configure "
        "min-replicas-to-write 1 and min-replicas-max-lag on every node (a master whose "
        "replicas are gone or behind refuses writes), and clients that follow +switch-master "
        "or ask Sentinel again on errors (READONLY, NOREPLICAS); WAIT for writes that must "
        "survive a failover.",
    )


def _switch_target(message: str) -> str:
    """The new address in a +switch-master message: `<name> <old ip> <old port> <ip> <port>`."""
    words = message.split()
    return address_of(words[3], int(words[4])) if len(words) >= 5 else ""


def _downtime_ms(probe: WriteProbe, trigger: float | None, new_address: str | None) -> int | None:
    """From the first write that failed after the fault to the first write the new master
    acknowledged after that; 0 when no write failed; None without a new master."""
    if trigger is None or new_address is None:
        return None
    failed = next((f.at for f in probe.failures if f.at >= trigger), None)
    since = trigger if failed is None else failed
    acked = next((a.at for a in probe.acks if a.at >= since and a.address == new_address), None)
    if acked is None:
        return None
    return 0 if failed is None else round((acked - failed) * 1000)


def probe_steps(probe: NumberedWrites, source: str = "probe") -> list[tuple[float, str, str, str]]:
    """Failed writes as runs (same write, same error), and the ack that ended each outage,
    as timeline entries (at, `source`, event, detail)."""
    runs: list[list] = []
    for failure in probe.failures:
        run = runs[-1] if runs else None
        if run and run[0].number == failure.number and run[0].error == failure.error:
            run.append(failure)
        else:
            runs.append([failure])
    steps = []
    for run in runs[:MAX_FAILURE_RUNS]:
        first, last = run[0], run[-1]
        where = f" to {first.address}" if first.address else ""
        repeat = f" (x{len(run)} until +{last.at - first.at:.1f}s)" if len(run) > 1 else ""
        steps.append(
            (first.at, source, "write failed", f"#{first.number}{where}: {first.error}{repeat}")
        )
    if len(runs) > MAX_FAILURE_RUNS:
        at = runs[MAX_FAILURE_RUNS][0].at
        steps.append(
            (
                at,
                source,
                "write failed",
                f"{len(runs) - MAX_FAILURE_RUNS} more runs of failed writes",
            )
        )
    retried = {failure.number for failure in probe.failures}
    for ack in probe.acks:
        if ack.number in retried:
            note = ", already applied (duplicate)" if ack.duplicate else ""
            steps.append(
                (ack.at, source, "write acknowledged", f"#{ack.number} by {ack.address}{note}")
            )
    return steps


def drill_result(report: DrillReport) -> HostResult[DrillReport]:
    """A drill as its JSON envelope's one row: failed when the drill failed (no promotion,
    not healthy after, more writes lost than --max-lost)."""
    error = "; ".join(report.problems) or None
    return HostResult(report.old_master, report.old_address, report.ok, error, report)
