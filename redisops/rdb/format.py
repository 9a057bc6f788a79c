"""What an RDB file's header and trailer say: magic and version (Redis's and Valkey's), the
aux fields, the EOF opcode and CRC64. The checker is fed the raw bytes as they stream by, so a
backup is checked while it is written, without a second read.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from redisops.rdb.crc64 import crc64

RDB_MAGIC = b"REDIS"
# Valkey 9 writes `VALKEY` and a three-digit format number (rdb.h: RDB_VERSION 80); it keeps
# 12-79 for Redis's formats it does not load (RDB_FOREIGN_VERSION_MIN/MAX).
VALKEY_MAGIC = b"VALKEY"
VALKEY_RDB_VERSIONS = (80,)
VALKEY_FORMAT_SINCE_MAJOR = 9  # Valkey 7.2-8.x write and load Redis's RDB 11
VALKEY_LOADS_REDIS_UP_TO = 11
VALKEY_NEWEST_KNOWN_MAJOR = 9
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
# Bytes after the checksum (a newline, appended text) are found when they are at most this
# many: the end of the RDB is looked for among the last TRAILING_WINDOW bytes.
TRAILING_WINDOW = 64 << 10

CRC_OK = "ok"
CRC_DISABLED = "disabled"
CRC_MISMATCH = "mismatch"
CRC_ABSENT = "absent"


class UnknownRdbFormat(ValueError):
    """An RDB header of a version or a server this reader does not know: not corruption."""


@dataclass(frozen=True)
class RdbFormat:
    """What an RDB header says: `flavour` "redis" or "valkey", and the format number."""

    flavour: str
    version: int

    def __str__(self) -> str:
        if self.flavour == "valkey":
            return f"Valkey RDB format {self.version}"
        return f"RDB version {self.version}"


def rdb_format(head: bytes, *, known: bool = True) -> RdbFormat:
    """The format the first 9 bytes of an RDB name.

    Raises ValueError when they are no RDB header and, with `known`, UnknownRdbFormat (a
    ValueError) when the version is one this reader does not know, named as such.
    """
    if head.startswith(VALKEY_MAGIC):
        flavour, digits = "valkey", head[len(VALKEY_MAGIC) : HEADER_BYTES]
    elif head.startswith(RDB_MAGIC):
        flavour, digits = "redis", head[len(RDB_MAGIC) : HEADER_BYTES]
    else:
        raise ValueError("not an RDB file (no REDIS or VALKEY header)")
    if len(head) < HEADER_BYTES or not digits.isdigit():
        raise ValueError("RDB header has no version")
    version = int(digits)
    if not known:
        return RdbFormat(flavour, version)
    if flavour == "valkey" and version not in VALKEY_RDB_VERSIONS:
        newest = VALKEY_RDB_VERSIONS[-1]
        why = "newer than" if version > newest else "not one Valkey writes, nor"
        raise UnknownRdbFormat(
            f"a Valkey RDB (format {version}), {why} what this reader knows (Valkey format "
            f"{newest}; Redis RDB 1 to {NEWEST_KNOWN_RDB_VERSION})"
        )
    if flavour == "redis" and version == 0:
        raise ValueError("RDB header has version 0")
    if flavour == "redis" and version > NEWEST_KNOWN_RDB_VERSION:
        raise UnknownRdbFormat(
            f"RDB version {version} is newer than this reader knows (Redis RDB 1 to "
            f"{NEWEST_KNOWN_RDB_VERSION}, Valkey format {VALKEY_RDB_VERSIONS[-1]})"
        )
    return RdbFormat(flavour, version)


@dataclass(frozen=True)
class RdbFacts:
    """What the header and trailer of one RDB file say, and whether its checksum holds.

    `crc` is "ok", "disabled" (trailer 0: saved with rdbchecksum no, so nothing can be
    verified), "mismatch", or "absent" (versions before 5 have none). `problems` are
    reasons to call the file corrupt. `trailing` counts bytes after the checksum (Redis
    ignores them); `flavour` is "redis" or "valkey" (the header's magic).
    """

    version: int | None
    aux: dict[str, str]
    crc: str
    size: int
    problems: tuple[str, ...]
    trailing: int = 0
    flavour: str = "redis"


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


def rdb_load_problem(flavour: str, server_version: str, rdb_version: int) -> str | None:
    """Why a server (`flavour` "redis" | "valkey", its own version) would refuse to start on
    an RDB of `rdb_version`; None when it loads it or the tables cannot tell.

    Valkey 7.2-8.x load Redis's RDB 1-11; Valkey 9 adds its own format 80 and refuses 12-79
    (Redis 7.4+'s, its RDB_FOREIGN_VERSION range). Redis loads up to its own RDB_VERSION and
    never a Valkey-format file.
    """
    from_valkey = rdb_version >= VALKEY_RDB_VERSIONS[0]
    name = f"{flavour.capitalize()} {server_version}"
    if flavour == "valkey":
        try:
            major = int(server_version.split(".")[0])
        except ValueError:
            return None
        if major > VALKEY_NEWEST_KNOWN_MAJOR:
            return None
        loads_own = major >= VALKEY_FORMAT_SINCE_MAJOR and rdb_version in VALKEY_RDB_VERSIONS
        if rdb_version <= VALKEY_LOADS_REDIS_UP_TO or loads_own:
            return None
        newest = VALKEY_RDB_VERSIONS[-1] if major >= VALKEY_FORMAT_SINCE_MAJOR else 11
        return f"{name} loads RDB 1 to {VALKEY_LOADS_REDIS_UP_TO}" + (
            f" and Valkey format {newest}" if newest != VALKEY_LOADS_REDIS_UP_TO else ""
        )
    if from_valkey:
        return f"{name} cannot load a Valkey-format RDB (format {rdb_version})"
    loadable = loadable_rdb_version(server_version)
    if loadable and rdb_version > loadable:
        return f"{name} loads up to RDB version {loadable}"
    return None


class RdbChecker:
    """Feed it an RDB file's bytes in order; `finish()` checks header, EOF marker and CRC64.

    The end of the RDB is normally its last 9 bytes (EOF opcode, CRC64). Bytes appended after
    it (Redis loads such files) are found by keeping the last TRAILING_WINDOW bytes and the
    CRC up to them: the end is the first EOF opcode there whose next 8 bytes are the CRC64 of
    everything before them. A zero trailer (no checksum) followed by more bytes cannot be told
    apart from damage this way; the RDB reader, which parses the records, can.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self._crc = 0  # over every byte fed
        self._recent: deque[tuple[int, bytes]] = deque()  # (CRC before it, bytes), in order
        self._recent_bytes = 0
        self._size = 0

    def feed(self, data: bytes | memoryview) -> None:
        size = len(data)
        self._size += size
        if len(self._head) < HEAD_KEPT:
            self._head += data[: HEAD_KEPT - len(self._head)]
        if size >= TRAILING_WINDOW:
            kept = bytes(data[-TRAILING_WINDOW:])
            before = crc64(data[:-TRAILING_WINDOW], self._crc)
            self._recent, self._recent_bytes = deque([(before, kept)]), TRAILING_WINDOW
            self._crc = crc64(kept, before)
            return
        self._recent.append((self._crc, bytes(data)))
        self._recent_bytes += size
        self._crc = crc64(data, self._crc)
        while self._recent_bytes - len(self._recent[0][1]) >= TRAILING_WINDOW:
            self._recent_bytes -= len(self._recent.popleft()[1])

    def finish(self) -> RdbFacts:
        head = bytes(self._head)
        if not head:
            return RdbFacts(None, {}, CRC_ABSENT, self._size, ("empty file",))
        try:
            found = rdb_format(head[:HEADER_BYTES], known=False)
        except ValueError as exc:
            return RdbFacts(None, {}, CRC_ABSENT, self._size, (str(exc),))
        version, aux = found.version, read_aux_fields(head)

        def facts(crc: str, problems: tuple[str, ...], trailing: int = 0) -> RdbFacts:
            return RdbFacts(version, aux, crc, self._size, problems, trailing, found.flavour)

        if version < CHECKSUM_SINCE_VERSION:
            return facts(CRC_ABSENT, ())
        if self._size < HEADER_BYTES + 1 + TRAILER_BYTES:
            return facts(CRC_ABSENT, ("truncated: no checksum",))
        recent = b"".join(part for _, part in self._recent)
        body = memoryview(recent)[:-TRAILER_BYTES]
        content = crc64(body, self._recent[0][0])
        trailer = int.from_bytes(recent[-TRAILER_BYTES:], "little")
        ends_well = recent[-TRAILER_BYTES - 1] == RDB_OPCODE_EOF
        if ends_well and trailer in (content, 0):
            return facts(CRC_OK if trailer else CRC_DISABLED, ())
        trailing = _bytes_after_the_end(recent, self._recent[0][0])
        if trailing is not None:
            return facts(CRC_OK, (), trailing=trailing)
        problems = []
        if not ends_well:
            problems.append("truncated or corrupted: no end-of-file marker before the checksum")
        if trailer == 0:
            return facts(CRC_DISABLED, tuple(problems))
        problems.append(
            f"CRC64 mismatch: the trailer says {trailer:016x}, the content gives {content:016x}"
        )
        return facts(CRC_MISMATCH, tuple(problems))


def _bytes_after_the_end(recent: bytes, crc: int) -> int | None:
    """How many bytes follow the first EOF opcode in `recent` whose next 8 bytes are the
    CRC64 of all before them (`crc` is the CRC of the file up to `recent`); None if none is."""
    view = memoryview(recent)
    done = 0
    at = recent.find(RDB_OPCODE_EOF)
    while 0 <= at <= len(recent) - 1 - TRAILER_BYTES:
        crc = crc64(view[done : at + 1], crc)
        done = at + 1
        if int.from_bytes(recent[done : done + TRAILER_BYTES], "little") == crc:
            return len(recent) - done - TRAILER_BYTES
        at = recent.find(RDB_OPCODE_EOF, done)
    return None


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


def length_at(buf: bytes, pos: int) -> tuple[int, int]:
    """(length, position after) of the RDB length field at `pos`: 6, 14, 32 or 64 bits.

    ValueError when the byte there starts no length (0xC0 and up start a string's special
    encoding: the caller looks at that byte first); IndexError when `buf` ends inside it.
    """
    first = buf[pos]
    if first < 0x40:
        return first, pos + 1
    if first < 0x80:
        return ((first & 0x3F) << 8) | buf[pos + 1], pos + 2
    if first == 0x80:
        return int.from_bytes(buf[pos + 1 : pos + 5], "big"), pos + 5
    if first == 0x81:
        return int.from_bytes(buf[pos + 1 : pos + 9], "big"), pos + 9
    raise ValueError(f"bad RDB length byte {first:#x}")


def _rdb_string(buf: bytes, pos: int) -> tuple[str | None, int]:
    encoding = buf[pos] & 0x3F
    if buf[pos] < 0xC0:
        length, pos = length_at(buf, pos)
        end = pos + length
        if end > len(buf):
            raise IndexError("string runs past the head")
        return buf[pos:end].decode("utf-8", "replace"), end
    pos += 1
    if encoding in (0, 1, 2):  # 8, 16 or 32-bit integer, little-endian
        width = 1 << encoding
        if pos + width > len(buf):
            raise IndexError("integer runs past the head")
        return str(int.from_bytes(buf[pos : pos + width], "little", signed=True)), pos + width
    if encoding == 3:  # LZF: compressed length, original length, data
        compressed, pos = length_at(buf, pos)
        _, pos = length_at(buf, pos)
        return None, pos + compressed
    raise ValueError(f"unknown RDB string encoding {encoding}")
