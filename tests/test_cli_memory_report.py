"""`memory report` through the CLI: the JSON contract, skipped hosts, usage errors, secrets."""

from __future__ import annotations

import base64
import re

from tests.cli_helpers import redisops


def test_report_json_follows_the_contract(lab, lab_password):
    run = redisops("-i", lab.inventory_path, "-o", "json", "memory", "report", "--samples", "0")
    assert run.exit_code == 0, run.stderr
    document = run.json()
    assert document["command"] == "memory report" and document["ok"] is True
    assert document["summary"]["hosts"] == 1
    assert document["summary"]["skipped"]["node-2"] == "replica of node-1, covered by its report"
    (result,) = document["results"]
    data = result["data"]
    assert result["host"] == "node-1"
    assert data["keys_scanned"] == data["keys"] == data["dbsize"] == 200
    assert data["bytes"] == sum(p["bytes"] for p in data["patterns"])
    assert set(data["patterns"][0]) >= {"pattern", "keys", "bytes", "types"}
    assert sum(t["keys"] for t in data["types"].values()) == 200
    assert sum(b["keys"] for b in data["ttl"].values()) == 200
    assert len(data["top_keys"]) == 20
    for key in data["top_keys"]:
        assert set(key) >= {"key", "type", "bytes"}
        assert base64.b64decode(key["key_base64"]).decode() == key["key"]
    assert lab_password not in run.stdout + run.stderr


def test_report_table_shows_patterns_with_bars(lab, lab_password):
    run = redisops("-i", lab.inventory_path, "-l", "node-1", "memory", "report", "--depth", "1")
    assert run.exit_code == 0
    lines = run.stdout.splitlines()
    assert lines[0].startswith("node-1: 200 keys, ")
    assert "on replica node-" in lines[0]
    assert lines[1].split()[:4] == ["pattern", "keys", "bytes", "share"]
    assert any(line.startswith("user:* ") and re.search(r" [#.]{24} ", line) for line in lines)
    assert any(re.search(r" #{5,}\.* ", line) for line in lines)  # the biggest pattern's bar
    assert lab_password not in run.stdout + run.stderr


def test_only_sentinels_selected_is_a_usage_error(lab):
    run = redisops("-i", lab.inventory_path, "-l", "sentinels", "memory", "report")
    assert run.exit_code == 2
    assert run.stderr.startswith(
        "error: no Redis host selected: Sentinels have no keys (3 selected)"
    )


def test_bad_sample_is_a_usage_error(lab):
    run = redisops("-i", lab.inventory_path, "memory", "report", "--sample", "1.5")
    assert run.exit_code == 2
    assert run.stderr.startswith("error: --sample must be in (0, 1], got 1.5")
