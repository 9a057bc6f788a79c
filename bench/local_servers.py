"""redis-server processes for the benchmarks: loopback only, no persistence, waited for."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

START_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis_servers(folder: Path, count: int) -> list[tuple[subprocess.Popen, int]]:
    """Start `count` redis-servers on free 127.0.0.1 ports; return once all accept connections."""
    servers = []
    for _ in range(count):
        port = free_port()
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder),
             "--logfile", str(folder / f"redis-{port}.log")],
        )  # fmt: skip
        servers.append((process, port))
    deadline = time.monotonic() + START_SECONDS
    for _, port in servers:
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                stop_redis_servers(servers)
                raise SystemExit(f"redis-server on port {port} did not start")
            time.sleep(0.02)
    return servers


def stop_redis_servers(servers: list[tuple[subprocess.Popen, int]]) -> None:
    for process, _ in servers:
        process.kill()
        process.wait()
