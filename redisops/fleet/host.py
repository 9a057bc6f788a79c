"""What redisops knows about one host of the inventory, after validation."""

from __future__ import annotations

from dataclasses import dataclass, field


class Secret:
    """A secret value that cannot leak by accident through repr, str, f-strings or JSON."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __deepcopy__(self, memo: dict) -> Secret:
        return self


@dataclass(frozen=True)
class TlsSettings:
    """TLS to the Redis port; certificates and hostnames are verified unless verify is false."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


@dataclass(frozen=True)
class ClusterNode:
    """Where a discovered node sits in its Redis Cluster (see redisops.fleet.cluster).

    `shard` is redisops' name for the shard, `shard-1`, `shard-2`… numbered by first slot
    (shards without slots after, by master id): stable while slots stay put, unlike node ids
    across a re-created cluster; `none` for a failed master whose slots a failover gave to
    its replica (it is in no shard until it comes back as a replica). `slots` are the
    shard's ranges, inclusive. `health` is the seed's view: online, loading, fail (FAIL
    flag) or pfail (PFAIL, one node's suspicion).
    """

    cluster: str
    node_id: str
    shard: str
    shard_id: str  # CLUSTER SHARDS `id` (7.2+), else the shard master's node id
    role: str  # master | replica
    master_id: str | None  # a replica's master; None for a master
    slots: tuple[tuple[int, int], ...] = ()
    health: str = "online"
    seed: str = ""  # the inventory entry whose view this came from

    @property
    def slot_count(self) -> int:
        return sum(last - first + 1 for first, last in self.slots)


@dataclass(frozen=True)
class Host:
    """One Redis or Sentinel instance and how to reach its machine.

    Passwords are held only as references (`password_env`, `password_file`) or as a `Secret`;
    resolve them with `redisops.fleet.secrets.resolve_password`.
    """

    name: str
    host: str
    port: int = 6379
    role: str = "redis"
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    password_file_strict: bool = False
    password: Secret | None = field(default=None, repr=False)
    db: int = 0
    tls: TlsSettings | None = None
    connection: str = "ssh"
    ssh_user: str | None = None
    ssh_port: int = 22
    ssh_key_file: str | None = None
    ssh_known_hosts: str | None = None
    ssh_strict: bool = True
    cluster: bool = False  # says `cluster: true` (a seed), or was discovered from a seed
    cluster_name: str | None = None  # which cluster it seeds (redisops.fleet.cluster)
    node: ClusterNode | None = None  # set by discovery, for every node of a cluster
    discovery_error: str | None = None  # set by discovery: why this host is an error row
    ssh_configured: bool = False
    data_dir: str | None = None
    backup_dir: str | None = None
    service_start: str | None = None
    service_stop: str | None = None
    redis_config: dict[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def is_sentinel(self) -> bool:
        return self.role == "sentinel"

    @property
    def has_host_access(self) -> bool:
        """True when redisops may run commands and copy files on this host's machine.

        Local hosts always have it; SSH hosts only when the inventory says how to log in
        (any `ssh_*` key or Ansible alias), so Redis-only inventories never try SSH.
        """
        return self.connection == "local" or self.ssh_configured
