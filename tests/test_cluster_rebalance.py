"""`cluster rebalance` on a real lab cluster: a memory-skewed cluster evened out with its
content unchanged, a dry run that changes nothing, refusals, and a run killed with SIGKILL
mid-slot that the next run finishes to the planned end state."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from redisops.lab import lab_down
from redisops.memory.slots import key_slot
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab

OFF_TERMINAL = {"REDISOPS_INTERACTIVE": "0"}
DEADLINE = 60  # seconds


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """3 masters (node-1..3), no replicas: 1,500 small keys spread, then the tests skew it."""
    state = start_cluster_lab(tmp_path_factory.mktemp("rebalance"), shards=3, replicas=0)
    try:
        write(state, {f"small:{i}".encode(): b"v" * 40 for i in range(1500)})
        yield state
    finally:
        lab_down(Path(state.dir), purge=True)


def password(state) -> str:
    return (Path(state.dir) / "secret").read_text().strip()


def port_of(state, name: str) -> int:
    return next(p.port for p in state.processes if p.name == name)


def node(state, name: str) -> redis.Redis:
    return redis.Redis(port=port_of(state, name), password=password(state), socket_timeout=10)


def masters(state, via: str = "node-1") -> list[redis.Redis]:
    """A client per master that owns slots now (as node `via` sees the cluster)."""
    text = node(state, via).execute_command("CLUSTER", "NODES")
    text = text.decode() if isinstance(text, bytes) else text
    out = []
    for line in text.splitlines():
        fields = line.split()
        if "master" in fields[2] and len(fields) > 8:
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            out.append(redis.Redis(port=port, password=password(state), socket_timeout=10))
    return out


def owner_of(state, via: str = "node-1") -> dict[int, int]:
    """slot -> port of the master serving it, as node `via` answers CLUSTER SLOTS."""
    slots = {}
    for first, last, master, *_ in node(state, via).execute_command("CLUSTER", "SLOTS"):
        for slot in range(first, last + 1):
            slots[slot] = master[1]
    return slots


def write(state, items: dict[bytes, bytes]) -> None:
    """SET each key on the master serving its slot (pipelined per master)."""
    owner = owner_of(state)
    by_port: dict[int, list] = {}
    for key, value in items.items():
        by_port.setdefault(owner[key_slot(key)], []).append((key, value))
    for port, pairs in by_port.items():
        client = redis.Redis(port=port, password=password(state), socket_timeout=10)
        pipe = client.pipeline(transaction=False)
        for key, value in pairs:
            pipe.set(key, value, ex=3600 if key.endswith(b"7") else None)
        pipe.execute()


def digest(state, via: str = "node-1") -> tuple[int, str]:
    """(keys, sha256 over every key's DUMP and whether it has a TTL), the whole cluster."""
    rows = []
    for client in masters(state, via):
        for key in client.scan_iter(count=1000):
            rows.append((key, client.dump(key), client.pttl(key) > 0))
    rows.sort()
    text = hashlib.sha256()
    for key, payload, ttl in rows:
        text.update(key + b"\0" + payload + (b"1" if ttl else b"0"))
    return len(rows), text.hexdigest()


def open_slots(state, via: str = "node-1") -> list[str]:
    found = []
    for client in masters(state, via):
        text = client.execute_command("CLUSTER", "NODES")
        text = text.decode() if isinstance(text, bytes) else text
        mine = next(line for line in text.splitlines() if "myself" in line)
        found += [f for f in mine.split()[8:] if f.startswith("[")]
    return found


def keys_in_slots(state, first: int, last: int, count: int, size: int, prefix: str) -> dict:
    """`count` keys of `size` bytes whose slots fall in first..last (by hash tag)."""
    items: dict[bytes, bytes] = {}
    tag = 0
    while len(items) < count:
        tag += 1
        key = f"{prefix}:{{t{tag}}}".encode()
        if first <= key_slot(key) <= last:
            items[key] = b"x" * size
    return items


def rebalance(state, *options: str, json_out: bool = True):
    extra = ("-o", "json") if json_out else ()
    return redisops(
        "-i", state.inventory_path, *extra, "cluster", "rebalance", *options, env=OFF_TERMINAL
    )


def test_a_memory_skewed_cluster_is_evened_out_with_its_content_unchanged(cluster):
    write(cluster, keys_in_slots(cluster, 0, 5460, 400, 20_000, "hot"))  # node-1: ~8 MB more
    before = digest(cluster)
    slots_before = owner_of(cluster)

    dry = rebalance(cluster, "--by", "memory", "--tolerance", "15", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert "dry run: nothing was moved" in dry.stderr
    planned = dry.json()["summary"]
    assert planned["slots"] > 0 and planned["bytes"] > 4_000_000
    assert {m["source"] for m in planned["moves"]} == {"node-1"}
    assert owner_of(cluster) == slots_before and digest(cluster) == before

    run = rebalance(cluster, "--by", "memory", "--tolerance", "15", "--yes")
    assert run.exit_code == 0, run.stderr
    summary = run.json()["summary"]
    assert summary["verified"] and summary["moved_slots"] == planned["slots"]
    assert summary["keys_moved"] == planned["keys"]
    assert digest(cluster) == before
    assert open_slots(cluster) == []
    assert [row["data"]["within"] for row in run.json()["results"]] == [True] * 3

    again = rebalance(cluster, "--by", "memory", "--tolerance", "15", "--dry-run")
    assert again.json()["summary"]["slots"] == 0
    shares = [row["data"]["share_before"] for row in again.json()["results"]]
    assert max(shares) <= 1.15 and min(shares) >= 0.85, shares
    audit = Path(os.environ["HOME"], ".local/state/redisops/cluster-changes.jsonl")
    record = json.loads(audit.read_text().splitlines()[-1])
    assert record["outcome"] == "done" and record["moved_slots"] == planned["slots"]
    assert password(cluster) not in audit.read_text()


def test_a_big_key_is_refused_without_force(cluster):
    before = owner_of(cluster)
    run = rebalance(cluster, "--by", "slots", "--tolerance", "0", "--max-key-size", "1kb")
    assert run.exit_code == 3, run.stderr
    assert "above --max-key-size 1kb would block both servers" in run.stderr
    assert owner_of(cluster) == before


def test_an_open_slot_left_by_another_tool_is_refused_then_finished_with_force(cluster):
    one, two = node(cluster, "node-1"), node(cluster, "node-2")
    ids = {n: node(cluster, n).execute_command("CLUSTER", "MYID") for n in ("node-1", "node-2")}
    ids = {n: v.decode() if isinstance(v, bytes) else v for n, v in ids.items()}
    slot = next(s for s, port in owner_of(cluster).items() if port == port_of(cluster, "node-1"))
    two.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids["node-1"])
    one.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids["node-2"])
    before = digest(cluster)

    refused = rebalance(cluster, "--dry-run", json_out=False)
    assert refused.exit_code == 3
    assert f"slot {slot} node-1 -> node-2 (migrating on node-1)" in refused.stderr

    forced = rebalance(cluster, "--force", "--yes", "--tolerance", "50")
    assert forced.exit_code == 0, forced.stderr
    assert f"slot {slot}: finished the move node-1 -> node-2" in forced.stderr
    assert open_slots(cluster) == []
    assert owner_of(cluster)[slot] == port_of(cluster, "node-2")
    assert digest(cluster) == before


