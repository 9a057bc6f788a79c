"""What redisops itself knows of Redis's files: the RDB header and trailer, AOF commands, and
the Redis 7 AOF manifest. Checkers are fed the raw bytes as they stream by, so a backup is
checked while it is written, without a second read.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from redisops.backup.crc64 import crc64

RDB_MAGIC = b"REDIS"
# The RDB version each Redis writes, and the newest it loads (rdb.h's RDB_VERSION), from the
# release that first wrote it: 6 by 2.6, 7 by 3.2, 8 by 4.0, 9 by 5.0-6.2, 10 by 7.0, 11 by
# 7.2, 12 by 7.4 and 8.x.
RDB_VERSION_SINCE = ((7, 4, 12), (7, 2, 11), (7, 0, 10), (5, 0, 9), (4, 0, 8), (3, 2, 7), (2, 6, 6))
NEWEST_KNOWN_RDB_VERSION = 12
NEWEST_KNOWN_REDIS_MAJOR = 8
CHECKSUM_SINCE_VERSION = 5
RDB_OPCODE_AUX = 0xFA
RDB_OPCODE_EOF = 0xFF
TRAILER_BYTES = 8
HEADER_BYTES = 9
# The aux fields (redis-ver, ctime, repl-id, ...) sit within the first few hundred bytes.
HEAD_KEPT = 4096

CRC_OK = "ok"
CRC_DISABLED = "disabled"
CRC_MISMATCH = "mismatch"
CRC_ABSENT = "absent"
PREAMBLE_UNENDED = (
    "RDB preamble truncated or corrupted: no end-of-file marker with its CRC64 before the commands"
)


@dataclass(frozen=True)
class RdbFacts:
    """What the header and trailer of one RDB file say, and whether its checksum holds.

    `crc` is "ok", "disabled" (trailer 0: saved with rdbchecksum no, so nothing can be
    verified), "mismatch", or "absent" (versions before 5 have none). `problems` are
    reasons to call the file corrupt.
    """

    version: int | None
    aux: dict[str, str]
    crc: str
    size: int
    problems: tuple[str, ...]


def loadable_rdb_version(redis_version: str) -> int | None:
    """The newest RDB version a Redis of `redis_version` ("7.0.15") loads; None if unknown."""
    try:
        major, minor = (int(part) for part in redis_version.split(".")[:2])
    except ValueError:
        return None
    if major > NEWEST_KNOWN_REDIS_MAJOR:
        return None  # it may load versions this table has not heard of
    for since_major, since_minor, rdb_version in RDB_VERSION_SINCE:
        if (major, minor) >= (since_major, since_minor):
            return rdb_version
    return None


class RdbChecker:
    """Feed it an RDB file's bytes in order; `finish()` checks header, EOF marker and CRC64."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._tail = b""  # the last 8 bytes so far: possibly the trailer, so not yet in the CRC
        self._before_tail: int | None = None  # the byte just before those 8: the EOF opcode
        self._crc = 0
        self._size = 0

    def feed(self, data: bytes | memoryview) -> None:
        size = len(data)
        self._size += size
        if len(self._head) < HEAD_KEPT:
            self._head += data[: HEAD_KEPT - len(self._head)]
        if size >= TRAILER_BYTES:
            if size > TRAILER_BYTES:
                self._before_tail = data[-TRAILER_BYTES - 1]
            elif self._tail:
                self._before_tail = self._tail[-1]
            self._crc = crc64(data[:-TRAILER_BYTES], crc64(self._tail, self._crc))
            self._tail = bytes(data[-TRAILER_BYTES:])
            return
        joined = self._tail + bytes(data)
        cut = max(0, len(joined) - TRAILER_BYTES)
        if cut:
            self._before_tail = joined[cut - 1]
        self._crc = crc64(joined[:cut], self._crc)
        self._tail = joined[cut:]

    def finish(self) -> RdbFacts:
        head = bytes(self._head)
        if len(head) < HEADER_BYTES or not head.startswith(RDB_MAGIC):
            problem = "not an RDB file (no REDIS header)" if head else "empty file"
            return RdbFacts(None, {}, CRC_ABSENT, self._size, (problem,))
        try:
            version = int(head[5:HEADER_BYTES])
        except ValueError:
            return RdbFacts(None, {}, CRC_ABSENT, self._size, ("RDB header has no version",))
        aux = read_aux_fields(head)
        if version < CHECKSUM_SINCE_VERSION:
            return RdbFacts(version, aux, CRC_ABSENT, self._size, ())
        if self._size < HEADER_BYTES + 1 + TRAILER_BYTES:
            return RdbFacts(version, aux, CRC_ABSENT, self._size, ("truncated: no checksum",))
        problems = []
        trailer = int.from_bytes(self._tail, "little")
        if self._before_tail != RDB_OPCODE_EOF:
            problems.append("truncated or corrupted: no end-of-file marker before the checksum")
        if trailer == 0:
            crc = CRC_DISABLED
        elif trailer != self._crc:
            crc = CRC_MISMATCH
            problems.append(
                f"CRC64 mismatch: the trailer says {trailer:016x}, the content gives "
                f"{self._crc:016x}"
            )
        else:
            crc = CRC_OK
        return RdbFacts(version, aux, crc, self._size, tuple(problems))


