"""Read-only commands across a real Redis Cluster (issue 15 item 4).

One module lab: 3 shards x 1 replica, seeded with the lab's mixed keys plus hash-tagged keys
(one tag pinning 400 keys to one slot, and 20 `{user:N}` tags of 30 keys each). Every figure
is checked against what the servers say: DBSIZE, CLUSTER COUNTKEYSINSLOT, CLUSTER KEYSLOT.
The audit rules that need a cluster without replicas use a second, bare 3 x 0 cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from redisops.fleet.cluster import discover_clusters
from redisops.fleet.connection import build_client
from redisops.fleet.host import Host
from redisops.fleet.inventory import load_inventory
from redisops.lab import LabState, lab_down
from redisops.memory import slots
from redisops.memory.scanner import KeyFacts
from redisops.memory.slots import key_slot
from redisops.tuning.audit import evaluate
from redisops.tuning.facts import collect_facts
from redisops.tuning.rules import RULES
from tests.cli_helpers import redisops
from tests.plugins.lab import start_cluster_lab
from tests.servers import start_redis_server

SEED_KEYS = 1500
HOT_TAG = b"cart:42"
HOT_TAG_KEYS = 400
USER_TAGS = 20
KEYS_PER_USER = 30
DEADLINE = 30.0
SLOTS_TRIES = 1000


@dataclass(frozen=True)
class Cluster:
    state: LabState
    inventory: str
    password: str
    nodes: tuple[Host, ...]  # discovered: Host.node set

    def client(self, host: Host) -> redis.Redis:
        return build_client(host.host, host.port, password=self.password, timeout=10)

    def masters(self) -> list[Host]:
        return [h for h in self.nodes if h.node and h.node.role == "master"]

    def replicas(self) -> list[Host]:
        return [h for h in self.nodes if h.node and h.node.role == "replica"]

    def master_of(self, slot: int) -> Host:
        return next(h for h in self.masters() if any(a <= slot <= b for a, b in h.node.slots))


def key_on(cluster: Cluster, master: Host, prefix: str) -> bytes:
    """A key whose slot `master` serves."""
    for i in range(SLOTS_TRIES):
        key = f"{prefix}:{i}".encode()
        if cluster.master_of(key_slot(key)).name == master.name:
            return key
    raise AssertionError(f"no key of {master.name} in {SLOTS_TRIES} tries")


def discovered(inventory_path: str) -> tuple[Host, ...]:
    inventory = load_inventory(Path(inventory_path))
    names = {h.cluster_name for h in inventory.hosts if h.cluster_name}
    return discover_clusters(inventory.hosts, names, timeout=10, parallel=8).hosts


def wait_replicas_caught_up(cluster: Cluster) -> None:
    """Poll until every replica holds as many keys as its master (bounded)."""
    by_id = {h.node.node_id: h for h in cluster.masters()}
    deadline = time.monotonic() + DEADLINE
    while True:
        behind = []
        for replica in cluster.replicas():
            master = by_id[replica.node.master_id]
            with cluster.client(master) as m, cluster.client(replica) as r:
                if m.dbsize() != r.dbsize():
                    behind.append(replica.name)
        if not behind:
            return
        assert time.monotonic() < deadline, f"replicas behind: {behind}"
        time.sleep(0.05)


def write_tagged_keys(cluster: Cluster) -> None:
    """Hash-tagged keys, each written to the master that serves its slot."""
    keys = [b"{%s}:item:%d" % (HOT_TAG, i) for i in range(HOT_TAG_KEYS)]
    keys += [
        b"{user:%d}:field:%d" % (user, i) for user in range(USER_TAGS) for i in range(KEYS_PER_USER)
    ]
    by_master: dict[str, list[bytes]] = {}
    for key in keys:
        by_master.setdefault(cluster.master_of(key_slot(key)).name, []).append(key)
    for host in cluster.masters():
        with cluster.client(host) as client:
            pipe = client.pipeline(transaction=False)
            for key in by_master.get(host.name, []):
                pipe.set(key, b"x" * 100)
            pipe.execute()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = start_cluster_lab(tmp_path_factory.mktemp("cluster"), seed_keys=SEED_KEYS)
    try:
        password = (Path(state.dir) / "secret").read_text().strip()
        made = Cluster(state, state.inventory_path, password, discovered(state.inventory_path))
        write_tagged_keys(made)
        wait_replicas_caught_up(made)
        yield made
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3 x 0 cluster (masters without replicas), to be broken by the audit tests."""
    state = start_cluster_lab(tmp_path_factory.mktemp("bare"), replicas=0)
    try:
        password = (Path(state.dir) / "secret").read_text().strip()
        yield Cluster(state, state.inventory_path, password, discovered(state.inventory_path))
    finally:
        lab_down(Path(state.dir), purge=True)


