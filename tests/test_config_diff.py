"""`config diff` on labs with drift introduced on purpose: exactly that drift is shown, across
hosts and against the inventory's redis_config, and equal values in other units are not."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from redisops.fleet.connection import build_client
from redisops.fleet.inventory import load_inventory
from redisops.lab import LabState
from redisops.tuning.drift import UNKNOWN, diff_fleet
from tests.cli_helpers import redisops


def inventory_with(
    state: LabState,
    folder: Path,
    group_config: dict | None = None,
    host_config: dict[str, dict] | None = None,
) -> str:
    """The lab's inventory with redis_config for the `redis` group and for single hosts."""
    data = yaml.safe_load(Path(state.inventory_path).read_text())
    redis_group = data["all"]["children"]["redis"]
    if group_config:
        redis_group["vars"] = {"redis_config": group_config}
    for name, config in (host_config or {}).items():
        redis_group["hosts"][name]["redis_config"] = config
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def has_row(text: str, *cells: str) -> bool:
    """True when a line of a table holds these cells, in order, apart by whitespace."""
    pattern = r"\s+".join(re.escape(cell) for cell in cells)
    return re.search(rf"^ *{pattern}(\s|$)", text, re.MULTILINE) is not None


def clients(state: LabState) -> dict:
    password = (Path(state.dir) / "secret").read_text().strip()
    return {
        p.name: build_client("127.0.0.1", p.port, password=password, timeout=5, decode=True)
        for p in state.processes
        if p.role != "sentinel"
    }


def test_diff_shows_exactly_the_drift_introduced(make_lab, tmp_path):
    state = make_lab(replicas=2, sentinels=1)
    nodes = clients(state)
    # Equal in other spellings: never drift.
    nodes["node-1"].config_set("maxmemory", "1gb")
    nodes["node-2"].config_set("maxmemory", "1073741824")
    nodes["node-3"].config_set("maxmemory", "1024mb")
    # Real drift.
    nodes["node-2"].config_set("maxmemory-policy", "allkeys-lru")
    nodes["node-3"].config_set("hz", "20")
    inventory = inventory_with(
        state,
        tmp_path,
        group_config={"maxmemory": "1GB", "maxmemory-policy": "noeviction", "appendonly": False},
        host_config={"node-2": {"maxmemory": "1g"}, "node-3": {"hz": 10, "no-such-thing": 1}},
    )
    report = diff_fleet(load_inventory(inventory).hosts, timeout=5, parallel=4)

    assert [(d.setting, [(g.value, g.hosts) for g in d.values]) for d in report.fleet] == [
        ("hz", [("10", ("node-1", "node-2")), ("20", ("node-3",))]),
        ("maxmemory-policy", [("noeviction", ("node-1", "node-3")), ("allkeys-lru", ("node-2",))]),
    ]
    against = {
        r.host: [(d.setting, d.current, d.desired) for d in r.data.drift] for r in report.results
    }
    assert against == {
        "node-1": [],
        # A host's own redis_config replaces its group's, as Ansible's vars do.
        "node-2": [("maxmemory", "1073741824", "1g")],
        "node-3": [("hz", "20", "10"), ("no-such-thing", UNKNOWN, "1")],
    }
    assert report.skipped_sentinels == ("sentinel-1",)
    assert report.compared > 100


def test_diff_cli_table_json_and_exit_code(make_lab, tmp_path):
    state = make_lab(replicas=1)
    password = (Path(state.dir) / "secret").read_text().strip()
    inventory = inventory_with(state, tmp_path, group_config={"slowlog-max-len": 128})
    clean = redisops("-i", inventory, "config", "diff", "--fail-on-drift")
    assert clean.exit_code == 0, clean.stderr
    assert "no drift between 2 hosts" in clean.stdout

    clients(state)["node-2"].config_set("slowlog-max-len", "64")
    run = redisops("-i", inventory, "config", "diff", "--fail-on-drift")
    assert run.exit_code == 1
    assert has_row(run.stdout, "slowlog-max-len", "128", "node-1")
    assert has_row(run.stdout, "64", "node-2")
    assert has_row(run.stdout, "node-2", "slowlog-max-len", "64", "128")
    document = redisops("-i", inventory, "-o", "json", "config", "diff").json()
    assert document["summary"]["drift"] == [
        {
            "setting": "slowlog-max-len",
            "values": [
                {"value": "128", "hosts": ["node-1"]},
                {"value": "64", "hosts": ["node-2"]},
            ],
        }
    ]
    assert document["results"][1]["data"]["drift"] == [
        {"setting": "slowlog-max-len", "current": "64", "desired": "128"}
    ]
    for output in (clean, run):
        assert password not in output.stdout + output.stderr


def test_secrets_are_never_compared_or_shown(lab, lab_password, tmp_path):
    inventory = inventory_with(lab, tmp_path, host_config={"node-1": {"requirepass": lab_password}})
    run = redisops("-i", inventory, "-o", "json", "config", "diff")
    assert run.exit_code == 0, run.stderr
    assert "redis_config.requirepass is a secret" in run.stderr
    assert run.json()["results"][0]["data"]["drift"] == []
    assert lab_password not in run.stdout + run.stderr
