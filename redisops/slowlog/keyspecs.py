"""Key positions from the server itself: COMMAND INFO, read once per server kind and run.

A static table of Redis 7.0 commands cannot know `HEXPIRE` (7.4, Valkey 9), `JSON.GET` or
any other module command. Redis 7+ and Valkey describe every command's keys in COMMAND INFO
as key specs (a begin_search by index or keyword, then a range or a key count); Redis 6.2
gives first/last/step. Tables are shared by every host of the same flavour, version and
loaded modules, and filled lazily: a capture asks only about the command names its entries
hold that the table has not asked about yet, in one COMMAND INFO call. The static table stays
the fallback for names the server does not describe (refused by an ACL, or unknown to it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from redisops.fleet.server import server_identity
from redisops.redaction import first_line
from redisops.slowlog.fingerprint import (
    CONTAINERS,
    MOVABLE_KEYS,
    STATIC_KEYS,
    KeysOf,
    KeyTable,
    command_name,
)

# Names asked per COMMAND INFO call; a slowlog holds far fewer distinct commands.
MAX_NAMES_PER_CALL = 256

KeySpec = Callable[[Sequence[bytes]], Sequence[bytes]]

_tables: dict[tuple, KeyTable] = {}
_asked: dict[tuple, set[str]] = {}
_lock = threading.Lock()


def server_kind(info: Mapping[str, Any]) -> tuple:
    """What decides a server's commands: flavour, real version and loaded modules (INFO)."""
    identity = server_identity(info)
    modules = info.get("modules") or ()
    loaded = tuple(
        sorted(f"{m.get('name')}/{m.get('ver')}" for m in modules if isinstance(m, dict))
    )
    return (identity.flavour, identity.version, loaded)


def key_table_for(kind: tuple) -> tuple[KeyTable, set[str]]:
    """The shared table of servers of `kind`, and the names already asked about."""
    with _lock:
        if kind not in _tables:
            _tables[kind] = KeyTable({}, CONTAINERS, fallback=STATIC_KEYS)
            _asked[kind] = set()
        return _tables[kind], _asked[kind]


def learn_key_positions(
    client: Any, info: Mapping[str, Any], commands: Iterable[bytes]
) -> tuple[KeyTable, str | None]:
    """The key table for the server behind `client` (redis-py), taught the `commands` (raw
    names, as logged) it lacks with one COMMAND INFO call; and why it could not, if so.

    A refused COMMAND INFO (ACL, renamed command) leaves those names to the static table and
    says why; redis-py errors other than a reply error propagate (the host failed).
    """
    import redis

    table, asked = key_table_for(server_kind(info))
    wanted = sorted({command_name(raw) for raw in commands} - asked - {"?"})[:MAX_NAMES_PER_CALL]
    if not wanted:
        return table, None
    try:
        # One command name with a space: redis-py applies no parser of its own to the reply.
        reply = client.execute_command("COMMAND INFO", *wanted)
    except redis.ResponseError as exc:
        reason = first_line(exc, "refused")
        return (
            table,
            f"COMMAND INFO refused ({reason}): key positions of commands newer "
            "than Redis 7.0 and of modules are unknown",
        )
    positions: dict[str, KeysOf | None] = {}
    containers: set[str] = set()
    for entry in reply if isinstance(reply, list) else ():
        if isinstance(entry, list) and len(entry) >= 6:
            _read_command(entry, positions, containers)
    with _lock:
        table.learn(positions, containers)
        asked.update(wanted)
    return table, None


def _read_command(entry: list, positions: dict[str, KeysOf | None], containers: set[str]) -> None:
    """One COMMAND INFO entry, and its subcommands (Redis 7+), into `positions`."""
    name = _text(entry[0]).upper()
    flags = {_text(flag).lower() for flag in entry[2]} if isinstance(entry[2], list) else set()
    specs = entry[8] if len(entry) > 8 and isinstance(entry[8], list) else None
    positions[name] = keys_from_info(
        name, int(entry[3]), int(entry[4]), int(entry[5]), flags, specs
    )
    subcommands = entry[9] if len(entry) > 9 and isinstance(entry[9], list) else []
    if subcommands:
        containers.add(name)
    for sub in subcommands:
        if isinstance(sub, list) and len(sub) >= 6:
            _read_command(sub, positions, containers)


def keys_from_info(
    name: str,
    first: int,
    last: int,
    step: int,
    flags: set[str],
    specs: list | None,
) -> KeysOf | None:
    """Where a command's keys are, from its COMMAND INFO fields.

    Key specs (Redis 7+, Valkey) win; without them (Redis 6.2) the legacy first/last/step,
    except for `movablekeys` commands, whose keys only the static table knows how to find.
    """
    if specs:
        readers = [_spec_reader(_mapping(spec)) for spec in specs]
        known = [reader for reader in readers if reader is not None]
        if known:
            return _single(known)
    if "movablekeys" in flags and name in MOVABLE_KEYS:
        return MOVABLE_KEYS[name]
    if first <= 0 or step <= 0:
        return None
    return (first, last, step)


