"""`snapshot take | show | diff` on real labs: exact content, redaction, a frozen host, a diff
that finds a config change and a failover."""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
import redis
import zstandard

from redisops.snapshot.archive import ITEM_FILES, load_snapshot
from redisops.snapshot.redaction import mask_acl_rule_line, mask_args, mask_config, scrub
from redisops.tuning.settings import masked
from tests.cli_helpers import lab_inventory_with, redisops, redisops_process
from tests.plugins.lab import start_lab
from tests.servers import free_port, frozen_redis_server, valkey_server_binary

REDIS_ITEMS = {
    "slowlog", "info", "config", "acl", "latency_latest", "latency_history",
    "latency_histogram", "memory_stats", "memory_doctor", "clients", "replication",
    "host_facts", "redis_log", "kernel_oom",
}  # fmt: skip
SENTINEL_ITEMS = {"info", "sentinel", "clients", "host_facts", "kernel_oom"}
MASTERAUTH_SECRET = "masterauth-secret-5f1c0a9e"
MIGRATE_SECRET = "migrate-secret-77d2b4c1"
ECHO_CALLS = 7


def client(port: int, password: str, **options) -> redis.Redis:
    return redis.Redis(port=port, password=password, socket_timeout=10, **options)


def raw(connection: redis.Redis, *command: str):
    """A command's reply as the server sent it (no redis-py response callback)."""
    conn = connection.connection_pool.get_connection()
    try:
        conn.send_command(*command)
        return conn.read_response()
    finally:
        connection.connection_pool.release(conn)


def port_of(state, name: str) -> int:
    return next(p.port for p in state.processes if p.name == name)


@pytest.fixture(scope="module")
def evidence(tmp_path_factory):
    """A lab with slow commands, a latency event, secrets in config and in slowlog arguments,
    and one snapshot of it (taken by the CLI, as a user would)."""
    folder = tmp_path_factory.mktemp("snapshot")
    state = start_lab(folder / "lab", replicas=1, sentinels=1, seed_keys=50)
    password = (Path(state.dir) / "secret").read_text().strip()
    master = client(port_of(state, "node-1"), password)
    master.config_set("slowlog-log-slower-than", 0)
    master.config_set("slowlog-max-len", 100000)
    master.config_set("latency-monitor-threshold", 10)
    master.config_set("masterauth", MASTERAUTH_SECRET)  # unused on a master: harmless
    master.execute_command("AUTH", password)
    master.set("k", "v")
    with pytest.raises(redis.ResponseError):
        # Fails at once (nothing listens on port 1), and is logged with its credentials.
        master.execute_command("MIGRATE", "127.0.0.1", "1", "k", "0", "100", "AUTH", MIGRATE_SECRET)
    for _ in range(ECHO_CALLS):
        master.echo("hello")
    master.execute_command("DEBUG", "SLEEP", "0.05")
    # A password where no rule by shape looks: only the pass by value can catch it.
    careless = client(port_of(state, "node-1"), password)
    careless.client_setname(f"app-{password}")
    dest = folder / "archives"
    dest.mkdir()
    umask = os.umask(0o022)  # the usual umask: the archive must be 0600 anyway
    try:
        run = redisops(
            "-i", state.inventory_path, "-o", "json", "snapshot", "take", "--dest", str(dest)
        )
    finally:
        os.umask(umask)
    yield {"state": state, "password": password, "master": master, "run": run, "dest": dest}
    careless.close()
    from redisops.lab import lab_down

    lab_down(Path(state.dir), purge=True)


def archive_of(evidence) -> Path:
    return Path(evidence["run"].json()["summary"]["path"])


def test_take_writes_one_private_archive_and_says_where(evidence):
    run = evidence["run"]
    assert run.exit_code == 0, run.stderr
    path = archive_of(evidence)
    assert path.parent == evidence["dest"] and path.name.endswith(".tar.zst")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in evidence["dest"].iterdir()) == [path.name]  # no temp left
    results = {r["host"]: r["data"] for r in run.json()["results"]}
    assert results["node-1"]["captured"] == len(REDIS_ITEMS)
    assert results["node-1"]["failed"] == []
    assert run.json()["summary"]["bytes"] == path.stat().st_size


