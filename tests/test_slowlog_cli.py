"""`slowlog triage | tail | reset` end to end, against real redis-server processes.

Most tests use `slowlab`, a lab of this module's own (a master and a replica, no Sentinels,
`slowlog-log-slower-than 0`), so they may reset its slowlogs and change its settings; each
test sets up the workload it asserts on. Tests on the shared `lab` only read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redisops.lab import LabState, lab_down, lab_up
from tests.cli_helpers import Run, lab_inventory_with, redisops
from tests.plugins.lab import start_lab
from tests.servers import free_port, frozen_redis_server

DESIGN_KEYS = {
    "fingerprint", "command", "key_pattern", "count", "total_us", "avg_us", "p95_us", "max_us",
    "hosts", "clients",
}  # fmt: skip
# Real entries whose number depends on timing or history, left out of exact comparisons:
# a replica acknowledges every second (REPLCONF ACK on the master), WAIT is logged only when it
# did not block, and a master sends SELECT down a replication link only when the db changes.
UNPREDICTABLE = {"REPLCONF", "WAIT", "SELECT"}
OFF_TERMINAL = {"REDISOPS_INTERACTIVE": "0"}
ON_TERMINAL = {"REDISOPS_INTERACTIVE": "1"}


@pytest.fixture(scope="module")
def slowlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    state = start_lab(tmp_path_factory.mktemp("slowlab"), replicas=1, sentinels=0)
    try:
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


def password_of(lab: LabState) -> str:
    return (Path(lab.dir) / "secret").read_text().strip()


def client(lab: LabState, node: int = 0, name: str = "workload") -> redis.Redis:
    return redis.Redis(
        port=lab.processes[node].port, password=password_of(lab), client_name=name, protocol=2
    )


def fresh_slowlogs(lab: LabState) -> dict[int, redis.Redis]:
    """A workload client per node, each node logging everything, from an empty slowlog."""
    clients = {}
    for node, process in enumerate(lab.processes):
        if process.role == "sentinel":
            continue
        clients[node] = client(lab, node)
        clients[node].config_set("slowlog-log-slower-than", 0)
        clients[node].config_set("slowlog-max-len", 1024)
        clients[node].slowlog_reset()  # logged itself: one SLOWLOG RESET per node
    return clients


def run_workload(lab: LabState) -> redis.Redis:
    """The known workload (see MASTER and REPLICA); returns the master's workload client."""
    clients = fresh_slowlogs(lab)
    master, replica = clients[0], clients[1]
    secret = password_of(lab)
    for i in range(20):
        master.set(f"user:{i}:profile", "v")
    for i in range(10):
        master.get(f"user:{i}:profile")
    for i in range(5):
        master.hset(f"cart:{i}", "sku", 1)
    master.keys("user:*")
    master.config_set("requirepass", secret)  # the same password: auth keeps working
    master.execute_command("AUTH", secret)
    master.rpush("feed:1", *range(5))
    for _ in range(3):
        master.lrange("feed:1", 0, -1)
    replica.get("user:1:profile")
    replica.get("user:2:profile")
    # The replica logs the writes it applies: wait until it has applied them all.
    assert master.execute_command("WAIT", 1, 5000) == 1
    return master


MASTER = {
    "SET user:{id}:profile": 20,
    "GET user:{id}:profile": 10,
    "HSET cart:{id}": 5,
    "LRANGE feed:{id}": 3,
    "SLOWLOG RESET": 1,
    "KEYS user:*": 1,
    "CONFIG SET": 1,
    "AUTH": 1,
    "RPUSH feed:{id}": 1,
}
# A replica logs the writes it applies from its master too (client "(replication)").
REPLICA = {
    "SET user:{id}:profile": 20,
    "GET user:{id}:profile": 2,
    "HSET cart:{id}": 5,
    "SLOWLOG RESET": 1,
    "RPUSH feed:{id}": 1,
}
FLEET = {key: MASTER.get(key, 0) + REPLICA.get(key, 0) for key in MASTER | REPLICA}


def counts(fingerprints: list[dict]) -> dict[str, int]:
    return {f["fingerprint"]: f["count"] for f in fingerprints if f["command"] not in UNPREDICTABLE}


def triage(lab: LabState, *args: str, env: dict | None = None, input: str | None = None) -> Run:
    return redisops("-i", lab.inventory_path, "slowlog", "triage", *args, env=env, input=input)


def triage_json(lab: LabState, *args: str, env: dict | None = None) -> Run:
    return redisops("-i", lab.inventory_path, "-o", "json", "slowlog", "triage", *args, env=env)


