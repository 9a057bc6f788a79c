"""The lab with real redis-server and redis-sentinel processes: topology, auth, data, lifecycle."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from redisops.errors import LabError, UsageError
from redisops.fleet.inventory import load_inventory
from redisops.lab import LabState, lab_down, lab_status, lab_up
from redisops.lab.seed import plan_seed
from tests.plugins.lab import free_base_port

ALLOWED_HOST_KEYS = {
    "host",
    "port",
    "role",
    "data_dir",
    "service_start",
    "service_stop",
    "password_file",
    "connection",
}


def client(port: int, password: str | None) -> redis.Redis:
    # No retries: redis-py retries AuthenticationError (a ConnectionError) with backoff.
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def by_name(state: LabState) -> dict:
    return {p.name: p for p in state.processes}


def all_keys(c: redis.Redis) -> set[str]:
    return set(c.scan_iter(count=100))


# --- the session lab: 2 replicas, 3 sentinels, 200 keys ---------------------------------------


def test_lab_processes_are_named_and_running(lab: LabState) -> None:
    procs = by_name(lab)
    base = procs["node-1"].port
    assert [(p.name, p.role, p.port) for p in lab.processes] == [
        ("node-1", "master", base),
        ("node-2", "replica", base + 1),
        ("node-3", "replica", base + 2),
        ("sentinel-1", "sentinel", base + 100),
        ("sentinel-2", "sentinel", base + 101),
        ("sentinel-3", "sentinel", base + 102),
    ]
    assert all(p.running and p.pid for p in lab.processes)
    assert all(Path(p.folder) == Path(lab.dir) / p.name for p in lab.processes)
    assert not lab.already_running


def test_replication_roles(lab: LabState, lab_password: str) -> None:
    procs = by_name(lab)
    master = procs["node-1"]
    info = client(master.port, lab_password).info("replication")
    assert info["role"] == "master"
    assert info["connected_slaves"] == 2
    for name in ("node-2", "node-3"):
        info = client(procs[name].port, lab_password).info("replication")
        assert info["role"] == "slave"
        assert (info["master_host"], info["master_port"]) == ("127.0.0.1", master.port)
        assert info["master_link_status"] == "up"


def test_sentinels_monitor_master_and_see_each_other(lab: LabState, lab_password: str) -> None:
    procs = by_name(lab)
    master_port = procs["node-1"].port
    sentinel_ports = {p.port for p in lab.processes if p.role == "sentinel"}
    for port in sentinel_ports:
        s = client(port, lab_password)
        assert s.sentinel_get_master_addr_by_name("lab") == ("127.0.0.1", master_port)
        master = s.sentinel_master("lab")
        assert master["quorum"] == 2
        assert master["num-slaves"] == 2
        assert master["num-other-sentinels"] == 2
        assert master["down-after-milliseconds"] == 2000
        assert master["failover-timeout"] == 10000
        assert {r["port"] for r in s.sentinel_slaves("lab")} == {master_port + 1, master_port + 2}
        peers = s.sentinel_sentinels("lab")
        assert {p["port"] for p in peers} == sentinel_ports - {port}
        # Each peer answers this sentinel's authenticated PINGs (sentinels have requirepass).
        for peer in peers:
            assert peer["flags"] == "sentinel"
            assert peer["last-ok-ping-reply"] < 2000
        assert s.execute_command("SENTINEL", "CKQUORUM", "lab").startswith("OK 3 usable")


def test_every_process_requires_the_password(lab: LabState) -> None:
    for process in lab.processes:
        with pytest.raises(redis.AuthenticationError):
            client(process.port, None).ping()
        with pytest.raises(redis.AuthenticationError):
            client(process.port, "wrong-password").ping()


def test_seeded_keys_on_master_and_replicas(lab: LabState, lab_password: str) -> None:
    expected = {item.key for item in plan_seed(200)}
    nodes = [p for p in lab.processes if p.role != "sentinel"]
    for node in nodes:
        c = client(node.port, lab_password)
        assert c.dbsize() == 200, node.name
        assert all_keys(c) == expected, node.name
    master = client(nodes[0].port, lab_password)
    types = Counter(master.type(key) for key in expected)
    assert set(types) == {"string", "hash", "list", "set", "zset", "stream"}
    with_ttl = sum(master.ttl(key) > 0 for key in expected)
    assert 50 <= with_ttl <= 90  # about a third
    assert any(master.object("encoding", k) == "int" for k in expected if k.startswith("stats:"))
    assert max(master.strlen(k) for k in expected if k.startswith("cache:page:")) > 32_000


def test_seed_plan_is_deterministic() -> None:
    assert plan_seed(50) == plan_seed(50)
    assert len({item.key for item in plan_seed(1000)}) == 1000
    assert plan_seed(0) == []


def test_files_are_private_and_hold_no_password_where_they_should_not(
    lab: LabState, lab_password: str
) -> None:
    lab_dir = Path(lab.dir)
    assert stat.S_IMODE(lab_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((lab_dir / "secret").stat().st_mode) == 0o600
    assert (lab_dir / "secret").read_text() == lab_password
    for process in lab.processes:
        folder = Path(process.folder)
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for conf in folder.glob("*.conf"):  # Sentinel rewrites its config: still 0600
            assert stat.S_IMODE(conf.stat().st_mode) == 0o600, conf
        for log in folder.glob("*.log"):
            assert lab_password not in log.read_text(), log
    for name in ("lab.json", "inventory.yaml"):
        assert lab_password not in (lab_dir / name).read_text()


def test_password_not_in_any_process_arguments_or_environment(
    lab: LabState, lab_password: str
) -> None:
    for process in lab.processes:
        proc = Path(f"/proc/{process.pid}")
        assert b"redis" in (proc / "cmdline").read_bytes()
        assert lab_password.encode() not in (proc / "cmdline").read_bytes()
        assert lab_password.encode() not in (proc / "environ").read_bytes()


def test_inventory_shape(lab: LabState) -> None:
    lab_dir = Path(lab.dir)
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    top = data["all"]
    assert top["vars"] == {"connection": "local", "password_file": str(lab_dir / "secret")}
    assert list(top["children"]) == ["redis", "sentinels"]
    nodes = top["children"]["redis"]["hosts"]
    sentinels = top["children"]["sentinels"]
    assert sentinels["vars"] == {"role": "sentinel"}
    assert list(nodes) == ["node-1", "node-2", "node-3"]
    assert list(sentinels["hosts"]) == ["sentinel-1", "sentinel-2", "sentinel-3"]
    for name, host in {**nodes, **sentinels["hosts"]}.items():
        assert set(host) <= ALLOWED_HOST_KEYS
        assert host["host"] == "127.0.0.1"
        assert host["port"] == by_name(lab)[name].port
        conf = "sentinel.conf" if name.startswith("sentinel") else "redis.conf"
        assert host["service_start"].endswith(f" {lab_dir / name / conf}")
        assert host["service_stop"] == f"kill -TERM $(cat {lab_dir / name / conf[:-4]}pid)"
    assert nodes["node-1"]["data_dir"] == str(lab_dir / "node-1")

    inventory = load_inventory(lab.inventory_path)
    roles = {h.name: (h.role, h.connection, h.password_file) for h in inventory.hosts}
    secret = str(lab_dir / "secret")
    assert roles["node-2"] == ("redis", "local", secret)
    assert roles["sentinel-3"] == ("sentinel", "local", secret)


def test_up_again_changes_nothing(lab: LabState) -> None:
    again = lab_up(Path(lab.dir), base_port=by_name(lab)["node-1"].port)
    assert again.already_running
    assert [(p.name, p.pid) for p in again.processes] == [(p.name, p.pid) for p in lab.processes]
    assert lab_status(Path(lab.dir)).processes == again.processes


# --- small labs of their own, for destructive cases -------------------------------------------


def test_port_taken_fails_fast_and_starts_nothing(tmp_path: Path) -> None:
    base = free_base_port(1, 0)
    with socket.create_server(("127.0.0.1", base + 1)):
        started = time.monotonic()
        with pytest.raises(LabError, match=f"port {base + 1} is already in use"):
            lab_up(tmp_path / "lab", replicas=1, sentinels=0, base_port=base)
        assert time.monotonic() - started < 2
    assert not (tmp_path / "lab").exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", base)) != 0  # the master was never started


def test_lone_master_down_keeps_data_up_restarts_purge_deletes(make_lab) -> None:
    state = make_lab(replicas=0, sentinels=0, seed_keys=20)
    lab_dir = Path(state.dir)
    (node,) = state.processes
    assert (node.name, node.role, node.running) == ("node-1", "master", True)
    inventory = yaml.safe_load(Path(state.inventory_path).read_text())
    assert list(inventory["all"]["children"]) == ["redis"]
    password = (lab_dir / "secret").read_text()
    client(node.port, password).set("mine", "kept")

    down = lab_down(lab_dir)
    assert [p.running for p in down.processes] == [False]
    assert [p.running for p in lab_status(lab_dir).processes] == [False]
    assert (lab_dir / "node-1" / "dump.rdb").is_file()
    assert [p.running for p in lab_down(lab_dir).processes] == [False]  # down again: fine

    up = lab_up(lab_dir, replicas=0, sentinels=0, base_port=node.port)
    assert not up.already_running and up.processes[0].running
    assert (lab_dir / "secret").read_text() == password
    c = client(node.port, password)
    assert c.get("mine") == "kept"
    assert c.dbsize() == 21

    lab_down(lab_dir, purge=True)
    assert not lab_dir.exists()
    with pytest.raises(LabError, match="not a lab"):
        lab_status(lab_dir)


def test_inventory_service_commands_stop_and_start(make_lab) -> None:
    state = make_lab(replicas=0, sentinels=0)
    host = yaml.safe_load(Path(state.inventory_path).read_text())["all"]["children"]["redis"]
    node = host["hosts"]["node-1"]
    subprocess.run(node["service_stop"], shell=True, check=True, timeout=10)
    deadline = time.monotonic() + 10
    while lab_status(Path(state.dir)).processes[0].running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lab_status(Path(state.dir)).processes[0].running
    subprocess.run(node["service_start"], shell=True, check=True, timeout=10)
    # redis-server daemonizes: its pidfile appears a moment after the command returns.
    deadline = time.monotonic() + 10
    while not lab_status(Path(state.dir)).processes[0].running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lab_status(Path(state.dir)).processes[0].running


def test_partly_running_lab_is_refused(make_lab) -> None:
    state = make_lab(replicas=1, sentinels=0)
    replica = by_name(state)["node-2"]
    os.kill(replica.pid, 15)
    deadline = time.monotonic() + 10
    while by_name(lab_status(Path(state.dir)))["node-2"].running and time.monotonic() < deadline:
        time.sleep(0.05)
    status = by_name(lab_status(Path(state.dir)))
    assert status["node-1"].running and not status["node-2"].running
    assert status["node-2"].pid is None
    with pytest.raises(LabError, match="partly running") as caught:
        lab_up(Path(state.dir), replicas=1, sentinels=0, base_port=replica.port - 1)
    assert "redisops lab down" in caught.value.hint
    assert not any(p.running for p in lab_down(Path(state.dir)).processes)


def test_timeout_names_the_process_and_stops_everything(tmp_path: Path) -> None:
    # Sentinels need one hello period (2 s) to find each other: 1 s cannot be enough.
    lab_dir = tmp_path / "lab"
    with pytest.raises(LabError, match=r"sentinel-\d was not ready within 1s") as caught:
        lab_up(lab_dir, replicas=0, sentinels=2, base_port=free_base_port(0, 2), timeout=1)
    assert caught.value.hint.endswith("sentinel.log")
    assert (lab_dir / "secret").read_text() not in str(caught.value) + caught.value.hint
    assert not any(p.running for p in lab_status(lab_dir).processes)
    lab_down(lab_dir, purge=True)


def test_folders_that_are_not_labs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="not a lab"):
        lab_status(tmp_path)
    with pytest.raises(LabError, match="not a lab"):
        lab_down(tmp_path, purge=True)
    with pytest.raises(LabError, match="holds no lab"):
        lab_up(tmp_path, base_port=free_base_port())
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_stopped_lab_of_another_shape_is_refused(make_lab) -> None:
    state = make_lab(replicas=0, sentinels=0)
    lab_down(Path(state.dir))
    with pytest.raises(LabError, match="stopped lab with 0 replica"):
        lab_up(Path(state.dir), replicas=1, sentinels=0, base_port=state.processes[0].port)


def test_missing_redis_server_gives_an_install_hint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LabError, match="redis-server not found") as caught:
        lab_up(tmp_path / "lab", base_port=free_base_port())
    assert "install" in caught.value.hint
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize(
    "options",
    [
        {"replicas": -1},
        {"replicas": 100},
        {"sentinels": 100},
        {"base_port": 65500},
        {"seed_keys": -5},
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, options: dict) -> None:
    with pytest.raises(UsageError):
        lab_up(tmp_path / "lab", **options)
    assert not (tmp_path / "lab").exists()


def test_start_failure_after_daemonizing_is_reported_at_once(tmp_path: Path, monkeypatch) -> None:
    # Skip our own port check so Redis itself hits the taken port, after it has daemonized.
    monkeypatch.setattr("redisops.lab.sandbox.daemon.check_ports_free", lambda members, **_: None)
    base = free_base_port(0, 0)
    with socket.create_server(("127.0.0.1", base)):
        started = time.monotonic()
        with pytest.raises(LabError, match=r"node-1 failed to start: .*aborting") as caught:
            lab_up(tmp_path / "lab", replicas=0, sentinels=0, base_port=base, timeout=20)
        assert time.monotonic() - started < 5
    assert caught.value.hint.endswith("redis.log")
    lab_down(tmp_path / "lab", purge=True)


def test_restart_after_a_failover_keeps_the_new_master(make_lab) -> None:
    state = make_lab(replicas=1, sentinels=1, seed_keys=10)
    lab_dir, procs = Path(state.dir), by_name(state)
    password = (lab_dir / "secret").read_text()
    sentinel = client(procs["sentinel-1"].port, password)
    sentinel.execute_command("SENTINEL", "FAILOVER", "lab")
    deadline = time.monotonic() + 15
    while sentinel.sentinel_get_master_addr_by_name("lab")[1] != procs["node-2"].port:
        assert time.monotonic() < deadline, "no failover"
        time.sleep(0.1)
    # Stop at once: node-1 has not been told yet that it is a replica now.
    lab_down(lab_dir)

    up = lab_up(lab_dir, replicas=1, sentinels=1, base_port=procs["node-1"].port)
    assert all(p.running for p in up.processes)
    assert client(procs["node-2"].port, password).info("replication")["role"] == "master"
    info = client(procs["node-1"].port, password).info("replication")
    assert (info["role"], info["master_port"]) == ("slave", procs["node-2"].port)
    assert client(procs["node-1"].port, password).dbsize() == 10
    sentinel = client(procs["sentinel-1"].port, password)
    assert sentinel.sentinel_get_master_addr_by_name("lab")[1] == procs["node-2"].port