def test_every_item_of_every_host_is_in_the_archive(evidence):
    snapshot = load_snapshot(archive_of(evidence))
    assert [h.name for h in snapshot.hosts] == ["node-1", "node-2", "sentinel-1"]
    for host in snapshot.hosts:
        captured = {item.name for item in host.record.items if item.ok}
        expected = SENTINEL_ITEMS if host.record.role == "sentinel" else REDIS_ITEMS
        assert captured == expected, host.name
        assert host.record.ok and host.record.error is None
        for item in host.record.items:
            if item.ok:
                assert item.file == f"hosts/{host.name}/{ITEM_FILES[item.name]}"
                assert item.bytes > 0 or item.name == "kernel_oom"
    assert snapshot.manifest.timeout == 5 and snapshot.manifest.seconds > 0


def test_slowlog_config_and_acl_equal_the_servers_with_secrets_replaced(evidence):
    snapshot = load_snapshot(archive_of(evidence))
    node = snapshot.host("node-1")
    master = evidence["master"]
    live = raw(master, "SLOWLOG", "GET", "-1")
    archived_ids = [entry.id for entry in node.slowlog]
    assert archived_ids == sorted(archived_ids, reverse=True)
    # The live log now also holds the snapshot's own later commands: same entries up to then.
    before = [entry for entry in live if entry[0] <= archived_ids[0]]
    secrets = {evidence["password"], MASTERAUTH_SECRET}
    assert len(before) == len(node.slowlog) > ECHO_CALLS
    for got, want in zip(node.slowlog, before, strict=True):
        assert (got.id, got.started, got.duration_us) == tuple(want[:3])
        assert got.args == tuple(scrub(mask_args(want[3]), secrets))
        assert [got.client_address, got.client_name] == scrub(
            [want[4].decode(), want[5].decode()], secrets
        )
    migrate = next(e for e in node.slowlog if e.args[0] == "MIGRATE")
    assert migrate.args[:6] == ("MIGRATE", "127.0.0.1", "1", "k", "0", "100")
    assert migrate.args[6:] == ("AUTH", "(redacted)")
    pairs = raw(master, "CONFIG", "GET", "*")
    pairs = pairs.items() if isinstance(pairs, dict) else zip(pairs[::2], pairs[1::2], strict=True)
    config = {k.decode(): v.decode() for k, v in pairs}
    assert dict(node.config) == {k: masked(k, v) for k, v in config.items()}
    assert node.config["masterauth"] == "(set)" and node.config["requirepass"] == "(set)"
    acl = [mask_acl_rule_line(line.decode()) for line in raw(master, "ACL", "LIST")]
    assert list(node.acl) == acl and "#***" in acl[0]


def test_info_latency_memory_clients_and_views_are_the_servers(evidence):
    state = evidence["state"]
    snapshot = load_snapshot(archive_of(evidence))
    node = snapshot.host("node-1")
    master = evidence["master"]
    info = master.info("server")
    assert node.info["run_id"] == info["run_id"]
    assert node.record.server == f"Redis {info['redis_version']}"
    assert node.keyspace[0]["keys"] == master.dbsize() == node.memory_stats["keys.count"]
    assert node.latency_histogram["echo"].calls == ECHO_CALLS
    assert max(node.latency_histogram["echo"].buckets.values()) == ECHO_CALLS
    event = next(e for e in node.latency_latest if e.event == "command")
    assert event.max_ms >= 50
    live_history = [list(p) for p in raw(master, "LATENCY", "HISTORY", "command")]
    archived = [list(p) for p in node.latency_history["command"]]
    assert archived == sorted(live_history)[: len(archived)] and archived
    assert node.memory_doctor == raw(master, "MEMORY", "DOCTOR").decode()
    replica_port = port_of(state, "node-2")
    assert [(r.port, r.state) for r in node.replication.replicas] == [(replica_port, "online")]
    replica = snapshot.host("node-2").replication
    assert (replica.role, replica.master_port, replica.master_link_status) == (
        "replica", port_of(state, "node-1"), "up"
    )  # fmt: skip
    assert any(c.get("flags") == "S" and c["addr"].startswith("127.0.0.1:") for c in node.clients)
    assert any(c.get("name") == "redisops-snapshot" for c in node.clients)
    (view,) = snapshot.host("sentinel-1").sentinel
    assert (view.name, view.address) == ("lab", f"127.0.0.1:{port_of(state, 'node-1')}")
    assert len(view.replicas) == 1 and view.ckquorum.startswith("OK")
    facts = node.host_facts
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    assert f"[{facts.transparent_hugepage}]" in thp
    assert facts.overcommit_memory == int(Path("/proc/sys/vm/overcommit_memory").read_text())
    assert len(facts.load) == 3 and facts.mem_total > 0
    log = next(Path(state.dir, "node-1").glob("*.log")).read_text(errors="replace")
    assert node.redis_log.strip() and node.redis_log.strip() in log


