"""`snapshot take`: every selected host's evidence, read in parallel, redacted, archived.

Each host is one fan-out task on one plain RESP connection (fleet/resp.py: the server's own
replies, bounded by --timeout per command). The slowlog is read first, before this capture's
own commands can push old entries out. An error reply costs only its item; a host that stops
answering ends its Redis items there (one timeout, not one per item) and keeps what it gave.
Host facts come through host access (one shell round trip), also when Redis does not answer:
a frozen server is when its log and the kernel's OOM lines matter most.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redisops import __version__
from redisops.errors import HostError, UsageError
from redisops.fleet.fanout import HostResult, PartialFailure, run_on_hosts
from redisops.fleet.host import Host
from redisops.fleet.secrets import resolve_password
from redisops.fleet.server import server_identity, version_tuple
from redisops.interrupt import raise_if_stopped
from redisops.serverinfo import parse_info
from redisops.snapshot.archive import (
    FAILED,
    FORMAT,
    OK,
    SKIPPED,
    SUFFIX,
    archive_name,
    encode_item,
    host_member,
    write_archive,
)
from redisops.snapshot.redaction import mask_acl_rule_line, mask_args, mask_config, scrub

if TYPE_CHECKING:
    from redisops.fleet.hostaccess import HostAccess
    from redisops.fleet.resp import RespConnection

CLIENT_NAME = "redisops-snapshot"
LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024
OOM_LINES = 50
OOM_PATTERN = "out of memory|oom-kill|oom_reaper|killed process"


@dataclass
class HostCapture:
    """What one host gave: its manifest entry (`record`) and item name -> value (not yet
    scrubbed of remembered secrets; shaped as archive.ITEM_FILES says)."""

    record: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class HostTaken:
    """One host's line of `snapshot take`: items captured, failed, skipped, bytes archived."""

    server: str | None
    captured: int
    failed: tuple[str, ...]
    skipped: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class SnapshotTaken:
    """The archive written, and the older archives `keep` removed from its folder."""

    path: Path
    bytes: int
    seconds: float
    results: list[HostResult[HostTaken]]
    pruned: tuple[Path, ...] = ()


def take_snapshot(
    hosts: Sequence[Host],
    *,
    dest: Path,
    timeout: float,
    parallel: int,
    inventory: str | None = None,
    limit: str | None = None,
    keep: int = 0,
) -> SnapshotTaken:
    """Capture every host (at most `parallel` at once) and write one archive into `dest`;
    with `keep`, then remove all but the newest `keep` archives there (this one included).

    A host that fails is an error entry of the manifest and an error row; the others are
    complete. Raises UsageError when `dest` is not a writable folder (before any host is
    read), OSError when the archive cannot be written.
    """
    _check_dest(dest)
    started = time.time()
    clock = time.monotonic()
    results = run_on_hosts(hosts, lambda h: capture_host(h, timeout=timeout), parallel=parallel)
    # capture_host returns or raises PartialFailure, both with data: one capture per host.
    captures = [result.data for result in results if result.data is not None]
    secrets = set().union(*(c.secrets for c in captures)) | _inventory_passwords(hosts)
    members: dict[str, bytes] = {}
    for capture in captures:
        for item in capture.record["items"]:
            if item["status"] == OK:
                data = encode_item(item["name"], scrub(capture.values[item["name"]], secrets))
                item["file"] = host_member(capture.record["name"], item["name"])
                item["bytes"] = len(data)
                members[item["file"]] = data
    manifest = {
        "format": FORMAT,
        "redisops": __version__,
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "started": started,
        "seconds": round(time.monotonic() - clock, 3),
        "taken_on": socket.gethostname(),
        "inventory": inventory,
        "limit": limit,
        "timeout": timeout,
        "parallel": parallel,
        "hosts": [scrub(c.record, secrets) for c in captures],
    }
    path = write_archive(dest, archive_name(started), manifest, members)
    pruned = prune_archives(dest, keep) if keep else ()
    seconds = time.monotonic() - clock
    rows = [
        _row(result, manifest_host)
        for result, manifest_host in zip(results, manifest["hosts"], strict=True)
    ]
    return SnapshotTaken(
        path=path, bytes=path.stat().st_size, seconds=seconds, results=rows, pruned=pruned
    )


def newest_archives(folder: Path) -> list[Path]:
    """The snapshot archives of `folder`, newest first (by the UTC time in their names)."""
    return sorted(folder.glob(f"snapshot-*{SUFFIX}"), key=_archive_order, reverse=True)