def test_a_master_that_does_not_say_cluster_state_ok_is_refused(cluster):
    """A slot served by nobody turns every master's cluster_state to fail: moving slots then
    would end in CLUSTERDOWN mid-slot, so the plan refuses (exit 3) and moves nothing."""
    owners = owner_of(cluster)
    slot = max(owners)
    owner = next(n for n in ("node-1", "node-2", "node-3") if port_of(cluster, n) == owners[slot])
    for name in ("node-1", "node-2", "node-3"):
        node(cluster, name).execute_command("CLUSTER", "DELSLOTS", slot)
    try:
        deadline = time.monotonic() + DEADLINE
        while b"cluster_state:fail" not in node(cluster, owner).execute_command("CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the cluster never noticed the unserved slot"
            time.sleep(0.05)
        run = rebalance(cluster, "--by", "slots", "--yes", json_out=False)
        assert run.exit_code == 3, run.stderr
        assert (
            f"{owner} (127.0.0.1:{port_of(cluster, owner)}) says cluster_state:fail" in run.stderr
        )
        assert open_slots(cluster) == []
    finally:
        node(cluster, owner).execute_command("CLUSTER", "ADDSLOTS", slot)
        deadline = time.monotonic() + DEADLINE
        for name in ("node-1", "node-2", "node-3"):
            while b"cluster_state:ok" not in node(cluster, name).execute_command("CLUSTER", "INFO"):
                assert time.monotonic() < deadline, f"{name} never came back to cluster_state:ok"
                time.sleep(0.05)
    assert owner_of(cluster) == owners


def restart_target_of_open_slot(state) -> str:
    """SHUTDOWN (it saves) the node a slot is migrating to, start it again, wait until every
    master says the cluster is ok (the others marked it failing meanwhile); its name."""
    ports = {}
    for name in ("node-1", "node-2", "node-3"):
        ports[node(state, name).execute_command("CLUSTER", "MYID")] = name
    target = None
    for client in masters(state):
        text = client.execute_command("CLUSTER", "NODES")
        text = text.decode() if isinstance(text, bytes) else text
        mine = next(line for line in text.splitlines() if "myself" in line)
        target = target or next((f for f in mine.split()[8:] if "->-" in f), None)
    name = ports[target.strip("[]").split("->-")[1].encode()]
    with contextlib.suppress(redis.ConnectionError):  # it closes the connection as it exits
        node(state, name).shutdown()
    folder = Path(state.dir) / name
    subprocess.run(["redis-server", str(folder / "redis.conf")], check=True)
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            infos = [
                node(state, n).execute_command("CLUSTER", "INFO")
                for n in ("node-1", "node-2", "node-3")
            ]
            if all("cluster_state:ok" in (i.decode() if isinstance(i, bytes) else str(i))
                   for i in infos):  # fmt: skip
                return name
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        assert time.monotonic() < deadline, f"{name} did not come back"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("signum", "restart"),
    [(signal.SIGKILL, False), (signal.SIGINT, False), (signal.SIGKILL, True)],
    ids=["kill-9", "ctrl-c", "kill-9-and-target-restart"],
)
def test_a_run_killed_mid_slot_resumes_to_the_planned_end_state(cluster, signum, restart):
    # 300 keys in each of a few slots of node-2: at 150 keys/s a slot stays open ~2 s.
    for tag in (f"a{signum}{restart}", f"b{signum}{restart}", f"c{signum}{restart}"):
        items = {}
        for i in range(20000):
            key = f"heavy:{{{tag}{i}}}".encode()
            if 5461 <= key_slot(key) <= 10921:
                items = {f"heavy:{{{tag}{i}}}:{j}".encode(): b"h" * 3000 for j in range(300)}
                break
        write(cluster, items)
    before = digest(cluster)
    dry = rebalance(cluster, "--by", "keys", "--tolerance", "5", "--dry-run")
    planned = dry.json()["summary"]
    assert planned["slots"] > 0, dry.stderr
    expected = owner_of(cluster)
    port = {m: port_of(cluster, m) for m in ("node-1", "node-2", "node-3")}
    for move in planned["moves"]:
        for first, last in move["slots"]:
            for slot in range(first, last + 1):
                expected[slot] = port[move["target"]]

    state_file = Path(os.environ["HOME"], ".local/state/redisops/cluster-moves/redis.json")
    options = ["--by", "keys", "--tolerance", "5", "--rate", "150", "--yes"]
    command = [sys.executable, "-m", "redisops", "-i", cluster.inventory_path]
    command += ["cluster", "rebalance", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + DEADLINE
        while not (state_file.exists() and any("->-" in s for s in open_slots(cluster))):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no slot was ever in flight"
            time.sleep(0.02)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if signum == signal.SIGINT:  # wound down: one line names the open slot and what to run
        assert process.returncode == 130, stderr
        assert b"slot moves done; slot " in stderr and b"may be open between" in stderr
        assert b"cluster rebalance --yes` to finish" in stderr
    left_open = open_slots(cluster)
    assert left_open, "the kill should leave the slot in flight open"
    if restart:
        restart_target_of_open_slot(cluster)
    in_flight = json.loads(state_file.read_text())["in_flight"]
    assert any(s.startswith(f"[{in_flight}-") for s in left_open)

    resumed = rebalance(cluster, "--yes")  # no options: the state file's plan goes on
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming the interrupted `cluster rebalance`" in resumed.stderr
    assert f"slot {in_flight}: finished the move" in resumed.stderr
    assert open_slots(cluster) == []
    assert owner_of(cluster) == expected
    assert digest(cluster) == before
    assert not state_file.exists()


def test_the_planner_stops_when_a_move_would_only_shift_the_imbalance():
    """Slots do not divide evenly by 3: at tolerance 0 the plan must end, not swap one slot
    back and forth; by memory, a slot heavier than the gap is not moved."""
    from redisops.cluster.rebalance import MasterReading, balance_moves

    def reading(name: str, slots: range, sizes: dict[int, int] | None = None):
        sizes = sizes or {}
        keys = {s: 1 for s in sizes}
        return MasterReading(name, (), tuple(slots), keys, sizes, "ok")

    readings = {
        "a": reading("a", range(0, 6461)),
        "b": reading("b", range(6461, 10922)),
        "c": reading("c", range(10922, 16384)),
    }
    moves = balance_moves(readings, "slots", 0.0)
    assert len(moves) == 1000 and all(m.target == "b" for m in moves)
    assert [m.slot for m in moves[:3]] == [0, 1, 2]  # the donor's lowest slots, as redis-cli
    after = {n: len(r.slots) for n, r in readings.items()}
    for move in moves:
        after[move.source] -= 1
        after[move.target] += 1
    assert max(after.values()) - min(after.values()) <= 1

    heavy = {
        "a": reading("a", range(0, 10), {0: 900, 1: 50, 2: 50}),
        "b": reading("b", range(10, 20), {10: 10}),
    }
    moves = balance_moves(heavy, "memory", 0.1)
    assert [(m.slot, m.target) for m in moves] == [(2, "b"), (1, "b")]


def test_a_state_file_of_another_command_blocks_until_finished_and_a_done_one_is_ignored(
    cluster,
):
    from redisops.cluster.slotmove import (
        Move,
        MoveState,
        default_state_dir,
        state_path,
        write_moves,
        write_state,
    )

    ids = {}
    for name in ("node-1", "node-2"):
        found = node(cluster, name).execute_command("CLUSTER", "MYID")
        ids[name] = found.decode() if isinstance(found, bytes) else found
    slot = next(s for s, port in owner_of(cluster).items() if port == port_of(cluster, "node-1"))
    path = state_path(default_state_dir(), "redis")
    unfinished = MoveState(
        "cluster drain node-1", "redis", (Move(slot, ids["node-1"], ids["node-2"]),), 0, None,
        "2026-12-06T01:00:00+00:00", path,
    )  # fmt: skip
    write_moves(unfinished)
    write_state(unfinished)
    blocked = rebalance(cluster, "--dry-run", json_out=False)
    assert blocked.exit_code == 3
    assert "an interrupted `cluster drain node-1` of cluster redis" in blocked.stderr

    done = MoveState(
        "cluster drain node-1", "redis", (Move(slot, ids["node-2"], ids["node-1"]),), 0, None,
        "2026-12-06T01:00:00+00:00", path,
    )  # fmt: skip
    write_moves(done)
    write_state(done)
    ignored = rebalance(cluster, "--dry-run", "--tolerance", "100", json_out=False)
    assert ignored.exit_code == 0, ignored.stderr
    path.unlink()
