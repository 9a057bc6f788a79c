"""Every command's table at 80 and 120 columns, piped and on a terminal (issue 20 item 7).

A lab whose hosts carry production-length names and whose keys are long is read by each
command; the full host names, keys, patterns, fingerprints and backup ids must appear whole,
no `…` anywhere, no line wider than the terminal. Numbers read one way (issue 20 item 11),
and a key holding bidi controls is shown escaped (issue 21 item 10).
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pytest
import yaml
from rich.cells import cell_len
from rich.console import Console

from redisops.fleet.connection import build_client
from redisops.render.layout import FitTable
from redisops.render.output import Output
from redisops.render.sentinel import drill_view, history_table
from redisops.render.slowlog import HISTOGRAM_LABEL
from redisops.render.units import human_bytes, human_count, human_duration, human_ms, human_us
from redisops.results import HostResult
from redisops.sentinel.drill import DrillReport, Step
from tests.cli_helpers import redisops

WIDTHS = (80, 120)
MODES = ("piped", "terminal")
# Production-length names: each longer than Rich left them at 80 columns (`senti…`).
NAMES = {
    "node-1": "cache-primary-eu-west-1a-prod-0001",
    "node-2": "cache-replica-eu-west-1b-prod-0002",
    "sentinel-1": "sentinel-eu-west-1c-prod-quorum-01",
}
LONG_KEY = "tenant:acme-corporation-eu-west:session:{n}:shopping-cart-contents"
LONG_PATTERN = "tenant:acme-corporation-eu-west:session:{id}:shopping-cart-contents"
LONG_FINGERPRINT = f"SET {LONG_PATTERN}"
TTL_SECONDS = 97_199  # 1d 2h 59m 59s
BIDI_KEY = "invoice:\u202efdp.exe:\u200b\u2066x"
BIDI_SHOWN = "invoice:\\u202efdp.exe:\\u200b\\u2066x"
PLAYBOOKS = Path(__file__).parent.parent / "playbooks"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    """A lab (master, replica, Sentinel) under long host names, with long keys that are the
    biggest, a key with bidi controls, slowlog entries, and one backup."""
    from tests.plugins.lab import start_lab

    folder = tmp_path_factory.mktemp("widths")
    state = start_lab(folder / "lab", replicas=1, sentinels=1, seed_keys=300)
    try:
        password = (Path(state.dir) / "secret").read_text().strip()
        master = next(p for p in state.processes if p.name == "node-1")
        client = build_client("127.0.0.1", master.port, password=password, timeout=5)
        client.config_set("slowlog-log-slower-than", 0)
        for n in range(5):
            client.set(LONG_KEY.format(n=1000 + n), b"x" * 200_000, ex=TTL_SECONDS)
        client.set(BIDI_KEY, b"v" * 150_000)
        client.config_set("slowlog-log-slower-than", 10_000)
        client.close()
        data = yaml.safe_load(Path(state.inventory_path).read_text())
        for group in data["all"]["children"].values():
            group["hosts"] = {NAMES.get(name, name): host for name, host in group["hosts"].items()}
        # Drift for `config diff`: the inventory wants 64mb, the servers have no limit.
        data["all"]["children"]["redis"]["vars"] = {"redis_config": {"maxmemory": "64mb"}}
        inventory = folder / "inventory.yaml"
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        dest = folder / "backups"
        run = redisops("-i", str(inventory), "-l", NAMES["node-1"], "backup", "run", "--dest",
                       str(dest))  # fmt: skip
        assert run.exit_code == 0, run.stdout + run.stderr
        backup_id = redisops(
            "-i", str(inventory), "-o", "json", "backup", "list", "--dest", str(dest)
        ).json()["results"][0]["data"]["backup_id"]
        yield {"inventory": str(inventory), "dest": str(dest), "backup_id": backup_id,
               "lab": state.dir}  # fmt: skip
    finally:
        from redisops.lab import lab_down

        lab_down(Path(state.dir), purge=True)


def commands(fleet: dict) -> dict[str, tuple[list[str], list[str]]]:
    """Command line -> (its arguments, the texts its table must show whole)."""
    hosts = [NAMES["node-1"], NAMES["node-2"]]
    everyone = [*hosts, NAMES["sentinel-1"]]
    dest = ["--dest", fleet["dest"]]
    primary = ["-l", NAMES["node-1"]]
    return {
        "inventory list": (["inventory", "list"], everyone),
        "inventory check": (["inventory", "check"], everyone),
        "memory summary": (["memory", "summary"], hosts),
        "memory report": (
            [*primary, "memory", "report"],
            [LONG_PATTERN, LONG_KEY.format(n=1000), BIDI_SHOWN],
        ),
        # At 80 columns the fingerprint's command and pattern may sit on two lines (wrapped
        # at the space, as the vertical layout does); the pattern is whole either way.
        "slowlog triage": ([*primary, "slowlog", "triage"], [LONG_PATTERN, NAMES["node-1"]]),
        "slowlog reset": (["slowlog", "reset", "--dry-run"], hosts),
        "config audit": (["config", "audit"], hosts),
        "config diff": (["config", "diff"], ["maxmemory", "64.0 MiB", *hosts]),
        "config apply": (["config", "apply", "--set", "maxmemory=64mb", "--dry-run"], hosts),
        "sentinel status": (["sentinel", "status"], everyone),
        "backup list": (["backup", "list", *dest], [NAMES["node-1"], fleet["backup_id"]]),
        "backup verify": (
            [*primary, "backup", "verify", "--all", *dest],
            [NAMES["node-1"], fleet["backup_id"]],
        ),
        "backup prune": (
            [*primary, "backup", "prune", "--keep-last", "1", "--dry-run", *dest],
            [NAMES["node-1"], fleet["backup_id"]],
        ),
        "backup restore": (
            [*primary, "backup", "restore", fleet["backup_id"], "--dry-run", *dest],
            [NAMES["node-1"], fleet["backup_id"]],
        ),
        "lab status": (["lab", "status", "--dir", fleet["lab"]], []),
        "memory rdb": (
            [*primary, "memory", "rdb", fleet["backup_id"], *dest],
            [LONG_PATTERN, LONG_KEY.format(n=1000), BIDI_SHOWN],
        ),
        "sentinel drill": (["sentinel", "drill", "--master", "lab", "--dry-run"], hosts),
        "playbook run": (["playbook", "run", str(PLAYBOOKS / "latency-spike.yaml")], hosts),
    }


def screen(
    args: list[str], width: int, mode: str, inventory: str, exit_code: int = 0, stream="stdout"
) -> str:
    """What a run at `width` columns wrote to `stream`, colour codes taken out."""
    env = {"COLUMNS": str(width), "FORCE_COLOR": "1" if mode == "terminal" else None}
    run = redisops("-i", inventory, *args, env=env)
    assert run.exit_code == exit_code, run.stdout + run.stderr
    return ANSI.sub("", getattr(run, stream))


COMMANDS = (
    "inventory list", "inventory check", "memory summary", "memory report", "slowlog triage",
    "slowlog reset", "config audit", "config diff", "config apply", "sentinel status",
    "backup list", "backup verify", "backup prune", "backup restore", "lab status", "memory rdb",
    "sentinel drill", "playbook run",
)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_table_fits_without_cutting_names(fleet, command, width, mode):
    args, whole = commands(fleet)[command]
    if command == "backup restore":
        # The plan goes to stderr (stdout is the result's), then it is refused: the target
        # is a master with a replica.
        text = screen(args, width, mode, fleet["inventory"], 3, stream="stderr")
        text = text.split("error: ")[0]  # diagnostics are one unwrapped line each
    else:
        text = screen(args, width, mode, fleet["inventory"])
    assert "…" not in text.replace(HISTOGRAM_LABEL, ""), text
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert too_wide == [], text
    for name in whole:
        assert name in text, f"{name!r} not shown whole at {width} columns:\n{text}"


def test_narrow_terminal_drops_secondary_columns_and_says_so(fleet):
    text = screen(["memory", "summary"], 80, "piped", fleet["inventory"])
    header = text.splitlines()[0].split()
    assert header[:3] == ["host", "role", "used"] and "flags" in header
    assert "peak" not in header and "last fork" not in text.splitlines()[0]
    assert re.search(r"^not shown at 80 columns: bar, last fork, peak\b", text, re.MULTILINE)
    text = screen(["memory", "summary"], 200, "piped", fleet["inventory"])
    assert "not shown" not in text and "last fork" in text.splitlines()[0]


def test_fingerprint_too_long_for_columns_turns_vertical(fleet):
    """At 80 columns the 73-character fingerprint leaves no room for its figures: each
    fingerprint becomes `label  value` lines, the fingerprint whole on one line."""
    args = ["-l", NAMES["node-1"], "slowlog", "triage"]
    text = screen(args, 80, "piped", fleet["inventory"])
    lines = text.splitlines()
    shown = next(line for line in lines if LONG_FINGERPRINT.split()[1] in line)
    assert shown.split()[-1] == LONG_PATTERN
    assert any(line.split()[:1] == ["calls"] for line in lines)


def test_numbers_read_one_way(fleet):
    """Human units in tables (sizes, TTLs, counts); exact numbers in JSON."""
    args = ["-l", NAMES["node-1"], "memory", "report"]
    text = screen(args, 120, "piped", fleet["inventory"])
    row = next(line for line in text.splitlines() if LONG_KEY.format(n=1000) in line)
    # 200,000 bytes of value (MEMORY USAGE counts its allocation); the TTL reads "1d 2h" for
    # an hour after it was set
    assert re.search(r" 2\d\d\.\d KiB  +200,000 ", row), row
    assert re.search(r" 1d 2h\s*$", row), row
    document = redisops("-i", fleet["inventory"], "-o", "json", *args).json()
    top = {k["key"]: k for k in document["results"][0]["data"]["top_keys"]}
    exact = top[LONG_KEY.format(n=1000)]
    assert 93_600_000 < exact["ttl_ms"] <= TTL_SECONDS * 1000 and exact["bytes"] > 200_000
    text = screen(
        ["config", "apply", "--set", "maxmemory=64mb", "--dry-run"], 120, "piped",
        fleet["inventory"],
    )  # fmt: skip
    row = next(line for line in text.splitlines() if NAMES["node-1"] in line)
    assert row.split()[1:6] == ["maxmemory", "0", "B", "64.0", "MiB"]


def test_bidi_controls_in_a_key_are_escaped(fleet):
    """U+202E would show `invoice:exe.pdf`; every command prints its escape instead."""
    controls = {"\u202e", "\u200b", "\u2066"}
    for args in (
        ["-l", NAMES["node-1"], "memory", "report"],
        ["-l", NAMES["node-1"], "slowlog", "triage"],
    ):
        run = redisops("-i", fleet["inventory"], *args)
        assert run.exit_code == 0
        assert BIDI_SHOWN in run.stdout and not controls & set(run.stdout)
    args = ["-l", NAMES["node-1"], "-o", "json", "memory", "report"]
    run = redisops("-i", fleet["inventory"], *args)
    assert not controls & set(run.stdout)
    top = {key["key"]: key for key in run.json()["results"][0]["data"]["top_keys"]}
    assert base64.b64decode(top[BIDI_SHOWN]["key_base64"]).decode() == BIDI_KEY


def test_units():
    assert [human_bytes(n) for n in (None, 0, 1023, 1536, 64 * 1024**2, 3 * 1024**4)] == [
        "-", "0 B", "1023 B", "1.5 KiB", "64.0 MiB", "3.0 TiB",
    ]  # fmt: skip
    assert [human_count(n) for n in (None, 204001, 12)] == ["-", "204,001", "12"]
    assert [human_duration(s) for s in (None, 0, 6, 2.2, 12.34, 0.0123, 1239, 74159, 93784)] == [
        "-", "0s", "6s", "2.20s", "12.3s", "12.3ms", "20m 39s", "20h 35m", "1d 2h",
    ]  # fmt: skip
    assert (human_ms(3300), human_us(850), human_us(12_300), human_us(2_050_000)) == (
        "3.30s", "850µs", "12.3ms", "2.05s",
    )  # fmt: skip


def _drill() -> DrillReport:
    old, new = NAMES["node-1"], NAMES["node-2"]
    steps = (
        Step(0, "probe", "start", "writing 500/s through sentinel-eu-west-1c-prod-quorum-01"),
        Step(1200, "drill", "trigger", "SENTINEL FAILOVER cache-eu-west-1-prod-primary"),
        Step(3400, NAMES["sentinel-1"], "+switch-master",
             "cache-eu-west-1-prod-primary 10.20.30.41 6379 10.20.30.42 6379"),
    )  # fmt: skip
    return DrillReport(
        drill_id="20261205-131500-failover", started_at="2026-12-05T13:15:00Z",
        master="cache-eu-west-1-prod-primary", mode="failover", old_master=old,
        old_address="10.20.30.41:6379", new_master=new, new_address="10.20.30.42:6379",
        trigger_ms=1200, detect_ms=None, promotion_ms=2200, write_downtime_ms=0, rejoin_ms=10400,
        settled_ms=11800, writes_acked=51513, writes_lost=18550, stale_writes=505, duplicates=0,
        write_errors=3, probe_rate=500.0, failed_back=None, healthy_after=True, ok=True,
        problems=(), steps=steps,
    )  # fmt: skip


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("terminal", [False, True])
def test_drill_report_and_history_fit(width, terminal):
    """Drills are not run here (test_sentinel_drill does): their report and history are
    rendered from a realistic report, as `sentinel drill` and `sentinel history` do."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminal, color_system=None)
    output = Output()
    output._out = console
    report = _drill()
    console.print(drill_view(output, report))
    console.print(history_table(output, [HostResult(report.old_master, report.old_address,
                                                    True, None, report)]))  # fmt: skip
    text = buffer.getvalue()
    assert "…" not in text
    assert all(cell_len(line) <= width for line in text.splitlines())
    for whole in (NAMES["node-1"], NAMES["node-2"], "10.20.30.41:6379", report.drill_id):
        assert whole in text
    assert "51,513" in text and "18,550" in text


def test_a_cell_wider_than_the_screen_folds_and_is_never_cut():
    """A 120-character key at 80 columns: vertical layout, the key folded over two lines
    (every character kept), not `…`."""
    key = "k" * 60 + ":" + "v" * 59
    table = FitTable("top key", "bytes", essential=("top key",), box=None, pad_edge=False)
    table.add_row(key, "1.0 KiB")
    buffer = io.StringIO()
    Console(file=buffer, width=80, color_system=None).print(table)
    text = buffer.getvalue()
    assert "…" not in text
    assert "".join(line.split()[-1] for line in text.splitlines()[:2]) == key


def test_every_cell_and_diagnostic_escapes_what_a_terminal_would_act_on(capsys):
    """Behind key_text, a safety net: any cell or stderr line (a key in an error message)
    is shown with ESC and bidi controls escaped; line breaks in a cell stay."""
    output = Output()
    assert output.cell("a\x1b[2Jb\u202ec\nd") == "a\\x1b[2Jb\\u202ec\nd"
    output.error(f"cannot restore key {BIDI_KEY}")
    assert capsys.readouterr().err == f"error: cannot restore key {BIDI_SHOWN}\n"