def test_no_secret_anywhere_in_the_archive_compressed_or_not(evidence):
    path = archive_of(evidence)
    compressed = path.read_bytes()
    unpacked = zstandard.ZstdDecompressor().decompressobj().decompress(compressed)
    members = []
    with zstandard.open(path, "rb") as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            members.append(tar.extractfile(member).read())
    run = evidence["run"]
    for secret in (evidence["password"], MASTERAUTH_SECRET, MIGRATE_SECRET):
        for blob in (compressed, unpacked, *members, run.stdout.encode(), run.stderr.encode()):
            assert secret.encode() not in blob
    assert b"(redacted)" in unpacked and b"MIGRATE" in unpacked
    node = load_snapshot(path).host("node-1")
    assert any(c.get("name") == "app-***" for c in node.clients)
    setname = [e for e in node.slowlog if e.args[:2] == ("CLIENT", "SETNAME")]
    assert ("CLIENT", "SETNAME", "app-***") in [e.args for e in setname]


def test_show_renders_the_archive_as_tables_at_80_and_120_columns(evidence):
    path = str(archive_of(evidence))
    for columns in ("80", "120"):
        run = redisops_process("snapshot", "show", path, env={"COLUMNS": columns})
        assert run.exit_code == 0, run.stderr
        for text in ("node-1", "node-2", "sentinel-1", "ECHO", "lab"):
            assert text in run.stdout
        assert max(len(line) for line in run.stdout.splitlines()) <= int(columns)
        assert "taken" in run.stderr
    data = redisops("snapshot", "show", path, "-o", "json").json()
    rows = {r["host"]: r["data"] for r in data["results"]}
    assert rows["node-1"]["role"] == "master" and rows["node-2"]["role"] == "replica"
    assert rows["node-1"]["keys"] == evidence["master"].dbsize()
    echo = next(f for f in data["summary"]["fingerprints"] if f["fingerprint"] == "ECHO")
    assert echo["calls"] == ECHO_CALLS


def test_show_of_a_file_that_is_not_an_archive_is_a_usage_error(tmp_path):
    bogus = tmp_path / "snapshot-x.tar.zst"
    bogus.write_bytes(b"not zstd at all")
    run = redisops("snapshot", "show", str(bogus))
    assert run.exit_code == 2
    assert f"{bogus} is not a redisops snapshot" in run.stderr


def test_take_into_a_missing_folder_is_a_usage_error(evidence, tmp_path):
    state = evidence["state"]
    run = redisops("-i", state.inventory_path, "snapshot", "take", "--dest", str(tmp_path / "no"))
    assert run.exit_code == 2
    assert "is not a folder" in run.stderr


def test_a_frozen_host_is_an_error_entry_and_the_rest_are_complete(evidence, tmp_path):
    with frozen_redis_server(tmp_path) as port:
        inventory = lab_inventory_with(
            evidence["state"], tmp_path, {"frozen": {"host": "127.0.0.1", "port": port,
                                                     "connection": "local"}}
        )  # fmt: skip
        started = time.monotonic()
        run = redisops("-i", inventory, "--timeout", "1", "-o", "json", "snapshot", "take",
                       "--dest", str(tmp_path))  # fmt: skip
        elapsed = time.monotonic() - started
    assert run.exit_code == 1
    assert elapsed < 5, f"took {elapsed:.1f}s: the frozen host was retried or serialised"
    snapshot = load_snapshot(run.json()["summary"]["path"])
    frozen = snapshot.host("frozen")
    assert not frozen.record.ok
    # The lab's password applies to it too: the AUTH is what goes unanswered.
    assert frozen.record.error.endswith(f"127.0.0.1:{port} did not answer within 1s")
    assert frozen.record.item("host_facts").ok  # the machine still answers
    assert frozen.info == {} and frozen.slowlog == ()
    for host in snapshot.hosts:
        if host.name != "frozen":
            expected = SENTINEL_ITEMS if host.record.role == "sentinel" else REDIS_ITEMS
            assert {i.name for i in host.record.items if i.ok} == expected, host.name