def prune_archives(dest: Path, keep: int) -> tuple[Path, ...]:
    """Remove all but the newest `keep` snapshot archives of `dest`; returns what was
    removed. Other files are never touched."""
    archives = newest_archives(dest)
    removed = []
    for old in archives[keep:]:
        old.unlink(missing_ok=True)
        removed.append(old)
    return tuple(removed)


def _archive_order(path: Path) -> tuple[str, int]:
    """snapshot-20261205T030000Z.tar.zst, then -2, -3 … taken within the same second."""
    stem = path.name.removesuffix(SUFFIX).removeprefix("snapshot-")
    moment, _, again = stem.partition("-")
    return moment, int(again) if again.isdigit() else 1


def capture_host(host: Host, *, timeout: float) -> HostCapture:
    """Everything one host gives; raises PartialFailure (with what was captured) when the
    host or an item failed, so the fan-out reports it and the archive still keeps it."""
    from redisops.fleet.resp import RespConnection

    capture = HostCapture(
        record={
            "name": host.name,
            "address": host.address,
            "role": host.role,
            "server": None,
            "ok": True,
            "error": None,
            "started": time.time(),
            "seconds": 0.0,
            "items": [],
        }
    )
    clock = time.monotonic()
    error: str | None = None
    info: dict[str, str] = {}
    config: dict[str, str] = {}
    try:
        connection = RespConnection(host, timeout=timeout)
    except HostError as exc:
        error = _line(exc)
    else:
        try:
            info, config = _capture_redis(connection, host, capture)
        except HostError as exc:
            error = _line(exc)
        finally:
            connection.close()
    raise_if_stopped()
    if host.has_host_access:
        _capture_host_facts(host, timeout, info, config, capture)
    else:
        reason = "no host access in the inventory (connection: local or ssh_*)"
        for name in ("host_facts", "redis_log", "kernel_oom"):
            _skip(capture, name, reason)
    failed = [item for item in capture.record["items"] if item["status"] == FAILED]
    if error is None and failed:
        error = "; ".join(f"{item['name']}: {item['error']}" for item in failed[:3])
        if len(failed) > 3:
            error += f" (and {len(failed) - 3} more items)"
    capture.record.update(ok=error is None, error=error)
    capture.record["seconds"] = round(time.monotonic() - clock, 3)
    if error is not None:
        raise PartialFailure(error, capture)
    return capture


def _capture_redis(
    connection: RespConnection, host: Host, capture: HostCapture
) -> tuple[dict[str, str], dict[str, str]]:
    """The Redis (or Sentinel) items; HostError when the server stops answering."""
    call = _caller(connection)
    with contextlib.suppress(_ErrorReply):  # an ACL may deny it: the capture goes on unnamed
        call("CLIENT", "SETNAME", CLIENT_NAME)
    if host.is_sentinel:
        text = _item(capture, "info", lambda: _text(call("INFO")))
        info = parse_info(text.encode("utf-8", "surrogateescape")) if text else {}
        if info:
            capture.record["server"] = server_identity(info).label
        _item(capture, "sentinel", lambda: _sentinel_view(call))
        _item(capture, "clients", lambda: _text(call("CLIENT", "LIST")))
        return info, {}
    _item(capture, "slowlog", lambda: _slowlog(call("SLOWLOG", "GET", "-1")))
    text = _item(capture, "info", lambda: _text(call("INFO", "ALL")))
    info = parse_info(text.encode("utf-8", "surrogateescape")) if text else {}
    identity = server_identity(info) if info else None
    if identity is not None:
        capture.record["server"] = identity.label
        if identity.is_sentinel:
            raise HostError(
                f"{host.address} is a Sentinel, not a Redis server",
                hint=f"set `role: sentinel` for {host.name} in the inventory",
            )
    config = _item(capture, "config", lambda: _config(call, capture)) or {}
    _item(capture, "acl", lambda: [mask_acl_rule_line(_text(line)) for line in call("ACL", "LIST")])
    latest = _item(capture, "latency_latest", lambda: _latency_latest(call("LATENCY", "LATEST")))
    _item(capture, "latency_history", lambda: _latency_history(call, latest or []))
    before_7 = (
        identity is not None
        and identity.flavour == "redis"
        and version_tuple(identity.version) < (7,)
    )
    if before_7:
        _skip(capture, "latency_histogram", f"LATENCY HISTOGRAM needs Redis 7.0 ({identity.label})")
    else:
        _item(capture, "latency_histogram", lambda: _histogram(call("LATENCY", "HISTOGRAM")))
    _item(capture, "memory_stats", lambda: _pairs(call("MEMORY", "STATS"), nested=True))
    _item(capture, "memory_doctor", lambda: _text(call("MEMORY", "DOCTOR")))
    _item(capture, "clients", lambda: _text(call("CLIENT", "LIST")))
    if info:
        _item(capture, "replication", lambda: _replication(info))
    if info.get("cluster_enabled") == "1":
        _item(capture, "cluster_info", lambda: _text(call("CLUSTER", "INFO")))
        if before_7:
            _skip(capture, "cluster_shards", f"CLUSTER SHARDS needs Redis 7.0 ({identity.label})")
        else:
            _item(capture, "cluster_shards", lambda: _shards(call("CLUSTER", "SHARDS")))
    return info, config


