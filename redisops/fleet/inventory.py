"""Load an Ansible-shaped YAML inventory into validated `Host` records.

The file is composed into YAML nodes (not plain dicts) so every error can name the file, the
line and the key path at fault. Validation is strict: unknown keys are errors (with a "did you
mean"), except Ansible's own `ansible_*` variables, which an existing Ansible inventory carries
by the dozen and which redisops ignores unless it understands them.
"""

from __future__ import annotations

import difflib
import gc
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from redisops.errors import InventoryError, UsageError
from redisops.fleet.host import ClusterNode, Host, Secret, TlsSettings
from redisops.fleet.secrets import password_file_warnings

T = TypeVar("T")

DEFAULT_INVENTORY = "inventory.yaml"
# About ten times a 5,000-host inventory (430 KiB). Loading peaks at ~85 times the file's size
# in memory (36 MiB for 430 KiB), so 4 MiB costs ~350 MiB and a few seconds (docs/inventory.md).
MAX_YAML_BYTES = 4 * 1024 * 1024
INVENTORY_ENV = "REDISOPS_INVENTORY"

# Ansible's connection variables and the redisops key each one feeds.
ANSIBLE_ALIASES = {
    "ansible_host": "host",
    "ansible_user": "ssh_user",
    "ansible_port": "ssh_port",
    "ansible_connection": "connection",
    "ansible_ssh_private_key_file": "ssh_key_file",
}
ANSIBLE_CONNECTIONS = {"local": "local", "ssh": "ssh", "paramiko": "ssh", "smart": "ssh"}
SSH_KEYS = {"ssh_user", "ssh_port", "ssh_key_file", "ssh_known_hosts", "ssh_strict"}
GROUP_KEYS = {"hosts", "children", "vars"}
PASSWORD_KEYS = ("password_env", "password_file", "password")
TLS_KEYS = {"ca_file", "cert_file", "key_file", "verify"}

_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SSH_USER = re.compile(r"^[A-Za-z_][A-Za-z0-9._-]*$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")
# What YAML 1.1 does not allow in a stream (PyYAML's Reader.NON_PRINTABLE). Compiling the
# full class costs ~20 ms (its Unicode ranges), on every run of every command; an ASCII text,
# the usual inventory, needs only the ASCII part.
_UNPRINTABLE_ASCII = re.compile(r"[^\x09\x0a\x0d\x20-\x7e]")
_UNPRINTABLE = r"[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


@dataclass(frozen=True)
class Inventory:
    """Hosts in file order, the groups each belongs to, and warnings for the operator."""

    path: str
    hosts: tuple[Host, ...]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class HostEntry:
    """A host as `inventory list` shows it: how it is reached, never its secrets."""

    role: str
    groups: tuple[str, ...]
    connection: str
    auth: str
    host_access: bool
    tags: tuple[str, ...]
    cluster: ClusterNode | None = None  # shard, role, slots: for nodes found by discovery


@dataclass(frozen=True)
class _Setting:
    """One value as written, with where it was written (for error messages)."""

    value: Any
    line: int
    path: str


def resolve_inventory_path(path: str | Path | None) -> Path:
    """The inventory to read: the option, else $REDISOPS_INVENTORY, else ./inventory.yaml."""
    if path:
        return Path(path)
    return Path(os.environ.get(INVENTORY_ENV) or DEFAULT_INVENTORY)