def test_triage_json_has_exact_fingerprints_and_counts(slowlab):
    run_workload(slowlab)
    run = triage_json(slowlab, "--top", "0")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["command"] == "slowlog triage"
    assert document["ok"] is True
    summary = document["summary"]
    fleet = summary["fingerprints"]
    assert counts(fleet) == FLEET
    assert [f["total_us"] for f in fleet] == sorted((f["total_us"] for f in fleet), reverse=True)
    assert all(set(f) >= DESIGN_KEYS for f in fleet)
    by_fingerprint = {f["fingerprint"]: f for f in fleet}
    get = by_fingerprint["GET user:{id}:profile"]
    assert get["hosts"] == ["node-1", "node-2"]
    assert [(c["address"], c["name"]) for c in get["clients"]] == [("127.0.0.1", "workload")]
    assert get["command"] == "GET"
    assert get["key_pattern"] == "user:{id}:profile"
    assert get["avg_us"] == round(get["total_us"] / 12)
    assert get["p50_us"] <= get["p95_us"] <= get["max_us"]
    assert sum(get["histogram"]) == 12
    assert any(h.startswith("KEYS user:*: KEYS walks every key") for h in summary["hints"])
    assert summary["sentinels_skipped"] == []
    assert summary["entries"] == sum(f["count"] for f in fleet)
    assert summary["total_us"] == sum(f["total_us"] for f in fleet)
    assert summary["distinct_fingerprints"] == len(fleet)

    master, replica = document["results"]
    assert counts(master["data"]["fingerprints"]) == MASTER
    assert counts(replica["data"]["fingerprints"]) == REPLICA
    writes = by_fingerprint["SET user:{id}:profile"]["clients"]
    # Both clients ran 20 SETs; which one spent more time (the order) depends on the machine.
    assert sorted((c["name"], c["count"]) for c in writes) == [
        ("(replication)", 20),
        ("workload", 20),
    ]
    assert [c["total_us"] for c in writes] == sorted((c["total_us"] for c in writes), reverse=True)
    assert master["data"]["role"] == "master"
    assert replica["data"]["role"] == "replica"
    assert master["data"]["settings"] == {
        "slower_than_us": 0,
        "max_len": 1024,
        "latency_threshold_ms": 0,
    }
    assert master["data"]["entries"] == sum(f["count"] for f in master["data"]["fingerprints"])


def test_secrets_never_appear_in_any_output(slowlab):
    run_workload(slowlab)
    secret = password_of(slowlab)
    runs = [
        triage(slowlab),
        triage(slowlab, "--show-args"),
        triage_json(slowlab, "--show-args", "--top", "0"),
        redisops("-i", slowlab.inventory_path, "-v", "slowlog", "tail", "-n", "100", "--show-args"),
        redisops("-i", slowlab.inventory_path, "-o", "json", "slowlog", "tail", "--show-args"),
    ]
    for run in runs:
        assert run.exit_code == 0, run.stderr
        assert secret not in run.stdout
        assert secret not in run.stderr
    samples = {f["fingerprint"]: f["sample"] for f in runs[2].json()["summary"]["fingerprints"]}
    assert samples["AUTH"] == ["AUTH", "(redacted)"]
    assert samples["CONFIG SET"] == ["CONFIG", "SET", "requirepass", "(redacted)"]
    assert samples["HSET cart:{id}"][:3] == ["HSET", samples["HSET cart:{id}"][1], "sku"]
    assert "AUTH (redacted)" in runs[1].stdout  # the table's sample line


def test_values_are_not_shown_without_show_args(slowlab):
    clients = fresh_slowlogs(slowlab)
    clients[0].set("plain:1", "a-value-nobody-should-see")
    run = triage_json(slowlab)
    assert "a-value-nobody-should-see" not in run.stdout
    assert all(f["sample"] is None for f in run.json()["summary"]["fingerprints"])
    table = triage(slowlab)
    assert "a-value-nobody-should-see" not in table.stdout
    assert "SET plain:{id}" in table.stdout


