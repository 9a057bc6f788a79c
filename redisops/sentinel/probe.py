"""The write probe: what an application sees of a failover, one numbered write at a time.

It finds the master through redis-py's Sentinel support, as applications do, with one change
RELIABILITY.md calls for: redis-py's `discover_master` refuses a master the sentinels mark
ODOWN, so the probe asks SENTINEL GET-MASTER-ADDR-BY-NAME instead, which names the address
the sentinels hand out (the promoted replica's, once the failover reconfigures the others).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redisops.fleet.connection import client_options, host_client
from redisops.fleet.host import Host
from redisops.fleet.secrets import resolve_password
from redisops.fleet.writeprobe import KEY_TTL_MS, VALUE, NumberedWrites, describe
from redisops.sentinel.topology import address_of

if TYPE_CHECKING:
    import redis

CLIENT_NAME = "redisops-drill-probe"


class WriteProbe(NumberedWrites):
    """Writes `<prefix><n>` for n = 1, 2, … at `rate` per second to the master of `name`, as
    redisops.fleet.writeprobe.NumberedWrites says. Every connect and command is bounded by
    `timeout` seconds and never retried by redis-py.
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
        import redis

        super().__init__(prefix=prefix, rate=rate, timeout=timeout)
        self.expected = (redis.RedisError, OSError)
        self._sentinels = list(sentinels)
        self._master = master
        self._name = name
        self._client: Any = None

    def __enter__(self) -> WriteProbe:
        self._client = self._connect()
        return super().__enter__()

    def _connect(self) -> redis.Redis:
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

    def _write(self, key: str) -> tuple[bool, str]:
        reply = self._client.set(key, VALUE, nx=True, px=KEY_TTL_MS)
        return reply is not None, address_of(*self._client.connection_pool.master_address)

    def _where(self) -> str | None:
        where = self._client.connection_pool.master_address
        return address_of(*where) if where else None

    def _close(self) -> None:
        self._client.close()
        self._client.connection_pool.sentinel_manager.close()


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
                    errors.append(describe(exc))
                    continue
                if address:
                    return str(address[0]), int(address[1])
            why = f": {'; '.join(errors)}" if errors else ""
            raise MasterNotFoundError(f"no sentinel names a master for {service_name!r}{why}")

    manager = AddressBySentinel([])
    manager.sentinels = clients
    return manager