def cli_json(cluster: Cluster, *args: str) -> tuple[int, dict]:
    run = redisops("-i", cluster.inventory, "-o", "json", *args)
    return run.exit_code, run.json()


def test_key_slot_is_cluster_keyslot(cluster):
    keys = [b"", b"a", b"user:1", b"{user:1}:x", b"{}", b"{}x", b"{", b"}{a}", b"a{b}{c}",
            b"{{a}}", b"x{y", b"\xff\x00{\xfe}", b"foo{}{bar}", "日本{語}".encode()]  # fmt: skip
    with cluster.client(cluster.masters()[0]) as client:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("CLUSTER", "KEYSLOT", key)
        assert pipe.execute() == [key_slot(key) for key in keys]


def test_memory_report_totals_and_slots_equal_what_the_servers_count(cluster):
    code, document = cli_json(cluster, "memory", "report", "--rate", "0")
    assert code == 0, document
    dbsize = {}
    for host in cluster.masters():
        with cluster.client(host) as client:
            dbsize[host.node.shard] = client.dbsize()
    assert sum(dbsize.values()) == SEED_KEYS + HOT_TAG_KEYS + USER_TAGS * KEYS_PER_USER

    (rollup,) = document["summary"]["clusters"]
    assert rollup["complete"] is True
    assert rollup["keys"] == sum(dbsize.values())
    shards = {s["shard"]: s for s in rollup["shards"]}
    assert {name: s["keys"] for name, s in shards.items()} == dbsize
    replicas = {h.name for h in cluster.replicas()}
    assert all(s["source"] in replicas for s in shards.values())  # one scan per shard, on a replica
    rows = {r["host"]: r["data"] for r in document["results"]}
    assert sorted(rows) == sorted(h.name for h in cluster.masters())
    by_slot = rollup["slots"]["keys_by_slot"]
    assert len(by_slot) == len(rollup["slots"]["bytes_by_slot"]) == 16384
    assert sum(r["slots"]["slots_with_keys"] for r in rows.values()) == 16384 - by_slot.count(0)
    assert all(r["slots"]["keys_by_slot"] is None for r in rows.values())  # the cluster's has them

    counted = {slot: keys for slot, keys in enumerate(by_slot) if keys}
    truth = {}
    for host in cluster.masters():
        slots = [s for a, b in host.node.slots for s in range(a, b + 1)]
        with cluster.client(host) as client:
            pipe = client.pipeline(transaction=False)
            for slot in slots:
                pipe.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)
            truth |= {s: n for s, n in zip(slots, pipe.execute(), strict=True) if n}
    assert len(truth) > 100
    assert counted == truth  # every non-empty slot, and no other

    hot_slot = key_slot(b"{%s}" % HOT_TAG)
    biggest = rollup["biggest_slots"][0]
    assert (biggest["slot"], biggest["keys"]) == (hot_slot, truth[hot_slot])
    assert biggest["shard"] == cluster.master_of(hot_slot).node.shard
    tags = rollup["slots"]["tags"]
    assert (tags[0]["tag"], tags[0]["slot"], tags[0]["keys"]) == ("cart:42", hot_slot, 400)
    patterns = {p["pattern"]: p for p in rollup["slots"]["tag_patterns"]}
    users = patterns["{user:{id}}"]
    assert (users["keys"], users["tags"], users["largest_tag_keys"]) == (600, 20, 30)
    assert rollup["slots"]["tags_exact"] is True


def test_memory_report_of_one_shard_by_limit(cluster):
    code, document = cli_json(cluster, "-l", "redis/shard-2", "memory", "report", "--rate", "0")
    assert code == 0, document
    (rollup,) = document["summary"]["clusters"]
    (shard,) = rollup["shards"]
    master = next(h for h in cluster.masters() if h.node.shard == "shard-2")
    with cluster.client(master) as client:
        assert (shard["shard"], shard["keys"]) == ("shard-2", client.dbsize())


