"""Inventory loading and validation: real files, real YAML, exact messages."""

from __future__ import annotations

import textwrap
import time

import pytest

from redisops.errors import ExitCode, InventoryError
from redisops.fleet.host import Secret
from redisops.fleet.inventory import (
    MAX_YAML_BYTES,
    describe_host,
    load_inventory,
    resolve_inventory_path,
)
from tests.cli_helpers import redisops_process


def write(tmp_path, text: str, name: str = "inventory.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path, text: str):
    return load_inventory(write(tmp_path, text))


def fails(tmp_path, text: str) -> str:
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == ExitCode.USAGE
    return caught.value.message


DESIGN_EXAMPLE = """\
all:
  vars:
    password_env: REDIS_PASSWORD
  children:
    cache:
      vars:
        redis_config: {maxmemory-policy: allkeys-lru}
      hosts:
        cache-1: {host: 10.0.1.10, port: 6379}
        cache-2: {host: 10.0.1.11, port: 6379, ssh_user: redis}
    sentinels:
      vars: {role: sentinel}
      hosts:
        sentinel-1: {host: 10.0.1.20, port: 26379}
"""


def test_design_example_loads_with_inheritance(tmp_path):
    inventory = load(tmp_path, DESIGN_EXAMPLE)
    names = [h.name for h in inventory.hosts]
    assert names == ["cache-1", "cache-2", "sentinel-1"]
    cache1, cache2, sentinel = inventory.hosts
    assert cache1.password_env == "REDIS_PASSWORD"
    assert cache1.redis_config == {"maxmemory-policy": "allkeys-lru"}
    assert sentinel.redis_config == {}
    assert sentinel.role == "sentinel" and sentinel.port == 26379
    assert cache1.groups == ("all", "cache")
    assert not cache1.has_host_access and cache2.has_host_access
    assert cache2.ssh_user == "redis" and cache2.ssh_port == 22
    assert inventory.groups["cache"] == ("cache-1", "cache-2")
    assert inventory.groups["all"] == ("cache-1", "cache-2", "sentinel-1")
    assert inventory.warnings == ()


def test_deeper_group_vars_win_and_host_keys_win_over_all(tmp_path):
    inventory = load(
        tmp_path,
        """\
        all:
          vars: {port: 1000, db: 1, tags: [top]}
          children:
            outer:
              vars: {port: 2000, db: 2}
              children:
                inner:
                  vars: {port: 3000}
                  hosts:
                    h1: {db: 9}
                    h2:
        """,
    )
    h1, h2 = inventory.hosts
    assert (h1.port, h1.db, h1.tags) == (3000, 9, ("top",))
    assert (h2.port, h2.db) == (3000, 2)
    assert h2.host == "h2"  # no host key: the inventory name is the address, as in Ansible
    assert inventory.groups["outer"] == ("h1", "h2")


def test_ansible_inventory_loads_with_aliases_and_ignored_ansible_vars(tmp_path):
    inventory = load(
        tmp_path,
        """\
        all:
          hosts:
            redis-a:
              ansible_host: 192.0.2.7
              ansible_user: deploy
              ansible_port: 2222
              ansible_connection: ssh
              ansible_ssh_private_key_file: ~/.ssh/deploy
              ansible_python_interpreter: /usr/bin/python3
              ansible_become: true
            redis-b:
              ansible_connection: local
              host: 127.0.0.1
              ansible_host: 192.0.2.99
        """,
    )
    a, b = inventory.hosts
    assert (a.host, a.ssh_user, a.ssh_port, a.connection) == ("192.0.2.7", "deploy", 2222, "ssh")
    assert a.ssh_key_file.endswith("/.ssh/deploy") and not a.ssh_key_file.startswith("~")
    assert a.has_host_access
    assert (b.host, b.connection) == ("127.0.0.1", "local")  # own key beats the alias


def test_yaml_merge_keys_and_anchors(tmp_path):
    inventory = load(
        tmp_path,
        """\
        all:
          hosts:
            a: &base {host: 127.0.0.1, port: 7001, db: 3}
            b:
              <<: *base
              port: 7002
        """,
    )
    assert [(h.port, h.db) for h in inventory.hosts] == [(7001, 3), (7002, 3)]


def test_literal_password_is_a_secret_and_warned_about(tmp_path):
    inventory = load(tmp_path, "all:\n  hosts:\n    a: {password: hunter2hunter2}\n")
    host = inventory.hosts[0]
    assert isinstance(host.password, Secret)
    assert host.password.reveal() == "hunter2hunter2"
    assert "hunter2" not in repr(host) and "hunter2" not in str(host.password)
    assert inventory.warnings == (
        "host a: literal `password` in the inventory; prefer password_env or password_file",
    )
    assert describe_host(host).auth == "password (literal)"


def test_tls_settings(tmp_path):
    inventory = load(
        tmp_path,
        """\
        all:
          hosts:
            a: {tls: true}
            b: {tls: {ca_file: /etc/ca.pem, verify: false}}
            c: {tls: false}
        """,
    )
    a, b, c = inventory.hosts
    assert a.tls.verify is True and a.tls.ca_file is None
    assert b.tls.ca_file == "/etc/ca.pem" and b.tls.verify is False
    assert c.tls is None
    assert "host b: tls verify is false, certificates are not checked" in inventory.warnings


def test_ssh_strict_false_is_warned_about(tmp_path):
    inventory = load(tmp_path, "all:\n  hosts:\n    a: {ssh_strict: false}\n")
    assert inventory.hosts[0].has_host_access
    assert inventory.warnings == ("host a: ssh_strict is false, SSH host keys are not checked",)


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError) as caught:
        load_inventory(tmp_path / "nope.yaml")
    assert caught.value.message == (
        f"inventory file {tmp_path / 'nope.yaml'} not found (use -i or REDISOPS_INVENTORY)"
    )
    assert caught.value.hint == "inventory.example.yaml shows the format"


