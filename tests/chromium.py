"""Headless Chromium for tests of HTML pages: load a file, get its DOM, its console messages
and a screenshot, each run bounded in time and in its own process group and profile.

Chromium's background services (updates, sync, safe browsing) are off: this machine's network
is closed, and a test must not depend on it anyway. `require_chromium` skips where Debian's
`chromium` is missing, except on CI, where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT = 60
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root on CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--disable-dev-shm-usage",  # a container's /dev/shm is often too small for it
)


def require_chromium() -> Path:
    """The browser, or a skip saying why; on CI (`CI` set) a missing browser fails instead."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} is missing: install Debian's chromium (make system-deps)"
    if os.environ.get("CI"):
        pytest.fail(reason + "; CI must run this test")
    pytest.skip(reason)


@dataclass(frozen=True)
class PageLoad:
    """What Chromium reported: the DOM after load and its console lines (JavaScript errors,
    refused fetches: a Content-Security-Policy violation is a console message)."""

    dom: str
    console: list[str]


def load_page(page: Path) -> PageLoad:
    """The DOM of `page` after load, and every console message Chromium logged for it."""
    result = _run(["--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()])
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return PageLoad(result.stdout, console)


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 2000) -> None:
    """A PNG of `page` at `width` x `height` CSS pixels."""
    _run([f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri()])
    assert png.exists(), f"Chromium wrote no screenshot to {png}"


def _run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        process = subprocess.Popen(
            [str(require_chromium()), *FLAGS, f"--user-data-dir={profile}", *arguments],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group: the renderer and GPU children die with it
        )
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        finally:
            # Children may outlive the browser process (a zygote); end the whole group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert process.returncode == 0, f"chromium exited {process.returncode}: {stderr[-2000:]}"
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@dataclass(frozen=True)
class Picture:
    """A decoded PNG: size and the set of distinct RGB(A) pixel values."""

    width: int
    height: int
    colours: set[bytes]


def read_png(path: Path) -> Picture:
    """Decode an 8-bit RGB or RGBA non-interlaced PNG (what Chromium writes) with zlib alone."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    offset, idat = 8, b""
    width = height = channels = 0
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type)
            channels = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytes(stride)
    colours: set[bytes] = set()
    for row in range(height):
        start = row * (stride + 1)
        line = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, channels)
        colours.update(line[i : i + channels] for i in range(0, stride, channels))
        previous = line
    return Picture(width, height, colours)


@functools.cache
def _masks(size: int) -> tuple[int, int]:
    return int.from_bytes(b"\x7f" * size, "big"), int.from_bytes(b"\x80" * size, "big")


def _unfilter(kind: int, filtered: bytes, previous: bytes, bpp: int) -> bytes:
    """Undo one scanline's PNG filter (RFC 2083, 6.3)."""
    if kind == 0:
        return filtered
    if kind == 2:
        # "Up", most of Chromium's rows: bytewise addition mod 256 of two whole rows at once,
        # as big integers with the carries between bytes masked off.
        size = len(filtered)
        low, high = _masks(size)
        a, b = int.from_bytes(filtered, "big"), int.from_bytes(previous, "big")
        return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(size, "big")
    line = bytearray(filtered)
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            corner = previous[i - bpp] if i >= bpp else 0
            estimate = left + up - corner
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
            nearest = left if pa <= pb and pa <= pc else up if pb <= pc else corner
            line[i] = (line[i] + nearest) & 0xFF
    return bytes(line)
