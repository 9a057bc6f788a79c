"""One Ctrl-C (or SIGTERM) stops a long command within a second: a real `python -m redisops`
process, a real signal, a real scan in progress."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

POLL_SECONDS = 0.05
START_DEADLINE = 30.0
STOP_BOUND = 2.0  # "within a second", with room for a loaded machine


def scan_calls(port: int, password: str) -> int:
    client = redis.Redis(port=port, password=password, socket_timeout=5)
    try:
        return int(client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0))
    finally:
        client.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_memory_report_mid_scan(make_lab, signum, code):
    lab = make_lab(seed_keys=3000)
    password = (Path(lab.dir) / "secret").read_text().strip()
    port = lab.processes[0].port
    before = scan_calls(port, password)
    process = subprocess.Popen(
        [sys.executable, "-m", "redisops", "-i", lab.inventory_path, "-l", "node-1",
         "memory", "report", "--rate", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_DEADLINE
        while scan_calls(port, password) <= before + 1:  # the scan is under way
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the scan never started"
            time.sleep(POLL_SECONDS)
        sent = time.monotonic()
        os.kill(process.pid, signum)
        stdout, stderr = process.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, stderr
    assert took < STOP_BOUND, f"took {took:.2f}s to stop"
    name = signal.Signals(signum).name
    assert stderr.strip().splitlines()[-1] == f"interrupted: {name}; 0 of 1 hosts finished"
    assert stdout == ""  # no half report that looks whole