def test_yaml_syntax_error_names_the_line(tmp_path):
    message = fails(tmp_path, "all:\n  hosts:\n    a: {port: 1\n    b: 2\n")
    assert message.startswith(f"{tmp_path / 'inventory.yaml'}:")
    assert "invalid YAML" in message


def test_unknown_key_names_line_path_and_suggestion(tmp_path):
    message = fails(tmp_path, DESIGN_EXAMPLE.replace("ssh_user: redis", "ssh_usr: redis"))
    path = tmp_path / "inventory.yaml"
    assert message == (
        f"{path}:10: all.children.cache.hosts.cache-2.ssh_usr: "
        "unknown key 'ssh_usr' (did you mean 'ssh_user'?)"
    )


def test_unknown_group_key(tmp_path):
    message = fails(tmp_path, "all:\n  host:\n    a:\n")
    assert message.endswith("all.host: unknown key 'host' (did you mean 'hosts'?)")


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("port: abc", "all.hosts.a.port: expected an integer, got 'abc'"),
        ("port: 70000", "all.hosts.a.port: 70000 is out of range 1..65535"),
        ("port: true", "all.hosts.a.port: expected an integer, got bool"),
        ("role: primary", "all.hosts.a.role: expected one of redis, sentinel, got 'primary'"),
        ("connection: telnet", "all.hosts.a.connection: expected one of ssh, local, got 'telnet'"),
        ("ssh_strict: 'no'", "all.hosts.a.ssh_strict: expected true or false, got 'no'"),
        ("password_env: 'A B'", "all.hosts.a.password_env: 'A B' is not a valid environment"),
        ("ssh_user: '$(id)'", "all.hosts.a.ssh_user: '$(id)' is not a valid user name"),
        ("tls: {verfy: true}", "all.hosts.a.tls: unknown tls key 'verfy' (did you mean 'verify'?)"),
        ("redis_config: [a]", "all.hosts.a.redis_config: expected a mapping"),
    ],
)
def test_wrong_values_name_the_line_and_key(tmp_path, snippet, expected):
    message = fails(tmp_path, f"all:\n  hosts:\n    a:\n      {snippet}\n")
    assert message.startswith(f"{tmp_path / 'inventory.yaml'}:4: {expected}")


