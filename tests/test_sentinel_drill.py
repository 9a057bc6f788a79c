"""Failover drills on labs of their own: failover (with failback), crash, hang, and a crash made
to lose acknowledged writes. Each checks the figures against what the servers say afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from redisops.fleet.connection import build_client
from redisops.fleet.inventory import load_inventory
from redisops.lab.daemon import alive
from redisops.sentinel.drill import run_drill
from redisops.sentinel.precheck import plan_drill
from redisops.sentinel.probe import WriteProbe
from tests.cli_helpers import redisops
from tests.test_sentinel_status import wait_until_healthy

SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
NODES = ("node-1", "node-2", "node-3")


class Lab:
    """Clients to the processes of a lab of the test's own."""

    def __init__(self, state) -> None:
        self.state = state
        self.inventory = state.inventory_path
        self.password = (Path(state.dir) / "secret").read_text().strip()
        self.ports = {p.name: p.port for p in state.processes}
        self.names = {port: name for name, port in self.ports.items()}

    def client(self, name: str):
        return build_client(
            "127.0.0.1", self.ports[name], password=self.password, timeout=5, decode=True
        )

    def master(self) -> str:
        """The node every sentinel names (asserting that they agree)."""
        named = set()
        for sentinel in SENTINELS:
            client = self.client(sentinel)
            named.add(int(client.sentinel_get_master_addr_by_name("lab")[1]))
            client.close()
        assert len(named) == 1, f"sentinels disagree: {named}"
        return self.names[named.pop()]

    def assert_healthy_under(self, master: str) -> None:
        """`master` is the master, every other node its replica with the link up, and no
        probe key is left anywhere."""
        assert self.master() == master
        primary = self.client(master)
        assert primary.wait(2, 5000) == 2  # the replicas have applied the probe keys' removal
        primary.close()
        for name in NODES:
            client = self.client(name)
            info = client.info("replication")
            if name == master:
                assert (info["role"], info["connected_slaves"]) == ("master", 2)
            else:
                assert info["role"] == "slave"
                assert int(info["master_port"]) == self.ports[master]
                assert info["master_link_status"] == "up"
            assert list(client.scan_iter(match="redisops:drill:*", count=1000)) == []
            client.close()


def drill(lab: Lab, history: Path, *args: str):
    return redisops(
        "-i", lab.inventory, "-o", "json", "sentinel", "drill", "--master", "lab", "--yes",
        "--history-file", str(history), *args,
    )  # fmt: skip


