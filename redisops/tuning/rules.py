"""The audit rules: each a small declarative object, read and tested on its own.

A rule names what it reads (inputs of `facts.Facts`; INFO is always there), how bad its finding
is, why it matters, and the command that fixes it; `check` returns a `Hit` (current value,
recommended value, and the `redis_config` value to paste when a setting fixes it) or None.
docs/config.md explains every rule and its thresholds.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from redisops.commandline import CommandLine
from redisops.memory.summary import Severity
from redisops.tuning.facts import (
    ACL,
    CLUSTER_INFO,
    CONFIG,
    MEM_TOTAL,
    OPEN_FILES,
    OVERCOMMIT,
    SOMAXCONN,
    SWAPPINESS,
    THP,
    WRITE_RATE,
    Facts,
)
from redisops.tuning.settings import SET, buffer_limit
from redisops.tuning.units import MIB, ceil_mib, redis_size

# maxmemory as a share of the machine's memory: a fork (BGSAVE, AOF rewrite, full sync) can
# copy every page written while it runs, up to doubling what Redis holds (Redis admin docs);
# without forks, a quarter stays for fragmentation, client buffers and the OS.
FORK_SHARE = 0.5
NO_FORK_SHARE = 0.75
# A policy that cannot evict is a problem once the data set nears maxmemory.
EVICTION_FILL = 0.8
# A replica should be able to reconnect with a partial resync after a blip this long.
BACKLOG_SECONDS = 60
# Redis's default replica output buffer: hard 256mb, soft 64mb for 60 s.
REPLICA_BUFFER_HARD = 256 * MIB
REPLICA_BUFFER_SOFT = 64 * MIB
REPLICA_BUFFER_SECONDS = 60
# Redis keeps this many file descriptors for itself beyond maxclients (CONFIG_MIN_RESERVED_FDS).
RESERVED_FDS = 32
SWAPPINESS_MAX = 10
DEFAULT_SAVE = "3600 1 300 100 60 10000"
SLOWLOG_SLOWER_THAN_US = 10000
SLOWLOG_MAX_LEN = 128
LATENCY_THRESHOLD_MS = 100
# Cluster (thresholds and defaults from redis.conf of Redis 7.0, cluster section).
NODE_TIMEOUT_DEFAULT_MS = 15000  # redis.conf's default
# Below this, a stall a healthy node can have (a fork of a large data set at ~10-25 ms/GB, a
# slow command, a short network blip) marks a master failed and starts a failover, which
# drops the writes its replica had not received.
NODE_TIMEOUT_MIN_MS = 5000
# Above this, a master that died keeps its slots unavailable for over a minute before its
# replica takes over: node-timeout is the time to detect a failure, and "most other internal
# time limits are a multiple of the node timeout" (redis.conf).
NODE_TIMEOUT_MAX_MS = 60000
VALIDITY_FACTOR_DEFAULT = 10  # redis.conf's default
MIGRATION_BARRIER_DEFAULT = 1  # redis.conf's default
# "The recommended three shards" (redis.conf, cluster-allow-reads-when-down): with fewer
# masters a master outage has no majority to fail over and stops reads and writes everywhere.
RECOMMENDED_SHARDS = 3

APPLY = "{redisops} -l {host} config apply --set {assignment}"


@dataclass(frozen=True)
class Hit:
    """What a rule found: the value now, the one it recommends, and the value that fixes it
    (for the rule's setting, or the sysctl or limit its fix names)."""

    current: str
    recommended: str
    value: str | None = None


@dataclass(frozen=True)
class AuditRule:
    """One item of the production checklist.

    `reads` names the inputs besides INFO (facts.CONFIG, facts.ACL, facts.MEM_TOTAL, …): when
    one is missing the rule is reported unchecked. `fix` is a template with {redisops} (the
    command with this run's inventory), {host}, {assignment} (setting=value, shell-quoted),
    {value} and {recommended}.
    """

    id: str
    severity: Severity
    setting: str
    reads: tuple[str, ...]
    why: str
    fix: str
    check: Callable[[Facts], Hit | None]
    cluster_only: bool = False  # judged on nodes of a Redis Cluster only

    @property
    def fixed_by_apply(self) -> bool:
        """True when a Redis setting fixes it, so its value belongs in `redis_config`."""
        return self.fix == APPLY

    def fix_for(self, hit: Hit, host: str, invoked: CommandLine | None = None) -> str:
        """The fix for `host`; a command in it repeats the inventory of `invoked`."""
        value = hit.value if hit.value is not None else hit.recommended
        return self.fix.format(
            redisops=(invoked or CommandLine()).redisops(limit=False),
            host=host,
            assignment=shlex.quote(f"{self.setting}={value}"),
            value=value,
            recommended=hit.recommended,
        )


def memory_budget(f: Facts) -> tuple[int, str]:
    """The largest maxmemory this instance should have, in whole MiB, and how it was reached."""
    share = FORK_SHARE if f.forks else NO_FORK_SHARE
    ram = f.ram or 0
    budget = max(MIB, int(ram * share / f.instances_on_machine) // MIB * MIB)
    shared = f" shared by {f.instances_on_machine} instances" if f.instances_on_machine > 1 else ""
    fork = "it forks to save or sync" if f.forks else "it never forks"
    return budget, f"{share:.0%} of {redis_size(ram // MIB * MIB)} RAM{shared}; {fork}"


def _maxmemory_unset(f: Facts) -> Hit | None:
    if f.number("maxmemory"):
        return None
    budget, how = memory_budget(f)
    return Hit("0 (no limit)", f"{redis_size(budget)} ({how})", redis_size(budget))


def _maxmemory_over_budget(f: Facts) -> Hit | None:
    maxmemory = f.number("maxmemory")
    budget, how = memory_budget(f)
    if not budget < maxmemory <= (f.ram or 0):
        return None
    return Hit(redis_size(maxmemory), f"{redis_size(budget)} ({how})", redis_size(budget))


def _maxmemory_over_ram(f: Facts) -> Hit | None:
    maxmemory = f.number("maxmemory")
    if maxmemory <= (f.ram or 0):
        return None
    budget, how = memory_budget(f)
    return Hit(
        f"{redis_size(maxmemory)} (RAM {redis_size(f.ram or 0)})",
        f"{redis_size(budget)} ({how})",
        redis_size(budget),
    )


def _eviction_cannot_free(f: Facts) -> Hit | None:
    maxmemory = f.number("maxmemory")
    policy = f.setting("maxmemory-policy")
    used = int(f.info.get("used_memory", 0))
    if not maxmemory or used < EVICTION_FILL * maxmemory:
        return None
    if policy == "noeviction":
        stuck = "noeviction"
    elif policy.startswith("volatile-") and f.keys_with_ttl == 0:
        stuck = f"{policy}, no key has a TTL"
    else:
        return None
    return Hit(
        f"{stuck}; {used * 100 / maxmemory:.0f}% of maxmemory used",
        "allkeys-lru if this is a cache, else a higher maxmemory",
    )


def _persistence_off_with_replicas(f: Facts) -> Hit | None:
    replicas = int(f.info.get("connected_slaves", 0))
    if f.role != "master" or not replicas:
        return None
    if f.setting("save").strip() or f.setting("appendonly") == "yes":
        return None
    return Hit(
        f'save "", appendonly no, {replicas} replica(s)',
        f'save "{DEFAULT_SAVE}" (or appendonly yes)',
        DEFAULT_SAVE,
    )


def _appendfsync_always(f: Facts) -> Hit | None:
    if f.setting("appendonly") != "yes" or f.setting("appendfsync") != "always":
        return None
    return Hit("always (appendonly yes)", "everysec", "everysec")


def _repl_backlog_small(f: Facts) -> Hit | None:
    rate = f.write_rate or 0.0
    backlog = f.number("repl-backlog-size")
    needed = rate * BACKLOG_SECONDS
    if not rate or backlog >= needed:
        return None
    recommended = redis_size(ceil_mib(needed))
    return Hit(
        f"{redis_size(backlog)} (holds {backlog / rate:.1f}s of {rate / 1024:.0f} KiB/s writes)",
        f"{recommended} ({BACKLOG_SECONDS}s of writes)",
        recommended,
    )


def _replica_buffer_small(f: Facts) -> Hit | None:
    limits = buffer_limit(f.setting("client-output-buffer-limit"), "replica")
    if limits is None:
        return None
    hard, soft, seconds = limits
    needed = max(REPLICA_BUFFER_HARD, ceil_mib((f.write_rate or 0.0) * BACKLOG_SECONDS))
    if not (0 < hard < needed or 0 < soft < REPLICA_BUFFER_SOFT):
        return None
    value = (
        f"replica {redis_size(max(hard, needed))} {redis_size(max(soft, REPLICA_BUFFER_SOFT))} "
        f"{seconds or REPLICA_BUFFER_SECONDS}"
    )
    current = f"replica {redis_size(hard)} {redis_size(soft)} {seconds}"
    return Hit(current, value, value)


def _slowlog_disabled(f: Facts) -> Hit | None:
    if f.number("slowlog-log-slower-than") >= 0:
        return None
    value = str(SLOWLOG_SLOWER_THAN_US)
    return Hit(f.setting("slowlog-log-slower-than"), f"{value} (10 ms)", value)


def _slowlog_max_len_zero(f: Facts) -> Hit | None:
    if f.number("slowlog-max-len") > 0:
        return None
    return Hit("0", str(SLOWLOG_MAX_LEN), str(SLOWLOG_MAX_LEN))


def _latency_monitor_off(f: Facts) -> Hit | None:
    if f.number("latency-monitor-threshold") > 0:
        return None
    value = str(LATENCY_THRESHOLD_MS)
    return Hit("0 (off)", f"{value} (ms)", value)


def _no_password(f: Facts) -> bool:
    """True when a client can use the default user without a password."""
    if f.acl is not None:
        default = f.acl.user("default")
        return default is not None and default.enabled and default.nopass
    return f.setting("requirepass") != SET


def _protected_mode_off(f: Facts) -> Hit | None:
    if f.setting("protected-mode") != "no" or not _no_password(f):
        return None
    return Hit("protected-mode no, default user without password", "yes", "yes")


def _default_user_nopass(f: Facts) -> Hit | None:
    if f.setting("protected-mode") == "no" or not _no_password(f):
        return None
    return Hit("on, nopass", "a password (ACL SETUSER default >…, or requirepass)")


def _dangerous_commands_open(f: Facts) -> Hit | None:
    allowed = f.acl.open_dangerous if f.acl else {}
    listed = [f"{user}: {', '.join(runs)}" for user, runs in allowed.items() if runs]
    if not listed:
        return None
    return Hit(
        "; ".join(listed),
        "-@dangerous for default and password-less users; admin tools get their own user",
    )


def _tcp_backlog_over_somaxconn(f: Facts) -> Hit | None:
    backlog, somaxconn = f.number("tcp-backlog"), f.system.somaxconn
    if somaxconn is None or backlog <= somaxconn:
        return None
    return Hit(
        f"tcp-backlog {backlog} > net.core.somaxconn {somaxconn}",
        f"net.core.somaxconn >= {backlog}",
        str(backlog),
    )


def _thp_enabled(f: Facts) -> Hit | None:
    # Redis >= 6.2 turns THP off for its own process (disable-thp yes, the default).
    if f.system.transparent_hugepage != "always" or f.setting("disable-thp") == "yes":
        return None
    return Hit("always (disable-thp no)", "madvise or never (or disable-thp yes)", "never")


def _overcommit_memory(f: Facts) -> Hit | None:
    value = f.system.overcommit_memory
    if value is None or value == 1:
        return None
    return Hit(str(value), "1", "1")


def _swappiness_high(f: Facts) -> Hit | None:
    value = f.system.swappiness
    if value is None or value <= SWAPPINESS_MAX:
        return None
    return Hit(str(value), f"<= {SWAPPINESS_MAX} (1 is usual)", "1")


def _maxclients_over_open_files(f: Facts) -> Hit | None:
    maxclients, limit = f.number("maxclients"), f.system.open_files
    if limit is None or maxclients + RESERVED_FDS <= limit:
        return None
    return Hit(
        f"maxclients {maxclients}, open-files limit {limit}",
        f"open-files limit >= {maxclients + RESERVED_FDS} (or maxclients {limit - RESERVED_FDS})",
        str(maxclients + RESERVED_FDS),
    )


def _node_timeout(f: Facts) -> Hit | None:
    timeout = f.number("cluster-node-timeout")
    if NODE_TIMEOUT_MIN_MS <= timeout <= NODE_TIMEOUT_MAX_MS:
        return None
    side = "too low: stalls cause failovers" if timeout < NODE_TIMEOUT_MIN_MS else "too high"
    return Hit(
        f"{timeout} ms ({side})",
        f"{NODE_TIMEOUT_DEFAULT_MS} ms (between {NODE_TIMEOUT_MIN_MS} and {NODE_TIMEOUT_MAX_MS})",
        str(NODE_TIMEOUT_DEFAULT_MS),
    )


def _full_coverage_without_replica(f: Facts) -> Hit | None:
    if f.setting("cluster-require-full-coverage") != "yes" or f.role != "master":
        return None
    if int(f.info.get("connected_slaves", 0)) or not _holds_slots(f):
        return None
    return Hit("yes, on a master with no replica", "a replica for this master, or no", "no")


def _holds_slots(f: Facts) -> bool:
    return int((f.cluster_info or {}).get("myself_slots", "0")) > 0


def _reads_when_down_small(f: Facts) -> Hit | None:
    if f.setting("cluster-allow-reads-when-down") != "no":
        return None
    size = int((f.cluster_info or {}).get("cluster_size", "0") or 0)
    if not 0 < size < RECOMMENDED_SHARDS:
        return None
    return Hit(
        f"no, with {size} shard(s)",
        f"yes (or {RECOMMENDED_SHARDS}+ shards, so a failover has a majority)",
        "yes",
    )


def _validity_factor_zero(f: Facts) -> Hit | None:
    if f.setting("cluster-replica-validity-factor") != "0":
        return None
    return Hit("0 (any replica may fail over)", str(VALIDITY_FACTOR_DEFAULT), "10")


def _migration_barrier_zero(f: Facts) -> Hit | None:
    if f.setting("cluster-migration-barrier") != "0":
        return None
    return Hit("0", str(MIGRATION_BARRIER_DEFAULT), str(MIGRATION_BARRIER_DEFAULT))


def _replica_no_failover(f: Facts) -> Hit | None:
    if f.setting("cluster-replica-no-failover") != "yes":
        return None
    return Hit("yes", "no (unless this side must never be promoted, as in a DR site)", "no")


_SYSCTL = "sysctl -w {name}={{value}} (and in /etc/sysctl.d/ to survive a reboot)"

RULES: tuple[AuditRule, ...] = (
    AuditRule(
        "maxmemory-over-ram",
        Severity.critical,
        "maxmemory",
        (CONFIG, MEM_TOTAL),
        "maxmemory is more than the machine's memory: Redis will never evict or refuse writes "
        "before the kernel's OOM killer ends it",
        APPLY,
        _maxmemory_over_ram,
    ),
    AuditRule(
        "persistence-off-with-replicas",
        Severity.critical,
        "save",
        (CONFIG,),
        "a master without persistence that restarts (by hand or by a supervisor) comes back "
        "empty, and its replicas then sync the empty data set and wipe their copies",
        APPLY,
        _persistence_off_with_replicas,
    ),
    AuditRule(
        "protected-mode-off-without-password",
        Severity.critical,
        "protected-mode",
        (CONFIG,),
        "protected mode is off and the default user needs no password: anyone who can reach "
        "the port can read, wipe or reconfigure the server",
        APPLY,
        _protected_mode_off,
    ),
    AuditRule(
        "maxmemory-unset",
        Severity.warning,
        "maxmemory",
        (CONFIG, MEM_TOTAL),
        "without maxmemory Redis grows until the machine runs out of memory and the OOM killer "
        "ends it; a limit makes it evict or refuse writes instead",
        APPLY,
        _maxmemory_unset,
    ),
    AuditRule(
        "maxmemory-over-budget",
        Severity.warning,
        "maxmemory",
        (CONFIG, MEM_TOTAL),
        "maxmemory leaves too little of the machine's memory for fork copy-on-write, "
        "fragmentation, client buffers and the other instances on it",
        APPLY,
        _maxmemory_over_budget,
    ),
    AuditRule(
        "eviction-cannot-free",
        Severity.warning,
        "maxmemory-policy",
        (CONFIG,),
        "the data set nears maxmemory and the policy cannot evict anything: at the limit every "
        "write fails with OOM errors",
        "{redisops} -l {host} config apply --set maxmemory-policy=allkeys-lru (a cache), "
        "or a higher maxmemory",
        _eviction_cannot_free,
    ),
    AuditRule(
        "appendfsync-always",
        Severity.warning,
        "appendfsync",
        (CONFIG,),
        "appendfsync always waits for the disk on every write: throughput falls to what the "
        "disk can fsync; everysec loses at most a second of writes",
        APPLY,
        _appendfsync_always,
    ),
    AuditRule(
        "repl-backlog-small",
        Severity.warning,
        "repl-backlog-size",
        (CONFIG, WRITE_RATE),
        f"the replication backlog holds less than {BACKLOG_SECONDS}s of writes at the measured "
        "rate: a replica that drops off for longer needs a full resync (a fork and a copy of "
        "the whole data set) instead of a partial one",
        APPLY,
        _repl_backlog_small,
    ),
    AuditRule(
        "replica-buffer-small",
        Severity.warning,
        "client-output-buffer-limit",
        (CONFIG,),
        "the replica output buffer holds the writes made during a full sync; when it is too "
        "small the master drops the replica mid-sync and the sync starts over, for ever",
        APPLY,
        _replica_buffer_small,
    ),
    AuditRule(
        "slowlog-disabled",
        Severity.warning,
        "slowlog-log-slower-than",
        (CONFIG,),
        "with the slowlog off there is no record of which commands blocked the server",
        APPLY,
        _slowlog_disabled,
    ),
    AuditRule(
        "slowlog-max-len-zero",
        Severity.warning,
        "slowlog-max-len",
        (CONFIG,),
        "a slowlog of length 0 keeps nothing: slow commands are never recorded",
        APPLY,
        _slowlog_max_len_zero,
    ),
    AuditRule(
        "latency-monitor-off",
        Severity.warning,
        "latency-monitor-threshold",
        (CONFIG,),
        "without the latency monitor, LATENCY LATEST/DOCTOR cannot tell what stalled the "
        "server (fork, AOF fsync, expiry, eviction)",
        APPLY,
        _latency_monitor_off,
    ),
    AuditRule(
        "default-user-nopass",
        Severity.warning,
        "requirepass",
        (CONFIG,),
        "the default user needs no password: protected mode keeps remote clients out only while "
        "no bind address or password is configured, and every local process is trusted",
        "ACL SETUSER default on >PASSWORD, then ACL SAVE or CONFIG REWRITE "
        "(password by reference in the inventory: password_env or password_file)",
        _default_user_nopass,
    ),
    AuditRule(
        "dangerous-commands-open",
        Severity.warning,
        "acl",
        (CONFIG, ACL),
        "a user everyone can log in as (default, shared by every client, or one without a "
        "password) may run commands that wipe data, reconfigure, replicate or stop the server",
        "give redisops and admins their own users first, then: ACL SETUSER default -@dangerous",
        _dangerous_commands_open,
    ),
    AuditRule(
        "tcp-backlog-over-somaxconn",
        Severity.warning,
        "tcp-backlog",
        (CONFIG, SOMAXCONN),
        "the kernel silently caps the accept queue at net.core.somaxconn: bursts of new "
        "connections beyond it are dropped or time out",
        _SYSCTL.format(name="net.core.somaxconn"),
        _tcp_backlog_over_somaxconn,
    ),
    AuditRule(
        "thp-enabled",
        Severity.warning,
        "transparent_hugepage",
        (CONFIG, THP),
        "transparent huge pages make every fork copy 2 MiB pages on write: latency spikes "
        "and far more memory during BGSAVE (Redis logs a warning at startup)",
        "echo never > /sys/kernel/mm/transparent_hugepage/enabled (and at boot), "
        "or keep disable-thp yes",
        _thp_enabled,
    ),
    AuditRule(
        "overcommit-memory",
        Severity.warning,
        "vm.overcommit_memory",
        (OVERCOMMIT,),
        "with vm.overcommit_memory other than 1 the fork for BGSAVE or a replica sync can fail "
        "when memory is tight; with stop-writes-on-bgsave-error writes then stop",
        _SYSCTL.format(name="vm.overcommit_memory"),
        _overcommit_memory,
    ),
    AuditRule(
        "swappiness-high",
        Severity.warning,
        "vm.swappiness",
        (SWAPPINESS,),
        "a high vm.swappiness lets the kernel swap Redis's memory out while page cache stays: "
        "every access to a swapped page is a disk read inside the event loop",
        _SYSCTL.format(name="vm.swappiness"),
        _swappiness_high,
    ),
    AuditRule(
        "maxclients-over-open-files",
        Severity.warning,
        "maxclients",
        (CONFIG, OPEN_FILES),
        f"the Redis process may open fewer files than maxclients + {RESERVED_FDS}: new "
        "connections are refused before maxclients is reached",
        "raise the open-files limit of the Redis service (systemd LimitNOFILE={value}, "
        "ulimit -n) and restart it",
        _maxclients_over_open_files,
    ),
    AuditRule(
        "cluster-full-coverage-without-replica",
        Severity.critical,
        "cluster-require-full-coverage",
        (CONFIG, CLUSTER_INFO),
        "with cluster-require-full-coverage yes, a slot without a master stops every node of "
        "the cluster (CLUSTERDOWN for every key); this master has no replica, so its crash "
        "alone takes the whole cluster down until it is back",
        "add a replica to this master (CLUSTER REPLICATE), or: "
        "{redisops} -l {host} config apply --set cluster-require-full-coverage=no",
        _full_coverage_without_replica,
        cluster_only=True,
    ),
    AuditRule(
        "cluster-node-timeout",
        Severity.warning,
        "cluster-node-timeout",
        (CONFIG,),
        f"cluster-node-timeout is how long a node may be unreachable before it is marked "
        f"failed: under {NODE_TIMEOUT_MIN_MS} ms a fork or a slow command triggers a failover "
        f"(which loses the writes the replica had not received); over {NODE_TIMEOUT_MAX_MS} ms "
        "a dead master's slots stay unavailable that long before its replica takes over",
        APPLY,
        _node_timeout,
        cluster_only=True,
    ),
    AuditRule(
        "cluster-reads-down-few-shards",
        Severity.warning,
        "cluster-allow-reads-when-down",
        (CONFIG, CLUSTER_INFO),
        f"with fewer than the recommended {RECOMMENDED_SHARDS} shards a master outage has no "
        "majority of masters to elect its replica, and the whole cluster stops reads and "
        "writes; with cluster-allow-reads-when-down yes only writes stop (redis.conf)",
        APPLY,
        _reads_when_down_small,
        cluster_only=True,
    ),
    AuditRule(
        "cluster-replica-validity-zero",
        Severity.warning,
        "cluster-replica-validity-factor",
        (CONFIG,),
        "with cluster-replica-validity-factor 0 a replica fails over however long it has been "
        "cut off from its master: a replica hours behind can be promoted and every write the "
        "master took since is lost; the default 10 allows (node-timeout * 10) + "
        "repl-ping-replica-period of silence",
        APPLY,
        _validity_factor_zero,
        cluster_only=True,
    ),
    AuditRule(
        "cluster-migration-barrier-zero",
        Severity.warning,
        "cluster-migration-barrier",
        (CONFIG,),
        "with cluster-migration-barrier 0 a master's only replica may migrate to an orphaned "
        'master and leave this one without a replica to fail over to; redis.conf: "useful '
        'only for debugging and dangerous in production"',
        APPLY,
        _migration_barrier_zero,
        cluster_only=True,
    ),
    AuditRule(
        "cluster-replica-no-failover",
        Severity.warning,
        "cluster-replica-no-failover",
        (CONFIG,),
        "with cluster-replica-no-failover yes this replica never takes over when its master "
        "fails: the master's slots stay down until someone runs CLUSTER FAILOVER FORCE by hand",
        APPLY,
        _replica_no_failover,
        cluster_only=True,
    ),
)