@pytest.mark.parametrize("value", ["x; rm -rf ~", "$(touch /tmp/pwned)", "`id`", "a b", "-oProxy"])
def test_hostile_host_values_are_rejected(tmp_path, value):
    message = fails(tmp_path, f"all:\n  hosts:\n    a:\n      host: '{value}'\n")
    assert message.endswith(f"host a: {value!r} is not a valid host name")


def test_python_tags_are_never_constructed(tmp_path):
    marker = tmp_path / "constructed"
    message = fails(
        tmp_path,
        f"all:\n  hosts:\n    a:\n      host: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    assert "could not determine a constructor" in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the inventory is empty"),
        ("- a\n- b\n", "the inventory must be a mapping of groups"),
        ("all:\n  vars: {port: 1}\n", "the inventory defines no hosts"),
        ("all:\n  hosts: [a, b]\n", "all.hosts: expected a mapping"),
        ("all:\n  hosts:\n    'bad name': {}\n", "'bad name' is not a valid host name"),
    ],
)
def test_structural_errors(tmp_path, text, expected):
    assert expected in fails(tmp_path, text)


def test_group_cycle_through_nesting_is_rejected(tmp_path):
    message = fails(tmp_path, "all:\n  children:\n    all:\n      hosts: {a: }\n")
    assert "group 'all' contains itself" in message


def test_resolve_inventory_path(monkeypatch, tmp_path):
    assert str(resolve_inventory_path(None)) == "inventory.yaml"
    monkeypatch.setenv("REDISOPS_INVENTORY", str(tmp_path / "x.yaml"))
    assert resolve_inventory_path(None) == tmp_path / "x.yaml"
    assert str(resolve_inventory_path("given.yaml")) == "given.yaml"


def test_shipped_example_inventory_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "inventory.example.yaml"
    inventory = load_inventory(example)
    assert len(inventory.hosts) >= 4
    assert {h.role for h in inventory.hosts} == {"redis", "sentinel"}


def test_nearest_password_source_replaces_inherited_ones(tmp_path):
    inventory = load(
        tmp_path,
        """\
        all:
          vars: {password_file: /etc/redisops/secret}
          children:
            g:
              vars: {password_env: GROUP_PASSWORD}
              hosts:
                a:
                b: {password: literal-one}
            other:
              hosts:
                c:
        """,
    )
    a, b, c = inventory.hosts
    assert (a.password_env, a.password_file, a.password) == ("GROUP_PASSWORD", None, None)
    assert (b.password_env, b.password_file) == (None, None)
    assert b.password.reveal() == "literal-one"
    assert (c.password_env, c.password_file) == (None, "/etc/redisops/secret")


def test_two_password_sources_in_one_place_is_an_error(tmp_path):
    message = fails(tmp_path, "all:\n  hosts:\n    a: {password_env: X, password_file: /x}\n")
    assert message.endswith(
        "all.hosts.a.password_file: set only one of password_env, password_file"
    )


@pytest.mark.parametrize(("byte", "code"), [(b"\x00", "0000"), (b"\x07", "0007")])
def test_a_control_byte_is_one_line_naming_file_line_and_column(tmp_path, byte, code):
    """Issue 21 item 7: PyYAML's ReaderError used to escape as a ~200-line traceback."""
    path = tmp_path / "inventory.yaml"
    path.write_bytes(b"all:\n  hosts:\n    a: {port: 7000}\n    b: {host: ab" + byte + b"c}\n")
    run = redisops_process("-i", str(path), "inventory", "list")
    assert run.exit_code == 2
    assert run.stdout == ""
    assert run.stderr.splitlines() == [
        f"error: {path}:4: invalid YAML: control character U+{code} at column 17 "
        "(not allowed in YAML; remove it)"
    ]


