"""INFO replies as data: one parser for every concern, whichever client read the reply.

redis-py parses INFO itself (numbers as int or float, each `dbN` keyspace line as a dict); a
plain RESP connection (backups by replication, `memory report`'s scanner) gets the raw text.
`parse_info` reads the text; `keyspace` and `replicas` read the `dbN` and `slaveN` lines of
either, `replication_role` names the role, and `as_int` reads one field of either (or of CONFIG
GET, or of an RDB aux field), so no concern parses INFO its own way. Imports nothing of
redisops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def parse_info(raw: bytes | str) -> dict[str, str]:
    """A raw INFO reply (as a plain RESP connection gets it) as name -> value, all text."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    info = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and ":" in line:
            name, _, value = line.partition(":")
            info[name] = value
    return info


def keyspace(info: Mapping[str, Any]) -> dict[int, dict[str, int]]:
    """Each database's line of INFO keyspace (`keys`, `expires`, `avg_ttl`, and `subexpiry` or
    `keys_with_volatile_items` where the server has them), by db number in order.

    Takes `parse_info`'s text (`db0` -> "keys=5,expires=1,avg_ttl=0") or redis-py's dicts;
    fields that are not integers are left out.
    """
    dbs = {}
    for number, fields in _numbered(info, "db"):
        numbers = {key: as_int(value) for key, value in fields.items()}
        dbs[number] = {key: value for key, value in numbers.items() if value is not None}
    return dict(sorted(dbs.items()))


def replicas(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A master's INFO replication lines for its replicas (`slave0:ip=…,port=…,state=online,
    offset=…,lag=0`), in their order, from `parse_info`'s text (values stay text: read numbers
    with `as_int`) or redis-py's dicts."""
    return [fields for _, fields in sorted(_numbered(info, "slave"), key=lambda item: item[0])]


def _numbered(info: Mapping[str, Any], prefix: str) -> list[tuple[int, Mapping[str, Any]]]:
    """(N, fields) of each `<prefix>N` line: `a=1,b=x` text or a redis-py dict."""
    found = []
    for name, value in info.items():
        if not (name.startswith(prefix) and name[len(prefix) :].isdigit()):
            continue
        if isinstance(value, str):
            value = dict(item.partition("=")[::2] for item in value.split(",") if "=" in item)
        if isinstance(value, Mapping):
            found.append((int(name[len(prefix) :]), value))
    return found


def replication_role(info: Mapping[str, Any]) -> str:
    """INFO replication's role as redisops names it: `replica` where INFO says `slave`, else
    what it says (`master`), `unknown` when it says nothing."""
    role = info.get("role")
    if role == "slave":
        return "replica"
    return str(role) if role else "unknown"


def as_int(value: object) -> int | None:
    """An INFO, CONFIG GET or aux field as an integer: an int (a float is truncated, as redis-py
    gives some counters) or decimal text with an optional sign; None for anything else
    (absent, empty, a word)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if digits.isascii() and digits.isdigit():
            return int(text)
    return None
