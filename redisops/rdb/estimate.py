"""What `MEMORY USAGE key SAMPLES 0` would say for a key, from what the RDB holds.

The model follows objectComputeSize() and memoryCommand() of Redis 7.0 (object.c) on a 64-bit
build with jemalloc: every allocation is rounded up to its jemalloc size class; a key costs its
sds plus a dictEntry; a string is a robj (int), one embstr allocation (<= 44 bytes) or a robj
plus an sds; packed encodings (listpack, intset, ziplist, zipmap) cost their blob; hash tables
cost a dict, a bucket array of the next power of two and per element a dictEntry and the sds
of each string; a skiplist adds its 32-level header and per member a node of the average
random level. Streams are approximated (their rax nodes are not in the file). docs/memory.md
records the error against the live server.
"""

from __future__ import annotations

ROBJ = 16
DICT_ENTRY = 24
DICT = 56
QUICKLIST = 40
QUICKLIST_NODE = 32
ZSET = 16
ZSKIPLIST = 32
ZSKIPLIST_HEADER = 640  # zmalloc_size(24 + 32 levels * 16)
# Expected size class of a skiplist node (24 + 16 bytes per level, level ~ geometric(0.25)).
ZSKIPLIST_NODE = 53
EMBSTR_LIMIT = 44
STREAM = 80
STREAM_CG = 40
STREAM_NACK = 24
STREAM_CONSUMER = 32
RAX = 24
RAX_NODE_OVERHEAD = 4 + 8 * 30  # streamRadixTreeMemoryUsage's per-node guess


def size_class(size: int) -> int:
    """The jemalloc size class `size` bytes are rounded up to (4 classes per doubling)."""
    if size <= 8:
        return 8
    if size <= 128:
        return (size + 15) & ~15
    step = 1 << ((size - 1).bit_length() - 3)
    return (size + step - 1) & ~(step - 1)


def sds_bytes(length: int) -> int:
    """An sds string of `length` bytes: header (by length), the bytes and a NUL, rounded."""
    if length < 32:
        header = 1 if length else 3  # an empty sds gets sdshdr8, never sdshdr5
    elif length < 256:
        header = 3
    elif length < 65536:
        header = 5
    else:
        header = 9
    return size_class(header + length + 1)


def key_overhead(key_length: int) -> int:
    """The key's own sds and its entry in the db's dict."""
    return sds_bytes(key_length) + DICT_ENTRY


def string_bytes(length: int, encoding: str) -> int:
    if encoding == "int":
        return ROBJ
    if encoding == "embstr":
        return size_class(ROBJ + 3 + length + 1)
    return ROBJ + sds_bytes(length)


def packed_bytes(blob_bytes: int) -> int:
    """A listpack, intset, ziplist or zipmap value: one allocation."""
    return ROBJ + size_class(blob_bytes)


def dict_slots(elements: int) -> int:
    """Buckets of a dict holding `elements`: the next power of two, at least 4."""
    return max(4, 1 << (elements - 1).bit_length()) if elements > 1 else 4


def hashtable_bytes(elements: int, strings_bytes: int) -> int:
    """A set or hash as a dict; `strings_bytes` is the sum of sds_bytes of every string."""
    return ROBJ + DICT + 8 * dict_slots(elements) + DICT_ENTRY * elements + strings_bytes


def skiplist_bytes(elements: int, members_bytes: int) -> int:
    fixed = ROBJ + ZSET + ZSKIPLIST + DICT + 8 * dict_slots(elements) + ZSKIPLIST_HEADER
    return fixed + (DICT_ENTRY + ZSKIPLIST_NODE) * elements + members_bytes


def quicklist_bytes(node_blob_bytes: int, nodes: int) -> int:
    """`node_blob_bytes` is the sum of size_class of every node's listpack or plain element."""
    return ROBJ + QUICKLIST + QUICKLIST_NODE * nodes + node_blob_bytes


def stream_bytes(listpack_bytes: int, listpacks: int, groups: int, pending: int,
                 consumers: int, consumer_names_bytes: int) -> int:  # fmt: skip
    """An approximation: rax nodes are counted as one per listpack, per NACK and per consumer."""
    size = ROBJ + STREAM + 4 * listpacks + listpack_bytes
    if groups:
        size += RAX + 4 * groups + groups * (STREAM_CG + 2 * RAX)
        size += pending * (STREAM_NACK + 16 + RAX_NODE_OVERHEAD)
        size += consumers * (STREAM_CONSUMER + RAX + RAX_NODE_OVERHEAD) + consumer_names_bytes
    return size
