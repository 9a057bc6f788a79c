"""`config diff`: where the selected hosts' settings differ from each other, and from the
`redis_config` the inventory wants for each.

Values are compared the way Redis reads them (`settings.same_value`: 1gb = 1073741824, YES =
yes), so equal values never show as drift. Per-instance settings (port, dir, …) are not
compared across hosts; secrets are never compared, shown or read into results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from redisops.fleet.fanout import HostResult, run_on_hosts
from redisops.fleet.host import Host
from redisops.fleet.server import CONFIG_ALIASES
from redisops.tuning.settings import (
    INSTANCE_SETTINGS,
    SECRET_SETTINGS,
    canonical,
    normalised,
    same_value,
)

ABSENT = "(absent)"
UNKNOWN = "(unknown setting)"


@dataclass(frozen=True)
class SettingDrift:
    """A setting whose value differs from what the inventory wants for this host."""

    setting: str
    current: str
    desired: str


@dataclass(frozen=True)
class HostConfig:
    """One host's config as compared: how many settings it has, and its drift from desired."""

    settings: int
    drift: tuple[SettingDrift, ...]


@dataclass(frozen=True)
class ValueGroup:
    """One value of a drifting setting and the hosts that have it (as the first one says it)."""

    value: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class FleetDrift:
    """A setting that differs across hosts: its values, most common first."""

    setting: str
    values: tuple[ValueGroup, ...]


@dataclass(frozen=True)
class ClusterDrift:
    """Settings that differ between the nodes of one Redis Cluster: every node of a cluster
    should run the same config, whatever the rest of the fleet runs."""

    cluster: str
    nodes: tuple[str, ...]
    drift: tuple[FleetDrift, ...]
    compared: int


@dataclass(frozen=True)
class DriftReport:
    """Drift of every host from its desired config, and across the hosts that answered.

    `ignored` names desired settings that are secrets (never compared); `compared` counts the
    settings compared across hosts; `clusters` compares the nodes of each Redis Cluster among
    the hosts with each other only.
    """

    results: tuple[HostResult[HostConfig], ...]
    fleet: tuple[FleetDrift, ...]
    compared: int
    ignored: tuple[str, ...]
    skipped_sentinels: tuple[str, ...]
    clusters: tuple[ClusterDrift, ...] = ()

    @property
    def drifted(self) -> bool:
        return (
            bool(self.fleet)
            or any(c.drift for c in self.clusters)
            or any(r.data is not None and r.data.drift for r in self.results)
        )


def diff_fleet(hosts: Sequence[Host], *, timeout: float, parallel: int) -> DriftReport:
    """Read every selected Redis host's config and compare; Sentinels are skipped.

    Raises UsageError when only Sentinels were selected.
    """
    from redisops.fleet.selection import split_sentinels

    redis_hosts, sentinels = split_sentinels(hosts, lacking="Redis configuration")
    read = run_on_hosts(
        redis_hosts, lambda host: _host_config(host, timeout=timeout), parallel=parallel
    )
    configs = {r.host: r.data for r in read if r.ok and r.data is not None}
    results = tuple(
        replace(r, data=None if r.data is None else _against_desired(host, r.data))
        for host, r in zip(redis_hosts, read, strict=True)
    )
    fleet, compared = fleet_drift(configs)
    secrets = {
        key for h in redis_hosts for key in h.redis_config if canonical(key) in SECRET_SETTINGS
    }
    clusters = cluster_drift(redis_hosts, configs)
    return DriftReport(results, fleet, compared, tuple(sorted(secrets)), sentinels, clusters)


def cluster_drift(
    hosts: Sequence[Host], configs: Mapping[str, Mapping[str, str]]
) -> tuple[ClusterDrift, ...]:
    """Drift between the nodes of each cluster among `hosts` (by `Host.node.cluster`), over
    the nodes whose config was read."""
    members: dict[str, list[str]] = {}
    for host in hosts:
        if host.node is not None and host.name in configs:
            members.setdefault(host.node.cluster, []).append(host.name)
    drifts = []
    for cluster, names in members.items():
        drift, compared = fleet_drift({name: configs[name] for name in names})
        drifts.append(ClusterDrift(cluster, tuple(names), drift, compared))
    return tuple(drifts)


def fleet_drift(configs: Mapping[str, Mapping[str, str]]) -> tuple[tuple[FleetDrift, ...], int]:
    """Settings whose values differ across `configs` (host -> CONFIG GET *), and how many
    settings were compared. Aliases, per-instance settings and secrets are left out."""
    if len(configs) < 2:
        return (), 0
    # Secrets are decided on the canonical name, so no alias of one is ever compared or shown.
    names = sorted(
        name
        for name in {name for config in configs.values() for name in config}
        - CONFIG_ALIASES.keys()
        - INSTANCE_SETTINGS
        if canonical(name) not in SECRET_SETTINGS
    )
    drift = []
    for name in names:
        groups: dict[str, tuple[str, list[str]]] = {}
        for host, config in configs.items():
            value = config.get(name)
            key = ABSENT if value is None else normalised(name, value)
            groups.setdefault(key, (ABSENT if value is None else value, []))[1].append(host)
        if len(groups) > 1:
            ordered = sorted(groups.values(), key=lambda group: -len(group[1]))
            drift.append(
                FleetDrift(name, tuple(ValueGroup(value, tuple(h)) for value, h in ordered))
            )
    return tuple(drift), len(names)


def _host_config(host: Host, *, timeout: float) -> dict[str, str]:
    from redisops.fleet.connection import redis_client
    from redisops.tuning.facts import CLIENT_NAME, read_config

    with redis_client(host, timeout=timeout, decode=True, client_name=CLIENT_NAME) as client:
        return read_config(client)


def _against_desired(host: Host, config: Mapping[str, str]) -> HostConfig:
    drift = []
    for setting, desired in host.redis_config.items():
        name = canonical(setting)
        if name in SECRET_SETTINGS:
            continue
        current = config.get(name, config.get(setting))
        if current is None:
            drift.append(SettingDrift(setting, UNKNOWN, desired))
        elif not same_value(name, desired, current):
            drift.append(SettingDrift(setting, current, desired))
    return HostConfig(settings=len(config), drift=tuple(drift))