def read_aux_fields(head: bytes) -> dict[str, str]:
    """The AUX fields (redis-ver, ctime, used-mem, repl-id, repl-offset, ...) after the header.

    Reads until the first other opcode or the end of `head`; integer-encoded values come
    back as decimal text, compressed ones are skipped.
    """
    fields: dict[str, str] = {}
    pos = HEADER_BYTES
    try:
        while pos < len(head) and head[pos] == RDB_OPCODE_AUX:
            key, pos = _rdb_string(head, pos + 1)
            value, pos = _rdb_string(head, pos)
            if key is not None and value is not None:
                fields[key] = value
    except (IndexError, ValueError):
        pass  # the head ended inside a field: keep what was whole
    return fields


def _rdb_length(buf: bytes, pos: int) -> tuple[int, bool, int]:
    """(length or encoding, is-special-encoding, next position) of an RDB length field."""
    first = buf[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | buf[pos + 1], False, pos + 2
    if first == 0x80:
        return int.from_bytes(buf[pos + 1 : pos + 5], "big"), False, pos + 5
    if first == 0x81:
        return int.from_bytes(buf[pos + 1 : pos + 9], "big"), False, pos + 9
    if kind == 3:
        return first & 0x3F, True, pos + 1
    raise ValueError(f"bad RDB length byte {first:#x}")


def _rdb_string(buf: bytes, pos: int) -> tuple[str | None, int]:
    length, special, pos = _rdb_length(buf, pos)
    if not special:
        end = pos + length
        if end > len(buf):
            raise IndexError("string runs past the head")
        return buf[pos:end].decode("utf-8", "replace"), end
    if length in (0, 1, 2):  # 8, 16 or 32-bit integer, little-endian
        width = 1 << length
        if pos + width > len(buf):
            raise IndexError("integer runs past the head")
        return str(int.from_bytes(buf[pos : pos + width], "little", signed=True)), pos + width
    if length == 3:  # LZF: compressed length, original length, data
        compressed, _, pos = _rdb_length(buf, pos)
        _, _, pos = _rdb_length(buf, pos)
        return None, pos + compressed
    raise ValueError(f"unknown RDB string encoding {length}")


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
            if len(self._pending) < len(RDB_MAGIC):
                return
            if not self._pending.startswith(RDB_MAGIC):
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
            version = int(head[5:HEADER_BYTES])
        except ValueError:
            return RdbFacts(None, {}, crc, size, ("RDB preamble has no version",))
        return RdbFacts(version, read_aux_fields(head), crc, size, ())


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
