"""The sentinels' own account of a drill: their pub/sub events, stamped on arrival."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redisops.errors import HostError
from redisops.fleet.connection import describe_redis_error, host_client
from redisops.fleet.host import Host

if TYPE_CHECKING:
    import redis
    from redis.client import PubSub

CLIENT_NAME = "redisops-drill-events"
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class SentinelEvent:
    """One event a Sentinel published; `at` is time.monotonic() when it arrived here."""

    at: float
    sentinel: str
    channel: str
    message: str


class EventListener:
    """Listens to every Sentinel in `sentinels` (PSUBSCRIBE *), one thread each, keeping the
    events about master `name` and those naming no master at all (+new-epoch, +vote-for-leader).

    A context manager: subscribed on entry (HostError when a Sentinel cannot be subscribed to),
    stopped and closed on exit. A Sentinel that fails later ends up in `failures`.
    """

    def __init__(self, sentinels: Sequence[Host], name: str, *, timeout: float) -> None:
        self._sentinels = list(sentinels)
        self._name = name
        self._timeout = timeout
        self._events: list[SentinelEvent] = []
        self.failures: list[SentinelEvent] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._subscriptions: list[tuple[redis.Redis, PubSub]] = []

    def __enter__(self) -> EventListener:
        try:
            for host in self._sentinels:
                self._subscribe(host)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def events(self) -> list[SentinelEvent]:
        with self._changed:
            return list(self._events)

    def wait_for(
        self, match: Callable[[SentinelEvent], bool], *, deadline: float
    ) -> SentinelEvent | None:
        """The first event (already received or arriving before `deadline`) that matches."""
        with self._changed:
            while True:
                found = next((event for event in self._events if match(event)), None)
                remaining = deadline - time.monotonic()
                if found is not None or remaining <= 0:
                    return found
                self._changed.wait(min(remaining, POLL_SECONDS))

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._timeout + 1)
        for client, pubsub in self._subscriptions:
            pubsub.close()
            client.close()
        self._subscriptions.clear()

    def _subscribe(self, host: Host) -> None:
        import redis

        client = host_client(host, timeout=self._timeout, decode=True, client_name=CLIENT_NAME)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._subscriptions.append((client, pubsub))
        try:
            pubsub.psubscribe("*")
        except redis.RedisError as exc:
            message = describe_redis_error(exc, host, self._timeout)
            raise HostError(f"cannot listen to {host.name}'s events: {message}") from None
        thread = threading.Thread(
            target=self._listen, args=(host, pubsub), name=f"redisops-events-{host.name}"
        )
        thread.daemon = True
        thread.start()
        self._threads.append(thread)

    def _listen(self, host: Host, pubsub: PubSub) -> None:
        import redis

        while not self._stop.is_set():
            try:
                message = pubsub.get_message(timeout=POLL_SECONDS)
            except (redis.RedisError, OSError) as exc:
                text = describe_redis_error(exc, host, self._timeout)
                self._add(SentinelEvent(time.monotonic(), host.name, "listener lost", text), True)
                return
            if message and message.get("type") == "pmessage":
                channel, data = str(message["channel"]), str(message["data"])
                if about_master(self._name, channel, data):
                    self._add(SentinelEvent(time.monotonic(), host.name, channel, data), False)

    def _add(self, event: SentinelEvent, failure: bool) -> None:
        with self._changed:
            (self.failures if failure else self._events).append(event)
            self._changed.notify_all()


def about_master(name: str, channel: str, message: str) -> bool:
    """Whether a Sentinel event concerns master `name`, or names no master at all.

    Instance events read `<type> <name> <ip> <port> @ <master> <ip> <port>`, master events
    `master <master> <ip> <port>`, +switch-master `<master> <old ip> <old port> <new ip> …`.
    """
    if channel.startswith("__"):
        return False
    words = message.split()
    if channel == "+switch-master":
        return bool(words) and words[0] == name
    if "@" in words:
        at = words.index("@")
        return at + 1 < len(words) and words[at + 1] == name
    if words[:1] == ["master"]:
        return len(words) > 1 and words[1] == name
    return True