def test_state_second_run_reports_only_new_entries_and_notices_a_reset(slowlab, tmp_path):
    state = tmp_path / "slowlog.state"
    master = run_workload(slowlab)  # new connections would log their AUTH: reuse this one
    first = triage_json(slowlab, "--state", str(state), "--top", "0")
    assert counts(first.json()["summary"]["fingerprints"]) == FLEET
    assert state.exists()
    assert password_of(slowlab) not in state.read_text()

    for i in range(7):
        master.get(f"order:{i}")
    second = triage_json(slowlab, "--state", str(state), "--top", "0")
    assert second.exit_code == 0, second.stderr
    assert counts(second.json()["summary"]["fingerprints"]) == {"GET order:{id}": 7}
    results = second.json()["results"]
    assert [r["data"]["since_last"] for r in results] == ["continued", "continued"]
    assert second.stderr.count("warning") == 0

    # Someone else resets the master's log between runs: what was logged before it is lost.
    master.get("lost:1")
    master.get("lost:2")
    master.slowlog_reset()
    master.get("after:1")
    third = triage_json(slowlab, "--state", str(state), "--top", "0")
    assert counts(third.json()["summary"]["fingerprints"]) == {
        "SLOWLOG RESET": 1,
        "GET after:{id}": 1,
    }
    node1 = third.json()["results"][0]["data"]
    assert node1["since_last"] == "log reset"
    assert node1["missed"] >= 2
    assert "warning: node-1: slowlog was reset since the last run" in third.stderr
    assert any(h.startswith("slowlog reset by someone else on node-1") for h in
               third.json()["summary"]["hints"])  # fmt: skip


def test_state_notices_a_restart(make_lab, tmp_path):
    lab = make_lab(replicas=0, sentinels=0)
    state = tmp_path / "slowlog.state"
    fresh_slowlogs(lab)
    first = triage_json(lab, "--state", str(state))
    assert first.json()["results"][0]["data"]["since_last"] == "first"
    port = lab.processes[0].port
    lab_down(Path(lab.dir))
    lab_up(Path(lab.dir), replicas=0, sentinels=0, base_port=port)
    again = fresh_slowlogs(lab)[0]
    again.get("reborn:1")
    run = triage_json(lab, "--state", str(state))
    data = run.json()["results"][0]["data"]
    assert data["since_last"] == "restarted"
    assert data["notes"] == ["restarted since the last run (new run_id): all its entries are new"]
    assert counts(data["fingerprints"]) == {"SLOWLOG RESET": 1, "GET reborn:{id}": 1}


def slowlog_ids(lab: LabState, node: int = 0) -> list[int]:
    return [e["id"] for e in client(lab, node, name="checker").slowlog_get(-1)]


def test_reset_needs_yes_off_a_terminal(slowlab):
    fresh_slowlogs(slowlab)
    client(slowlab).get("keep:1")
    run = triage(slowlab, "--reset", env=OFF_TERMINAL)
    assert run.exit_code == 3
    assert run.stdout == ""  # refused before reading anything
    assert "Refused: not on a terminal and --yes not given" in run.stderr
    assert "plan: read the slowlog of 2 hosts (node-1, node-2)" in run.stderr
    assert "GET" in str(client(slowlab, name="checker").slowlog_get(-1))  # nothing was reset


def test_reset_with_yes_reads_then_empties_each_log(slowlab, tmp_path):
    state = tmp_path / "slowlog.state"
    master = fresh_slowlogs(slowlab)[0]
    master.get("gone:1")
    run = triage_json(slowlab, "--reset", "--yes", "--state", str(state), env=OFF_TERMINAL)
    assert run.exit_code == 0, run.stderr
    assert counts(run.json()["summary"]["fingerprints"])["GET gone:{id}"] == 1
    assert [r["data"]["reset"] for r in run.json()["results"]] == [True, True]
    # The next run finds only what came after (the log was emptied), and continues without a
    # false alarm about entries lost to our own reset.
    master.get("next:1")
    after = triage_json(slowlab, "--state", str(state))
    assert [r["data"]["since_last"] for r in after.json()["results"]] == ["continued"] * 2
    assert counts(after.json()["summary"]["fingerprints"]) == {"GET next:{id}": 1}