def _single(readers: list[KeysOf]) -> KeysOf:
    if len(readers) == 1:
        return readers[0]

    def keys(args: Sequence[bytes]) -> Sequence[bytes]:
        found: list[bytes] = []
        for reader in readers:
            found.extend(find_keys(reader, args))
        return found

    return keys


def find_keys(reader: KeysOf, args: Sequence[bytes]) -> Sequence[bytes]:
    """The keys of one logged command (`args`, command first) by `reader`'s positions."""
    if isinstance(reader, tuple):
        first, last, step = reader
        end = len(args) + last + 1 if last < 0 else last + 1
        return args[first:end:step]
    return reader(args)


def _spec_reader(spec: dict[str, Any]) -> KeysOf | None:
    """One key spec as (first, last, step) when it is a plain range, else a function.

    None for a spec of unknown type (SORT's BY/STORE: keys the server itself cannot place).
    Mirrors getKeysUsingKeySpecs in Redis' db.c.
    """
    begin, find = _mapping(spec.get("begin_search")), _mapping(spec.get("find_keys"))
    begin_type, find_type = _text(begin.get("type")), _text(find.get("type"))
    begin_spec, find_spec = _mapping(begin.get("spec")), _mapping(find.get("spec"))
    if find_type == "range":
        lastkey = int(find_spec.get("lastkey", 0))
        keystep = int(find_spec.get("keystep", 1)) or 1
        limit = int(find_spec.get("limit", 0))
        if begin_type == "index" and limit <= 1:
            index = int(begin_spec.get("index", 0))
            return (index, index + lastkey if lastkey >= 0 else lastkey, keystep)
        finder = _range_finder(lastkey, keystep, limit)
    elif find_type == "keynum":
        finder = _keynum_finder(
            int(find_spec.get("keynumidx", 0)),
            int(find_spec.get("firstkey", 1)),
            int(find_spec.get("keystep", 1)) or 1,
        )
    else:
        return None
    if begin_type == "index":
        index = int(begin_spec.get("index", 0))
        if find_type == "keynum":  # EVAL, FCALL, ZUNIONSTORE…: one call per entry, not two
            return _keynum_at(index + int(find_spec.get("keynumidx", 0)),
                              index + int(find_spec.get("firstkey", 1)),
                              int(find_spec.get("keystep", 1)) or 1)  # fmt: skip
        return lambda args: finder(args, index)
    if begin_type == "keyword":
        keyword = _text(begin_spec.get("keyword")).upper().encode()
        startfrom = int(begin_spec.get("startfrom", 1))
        return lambda args: _after_keyword(args, keyword, startfrom, finder)
    return None


def _range_finder(lastkey: int, keystep: int, limit: int) -> Callable:
    def find(args: Sequence[bytes], first: int) -> Sequence[bytes]:
        if lastkey >= 0:
            last = first + lastkey
        elif limit <= 1:
            last = len(args) + lastkey
        else:  # XREAD STREAMS k1 k2 id1 id2: the keys are the first 1/limit of the rest
            last = first + (len(args) - first) // limit + lastkey
        return args[first : last + 1 : keystep]

    return find


def _keynum_at(count_at: int, first: int, step: int) -> KeySpec:
    """Keys counted by the argument at `count_at`, the first at `first`."""

    def keys(args: Sequence[bytes]) -> Sequence[bytes]:
        try:
            count = int(args[count_at])
        except (IndexError, ValueError):
            return ()
        return args[first : first + max(count, 0) * step : step]

    return keys


def _keynum_finder(keynumidx: int, firstkey: int, keystep: int) -> Callable:
    def find(args: Sequence[bytes], first: int) -> Sequence[bytes]:
        try:
            count = int(args[first + keynumidx])
        except (IndexError, ValueError):
            return ()
        start = first + firstkey
        return args[start : start + max(count, 0) * keystep : keystep]

    return find


def _after_keyword(
    args: Sequence[bytes], keyword: bytes, startfrom: int, finder: Callable
) -> Sequence[bytes]:
    """Keys found after `keyword`, searched forward from `startfrom` or, when it is negative,
    backward from that far before the end; none when the keyword is absent."""
    argc = len(args)
    forward = startfrom > 0
    for index in range(startfrom, argc - 1) if forward else range(argc + startfrom, 1, -1):
        if 1 <= index < argc and args[index].upper() == keyword:
            return finder(args, index + 1)
    return ()


def _mapping(value: Any) -> dict[str, Any]:
    """A key-spec map, from RESP3 (a dict) or RESP2 (a flat list of name, value pairs)."""
    if isinstance(value, dict):
        return {_text(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {_text(k): v for k, v in zip(value[::2], value[1::2], strict=False)}
    return {}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
