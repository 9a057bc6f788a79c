"""The servers' own checkers, redis-check-rdb / valkey-check-rdb and redis-check-aof, when
installed on this machine.

The RDB checker reads /dev/stdin, so it is fed the raw bytes while a backup streams in (or
while a compressed one is decompressed): it costs no second pass and runs on a second core.
Which one runs is decided by the file's header (REDIS or VALKEY): each server's checker
refuses the other's format. Its key counts are exact, so they go into the manifest.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

CHECK_RDB = "redis-check-rdb"
CHECK_AOF = "redis-check-aof"
# The checker of each RDB flavour (the magic its header starts with); an AOF's checker is the
# one of its RDB base or preamble, as each refuses the other's RDB format.
CHECK_RDB_TOOLS = {"redis": CHECK_RDB, "valkey": "valkey-check-rdb"}
CHECK_AOF_TOOLS = {"redis": CHECK_AOF, "valkey": "valkey-check-aof"}
_MAGICS = {b"REDIS": "redis", b"VALKEY": "valkey"}
_MAGIC_BYTES = 6
FINISH_SECONDS = 600.0
# A pipe of 1 MiB (Linux's default ceiling for unprivileged processes) rather than 64 KiB:
# when the checker is briefly off the CPU, feeding it must not stall the snapshot's reader.
PIPE_BYTES = 1 << 20

_COUNTS = {
    "keys": re.compile(rb"\[info\] (\d+) keys read"),
    "expires": re.compile(rb"\[info\] (\d+) expires"),
    "already_expired": re.compile(rb"\[info\] (\d+) already expired"),
}


# What a checker from an older Redis says of a newer RDB (Redis 7.0's of 7.2's version 11),
# and what Valkey's says of Redis 7.4+ formats it does not load.
_TOO_NEW = re.compile(rb"Can't handle RDB format version (\d+)|Foreign RDB version (\d+)")


@dataclass(frozen=True)
class ToolVerdict:
    """What one run of a Redis checker said; counts only from redis-check-rdb. `too_old`:
    the tool could not read this RDB version at all, so it said nothing about the data."""

    tool: str
    ok: bool
    message: str
    keys: int | None = None
    expires: int | None = None
    already_expired: int | None = None
    too_old: bool = False


def _too_old(tool: str, output: bytes) -> ToolVerdict | None:
    found = _TOO_NEW.search(output)
    if found is None:
        return None
    if found.group(2):
        message = f"skipped: {tool} does not load RDB version {found.group(2)} (another server's)"
        return ToolVerdict(tool, False, message, too_old=True)
    version = int(found.group(1))
    message = f"skipped: this {tool} is older than the server and cannot read RDB version {version}"
    return ToolVerdict(tool, False, message, too_old=True)


def find_tool(name: str) -> str | None:
    return shutil.which(name)


def aof_tool_for(head: bytes) -> str:
    """The AOF checker for an AOF whose base (or single file) starts with `head`: Valkey's
    when it is a Valkey RDB, Redis's otherwise (an RDB base of Redis, or plain commands)."""
    flavour = next((f for magic, f in _MAGICS.items() if head.startswith(magic)), "redis")
    return CHECK_AOF_TOOLS[flavour]


class RdbToolFeed:
    """The RDB checker that matches the file, reading from a pipe: `feed` raw bytes, then
    `finish()` for the verdict. It starts once the header shows which checker that is; when
    it is not installed (or the file is no RDB) the verdict says it was skipped.

    Its output goes to a temporary file, never a pipe, so it can never block on it while
    we block on feeding it.
    """

    def __init__(self) -> None:
        self._head = b""
        self._tool = CHECK_RDB
        self._process: subprocess.Popen | None = None
        self._output = None
        self._open = True

    def feed(self, data: bytes | memoryview) -> None:
        if not self._open:
            return
        if self._process is None:
            self._head += bytes(data)
            if len(self._head) < _MAGIC_BYTES or not self._start():
                return
            data = self._head
        try:
            self._process.stdin.write(data)
        except (BrokenPipeError, OSError):
            self._open = False  # it stopped reading: it found a problem; finish() says which

    def _start(self) -> bool:
        """Start the checker the header calls for; False (and stop listening) without one."""
        flavour = next((f for magic, f in _MAGICS.items() if self._head.startswith(magic)), None)
        self._tool = CHECK_RDB_TOOLS.get(flavour, CHECK_RDB)
        path = find_tool(self._tool) if flavour else None
        if path is None:
            self._open = False
            return False
        self._output = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish/abort
        self._process = subprocess.Popen(
            [path, "/dev/stdin"],
            stdin=subprocess.PIPE,
            stdout=self._output,
            stderr=subprocess.STDOUT,
            pipesize=PIPE_BYTES,
        )
        return True

    def finish(self) -> ToolVerdict:
        if self._process is None:
            why = "not installed" if self._head.startswith(tuple(_MAGICS)) else "no RDB header"
            return ToolVerdict(self._tool, False, f"skipped: {why}", too_old=True)
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            status = self._process.wait(timeout=FINISH_SECONDS)
        except subprocess.TimeoutExpired:
            self.abort()
            return ToolVerdict(self._tool, False, f"did not finish within {FINISH_SECONDS:g}s")
        self._output.seek(0)
        text = self._output.read()
        self._output.close()
        return rdb_verdict(status, text, self._tool)

    def abort(self) -> None:
        if self._process is None:
            return
        with contextlib.suppress(OSError):
            self._process.kill()
        self._process.wait()
        self._output.close()


def rdb_verdict(status: int, output: bytes, tool: str = CHECK_RDB) -> ToolVerdict:
    counts = {}
    for name, pattern in _COUNTS.items():
        found = pattern.search(output)
        counts[name] = int(found.group(1)) if found else None
    if status == 0:
        return ToolVerdict(tool, True, f"ok, {counts['keys']} keys", **counts)
    problem = _first_error(output, status)
    return _too_old(tool, output) or ToolVerdict(tool, False, problem, **counts)


def check_aof(
    path: str, manifest: str, *, tool: str = CHECK_AOF, timeout: float = FINISH_SECONDS
) -> ToolVerdict:
    """The AOF checker at `path` (named `tool`) on a Redis 7 manifest (all parts) or a
    single-file AOF; never --fix."""
    try:
        done = subprocess.run(
            [path, manifest],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ToolVerdict(tool, False, f"did not finish within {timeout:g}s")
    output = done.stdout + done.stderr
    if done.returncode == 0:
        return ToolVerdict(tool, True, "ok")
    return _too_old(tool, output) or ToolVerdict(tool, False, _first_error(output, done.returncode))


def _first_error(output: bytes, status: int) -> str:
    """The line that says what is wrong, without the `[offset N]` prefix where there is one."""
    lines = [line.strip() for line in output.decode(errors="replace").splitlines()]
    if "--- RDB ERROR DETECTED ---" in lines:
        after = lines[lines.index("--- RDB ERROR DETECTED ---") + 1 :]
        if after:
            return re.sub(r"^\[offset \d+\]\s*", "", after[0])
    for line in reversed(lines):
        lowered = line.lower()
        if any(word in lowered for word in ("error", "bad", "invalid", "not valid", "missing")):
            return line[:200]
    return f"exited with status {status}"