def test_failover_drill_measures_warns_of_lost_writes_and_fails_back(make_lab, tmp_path):
    """Redis 7.0 leaves the old master writable ~10 s after SENTINEL FAILOVER: the drill ends
    healthy and failed back, but says on screen that writes were lost and why, and fails
    (exit 1) because --max-lost 0 was asked for. The history keeps it under this inventory."""
    lab = Lab(make_lab(replicas=2, sentinels=3))
    history = tmp_path / "state" / "drills.jsonl"
    run = redisops(
        "-i", lab.inventory, "sentinel", "drill", "--master", "lab", "--yes",
        "--history-file", str(history), "--mode", "failover", "--failback", "--max-lost", "0",
    )  # fmt: skip
    assert run.exit_code == 1, run.stderr
    listed = redisops(
        "-i", lab.inventory, "-o", "json", "sentinel", "drill", "--history",
        "--history-file", str(history),
    )  # fmt: skip
    assert listed.exit_code == 0
    document = listed.json()
    (row,) = document["results"]
    report = row["data"]
    assert (row["host"], row["address"]) == ("node-1", f"127.0.0.1:{lab.ports['node-1']}")
    assert (report["master"], report["mode"], report["old_master"]) == ("lab", "failover", "node-1")
    assert report["new_master"] in ("node-2", "node-3")
    assert report["new_address"] == f"127.0.0.1:{lab.ports[report['new_master']]}"
    assert report["detect_ms"] is None  # nothing to detect: the sentinels were asked
    assert 0 < report["promotion_ms"] < 15000
    assert report["write_downtime_ms"] is not None
    assert report["writes_acked"] > 0
    # Sentinel leaves the old master writable until it converts it (~10 s later); what it
    # acknowledged after the promotion is discarded when it resyncs: all of it is lost.
    lost, acked, stale = report["writes_lost"], report["writes_acked"], report["stale_writes"]
    assert lost >= stale > 0
    assert report["rejoin_ms"] > report["promotion_ms"]
    assert (report["healthy_after"], report["failed_back"]) == (True, True)
    assert (report["ok"], report["max_lost"]) == (False, 0)
    assert report["problems"] == [f"{lost} acknowledged writes lost, more than --max-lost 0"]
    (warning,) = report["warnings"]
    assert warning.startswith(
        f"{lost} of {acked} acknowledged writes were lost: {stale} of them were acknowledged by "
        "node-1 after the promotion: the old master stayed writable until the sentinels "
        "converted it (Redis 7.0 leaves it writable about 10 s after SENTINEL FAILOVER)"
    )
    assert "min-replicas-to-write 1" in warning
    assert report["inventory"] == str(Path(lab.inventory).resolve())
    events = [(step["source"], step["event"]) for step in report["steps"]]
    assert ("drill", "trigger") in events
    assert any(source in SENTINELS and event == "+switch-master" for source, event in events)
    assert [step["at_ms"] for step in report["steps"]] == sorted(
        step["at_ms"] for step in report["steps"]
    )
    lab.assert_healthy_under("node-1")
    for name in ("node-2", "node-3"):  # the failback's temporary priority 0 is undone
        client = lab.client(name)
        assert client.config_get("replica-priority") == {"replica-priority": "100"}
        client.close()

    # On screen: the warning right under the heading, and the problem at the end.
    screen = [line.rstrip() for line in run.stdout.splitlines()]
    assert screen[0].startswith("failover drill of lab: node-1") and screen[0].endswith("FAILED")
    assert " ".join(" ".join(screen[1:]).split()).startswith(f"warning: {warning}")
    assert screen[-1] == f"problem: {lost} acknowledged writes lost, more than --max-lost 0"

    # The history lists drills per inventory: another inventory (here the default
    # ./inventory.yaml) sees none of this lab's, and says where they are.
    elsewhere = redisops("sentinel", "drill", "--history", "--history-file", str(history))
    assert (elsewhere.exit_code, elsewhere.stdout) == (0, "")
    assert elsewhere.stderr.splitlines()[-1] == (
        "1 drill(s) of other inventories not shown (--all-inventories lists them)"
    )
    assert history.stat().st_mode & 0o777 == 0o600
    assert lab.password not in history.read_text() + run.stdout + run.stderr


def test_crash_drill_kills_restarts_and_loses_nothing(make_lab, tmp_path):
    state = make_lab(replicas=2, sentinels=3)
    lab = Lab(state)
    old_pid = next(p.pid for p in state.processes if p.name == "node-1")
    run = drill(lab, tmp_path / "drills.jsonl", "--mode", "crash", "--max-lost", "0")
    assert run.exit_code == 0, run.stderr  # none lost: not more than --max-lost 0
    report = run.json()["results"][0]["data"]
    assert (report["warnings"], report["max_lost"], report["problems"]) == ([], 0, [])
    # Down-after is 2 s; the last PING reply may be up to 1 s older than the kill.
    assert report["detect_ms"] >= 1000
    assert report["promotion_ms"] > report["detect_ms"]
    assert report["write_downtime_ms"] >= report["detect_ms"]
    assert report["write_errors"] > 0
    assert (report["writes_lost"], report["stale_writes"]) == (0, 0)
    assert report["rejoin_ms"] > report["promotion_ms"]
    assert report["healthy_after"] is True
    events = {step["event"] for step in report["steps"]}
    assert {"+sdown", "+odown", "+switch-master", "restarted", "rejoined", "settled"} <= events
    new_master = report["new_master"]
    lab.assert_healthy_under(new_master)
    restarted = lab.client("node-1")
    assert restarted.info("server")["process_id"] != old_pid
    restarted.close()


