"""Numbers as people read them: sizes in binary units, durations in the two largest units."""

from __future__ import annotations

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(size: int | float | None) -> str:
    if size is None:
        return "-"
    if abs(size) < 1024:
        return f"{int(size)} B"
    value = float(size)
    for unit in _SIZE_UNITS[1:-1]:
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} {_SIZE_UNITS[-1]}"


def human_duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "-"
    remaining = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size or (unit == "s" and not parts):
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return " ".join(parts[:2])
