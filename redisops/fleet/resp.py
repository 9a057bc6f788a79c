"""A plain RESP connection: one socket, commands packed and replies parsed by hiredis.

For hot loops where redis-py's per-command objects cost more than the server's work (key
scans, replication streams). Errors become one-line HostErrors; bounded by a timeout.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from redisops.errors import HostError
from redisops.fleet.host import Host, TlsSettings
from redisops.fleet.secrets import resolve_password

if TYPE_CHECKING:
    import hiredis

READ_CHUNK = 1 << 20


class RespConnection:
    """A plain socket to one Redis server with a hiredis reader; bounded by `timeout`."""

    def __init__(self, host: Host, *, timeout: float) -> None:
        import hiredis

        self.host = host
        self.timeout = timeout
        self.reader: hiredis.Reader = hiredis.Reader()
        self._buffer = bytearray(READ_CHUNK)
        password = resolve_password(host)
        try:
            self.sock = socket.create_connection((host.host, host.port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if host.tls is not None:
                self.sock = _wrap_tls(self.sock, host.host, host.tls)
        except OSError as exc:
            raise HostError(f"cannot connect to {host.address}: {_reason(exc)}") from None
        if password is not None:
            credentials = [host.username, password] if host.username else [password]
            try:
                self.call(b"AUTH", *[c.encode() for c in credentials])
            except HostError as exc:
                self.sock.close()
                raise HostError(f"authentication to {host.address} failed: {exc.message}") from None

    def call(self, *parts: bytes | str | int) -> Any:
        """One command, one reply; an error reply becomes HostError."""
        import hiredis

        self.send(hiredis.pack_command(parts))
        reply = self.replies(1)[0]
        if isinstance(reply, hiredis.ReplyError):
            from redisops.fleet.connection import auth_required, needs_password

            if needs_password(reply, self.host):
                raise HostError(auth_required(self.host))
            raise HostError(f"{self.host.address} replied with an error: {reply}")
        return reply

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise self._lost(exc) from None

    def replies(self, count: int) -> list[Any]:
        """Read exactly `count` replies (error replies are returned, not raised)."""
        out: list[Any] = []
        if count == 0:
            return out
        reader, view = self.reader, memoryview(self._buffer)
        while True:
            reply = reader.gets()
            while reply is not False:
                out.append(reply)
                if len(out) == count:
                    return out
                reply = reader.gets()
            try:
                received = self.sock.recv_into(view)
            except OSError as exc:
                raise self._lost(exc) from None
            if not received:
                raise HostError(f"{self.host.address} closed the connection mid-scan")
            reader.feed(view[:received])

    def close(self) -> None:
        self.sock.close()

    def _lost(self, exc: OSError) -> HostError:
        if isinstance(exc, socket.timeout):
            return HostError(f"{self.host.address} did not answer within {self.timeout:g}s")
        return HostError(f"connection to {self.host.address} lost: {_reason(exc)}")


def _wrap_tls(sock: socket.socket, server_name: str, tls: TlsSettings) -> socket.socket:
    import ssl

    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname=server_name)


def _reason(exc: OSError) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    return exc.strerror or str(exc) or type(exc).__name__