def test_memory_summary_per_shard_and_totals(cluster):
    code, document = cli_json(cluster, "memory", "summary")
    assert code == 0, document
    (rollup,) = document["summary"]["clusters"]
    keys = {}
    for host in cluster.masters():
        with cluster.client(host) as client:
            keys[host.node.shard] = (host.name, client.dbsize())
    assert {s["shard"]: (s["master"], s["keys"]) for s in rollup["shards"]} == keys
    assert rollup["keys"] == sum(n for _, n in keys.values())
    used = {r["host"]: r["data"]["used_memory"] for r in document["results"]}
    assert rollup["bytes"] == sum(s["bytes"] for s in rollup["shards"])
    assert all(s["bytes"] == used[s["master"]] for s in rollup["shards"])
    table = redisops("-i", cluster.inventory, "memory", "summary")
    assert "redis/shard-1" in table.stdout and "cluster redis: 3 shards" in table.stdout


def test_slowlog_triage_digests_every_node_and_names_the_shard(cluster):
    one, two = sorted(cluster.masters(), key=lambda h: h.node.shard)[:2]
    replica = next(h for h in cluster.replicas() if h.node.master_id == two.node.node_id)
    clients = [cluster.client(host) for host in (one, two, replica)]
    try:
        for client in clients:
            client.slowlog_reset()
            client.config_set("slowlog-log-slower-than", 0)
        first, second = key_on(cluster, one, "lrange"), key_on(cluster, two, "zrange")
        clients[0].execute_command("LRANGE", first, 0, -1)
        clients[1].execute_command("ZRANGE", second, 0, -1)
        clients[2].execute_command("READONLY")
        clients[2].execute_command("ZRANGE", second, 0, -1)
        for client in clients:
            client.config_set("slowlog-log-slower-than", 10000)
        code, document = cli_json(cluster, "slowlog", "triage", "--top", "0")
    finally:
        for client in clients:
            client.config_set("slowlog-log-slower-than", 10000)
            client.close()
    assert code == 0, document
    by_command = {f["command"]: f for f in document["summary"]["fingerprints"]}
    assert by_command["LRANGE"]["shards"] == [f"redis/{one.node.shard}"]
    assert by_command["LRANGE"]["hosts"] == [one.name]
    assert by_command["ZRANGE"]["shards"] == [f"redis/{two.node.shard}"]
    assert sorted(by_command["ZRANGE"]["hosts"]) == sorted([two.name, replica.name])
    assert by_command["ZRANGE"]["count"] == 2
    rows = {r["host"]: r["data"] for r in document["results"]}
    assert len(rows) == 6
    assert (rows[replica.name]["cluster"], rows[replica.name]["shard"]) == (
        "redis",
        two.node.shard,
    )


def audit(cluster: Cluster, host: Host, rule_id: str) -> list[str]:
    """The findings of one rule on `host` as it is configured now (current values)."""
    facts, _ = collect_facts(host, timeout=10, rate_window=0)
    (rule,) = [r for r in RULES if r.id == rule_id]
    findings, unchecked = evaluate(facts, host.name, [rule])
    assert not unchecked
    return [finding.current for finding in findings]


@pytest.mark.parametrize(
    ("rule", "setting", "bad", "good"),
    [
        ("cluster-node-timeout", "cluster-node-timeout", "1000", "15000"),
        ("cluster-node-timeout", "cluster-node-timeout", "120000", "15000"),
        ("cluster-replica-validity-zero", "cluster-replica-validity-factor", "0", "10"),
        ("cluster-migration-barrier-zero", "cluster-migration-barrier", "0", "1"),
        ("cluster-replica-no-failover", "cluster-replica-no-failover", "yes", "no"),
    ],
)
def test_cluster_rule_fires_on_a_bad_value_only(cluster, rule, setting, bad, good):
    node = cluster.replicas()[0]
    with cluster.client(node) as client:
        before = client.config_get(setting)[setting]
        try:
            client.config_set(setting, bad)
            fired = audit(cluster, node, rule)
            client.config_set(setting, good)
            clean = audit(cluster, node, rule)
        finally:
            client.config_set(setting, before)
    assert len(fired) == 1 and bad in fired[0]
    assert clean == []


