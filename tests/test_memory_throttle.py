"""A scan that has to run on a master is throttled by default; replicas and --rate 0 are not."""

from __future__ import annotations

from redisops.memory.report import MASTER_SCAN_RATE
from tests.cli_helpers import redisops

SEED = 10_000


def report_data(inventory: str, *options: str) -> dict:
    run = redisops("-i", inventory, "-l", "node-1", "-o", "json", "memory", "report", *options)
    assert run.exit_code == 0, run.stderr
    (result,) = run.json()["results"]
    return result["data"]


def test_a_master_without_a_replica_is_scanned_at_the_default_rate(make_lab):
    lab = make_lab(replicas=0, seed_keys=SEED)
    held = report_data(lab.inventory_path)
    assert held["scanned_role"] == "master"
    assert held["rate_limit"] == MASTER_SCAN_RATE
    assert held["keys_scanned"] == SEED
    # Each batch waits until seen/rate seconds have passed, so the mean can only be lower.
    assert held["keys_per_second"] <= MASTER_SCAN_RATE * 1.05
    full = report_data(lab.inventory_path, "--rate", "0")
    assert full["rate_limit"] is None and full["keys_scanned"] == SEED


def test_a_replica_is_scanned_at_full_speed(lab):
    data = report_data(lab.inventory_path)
    assert data["scanned_role"] == "replica" and data["rate_limit"] is None


def test_a_negative_rate_is_a_usage_error(lab):
    run = redisops("-i", lab.inventory_path, "memory", "report", "--rate", "-1")
    assert run.exit_code == 2
    assert run.stderr.startswith("error: --rate must be 0 (full speed) or more keys/s, got -1")