def describe_host(host: Host) -> HostEntry:
    """The listing entry of `host`; `auth` names where the password comes from, not what it is."""
    if host.password_env:
        auth = f"password_env {host.password_env}"
    elif host.password_file:
        auth = f"password_file {host.password_file}"
    elif host.password is not None:
        auth = "password (literal)"
    else:
        auth = "none"
    if host.username:
        auth = f"user {host.username}, {auth}"
    if host.tls is not None:
        auth += ", tls" if host.tls.verify else ", tls (unverified)"
    groups = tuple(g for g in host.groups if g != "all")
    return HostEntry(
        host.role, groups, host.connection, auth, host.has_host_access, host.tags, host.node
    )


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate the inventory at `path`; raises InventoryError (exit 2) on any fault."""
    path = Path(path)
    try:
        text = read_yaml_text(path, InventoryError, what="inventory")
    except FileNotFoundError:
        shown = path if path.is_absolute() or str(path).startswith(".") else f"./{path}"
        raise InventoryError(
            f"inventory file {shown} not found (use -i or {INVENTORY_ENV})",
            hint="inventory.example.yaml shows the format",
        ) from None
    except OSError as exc:
        raise InventoryError(f"inventory {path} cannot be read: {_reason(exc)}") from None

    return compose_yaml(
        path,
        text,
        lambda loader, root: _Builder(str(path), loader).build(root),
        InventoryError,
        what="inventory",
    )


def compose_yaml(
    path: Path, text: str, build: Callable[[Any, Any], T], error: type[UsageError], *, what: str
) -> T:
    """Compose `text` into YAML nodes (which keep their lines) and return `build(loader, root)`.

    Faults in the YAML itself, or an empty file, raise `error` naming the file and line. Shared
    by every YAML file redisops reads (inventory, playbooks).
    """
    import yaml

    _check_printable(path, text, error)
    # libyaml's parser when PyYAML has it: the pure-Python one took 1.6 s of 2 s for 5,000
    # hosts (bench/inventory_load.py). Its nodes keep their lines just the same.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    # The tree is hundreds of thousands of young objects with no cycles to find: collecting
    # while it grows cost a third of the load time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        root = loader.get_single_node()
        if root is None:
            raise error(f"{path}: the {what} is empty")
        return build(loader, root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise error(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML: {_first_line(exc)}") from None
    finally:
        loader.dispose()
        if collecting:
            gc.enable()


def read_yaml_text(path: Path, error: type[UsageError], *, what: str) -> str:
    """The text of a YAML file redisops reads, refused past MAX_YAML_BYTES with its size named.

    Reads at most one byte past the limit, so a huge file or a device costs nothing. Bytes
    that are not UTF-8 raise `error` naming their line; OSError is left for the caller.
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_YAML_BYTES + 1)
        size = os.fstat(handle.fileno()).st_size
    if len(data) > MAX_YAML_BYTES:
        # A pipe or a device has no size of its own.
        shown = f"{size / 1024 / 1024:.1f} MiB ({size:,} bytes), over" if size else "larger than"
        raise error(
            f"{path}: the {what} is {shown} the limit of {MAX_YAML_BYTES // 1024 // 1024} MiB",
            hint="split it, or keep only the hosts this run needs",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise error(
            f"{path}:{line}: not UTF-8: byte 0x{data[exc.start]:02X} at column {column} "
            "(save the file as UTF-8)"
        ) from None


def _check_printable(path: Path, text: str, error: type[UsageError]) -> None:
    """Name the file, line and column of a character YAML forbids (NUL, BEL, other controls),
    rather than PyYAML's character offset into "<unicode string>"."""
    found = (_UNPRINTABLE_ASCII if text.isascii() else re.compile(_UNPRINTABLE)).search(text)
    if found is None:
        return
    line = text.count("\n", 0, found.start()) + 1
    column = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
    raise error(
        f"{path}:{line}: invalid YAML: control character U+{ord(found.group()):04X} "
        f"at column {column} (not allowed in YAML; remove it)"
    )


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class _Builder:
    """Walks the composed YAML tree, collecting group vars and host vars with their lines."""

    def __init__(self, path: str, loader: Any) -> None:
        self.path = path
        self.loader = loader
        self.host_order: list[str] = []
        self.host_vars: dict[str, dict[str, _Setting]] = {}
        self.host_groups: dict[str, dict[str, int]] = {}
        self.group_vars: dict[str, dict[str, _Setting]] = {}
        # Members as dict keys: ordered, and a membership test that stays O(1) at 5,000 hosts.
        self.group_hosts: dict[str, dict[str, None]] = {}
        self.warnings: list[str] = []

    def build(self, root: Any) -> Inventory:
        import yaml

        if not isinstance(root, yaml.MappingNode):
            self._fail(root, "", "the inventory must be a mapping of groups (e.g. `all:`)")
        for key_node, value_node in self._pairs(root):
            name = self._key(key_node, "")
            self._group(name, value_node, path=name, depth=0, ancestors=())
        if not self.host_order:
            raise InventoryError(f"{self.path}: the inventory defines no hosts")
        hosts = tuple(self._host(name) for name in self.host_order)
        self.warnings.extend(password_file_warnings(hosts))
        groups = {name: tuple(members) for name, members in self.group_hosts.items()}
        return Inventory(self.path, hosts, groups, tuple(self.warnings))

    # --- tree walking -------------------------------------------------------------------

    def _group(self, name: str, node: Any, *, path: str, depth: int, ancestors: tuple) -> None:
        import yaml

        if name in ancestors:
            self._fail(node, path, f"group {name!r} contains itself")
        self._check_name(name, node, path, "group")
        self.group_hosts.setdefault(name, {})
        self.group_vars.setdefault(name, {})
        if node is None or _is_null(node):
            return
        if not isinstance(node, yaml.MappingNode):
            self._fail(node, path, "a group must be a mapping with hosts, children or vars")
        lineage = (*ancestors, name)
        for key_node, value_node in self._pairs(node):
            key = self._key(key_node, path)
            key_path = f"{path}.{key}"
            if key not in GROUP_KEYS:
                self._unknown(key_node, key_path, key, GROUP_KEYS)
            if _is_null(value_node):
                continue
            if key == "vars":
                self.group_vars[name].update(self._settings(value_node, key_path))
            elif key == "hosts":
                self._mapping_or_fail(value_node, key_path)
                for host_key, host_node in self._pairs(value_node):
                    host = self._key(host_key, key_path)
                    self._add_host(host, host_node, f"{key_path}.{host}", lineage, depth)
            else:
                self._mapping_or_fail(value_node, key_path)
                for child_key, child_node in self._pairs(value_node):
                    child = self._key(child_key, key_path)
                    self._group(
                        child,
                        child_node,
                        path=f"{key_path}.{child}",
                        depth=depth + 1,
                        ancestors=lineage,
                    )

    def _add_host(self, name: str, node: Any, path: str, lineage: tuple, depth: int) -> None:
        self._check_name(name, node, path, "host")
        if name not in self.host_vars:
            self.host_order.append(name)
            self.host_vars[name] = {}
            self.host_groups[name] = {}
        for group_depth, group in enumerate(lineage):
            previous = self.host_groups[name].get(group, -1)
            self.host_groups[name][group] = max(previous, group_depth)
            self.group_hosts[group].setdefault(name)
        if not _is_null(node):
            self.host_vars[name].update(self._settings(node, path))

    def _settings(self, node: Any, path: str) -> dict[str, _Setting]:
        """Key/value pairs of a vars or host mapping, each key checked against the known ones."""
        self._mapping_or_fail(node, path)
        settings: dict[str, _Setting] = {}
        for key_node, value_node in self._pairs(node):
            key = self._key(key_node, path)
            key_path = f"{path}.{key}"
            if key.startswith("ansible_") and key not in ANSIBLE_ALIASES:
                continue
            if key not in _VALIDATORS and key not in ANSIBLE_ALIASES:
                self._unknown(key_node, key_path, key, set(_VALIDATORS))
            value = self.loader.construct_object(value_node, deep=True)
            settings[key] = _Setting(value, value_node.start_mark.line + 1, key_path)
        return settings

    # --- one host -----------------------------------------------------------------------

    def _host(self, name: str) -> Host:
        merged: dict[str, _Setting] = {}
        groups = self.host_groups[name]
        ordered = sorted(groups, key=lambda g: (groups[g], g))
        layers = [(g, self.group_vars[g]) for g in ordered]
        cluster_from: str | None = None  # the layer that set `cluster` last
        for layer_name, layer in [*layers, (None, self.host_vars[name])]:
            settings = _canonical(layer)
            if "cluster" in settings:
                cluster_from = layer_name
            sources = [key for key in PASSWORD_KEYS if key in settings]
            if len(sources) > 1:
                setting = settings[sources[1]]
                raise InventoryError(
                    f"{self.path}:{setting.line}: {setting.path}: "
                    f"set only one of {', '.join(sources)}"
                )
            if sources:  # the nearest password source replaces any inherited one
                for key in PASSWORD_KEYS:
                    merged.pop(key, None)
            merged.update(settings)

        values: dict[str, Any] = {}
        for key, setting in merged.items():
            try:
                values[key] = _VALIDATORS[key](setting.value)
            except ValueError as exc:
                raise InventoryError(
                    f"{self.path}:{setting.line}: {setting.path}: {exc}",
                ) from None
        values.setdefault("host", name)
        if not _HOSTNAME.match(values["host"]):
            setting = merged.get("host")
            line = f":{setting.line}" if setting else ""
            raise InventoryError(
                f"{self.path}{line}: host {name}: {values['host']!r} is not a valid host name"
            )
        if "password" in values:
            self.warnings.append(
                f"host {name}: literal `password` in the inventory; "
                "prefer password_env or password_file"
            )
        if values.get("ssh_strict") is False:
            self.warnings.append(f"host {name}: ssh_strict is false, SSH host keys are not checked")
        if isinstance(values.get("tls"), TlsSettings) and not values["tls"].verify:
            self.warnings.append(f"host {name}: tls verify is false, certificates are not checked")
        values["ssh_configured"] = any(key in SSH_KEYS for key in values)
        if values.get("cluster"):
            values["cluster_name"] = _cluster_name(name, cluster_from, ordered)
        return Host(name=name, groups=tuple(groups), **values)

    # --- helpers ------------------------------------------------------------------------

    def _pairs(self, node: Any) -> list[tuple[Any, Any]]:
        self.loader.flatten_mapping(node)  # applies YAML merge keys (<<)
        return node.value

    def _key(self, node: Any, path: str) -> str:
        import yaml

        if not isinstance(node, yaml.ScalarNode):
            self._fail(node, path, "keys must be plain names")
        return str(self.loader.construct_object(node))

    def _mapping_or_fail(self, node: Any, path: str) -> None:
        import yaml

        if not isinstance(node, yaml.MappingNode):
            self._fail(node, path, "expected a mapping")

    def _check_name(self, name: str, node: Any, path: str, what: str) -> None:
        if not _NAME.match(name):
            self._fail(node, path, f"{name!r} is not a valid {what} name")

    def _unknown(self, node: Any, path: str, key: str, known: set[str]) -> None:
        self._fail(node, path, f"unknown key {key!r}{did_you_mean(key, known)}")

    def _fail(self, node: Any, path: str, message: str) -> None:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        where = f" {path}:" if path else ""
        raise InventoryError(f"{self.path}{line}:{where} {message}")


def _cluster_name(host: str, set_in: str | None, groups: list[str]) -> str:
    """The cluster a seed belongs to: the group whose vars say `cluster: true`; for a host
    that says it itself, its deepest group but `all`; for a host in no group, its own name."""
    if set_in is not None and set_in != "all":
        return set_in
    own = [group for group in groups if group != "all"]
    return own[-1] if own else host


def did_you_mean(word: str, known: Iterable[str], *, most: int = 1) -> str:
    """` (did you mean 'x'?)` naming up to `most` of `known` close to `word`, else ""."""
    close = sorted(difflib.get_close_matches(word, sorted(set(known)), n=most))
    if not close:
        return ""
    quoted = [repr(name) for name in close]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
    return f" (did you mean {listed}?)"


def _is_null(node: Any) -> bool:
    return node is None or node.tag == "tag:yaml.org,2002:null"


def _canonical(settings: dict[str, _Setting]) -> dict[str, _Setting]:
    """Ansible aliases renamed to redisops keys; a redisops key written beside its alias wins."""
    out = {key: s for key, s in settings.items() if key not in ANSIBLE_ALIASES}
    for alias, key in ANSIBLE_ALIASES.items():
        if alias in settings and key not in out:
            setting = settings[alias]
            if alias == "ansible_connection":
                setting = _Setting(_ansible_connection(setting.value), setting.line, setting.path)
            out[key] = setting
    return out


def _ansible_connection(value: Any) -> Any:
    return ANSIBLE_CONNECTIONS.get(value, value) if isinstance(value, str) else value


# --- value validators: each returns the clean value or raises ValueError(reason) -----------


def _string(pattern: re.Pattern[str] | None = None, what: str = "") -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a non-empty string, got {_shown(value)}")
        if pattern and not pattern.match(value):
            raise ValueError(f"{value!r} is not a valid {what}")
        return value

    return check


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {_shown(value)}")
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range {low}..{high}")
        return value

    return check


def _choice(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {_shown(value)}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_shown(value)}")
    return value


def _path(value: Any) -> str:
    text = _string()(value)
    if "\0" in text:
        raise ValueError("a path cannot contain NUL")
    return os.path.expanduser(text)


def _secret(value: Any) -> Secret:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or value == "":
        raise ValueError("expected a non-empty string")
    return Secret(str(value))


def _tls(value: Any) -> TlsSettings | None:
    if isinstance(value, bool):
        return TlsSettings() if value else None
    if not isinstance(value, dict):
        raise ValueError(f"expected true, false or a mapping, got {_shown(value)}")
    unknown = set(value) - TLS_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ValueError(f"unknown tls key {key!r}{did_you_mean(key, TLS_KEYS)}")
    return TlsSettings(
        ca_file=_path(value["ca_file"]) if "ca_file" in value else None,
        cert_file=_path(value["cert_file"]) if "cert_file" in value else None,
        key_file=_path(value["key_file"]) if "key_file" in value else None,
        verify=_boolean(value.get("verify", True)),
    )


def _redis_config(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of setting: value, got {_shown(value)}")
    config = {}
    for key, item in value.items():
        if not isinstance(key, str) or isinstance(item, (dict, list)) or item is None:
            raise ValueError(f"redis_config.{key}: expected a plain value")
        config[key.lower()] = ("yes" if item else "no") if isinstance(item, bool) else str(item)
    return config


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValueError(f"expected a list of strings, got {_shown(value)}")
    return tuple(value)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return type(value).__name__ if value is not None else "nothing"


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "host": _string(),
    "port": _integer(1, 65535),
    "role": _choice("redis", "sentinel"),
    "username": _string(),
    "password_env": _string(_ENV_NAME, "environment variable name"),
    "password_file": _path,
    "password_file_strict": _boolean,
    "password": _secret,
    "db": _integer(0, 1_000_000),
    "tls": _tls,
    "connection": _choice("ssh", "local"),
    "ssh_user": _string(_SSH_USER, "user name"),
    "ssh_port": _integer(1, 65535),
    "ssh_key_file": _path,
    "ssh_known_hosts": _path,
    "ssh_strict": _boolean,
    "cluster": _boolean,
    "data_dir": _path,
    "backup_dir": _path,
    "service_start": _string(),
    "service_stop": _string(),
    "redis_config": _redis_config,
    "tags": _tags,
}