def test_reset_prompt_on_a_terminal(slowlab):
    fresh_slowlogs(slowlab)
    declined = triage(slowlab, "--reset", env=ON_TERMINAL, input="n\n")
    assert declined.exit_code == 3
    assert "declined; nothing was changed" in declined.stderr
    client(slowlab).get("asked:1")
    accepted = triage(slowlab, "--reset", env=ON_TERMINAL, input="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "GET asked:{id}" in accepted.stdout
    assert "GET" not in str(client(slowlab, name="checker").slowlog_get(-1))


def test_dry_run_resets_nothing_and_saves_no_state(slowlab, tmp_path):
    state = tmp_path / "slowlog.state"
    fresh_slowlogs(slowlab)
    client(slowlab).get("still:1")
    run = triage(slowlab, "--reset", "--dry-run", "--state", str(state), env=OFF_TERMINAL)
    assert run.exit_code == 0, run.stderr
    assert "dry run" in run.stderr
    assert "GET still:{id}" in run.stdout
    assert not state.exists()
    assert "GET" in str(client(slowlab, name="checker").slowlog_get(-1))


def test_reset_command(slowlab):
    fresh_slowlogs(slowlab)
    base = ("-i", slowlab.inventory_path)
    planned = redisops(*base, "-o", "json", "slowlog", "reset", "--dry-run", env=OFF_TERMINAL)
    assert planned.exit_code == 0
    assert [r["data"]["reset"] for r in planned.json()["results"]] == [False, False]
    assert all(r["data"]["entries"] >= 1 for r in planned.json()["results"])
    refused = redisops(*base, "slowlog", "reset", env=OFF_TERMINAL)
    assert refused.exit_code == 3
    assert "Reset the slowlog of 2 hosts" in refused.stderr
    assert slowlog_ids(slowlab)  # still there
    done = redisops(*base, "-o", "json", "slowlog", "reset", "--yes", env=OFF_TERMINAL)
    assert done.exit_code == 0, done.stderr
    assert [r["data"]["reset"] for r in done.json()["results"]] == [True, True]
    assert all(r["data"]["entries"] >= 1 for r in done.json()["results"])
    prompted = redisops(*base, "slowlog", "reset", env=ON_TERMINAL, input="y\n")
    assert prompted.exit_code == 0
    assert "Reset the slowlog of 2 hosts" in prompted.stderr


@pytest.fixture
def frozen_port(tmp_path: Path) -> Iterator[int]:
    """A redis-server that accepts connections and never answers (SIGSTOP)."""
    with frozen_redis_server(tmp_path) as port:
        yield port


def test_a_dead_host_is_an_error_row_while_the_others_report(lab, tmp_path):
    port = free_port()
    inventory = lab_inventory_with(lab, tmp_path, {"dead": {"host": "127.0.0.1", "port": port}})
    run = redisops("-i", inventory, "-o", "json", "slowlog", "triage")
    assert run.exit_code == 1
    document = run.json()
    assert document["ok"] is False
    rows = {r["host"]: r for r in document["results"]}
    assert list(rows) == ["node-1", "node-2", "node-3", "dead"]  # Sentinels skipped
    assert rows["dead"]["error"] == f"cannot connect to 127.0.0.1:{port}: Connection refused"
    assert all(rows[name]["ok"] for name in ("node-1", "node-2", "node-3"))
    assert document["summary"]["sentinels_skipped"] == ["sentinel-1", "sentinel-2", "sentinel-3"]
    assert document["summary"]["failed"] == 1
    table = redisops("-i", inventory, "slowlog", "triage")
    assert table.exit_code == 1
    assert "error: cannot connect to" in table.stdout
    assert "3 Sentinel hosts skipped (no slowlog)" in table.stderr
    tail = redisops("-i", inventory, "slowlog", "tail", "-n", "1")
    assert tail.exit_code == 1
    assert tail.stderr.count(f"error: dead: cannot connect to 127.0.0.1:{port}") == 1


def test_a_frozen_host_costs_one_timeout(lab, tmp_path, frozen_port):
    inventory = lab_inventory_with(
        lab, tmp_path, {"frozen": {"host": "127.0.0.1", "port": frozen_port}}
    )
    started = time.monotonic()
    run = redisops("-i", inventory, "--timeout", "1", "-o", "json", "slowlog", "triage")
    elapsed = time.monotonic() - started
    assert run.exit_code == 1
    rows = {r["host"]: r for r in run.json()["results"]}
    assert rows["frozen"]["error"] == f"127.0.0.1:{frozen_port} did not answer within 1s"
    assert sum(r["ok"] for r in rows.values()) == 3
    assert elapsed < 4, f"took {elapsed:.1f}s: hosts were read one after another"


def test_latency_events_and_settings_warnings(slowlab):
    clients = fresh_slowlogs(slowlab)
    master, replica = clients[0], clients[1]
    try:
        master.config_set("latency-monitor-threshold", 10)
        master.config_set("slowlog-max-len", 16)
        replica.config_set("slowlog-log-slower-than", -1)
        for i in range(20):
            master.get(f"filler:{i}")
        master.execute_command("DEBUG", "SLEEP", "0.05")
        run = triage_json(slowlab)
        table = triage(slowlab)
    finally:
        master.config_set("latency-monitor-threshold", 0)
        master.execute_command("LATENCY", "RESET")
        replica.config_set("slowlog-log-slower-than", 0)
    assert run.exit_code == 0, run.stderr
    node1, node2 = (r["data"] for r in run.json()["results"])
    (event,) = node1["latency"]
    assert event["event"] == "command"
    assert event["max_ms"] >= 50
    assert node1["warnings"] == [
        "slowlog keeps only 16 entries (slowlog-max-len)",
        node1["warnings"][1],
    ]
    assert node1["warnings"][1].startswith("slowlog is full: its 16 entries cover only the last")
    assert node2["warnings"] == ["slowlog is disabled (slowlog-log-slower-than < 0)"]
    assert "warning: node-2: slowlog is disabled" in run.stderr
    hints = run.json()["summary"]["hints"]
    assert "DEBUG SLEEP: DEBUG commands block the server: keep them off production" in hints
    assert any(h.startswith("slowlog disabled on node-2: CONFIG SET") for h in hints)
    assert any(h.startswith("slowlog too small on node-1: CONFIG SET") for h in hints)
    assert "command 5" in table.stdout  # the latency column: the event, latest and max ms
    assert "disabled" in table.stdout


def test_sentinels_alone_or_misdeclared(lab, tmp_path):
    only = redisops("-i", lab.inventory_path, "-l", "sentinels", "slowlog", "triage")
    assert only.exit_code == 2
    assert only.stderr.startswith("error: no Redis host selected: Sentinels have no slowlog")
    sentinel_port = next(p.port for p in lab.processes if p.role == "sentinel")
    secret = str(Path(lab.dir) / "secret")
    inventory = lab_inventory_with(
        lab,
        tmp_path,
        {"odd": {"host": "127.0.0.1", "port": sentinel_port, "password_file": secret}},
    )
    run = redisops("-i", inventory, "-l", "odd", "-o", "json", "slowlog", "triage")
    assert run.exit_code == 1
    error = run.json()["results"][0]["error"]
    assert error.startswith(f"127.0.0.1:{sentinel_port} is a Sentinel, not a Redis server")
    assert "role: sentinel" in error


def test_window_and_sort_options(slowlab):
    run_workload(slowlab)
    nothing = triage(slowlab, "--until", "1h")
    assert nothing.exit_code == 0
    assert "no slowlog entries to digest" in nothing.stdout
    by_count = triage_json(slowlab, "--sort", "count", "--top", "2", "--since", "10m")
    assert [f["fingerprint"] for f in by_count.json()["summary"]["fingerprints"]] == [
        "SET user:{id}:profile",
        "GET user:{id}:profile",
    ]
    bad = triage(slowlab, "--since", "last tuesday")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: --since 'last tuesday' is neither a duration nor a date")


def test_tail_shows_the_newest_entries_once(slowlab):
    clients = fresh_slowlogs(slowlab)
    for i in range(5):
        clients[0].get(f"tail:{i}")
    run = redisops("-i", slowlab.inventory_path, "-l", "node-1", "slowlog", "tail", "-n", "3")
    assert run.exit_code == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3
    assert all("node-1" in line and "GET tail:{id}" in line for line in lines)
    assert "from 127.0.0.1:" in lines[0] and lines[0].endswith("workload")


def test_tail_follow_streams_json_lines_without_duplicates_and_stops(slowlab):
    clients = fresh_slowlogs(slowlab)

    def later() -> None:
        time.sleep(0.6)
        for i in range(5):
            clients[0].get(f"live:{i}")
        clients[1].get("live:9")

    writer = threading.Thread(target=later)
    started = time.monotonic()
    writer.start()
    run = redisops(
        "-i", slowlab.inventory_path, "-o", "json", "slowlog", "tail",
        "--follow", "-n", "0", "--interval", "0.2", "--for", "2",
    )  # fmt: skip
    writer.join()
    elapsed = time.monotonic() - started
    assert run.exit_code == 0, run.stderr
    records = [Run(0, line, "").json() for line in run.stdout.splitlines()]
    live = [r for r in records if r["fingerprint"] == "GET live:{id}"]
    assert [(r["host"], r["key_pattern"]) for r in live] == [("node-1", "live:{id}")] * 5 + [
        ("node-2", "live:{id}")
    ]
    assert len({(r["host"], r["id"]) for r in records}) == len(records)  # each entry once
    assert all(r["client_name"] != "redisops-slowlog" for r in records)
    assert "args" not in live[0]
    assert 2 <= elapsed < 6