def many_hosts(count: int, *, groups: int = 50) -> str:
    """An inventory of `count` hosts in `groups` groups, each with vars, as fleets write them."""
    lines = ["all:", "  vars:", "    password_env: REDIS_PASSWORD", "  children:"]
    per_group = count // groups
    for group in range(groups):
        lines += [
            f"    group{group}:",
            "      vars:",
            "        redis_config: {maxmemory-policy: allkeys-lru, maxmemory: 4gb}",
            "      hosts:",
        ]
        for index in range(per_group):
            lines.append(
                f"        cache-{group * per_group + index}: {{host: 10.{group}.{index // 250}."
                f"{index % 250 + 1}, port: 6379, ssh_user: redis, tags: [cache, eu]}}"
            )
    return "\n".join(lines) + "\n"


def test_five_thousand_hosts_load_in_well_under_a_second_with_lines_kept(tmp_path):
    """Issue 21 item 8: 2.0 s of CPU before (pure-Python YAML, a quadratic group walk).

    CPU time, not wall time: other tests share the machine; bench/inventory_load.py has the
    wall-clock figure."""
    text = many_hosts(5000)
    path = write(tmp_path, text)
    started = time.process_time()
    inventory = load_inventory(path)
    spent = time.process_time() - started
    assert len(inventory.hosts) == 5000
    assert len(inventory.groups["group49"]) == 100 and len(inventory.groups["all"]) == 5000
    assert inventory.hosts[-1].name == "cache-4999" and inventory.hosts[-1].groups == (
        "all",
        "group49",
    )
    assert spent < 0.8, f"5,000 hosts took {spent:.2f} s of CPU"

    broken = text.replace("cache-4998: {host: 10.49.0.99, port: 6379", "cache-4998: {port: 0")
    path.write_text(broken)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    line = broken.splitlines().index(
        next(row for row in broken.splitlines() if "cache-4998:" in row)
    )
    assert caught.value.message == (
        f"{path}:{line + 1}: all.children.group49.hosts.cache-4998.port: 0 is out of range 1..65535"
    )


def test_an_inventory_past_the_size_limit_is_refused_with_its_size(tmp_path):
    """Issue 21 item 8: 50 MB was still loading after 120 s at 3.4 GB of memory."""
    path = tmp_path / "inventory.yaml"
    path.write_text(many_hosts(5000) * 13)  # 5.1 MiB: valid YAML line by line, never parsed
    run = redisops_process("-i", str(path), "inventory", "list", timeout=30)
    assert run.exit_code == 2
    size = path.stat().st_size
    assert run.stderr.splitlines()[0] == (
        f"error: {path}: the inventory is {size / 1024 / 1024:.1f} MiB ({size:,} bytes), "
        "over the limit of 4 MiB"
    )
    assert MAX_YAML_BYTES == 4 * 1024 * 1024
    endless = redisops_process("-i", "/dev/zero", "inventory", "list", timeout=30)
    assert (endless.exit_code, endless.stderr.splitlines()[0]) == (
        2,
        "error: /dev/zero: the inventory is larger than the limit of 4 MiB",
    )


def test_bytes_that_are_not_utf8_name_file_line_and_column(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_bytes(b"all:\n  hosts:\n    a: {host: caf\xe9}\n")
    run = redisops_process("-i", str(path), "inventory", "list")
    assert (run.exit_code, run.stdout) == (2, "")
    assert run.stderr.splitlines() == [
        f"error: {path}:3: not UTF-8: byte 0xE9 at column 18 (save the file as UTF-8)"
    ]