def test_redaction_by_shape():
    assert mask_args([b"AUTH", b"user", b"pw"]) == ["AUTH", "(redacted)", "(redacted)"]
    assert mask_args([b"HELLO", b"3", b"AUTH", b"u", b"pw"])[3:] == ["(redacted)", "(redacted)"]
    migrate = [b"MIGRATE", b"h", b"1", b"", b"0", b"9", b"AUTH2", b"u", b"pw", b"KEYS", b"a"]
    assert mask_args(migrate)[6:] == ["AUTH2", "(redacted)", "(redacted)", "KEYS", "a"]
    assert mask_args([b"GET", b"\xff"]) == ["GET", "\udcff"]
    line = "user app on #5e884898da28 >cleartext <old !deadbeef ~app:* +@read"
    assert mask_acl_rule_line(line) == "user app on #*** >*** <*** !*** ~app:* +@read"
    config, found = mask_config(
        {"primaryauth": "s3cret-1", "masterauth": "s3cret-2", "requirepass": "", "maxmemory": "0"}
    )
    assert config == {
        "primaryauth": "(set)", "masterauth": "(set)", "requirepass": "(unset)", "maxmemory": "0"
    }  # fmt: skip
    assert found == {"s3cret-1", "s3cret-2"}


def wait_for_failover(state, password: str, new_master: int, seconds: float = 60) -> None:
    """Until every Sentinel names `new_master` and the old master replicates from it."""
    deadline = time.monotonic() + seconds
    sentinels = [p.port for p in state.processes if p.role == "sentinel"]
    old = client(port_of(state, "node-1"), password, decode_responses=True)
    while True:
        named = [
            int(
                client(port, password).execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "lab"
                )[1]
            )
            for port in sentinels
        ]
        replication = old.info("replication")
        if set(named) == {new_master} and replication.get("master_link_status") == "up":
            return
        assert time.monotonic() < deadline, f"no failover: {named} {replication.get('role')}"
        time.sleep(0.2)


def test_diff_finds_a_config_change_and_a_failover(tmp_path):
    from redisops.lab import lab_down

    state = start_lab(tmp_path / "lab", replicas=1, sentinels=3, seed_keys=20)
    try:
        password = (Path(state.dir) / "secret").read_text().strip()
        dest = tmp_path / "archives"
        dest.mkdir()

        def take() -> str:
            run = redisops("-i", state.inventory_path, "-o", "json", "snapshot", "take",
                           "--dest", str(dest))  # fmt: skip
            assert run.exit_code == 0, run.stderr
            return run.json()["summary"]["path"]

        first = take()
        master_port, replica_port = port_of(state, "node-1"), port_of(state, "node-2")
        master = client(master_port, password)
        master.config_set("maxmemory-policy", "allkeys-lru")
        master.set("new-key", "1")
        sentinel = client(port_of(state, "sentinel-1"), password)
        sentinel.execute_command("SENTINEL", "FAILOVER", "lab")
        wait_for_failover(state, password, replica_port)
        second = take()
        run = redisops("-o", "json", "snapshot", "diff", first, second)
        assert run.exit_code == 0, run.stderr
        changes = {
            (r["host"], c["area"], c["what"]): (c["before"], c["after"])
            for r in run.json()["results"]
            for c in r["data"]["changes"]
        }
        assert changes[("node-1", "config", "maxmemory-policy")] == ("noeviction", "allkeys-lru")
        assert changes[("node-1", "role", "role")] == ("master", "replica")
        assert changes[("node-2", "role", "role")] == ("replica", "master")
        assert changes[("node-1", "role", "master")] == (None, f"127.0.0.1:{replica_port}")
        assert changes[("node-1", "keys", "db0")] == ("20", "21")
        for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
            assert changes[(name, "sentinel", "lab address")] == (
                f"127.0.0.1:{master_port}", f"127.0.0.1:{replica_port}"
            )  # fmt: skip
        table = redisops("snapshot", "diff", first, second, "--fail-on-change")
        assert table.exit_code == 1
        assert "maxmemory-policy" in table.stdout and "allkeys-lru" in table.stdout
        same = redisops("snapshot", "diff", first, first, "--fail-on-change")
        assert same.exit_code == 0 and "no differences" in same.stdout
    finally:
        lab_down(Path(state.dir), purge=True)


