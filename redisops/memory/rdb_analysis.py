"""`memory rdb`: the `memory report` of an RDB file or a catalogued backup, read offline.

The reader's rows begin with the fields of the KeyFacts a live scan makes and feed the same
Aggregate, so the report (and its JSON `data`) has the shape of `memory report`. Nothing
connects to Redis; a backup is decompressed as it streams.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from redisops.errors import HostError
from redisops.keypatterns import key_text
from redisops.memory.report import (
    Aggregate,
    MemoryReport,
    ReportOptions,
    finish_report,
    top_keys,
)
from redisops.privatefile import private_file
from redisops.rdb.reader import RdbError, RdbReader
from redisops.rdb.source import RdbInput
from redisops.results import HostResult

CSV_COLUMNS = ("db", "key", "key_base64", "type", "encoding", "elements", "bytes", "ttl_ms")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RdbDetails:
    """What the file says of itself, beside the report (the JSON summary carries it).

    `flavour` is "redis" or "valkey" (the header's magic), `server_version` the saving
    server's (its redis-ver or valkey-ver aux field). `checksum` is "ok", "disabled" (a zero
    trailer) or "absent" (RDB < 5): only "ok" means the content was verified. `modules` has
    one entry per module type ({type, id, encoding_version, module, keys, bytes}; `module` is
    None for a type this reader does not know), their values sized from their serialized
    length. `empty_keys` were left out as Redis leaves them out on load.
    """

    flavour: str
    rdb_version: int | None
    redis_version: str | None
    server_version: str | None
    snapshot_time: str | None
    checksum: str
    trailing_bytes: int
    functions: int
    module_values: int
    modules: list[dict]
    empty_keys: int
    empty_samples: list[str]
    hash_field_ttls: int
    hashes_with_field_ttls: int


def analyse_rdb(
    source: RdbInput,
    options: ReportOptions,
    *,
    keys_csv: Path | None = None,
    progress: Progress | None = None,
) -> tuple[HostResult, RdbDetails | None]:
    """Read `source` once and report on it; a bad file is a failed result naming the offset.

    With `keys_csv`, one row per key is written there (to a temporary name, renamed once the
    whole file has been read and checked: a failed read leaves no CSV).
    """
    try:
        report, details = _report(source, options, keys_csv, progress)
    except HostError as exc:
        return HostResult(source.label, source.address, False, str(exc), None), None
    return HostResult(source.label, source.address, True, None, report), details


def _report(
    source: RdbInput, options: ReportOptions, keys_csv: Path | None, progress: Progress | None
) -> tuple[MemoryReport, RdbDetails]:
    from redisops.datafile import CorruptData, raw_chunks

    started = time.monotonic()
    reader = RdbReader(raw_chunks(source.path, source.compression))
    try:
        with contextlib.ExitStack() as stack:
            writer = None
            if keys_csv is not None:
                # Key names can be sensitive: 0600, and only a whole read leaves a file.
                handle = stack.enter_context(private_file(keys_csv, newline=""))
                writer = csv.writer(handle)
                writer.writerow(CSV_COLUMNS)
            aggregate, elements = _aggregate(reader, source, options, writer, progress)
    except CorruptData as exc:
        raise RdbError(f"{source.address}: {exc}") from None
    except OSError as exc:
        raise HostError(f"cannot read {source.address}: {exc.strerror or exc}") from None
    top = top_keys(aggregate)
    report = finish_report(
        aggregate,
        source.label,
        source.address,
        source.role,
        aggregate.keys,
        1.0,
        time.monotonic() - started,
        aggregate.keys,
        [elements.get((fact.db, fact.key)) for fact in top],
    )
    ctime = reader.aux.get("ctime")
    modules = [
        {
            "type": found.name,
            "id": f"{found.id:#018x}",
            "encoding_version": found.id & 0x3FF,
            "module": found.module,
            "keys": found.keys,
            "bytes": found.bytes,
        }
        for found in reader.module_types
    ]
    details = RdbDetails(
        flavour=reader.flavour,
        rdb_version=reader.version,
        redis_version=reader.aux.get("redis-ver"),
        server_version=reader.aux.get(f"{reader.flavour}-ver"),
        snapshot_time=_iso(int(ctime)) if ctime and ctime.isdigit() else None,
        checksum=reader.checksum,
        trailing_bytes=reader.trailing,
        functions=reader.functions,
        module_values=sum(module["keys"] for module in modules),
        modules=modules,
        empty_keys=reader.empty_keys,
        empty_samples=[f"db{db} {key_text(key)}" for db, key in reader.empty_samples],
        hash_field_ttls=reader.hash_field_ttls,
        hashes_with_field_ttls=reader.hashes_with_field_ttls,
    )
    return report, details


def _aggregate(
    reader: RdbReader,
    source: RdbInput,
    options: ReportOptions,
    writer,  # csv writer or None
    progress: Progress | None,
) -> tuple[Aggregate, dict[tuple[int, bytes], int]]:
    """Feed every key to an Aggregate; keep element counts only of the current top keys."""
    aggregate = Aggregate(options)
    elements: dict[tuple[int, bytes], int] = {}
    for batch in reader.batches():
        aggregate.add(batch)
        if aggregate.top:
            _keep_top_elements(aggregate, batch, elements)
        if writer is not None:
            for db, key, type_name, size, ttl, encoding, count_, _ in batch:
                row = (db, key_text(key), base64.b64encode(key).decode(), type_name)
                writer.writerow((*row, encoding or "", count_, size, ttl))
        if progress is not None:
            progress(source.label, reader.offset, source.raw_bytes)
    return aggregate, elements


def _keep_top_elements(
    aggregate: Aggregate, batch: list[tuple], elements: dict[tuple[int, bytes], int]
) -> None:
    """Element counts of the keys now in the top, from `batch` and from before.

    A key not in the top once its batch is counted never enters it later (the top's floor
    only rises), so only these counts are kept.
    """
    floor = aggregate.top[0][0]
    kept = {(fact.db, fact.key): elements.get((fact.db, fact.key)) for _, _, fact in aggregate.top}
    for row in batch:
        if row[3] >= floor and (row[0], row[1]) in kept:
            kept[(row[0], row[1])] = row[6]
    elements.clear()
    elements.update({name: count_ for name, count_ in kept.items() if count_ is not None})


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()
