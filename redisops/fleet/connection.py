"""redis-py clients built from inventory hosts, with failures turned into one-line HostErrors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from redisops.errors import HostError
from redisops.fleet.host import Host, TlsSettings
from redisops.fleet.secrets import resolve_password
from redisops.redaction import first_line

if TYPE_CHECKING:
    import redis


@contextmanager
def redis_client(
    host: Host, *, timeout: float, decode: bool = False, client_name: str = "redisops"
) -> Iterator[redis.Redis]:
    """A client for `host`, closed on exit; redis-py errors inside the block become HostError.

    Connect and every command are bounded by `timeout` seconds and never retried here: a dead
    or frozen host must cost one timeout, not four (redis-py 6+ retries three times by default).
    Callers that retry do it themselves, and only for idempotent commands.
    """
    import redis

    client = host_client(host, timeout=timeout, decode=decode, client_name=client_name)
    try:
        yield client
    except redis.RedisError as exc:
        raise HostError(describe_redis_error(exc, host, timeout)) from None
    finally:
        client.close()


def host_client(
    host: Host, *, timeout: float, decode: bool = False, client_name: str = "redisops"
) -> redis.Redis:
    """build_client for an inventory host, for a client that outlives one block (a pub/sub
    listener, a write probe); the caller closes it and handles redis-py's errors."""
    return build_client(
        host.host,
        host.port,
        password=resolve_password(host),
        username=host.username,
        db=0 if host.is_sentinel else host.db,
        tls=host.tls,
        timeout=timeout,
        decode=decode,
        client_name=client_name,
    )


def build_client(
    address: str,
    port: int,
    *,
    password: str | None,
    timeout: float,
    username: str | None = None,
    db: int = 0,
    tls: TlsSettings | None = None,
    decode: bool = False,
    client_name: str = "redisops",
) -> redis.Redis:
    """A redis-py client that never retries and bounds connect and each command by `timeout`.

    `client_name` is what CLIENT LIST and SLOWLOG show for this connection.
    """
    import redis

    options = client_options(
        password=password,
        timeout=timeout,
        username=username,
        db=db,
        tls=tls,
        decode=decode,
        client_name=client_name,
    )
    return redis.Redis(host=address, port=port, **options)


def client_options(
    *,
    password: str | None,
    timeout: float,
    username: str | None = None,
    db: int = 0,
    tls: TlsSettings | None = None,
    decode: bool = False,
    client_name: str = "redisops",
) -> dict:
    """build_client's keyword arguments without the address, for clients redis-py creates
    itself (a Sentinel-managed pool finds the address on its own)."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options: dict = {
        "db": db,
        "username": username,
        "password": password,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": decode,
        "client_name": client_name,
    }
    if tls is not None:
        options |= {
            "ssl": True,
            "ssl_ca_certs": tls.ca_file,
            "ssl_certfile": tls.cert_file,
            "ssl_keyfile": tls.key_file,
            "ssl_cert_reqs": "required" if tls.verify else "none",
            "ssl_check_hostname": tls.verify,
        }
    return options


def describe_redis_error(exc: Exception, host: Host, timeout: float) -> str:
    """One line saying what went wrong talking to `host`, without secrets or tracebacks."""
    import redis

    if needs_password(exc, host):
        return auth_required(host)
    if isinstance(exc, redis.AuthenticationError) or _is_auth_failure(exc):
        return f"authentication to {host.address} failed: {first_line(exc)}"
    if isinstance(exc, redis.TimeoutError):
        return f"{host.address} did not answer within {timeout:g}s"
    if isinstance(exc, redis.ConnectionError):
        return f"cannot connect to {host.address}: {_connection_reason(exc)}"
    if isinstance(exc, redis.exceptions.NoPermissionError) or "no permissions to run" in str(exc):
        user = host.username or "default"
        return f"{host.address}: the ACL denies it to user {user!r}: {first_line(exc)}"
    if isinstance(exc, redis.ResponseError):
        return f"{host.address} replied with an error: {first_line(exc)}"
    return f"{host.address}: {first_line(exc)}"


def needs_password(error: Exception | str, host: Host) -> bool:
    """Whether `error` is the server asking for a password `host` has none configured for.

    Redis says NOAUTH to a command (redis-py keeps the code in `status_code`), or, to
    redis-py's opening HELLO, "HELLO must be called with the client already authenticated"."""
    text = str(error)
    asked = getattr(error, "status_code", None) == "NOAUTH" or text.startswith(
        ("NOAUTH", "HELLO must be called with the client already authenticated")
    )
    return asked and not has_password_source(host)


def has_password_source(host: Host) -> bool:
    return bool(host.password_env or host.password_file) or host.password is not None


def auth_required(host: Host) -> str:
    """The message for a server that wants a password when the inventory gives none."""
    return f"authentication required: set password_env or password_file for {host.name}"


def _is_auth_failure(exc: Exception) -> bool:
    text = str(exc)
    return text.startswith(("NOAUTH", "WRONGPASS", "invalid password", "invalid username"))


def _connection_reason(exc: Exception) -> str:
    text = first_line(exc)
    # redis-py words it "Error 111 connecting to 127.0.0.1:7000. Connection refused."
    if "connecting to" in text and ". " in text:
        text = text.split(". ", 1)[1]
    return text.rstrip(".") or type(exc).__name__
