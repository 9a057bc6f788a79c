"""An RDB snapshot over the replication protocol, as `redis-cli --rdb` takes it: no shell access
to the host needed, nothing written on its disk when the server syncs diskless.

`REPLCONF rdb-only 1` (Redis >= 7) asks for the snapshot alone, without the replication
stream after it; `PSYNC ? -1` (rather than SYNC) makes the server say which replication id and
offset the snapshot stands at, for the manifest.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from redisops.errors import HostError
from redisops.fleet.host import Host
from redisops.fleet.server import server_identity
from redisops.interrupt import raise_if_stopped
from redisops.serverinfo import parse_info

if TYPE_CHECKING:
    from redisops.fleet.resp import RespConnection

RECV_CHUNK = 1 << 20
# While a diskless snapshot streams, the socket wakes us only once this much has arrived,
# not for every ~20 KiB: a third of the wake-ups, and half the CPU of the copy (0.32 ->
# 0.17 s for 1M keys), which the server's fork and redis-check-rdb need on a small machine.
BATCH_BYTES = 256 << 10
# ... or once this long has passed with less: the last bytes then come at once, where
# waiting for the server to close the connection cost 0-100 ms (it notices that its fork
# has ended in serverCron, 10 times a second) and a server that keeps the connection open
# (no rdb-only) would have stalled.
BATCH_WAIT_SECONDS = 0.01
EOF_MARK_BYTES = 40  # diskless sync ends the payload with a random 40-byte mark
# An unbatched read waits at most this long at once, so that an interrupt is seen within it;
# the stall timeout counts the waits together.
WAIT_SLICE_SECONDS = 0.25
_LINE_LIMIT = 4096


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> object: ...


@dataclass(frozen=True)
class ReplicationSnapshot:
    """What the server said about the snapshot it streamed, and how many bytes it was."""

    replid: str | None
    offset: int | None
    rdb_only: bool
    diskless: bool
    bytes: int


def stream_rdb(
    host: Host,
    sink: Sink,
    *,
    timeout: float,
    progress: Callable[[int, int], None] | None = None,
) -> ReplicationSnapshot:
    """Take an RDB snapshot of `host` over replication and write it, as it arrives, to `sink`.

    `timeout` bounds each wait for data (the server sends a newline every second while its
    fork prepares the snapshot, so a slow BGSAVE is not mistaken for a dead server).
    `progress(done, total)` gets total 0 when the size is not known in advance (diskless).
    Raises HostError when the server refuses, or the stream ends or stalls before the end.
    """
    from redisops.fleet.resp import RespConnection

    connection = RespConnection(host, timeout=timeout)
    try:
        return RdbSync(connection).receive(sink, progress)
    finally:
        connection.close()


class RdbSync:
    """A snapshot asked for on an open connection: PSYNC goes out at once, so the server's
    fork starts while the caller gets ready to `receive` it."""

    def __init__(self, connection: RespConnection) -> None:
        import hiredis

        host = connection.host
        identity = server_identity(parse_info(connection.call(b"INFO", b"server")))
        self._stream = _Stream(connection.sock, host, connection.timeout)
        # Valkey picks the RDB version of the stream by the replica's announced version: without
        # one it assumes an old replica and fails on keys only its own format can hold (hashes
        # with field TTLs: "Can't store key ... in RDB version 11"). Announce its own version.
        announce = identity.flavour == "valkey"
        connection.send(
            hiredis.pack_command((b"REPLCONF", b"rdb-only", b"1"))
            + hiredis.pack_command((b"REPLCONF", b"capa", b"eof"))
            + (
                hiredis.pack_command((b"REPLCONF", b"version", identity.version.encode()))
                if announce
                else b""
            )
        )
        self._rdb_only = not self._stream.reply().startswith(b"-")  # Redis < 7 lacks rdb-only
        capa = self._stream.reply()
        if capa.startswith(b"-"):
            raise HostError(f"{host.address} replied with an error: {_show(capa[1:])}")
        if announce and (version := self._stream.reply()).startswith(b"-"):
            raise HostError(f"{host.address} refused REPLCONF version: {_show(version[1:])}")
        # PSYNC only after those replies: the server refuses it while output is pending.
        connection.send(hiredis.pack_command((b"PSYNC", b"?", b"-1")))
        self._host = host

    def receive(
        self, sink: Sink, progress: Callable[[int, int], None] | None = None
    ) -> ReplicationSnapshot:
        """Write the snapshot to `sink` as it arrives; HostError as for `stream_rdb`."""
        stream, host, rdb_only = self._stream, self._host, self._rdb_only
        replid, offset = _full_resync(stream.reply(), host)
        header = stream.reply()
        if header.startswith(b"$EOF:"):
            mark = header[5:]
            if len(mark) != EOF_MARK_BYTES:
                raise HostError(f"{host.address} sent a malformed snapshot header")
            # Not over TLS: OpenSSL reads record by record, and would retry a timed-out
            # batched wait by itself, out of reach of the stall timeout.
            if host.tls is None:
                stream.batch(BATCH_BYTES)
            size = stream.until_mark(mark, sink, progress)
            diskless = True
        elif header.startswith(b"$"):
            size = stream.exactly(_number(header[1:], host), sink, progress)
            diskless = False
        else:
            raise HostError(f"{host.address} answered PSYNC with {_show(header)}")
        return ReplicationSnapshot(replid, offset, rdb_only, diskless, size)


def _full_resync(line: bytes, host: Host) -> tuple[str | None, int | None]:
    if line.startswith(b"-"):
        raise HostError(f"{host.address} refused to sync: {_show(line[1:])}")
    words = line.split()
    if len(words) == 3 and words[0] == b"+FULLRESYNC":
        return words[1].decode(), _number(words[2], host)
    raise HostError(f"{host.address} answered PSYNC with {_show(line)}")


class _Stream:
    """The raw socket after PSYNC: lines of the preamble, then the payload, buffered once."""

    def __init__(self, sock: socket.socket, host: Host, timeout: float) -> None:
        self._sock = sock
        self._host = host
        self._timeout = timeout
        sock.settimeout(min(timeout, WAIT_SLICE_SECONDS))
        self._buffer = bytearray(RECV_CHUNK)
        self._view = memoryview(self._buffer)
        self._pending = b""  # received, not yet consumed

    def line(self) -> bytes:
        """The next line without its line ending; keepalives are empty lines."""
        while b"\n" not in self._pending:
            if len(self._pending) > _LINE_LIMIT:
                raise HostError(f"{self._host.address} sent an overlong line while syncing")
            self._pending += self._recv_copy()
        line, _, self._pending = self._pending.partition(b"\n")
        return line.rstrip(b"\r")

    def reply(self) -> bytes:
        """The next non-empty line: the server sends bare newlines as keepalives while its
        fork prepares the snapshot."""
        line = self.line()
        while line == b"":
            line = self.line()
        return line

    def batch(self, size: int) -> None:
        """Wake when `size` bytes are ready, or BATCH_WAIT_SECONDS after a read began with
        what has come by then. The kernel bounds each wait (SO_RCVTIMEO on a blocking
        socket): Python's own timeout polls first, and poll waits for all `size` bytes."""
        wait = int(BATCH_WAIT_SECONDS * 1_000_000)
        self._sock.settimeout(None)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
        self._sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", *divmod(wait, 1_000_000))
        )

    def exactly(self, total: int, sink: Sink, progress: Callable | None) -> int:
        done = self._flush_pending(sink, limit=total)
        while done < total:
            received = self._recv(min(RECV_CHUNK, total - done), done, total)
            sink.write(self._view[:received])
            done += received
            if progress is not None:
                progress(done, total)
        return done

    def until_mark(self, mark: bytes, sink: Sink, progress: Callable | None) -> int:
        """Copy until the stream's last 40 bytes are `mark`; the mark is not copied."""
        held = self._pending  # the last bytes seen, which may be (part of) the mark
        self._pending = b""
        done = 0
        if len(held) > EOF_MARK_BYTES:
            sink.write(held[:-EOF_MARK_BYTES])
            done, held = len(held) - EOF_MARK_BYTES, held[-EOF_MARK_BYTES:]
        while held != mark:
            received = self._recv(RECV_CHUNK, done + len(held), 0)
            chunk = self._view[:received]
            if received >= EOF_MARK_BYTES:
                if held:
                    sink.write(held)
                    done += len(held)
                sink.write(chunk[:-EOF_MARK_BYTES])
                done += received - EOF_MARK_BYTES
                held = bytes(chunk[-EOF_MARK_BYTES:])
            else:
                joined = held + bytes(chunk)
                cut = max(0, len(joined) - EOF_MARK_BYTES)
                if cut:
                    sink.write(joined[:cut])
                    done += cut
                held = joined[cut:]
            if progress is not None:
                progress(done, 0)
        return done

    def _flush_pending(self, sink: Sink, *, limit: int) -> int:
        if len(self._pending) > limit:
            raise HostError(f"{self._host.address} sent more than the announced snapshot")
        data, self._pending = self._pending, b""
        if data:
            sink.write(data)
        return len(data)

    def _recv(self, size: int, done: int, total: int) -> int:
        """Bytes into the buffer; HostError after `timeout` with nothing, Interrupted as soon
        as a stop is asked for (within one wait)."""
        raise_if_stopped()
        idle_since = time.monotonic()
        while True:
            try:
                received = self._sock.recv_into(self._view, size)
                break
            # BlockingIOError: a batched wait, TimeoutError: one slice of a plain wait passed
            # with nothing at all.
            except (BlockingIOError, TimeoutError):
                raise_if_stopped()
                if time.monotonic() - idle_since < self._timeout:
                    continue
                raise self._stalled(done) from None
            except OSError as exc:
                raise HostError(
                    f"connection to {self._host.address} lost after {done:,} bytes of the "
                    f"snapshot: {exc.strerror or exc}"
                ) from None
        if not received:
            expected = f" of {total:,}" if total else ""
            raise HostError(
                f"{self._host.address} closed the connection after {done:,}{expected} bytes "
                "of the snapshot (server or its fork died?)"
            )
        return received

    def _stalled(self, done: int) -> HostError:
        return HostError(
            f"{self._host.address} stalled for {self._timeout:g}s after {done:,} bytes of "
            "the snapshot"
        )

    def _recv_copy(self) -> bytes:
        return bytes(self._view[: self._recv(RECV_CHUNK, 0, 0)])


def _number(text: bytes, host: Host) -> int:
    try:
        return int(text)
    except ValueError:
        raise HostError(f"{host.address} sent a malformed snapshot header") from None


def _show(line: bytes) -> str:
    return line[:120].decode(errors="replace")