class _ErrorReply(Exception):
    """The server answered one command with an error: that item fails, the host goes on."""


def _caller(connection: RespConnection) -> Callable[..., Any]:
    import hiredis

    def call(*parts: str) -> Any:
        connection.send(hiredis.pack_command(parts))
        reply = connection.replies(1)[0]
        if isinstance(reply, hiredis.ReplyError):
            raise _ErrorReply(_first_line(str(reply)))
        return reply

    return call


def _item(capture: HostCapture, name: str, read: Callable[[], Any]) -> Any:
    """Run one item's reader, timed; its value is kept, an error reply noted. HostError
    (the server stopped answering) is noted and raised: the host's Redis items end."""
    raise_if_stopped()
    clock = time.monotonic()
    try:
        value = read()
    except _ErrorReply as exc:
        _note(capture, name, FAILED, clock, f"the server replied: {exc}")
        return None
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        # A reply of another shape than Redis and Valkey give (a proxy, a fork): this item
        # is lost, never the host or the fleet.
        _note(capture, name, FAILED, clock, f"unexpected reply: {type(exc).__name__}: {exc}")
        return None
    except HostError as exc:
        _note(capture, name, FAILED, clock, _line(exc))
        raise
    capture.values[name] = value
    _note(capture, name, OK, clock, None)
    return value


def _note(capture: HostCapture, name: str, status: str, clock: float, error: str | None) -> None:
    capture.record["items"].append(
        {
            "name": name,
            "status": status,
            "seconds": round(time.monotonic() - clock, 4),
            "error": error,
            "file": None,
            "bytes": 0,
        }
    )


def _skip(capture: HostCapture, name: str, reason: str) -> None:
    _note(capture, name, SKIPPED, time.monotonic(), reason)


def _config(call: Callable[..., Any], capture: HostCapture) -> dict[str, str]:
    config, secrets = mask_config(_pairs(call("CONFIG", "GET", "*")))
    capture.secrets |= secrets
    return dict(sorted(config.items()))


def _slowlog(reply: list[Any]) -> list[dict[str, Any]]:
    entries = []
    for item in reply:
        args, rest = item[3], item[4:]
        if not isinstance(args, list):  # Redis Enterprise puts a complexity figure first
            args, rest = item[4], item[5:]
        entries.append(
            {
                "id": int(item[0]),
                "started": int(item[1]),
                "duration_us": int(item[2]),
                "args": mask_args(args),
                "client_address": _text(rest[0]) if rest else "",
                "client_name": _text(rest[1]) if len(rest) > 1 else "",
            }
        )
    return entries


def _latency_latest(reply: list[Any]) -> list[dict[str, Any]]:
    return [
        {"event": _text(row[0]), "at": int(row[1]), "latest_ms": int(row[2]), "max_ms": int(row[3])}
        for row in reply
    ]


def _latency_history(
    call: Callable[..., Any], latest: list[dict[str, Any]]
) -> dict[str, list[list[int]]]:
    history = {}
    for event in latest:
        points = call("LATENCY", "HISTORY", event["event"])
        history[event["event"]] = sorted([int(at), int(ms)] for at, ms in points)
    return history


