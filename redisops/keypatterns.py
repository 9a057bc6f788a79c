"""Key patterns: the shape of a key with its ids, numbers, UUIDs and hashes collapsed.

One normaliser for every report that groups keys: memory reports group keys by it and slowlog
fingerprints use it for the key of each command, so `user:1234:profile` reads the same
(`user:{id}:profile`) everywhere.
"""

from __future__ import annotations

import re
from functools import lru_cache

DEFAULT_SEPARATOR = ":"

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^(?:0x)?[0-9a-fA-F]{8,}$")
_NUMBER = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}(?::\d{2}){0,2}(?:\.\d+)?Z?)?$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-+/=]{20,}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def _escaped(char: str) -> str:
    """A character `str.isprintable` rejects as `\\xNN`, `\\uNNNN` or `\\UNNNNNNNN`; others as is.

    Rejected: controls, bidi controls (U+200E/F, U+202A-E, U+2066-9), zero-width and other
    format characters, line and paragraph separators, spaces other than the space.
    """
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def key_text(key: bytes | str) -> str:
    """A key as printable text: UTF-8 where it is, `\\xNN` for other bytes and control
    characters, `\\uNNNN` for bidi and other invisible format characters (so U+202E cannot
    turn `evil\\u202efdp.exe` into `evilexe.pdf` on screen).

    For display only: it does not round-trip (a key may hold a literal backslash); reports
    carry the exact bytes beside it where a key must be usable again.
    """
    text = key if isinstance(key, str) else key.decode("utf-8", errors="backslashreplace")
    return text if text.isprintable() else "".join(map(_escaped, text))


def key_pattern(
    key: bytes | str, *, separator: str = DEFAULT_SEPARATOR, depth: int | None = None
) -> str:
    """The pattern of `key`.

    With `depth`, the first `depth` segments are kept and the rest become `*`
    (`user:1234:profile` → `user:*` at depth 1). Without it ("auto"), every segment that looks
    like an id is replaced by its kind: `{id}`, `{num}`, `{uuid}`, `{hex}`, `{date}`, `{ip}`,
    `{email}`, `{token}` (`user:1234:profile` → `user:{id}:profile`).
    """
    text = key_text(key)
    segments = text.split(separator) if separator else [text]
    if depth is not None:
        if len(segments) <= depth:
            return text
        return separator.join([*segments[:depth], "*"])
    return separator.join([_segment_kind(segment) for segment in segments])


class PatternCache:
    """`key_pattern` for a stream of keys, remembering patterns by the key's digit skeleton.

    Every rule above treats ASCII digits alike, so keys that differ only in them (`user:1:x`,
    `user:97:x`) get the same pattern whenever that pattern kept none of their digits; such
    patterns are remembered under the key with its digits zeroed. A separator with a digit in
    it would make the skeleton cut differently, so there the cache stays off. Keys with UUID
    segments (`session:<uuid>`, unique by nature) are looked up again with those segments
    folded to `{uuid}`, which the rules map to itself. Bounded: cleared when full.
    """

    def __init__(
        self, separator: str = DEFAULT_SEPARATOR, depth: int | None = None, size: int = 65536
    ) -> None:
        self.separator = separator
        self.depth = depth
        self._size = size
        # Skeleton -> pattern; callers in a hot loop may look up here first themselves.
        self.known: dict[bytes | str, str] = {}
        self._enabled = not any(c in "0123456789" for c in separator)
        self._uuid_segments = _uuid_segments(separator) if depth is None else None
        self._separator_byte = ord(separator) if self._uuid_segments is not None else -1

    def __call__(self, key: bytes | str) -> str:
        if self._enabled:
            table = DIGIT_SKELETON if isinstance(key, bytes) else _ZERO_TEXT
            pattern = self.known.get(key.translate(table))
            if pattern is not None:
                return pattern
        return self.unknown(key)

    def unknown(self, key: bytes | str) -> str:
        """The pattern of a key not found under its digit skeleton in `known` (a hot loop
        that looks there first itself calls this on a miss)."""
        if not self._enabled:
            return key_pattern(key, separator=self.separator, depth=self.depth)
        table = DIGIT_SKELETON if isinstance(key, bytes) else _ZERO_TEXT
        if self._uuid_segments is not None and isinstance(key, bytes):
            key, folded = _fold_uuids(key, self._uuid_segments, self._separator_byte)
            if folded and (pattern := self.known.get(key.translate(table))) is not None:
                return pattern
        pattern = key_pattern(key, separator=self.separator, depth=self.depth)
        if not _HAS_DIGIT(pattern):
            if len(self.known) >= self._size:
                self.known.clear()
            self.known[key.translate(table)] = pattern
        return pattern


def _fold_uuids(key: bytes, segments: re.Pattern[bytes], separator: int) -> tuple[bytes, int]:
    """`key` with its UUID segments as `{uuid}`, and how many there were; a UUID as the last
    segment (`session:<uuid>`, the usual place) is recognised without the regex."""
    tail = key[-36:]
    if (
        len(tail) == 36
        and tail[8] == tail[13] == tail[18] == tail[23] == 0x2D
        and tail.translate(None, _HEX_DIGITS) == b"----"
        and (len(key) == 36 or key[-37] == separator)
    ):
        return key[:-36] + b"{uuid}", 1
    return segments.subn(b"{uuid}", key)


_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _uuid_segments(separator: str) -> re.Pattern[bytes] | None:
    """Whole UUID segments of a raw key. Only for a one-byte separator that cannot occur in a
    UUID or in key_text's escapes, so segments of the bytes are segments of the text."""
    if len(separator) != 1 or not separator.isascii() or separator.isalnum() or separator in "-\\":
        return None
    outside = re.escape(separator).encode()
    hexes = b"-".join(b"[0-9a-fA-F]{%d}" % size for size in (8, 4, 4, 4, 12))
    return re.compile(b"(?<![^" + outside + b"])" + hexes + b"(?![^" + outside + b"])")


DIGIT_SKELETON = bytes.maketrans(b"123456789", b"000000000")
_ZERO_TEXT = str.maketrans("123456789", "000000000")
_HAS_DIGIT = re.compile(r"[0-9]").search


def _segment_kind(segment: str) -> str:
    if segment.isdigit():  # the common case first, and unique ids never fill the cache
        return "{id}"
    if len(segment) == 36 and segment[8] == "-" and _UUID.match(segment):
        return "{uuid}"
    if len(segment) >= 20 and _TOKEN.match(segment):
        return _long_segment_kind(segment)
    return _cached_segment_kind(segment)


def _long_segment_kind(segment: str) -> str:
    if _HEX.match(segment):
        return "{hex}"
    has_digit = any(c.isdigit() for c in segment)
    has_letter = any(c.isalpha() for c in segment)
    return "{token}" if has_digit and has_letter else segment


@lru_cache(maxsize=65536)
def _cached_segment_kind(segment: str) -> str:
    if not segment:
        return segment
    if _NUMBER.match(segment):
        return "{num}"
    if _UUID.match(segment):
        return "{uuid}"
    if _HEX.match(segment) and any(c.isdigit() for c in segment):
        return "{hex}"
    if _DATE.match(segment):
        return "{date}"
    if _IPV4.match(segment):
        return "{ip}"
    if _EMAIL.match(segment):
        return "{email}"
    return segment
