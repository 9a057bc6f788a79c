"""Keys and bytes per cluster hash slot, and the hash tags that pin many keys to one slot.

A key's slot is CRC16 (XModem: `binascii.crc_hqx` with 0 as the start value, the CRC Redis
Cluster uses) of the key, or of its hash tag (the bytes between the first `{` and the first
`}` after it, when not empty), mod 16384. Client memory is bounded: two arrays of 16384
counters, and at most MAX_TAGS tags counted one by one (see SlotTally).
"""

from __future__ import annotations

import base64
import heapq
from binascii import crc_hqx
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import repeat
from operator import and_

from redisops.memory.patterns import PatternCache, key_text

SLOTS = 16384
SLOT_MASK = SLOTS - 1
MAX_TAGS = 100_000
TOP_SLOTS = 20
TOP_TAGS = 20
TOP_TAG_PATTERNS = 50


def hash_tag(key: bytes) -> bytes | None:
    """The hash tag of `key` (Redis Cluster spec: first `{`, first `}` after it, not empty)."""
    start = key.find(b"{")
    if start < 0:
        return None
    end = key.find(b"}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1 : end]


def key_slot(key: bytes) -> int:
    """The hash slot of `key`, as CLUSTER KEYSLOT computes it."""
    tag = hash_tag(key)
    return crc_hqx(key if tag is None else tag, 0) & SLOT_MASK


@dataclass(frozen=True)
class SlotCount:
    slot: int
    keys: int
    bytes: int


@dataclass(frozen=True)
class TagStats:
    """One hash tag: every key holding it lives in `slot`. `tag_base64` is exact."""

    tag: str
    tag_base64: str
    pattern: str
    slot: int
    keys: int
    bytes: int


@dataclass(frozen=True)
class TagPattern:
    """Tags of one pattern (`{user:{id}}`): their keys and bytes, how many distinct tags were
    counted, and the largest single tag, which decides how many keys one slot must hold."""

    pattern: str
    keys: int
    bytes: int
    tags: int
    largest_tag_keys: int


@dataclass(frozen=True)
class SlotView:
    """Keys and bytes by slot, the biggest slots, and hash tags.

    `keys_by_slot` and `bytes_by_slot` have one entry per slot (index = slot number); a
    cluster's report carries them, a node's row leaves them out (None: the cluster's repeat
    them). `tags_exact` is false once more than MAX_TAGS distinct tags were seen: tags with
    few keys were then dropped, and a tag's count may be low by up to `tag_error_keys`.
    """

    slots_with_keys: int
    biggest: list[SlotCount]
    tagged_keys: int
    tagged_bytes: int
    tags: list[TagStats]
    tag_patterns: list[TagPattern]
    tags_exact: bool
    tag_error_keys: int
    keys_by_slot: list[int] | None = None
    bytes_by_slot: list[int] | None = None

    def without_arrays(self) -> SlotView:
        return replace(self, keys_by_slot=None, bytes_by_slot=None)


class SlotTally:
    """Running counters of one scan, per slot and per hash tag, fed KeyFacts rows."""

    def __init__(self, separator: str, depth: int | None) -> None:
        self.keys = [0] * SLOTS
        self.bytes = [0] * SLOTS
        self.tags: dict[bytes, list[int]] = {}  # tag -> [keys, bytes]
        self.tagged = [0, 0]
        self.floor = 0  # tags with at most this many keys were dropped to stay under MAX_TAGS
        self._pattern = PatternCache(separator, depth)

    def add(self, facts: Sequence[tuple]) -> None:
        """Count `facts` (KeyFacts, or tuples that begin with their fields).

        The hot loop of a cluster scan: CRC16 is mapped over the batch's keys in C, keys
        with a `{` (rare) take the slower path that looks for a hash tag.
        """
        keys, sizes = self.keys, self.bytes
        plain = [fact for fact in facts if b"{" not in fact[1]]
        hashes = map(crc_hqx, [fact[1] for fact in plain], repeat(0))
        for slot, fact in zip(map(and_, hashes, repeat(SLOT_MASK)), plain, strict=True):
            keys[slot] += 1
            sizes[slot] += fact[3]
        if len(plain) < len(facts):
            self._add_braced([fact for fact in facts if b"{" in fact[1]])

    def _add_braced(self, facts: Sequence[tuple]) -> None:
        keys, sizes, tagged = self.keys, self.bytes, self.tagged
        for fact in facts:
            key, size = fact[1], fact[3]
            tag = hash_tag(key)
            if tag is None:  # `{}`, or no `}` after the `{`: the whole key is hashed
                slot = crc_hqx(key, 0) & SLOT_MASK
            else:
                slot = crc_hqx(tag, 0) & SLOT_MASK
                cell = self.tags.get(tag)
                if cell is None:
                    cell = self.tags[tag] = [0, 0]
                    if len(self.tags) > MAX_TAGS:
                        self._drop_small_tags()
                        cell = self.tags.setdefault(tag, [0, 0])
                cell[0] += 1
                cell[1] += size
                tagged[0] += 1
                tagged[1] += size
            keys[slot] += 1
            sizes[slot] += size

    def _drop_small_tags(self) -> None:
        """Lossy counting: drop the tags with the fewest keys until the table has room."""
        while len(self.tags) > MAX_TAGS // 2:
            self.floor += 1
            self.tags = {t: c for t, c in self.tags.items() if c[0] > self.floor}

    def view(self, scale: float = 1.0) -> SlotView:
        """The tally as a report; counts multiplied by `scale` when the scan was a sample."""

        def scaled(value: int) -> int:
            return round(value * scale)

        keys = [scaled(k) for k in self.keys] if scale != 1.0 else list(self.keys)
        sizes = [scaled(b) for b in self.bytes] if scale != 1.0 else list(self.bytes)
        tags = [
            TagStats(
                tag=key_text(tag),
                tag_base64=base64.b64encode(tag).decode(),
                pattern=self._tag_pattern(tag),
                slot=crc_hqx(tag, 0) & SLOT_MASK,
                keys=scaled(k),
                bytes=scaled(b),
            )
            for tag, (k, b) in self.tags.items()
        ]
        return SlotView(
            slots_with_keys=SLOTS - keys.count(0),
            biggest=biggest_slots(keys, sizes),
            tagged_keys=scaled(self.tagged[0]),
            tagged_bytes=scaled(self.tagged[1]),
            tags=top_tags(tags),
            tag_patterns=tag_patterns(tags),
            tags_exact=self.floor == 0,
            tag_error_keys=scaled(self.floor),
            keys_by_slot=keys,
            bytes_by_slot=sizes,
        )

    def _tag_pattern(self, tag: bytes) -> str:
        return "{" + self._pattern(tag) + "}"


def biggest_slots(keys: list[int], sizes: list[int], top: int = TOP_SLOTS) -> list[SlotCount]:
    """The `top` slots with keys, by bytes (then keys, then slot number)."""
    ranked = heapq.nsmallest(
        top, (slot for slot in range(SLOTS) if keys[slot]), key=lambda s: (-sizes[s], -keys[s], s)
    )
    return [SlotCount(slot, keys[slot], sizes[slot]) for slot in ranked]


def top_tags(tags: Iterable[TagStats], top: int = TOP_TAGS) -> list[TagStats]:
    """The `top` tags by keys pinned to their slot (then bytes, then name)."""
    return heapq.nsmallest(top, tags, key=lambda t: (-t.keys, -t.bytes, t.tag))


def tag_patterns(tags: Sequence[TagStats], top: int = TOP_TAG_PATTERNS) -> list[TagPattern]:
    """Tags grouped by pattern, the patterns whose largest tag pins the most keys first."""
    groups: dict[str, list[int]] = {}
    for tag in tags:
        group = groups.setdefault(tag.pattern, [0, 0, 0, 0])
        group[0] += tag.keys
        group[1] += tag.bytes
        group[2] += 1
        group[3] = max(group[3], tag.keys)
    patterns = [TagPattern(name, *values) for name, values in groups.items()]
    patterns.sort(key=lambda p: (-p.largest_tag_keys, -p.keys, p.pattern))
    return patterns[:top]


def merge_views(views: Sequence[SlotView]) -> SlotView:
    """One view of several nodes' views (the scanned node of each shard of a cluster).

    Slots of different shards do not overlap; a slot counted on two (mid-migration) is
    summed; views without per-slot arrays add none. Tags are merged from each view's top tags
    and patterns, so the merged patterns count only the tags each node listed when a node had
    more patterns than it kept.
    """
    arrays = [v for v in views if v.keys_by_slot is not None and v.bytes_by_slot is not None]
    keys = [sum(column) for column in zip(*(v.keys_by_slot for v in arrays), strict=True)]
    sizes = [sum(column) for column in zip(*(v.bytes_by_slot for v in arrays), strict=True)]
    keys, sizes = keys or [0] * SLOTS, sizes or [0] * SLOTS
    patterns: dict[str, list[int]] = {}
    for view in views:
        for p in view.tag_patterns:
            group = patterns.setdefault(p.pattern, [0, 0, 0, 0])
            group[0] += p.keys
            group[1] += p.bytes
            group[2] += p.tags
            group[3] = max(group[3], p.largest_tag_keys)
    merged = [TagPattern(name, *values) for name, values in patterns.items()]
    merged.sort(key=lambda p: (-p.largest_tag_keys, -p.keys, p.pattern))
    return SlotView(
        slots_with_keys=SLOTS - keys.count(0),
        biggest=biggest_slots(keys, sizes),
        tagged_keys=sum(v.tagged_keys for v in views),
        tagged_bytes=sum(v.tagged_bytes for v in views),
        tags=top_tags(t for v in views for t in v.tags),
        tag_patterns=merged[:TOP_TAG_PATTERNS],
        tags_exact=all(v.tags_exact for v in views),
        tag_error_keys=max((v.tag_error_keys for v in views), default=0),
        keys_by_slot=keys,
        bytes_by_slot=sizes,
    )
