"""`redisops --help` start-up time against `python -c "import typer"`, alternating runs.

Target (issue 17): median ratio <= 1.2, and neither redis-py nor paramiko imported for --help.
Run: .venv/bin/python bench/help_startup.py [--rounds N]

Both are timed with bytecode caches on, as users run them: PYTHONDONTWRITEBYTECODE (set in
some shells and CI images) is removed from the children's environment, else every run
compiles redisops from source and the ratio measures the compiler.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HELP = [sys.executable, "-m", "redisops", "--help"]
ANCHOR = [sys.executable, "-c", "import typer"]
ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=ENV)
    return time.perf_counter() - started


def heavy_imports() -> list[str]:
    """Top-level packages among redis, paramiko, yaml that `--help` imports (should be none)."""
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "redisops", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=ENV,
    ).stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in trace.splitlines() if "|" in line}
    return sorted(m for m in modules if m.split(".")[0] in {"redis", "paramiko", "yaml"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds

    timed(HELP), timed(ANCHOR)  # warm the file cache and write the bytecode caches
    help_times, anchor_times, ratios = [], [], []
    for _ in range(rounds):
        anchor = timed(ANCHOR)
        help_time = timed(HELP)
        anchor_times.append(anchor)
        help_times.append(help_time)
        ratios.append(help_time / anchor)

    print(f"rounds: {rounds}")
    print(f"python -c 'import typer'  median {statistics.median(anchor_times) * 1000:.0f} ms")
    print(f"redisops --help           median {statistics.median(help_times) * 1000:.0f} ms")
    print(f"median ratio (help / import typer): {statistics.median(ratios):.2f}  (target <= 1.2)")
    heavy = heavy_imports()
    print(f"heavy modules imported by --help: {', '.join(heavy) if heavy else 'none'}")


if __name__ == "__main__":
    main()
