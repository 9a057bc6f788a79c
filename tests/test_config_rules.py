"""`config audit`, rule by rule, against real servers with settings deliberately broken.

A module lab (master node-1, replicas node-2..4) is broken in a different way on each node and
audited once while a light writer runs on the master (for the write rate). A plain
redis-server without a password stands in for the open-server rules. Host-fact rules are
checked against this machine's own /proc and /sys, read here independently.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import redis
import yaml

from redisops.fleet.connection import build_client
from redisops.fleet.host import Host
from redisops.fleet.inventory import load_inventory
from redisops.lab import LabState, lab_down
from redisops.results import HostResult, PartialFailure
from redisops.severity import Severity
from redisops.tuning.audit import FleetAudit, HostAudit, audit_fleet, audit_host, evaluate
from redisops.tuning.facts import Facts, collect_facts
from redisops.tuning.rules import (
    BACKLOG_SECONDS,
    DEFAULT_SAVE,
    FORK_SHARE,
    REPLICA_BUFFER_HARD,
    RESERVED_FDS,
)
from redisops.tuning.units import MIB, ceil_mib, redis_size
from tests.cli_helpers import redisops
from tests.plugins.lab import start_lab
from tests.servers import free_port, start_redis_server

LAB_NODES = 4  # node-1..4 share 127.0.0.1, so they share its memory
WRITER_SECONDS = 10  # upper bound; the writer stops as soon as the audit is done
OPEN_FILES_LIMIT = 1024


def read_proc(path: str) -> str:
    return Path(path).read_text()


def mem_total() -> int:
    line = next(x for x in read_proc("/proc/meminfo").splitlines() if x.startswith("MemTotal:"))
    return int(line.split()[1]) * 1024


def node_client(host: Host, password: str) -> redis.Redis:
    return build_client(host.host, host.port, password=password, timeout=5, decode=True)


@dataclass(frozen=True)
class Broken:
    state: LabState
    password: str
    hosts: dict[str, Host]
    audit: FleetAudit

    def client(self, name: str) -> redis.Redis:
        return node_client(self.hosts[name], self.password)

    def result(self, name: str) -> HostAudit:
        row = next(r for r in self.audit.results if r.host == name)
        assert row.ok, row.error
        return row.data


def findings(audit: HostAudit, rule: str) -> list:
    return [finding for finding in audit.findings if finding.rule == rule]


def only(audit: HostAudit, rule: str):
    found = findings(audit, rule)
    assert len(found) == 1, [f.rule for f in audit.findings]
    return found[0]


def write_lightly(client: redis.Redis, stop: threading.Event) -> None:
    """About 100 KB/s of SETs on 100 keys, so memory does not grow; bounded in time."""
    deadline = time.monotonic() + WRITER_SECONDS
    while not stop.is_set() and time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for i in range(100):
            pipe.set(f"load:{i}", "v" * 50)
        pipe.execute()
        time.sleep(0.05)


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broken]:
    state = start_lab(tmp_path_factory.mktemp("broken"), replicas=LAB_NODES - 1, sentinels=0)
    password = (Path(state.dir) / "secret").read_text().strip()
    inventory = load_inventory(state.inventory_path)
    hosts = {host.name: host for host in inventory.hosts}
    ram = mem_total()
    try:
        c1, c2, c3, c4 = (node_client(hosts[f"node-{i}"], password) for i in range(1, 5))
        # node-1, the master: no persistence, a tiny backlog, no maxmemory.
        c1.config_set("save", "")
        c1.config_set("repl-backlog-size", "16kb")
        # node-2: AOF fsync on every write, small replica buffers, slowlog off, maxmemory > RAM.
        c2.config_set("appendonly", "yes")
        c2.config_set("appendfsync", "always")
        c2.config_set("client-output-buffer-limit", "replica 16mb 4mb 10")
        c2.config_set("slowlog-log-slower-than", "-1")
        c2.config_set("maxmemory", str(2 * ram))
        # node-3: an empty slowlog, maxmemory over the budget but under RAM, latency monitor on.
        c3.config_set("slowlog-max-len", "0")
        c3.config_set("maxmemory", str(int(ram * 0.9)))
        c3.config_set("latency-monitor-threshold", "100")
        # node-4: nearly full and noeviction.
        c4.config_set("maxmemory", str(int(c4.info("memory")["used_memory"] / 0.85)))
        stop = threading.Event()
        writer = threading.Thread(target=write_lightly, args=(c1, stop), daemon=True)
        writer.start()
        try:
            audit = audit_fleet(
                inventory.hosts,
                inventory_hosts=inventory.hosts,
                timeout=5,
                parallel=4,
                rate_window=1.0,
            )
        finally:
            stop.set()
            writer.join(timeout=WRITER_SECONDS)
        for client in (c1, c2, c3, c4):
            client.close()
        yield Broken(state, password, hosts, audit)
    finally:
        lab_down(Path(state.dir), purge=True)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, int]]:
    """No password, protected mode off (on loopback only), tcp-backlog over somaxconn, THP
    left on for the process, and an open-files limit lowered under maxclients after start."""
    somaxconn = int(read_proc("/proc/sys/net/core/somaxconn"))
    folder = tmp_path_factory.mktemp("open")
    process, port = start_redis_server(
        folder,
        *("--protected-mode", "no", "--tcp-backlog", str(somaxconn * 2)),
        *("--disable-thp", "no"),
    )
    resource.prlimit(process.pid, resource.RLIMIT_NOFILE, (OPEN_FILES_LIMIT, OPEN_FILES_LIMIT))
    try:
        yield Host(name="open", host="127.0.0.1", port=port, connection="local"), process.pid
    finally:
        process.kill()
        process.wait(timeout=10)


def open_facts(host: Host) -> Facts:
    facts, access_error = collect_facts(host, timeout=5, rate_window=0)
    assert access_error is None
    return facts


def rules_fired(facts: Facts) -> set[str]:
    return {finding.rule for finding in evaluate(facts, "open")[0]}


# --- memory ----------------------------------------------------------------------------------


def test_maxmemory_unset_recommends_a_budget_from_the_machines_memory(broken):
    finding = only(broken.result("node-1"), "maxmemory-unset")
    budget = int(mem_total() * FORK_SHARE / LAB_NODES) // MIB * MIB
    assert finding.severity is Severity.warning
    assert finding.current == "0 (no limit)"
    assert finding.value == redis_size(budget)
    assert f"shared by {LAB_NODES} instances" in finding.recommended
    assert finding.fix == f"redisops -l node-1 config apply --set maxmemory={redis_size(budget)}"
    assert broken.result("node-1").system.mem_total == mem_total()


def test_maxmemory_over_ram_is_critical(broken):
    finding = only(broken.result("node-2"), "maxmemory-over-ram")
    assert finding.severity is Severity.critical
    assert finding.current.startswith(redis_size(2 * mem_total()))
    assert not findings(broken.result("node-2"), "maxmemory-over-budget")


def test_maxmemory_over_budget(broken):
    finding = only(broken.result("node-3"), "maxmemory-over-budget")
    assert finding.current == redis_size(int(mem_total() * 0.9))
    assert finding.value == redis_size(int(mem_total() * FORK_SHARE / LAB_NODES) // MIB * MIB)
    assert not findings(broken.result("node-3"), "maxmemory-over-ram")


def test_eviction_cannot_free_when_nearly_full_with_noeviction(broken):
    finding = only(broken.result("node-4"), "eviction-cannot-free")
    assert finding.current.startswith("noeviction; ")
    assert finding.value is None  # a cache or a store: only the operator knows
    assert not findings(broken.result("node-1"), "eviction-cannot-free")


def test_eviction_cannot_free_with_a_volatile_policy_and_no_ttl(broken):
    replica, master = broken.client("node-4"), broken.client("node-1")
    host = broken.hosts["node-4"]
    replica.config_set("maxmemory-policy", "volatile-lru")
    try:
        facts, _ = collect_facts(host, timeout=5, rate_window=0)
        assert facts.keys_with_ttl == 0
        fired = {f.rule: f.current for f in evaluate(facts, "node-4")[0]}
        assert fired["eviction-cannot-free"].startswith("volatile-lru, no key has a TTL; ")
        master.set("expiring", "x", ex=3600)
        deadline = time.monotonic() + 10
        while not replica.exists("expiring"):
            assert time.monotonic() < deadline, "the key never reached the replica"
            time.sleep(0.05)
        facts, _ = collect_facts(host, timeout=5, rate_window=0)
        assert "eviction-cannot-free" not in {f.rule for f in evaluate(facts, "node-4")[0]}
    finally:
        master.delete("expiring")
        replica.config_set("maxmemory-policy", "noeviction")
        replica.close()
        master.close()


# --- persistence and replication ------------------------------------------------------------


def test_persistence_off_on_a_master_with_replicas_is_critical(broken):
    finding = only(broken.result("node-1"), "persistence-off-with-replicas")
    assert finding.severity is Severity.critical
    assert finding.current == f'save "", appendonly no, {LAB_NODES - 1} replica(s)'
    assert finding.value == DEFAULT_SAVE
    # Replicas with the lab's save points are fine.
    assert not findings(broken.result("node-3"), "persistence-off-with-replicas")


def test_appendfsync_always(broken):
    finding = only(broken.result("node-2"), "appendfsync-always")
    assert (finding.current, finding.value) == ("always (appendonly yes)", "everysec")
    assert not findings(broken.result("node-1"), "appendfsync-always")


def test_repl_backlog_too_small_for_the_measured_write_rate(broken):
    audit = broken.result("node-1")
    finding = only(audit, "repl-backlog-small")
    assert audit.write_rate and audit.write_rate > 0
    assert finding.current.startswith("16kb (holds ")
    assert finding.value == redis_size(ceil_mib(audit.write_rate * BACKLOG_SECONDS))


def test_replica_output_buffer_too_small(broken):
    finding = only(broken.result("node-2"), "replica-buffer-small")
    assert finding.current == "replica 16mb 4mb 10"
    assert finding.value.startswith(f"replica {redis_size(REPLICA_BUFFER_HARD)} 64mb 10")
    # Redis's default (256mb 64mb 60) holds the writer's rate.
    assert not findings(broken.result("node-3"), "replica-buffer-small")


# --- observability ---------------------------------------------------------------------------


def test_slowlog_disabled(broken):
    finding = only(broken.result("node-2"), "slowlog-disabled")
    assert (finding.current, finding.value) == ("-1", "10000")
    assert not findings(broken.result("node-1"), "slowlog-disabled")


def test_slowlog_max_len_zero(broken):
    finding = only(broken.result("node-3"), "slowlog-max-len-zero")
    assert (finding.current, finding.value) == ("0", "128")
    assert not findings(broken.result("node-1"), "slowlog-max-len-zero")


def test_latency_monitor_off(broken):
    assert only(broken.result("node-1"), "latency-monitor-off").value == "100"
    assert not findings(broken.result("node-3"), "latency-monitor-off")


# --- access ----------------------------------------------------------------------------------


def test_protected_mode_off_without_password_is_critical(open_server):
    host, _ = open_server
    facts = open_facts(host)
    fired = rules_fired(facts)
    assert "protected-mode-off-without-password" in fired
    assert "default-user-nopass" not in fired  # the critical finding says it already


def test_default_user_without_password(open_server, broken):
    host, _ = open_server
    client = build_client(host.host, host.port, password=None, timeout=5)
    client.config_set("protected-mode", "yes")
    try:
        fired = rules_fired(open_facts(host))
    finally:
        client.config_set("protected-mode", "no")
        client.close()
    assert "default-user-nopass" in fired
    assert "protected-mode-off-without-password" not in fired
    assert not findings(broken.result("node-1"), "default-user-nopass")  # the lab has a password


def test_dangerous_commands_open_to_default_and_passwordless_users(open_server, broken):
    host, _ = open_server
    client = build_client(host.host, host.port, password=None, timeout=5)
    client.execute_command("ACL", "SETUSER", "app", "on", "nopass", "~*", "+@all")
    client.execute_command("ACL", "SETUSER", "guarded", "on", ">not-open-pw", "~*", "+@all")
    try:
        findings_open = evaluate(open_facts(host), "open")[0]
    finally:
        client.execute_command("ACL", "DELUSER", "app", "guarded")
        client.close()
    current = next(f for f in findings_open if f.rule == "dangerous-commands-open").current
    assert "default: CONFIG SET, FLUSHALL" in current
    assert "app: CONFIG SET, FLUSHALL" in current
    assert "guarded" not in current  # it has a password: not everyone's
    assert "DEBUG" not in current  # enable-debug-command is off on this server
    lab = only(broken.result("node-1"), "dangerous-commands-open")
    assert "DEBUG" in lab.current  # the lab allows it from loopback


def test_dangerous_commands_closed_when_default_is_restricted(broken):
    client = broken.client("node-3")
    client.execute_command(
        "ACL", "SETUSER", "redisops", "on", f">{broken.password}", "~*", "&*", "+@all"
    )
    host = replace(broken.hosts["node-3"], username="redisops")
    admin = build_client(
        host.host, host.port, password=broken.password, username="redisops", timeout=5
    )
    admin.execute_command("ACL", "SETUSER", "default", "-@dangerous")
    try:
        facts, _ = collect_facts(host, timeout=5, rate_window=0)
    finally:
        admin.execute_command("ACL", "SETUSER", "default", "+@all")
        client.execute_command("ACL", "DELUSER", "redisops")
        admin.close()
        client.close()
    assert facts.acl is not None and facts.acl.open_dangerous == {"default": ()}
    assert "dangerous-commands-open" not in {f.rule for f in evaluate(facts, "node-3")[0]}


def test_acl_rules_unchecked_where_acls_cannot_be_read(broken):
    client = broken.client("node-3")
    client.execute_command(
        "ACL",
        "SETUSER",
        "viewer",
        "on",
        f">{broken.password}",
        "~*",
        "+info",
        "+config|get",
        "+client|setname",
    )
    try:
        audit = audit_host(
            replace(broken.hosts["node-3"], username="viewer"), timeout=5, rate_window=0
        )
    finally:
        client.execute_command("ACL", "DELUSER", "viewer")
        client.close()
    unchecked = {u.rule: u.reason for u in audit.unchecked}
    assert unchecked["dangerous-commands-open"] == (
        "ACL LIST/DRYRUN refused: this user has no permissions to run the 'acl|list' command"
    )
    assert unchecked["repl-backlog-small"] == "not measured (--rate-window 0)"
    assert findings(audit, "slowlog-max-len-zero")  # CONFIG GET still allowed


# --- the machine -----------------------------------------------------------------------------


def test_tcp_backlog_over_somaxconn(open_server, broken):
    host, _ = open_server
    somaxconn = int(read_proc("/proc/sys/net/core/somaxconn"))
    facts = open_facts(host)
    assert facts.system.somaxconn == somaxconn
    finding = next(f for f in evaluate(facts, "open")[0] if f.rule == "tcp-backlog-over-somaxconn")
    assert finding.current == f"tcp-backlog {somaxconn * 2} > net.core.somaxconn {somaxconn}"
    assert finding.fix.startswith(f"sysctl -w net.core.somaxconn={somaxconn * 2}")
    lab_fired = bool(findings(broken.result("node-1"), "tcp-backlog-over-somaxconn"))
    assert lab_fired == (somaxconn < 511)  # the lab runs with Redis's default of 511


def test_thp_finding_follows_the_machine(open_server):
    host, _ = open_server
    mode = read_proc("/sys/kernel/mm/transparent_hugepage/enabled").split("[")[1].split("]")[0]
    facts = open_facts(host)
    assert facts.system.transparent_hugepage == mode
    assert ("thp-enabled" in rules_fired(facts)) == (mode == "always")
    always = replace(facts, system=replace(facts.system, transparent_hugepage="always"))
    assert "thp-enabled" in rules_fired(always)
    # With disable-thp yes (Redis's default) Redis turns THP off for itself.
    protected = replace(always, config={**always.config, "disable-thp": "yes"})
    assert "thp-enabled" not in rules_fired(protected)


def test_overcommit_finding_follows_the_machine(broken):
    value = int(read_proc("/proc/sys/vm/overcommit_memory"))
    audit = broken.result("node-1")
    assert audit.system.overcommit_memory == value
    assert bool(findings(audit, "overcommit-memory")) == (value != 1)


def test_overcommit_rule_both_ways(open_server):
    facts = open_facts(open_server[0])
    for value, fires in ((0, True), (2, True), (1, False)):
        changed = replace(facts, system=replace(facts.system, overcommit_memory=value))
        assert ("overcommit-memory" in rules_fired(changed)) is fires


def test_swappiness_finding_follows_the_machine(broken):
    value = int(read_proc("/proc/sys/vm/swappiness"))
    audit = broken.result("node-1")
    assert audit.system.swappiness == value
    assert bool(findings(audit, "swappiness-high")) == (value > 10)


def test_swappiness_rule_both_ways(open_server):
    facts = open_facts(open_server[0])
    for value, fires in ((60, True), (11, True), (10, False), (1, False)):
        changed = replace(facts, system=replace(facts.system, swappiness=value))
        assert ("swappiness-high" in rules_fired(changed)) is fires


def test_maxclients_over_the_processes_open_files_limit(open_server):
    host, pid = open_server
    limits = read_proc(f"/proc/{pid}/limits")
    soft = int(next(x for x in limits.splitlines() if x.startswith("Max open files")).split()[3])
    facts = open_facts(host)
    assert facts.system.open_files == soft == OPEN_FILES_LIMIT
    finding = next(f for f in evaluate(facts, "open")[0] if f.rule == "maxclients-over-open-files")
    assert finding.current == f"maxclients 10000, open-files limit {OPEN_FILES_LIMIT}"
    assert finding.value == str(10000 + RESERVED_FDS)


# --- inputs out of reach ---------------------------------------------------------------------


def test_host_rules_unchecked_without_host_access(broken):
    host = replace(broken.hosts["node-1"], connection="ssh", ssh_configured=False)
    audit = audit_host(host, timeout=5, rate_window=0)
    unchecked = {u.rule: u.reason for u in audit.unchecked}
    assert {"overcommit-memory", "swappiness-high", "thp-enabled"} <= unchecked.keys()
    assert unchecked["swappiness-high"].startswith("no host access in the inventory")
    # The machine's memory then comes from INFO: the maxmemory rules still run.
    assert findings(audit, "maxmemory-unset") and "maxmemory-unset" not in unchecked


def test_failed_ssh_keeps_the_redis_findings(broken):
    host = replace(
        broken.hosts["node-1"], connection="ssh", ssh_configured=True, ssh_port=free_port()
    )
    with pytest.raises(PartialFailure) as raised:
        audit_host(host, timeout=5, rate_window=0)
    assert raised.value.message.startswith("host access: SSH connection to")
    assert findings(raised.value.data, "persistence-off-with-replicas")


# --- the command -----------------------------------------------------------------------------


def test_cli_groups_by_severity_and_fails_on_request(broken, tmp_path):
    inventory = broken.state.inventory_path
    run = redisops("-i", inventory, "config", "audit", "--rate-window", "0")
    assert run.exit_code == 0
    assert run.stdout.index("critical (") < run.stdout.index("warning (")
    assert "persistence-off-with-replicas  save on node-1" in run.stdout
    assert (
        redisops(
            "-i", inventory, "config", "audit", "--rate-window", "0", "--fail-on", "critical"
        ).exit_code
        == 1
    )
    assert broken.password not in run.stdout + run.stderr


def test_cli_emits_recommended_settings_as_yaml(broken):
    inventory = broken.state.inventory_path
    run = redisops("-i", inventory, "-l", "node-1", "config", "audit", "--emit-yaml")
    assert run.exit_code == 0, run.stderr
    document = yaml.safe_load(run.stdout)
    config = document["redis_config"]
    assert config["save"] == DEFAULT_SAVE
    assert config["maxmemory"] == only(broken.result("node-1"), "maxmemory-unset").value
    if int(read_proc("/proc/sys/vm/overcommit_memory")) != 1:
        assert "# overcommit-memory on node-1: sysctl -w vm.overcommit_memory=1" in run.stdout
    json_too = redisops("-i", inventory, "-o", "json", "config", "audit", "--emit-yaml")
    assert json_too.exit_code == 2


def test_cli_json_on_the_shared_lab_skips_sentinels(lab, lab_password):
    run = redisops("-i", lab.inventory_path, "-o", "json", "config", "audit", "--rate-window", "0")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["command"] == "config audit"
    assert [r["host"] for r in document["results"]] == ["node-1", "node-2", "node-3"]
    assert document["summary"]["sentinels_skipped"] == ["sentinel-1", "sentinel-2", "sentinel-3"]
    finding = document["results"][0]["data"]["findings"][0]
    assert {"rule", "severity", "setting", "current", "recommended", "why"} <= finding.keys()
    assert lab_password not in run.stdout + run.stderr


def test_results_keep_inventory_order(broken):
    assert [r.host for r in broken.audit.results] == ["node-1", "node-2", "node-3", "node-4"]
    assert all(isinstance(r, HostResult) and r.ok for r in broken.audit.results)