def spawn(binary: str, folder: Path, *options: str) -> tuple[subprocess.Popen, int]:
    """A server binary on a free loopback port, no saves; returned once it answers PING."""
    port = free_port()
    folder.mkdir()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder),
         "--logfile", str(folder / "server.log"), *options],
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return process, port
        except redis.ConnectionError:
            pass
        assert time.monotonic() < deadline, f"{binary} did not start; see {folder}"
        time.sleep(0.05)


VALKEY_SECRET = "valkey-primaryauth-0c4e7d1b"


def test_redis_62_valkey_9_and_a_cluster_node(tmp_path):
    from tests.test_backup_redis6 import redis6_binary

    servers = {
        "old": spawn(str(redis6_binary()), tmp_path / "old"),
        "valkey": spawn(str(valkey_server_binary()), tmp_path / "valkey",
                        "--primaryauth", VALKEY_SECRET),
        # Its own bus port: port+10000 overflows when the free port is above 55535.
        "cluster": spawn("redis-server", tmp_path / "cluster", "--cluster-enabled", "yes",
                         "--cluster-port", str(free_port()),
                         "--cluster-config-file", str(tmp_path / "nodes.conf")),
    }  # fmt: skip
    try:
        inventory = tmp_path / "inventory.yaml"
        hosts = "".join(
            f"    {name}: {{host: 127.0.0.1, port: {port}, connection: local}}\n"
            for name, (_, port) in servers.items()
        )
        inventory.write_text(f"all:\n  hosts:\n{hosts}")
        run = redisops(
            "-i", str(inventory), "-o", "json", "snapshot", "take", "--dest", str(tmp_path)
        )
        assert run.exit_code == 0, run.stdout
        path = Path(run.json()["summary"]["path"])
        snapshot = load_snapshot(path)
        cluster_port = servers["cluster"][1]
        live = redis.Redis(port=cluster_port, decode_responses=True)
        shards = raw(live, "CLUSTER", "SHARDS")
        node_info = redis.Redis(port=cluster_port).execute_command("CLUSTER", "INFO")
        live_info = dict(line.split(":", 1) for line in node_info.decode().split() if ":" in line)
    finally:
        for process, _ in servers.values():
            process.kill()
            process.wait(timeout=10)
    old = snapshot.host("old")
    assert old.record.server.startswith("Redis 6.2")
    assert old.record.item("latency_histogram").status == "skipped"
    assert old.record.item("latency_histogram").error.startswith("LATENCY HISTOGRAM needs Redis 7")
    assert {i.name for i in old.record.items if i.ok} == REDIS_ITEMS - {"latency_histogram"}
    valkey = snapshot.host("valkey")
    assert valkey.record.server.startswith("Valkey 9")
    assert {i.name for i in valkey.record.items if i.ok} == REDIS_ITEMS
    assert (
        valkey.config["masterauth" if "masterauth" in valkey.config else "primaryauth"] == "(set)"
    )
    unpacked = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    assert (
        VALKEY_SECRET.encode() not in unpacked and VALKEY_SECRET.encode() not in path.read_bytes()
    )
    node = snapshot.host("cluster")
    assert {i.name for i in node.record.items if i.ok} == REDIS_ITEMS | {
        "cluster_info",
        "cluster_shards",
    }
    assert node.cluster_info["cluster_state"] == live_info["cluster_state"]
    assert node.cluster_info["cluster_known_nodes"] == live_info["cluster_known_nodes"] == "1"
    assert len(node.cluster_shards) == len(shards)
    assert snapshot.host("old").cluster_info == {}


