"""What `memory rdb` says on stderr beside the report: what the file could not prove, what it
held that the report leaves out or sizes differently (module values, empty collections), and
its hash-field TTLs."""

from __future__ import annotations

from redisops.render.output import Output
from redisops.render.units import human_bytes

SAMPLES_SHOWN = 3


def rdb_notes(output: Output, name: str, details) -> None:  # details: RdbDetails
    """Warnings for what a person must not miss; one line for hash-field TTLs."""
    for line in rdb_warnings(name, details):
        output.warn(line)
    if details.hash_field_ttls:
        output.err.print(
            f"{name}: {details.hash_field_ttls:,} hash fields with a TTL of their own, in "
            f"{details.hashes_with_field_ttls:,} hashes",
            highlight=False,
        )


def rdb_warnings(name: str, details) -> list[str]:
    lines = []
    if details.checksum == "absent":
        lines.append(
            f"{name}: RDB version {details.rdb_version} has no checksum: not verified "
            "(its content is read as it is)"
        )
    elif details.checksum == "disabled":
        lines.append(
            f"{name}: CRC64 trailer is 0 (saved with rdbchecksum no): not verified "
            "(its content is read as it is)"
        )
    if details.trailing_bytes:
        lines.append(
            f"{name}: {_counted(details.trailing_bytes, 'byte')} after the end of the RDB, ignored "
            "(as Redis ignores them)"
        )
    if details.empty_keys:
        shown = ", ".join(details.empty_samples[:SAMPLES_SHOWN])
        more = "…" if details.empty_keys > SAMPLES_SHOWN else ""
        lines.append(
            f"{name}: {_counted(details.empty_keys, 'empty collection')} left out, as Redis skips "
            f"them on load ({shown}{more})"
        )
    if details.module_values:
        kinds = ", ".join(
            f"{module['keys']:,} {module['type']} ({module['module']})"
            if module["module"]
            else f"{module['keys']:,} {module['type']} (unknown module type, id {module['id']})"
            for module in details.modules
        )
        total = human_bytes(sum(module["bytes"] for module in details.modules))
        lines.append(
            f"{name}: {_counted(details.module_values, 'module value')} ({kinds}), sized from "
            f"their serialized length ({total}), not from the module's memory"
        )
    return lines


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