def test_hangs_short_and_long(make_lab, tmp_path):
    """A hang shorter than down-after only delays writes (and one timed out is applied late:
    a duplicate); a hang past down-after is a drill that fails over."""
    state = make_lab(replicas=2, sentinels=3)
    lab = Lab(state)
    old_pid = next(p.pid for p in state.processes if p.name == "node-1")
    inventory = load_inventory(state.inventory_path)
    sentinels = [host for host in inventory.hosts if host.is_sentinel]
    node_1 = next(host for host in inventory.hosts if host.name == "node-1")
    master = lab.client("node-1")
    with WriteProbe(
        sentinels, node_1, name="lab", prefix="hang:short:", rate=50, timeout=0.2
    ) as probe:
        time.sleep(0.5)
        master.execute_command("DEBUG", "SLEEP", "0.8")  # well below down-after (2 s)
        time.sleep(0.5)
    duplicates = [ack for ack in probe.acks if ack.duplicate]
    assert len(duplicates) == 1
    (late,) = duplicates
    assert {f.number for f in probe.failures} == {late.number}
    assert all("TimeoutError" in f.error for f in probe.failures)
    assert master.exists(probe.key(late.number)) == 1
    assert master.delete(*(probe.key(a.number) for a in probe.acks)) == len(probe.acks)
    master.close()
    assert lab.master() == "node-1"

    history = tmp_path / "drills.jsonl"
    run = redisops(
        "-i", lab.inventory, "sentinel", "drill", "--master", "lab", "--mode", "hang",
        "--yes", "--history-file", str(history),
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    lines = [line.rstrip() for line in run.stdout.splitlines()]
    heading = next(line for line in lines if line.startswith("hang drill of lab: node-1"))
    assert heading.endswith("ok")
    trigger = f"kill -STOP {old_pid} (node-1, 127.0.0.1:{lab.ports['node-1']}) for 7s"
    assert any(line.split()[:3] == ["T+0.00s", "drill", "trigger"] for line in lines)
    assert any(line.split()[3:] == trigger.split() for line in lines), run.stdout
    assert any(line.startswith("healthy after") and "yes" in line for line in lines)
    (record,) = [json.loads(line) for line in history.read_text().splitlines()]
    # The probe's writes to the sleeping master time out (1 s each) until the promotion.
    failures = [s for s in record["steps"] if s["event"] == "write failed"]
    assert failures and "TimeoutError" in failures[0]["detail"]
    assert record["detect_ms"] >= 1000
    assert record["write_downtime_ms"] >= record["detect_ms"]
    assert (record["writes_lost"], record["healthy_after"]) == (0, True)
    thawed = [s for s in record["steps"] if s["event"] == "thawed"]
    assert [s["detail"] for s in thawed] == [f"kill -CONT {old_pid} (node-1)"]
    assert thawed[0]["at_ms"] - record["trigger_ms"] >= 7000  # down-after 2 s + 5 s
    lab.assert_healthy_under(record["new_master"])
    slept = lab.client("node-1")
    assert slept.info("server")["process_id"] == old_pid  # hung, not restarted
    slept.close()


def test_lost_writes_are_counted_honestly(make_lab):
    """Replicas stalled while the probe writes, then the master killed: the acknowledged writes
    it never sent are gone, and the drill counts exactly those that are missing."""
    state = make_lab(replicas=2, sentinels=3)
    lab = Lab(state)
    inventory = load_inventory(state.inventory_path)
    sentinels = [host for host in inventory.hosts if host.is_sentinel]
    plan = plan_drill(
        sentinels, inventory.hosts, master="lab", mode="crash", max_lag=1 << 20,
        failback=False, probe_rate=50, timeout=5, parallel=8,
    )  # fmt: skip
    assert plan.ready, plan.refusal
    replicas = [p.pid for p in state.processes if p.name in ("node-2", "node-3")]
    present: set[int] = set()

    def on_step(step) -> None:
        if step.event == "probe started":
            for pid in replicas:
                os.kill(pid, signal.SIGSTOP)
            # 40 MB fills the stalled replicas' socket buffers (a few MB), so what the probe
            # writes next stays in the master's own memory: a SIGKILL loses it.
            master = lab.client("node-1")
            pipe = master.pipeline(transaction=False)
            for number in range(128):
                pipe.set(f"filler:{number}", "x" * 320_000)
            pipe.execute()
            master.close()
        elif step.event == "trigger":
            for pid in replicas:
                os.kill(pid, signal.SIGCONT)
        elif step.event == "checked":  # before the probe keys are removed: look at each
            client = lab.client(lab.master())
            keys = client.scan_iter(match=f"{plan.key_prefix}*", count=1000)
            present.update(int(key.rsplit(":", 1)[1]) for key in keys)
            client.close()

    try:
        report = run_drill(
            plan, inventory=inventory.hosts, probe_rate=50, probe_timeout=1,
            settle_timeout=60, timeout=5, parallel=8, on_step=on_step,
        )  # fmt: skip
    finally:
        for pid in replicas:
            os.kill(pid, signal.SIGCONT)
    missing = [n for n in range(1, report.writes_acked + 1) if n not in present]
    assert report.writes_lost == len(missing) > 0
    assert missing == list(range(missing[0], missing[-1] + 1))  # the writes of the stall
    assert report.stale_writes == 0
    assert report.healthy_after is True
    # Without a --max-lost the loss is a warning with its cause, not a failure.
    assert (report.ok, report.problems, report.max_lost) == (True, (), None)
    (warning,) = report.warnings
    assert warning.startswith(
        f"{len(missing)} of {report.writes_acked} acknowledged writes were lost: the replicas "
        "had not received them when the master went away. Configure min-replicas-to-write 1"
    )
    lab.assert_healthy_under(str(report.new_master))


def test_ctrl_c_during_a_crash_drill_restarts_the_master_and_says_so(make_lab, tmp_path):
    """SIGINT to a real `redisops sentinel drill --mode crash` right after it killed the
    master: it restarts the master, stops within seconds with exit 130 and one line saying
    what it did, records nothing, and the fleet becomes healthy again."""
    state = make_lab(replicas=2, sentinels=3)
    lab = Lab(state)
    old_pid = next(p.pid for p in state.processes if p.name == "node-1")
    history = tmp_path / "drills.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", lab.inventory, "sentinel", "drill",
         "--master", "lab", "--mode", "crash", "--yes", "--history-file", str(history)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while alive(old_pid):  # the drill's fault: kill -9 of the master
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the drill never killed the master"
            time.sleep(0.02)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert took < 5, f"took {took:.2f}s to stop"
    assert stdout == ""
    assert re.fullmatch(
        r"interrupted: SIGINT; crash drill of lab stopped \d+\.\ds after the fault; node-1 "
        r"restarted with its service_start; probe stopped after \d+ acknowledged writes; its "
        r"keys redisops:drill:\S+:\* expire within a day; the sentinels finish any failover "
        r"under way by themselves: check `redisops sentinel status`",
        stderr.splitlines()[-1],
    ), stderr
    assert not history.exists()
    restarted = lab.client("node-1")
    assert restarted.ping() is True
    assert restarted.info("server")["process_id"] != old_pid
    restarted.close()
    wait_until_healthy(state, seconds=60)


def test_ctrl_c_during_a_hang_drill_thaws_the_master_at_once(make_lab, tmp_path):
    """SIGINT while the master is stopped (SIGSTOP): the drill sends SIGCONT on its way out
    rather than leaving the master frozen for the rest of the hang (7 s here)."""
    state = make_lab(replicas=2, sentinels=3)
    lab = Lab(state)
    pid = next(p.pid for p in state.processes if p.name == "node-1")
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", lab.inventory, "sentinel", "drill",
         "--master", "lab", "--mode", "hang", "--yes", "--history-file",
         str(tmp_path / "drills.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while process_state(pid) != "T":  # stopped: the drill's fault
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the drill never stopped the master"
            time.sleep(0.02)
        sent = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
        state_after = process_state(pid)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        os.kill(pid, signal.SIGCONT)
    assert process.returncode == 130, stderr
    assert took < 5, f"took {took:.2f}s to stop"
    assert state_after != "T"  # thawed before the drill exited, not 7 s later
    last = stderr.splitlines()[-1]
    assert last.startswith("interrupted: SIGINT; hang drill of lab stopped "), stderr
    assert "; node-1 thawed (kill -CONT); probe stopped after " in last
    master = lab.client("node-1")
    assert master.ping() is True
    assert master.info("server")["process_id"] == pid  # thawed, never restarted
    master.close()
    wait_until_healthy(state, seconds=60)


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, T for stopped, …)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]
