"""Command fingerprints: what a slowlog entry is (command, subcommand, key pattern), not its values.

`SET user:1234:profile <value>` and `SET user:99:profile <other>` share the fingerprint
`SET user:{id}:profile`: the key part comes from `redisops.keypatterns.key_pattern`, the
normaliser memory reports use, so both read the same. Argument values never enter a
fingerprint; `redacted_args` is the one way to show them (`--show-args`), with credentials
always masked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from redisops.keypatterns import key_pattern, key_text

# Redis 7's own marker for the arguments it hides in SLOWLOG and MONITOR.
REDACTED = "(redacted)"
# Redis keeps at most 32 arguments and 128 bytes of each (slowlog.h), and says so in the entry.
SERVER_MAX_ARGS = 32
SERVER_MAX_STRING = 128
MAX_KEY_PATTERNS = 3
SAMPLE_MAX_ARGS = 16
SAMPLE_MAX_CHARS = 64

WHOLE_RANGE = "whole-range"  # LRANGE/ZRANGE key 0 -1: the whole collection in one reply
ASYNC = "async"  # FLUSHALL/FLUSHDB ASYNC: freed in the background

_MORE_ARGS = re.compile(rb"^\.\.\. \(\d+ more arguments\)$")
_MORE_BYTES = re.compile(rb"\.\.\. \(\d+ more bytes\)$")
# A command or subcommand name as the server knows it; anything else is a value, never shown.
_NAME = re.compile(rb"^[A-Za-z_][A-Za-z0-9_.|:-]{0,63}$")
_SHA1 = re.compile(rb"^[0-9a-fA-F]{40}$")

# Commands whose first argument names what they do (Redis 7.0 containers, plus DEBUG).
CONTAINERS = frozenset(
    {"ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY"}
    | {"MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SENTINEL", "SLOWLOG", "XGROUP", "XINFO"}
)
SCRIPTS = frozenset({"EVAL", "EVAL_RO", "EVALSHA", "EVALSHA_RO", "FCALL", "FCALL_RO"})

# Key positions (first, last, step) as Redis 7.0's COMMAND reports them; last < 0 counts from
# the end. Commands not listed here (and not in MOVABLE_KEYS) take no keys.
_KEY_RANGES_BY_SPEC = {
    (1, 1, 1): "APPEND BITCOUNT BITFIELD BITFIELD_RO BITPOS DECR DECRBY DUMP EXPIRE EXPIREAT "
    "EXPIRETIME GEOADD GEODIST GEOHASH GEOPOS GEORADIUS GEORADIUS_RO GEORADIUSBYMEMBER "
    "GEORADIUSBYMEMBER_RO GEOSEARCH GET GETBIT GETDEL GETEX GETRANGE GETSET HDEL HEXISTS HGET "
    "HGETALL HINCRBY HINCRBYFLOAT HKEYS HLEN HMGET HMSET HRANDFIELD HSCAN HSET HSETNX HSTRLEN "
    "HVALS INCR INCRBY INCRBYFLOAT LINDEX LINSERT LLEN LPOP LPOS LPUSH LPUSHX LRANGE LREM LSET "
    "LTRIM MOVE PERSIST PEXPIRE PEXPIREAT PEXPIRETIME PFADD PSETEX PTTL RESTORE RESTORE-ASKING "
    "RPOP RPUSH RPUSHX SADD SCARD SET SETBIT SETEX SETNX SETRANGE SISMEMBER SMEMBERS SMISMEMBER "
    "SORT SORT_RO SPOP SPUBLISH SRANDMEMBER SREM SSCAN STRLEN SUBSTR TTL TYPE XACK XADD "
    "XAUTOCLAIM XCLAIM XDEL XLEN XPENDING XRANGE XREVRANGE XSETID XTRIM ZADD ZCARD ZCOUNT "
    "ZINCRBY ZLEXCOUNT ZMSCORE ZPOPMAX ZPOPMIN ZRANDMEMBER ZRANGE ZRANGEBYLEX ZRANGEBYSCORE "
    "ZRANK ZREM ZREMRANGEBYLEX ZREMRANGEBYRANK ZREMRANGEBYSCORE ZREVRANGE ZREVRANGEBYLEX "
    "ZREVRANGEBYSCORE ZREVRANK ZSCAN ZSCORE",
    (1, -2, 1): "BLPOP BRPOP BZPOPMAX BZPOPMIN",
    (1, -1, 1): "DEL EXISTS MGET PFCOUNT PFMERGE SDIFF SDIFFSTORE SINTER SINTERSTORE SSUBSCRIBE "
    "SUNION SUNIONSTORE SUNSUBSCRIBE TOUCH UNLINK WATCH",
    (1, -1, 2): "MSET MSETNX",
    (1, 2, 1): "BLMOVE BRPOPLPUSH COPY GEOSEARCHSTORE LCS LMOVE RENAME RENAMENX RPOPLPUSH SMOVE "
    "ZRANGESTORE",
    (2, -1, 1): "BITOP",
    (2, 2, 1): "MEMORY|USAGE OBJECT|FREQ OBJECT|IDLETIME OBJECT|ENCODING OBJECT|REFCOUNT PFDEBUG "
    "XGROUP|CREATE XGROUP|DELCONSUMER XGROUP|CREATECONSUMER XGROUP|SETID XGROUP|DESTROY "
    "XINFO|STREAM XINFO|GROUPS XINFO|CONSUMERS",
}
_KEY_RANGES = {name: spec for spec, names in _KEY_RANGES_BY_SPEC.items() for name in names.split()}
_SINGLE_KEY = (1, 1, 1)
KeysOf = tuple[int, int, int] | Callable[[Sequence[bytes]], Sequence[bytes]]
# Names a table caches per raw command name; past this, lookups are simply not cached.
MAX_CACHED_NAMES = 4096


class KeyTable:
    """Where each command's keys are, for one server (from its COMMAND INFO) or offline.

    `positions` maps a command name (`GET`, `OBJECT|ENCODING`) to (first, last, step) or a
    function of the arguments, None for a command without keys. Names it does not hold are
    looked up in `fallback` (the static Redis 7.0 table). `containers` are the commands whose
    first argument names what they do. Lookups by raw name are cached: the digest asks once
    per slowlog entry.
    """

    def __init__(
        self,
        positions: dict[str, KeysOf | None],
        containers: frozenset[str],
        fallback: KeyTable | None = None,
    ) -> None:
        self.positions = positions
        self.containers = containers
        self.fallback = fallback
        self._by_raw: dict[bytes, tuple[str, KeysOf | None, bool]] = {}

    def command(self, raw: bytes) -> tuple[str, KeysOf | None, bool]:
        """(NAME, where its keys are, named by its first argument) for a raw command name."""
        hit = self._by_raw.get(raw)
        if hit is None:
            name = command_name(raw)
            named = name in self.containers or name in SCRIPTS
            hit = (name, _ALWAYS.get(name) or self.keys_of(name), named)
            if len(self._by_raw) < MAX_CACHED_NAMES:
                self._by_raw[raw] = hit
        return hit

    def keys_of(self, name: str) -> KeysOf | None:
        """Where the keys of `name` (`GET`, `OBJECT|ENCODING`) are; None: it takes none."""
        if name in self.positions:
            return self.positions[name]
        return self.fallback.keys_of(name) if self.fallback is not None else None

    def subcommand(self, name: str, sub: str, container: KeysOf | None) -> KeysOf | None:
        """Where the keys of `name sub` are; a server that knows `name` only as a whole
        (Redis 6.2's OBJECT) gives the container's own positions."""
        full = f"{name}|{sub}"
        if full in self.positions or name not in self.positions:
            return self.keys_of(full)
        return container

    def learn(self, positions: dict[str, KeysOf | None], containers: set[str]) -> None:
        """Add what a server said; names already cached by raw bytes are looked up again."""
        self.positions.update(positions)
        self.containers = self.containers | containers
        self._by_raw.clear()


@dataclass(frozen=True)
class Shape:
    """A fingerprint and its parts; `flag` marks a costly variant (WHOLE_RANGE) or ASYNC."""

    fingerprint: str
    command: str
    key_pattern: str
    flag: str | None = None


def fingerprint_args(args: Sequence[bytes], keys: KeyTable | None = None) -> Shape:
    """The shape of one logged command (`args` as SLOWLOG GET returns them, command first).

    `keys` says where the keys are on the server that logged it (see
    redisops.slowlog.keyspecs); without it, the static Redis 7.0 table.
    """
    if keys is None:
        keys = STATIC_KEYS
    if not args:
        return _shape("?", "", None)
    name, keys_of, named_by_first = keys.command(args[0])
    if len(args) == SERVER_MAX_ARGS and _MORE_ARGS.match(args[-1]):
        args = args[:-1]
    command = name
    if len(args) > 1 and named_by_first:
        if name in SCRIPTS:
            command = f"{name} {_script_id(name, args[1])}"
        else:
            sub = command_name(args[1])
            command, keys_of = f"{name} {sub}", keys.subcommand(name, sub, keys_of)
    if keys_of is None:
        pattern = ""
    elif keys_of == _SINGLE_KEY:  # most commands: one key, first argument (the fast path)
        pattern = _key_pattern(args[1]) if len(args) > 1 else ""
    elif isinstance(keys_of, tuple):
        pattern = _patterns(_key_range(args, keys_of))
    else:
        pattern = _patterns(keys_of(args))
    return _shape(command, pattern, _flag(name, args) if name in _FLAGGED else None)


def redacted_args(args: Sequence[bytes]) -> tuple[str, ...]:
    """`args` as text for a sample: credentials masked, each clipped, at most 16 of them."""
    secret = secret_positions(args)
    more = 0
    if len(args) == SERVER_MAX_ARGS and _MORE_ARGS.match(args[-1]):
        args, more = args[:-1], int(args[-1].split(b"(")[1].split()[0])
    shown = [
        REDACTED if index in secret else _clip(key_text(arg))
        for index, arg in enumerate(args[:SAMPLE_MAX_ARGS])
    ]
    more += max(len(args) - SAMPLE_MAX_ARGS, 0)
    if more:
        shown.append(f"… ({more} more arguments)")
    return tuple(shown)


@lru_cache(maxsize=8192)
def _shape(command: str, pattern: str, flag: str | None) -> Shape:
    return Shape(f"{command} {pattern}" if pattern else command, command, pattern, flag)


@lru_cache(maxsize=1024)
def command_name(raw: bytes) -> str:
    """A command or subcommand name upper-cased, `?` for anything that is not a name."""
    return raw.decode("ascii").upper() if _NAME.match(raw) else "?"


def _script_id(name: str, arg: bytes) -> str:
    if name.startswith("EVALSHA"):
        return arg[:8].decode().lower() if _SHA1.match(arg) else "?"
    if name.startswith("EVAL"):
        # The SHA1 of the body is what EVALSHA names the same script by (unless Redis clipped it).
        return hashlib.sha1(arg, usedforsecurity=False).hexdigest()[:8]
    return command_name(arg).lower() if _NAME.match(arg) else "?"


def _key_range(args: Sequence[bytes], spec: tuple[int, int, int]) -> Sequence[bytes]:
    first, last, step = spec
    end = len(args) + last + 1 if last < 0 else last + 1
    return args[first:end:step]


def _numkeys_at(index: int) -> Callable[[Sequence[bytes]], Sequence[bytes]]:
    def keys(args: Sequence[bytes]) -> Sequence[bytes]:
        try:
            count = int(args[index])
        except (IndexError, ValueError):
            return ()
        return args[index + 1 : index + 1 + max(count, 0)]

    return keys


def _destination_and_numkeys(args: Sequence[bytes]) -> Sequence[bytes]:
    return (*args[1:2], *_numkeys_at(2)(args))


def _stream_keys(args: Sequence[bytes]) -> Sequence[bytes]:
    for index, arg in enumerate(args):
        if arg.upper() == b"STREAMS":
            rest = args[index + 1 :]
            return rest[: len(rest) // 2]
    return ()


def _migrate_keys(args: Sequence[bytes]) -> Sequence[bytes]:
    if len(args) > 3 and args[3]:
        return args[3:4]
    for index, arg in enumerate(args):
        if arg.upper() == b"KEYS":
            return args[index + 1 :]
    return ()


# Commands whose keys move with their arguments (COMMAND flags them `movablekeys`).
MOVABLE_KEYS: dict[str, Callable[[Sequence[bytes]], Sequence[bytes]]] = {
    **dict.fromkeys(SCRIPTS | {"BLMPOP", "BZMPOP"}, _numkeys_at(2)),
    **dict.fromkeys(
        ("LMPOP", "ZMPOP", "SINTERCARD", "ZDIFF", "ZINTER", "ZINTERCARD", "ZUNION"),
        _numkeys_at(1),
    ),
    **dict.fromkeys(("ZDIFFSTORE", "ZINTERSTORE", "ZUNIONSTORE"), _destination_and_numkeys),
    "XREAD": _stream_keys,
    "XREADGROUP": _stream_keys,
    "MIGRATE": _migrate_keys,
}
# Not a key, but its glob reads like a key pattern and says what the caller was after: on
# every server, whatever its COMMAND INFO says.
_ALWAYS: dict[str, Callable[[Sequence[bytes]], Sequence[bytes]]] = {"KEYS": lambda a: a[1:2]}
STATIC_KEYS = KeyTable({**_KEY_RANGES, **MOVABLE_KEYS}, CONTAINERS)


def _patterns(keys: Sequence[bytes]) -> str:
    patterns: list[str] = []
    for key in keys:
        pattern = _key_pattern(key)
        if pattern and pattern not in patterns:
            if len(patterns) == MAX_KEY_PATTERNS:
                patterns.append("…")
                break
            patterns.append(pattern)
    return " ".join(patterns)


def _key_pattern(key: bytes) -> str:
    if len(key) > SERVER_MAX_STRING and _MORE_BYTES.search(key):
        return key_pattern(key[:SERVER_MAX_STRING]) + "…"
    return key_pattern(key)


_FLAGGED = frozenset({"LRANGE", "ZRANGE", "ZREVRANGE", "FLUSHALL", "FLUSHDB"})


def _flag(name: str, args: Sequence[bytes]) -> str | None:
    if name in ("LRANGE", "ZRANGE", "ZREVRANGE") and tuple(args[2:4]) == (b"0", b"-1"):
        return WHOLE_RANGE
    if name in ("FLUSHALL", "FLUSHDB") and any(a.upper() == b"ASYNC" for a in args[1:]):
        return ASYNC
    return None


# Settings whose value is a credential, in CONFIG SET and SENTINEL SET / SENTINEL CONFIG SET.
_SECRET_SETTINGS = frozenset(
    {
        b"requirepass",
        b"masterauth",
        b"masteruser",
        b"primaryauth",
        b"primaryuser",
        b"auth-pass",
        b"sentinel-pass",
        b"tls-key-file-pass",
        b"tls-client-key-file-pass",
    }
    | {b"tls-client-key-file-pass"}
)
# ACL SETUSER rules that carry a password or its hash: >pass, <pass, #hash, !hash.
_ACL_SECRET_RULES = (b">", b"<", b"#", b"!")


def secret_positions(args: Sequence[bytes]) -> set[int]:
    """Indexes of `args` holding credentials, masked whether or not the server masked them."""
    upper = [arg.upper() for arg in args]
    name, sub = [*upper, b"", b""][:2]
    if name == b"AUTH":
        return set(range(1, len(args)))
    if name == b"HELLO" and b"AUTH" in upper:
        index = upper.index(b"AUTH")
        return {index + 1, index + 2}
    if name == b"MIGRATE":
        return {i + 1 for i, arg in enumerate(upper) if arg in (b"AUTH", b"AUTH2")} | {
            i + 2 for i, arg in enumerate(upper) if arg == b"AUTH2"
        }
    if name == b"ACL" and sub == b"SETUSER":
        return {i for i, arg in enumerate(args) if i > 2 and arg[:1] in _ACL_SECRET_RULES}
    if (name, sub) in ((b"CONFIG", b"SET"), (b"SENTINEL", b"SET"), (b"SENTINEL", b"CONFIG")):
        # Name/value pairs start after CONFIG SET, SENTINEL SET <master>, SENTINEL CONFIG SET.
        start = 2 if name == b"CONFIG" else 3
        return {
            i + 1 for i in range(start, len(args) - 1, 2) if args[i].lower() in _SECRET_SETTINGS
        }
    return set()


def _clip(text: str) -> str:
    return text if len(text) <= SAMPLE_MAX_CHARS else text[: SAMPLE_MAX_CHARS - 1] + "…"
