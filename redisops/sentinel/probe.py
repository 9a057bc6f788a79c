"""The write probe: what an application sees of a failover, one numbered write at a time.

It finds the master through redis-py's Sentinel support, as applications do, with one change
RELIABILITY.md calls for: redis-py's `discover_master` refuses a master the sentinels mark
ODOWN, so the probe asks SENTINEL GET-MASTER-ADDR-BY-NAME instead, which names the address
the sentinels hand out (the promoted replica's, once the failover reconfigures the others).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redisops.fleet.connection import client_options, host_client
from redisops.fleet.host import Host
from redisops.fleet.secrets import resolve_password
from redisops.redaction import first_line
from redisops.sentinel.topology import address_of

if TYPE_CHECKING:
    import redis

CLIENT_NAME = "redisops-drill-probe"
VALUE = b"1"
# Probe keys expire by themselves should a drill be cut short before it removes them.
KEY_TTL_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Ack:
    """Write `number` acknowledged at `at` (time.monotonic()) by the master at `address`.

    `duplicate`: the reply said the key was already set, so an earlier attempt that failed
    for the probe had in fact been applied (a non-idempotent write would now be applied twice).
    """

    number: int
    at: float
    address: str
    duplicate: bool


@dataclass(frozen=True)
class Failure:
    """An attempt at write `number` that failed at `at`, talking to `address` if one was known."""

    number: int
    at: float
    address: str | None
    error: str


class WriteProbe:
    """Writes `<prefix><n>` for n = 1, 2, … at `rate` per second to the master of `name`.

    Each write is SET NX PX of a fixed value: idempotent, so a write that failed is retried
    (same n) at the next tick until it is acknowledged; writes are never reordered, so the
    acknowledged writes are exactly 1 … len(acks). Every connect and command is bounded by
    `timeout` seconds and never retried by redis-py. A context manager: writing between
    entry and exit, in its own thread; read `acks` and `failures` after exit.
    """

    def __init__(
        self,
        sentinels: Sequence[Host],
        master: Host,
        *,
        name: str,
        prefix: str,
        rate: float,
        timeout: float,
    ) -> None:
        self.prefix = prefix
        self.acks: list[Ack] = []
        self.failures: list[Failure] = []
        self._sentinels = list(sentinels)
        self._master = master
        self._name = name
        self._interval = 1.0 / rate
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.next_number = 1

    def key(self, number: int) -> str:
        return f"{self.prefix}{number}"

    def __enter__(self) -> WriteProbe:
        client = self._client()
        self._thread = threading.Thread(
            target=self._run, args=(client,), name="redisops-write-probe"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop writing; returns once the write in flight has finished or timed out."""
        self._stop.set()
        if self._thread is not None:
            # A write in flight takes at most a connect and a command: two timeouts.
            self._thread.join(timeout=2 * self._timeout + 1)

    def _client(self) -> redis.Redis:
        manager = _sentinel_manager(
            [
                host_client(host, timeout=self._timeout, decode=True, client_name=CLIENT_NAME)
                for host in self._sentinels
            ]
        )
        master = self._master
        options = client_options(
            password=resolve_password(master),
            timeout=self._timeout,
            username=master.username,
            db=master.db,
            tls=master.tls,
            client_name=CLIENT_NAME,
        )
        return manager.master_for(self._name, **options)

    def _run(self, client: redis.Redis) -> None:
        import redis

        pool: Any = client.connection_pool
        tick = time.monotonic()
        retrying = False
        try:
            while not self._stop.is_set():
                number = self.next_number
                started = time.monotonic()
                try:
                    reply = client.set(self.key(number), VALUE, nx=True, px=KEY_TTL_MS)
                except (redis.RedisError, OSError) as exc:
                    where = pool.master_address
                    address = address_of(*where) if where else None
                    self.failures.append(Failure(number, started, address, _describe(exc)))
                    retrying = True
                else:
                    where = pool.master_address
                    duplicate = retrying and reply is None
                    self.acks.append(Ack(number, time.monotonic(), address_of(*where), duplicate))
                    self.next_number += 1
                    retrying = False
                # Keep the pace without bursts: a slow write delays the next tick, never doubles it.
                tick = max(tick + self._interval, time.monotonic())
                self._stop.wait(tick - time.monotonic())
        finally:
            client.close()
            pool.sentinel_manager.close()


def _describe(exc: BaseException) -> str:
    text = first_line(exc, "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sentinel_manager(clients: list[redis.Redis]) -> Any:
    """redis-py's Sentinel over our own clients, asking GET-MASTER-ADDR-BY-NAME (see above).

    The subclass is made here so that redis-py is imported only when a drill runs.
    """
    import redis
    from redis.sentinel import MasterNotFoundError, Sentinel

    class AddressBySentinel(Sentinel):
        def discover_master(self, service_name: str) -> tuple[str, int]:
            errors = []
            for sentinel in self.sentinels:
                try:
                    address = sentinel.sentinel_get_master_addr_by_name(service_name)
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    errors.append(_describe(exc))
                    continue
                if address:
                    return str(address[0]), int(address[1])
            why = f": {'; '.join(errors)}" if errors else ""
            raise MasterNotFoundError(f"no sentinel names a master for {service_name!r}{why}")

    manager = AddressBySentinel([])
    manager.sentinels = clients
    return manager
