"""A module command gets its key pattern from the key positions its module registered.

No module ships with the servers on this machine (Redis Stack's wheel needs libssl 1.1), so
the test builds the smallest real one: `demo.get key` registered with first/last/step 1,1,1,
as RedisJSON registers JSON.GET. It is compiled with the system C compiler and loaded by a
real redis-server at start (`--loadmodule`); the module API is reached through the pointer
the server passes in the context, so no Redis header is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
import redis

from tests.cli_helpers import redisops
from tests.servers import start_redis_server

MODULE_SOURCE = r"""
typedef struct RedisModuleCtx RedisModuleCtx;
typedef struct RedisModuleString RedisModuleString;
typedef int (*Command)(RedisModuleCtx *, RedisModuleString **, int);

static int (*GetApi)(const char *, void *);
static int (*SetModuleAttribs)(RedisModuleCtx *, const char *, int, int);
static int (*CreateCommand)(RedisModuleCtx *, const char *, Command, const char *, int, int, int);
static int (*ReplyWithSimpleString)(RedisModuleCtx *, const char *);

static int DemoGet(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv; (void)argc;
    return ReplyWithSimpleString(ctx, "OK");
}

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc) {
    (void)argv; (void)argc;
    GetApi = ((void **)ctx)[0];
    if (GetApi("RedisModule_SetModuleAttribs", &SetModuleAttribs) ||
        GetApi("RedisModule_CreateCommand", &CreateCommand) ||
        GetApi("RedisModule_ReplyWithSimpleString", &ReplyWithSimpleString))
        return 1;
    SetModuleAttribs(ctx, "demo", 1, 1);
    return CreateCommand(ctx, "demo.get", DemoGet, "readonly", 1, 1, 1);
}
"""


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the test module")
    folder = tmp_path_factory.mktemp("module-keys")
    (folder / "demo.c").write_text(MODULE_SOURCE)
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O1",
            "-o",
            str(folder / "demo.so"),
            str(folder / "demo.c"),
        ],
        check=True,
        timeout=60,
    )
    process, port = start_redis_server(folder, "--loadmodule", str(folder / "demo.so"))
    try:
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


def test_module_command_key_pattern_comes_from_the_module(module_server, tmp_path):
    client = redis.Redis(port=module_server, protocol=2, client_name="workload")
    assert client.execute_command("demo.get", "doc:1") == b"OK"
    client.config_set("slowlog-log-slower-than", 0)
    try:
        client.slowlog_reset()
        for number in range(4):
            client.execute_command("DEMO.GET", f"doc:{number}:body")
    finally:
        client.config_set("slowlog-log-slower-than", 10000)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        f"all:\n  hosts:\n    modular: {{host: 127.0.0.1, port: {module_server}, "
        "connection: local}\n"
    )
    run = redisops("-i", str(inventory), "-o", "json", "slowlog", "triage", "--top", "0")
    assert run.exit_code == 0, run.stderr
    counts = {f["fingerprint"]: f["count"] for f in run.json()["summary"]["fingerprints"]}
    assert counts["DEMO.GET doc:{id}:body"] == 4
