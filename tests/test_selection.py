"""--limit: names, groups, globs, commas and ! exclusions, in inventory order."""

from __future__ import annotations

import pytest

from redisops.errors import ExitCode, UsageError
from redisops.fleet.inventory import load_inventory
from redisops.fleet.selection import select_hosts

INVENTORY = """\
all:
  children:
    cache:
      hosts:
        cache-1: {port: 1}
        cache-2: {port: 2}
    sessions:
      hosts:
        sessions-1: {port: 3}
    sentinels:
      vars: {role: sentinel}
      hosts:
        sentinel-1: {port: 4}
        sentinel-2: {port: 5}
"""


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    return load_inventory(path)


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (None, ["cache-1", "cache-2", "sessions-1", "sentinel-1", "sentinel-2"]),
        ("", ["cache-1", "cache-2", "sessions-1", "sentinel-1", "sentinel-2"]),
        ("cache-2", ["cache-2"]),
        ("cache", ["cache-1", "cache-2"]),
        ("sentinel-2,cache-1", ["cache-1", "sentinel-2"]),
        ("cache-*", ["cache-1", "cache-2"]),
        ("s*", ["sessions-1", "sentinel-1", "sentinel-2"]),
        ("all,!sentinels", ["cache-1", "cache-2", "sessions-1"]),
        ("!sentinels", ["cache-1", "cache-2", "sessions-1"]),
        ("!cache-1, !sentinel-*", ["cache-2", "sessions-1"]),
        ("cache,sessions,!cache-2", ["cache-1", "sessions-1"]),
    ],
)
def test_limit_patterns(inventory, limit, expected):
    assert [h.name for h in select_hosts(inventory, limit)] == expected


def test_pattern_matching_nothing_is_a_usage_error(inventory):
    with pytest.raises(UsageError) as caught:
        select_hosts(inventory, "cache,nope*")
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message == "--limit 'nope*' matches no host or group"


def test_excluding_everything_is_a_usage_error(inventory):
    with pytest.raises(UsageError) as caught:
        select_hosts(inventory, "cache,!cache-*")
    assert caught.value.message == "--limit 'cache,!cache-*' leaves no host"


def test_a_name_matching_nothing_gets_a_did_you_mean(inventory):
    """Issue 20 item 10: as unknown inventory keys do."""
    with pytest.raises(UsageError) as caught:
        select_hosts(inventory, "cache-9")
    assert caught.value.message == (
        "--limit 'cache-9' matches no host or group (did you mean 'cache', 'cache-1' or 'cache-2'?)"
    )
    with pytest.raises(UsageError) as caught:
        select_hosts(inventory, "sentinel")
    assert caught.value.message == (
        "--limit 'sentinel' matches no host or group "
        "(did you mean 'sentinel-1', 'sentinel-2' or 'sentinels'?)"
    )


@pytest.mark.parametrize(
    ("argv", "lacking"),
    [
        (["backup", "run", "--dest", "{tmp}"], "data set"),
        (["memory", "summary"], "data set"),
        (["config", "audit"], "Redis configuration"),
        (["slowlog", "triage"], "slowlog"),
    ],
)
def test_only_sentinels_selected_is_one_usage_error_everywhere(tmp_path, argv, lacking):
    """One guard (selection.split_sentinels) for every command that needs a Redis server,
    `backup run` included: exit 2 before any connection, the same words."""
    from tests.cli_helpers import redisops

    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    run = redisops("-i", str(path), "-l", "sentinels", *args)
    assert run.exit_code == 2
    assert run.stderr.startswith(
        f"error: no Redis host selected: Sentinels have no {lacking} (2 selected)\n"
    )


def test_select_sentinels_is_the_other_side_of_the_guard(inventory):
    from redisops.fleet.selection import select_sentinels

    assert [h.name for h in select_sentinels(select_hosts(inventory, None))] == [
        "sentinel-1",
        "sentinel-2",
    ]
    with pytest.raises(UsageError) as caught:
        select_sentinels(select_hosts(inventory, "cache"))
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message == "no Sentinel selected: this command asks the sentinels"
