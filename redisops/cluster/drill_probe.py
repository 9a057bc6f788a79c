"""What a cluster drill watches: writes routed by slot as a cluster client routes them, and
every other node's CLUSTER NODES (when the old master is suspected, failed, replaced).

The probe routes on its own (a slot map from CLUSTER NODES, MOVED followed, the map asked
again of the other nodes after a connection error) rather than through redis-py's
RedisCluster, whose retries and topology refreshes would hide the figures it measures.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redisops.errors import HostError
from redisops.fleet.cluster import parse_nodes
from redisops.fleet.host import Host
from redisops.fleet.writeprobe import KEY_TTL_MS, VALUE, NumberedWrites

if TYPE_CHECKING:
    from redisops.fleet.resp import RespConnection

REDIRECTS = 3  # MOVED followed per write before it counts as failed
KEY_BATCH = 1000
WATCH_SECONDS = 0.1


def tag_in(slots: Sequence[tuple[int, int]]) -> str:
    """A short hash tag whose slot is among `slots` (keys `…{tag}…` all hash to it)."""
    from redis.crc import key_slot

    for number in range(1 << 20):
        tag = str(number)
        slot = key_slot(tag.encode())
        if any(first <= slot <= last for first, last in slots):
            return tag
    raise HostError(f"no hash tag found for slots {slots[:3]}")


def slot_of(tag: str) -> int:
    from redis.crc import key_slot

    return key_slot(tag.encode())


class Router:
    """Connections to a cluster's nodes by address, and the owner of one slot as they say.

    Not thread-safe: each probe stream and the watcher has its own."""

    def __init__(self, nodes: Sequence[Host], *, timeout: float) -> None:
        self.nodes = list(nodes)
        self.timeout = timeout
        self._by_address = {(h.host, h.port): h for h in nodes}
        self._connections: dict[str, RespConnection] = {}

    def host_at(self, host: str, port: int) -> Host:
        """The node at an address; one the discovery did not know takes the first node's
        credentials (a node added meanwhile)."""
        known = self._by_address.get((host, port))
        if known is None:
            name = f"{self.nodes[0].cluster_name}@{host}:{port}"
            known = dataclasses.replace(self.nodes[0], name=name, host=host, port=port)
            self._by_address[(host, port)] = known
        return known

    def connection(self, host: Host) -> RespConnection:
        from redisops.fleet.resp import RespConnection

        connection = self._connections.get(host.address)
        if connection is None:
            connection = RespConnection(host, timeout=self.timeout)
            self._connections[host.address] = connection
        return connection

    def drop(self, host: Host) -> None:
        connection = self._connections.pop(host.address, None)
        if connection is not None:
            connection.close()

    def call(self, host: Host, *command: str | int | bytes):
        """One command to `host`, its reply (an error reply returned, not raised); the
        connection is dropped when it fails (HostError)."""
        import hiredis

        try:
            connection = self.connection(host)
            connection.send(hiredis.pack_command(command))
            return connection.replies(1)[0]
        except HostError:
            self.drop(host)
            raise

    def owner(self, slot: int, *, avoid: str | None = None) -> Host:
        """The master serving `slot` as the first node that answers says (`avoid`, the address
        that just failed, asked last); HostError when no node names one."""
        import hiredis

        ordered = sorted(self.nodes, key=lambda h: h.address == avoid)
        errors = []
        for node in ordered:
            try:
                reply = self.call(node, "CLUSTER", "NODES")
            except HostError as exc:
                errors.append(exc.message)
                continue
            if isinstance(reply, hiredis.ReplyError):
                errors.append(str(reply))
                continue
            for line in parse_nodes(reply.decode()):
                serving = line.role == "master" and "fail" not in line.flags
                if serving and any(a <= slot <= b for a, b in line.slots):
                    return self.host_at(line.host, line.port)
            errors.append(f"{node.name} names no master for slot {slot}")
        raise HostError(f"no owner of slot {slot}: {'; '.join(errors[-2:])}")

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()


class SlotWrites(NumberedWrites):
    """Numbered writes (see NumberedWrites) to keys `<prefix><n>` that all hash to one slot
    (the prefix holds a hash tag), sent to the slot's owner; MOVED is followed at once, a
    connection error or timeout fails the write and the owner is asked again."""

    expected = (HostError,)
    thread_name = "redisops-cluster-probe"

    def __init__(
        self, nodes: Sequence[Host], *, slot: int, prefix: str, rate: float, timeout: float
    ) -> None:
        super().__init__(prefix=prefix, rate=rate, timeout=timeout)
        self.slot = slot
        self.router = Router(nodes, timeout=timeout)
        self._owner: Host | None = None
        self._tried: Host | None = None

    def _write(self, key: str) -> tuple[bool, str]:
        import hiredis

        avoid = None
        for _ in range(REDIRECTS + 1):
            if self._owner is None:
                self._owner = self.router.owner(self.slot, avoid=avoid)
            owner = self._tried = self._owner
            try:
                reply = self.router.call(owner, "SET", key, VALUE, "NX", "PX", KEY_TTL_MS)
            except HostError:
                self._owner = None  # ask again next time, the failed node last
                raise
            if not isinstance(reply, hiredis.ReplyError):
                return reply is not None, owner.address
            words = str(reply).split()
            if words[:1] != ["MOVED"] or len(words) < 3:
                raise HostError(f"{owner.address}: {reply}")
            host, _, port = words[2].rpartition(":")
            self._owner = self.router.host_at(host.strip("[]"), int(port))
            avoid = owner.address
        raise HostError(f"slot {self.slot}: more than {REDIRECTS} MOVED in a row")

    def _where(self) -> str | None:
        return self._tried.address if self._tried else None

    def _close(self) -> None:
        self.router.close()

    def count_missing(self, last: int) -> int:
        """How many of the keys 1 … last are missing on the slot's owner now (after stop)."""
        return sum(1 for found in self._each_batch("EXISTS", 1, last) if not found)

    def remove(self) -> int:
        """Remove every key the probe may have written (after stop); how many there were."""
        return sum(self._each_batch("UNLINK", 1, self.next_number))

    def _each_batch(self, command: str, first: int, last: int) -> list[int]:
        """`command key` for each key first … last, pipelined to the slot's owner."""
        import hiredis

        owner = self.router.owner(self.slot)
        connection = self.router.connection(owner)
        out: list[int] = []
        for start in range(first, last + 1, KEY_BATCH):
            numbers = range(start, min(start + KEY_BATCH, last + 1))
            connection.send(b"".join(hiredis.pack_command((command, self.key(n))) for n in numbers))
            for reply in connection.replies(len(numbers)):
                if isinstance(reply, hiredis.ReplyError):
                    raise HostError(f"{owner.address}: {reply}")
                out.append(int(reply))
        return out


