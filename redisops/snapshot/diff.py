"""`snapshot diff A B`: what differs between two snapshots of the same fleet, host by host.

Hosts are matched by inventory name. Compared: whether each was captured, server version and
restarts (run_id), role and master, the replicas a master has, the Sentinels' view of each
master (address, flags, peers), cluster state, every CONFIG GET setting (secrets compare as
(set)/(unset) only: their values never reached the archive), memory, key counts per db,
clients (count, and the source addresses and client names that came or went), and, across the
fleet, slowlog fingerprints that B has and A has not.

Memory counts as changed from MEMORY_CHANGE (relative) and MEMORY_FLOOR (bytes) on, and
clients from CLIENTS_CHANGE, so that a live server's drift between two moments is not news;
key counts are always reported when they differ. The snapshot's own connection (its client
name, and the slowlog entries it caused) is left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from redisops.fleet.fanout import HostResult
from redisops.fleet.server import canonical_config_name
from redisops.snapshot.archive import HostSnapshot, Snapshot
from redisops.snapshot.capture import CLIENT_NAME
from redisops.snapshot.overview import FingerprintRow, fingerprint_rows

MEMORY_CHANGE = 0.10
MEMORY_FLOOR = 1 << 20
CLIENTS_CHANGE = 0.20
_MEMORY_FIELDS = ("used_memory", "used_memory_rss", "used_memory_peak")
_CLUSTER_FIELDS = (
    "cluster_state",
    "cluster_slots_assigned",
    "cluster_slots_ok",
    "cluster_known_nodes",
    "cluster_size",
    "cluster_current_epoch",
)


@dataclass(frozen=True)
class Change:
    """One difference: `area` (capture, server, role, topology, sentinel, cluster, config,
    memory, keys, clients), `what` changed, its value in A and in B (None: absent)."""

    area: str
    what: str
    before: str | None
    after: str | None


@dataclass(frozen=True)
class HostDiff:
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class SnapshotDiff:
    before: str
    after: str
    before_taken_at: str
    after_taken_at: str
    hosts: list[HostResult[HostDiff]]
    new_fingerprints: list[FingerprintRow]

    @property
    def changes(self) -> int:
        return sum(len(r.data.changes) for r in self.hosts if r.data) + len(self.new_fingerprints)


def diff_snapshots(a: Snapshot, b: Snapshot) -> SnapshotDiff:
    """Every difference from `a` to `b` (hosts in B's order, then those only A has)."""
    names = [h.name for h in b.hosts] + [h.name for h in a.hosts if b.host(h.name) is None]
    results = []
    for name in names:
        old, new = a.host(name), b.host(name)
        address = (new or old).record.address  # type: ignore[union-attr]
        results.append(HostResult(name, address, True, None, HostDiff(tuple(_host(old, new)))))
    seen = {row.fingerprint for row in fingerprint_rows(a)}
    fresh = [row for row in fingerprint_rows(b) if row.fingerprint not in seen]
    return SnapshotDiff(
        before=str(a.path),
        after=str(b.path),
        before_taken_at=a.manifest.taken_at,
        after_taken_at=b.manifest.taken_at,
        hosts=results,
        new_fingerprints=fresh,
    )


def _host(old: HostSnapshot | None, new: HostSnapshot | None) -> list[Change]:
    if old is None or new is None:
        present = "in the snapshot"
        return [
            Change(
                "capture",
                "host",
                None if old is None else present,
                None if new is None else present,
            )
        ]
    changes = _capture(old, new)
    changes += _server(old, new)
    changes += _role(old, new)
    changes += _sentinel(old, new)
    changes += _cluster(old, new)
    if old.config and new.config:
        changes += _mapping("config", _canonical(old.config), _canonical(new.config))
    if old.info and new.info:
        changes += _memory(old, new)
        changes += _keys(old, new)
        changes += _clients(old, new)
    return changes


def _capture(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    def state(host: HostSnapshot) -> str:
        return "captured" if host.record.ok else f"failed: {host.record.error}"

    if state(old) == state(new):
        return []
    return [Change("capture", "host", state(old), state(new))]


def _server(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    changes = []
    if old.record.server and new.record.server and old.record.server != new.record.server:
        changes.append(Change("server", "version", old.record.server, new.record.server))
    run_a, run_b = old.info.get("run_id"), new.info.get("run_id")
    if run_a and run_b and run_a != run_b:
        changes.append(
            Change("server", "restarted", f"up {old.info.get('uptime_in_seconds')}s",
                   f"up {new.info.get('uptime_in_seconds')}s")
        )  # fmt: skip
    return changes


def _role(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    a, b = old.replication, new.replication
    if a is None or b is None:
        return []
    changes = []
    if a.role != b.role:
        changes.append(Change("role", "role", a.role, b.role))
    master_a = f"{a.master_host}:{a.master_port}" if a.role == "replica" else None
    master_b = f"{b.master_host}:{b.master_port}" if b.role == "replica" else None
    if master_a != master_b:
        changes.append(Change("role", "master", master_a, master_b))
    replicas_a = sorted(f"{r.ip}:{r.port}" for r in a.replicas)
    replicas_b = sorted(f"{r.ip}:{r.port}" for r in b.replicas)
    if replicas_a != replicas_b:
        changes.append(
            Change(
                "topology", "replicas", ", ".join(replicas_a) or None, ", ".join(replicas_b) or None
            )
        )
    return changes


def _sentinel(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    views_a = {m.name: m for m in old.sentinel}
    views_b = {m.name: m for m in new.sentinel}
    changes = []
    for name in sorted(views_a.keys() | views_b.keys()):
        a, b = views_a.get(name), views_b.get(name)
        if a is None or b is None:
            changes.append(Change("sentinel", f"{name} monitored", _yes(a), _yes(b)))
            continue
        pairs = (
            ("address", a.address, b.address),
            ("flags", a.fields.get("flags"), b.fields.get("flags")),
            ("config-epoch", a.fields.get("config-epoch"), b.fields.get("config-epoch")),
            ("replicas", str(len(a.replicas)), str(len(b.replicas))),
            ("sentinels", str(len(a.sentinels) + 1), str(len(b.sentinels) + 1)),
        )
        changes += [Change("sentinel", f"{name} {what}", x, y) for what, x, y in pairs if x != y]
    return changes


def _cluster(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    if not old.cluster_info and not new.cluster_info:
        return []
    a = {k: old.cluster_info.get(k) for k in _CLUSTER_FIELDS}
    b = {k: new.cluster_info.get(k) for k in _CLUSTER_FIELDS}
    return _mapping("cluster", a, b)


def _mapping(area: str, a: Mapping[str, str | None], b: Mapping[str, str | None]) -> list[Change]:
    return [
        Change(area, name, a.get(name), b.get(name))
        for name in sorted(a.keys() | b.keys())
        if a.get(name) != b.get(name)
    ]


def _canonical(config: Mapping[str, str]) -> dict[str, str]:
    """CONFIG GET * lists a setting under its old names too (slaveof, primaryauth): each
    change is reported once, under the name the server gives it now."""
    return {
        name: value
        for name, value in config.items()
        if canonical_config_name(name) == name or canonical_config_name(name) not in config
    }


def _memory(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    changes = []
    for name in _MEMORY_FIELDS:
        a, b = _int(old.info.get(name)), _int(new.info.get(name))
        if a is None or b is None:
            continue
        if abs(b - a) >= MEMORY_FLOOR and abs(b - a) >= MEMORY_CHANGE * max(a, 1):
            changes.append(Change("memory", name, str(a), str(b)))
    return changes


def _keys(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    a, b = old.keyspace, new.keyspace
    return [
        Change("keys", f"db{db}", _keys_of(a, db), _keys_of(b, db))
        for db in sorted(a.keys() | b.keys())
        if _keys_of(a, db) != _keys_of(b, db)
    ]


def _keys_of(keyspace: Mapping[int, Mapping[str, int]], db: int) -> str | None:
    return str(keyspace[db].get("keys", 0)) if db in keyspace else None


def _clients(old: HostSnapshot, new: HostSnapshot) -> list[Change]:
    changes = []
    a, b = _int(old.info.get("connected_clients")), _int(new.info.get("connected_clients"))
    if a is not None and b is not None and abs(b - a) > CLIENTS_CHANGE * max(a, 1):
        changes.append(Change("clients", "connected", str(a), str(b)))
    if old.clients and new.clients:
        for label, field in (("from", "addr"), ("named", "name")):
            count_a, count_b = _client_groups(old, field), _client_groups(new, field)
            for key in sorted(count_a.keys() | count_b.keys()):
                if (key in count_a) != (key in count_b):
                    changes.append(
                        Change(
                            "clients", f"{label} {key}", _count(count_a, key), _count(count_b, key)
                        )
                    )
    return changes


def _client_groups(host: HostSnapshot, field: str) -> Counter[str]:
    groups: Counter[str] = Counter()
    for client in host.clients:
        if client.get("name") == CLIENT_NAME:
            continue
        value = client.get(field, "")
        if field == "addr":
            value = value.rpartition(":")[0]
        if value:
            groups[value] += 1
    return groups


def _count(groups: Counter[str], key: str) -> str | None:
    return f"{groups[key]} connections" if key in groups else None


def _yes(value: object) -> str | None:
    return "yes" if value is not None else None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
