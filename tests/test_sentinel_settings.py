"""A master's Sentinel settings: drift between sentinels flagged by `sentinel status`, and kept
across `sentinel remove --save` and `sentinel monitor --from` (the restore runbook's steps),
on real sentinels."""

from __future__ import annotations

import json

from tests.cli_helpers import redisops
from tests.test_sentinel_status import SENTINELS, lab_client, wait_until_healthy

KEPT = ("quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs")


def settings(state, sentinel: str) -> dict[str, str] | None:
    """What `sentinel` reports for master lab (None when it does not monitor it)."""
    client = lab_client(state, sentinel)
    try:
        if not client.execute_command("SENTINEL", "MASTERS"):
            return None
        fields = client.execute_command("SENTINEL", "MASTER", "lab")
    finally:
        client.close()
    return {name: str(fields[name]) for name in ("ip", "port", *KEPT)}


def sentinel_set(state, sentinel: str, *pairs: str) -> None:
    client = lab_client(state, sentinel)
    client.execute_command("SENTINEL", "SET", "lab", *pairs)
    client.close()


def test_drift_is_flagged_and_remove_then_monitor_keeps_every_setting(make_lab, tmp_path):
    state = make_lab(replicas=1, sentinels=3)
    inventory = state.inventory_path
    password = lab_client(state, "node-1").connection_pool.connection_kwargs["password"]
    tuned = ("down-after-milliseconds", "2500", "failover-timeout", "12000", "parallel-syncs", "2")
    for sentinel in SENTINELS:
        sentinel_set(state, sentinel, *tuned)
    before = {sentinel: settings(state, sentinel) for sentinel in SENTINELS}
    assert before["sentinel-1"]["down-after-milliseconds"] == "2500"

    # One sentinel that disagrees with the others is a problem, and no drill runs on it.
    sentinel_set(state, "sentinel-2", "down-after-milliseconds", "30000")
    status = redisops("-i", inventory, "-o", "json", "sentinel", "status")
    assert status.exit_code == 1
    (master,) = status.json()["summary"]["masters"]
    assert master["problems"] == [
        {
            "kind": "settings",
            "message": "sentinels disagree on down-after-milliseconds: sentinel-1 2500, "
            "sentinel-2 30000, sentinel-3 2500",
        }
    ]
    refused = redisops("-i", inventory, "sentinel", "drill", "--master", "lab", "--dry-run")
    assert refused.exit_code == 3
    assert "sentinels agree: sentinels disagree on down-after-milliseconds" in refused.stderr
    sentinel_set(state, "sentinel-2", "down-after-milliseconds", "2500")

    # Removed from one sentinel only (the runbook half done): flagged, and put back.
    partial = tmp_path / "sentinel-3.json"
    run = redisops(
        "-i", inventory, "-l", "sentinel-3", "sentinel", "remove", "--master", "lab",
        "--save", str(partial), "--yes",
    )  # fmt: skip
    assert run.exit_code == 0, run.stderr
    assert settings(state, "sentinel-3") is None
    status = redisops("-i", inventory, "-o", "json", "sentinel", "status")
    assert status.exit_code == 1
    (master,) = status.json()["summary"]["masters"]
    assert master["problems"][0]["message"].startswith(
        "sentinel-3 no longer monitors lab, though the other sentinels know it as a peer"
    )
    run = redisops("-i", inventory, "sentinel", "monitor", "--from", str(partial), "--yes")
    assert run.exit_code == 0, run.stderr
    assert settings(state, "sentinel-3") == before["sentinel-3"]
    wait_until_healthy(state, seconds=60)

    # Remove: the settings are saved first (0600, no secret), then every sentinel forgets lab.
    saved = tmp_path / "private" / "lab.sentinel.json"
    run = redisops(
        "-i", inventory, "sentinel", "remove", "--master", "lab", "--save", str(saved), "--yes"
    )
    assert run.exit_code == 0, run.stderr
    assert [settings(state, sentinel) for sentinel in SENTINELS] == [None, None, None]
    assert saved.stat().st_mode & 0o777 == 0o600
    record = json.loads(saved.read_text())
    assert (record["master"], record["auth_host"]) == ("lab", "node-1")
    assert record["auth"].startswith("password_file ")
    assert {e["sentinel"]: e["settings"] for e in record["sentinels"]} == {
        sentinel: {name: before[sentinel][name] for name in KEPT} for sentinel in SENTINELS
    }
    assert password not in saved.read_text() + run.stdout + run.stderr
    assert run.stderr.splitlines()[-1] == (
        f"settings saved to {saved}; put them back with: redisops -i {inventory} "
        f"sentinel monitor --from {saved}"
    )
    # The file is never overwritten: it may be the only record of what was removed.
    again = redisops(
        "-i", inventory, "-o", "json", "sentinel", "remove", "--master", "lab",
        "--save", str(saved), "--yes",
    )  # fmt: skip
    assert again.exit_code == 3
    assert again.json()["ok"] is False
    assert again.json()["error"].startswith(f"{saved} exists: it may be the only record")

    # Monitor: every setting back on every sentinel, and auth-pass from the inventory (without
    # it the sentinels could not talk to the master, and the lab would never be healthy).
    run = redisops("-i", inventory, "sentinel", "monitor", "--from", str(saved), "--yes")
    assert run.exit_code == 0, run.stderr
    assert {sentinel: settings(state, sentinel) for sentinel in SENTINELS} == before
    wait_until_healthy(state, seconds=60)
    # Again on sentinels that already monitor lab there: settings set again, nothing else.
    run = redisops("-i", inventory, "sentinel", "monitor", "--from", str(saved), "--yes")
    assert run.exit_code == 0, run.stderr
    assert {sentinel: settings(state, sentinel) for sentinel in SENTINELS} == before
    assert password not in run.stdout + run.stderr