def test_keep_prunes_older_archives_and_diff_in_compares_the_two_newest(evidence, tmp_path):
    inventory = evidence["state"].inventory_path
    stranger = tmp_path / "notes.txt"
    stranger.write_text("not an archive")
    paths = []
    for _ in range(3):
        run = redisops("-i", inventory, "-o", "json", "snapshot", "take", "--dest", str(tmp_path),
                       "--keep", "2")  # fmt: skip
        assert run.exit_code == 0, run.stderr
        paths.append(run.json()["summary"]["path"])
    assert run.json()["summary"]["pruned"] == [paths[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(paths[1]).name, Path(paths[2]).name, "notes.txt"]
    )
    diff = redisops("-o", "json", "snapshot", "diff", "--in", str(tmp_path))
    assert diff.exit_code == 0, diff.stderr
    assert (diff.json()["summary"]["before"], diff.json()["summary"]["after"]) == (
        paths[1],
        paths[2],
    )
    both = redisops("snapshot", "diff", paths[1], "--in", str(tmp_path))
    assert both.exit_code == 2 and "not both" in both.stderr


def test_items_an_acl_denies_fail_alone_and_the_rest_is_captured(evidence, tmp_path):
    master, state = evidence["master"], evidence["state"]
    secret = "limited-user-pw-3a9e"
    master.execute_command(
        "ACL", "SETUSER", "limited", "on", f">{secret}", "~*", "+@all", "-config", "-acl",
        "-client|setname",
    )  # fmt: skip
    (tmp_path / "pw").write_text(secret)
    (tmp_path / "pw").chmod(0o600)
    inventory = tmp_path / "inventory.yaml"
    port = port_of(state, "node-1")
    inventory.write_text(
        "all:\n  hosts:\n    limited: {host: 127.0.0.1, port: "
        f"{port}, username: limited, password_file: {tmp_path / 'pw'}}}\n"
    )
    dest = tmp_path / "out"
    dest.mkdir()
    run = redisops("-i", str(inventory), "-o", "json", "snapshot", "take", "--dest", str(dest))
    assert run.exit_code == 1
    (row,) = run.json()["results"]
    assert row["data"]["failed"] == ["config", "acl"]
    assert row["error"].startswith("config: the server replied: ")
    path = Path(run.json()["summary"]["path"])
    node = load_snapshot(path).host("limited")
    assert node.config == {} and node.acl == ()
    assert node.record.item("config").error.startswith("the server replied: NOPERM")
    host_side = {"host_facts", "redis_log", "kernel_oom"}
    assert {i.name for i in node.record.items if i.ok} == REDIS_ITEMS - {
        "config",
        "acl",
    } - host_side
    # No host access in this inventory: host facts are skipped, not failed.
    assert {i.name for i in node.record.items if i.status == "skipped"} == host_side
    unpacked = zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    assert b"ACL" in unpacked and secret.encode() not in unpacked


def test_host_facts_over_ssh_and_a_refused_host_key(evidence, sshd, tmp_path):
    from redisops.snapshot.capture import take_snapshot

    state = evidence["state"]
    secret = Path(state.dir) / "secret"
    port = port_of(state, "node-1")
    good = sshd.host(name="over-ssh", port=port, password_file=str(secret))
    wrong = sshd.host(
        name="wrong-key", port=port, password_file=str(secret),
        ssh_known_hosts=str(sshd.wrong_known_hosts),
    )  # fmt: skip
    taken = take_snapshot([good, wrong], dest=tmp_path, timeout=5, parallel=4)
    snapshot = load_snapshot(taken.path)
    over_ssh = snapshot.host("over-ssh")
    assert over_ssh.record.ok
    assert {i.name for i in over_ssh.record.items if i.ok} == REDIS_ITEMS
    log = next(Path(state.dir, "node-1").glob("*.log")).read_text(errors="replace")
    assert over_ssh.redis_log.strip() and over_ssh.redis_log.strip() in log
    assert over_ssh.host_facts.overcommit_memory == int(
        Path("/proc/sys/vm/overcommit_memory").read_text()
    )
    refused = snapshot.host("wrong-key")
    assert not refused.record.ok
    facts = refused.record.item("host_facts")
    assert facts.status == "failed" and facts.error.startswith("host access: ")
    assert facts.error.startswith(f"host access: SSH host key of 127.0.0.1:{sshd.port} has CHANGED")
    assert {i.name for i in refused.record.items if i.ok} == REDIS_ITEMS - {
        "host_facts", "redis_log", "kernel_oom"
    }  # fmt: skip
