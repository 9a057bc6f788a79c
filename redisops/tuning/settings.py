"""What redisops knows about Redis settings: aliases, secrets, per-instance and dangerous ones,
and how to compare two values of one setting the way Redis reads them.

Facts from Redis 7.0's config.c: CONFIG GET * lists both the old `slave-*`/`*-ziplist-*` names
and the new ones; `requirepass`, `masterauth` and `masteruser` are its SENSITIVE configs (Valkey 8+
names the last two `primaryauth` and `primaryuser`: aliases, see fleet/server.py); `dir`
and `dbfilename` its PROTECTED configs; enum values and yes/no are read case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from redisops.fleet.server import canonical_config_name
from redisops.tuning.units import parse_size

SET = "(set)"
UNSET = "(unset)"

# Never shown, compared or applied by value: only whether they are set.
SECRET_SETTINGS = frozenset(
    {"requirepass", "masterauth", "masteruser", "tls-key-file-pass", "tls-client-key-file-pass"}
)

# Different on every instance by design; `config diff` does not compare them across hosts.
INSTANCE_SETTINGS = frozenset(
    {
        "port", "tls-port", "bind", "bind-source-addr", "unixsocket", "dir", "pidfile",
        "logfile", "replicaof", "replica-announce-ip", "replica-announce-port",
        "cluster-announce-ip", "cluster-announce-port", "cluster-announce-tls-port",
        "cluster-announce-bus-port", "cluster-announce-hostname", "cluster-port",
        "cluster-config-file",
    }
)  # fmt: skip

# Settings that can turn Redis against its host or cut it off; `config apply` needs --force.
_FILE_PATH = "a file path on the host"
_TLS_FILE = "makes Redis read a file of the host as a key or certificate"
_LISTENER = "changes where Redis listens: can expose it or cut clients off"
_UNLOCKS = "unlocks commands that load code or write files"
_DEBUG_KNOB = "a test knob that stalls the server"
DANGEROUS_SETTINGS: Mapping[str, str] = {
    "dir": "protected config: where Redis writes files (the classic CONFIG SET abuse path)",
    "dbfilename": "protected config: the name of the file Redis writes",
    "appendfilename": _FILE_PATH,
    "appenddirname": _FILE_PATH,
    "logfile": _FILE_PATH,
    "pidfile": _FILE_PATH,
    "aclfile": _FILE_PATH,
    "unixsocket": _FILE_PATH,
    "cluster-config-file": _FILE_PATH,
    "tls-cert-file": _TLS_FILE,
    "tls-key-file": _TLS_FILE,
    "tls-client-cert-file": _TLS_FILE,
    "tls-client-key-file": _TLS_FILE,
    "tls-ca-cert-file": _TLS_FILE,
    "tls-ca-cert-dir": _TLS_FILE,
    "tls-dh-params-file": _TLS_FILE,
    "bind": _LISTENER,
    "bind-source-addr": _LISTENER,
    "port": _LISTENER,
    "tls-port": _LISTENER,
    "enable-protected-configs": _UNLOCKS,
    "enable-debug-command": _UNLOCKS,
    "enable-module-command": _UNLOCKS,
    "oom-score-adj": "changes which process the host's OOM killer picks first",
    "oom-score-adj-values": "changes which process the host's OOM killer picks first",
    "replicaof": "makes this server a replica: it drops its data for its master's",
    "rdb-key-save-delay": _DEBUG_KNOB,
    "key-load-delay": _DEBUG_KNOB,
    "watchdog-period": _DEBUG_KNOB,
}
# Values that are dangerous for an otherwise ordinary setting.
_DANGEROUS_VALUES: Mapping[tuple[str, str], str] = {
    ("protected-mode", "no"): "lets remote clients in even when there is no password",
}

# Enum settings of Redis 7.0: their values are read case-insensitively.
ENUM_SETTINGS = frozenset(
    {
        "supervised", "syslog-facility", "repl-diskless-load", "loglevel", "maxmemory-policy",
        "appendfsync", "oom-score-adj", "acl-pubsub-default", "sanitize-dump-payload",
        "enable-protected-configs", "enable-debug-command", "enable-module-command",
        "cluster-preferred-endpoint-type", "tls-auth-clients", "propagation-error-behavior",
        "shutdown-on-sigint", "shutdown-on-sigterm",
    }
)  # fmt: skip

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DECIMAL = re.compile(r"^-?\d+\.\d+$")
# notify-keyspace-events: "A" stands for these classes (Redis 7.0, NOTIFY_ALL).
_ALL_EVENTS = "g$lshzxetd"
_BUFFER_CLASSES = {"replica": "slave", "slave": "slave", "normal": "normal", "pubsub": "pubsub"}


def canonical(setting: str) -> str:
    """The Redis 7 name of a setting, lower case (`primaryauth` -> `masterauth`)."""
    return canonical_config_name(setting)


def is_setting_name(setting: str) -> bool:
    """True for a plain setting name (no glob characters that CONFIG GET would expand)."""
    return bool(_NAME.match(setting))


def danger(setting: str, value: str) -> str | None:
    """Why setting `setting` to `value` is dangerous, or None for an ordinary change."""
    name = canonical(setting)
    return DANGEROUS_SETTINGS.get(name) or _DANGEROUS_VALUES.get((name, value.strip().lower()))


def masked(setting: str, value: str | None) -> str | None:
    """`value` as it may be shown: secrets only as (set)/(unset)."""
    if value is None or canonical(setting) not in SECRET_SETTINGS:
        return value
    return SET if value and value != UNSET else UNSET


def normalised(setting: str, value: str) -> str:
    """`value` in one canonical spelling, so values Redis reads alike compare equal.

    Sizes become bytes (1gb -> 1073741824, 1g -> 1000000000), yes/no and enum values lower
    case, decimals lose trailing zeros; client-output-buffer-limit and notify-keyspace-events
    are compared by their parts.
    """
    name = canonical(setting)
    if name == "client-output-buffer-limit":
        limits = _buffer_limits(value)
        return " ".join(f"{cls} {' '.join(limits[cls])}" for cls in sorted(limits))
    if name == "notify-keyspace-events":
        return "".join(sorted(set(value.strip().replace("A", _ALL_EVENTS))))
    return " ".join(_token(name, token) for token in value.split())


def same_value(setting: str, desired: str, current: str) -> bool:
    """True when Redis holds `desired` already.

    A desired client-output-buffer-limit may name some classes only (as CONFIG SET allows);
    the classes it leaves out are not compared.
    """
    if canonical(setting) == "client-output-buffer-limit":
        want, have = _buffer_limits(desired), _buffer_limits(current)
        return bool(want) and all(have.get(cls) == limits for cls, limits in want.items())
    return normalised(setting, desired) == normalised(setting, current)


def buffer_limit(value: str, client_class: str) -> tuple[int, int, int] | None:
    """(hard bytes, soft bytes, soft seconds) of one class of client-output-buffer-limit."""
    limits = _buffer_limits(value).get(_BUFFER_CLASSES.get(client_class, client_class))
    return None if limits is None else (int(limits[0]), int(limits[1]), int(limits[2]))


def _buffer_limits(value: str) -> dict[str, tuple[str, ...]]:
    tokens = value.split()
    limits: dict[str, tuple[str, ...]] = {}
    for start in range(0, len(tokens) - len(tokens) % 4, 4):
        cls, *numbers = tokens[start : start + 4]
        limits[_BUFFER_CLASSES.get(cls.lower(), cls.lower())] = tuple(
            _token("", number) for number in numbers
        )
    return limits


def _token(setting: str, token: str) -> str:
    size = parse_size(token)
    if size is not None:
        return str(size)
    if _DECIMAL.match(token):
        return str(float(token)).removesuffix(".0")
    if token.lower() in ("yes", "no") or setting in ENUM_SETTINGS:
        return token.lower()
    return token
