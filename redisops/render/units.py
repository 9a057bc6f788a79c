"""Numbers as people read them in tables: the one set of formatting helpers of render.

Sizes in binary units (KiB, MiB, GiB), durations by magnitude (850µs, 12.3ms, 2.05s, 20m 39s,
1d 2h), counts with thousands separators. JSON keeps the exact numbers; these are for tables.
"""

from __future__ import annotations

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_bytes(size: int | float | None) -> str:
    """1536 -> "1.5 KiB"; a dash for None."""
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


def human_count(count: int | None) -> str:
    """204001 -> "204,001"; a dash for None."""
    return "-" if count is None else f"{count:,}"


def human_duration(seconds: int | float | None) -> str:
    """A duration by its magnitude: 850µs, 12.3ms, 2.05s, 12.3s, 20m 39s, 1d 2h.

    Below a minute the figure keeps its precision (a whole number of seconds stays whole:
    an uptime of 6 s reads "6s"); from a minute on, the two largest units.
    """
    if seconds is None:
        return "-"
    if seconds < 0:
        return "-" + human_duration(-seconds)
    if seconds < 60:
        if seconds == int(seconds):
            return f"{int(seconds)}s"
        if seconds < 0.001:
            return f"{seconds * 1_000_000:.0f}µs"
        if seconds < 1:
            return f"{seconds * 1000:.1f}ms"
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    remaining = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size:
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
        elif parts:
            break
    return " ".join(parts[:2])


def human_ms(ms: int | float | None) -> str:
    """A duration given in milliseconds (drills, latency events)."""
    return "-" if ms is None else human_duration(ms / 1000)


def human_us(us: int | float | None) -> str:
    """A duration given in microseconds (SLOWLOG)."""
    return "-" if us is None else human_duration(us / 1_000_000)


def human_percent(ratio: float | None, decimals: int = 1) -> str:
    """0.4567 -> "45.7%"; a dash for None."""
    return "-" if ratio is None else f"{ratio * 100:.{decimals}f}%"
