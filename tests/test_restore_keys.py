"""`backup restore-keys` against real servers: selection, no overwrite without --replace, dry
run, refusals, compressed and plain sources, bad input, resume after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml

from redisops.lab import lab_down
from tests.cli_helpers import redisops
from tests.plugins.lab import start_lab
from tests.rdb_builder import HASH_LISTPACK, RdbBuilder, _listpack_backlen, packed, string_value
from tests.servers import free_port, start_redis_server, valkey_server_binary

WAIT = 60.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """node-1 (master, 300 seeded keys of every type, some with TTLs) and node-2 (replica),
    with two backups of node-1: zstd-compressed (catalogued) and plain."""
    folder = tmp_path_factory.mktemp("restore-keys")
    state = start_lab(folder / "lab", replicas=1, sentinels=0, seed_keys=300)
    try:
        dest = folder / "backups"
        taken = {}
        for compress in ("zstd", "none"):
            run = cli(state, "-l", "node-1", "-o", "json", "backup", "run", "--dest", str(dest),
                      "--compress", compress)  # fmt: skip
            assert run.exit_code == 0, run.stderr
            taken[compress] = run.json()["results"][0]["data"]
        c = client(state)
        snapshot = {k: (c.dump(k), c.pexpiretime(k)) for k in c.scan_iter(count=1000)}
        assert len(snapshot) == 300 and sum(t > 0 for _, t in snapshot.values()) > 50
        yield state, dest, taken, snapshot
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def cli(state, *args: str, **kwargs):
    return redisops("-i", state.inventory_path, *args, **kwargs)


def client(state, name: str = "node-1") -> redis.Redis:
    port = next(p.port for p in state.processes if p.name == name)
    password = (Path(state.dir) / "secret").read_text().strip()
    return redis.Redis(port=port, password=password, socket_timeout=10)


def reset(lab) -> redis.Redis:
    """node-1 back to the backed-up data (by DUMP/RESTORE of redis-py, not the code under test)."""
    state, _, _, snapshot = lab
    c = client(state)
    c.flushall()
    pipe = c.pipeline(transaction=False)
    for key, (dumped, expire) in snapshot.items():
        pipe.restore(key, expire if expire > 0 else 0, dumped, absttl=expire > 0)
    pipe.execute()
    return c


def logical(c: redis.Redis, keys) -> dict:
    """type, value and absolute expiry (ms) of each key; None for a missing key."""
    out = {}
    for key in keys:
        kind = c.type(key).decode()
        value = {
            "none": lambda k: None,
            "string": c.get,
            "list": lambda k: c.lrange(k, 0, -1),
            "set": lambda k: sorted(c.smembers(k)),
            "zset": lambda k: c.zrange(k, 0, -1, withscores=True),
            "hash": lambda k: sorted(c.hgetall(k).items()),
            "stream": lambda k: c.xrange(k),
        }[kind](key)
        out[key] = (kind, value, c.pexpiretime(key))
    return out


def said(run) -> str:
    """stderr with runs of spaces (table padding) folded."""
    return " ".join(run.stderr.split())


def restores(c: redis.Redis) -> int:
    """RESTORE commands the server has run (INFO commandstats)."""
    return c.info("commandstats").get("cmdstat_restore", {}).get("calls", 0)


def restore_keys(state, dest, *args, target="node-1", **kwargs):
    return cli(state, "-l", target, "-o", "json", "backup", "restore-keys", *args,
               "--dest", str(dest), **kwargs)  # fmt: skip


def test_selected_keys_come_back_equal_and_nothing_else_changes(lab):
    state, dest, _, snapshot = lab
    c = reset(lab)
    selected = sorted(k for k in snapshot if k.startswith((b"user:", b"session:")))
    others = sorted(set(snapshot) - set(selected))
    assert len(selected) > 40 and any(snapshot[k][1] > 0 for k in selected)  # with TTLs
    expected = logical(c, selected)
    c.delete(*selected[1:])
    c.set(selected[0], b"changed by a bad script")
    c.set(others[0], b"changed too, outside the selection")
    c.set(b"user-new-key", b"x")  # not matched: the glob is user:*
    outside_before = logical(c, [*others, b"user-new-key"])

    run = restore_keys(state, dest, "latest", "--match", "user:*", "--match", "session:*", "--yes")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["restored"], data["kept"], data["failed"]) == (len(selected) - 1, 1, 0)
    after = logical(c, selected)
    assert {k: v for k, v in after.items() if k != selected[0]} == {
        k: v for k, v in expected.items() if k != selected[0]
    }
    assert c.get(selected[0]) == b"changed by a bad script"  # not overwritten without --replace
    assert logical(c, [*others, b"user-new-key"]) == outside_before
    assert c.dbsize() == 301

    run = restore_keys(state, dest, "latest", "--match", "user:*", "--match", "session:*",
                       "--replace", "--yes")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert logical(c, selected) == expected
    assert logical(c, [*others, b"user-new-key"]) == outside_before
    log = (Path(os.environ["XDG_STATE_HOME"]) / "redisops" / "restore-keys.jsonl").read_text()
    lines = [yaml.safe_load(line) for line in log.splitlines()]
    assert [(e["replace"], e["restored"], e["outcome"]) for e in lines] == [
        (False, len(selected) - 1, "restored"),
        (True, len(selected), "restored"),
    ]


def test_dry_run_changes_nothing_and_shows_the_plan(lab):
    state, dest, taken, snapshot = lab
    c = reset(lab)
    users = [k for k in snapshot if k.startswith(b"user:")]
    c.delete(*users[:10])
    c.set(users[10], b"changed")
    before, calls = logical(c, c.scan_iter(count=1000)), restores(c)
    run = cli(state, "-l", "node-1", "backup", "restore-keys", taken["zstd"]["backup_id"],
              "--dest", str(dest), "--match", "user:*", "--replace", "--dry-run")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert f"selected {len(users)} of 300 in the backup" in said(run)
    assert f"restore {len(users)} (10 new, {len(users) - 10} overwritten)" in said(run)
    assert "would overwrite (--replace)" in run.stderr and "dry run: " in run.stderr
    assert logical(c, c.scan_iter(count=1000)) == before and restores(c) == calls


def test_off_a_terminal_without_yes_nothing_is_sent(lab):
    state, dest, _, snapshot = lab
    c = reset(lab)
    c.delete(*[k for k in snapshot if k.startswith(b"user:")])
    calls = restores(c)
    run = restore_keys(state, dest, "latest", "--match", "user:*")
    assert run.exit_code == 3 and "--yes not given" in run.stderr
    assert restores(c) == calls


def test_a_replica_target_is_refused(lab):
    state, dest, _, _ = lab
    replica = client(state, "node-2")
    calls = restores(replica)
    run = cli(state, "-l", "node-2", "backup", "restore-keys", "latest", "--from-host", "node-1",
              "--dest", str(dest), "--all", "--yes")  # fmt: skip
    assert run.exit_code == 3
    assert "cannot restore keys into node-2: node-2 is a replica" in run.stderr
    assert restores(replica) == calls


def test_nothing_selected_is_refused_never_everything(lab):
    state, dest, _, _ = lab
    run = restore_keys(state, dest, "latest", "--type", "hash", "--yes")
    assert run.exit_code == 2 and "no keys selected" in run.stderr


def test_compressed_catalogue_backup_and_plain_file_load_the_same(lab):
    state, dest, taken, snapshot = lab
    c = reset(lab)
    expected = logical(c, snapshot)
    plain = Path(taken["none"]["path"])
    plain_file = next(p for p in plain.iterdir() if p.name.endswith(".rdb"))
    for source in (taken["zstd"]["backup_id"], str(plain_file)):
        c.flushall()
        run = restore_keys(state, dest, source, "--all", "--yes")
        assert run.exit_code == 0, run.stderr
        assert run.json()["results"][0]["data"]["restored"] == 300
        assert logical(c, snapshot) == expected and c.dbsize() == 300


def test_type_and_db_narrow_and_keys_from_names(lab, tmp_path):
    state, dest, _, snapshot = lab
    c = reset(lab)
    hashes = [k for k in snapshot if c.type(k) == b"hash"]
    listed = [k for k in snapshot if k.startswith(b"leaderboard:")][:3]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_bytes(b"\n".join(listed) + b"\nno-such-key\n")
    c.flushall()
    run = restore_keys(state, dest, "latest", "--match", "*", "--type", "hash", "--db", "0",
                       "--keys-from", str(keys_file), "--yes")  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert sorted(c.scan_iter(count=1000)) == sorted(hashes)  # leaderboards are zsets
    c.flushall()
    run = restore_keys(state, dest, "latest", "--keys-from", str(keys_file), "--yes")
    assert sorted(c.scan_iter(count=1000)) == sorted(listed)
    run = restore_keys(state, dest, "latest", "--match", "*", "--db", "1", "--yes")
    assert run.exit_code == 0 and "0 keys to restore" not in run.stdout
    assert c.dbsize() == 3


@pytest.mark.parametrize(
    ("mode", "said_so"),
    [
        ("--yes", "0 keys of 300 in the backup selected: nothing was sent"),
        ("--dry-run", "selected 0 of 300 in the backup"),
    ],
)
def test_a_pattern_matching_nothing_sends_nothing(lab, mode, said_so):
    state, dest, _, _ = lab
    c = reset(lab)
    calls, keys = restores(c), c.dbsize()
    run = cli(state, "-l", "node-1", "backup", "restore-keys", "latest", "--dest", str(dest),
              "--match", "nothing-like-this:*", mode)  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert said_so in said(run)
    assert restores(c) == calls and c.dbsize() == keys


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupted_backup_stops_before_any_key_is_sent(lab, tmp_path, damage):
    state, dest, taken, _ = lab
    c = reset(lab)
    c.flushall()
    plain = Path(taken["none"]["path"])
    data = bytearray(next(p for p in plain.iterdir() if p.name.endswith(".rdb")).read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x55
    else:
        del data[len(data) * 3 // 4 :]
    bad = tmp_path / "bad.rdb"
    bad.write_bytes(bytes(data))
    calls = restores(c)
    run = restore_keys(state, dest, str(bad), "--all", "--yes")
    assert run.exit_code == 3, run.stderr
    assert "bad.rdb does not verify" in run.stderr and "no key was sent" in run.stderr
    assert restores(c) == calls and c.dbsize() == 0


def test_a_catalogued_backup_whose_file_changed_is_refused(lab, tmp_path):
    state, dest, taken, _ = lab
    c = reset(lab)
    folder = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(dest), str(folder)], check=True)
    backup = folder / "node-1" / taken["none"]["backup_id"]
    stored = next(p for p in backup.iterdir() if p.name.endswith(".rdb"))
    stored.write_bytes(stored.read_bytes() + b"\n")  # Redis would load it; the manifest differs
    calls = restores(c)
    run = restore_keys(state, folder, taken["none"]["backup_id"], "--all", "--yes")
    assert run.exit_code == 3 and "SHA-256 differs from the manifest" in run.stderr
    assert restores(c) == calls


def _bad_listpack() -> bytes:
    """A hash listpack whose header is right and whose second entry has no valid encoding:
    Redis with sanitize-dump-payload yes rejects it."""
    body = b"\x81f" + _listpack_backlen(2) + b"\xf6\x00" + _listpack_backlen(2)
    return (6 + len(body) + 1).to_bytes(4, "little") + (2).to_bytes(2, "little") + body + b"\xff"


def test_a_rejected_payload_is_named_and_the_rest_go_on(tmp_path):
    builder = RdbBuilder(10)
    builder.key("a", string_value("1"))
    builder.key("b", string_value("two"), idle=5000)
    builder.key("damaged", packed(HASH_LISTPACK, _bad_listpack()))
    builder.key("c", string_value("three"), expire_ms=int(time.time() * 1000) + 3_600_000)
    rdb = tmp_path / "built.rdb"
    rdb.write_bytes(builder.build())
    process, port = start_redis_server(tmp_path, "--sanitize-dump-payload", "yes")
    try:
        inventory = tmp_path / "inventory.yaml"
        hosts = {"t1": {"host": "127.0.0.1", "port": port, "connection": "local"}}
        inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        run = redisops("-i", str(inventory), "-l", "t1", "-o", "json", "backup", "restore-keys",
                       str(rdb), "--all", "--yes")  # fmt: skip
        assert run.exit_code == 1
        data = run.json()["results"][0]["data"]
        assert (data["restored"], data["failed"]) == (3, 1)
        assert data["failed_keys"][0]["key"] == "damaged"
        assert "error: t1: db0 damaged: ERR Bad data format" in run.stderr
        c = redis.Redis(port=port)
        assert c.object("idletime", "b") >= 5000  # IDLETIME from the file's LRU data
        assert c.mget("a", "b", "c") == [b"1", b"two", b"three"] and not c.exists("damaged")
        assert 3_500_000 < c.pttl("c") <= 3_600_000
    finally:
        process.kill()
        process.wait()


def test_expired_keys_are_skipped_and_counted(tmp_path):
    builder = RdbBuilder(10)
    builder.key("live", string_value("1"))
    builder.key("gone", string_value("2"), expire_ms=int(time.time() * 1000) - 1000)
    rdb = tmp_path / "built.rdb"
    rdb.write_bytes(builder.build())
    process, port = start_redis_server(tmp_path)
    try:
        inventory = tmp_path / "inventory.yaml"
        hosts = {"t1": {"host": "127.0.0.1", "port": port, "connection": "local"}}
        inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
        run = redisops("-i", str(inventory), "-l", "t1", "backup", "restore-keys", str(rdb),
                       "--all", "--dry-run")  # fmt: skip
        assert run.exit_code == 0, run.stderr
        assert "expired 1 already past their TTL: skipped" in said(run)
        assert "db0 gone [string] (expired 20" in said(run)
        run = redisops("-i", str(inventory), "-l", "t1", "backup", "restore-keys", str(rdb),
                       "--all", "--yes")  # fmt: skip
        assert run.exit_code == 0, run.stderr
        assert "2 of 2 keys in the backup selected: 1 restored" in said(run)
        assert "1 expired, 0 rejected" in said(run)
        assert redis.Redis(port=port).keys() == [b"live"]
    finally:
        process.kill()
        process.wait()


def progress(state_home: Path) -> int:
    """The `position` the state file of a running restore holds (0 before there is one)."""
    for path in (state_home / "redisops" / "restore-keys").glob("node-1-*.json"):
        try:
            return yaml.safe_load(path.read_text())["position"]
        except (OSError, TypeError, KeyError):
            return 0  # replaced between the listing and the read
    return 0


def test_resume_after_kill_9_restores_the_rest_without_duplicates(lab, tmp_path, state_home):
    state, dest, taken, snapshot = lab
    c = reset(lab)
    expected = logical(c, snapshot)
    c.flushall()
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "XDG_STATE_HOME": str(state_home)}
    command = [sys.executable, "-m", "redisops", "-i", state.inventory_path, "-l", "node-1",
               "backup", "restore-keys", taken["zstd"]["backup_id"], "--dest", str(dest),
               "--all", "--rate", "100", "--yes"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while progress(state_home) < 30:  # the state file says a few batches came back
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        state_files = list((state_home / "redisops" / "restore-keys").glob("node-1-*.json"))
        assert len(state_files) == 1
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
    partial = c.dbsize()
    assert 30 <= partial < 300
    calls = restores(c)
    run = restore_keys(state, dest, taken["zstd"]["backup_id"], "--all", "--yes")
    assert run.exit_code == 0, run.stderr
    data = run.json()["results"][0]["data"]
    assert (data["kept"], data["failed"]) == (0, 0)  # nothing sent twice
    assert data["restored"] == 300 - partial == restores(c) - calls
    assert logical(c, snapshot) == expected and c.dbsize() == 300
    assert not state_files[0].exists()


def _valkey(folder: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [str(valkey_server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--dir", str(folder), "--logfile", str(folder / "valkey.log")],
    )  # fmt: skip
    deadline = time.monotonic() + WAIT
    while True:
        try:
            redis.Redis(port=port).ping()
            return process, port
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "valkey-server did not start"
            time.sleep(0.05)


def _inventory(folder: Path, **ports: int) -> str:
    hosts = {name: {"host": "127.0.0.1", "port": port, "connection": "local"}
             for name, port in ports.items()}  # fmt: skip
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return str(path)


def test_valkey_9_both_ways_and_types_an_older_server_cannot_load(lab, tmp_path):
    _, _, taken, snapshot = lab
    expected = logical(reset(lab), snapshot)
    plain = next(p for p in Path(taken["none"]["path"]).iterdir() if p.name.endswith(".rdb"))
    valkey, valkey_port = _valkey(tmp_path)
    old, old_port = start_redis_server(tmp_path)
    try:
        inventory = _inventory(tmp_path, valkey=valkey_port, redis70=old_port)
        # a Redis 7.0 backup (RDB 10) into Valkey 9
        run = redisops("-i", inventory, "-l", "valkey", "backup", "restore-keys", str(plain),
                       "--all", "--yes")  # fmt: skip
        assert run.exit_code == 0, run.stderr
        v = redis.Redis(port=valkey_port)
        assert logical(v, snapshot) == expected
        # a Valkey 9 backup (format 80) into Redis 7.0: types it knows are labelled RDB 10;
        # a set listpack (Redis 7.2's type 20) it cannot load is named, and refused
        v.flushall()
        v.set("s", "text")
        v.hset("h", mapping={"f": "1", "g": "2"})
        v.sadd("st", "a", "b")
        v.save()
        dump = tmp_path / "dump.rdb"
        assert dump.read_bytes()[:9] == b"VALKEY080"
        args = ("-i", inventory, "-l", "redis70", "backup", "restore-keys", str(dump), "--all")
        run = redisops(*args, "--yes")
        assert run.exit_code == 3
        assert "1 selected key(s) are of a type Redis 7.0.15 cannot load from Valkey RDB " \
            "format 80" in said(run)  # fmt: skip
        assert "db0 st [set] (type byte 20)" in said(run)
        r = redis.Redis(port=old_port)
        assert r.dbsize() == 0
        run = redisops(*args, "--yes", "--force")
        assert run.exit_code == 0, run.stderr
        assert r.get("s") == b"text" and r.hgetall("h") == {b"f": b"1", b"g": b"2"}
        assert not r.exists("st")
    finally:
        for process in (valkey, old):
            process.kill()
            process.wait()


def test_ctrl_c_stops_at_once_and_says_what_came_back(lab, state_home):
    state, dest, taken, _ = lab
    c = reset(lab)
    c.flushall()
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "XDG_STATE_HOME": str(state_home)}
    command = [sys.executable, "-m", "redisops", "-i", state.inventory_path, "-l", "node-1",
               "backup", "restore-keys", taken["none"]["backup_id"], "--dest", str(dest),
               "--all", "--rate", "50", "--yes"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while progress(state_home) < 10:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)  # at once: not the ~6 s the rest would take
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    text = " ".join(stderr.decode().split())
    assert "interrupted: SIGINT;" in text and "key(s) restored into node-1 before the stop" in text
    restored = int(text.split("interrupted: SIGINT; ")[1].split(" key(s)")[0])
    assert 10 <= restored <= c.dbsize() < 300
    log = (state_home / "redisops" / "restore-keys.jsonl").read_text().splitlines()
    assert yaml.safe_load(log[-1])["outcome"] == "interrupted"


@pytest.mark.parametrize(
    "pattern",
    ["user:1[0-2]*", "session:?*", "*:[^p]*", "leader*", "stats:page:1?:views", "[a-f]*", "*"],
)
def test_match_selects_what_scan_match_selects(lab, pattern):
    from redisops.backup.restore_keys import KeySelection

    _, _, _, snapshot = lab
    c = reset(lab)
    selected = KeySelection(patterns=(pattern,)).matcher()
    assert sorted(k for k in snapshot if selected(0, k, "string")) == sorted(
        set(c.scan_iter(match=pattern, count=1000))
    )