@dataclass(frozen=True)
class Sighting:
    """When the watcher first saw something, and who said it."""

    at: float
    seen_by: str
    detail: str


class ClusterWatch:
    """Polls CLUSTER NODES on every node but the old master, in a thread, every 0.1 s:
    when another node first flags it PFAIL, then FAIL, and when a node first says it is
    itself the master serving `slot` (the new master). A context manager."""

    def __init__(self, nodes: Sequence[Host], *, old_id: str, slot: int, timeout: float) -> None:
        others = [h for h in nodes if h.node and h.node.node_id != old_id]
        self.router = Router(others, timeout=timeout)
        self.old_id = old_id
        self.slot = slot
        self.pfail: Sighting | None = None
        self.fail: Sighting | None = None
        self.promoted: Sighting | None = None
        self.new_id: str | None = None
        self._since = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, since: float) -> None:
        """Count what is seen from `since` on (the fault), forgetting anything before."""
        with self._lock:
            self._since = since
            self.pfail = self.fail = self.promoted = None
            self.new_id = None

    def __enter__(self) -> ClusterWatch:
        self._thread = threading.Thread(
            target=self._run, name="redisops-cluster-watch", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.router.timeout * len(self.router.nodes) + 1)

    def _run(self) -> None:
        import hiredis

        try:
            while not self._stop.is_set():
                for node in self.router.nodes:
                    if self._stop.is_set():
                        break
                    at = time.monotonic()
                    try:
                        reply = self.router.call(node, "CLUSTER", "NODES")
                    except HostError:
                        continue
                    if not isinstance(reply, hiredis.ReplyError):
                        self._look(node, at, reply.decode())
                self._stop.wait(WATCH_SECONDS)
        finally:
            self.router.close()

    def _look(self, node: Host, at: float, text: str) -> None:
        with self._lock:
            if at < self._since or not self._since:
                return
            for line in parse_nodes(text):
                if line.node_id == self.old_id:
                    if "fail?" in line.flags and self.pfail is None:
                        self.pfail = Sighting(at, node.name, "PFAIL")
                    if "fail" in line.flags and self.fail is None:
                        self.fail = Sighting(at, node.name, "FAIL")
                elif (
                    "myself" in line.flags
                    and line.role == "master"
                    and any(a <= self.slot <= b for a, b in line.slots)
                    and self.promoted is None
                ):
                    self.promoted = Sighting(at, node.name, f"{node.name} serves the slots")
                    self.new_id = line.node_id
