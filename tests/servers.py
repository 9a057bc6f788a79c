"""Plain redis-server processes for tests that need one outside a lab (frozen, TLS, …)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

START_SECONDS = 10


def free_port() -> int:
    """A loopback port nobody listens on right now (also: a closed port to connect to)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis_server(folder: Path, *options: str, port: int | None = None) -> tuple:
    """Start redis-server on 127.0.0.1 (`--port` or, with TLS options, `--tls-port`), no saves.

    Returns (process, port) once the port accepts connections; the caller stops the process.
    """
    port = port or free_port()
    listen = ["--port", "0", "--tls-port", str(port)] if "--tls-cert-file" in options else [
        "--port", str(port)
    ]  # fmt: skip
    process = subprocess.Popen(
        ["redis-server", *listen, "--bind", "127.0.0.1", "--save", "", "--dir", str(folder),
         "--logfile", str(folder / f"redis-{port}.log"), *options],
    )  # fmt: skip
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server on port {port} did not start; see {folder}")


@contextmanager
def frozen_redis_server(folder: Path) -> Iterator[int]:
    """A redis-server that accepts connections and never answers (SIGSTOP); yields its port."""
    process, port = start_redis_server(folder)
    try:
        os.kill(process.pid, signal.SIGSTOP)
        yield port
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait(timeout=10)