def test_full_coverage_rule_fires_only_on_a_master_without_replica(cluster, bare):
    lonely = bare.masters()[0]
    covered = cluster.masters()[0]
    with bare.client(lonely) as client:
        client.config_set("cluster-require-full-coverage", "yes")
        assert audit(bare, lonely, "cluster-full-coverage-without-replica") == [
            "yes, on a master with no replica"
        ]
        client.config_set("cluster-require-full-coverage", "no")
        assert audit(bare, lonely, "cluster-full-coverage-without-replica") == []
    with cluster.client(covered) as client:
        assert client.config_get("cluster-require-full-coverage") == {
            "cluster-require-full-coverage": "yes"
        }
    assert audit(cluster, covered, "cluster-full-coverage-without-replica") == []


def test_reads_when_down_rule_fires_below_three_shards_only(cluster, bare):
    assert audit(cluster, cluster.masters()[0], "cluster-reads-down-few-shards") == []
    emptied = bare.masters()[-1]  # gives up its slots: its cluster view has 2 shards left
    with bare.client(emptied) as client:
        slots = [s for a, b in emptied.node.slots for s in range(a, b + 1)]
        client.execute_command("CLUSTER", "DELSLOTS", *slots)
        client.config_set("cluster-allow-reads-when-down", "no")
        assert audit(bare, emptied, "cluster-reads-down-few-shards") == ["no, with 2 shard(s)"]
        client.config_set("cluster-allow-reads-when-down", "yes")
        assert audit(bare, emptied, "cluster-reads-down-few-shards") == []


def test_cluster_rules_are_not_judged_on_standalone_servers(tmp_path):
    process, port = start_redis_server(tmp_path, "--cluster-node-timeout", "1000")
    try:
        facts, _ = collect_facts(Host("solo", "127.0.0.1", port), timeout=10, rate_window=0)
    finally:
        process.kill()
        process.wait()
    cluster_rules = [r for r in RULES if r.cluster_only]
    assert len(cluster_rules) == 6
    assert facts.setting("cluster-node-timeout") == "1000"  # bad, were it a cluster node
    assert evaluate(facts, "node-1", cluster_rules) == ((), ())


def test_config_diff_finds_a_setting_changed_on_one_node(cluster):
    node = cluster.replicas()[1]
    with cluster.client(node) as client:
        before = client.config_get("hash-max-listpack-entries")["hash-max-listpack-entries"]
        client.config_set("hash-max-listpack-entries", int(before) + 1)
        try:
            code, document = cli_json(cluster, "config", "diff", "--fail-on-drift")
        finally:
            client.config_set("hash-max-listpack-entries", before)
    assert code == 1, document
    (drift,) = document["summary"]["clusters"]
    assert drift["cluster"] == "redis" and len(drift["nodes"]) == 6
    (setting,) = [d for d in drift["drift"] if d["setting"] == "hash-max-listpack-entries"]
    assert [(v["value"], sorted(v["hosts"])) for v in setting["values"]] == [
        (before, sorted(h.name for h in cluster.nodes if h.name != node.name)),
        (str(int(before) + 1), [node.name]),
    ]
    code, document = cli_json(cluster, "config", "diff", "--fail-on-drift")
    assert code == 0 and document["summary"]["clusters"][0]["drift"] == []


def test_tag_counting_stays_bounded_and_says_so(monkeypatch):
    monkeypatch.setattr(slots, "MAX_TAGS", 100)
    tally = slots.SlotTally(":", None)
    facts = []
    for i in range(1000):
        facts.append(KeyFacts(0, b"{once:%d}:x" % i, "string", 10, -1))
        facts.append(KeyFacts(0, b"{hot}:%d" % i, "string", 20, -1))
    for start in range(0, len(facts), 100):
        tally.add(facts[start : start + 100])
    view = tally.view()
    assert len(tally.tags) <= 100
    assert sum(view.keys_by_slot) == 2000  # slots stay exact
    assert view.bytes_by_slot[key_slot(b"{hot}")] == 20 * 1000
    hot = view.tags[0]
    assert (hot.tag, hot.slot) == ("hot", key_slot(b"{hot}"))
    assert view.tags_exact is False and view.tag_error_keys == tally.floor > 0
    assert 1000 - view.tag_error_keys <= hot.keys <= 1000
    assert (view.tagged_keys, view.tagged_bytes) == (2000, 30000)
