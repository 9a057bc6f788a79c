"""One data file of a backup: written while the snapshot streams in, read back to verify.

Writing compresses, hashes the stored bytes (SHA-256) and feeds the raw bytes to the format
checkers in the same pass; the file is private (0600) from its first byte and fsynced before
it counts. Reading decompresses and hashes in one pass too.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from redisops.errors import HostError

COMPRESSIONS = ("none", "zstd", "gzip")
SUFFIXES = {"none": "", "zstd": ".zst", "gzip": ".gz"}
# zstd level 3 compresses ~170 MB/s and gzip level 1 ~90 MB/s on one core here: both keep
# pace with a snapshot streaming in (~55 MB/s for 1M keys); gzip's default 6 manages 28 MB/s.
ZSTD_LEVEL = 3
GZIP_LEVEL = 1
READ_CHUNK = 1 << 20
_WRITE_BUFFER = 1 << 20


class Feed(Protocol):
    """Anything fed the raw bytes of a file as they pass: format checkers, redis-check-rdb."""

    def feed(self, data: bytes | memoryview, /) -> None: ...


class CorruptData(Exception):
    """A stored file cannot be decompressed: it is damaged (or truncated)."""


@dataclass(frozen=True)
class StoredFile:
    """One file of a backup folder, as the manifest lists it.

    `name` is the name in the folder, `source` the name it had on the server; `bytes` and
    `sha256` describe the stored (possibly compressed) file, `raw_bytes` the original.
    `role` is "rdb", "aof-manifest", "aof-base" or "aof-incr".
    """

    name: str
    source: str
    role: str
    bytes: int
    sha256: str
    raw_bytes: int
    compression: str


class DataFileWriter:
    """Raw bytes in (`write`), a compressed, hashed, fsynced 0600 file out (`close`)."""

    def __init__(
        self,
        folder: Path,
        source: str,
        role: str,
        *,
        compression: str,
        feeds: Sequence[Feed] = (),
    ) -> None:
        self.path = folder / (source + SUFFIXES[compression])
        self._source = source
        self._role = role
        self._compression = compression
        self._feeds = tuple(feeds)
        self._compressor = _compressor(compression)
        self._sha256 = hashlib.sha256()
        self._stored = 0
        self.raw_bytes = 0
        try:
            # O_EXCL with 0600: private from the first byte whatever the umask.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise self._failure(exc) from None
        self._file = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)

    def write(self, data: bytes | memoryview) -> None:
        """Take the next raw bytes; a full or failing disk raises HostError."""
        self.raw_bytes += len(data)
        for feed in self._feeds:
            feed.feed(data)
        self._store(data if self._compressor is None else self._compressor.compress(data))

    def close(self) -> StoredFile:
        """Finish the file (compressor flushed, data fsynced) and describe it."""
        if self._compressor is not None:
            self._store(self._compressor.flush())
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        except OSError as exc:
            raise self._failure(exc) from None
        return StoredFile(
            name=self.path.name,
            source=self._source,
            role=self._role,
            bytes=self._stored,
            sha256=self._sha256.hexdigest(),
            raw_bytes=self.raw_bytes,
            compression=self._compression,
        )

    def abort(self) -> None:
        """Drop the file; for failure paths, never raises."""
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _store(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self._sha256.update(data)
        try:
            self._file.write(data)
        except OSError as exc:
            raise self._failure(exc) from None
        self._stored += len(data)

    def _failure(self, exc: OSError) -> HostError:
        where = self.path.parent.parent
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return HostError(
                f"backup destination {where} is full ({exc.strerror}) after "
                f"{self.raw_bytes:,} bytes; the partial backup is removed",
                hint="free space or choose another --dest; older backups are untouched",
            )
        return HostError(f"cannot write {self.path}: {exc.strerror or exc}")


def read_stored(path: Path, compression: str, on_raw: Callable[[bytes], None]) -> tuple[int, str]:
    """Stream a stored file: each raw (decompressed) chunk goes to `on_raw`, in order.

    Returns (stored bytes, SHA-256 of the stored bytes). Raises OSError when the file cannot
    be read and CorruptData when it cannot be decompressed or its compressed stream is cut
    short.
    """
    digest = hashlib.sha256()
    size = 0

    def on_stored(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        digest.update(chunk)

    for raw in raw_chunks(path, compression, on_stored):
        on_raw(raw)
    return size, digest.hexdigest()


def sniff_compression(path: Path) -> str:
    """How a file given by path is compressed, from its first bytes (zstd or gzip magic),
    so one copied out of the catalogue reads as the manifest would have said."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == b"\x28\xb5\x2f\xfd":
        return "zstd"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    return "none"


def raw_chunks(
    path: Path, compression: str, on_stored: Callable[[bytes], None] | None = None
) -> Iterator[bytes]:
    """The raw (decompressed) bytes of a stored file, chunk by chunk, for readers that pull.

    `on_stored` sees each stored chunk first. Raises as read_stored does.
    """
    decompressor = _decompressor(compression)
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            if on_stored is not None:
                on_stored(chunk)
            if decompressor is None:
                yield chunk
                continue
            try:
                raw = decompressor.decompress(chunk)
            except Exception as exc:  # zstd.ZstdError, zlib.error: both mean damaged data
                raise CorruptData(f"{compression} data is damaged: {exc}") from None
            if raw:
                yield raw
    if decompressor is not None and not decompressor.eof:
        raise CorruptData(f"{compression} stream is truncated")


def _compressor(compression: str):  # -> zstd/zlib compressobj, or None
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
    if compression == "gzip":
        import zlib

        return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # 31: gzip container
    return None


def _decompressor(compression: str):  # -> zstd/zlib decompressobj, or None
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    if compression == "gzip":
        import zlib

        return zlib.decompressobj(31)
    return None
