"""`--limit`: pick hosts by name or group, with globs and `!` exclusions, as Ansible does."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from redisops.errors import UsageError
from redisops.fleet.host import Host
from redisops.fleet.inventory import Inventory, did_you_mean


def select_hosts(inventory: Inventory, limit: str | None) -> tuple[Host, ...]:
    """Hosts matching `limit` (comma-separated patterns), in inventory order.

    A pattern matches host names and group names (a group brings all its hosts); `!pattern`
    removes hosts; only exclusions means "all hosts but these". Raises UsageError when a
    pattern matches nothing or nothing is left.
    """
    if not limit or not limit.strip():
        return inventory.hosts
    patterns = [p.strip() for p in limit.split(",") if p.strip()]
    includes = [p for p in patterns if not p.startswith("!")]
    excludes = [p[1:] for p in patterns if p.startswith("!")]

    chosen: set[str] = set() if includes else {h.name for h in inventory.hosts}
    for pattern in includes:
        matched = _matching(inventory, pattern)
        if not matched:
            names = [h.name for h in inventory.hosts] + list(inventory.groups)
            raise UsageError(
                f"--limit {pattern!r} matches no host or group"
                f"{did_you_mean(pattern, names, most=3)}",
                hint="see `redisops inventory list` for names",
            )
        chosen |= matched
    for pattern in excludes:
        chosen -= _matching(inventory, pattern)

    selected = tuple(h for h in inventory.hosts if h.name in chosen)
    if not selected:
        raise UsageError(f"--limit {limit!r} leaves no host")
    return selected


def _matching(inventory: Inventory, pattern: str) -> set[str]:
    names = {h.name for h in inventory.hosts if fnmatchcase(h.name, pattern)}
    for group, members in inventory.groups.items():
        if fnmatchcase(group, pattern):
            names.update(members)
    return names


def split_sentinels(
    hosts: Sequence[Host], *, lacking: str
) -> tuple[tuple[Host, ...], tuple[str, ...]]:
    """The Redis hosts among `hosts`, and the names of the Sentinels left out.

    For commands that work on a Redis server's own state, which a Sentinel does not have;
    `lacking` names it for the message ("data set", "Redis configuration"). Raises UsageError
    when only Sentinels were selected.
    """
    redis_hosts = tuple(host for host in hosts if not host.is_sentinel)
    sentinels = tuple(host.name for host in hosts if host.is_sentinel)
    if not redis_hosts:
        raise UsageError(
            f"no Redis host selected: Sentinels have no {lacking} ({len(sentinels)} selected)",
            hint="select Redis hosts with --limit",
        )
    return redis_hosts, sentinels


def select_sentinels(hosts: Sequence[Host]) -> list[Host]:
    """The Sentinels among `hosts`, for commands that ask them (split_sentinels' other side).

    Raises UsageError when no Sentinel was selected.
    """
    sentinels = [host for host in hosts if host.is_sentinel]
    if not sentinels:
        raise UsageError(
            "no Sentinel selected: this command asks the sentinels",
            hint="select the inventory's role: sentinel hosts with --limit",
        )
    return sentinels
