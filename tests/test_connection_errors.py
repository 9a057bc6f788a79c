"""What a user sees when a host wants a password the inventory does not give, and when
`--limit` names a host that is not there: one line that says what to do, on a real lab."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cli_helpers import redisops

AUTH_REQUIRED = "authentication required: set password_env or password_file for {}"


def without_password(lab, folder: Path) -> str:
    """The lab's inventory with its password_file taken out."""
    data = yaml.safe_load(Path(lab.inventory_path).read_text())
    del data["all"]["vars"]["password_file"]
    path = folder / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_no_password_configured_says_how_to_set_one(lab, tmp_path):
    """Issue 20 item 10: was redis-py's raw `HELLO must be called with the client already
    authenticated…` (redis-py clients) or `NOAUTH Authentication required.` (plain RESP)."""
    inventory = without_password(lab, tmp_path)
    for command in (("inventory", "check"), ("memory", "report"), ("config", "diff")):
        run = redisops("-i", inventory, "-l", "node-1,node-2", "-o", "json", *command)
        assert run.exit_code == 1, command
        errors = [(r["host"], r["error"]) for r in run.json()["results"]]
        assert errors == [
            ("node-1", AUTH_REQUIRED.format("node-1")),
            ("node-2", AUTH_REQUIRED.format("node-2")),
        ], command


def test_a_wrong_password_is_still_called_a_failed_authentication(lab, tmp_path):
    inventory = without_password(lab, tmp_path)
    text = Path(inventory).read_text().replace("vars:\n", "vars:\n    password_env: WRONG_PW\n", 1)
    Path(inventory).write_text(text)
    run = redisops(
        "-i", inventory, "-l", "node-1", "-o", "json", "inventory", "check",
        env={"WRONG_PW": "not-the-password"},
    )  # fmt: skip
    assert run.exit_code == 1
    assert run.json()["results"][0]["error"] == (
        f"authentication to 127.0.0.1:{lab.processes[0].port} failed: "
        "invalid username-password pair or user is disabled."
    )


def test_limit_naming_no_host_gets_a_did_you_mean(lab):
    run = redisops("-i", lab.inventory_path, "-l", "node-9", "inventory", "list")
    assert run.exit_code == 2
    assert run.stderr.splitlines()[0] == (
        "error: --limit 'node-9' matches no host or group "
        "(did you mean 'node-1', 'node-2' or 'node-3'?)"
    )
