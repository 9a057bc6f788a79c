"""What redisops knows of Redis's AOF files: RESP commands, an RDB preamble before them, and
the Redis 7 manifest. Checkers are fed the raw bytes as they stream by, so a backup is checked
while it is written, without a second read.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from redisops.rdb.crc64 import crc64
from redisops.rdb.format import (
    CRC_DISABLED,
    CRC_OK,
    HEAD_KEPT,
    HEADER_BYTES,
    RDB_MAGIC,
    RDB_OPCODE_EOF,
    TRAILER_BYTES,
    VALKEY_MAGIC,
    RdbFacts,
    rdb_format,
    read_aux_fields,
)

PREAMBLE_UNENDED = (
    "RDB preamble truncated or corrupted: no end-of-file marker with its CRC64 before the commands"
)


@dataclass
class RespChecker:
    """Feed it an AOF (RESP commands, `#` annotations) in order; counts whole commands.

    `problem` names the first thing that is not a well-formed command; at `finish()` a
    partial command at the end is reported as truncation.
    """

    commands: int = 0
    problem: str | None = None
    _buffer: bytearray = field(default_factory=bytearray)
    _offset: int = 0

    def feed(self, data: bytes | memoryview) -> None:
        if self.problem is None:
            self._buffer += data
            self._parse()

    def finish(self) -> str | None:
        if self.problem is None and self._buffer:
            self.problem = (
                f"truncated: an incomplete command at byte {self._offset} "
                f"({len(self._buffer)} bytes left over)"
            )
        return self.problem

    def _parse(self) -> None:
        buf = self._buffer
        end = len(buf)
        pos = 0
        while pos < end:
            start = pos
            if buf[pos] == 0x23:  # "#TS:..." annotation line
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    break
                pos = newline + 1
                continue
            parsed = self._command(buf, pos, end)
            if parsed is None:
                break
            if parsed < 0:
                self.problem = f"not a RESP command at byte {self._offset + start}"
                return
            pos = parsed
            self.commands += 1
        del buf[:pos]
        self._offset += pos

    @staticmethod
    def _command(buf: bytearray, pos: int, end: int) -> int | None:
        """The position after one command starting at `pos`; None if incomplete, -1 if bad."""
        if buf[pos] != 0x2A:  # "*"
            return -1
        newline = buf.find(b"\r\n", pos)
        if newline < 0:
            return None
        try:
            argc = int(buf[pos + 1 : newline])
            pos = newline + 2
            for _ in range(argc):
                if pos >= end:
                    return None
                if buf[pos] != 0x24:  # "$"
                    return -1
                newline = buf.find(b"\r\n", pos)
                if newline < 0:
                    return None
                pos = newline + 2 + int(buf[pos + 1 : newline]) + 2
                if pos > end:
                    return None
                if buf[pos - 2 : pos] != b"\r\n":
                    return -1
        except ValueError:
            return -1
        return pos


class AofChecker:
    """Feed it one AOF file in order: RESP commands or, as Redis writes after a rewrite with
    aof-use-rdb-preamble (the default since 5.0), an RDB snapshot and then commands.

    The RDB carries no length: it ends at the EOF opcode whose next 8 bytes are the CRC64 of
    everything up to it, followed by a command, an annotation or the end of the file. Only
    such candidates are tried, against a running CRC, so the file is read once, and a wrong
    end would need a 64-bit checksum to match by chance. A preamble saved with rdbchecksum no
    (trailer 0) cannot be told apart that way: it is reported unverifiable, its commands
    unchecked. `finish()` gives the first problem or None; `preamble` the RDB's facts.
    """

    def __init__(self) -> None:
        self.resp = RespChecker()
        self.preamble: RdbFacts | None = None
        self._mode = "start"  # then "rdb" (inside a preamble) or "resp"
        self._pending = bytearray()  # preamble bytes not yet in the CRC
        self._head = bytearray()
        self._crc = 0
        self._offset = 0  # file offset of _pending[0]
        self._unchecksummed_end = False

    @property
    def commands(self) -> int:
        return self.resp.commands

    def feed(self, data: bytes | memoryview) -> None:
        if self._mode == "resp":
            self.resp.feed(data)
            return
        self._pending += data
        if len(self._head) < HEAD_KEPT:
            self._head += data[: HEAD_KEPT - len(self._head)]
        if self._mode == "start":
            if len(self._pending) < len(VALKEY_MAGIC):
                return
            if not self._pending.startswith((RDB_MAGIC, VALKEY_MAGIC)):
                self._mode = "resp"
                self.resp.feed(bytes(self._pending))
                self._pending.clear()
                return
            self._mode = "rdb"
        self._find_rdb_end(at_file_end=False)

    def finish(self) -> str | None:
        if self._mode == "start":
            self.resp.feed(bytes(self._pending))
        elif self._mode == "rdb":
            self._find_rdb_end(at_file_end=True)
        if self._mode != "rdb":
            return self.resp.finish()
        if self._unchecksummed_end:
            self.preamble = self._facts(CRC_DISABLED, self._offset)
            return None
        return PREAMBLE_UNENDED

    def _find_rdb_end(self, *, at_file_end: bool) -> None:
        """Move on to the commands at the preamble's end, if it lies in what is pending."""
        buf = self._pending
        # An EOF opcode up to here has its whole trailer and, unless the file ends, the
        # byte after it.
        last = len(buf) - TRAILER_BYTES - (0 if at_file_end else 1)
        in_crc = 0  # bytes of buf already in self._crc
        at = buf.find(RDB_OPCODE_EOF)
        while 0 <= at <= last:
            end = at + 1 + TRAILER_BYTES
            after = buf[end : end + 1]
            if after in (b"*", b"#") or (at_file_end and end == len(buf)):
                self._crc = crc64(memoryview(buf)[in_crc : at + 1], self._crc)
                in_crc = at + 1
                trailer = int.from_bytes(buf[at + 1 : end], "little")
                if trailer == self._crc:
                    self._preamble_ends(end)
                    return
                self._unchecksummed_end |= trailer == 0
            at = buf.find(RDB_OPCODE_EOF, at + 1)
        kept = 0 if at_file_end else min(len(buf) - in_crc, TRAILER_BYTES + 1)
        self._crc = crc64(memoryview(buf)[in_crc : len(buf) - kept], self._crc)
        self._offset += len(buf) - kept
        del buf[: len(buf) - kept]

    def _preamble_ends(self, end: int) -> None:
        self.preamble = self._facts(CRC_OK, self._offset + end)
        rest = bytes(self._pending[end:])
        self.resp = RespChecker(_offset=self._offset + end)
        self._pending.clear()
        self._mode = "resp"
        if rest:
            self.resp.feed(rest)

    def _facts(self, crc: str, size: int) -> RdbFacts:
        head = bytes(self._head)
        try:
            found = rdb_format(head[:HEADER_BYTES], known=False)
        except ValueError:
            return RdbFacts(None, {}, crc, size, ("RDB preamble has no version",))
        aux = read_aux_fields(head)
        return RdbFacts(found.version, aux, crc, size, (), flavour=found.flavour)


@dataclass(frozen=True)
class AofPart:
    """One file named by a Redis 7 AOF manifest: type "b" (base), "i" (incr) or "h" (history)."""

    name: str
    seq: int
    type: str


def parse_aof_manifest(text: str) -> list[AofPart]:
    """The parts a Redis 7 AOF manifest names, in file order; ValueError on a bad line."""
    parts = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        words = shlex.split(line)  # names with spaces are quoted, as sdssplitargs reads them
        if len(words) % 2:
            raise ValueError(f"manifest line {number} is not key/value pairs")
        values = dict(zip(words[::2], words[1::2], strict=True))
        try:
            part = AofPart(values["file"], int(values["seq"]), values["type"])
        except (KeyError, ValueError):
            raise ValueError(f"manifest line {number} lacks file, seq or type") from None
        if part.type not in ("b", "i", "h") or "/" in part.name:
            raise ValueError(f"manifest line {number} has a bad type or file name")
        parts.append(part)
    if sum(1 for p in parts if p.type == "b") > 1:
        raise ValueError("manifest names more than one base file")
    if not any(p.type in ("b", "i") for p in parts):
        raise ValueError("manifest names no base or incr file")
    return parts