def _histogram(reply: list[Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for command, body in _pairs(reply).items():
        fields = _pairs(body)
        buckets = fields.get("histogram_usec") or []
        out[command] = {
            "calls": int(fields.get("calls", 0)),
            "buckets": {
                str(int(k)): int(v) for k, v in zip(buckets[::2], buckets[1::2], strict=False)
            },
        }
    return out


def _replication(info: dict[str, str]) -> dict[str, Any]:
    role = "replica" if info.get("role") == "slave" else str(info.get("role", "?"))
    view: dict[str, Any] = {"role": role, "offset": _int(info.get("master_repl_offset"))}
    if role == "replica":
        view |= {
            "master_host": info.get("master_host"),
            "master_port": _int(info.get("master_port")),
            "master_link_status": info.get("master_link_status"),
            "master_last_io_seconds_ago": _int(info.get("master_last_io_seconds_ago")),
            "offset": _int(info.get("slave_repl_offset") or info.get("master_repl_offset")),
        }
    replicas = []
    for name, value in info.items():
        if name.startswith("slave") and name[5:].isdigit():
            fields = dict(part.partition("=")[::2] for part in value.split(","))
            replicas.append(
                {
                    "ip": fields.get("ip", ""),
                    "port": _int(fields.get("port")),
                    "state": fields.get("state", ""),
                    "offset": _int(fields.get("offset")),
                    "lag": _int(fields.get("lag")),
                }
            )
    view["replicas"] = replicas
    return view


def _sentinel_view(call: Callable[..., Any]) -> list[dict[str, Any]]:
    masters = []
    for row in call("SENTINEL", "MASTERS"):
        fields = _pairs(row)
        name = fields.get("name", "?")
        try:
            verdict = _text(call("SENTINEL", "CKQUORUM", name))
        except _ErrorReply as exc:  # CKQUORUM answers a failed check with an error
            verdict = str(exc)
        masters.append(
            {
                "name": name,
                "address": f"{fields.get('ip', '?')}:{fields.get('port', '?')}",
                "fields": fields,
                "replicas": [_pairs(r) for r in call("SENTINEL", "REPLICAS", name)],
                "sentinels": [_pairs(r) for r in call("SENTINEL", "SENTINELS", name)],
                "ckquorum": verdict,
            }
        )
    return masters


def _shards(reply: list[Any]) -> list[dict[str, Any]]:
    shards = []
    for shard in reply:
        fields = _pairs(shard)
        fields["nodes"] = [_pairs(node) for node in fields.get("nodes", [])]
        shards.append(fields)
    return shards


def _pairs(reply: Any, *, nested: bool = False) -> dict[str, Any]:
    """A RESP2 flat [name, value, …] list (or a RESP3 map) as a dict; values become text,
    numbers stay numbers, and with `nested` inner flat lists become dicts too."""
    items = reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=False)
    out: dict[str, Any] = {}
    for name, value in items:
        out[_text(name)] = _value(value, nested)
    return out


def _value(value: Any, nested: bool) -> Any:
    if isinstance(value, bytes):
        return _text(value)
    if isinstance(value, list):
        if nested and len(value) % 2 == 0 and all(isinstance(v, bytes) for v in value[::2]):
            return _pairs(value, nested=True)
        return [_value(v, nested) for v in value]
    return value


def _capture_host_facts(
    host: Host, timeout: float, info: dict[str, str], config: dict[str, str], capture: HostCapture
) -> None:
    """THP, overcommit, swap, load, the log's tail and the kernel's OOM lines: one round trip."""
    from redisops.fleet.hostaccess import open_host_access

    clock = time.monotonic()
    logfile = "" if host.is_sentinel else config.get("logfile", "")
    try:
        with open_host_access(host, timeout=timeout) as access:
            sections = _read_sections(access, logfile, info.get("process_id", ""))
    except HostError as exc:
        for name in ("host_facts", "redis_log", "kernel_oom"):
            _note(capture, name, FAILED, clock, f"host access: {_line(exc)}")
        return
    capture.values["host_facts"] = _facts(sections)
    _note(capture, "host_facts", OK, clock, None)
    if host.is_sentinel:
        _skip(capture, "redis_log", "a Sentinel does not say where it logs")
    elif not config:
        _skip(capture, "redis_log", "the log file is not known (CONFIG GET failed)")
    elif not logfile:
        _skip(capture, "redis_log", "the server logs to stdout or syslog (logfile is empty)")
    else:
        status, text = sections.get("log", (1, ""))
        if status == 0:
            capture.values["redis_log"] = text
            _note(capture, "redis_log", OK, clock, None)
        else:
            _note(
                capture, "redis_log", FAILED, clock, f"cannot read {logfile}: {_first_line(text)}"
            )
    status, text = sections.get("oom", (1, ""))
    if status == 0:
        capture.values["kernel_oom"] = text
        _note(capture, "kernel_oom", OK, clock, None)
    else:
        _note(capture, "kernel_oom", FAILED, clock, f"dmesg: {_first_line(text)}")


# Each section: a "@@@ name" line, its output, a "@@@ status N" line. $1 is the log file
# (relative paths are the server's working directory's), $2 the server's pid.
_FACTS_SCRIPT = f"""
for f in /sys/kernel/mm/transparent_hugepage/enabled /proc/sys/vm/overcommit_memory \
/proc/sys/vm/swappiness /proc/meminfo /proc/loadavg; do
  echo "@@@ $f"; cat "$f" 2>&1; echo "@@@ status $?"
done
if [ -n "$1" ]; then
  echo "@@@ log"
  case "$1" in /*) ;; *) cd "/proc/$2/cwd" 2>/dev/null ;; esac
  out=$(tail -c {LOG_TAIL_BYTES} -- "$1" 2>&1); s=$?
  printf '%s\\n' "$out" | tail -n {LOG_TAIL_LINES}; echo "@@@ status $s"
fi
echo "@@@ oom"
out=$(dmesg 2>&1); s=$?
if [ $s -eq 0 ]; then printf '%s\\n' "$out" | grep -iE '{OOM_PATTERN}' | tail -n {OOM_LINES};
else printf '%s\\n' "$out" | head -n 1; fi
echo "@@@ status $s"
"""


def _read_sections(access: HostAccess, logfile: str, pid: str) -> dict[str, tuple[int, str]]:
    result = access.run(["sh", "-c", _FACTS_SCRIPT, "sh", logfile, pid], check=False)
    sections: dict[str, tuple[int, str]] = {}
    name, lines = None, []
    for line in result.stdout.decode("utf-8", "surrogateescape").split("\n"):
        if line.startswith("@@@ status ") and name is not None:
            sections[name] = (_int(line.removeprefix("@@@ status ")), "\n".join(lines))
            name, lines = None, []
        elif line.startswith("@@@ ") and name is None:
            name, lines = line.removeprefix("@@@ "), []
        elif name is not None:
            lines.append(line)
    return sections


_FACT_FILES = {
    "transparent_hugepage": "/sys/kernel/mm/transparent_hugepage/enabled",
    "overcommit_memory": "/proc/sys/vm/overcommit_memory",
    "swappiness": "/proc/sys/vm/swappiness",
    "meminfo": "/proc/meminfo",
    "load": "/proc/loadavg",
}


def _facts(sections: dict[str, tuple[int, str]]) -> dict[str, Any]:
    from redisops.tuning.facts import thp_mode

    facts: dict[str, Any] = {"missing": {}}
    for name, path in _FACT_FILES.items():
        status, text = sections.get(path, (1, "not read"))
        if status != 0:
            facts["missing"][name] = f"cannot read {path}: {_first_line(text)}"
        elif name == "transparent_hugepage":
            facts[name] = thp_mode(text)
        elif name == "load":
            facts[name] = [float(x) for x in text.split()[:3]]
        elif name == "meminfo":
            sizes = _meminfo(text)
            facts |= {
                "mem_total": sizes.get("MemTotal"),
                "swap_total": sizes.get("SwapTotal"),
                "swap_free": sizes.get("SwapFree"),
            }
        else:
            facts[name] = _int(text.strip())
    return facts


def _meminfo(text: str) -> dict[str, int]:
    sizes = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            sizes[name] = int(parts[0]) * 1024  # /proc/meminfo says kB and means KiB
    return sizes


def _row(result: HostResult[HostCapture], record: dict[str, Any]) -> HostResult[HostTaken]:
    items = record["items"]
    taken = HostTaken(
        server=record["server"],
        captured=sum(1 for i in items if i["status"] == OK),
        failed=tuple(i["name"] for i in items if i["status"] == FAILED),
        skipped=sum(1 for i in items if i["status"] == SKIPPED),
        bytes=sum(i["bytes"] for i in items),
        seconds=record["seconds"],
    )
    return HostResult(result.host, result.address, result.ok, record["error"], taken)


def _inventory_passwords(hosts: Sequence[Host]) -> set[str]:
    passwords = set()
    for host in hosts:
        try:
            password = resolve_password(host)
        except HostError:
            continue
        if password:
            passwords.add(password)
    return passwords


def _check_dest(dest: Path) -> None:
    import os

    if not dest.is_dir():
        raise UsageError(f"--dest {dest} is not a folder", hint=f"mkdir -p -m 700 {dest}")
    if not os.access(dest, os.W_OK | os.X_OK):
        raise UsageError(f"--dest {dest} is not writable")


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else "failed"


def _line(exc: HostError) -> str:
    text = exc.message if not exc.hint else f"{exc.message} (hint: {exc.hint})"
    return " ".join(text.split())
