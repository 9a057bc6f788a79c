"""Moving slots between masters of a Redis Cluster, as `redis-cli --cluster reshard` does,
and picking up after an interrupted run.

One slot moves in three steps: `CLUSTER SETSLOT s IMPORTING src` on the target, `SETSLOT s
MIGRATING dst` on the source (in that order, so the target accepts ASK-redirected clients
before the source sends them), then `CLUSTER GETKEYSINSLOT` + `MIGRATE host port "" 0
timeout [AUTH…] KEYS k1…kn` in batches, each MIGRATE pipelined with the next GETKEYSINSLOT
(one round trip a batch), and last `SETSLOT s NODE dst` on the target, the source and every
other master. The target's password travels only inside MIGRATE's arguments, on the
connection to the source: never in argv, logs or errors.

Resumable: before a slot is touched, the state file (JSON, fsynced, renamed into place) names
the run's command, its moves and the slot in flight. A run killed anywhere leaves at most
that one slot open (`[s->-dst]` on the source, `[s-<-src]` on the target in CLUSTER NODES);
the next run finds it (`open_slots`), finishes it when the target is a live master, or gives
the slot back to the source when it is not (`recover_slot`), then carries on with the moves
left in the state file.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from redisops.errors import HostError, UsageError
from redisops.fleet.cluster import NodeLine, parse_nodes
from redisops.fleet.host import Host
from redisops.fleet.resp import RespConnection
from redisops.fleet.secrets import resolve_password
from redisops.interrupt import pause, raise_if_stopped
from redisops.privatefile import private_file

STATE_FORMAT = 1
BATCH_KEYS = 1000  # keys per MIGRATE (redis-cli: 10); all checked below --max-key-size first
PIPELINE = 10_000  # commands per pipelined write when measuring
MIB = 1 << 20
DEFAULT_MAX_KEY_SIZE = 64 * MIB

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Move:
    """One slot from `source` to `target` (node ids)."""

    slot: int
    source: str
    target: str


@dataclass(frozen=True)
class OpenSlot:
    """A slot some node reports migrating or importing: `source` -> `target` (node ids)."""

    slot: int
    source: str
    target: str
    seen: str  # "migrating on node-1", "importing on node-2"


@dataclass
class Masters:
    """Connections to the cluster's nodes by node id, opened on first use, closed at the end;
    `addresses` are the nodes' own announced `ip:port` (what MIGRATE from a peer reaches)."""

    hosts: dict[str, Host]
    names: dict[str, str]
    addresses: dict[str, str]
    masters: list[str]
    timeout: float
    _open: dict[str, RespConnection] = field(default_factory=dict)

    def conn(self, node_id: str) -> RespConnection:
        if node_id not in self._open:
            self._open[node_id] = RespConnection(self.hosts[node_id], timeout=self.timeout)
        return self._open[node_id]

    def name(self, node_id: str) -> str:
        return self.names.get(node_id, node_id[:8])

    def close(self) -> None:
        for connection in self._open.values():
            with contextlib.suppress(OSError):
                connection.close()
        self._open.clear()


def pipeline(connection: RespConnection, commands: Sequence[Sequence[bytes | str | int]]) -> list:
    """Send `commands` in pipelined chunks; the replies in order (error replies included)."""
    import hiredis

    out: list = []
    for start in range(0, len(commands), PIPELINE):
        chunk = commands[start : start + PIPELINE]
        connection.send(b"".join(hiredis.pack_command(tuple(c)) for c in chunk))
        out += connection.replies(len(chunk))
    return out


def read_view(connection: RespConnection) -> tuple[NodeLine, ...]:
    text = connection.call("CLUSTER", "NODES")
    return tuple(parse_nodes(text.decode() if isinstance(text, bytes) else str(text)))


def open_slots(views: dict[str, Sequence[NodeLine]], names: dict[str, str]) -> list[OpenSlot]:
    """Every slot a node reports as migrating or importing in its own CLUSTER NODES line
    (`views`: node id -> what that node answered), one entry per slot."""
    found: dict[int, OpenSlot] = {}
    for node_id, view in views.items():
        me = next((line for line in view if "myself" in line.flags), None)
        if me is None:
            continue
        name = names.get(node_id, node_id[:8])
        for slot, peer in me.migrating.items():
            found.setdefault(slot, OpenSlot(slot, node_id, peer, f"migrating on {name}"))
        for slot, peer in me.importing.items():
            found.setdefault(slot, OpenSlot(slot, peer, node_id, f"importing on {name}"))
    return [found[slot] for slot in sorted(found)]


# --- moving -------------------------------------------------------------------------------


class SlotMover:
    """Moves slots one by one over `masters`' connections, throttled to `rate` keys a second
    (0: no limit), calling `progress(label, keys done, keys total)` as keys go."""

    def __init__(
        self,
        masters: Masters,
        *,
        rate: float = 0.0,
        batch: int = BATCH_KEYS,
        progress: Progress | None = None,
        total_keys: int = 0,
    ) -> None:
        self.masters = masters
        self.rate = rate
        self.batch = max(1, min(batch, int(rate) or batch))
        self.progress = progress
        self.total_keys = total_keys
        self.keys_moved = 0
        self.started = time.monotonic()
        self.migrate_timeout_ms = int(masters.timeout * 1000)
        self._auths: dict[str, tuple[str, ...]] = {}

    def move(self, move: Move) -> int:
        """Open, empty and close one slot; the keys moved. HostError leaves it open (the
        state file and `open_slots` find it again)."""
        self.open(move)
        moved = self.migrate(move)
        self.close(move.slot, move.target, move.source)
        return moved

    def open(self, move: Move) -> None:
        """IMPORTING on the target, then MIGRATING on the source. Re-opening a slot a killed
        run left half-closed is fine: a target that owns it already, or a source that no
        longer does, is past that step."""
        target, source = self.masters.conn(move.target), self.masters.conn(move.source)
        try:
            target.call("CLUSTER", "SETSLOT", move.slot, "IMPORTING", move.source)
        except HostError as exc:
            if "already the owner" not in exc.message:
                raise
        try:
            source.call("CLUSTER", "SETSLOT", move.slot, "MIGRATING", move.target)
        except HostError as exc:
            if "not the owner" not in exc.message:
                raise

    def migrate(self, move: Move) -> int:
        """MIGRATE every key of the slot from source to target, one batch a round trip."""
        import hiredis

        source = self.masters.conn(move.source)
        host, _, port = self.masters.addresses[move.target].rpartition(":")
        auth = self._auth(move.target)
        head = ("MIGRATE", host, port, "", 0, self.migrate_timeout_ms, *auth, "KEYS")
        moved = 0
        keys = source.call("CLUSTER", "GETKEYSINSLOT", move.slot, self.batch)
        while keys:
            raise_if_stopped()
            source.send(
                hiredis.pack_command((*head, *keys))
                + hiredis.pack_command(("CLUSTER", "GETKEYSINSLOT", move.slot, self.batch))
            )
            reply, following = source.replies(2)
            if isinstance(reply, hiredis.ReplyError):
                raise HostError(self._migrate_error(move, str(reply)))
            moved += len(keys)
            self.keys_moved += len(keys)
            if isinstance(following, hiredis.ReplyError):
                raise HostError(f"{source.host.address} replied with an error: {following}")
            keys = following
            if self.progress:
                self.progress("moving keys", self.keys_moved, self.total_keys)
            self._throttle()
        return moved

    def close(self, slot: int, owner: str, other: str) -> None:
        """`SETSLOT slot NODE owner` on the owner first (it bumps its epoch and takes the
        slot), then on `other` and every other master, pipelined to all at once."""
        self.masters.conn(owner).call("CLUSTER", "SETSLOT", slot, "NODE", owner)
        rest = [n for n in dict.fromkeys([other, *self.masters.masters]) if n != owner]
        import hiredis

        command = hiredis.pack_command(("CLUSTER", "SETSLOT", slot, "NODE", owner))
        sent = []
        for node_id in rest:
            try:
                self.masters.conn(node_id).send(command)
                sent.append(node_id)
            except HostError:
                if node_id == other:
                    raise
        for node_id in sent:
            (reply,) = self.masters.conn(node_id).replies(1)
            # A source that gave up its last slot may already have turned itself into a
            # replica of the new owner (Redis 7's cluster-allow-replica-migration): it holds
            # nothing of the slot any more, which is what SETSLOT NODE would have told it.
            if (
                isinstance(reply, hiredis.ReplyError)
                and node_id == other
                and "only with masters" not in str(reply)
            ):
                raise HostError(f"{self.masters.name(node_id)} refused SETSLOT NODE: {reply}")

    def _auth(self, node_id: str) -> tuple[str, ...]:
        if node_id not in self._auths:
            host = self.masters.hosts[node_id]
            password = resolve_password(host)
            auth: tuple[str, ...] = ()
            if password is not None:
                auth = ("AUTH2", host.username, password) if host.username else ("AUTH", password)
            self._auths[node_id] = auth
        return self._auths[node_id]

    def _migrate_error(self, move: Move, reply: str) -> str:
        # The reply never holds the password (Redis does not echo arguments), but a last
        # check costs nothing.
        from redisops.redaction import redact

        source, target = self.masters.name(move.source), self.masters.name(move.target)
        hint = ""
        if reply.startswith("BUSYKEY"):
            hint = " (a key of the slot already exists on the target)"
        return redact(
            f"MIGRATE of slot {move.slot} from {source} to {target} failed: {reply}{hint}"
        )

    def _throttle(self) -> None:
        if self.rate <= 0:
            return
        ahead = self.keys_moved / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            pause(ahead)


def recover_slot(mover: SlotMover, slot: OpenSlot, live: Iterable[str]) -> str:
    """Close an open slot: finish the move when the target is a live master, else give the
    slot back to the source. Returns what was done, one line."""
    masters = mover.masters
    source, target = masters.name(slot.source), masters.name(slot.target)
    if slot.target in live:
        moved = mover.move(Move(slot.slot, slot.source, slot.target))
        return f"slot {slot.slot}: finished the move {source} -> {target} ({moved:,} keys)"
    mover.close(slot.slot, slot.source, slot.source)
    return (
        f"slot {slot.slot}: rolled back to {source} ({target} is not a live master; keys "
        f"already moved to it are on it alone)"
    )


# --- the state file -------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveState:
    """An unfinished run: the command that started it, its moves, the next move's index and
    the slot in flight (None between slots)."""

    command: str
    cluster: str
    moves: tuple[Move, ...]
    next: int
    in_flight: int | None
    started: str
    path: Path

    @property
    def moves_path(self) -> Path:
        """The run's moves, written once beside the state file (which is rewritten per slot)."""
        return self.path.with_suffix(".moves.json")


def default_state_dir() -> Path:
    """Beside restore-keys' state: $XDG_STATE_HOME/redisops/cluster-moves."""
    from redisops.backup.restore_keys import default_state_dir as restore_keys_state

    return restore_keys_state().with_name("cluster-moves")


def state_path(state_dir: Path, cluster: str) -> Path:
    """One state file per cluster: two runs moving slots of one cluster must not interleave."""
    return state_dir / f"{cluster}.json"


def read_state(path: Path) -> MoveState | None:
    try:
        data = json.loads(path.read_text())
        ranges = json.loads(path.with_suffix(".moves.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"the state file {path} of an interrupted slot move is unreadable: {exc}",
            hint="look at it (and at `redisops cluster status`), then remove it to start over",
        ) from None
    if data.get("format") != STATE_FORMAT:
        raise UsageError(f"the state file {path} is of another format: remove it to start over")
    moves = tuple(
        Move(slot, source, target)
        for first, last, source, target in ranges
        for slot in range(first, last + 1)
    )
    return MoveState(
        data["command"],
        data["cluster"],
        moves,
        data["next"],
        data["in_flight"],
        data["started"],
        path,
    )


def write_moves(state: MoveState) -> None:
    """The run's moves, once, before the first state (consecutive slots as ranges)."""
    state.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with private_file(state.moves_path) as handle:
        handle.write(json.dumps(move_ranges(state.moves)))


def write_state(state: MoveState) -> None:
    """Replace the state file whole (privatefile: a temporary name, fsynced, renamed): a kill
    or a power cut leaves the old one or the new one, never a torn one."""
    record = {
        "format": STATE_FORMAT,
        "command": state.command,
        "cluster": state.cluster,
        "moves_file": str(state.moves_path),
        "next": state.next,
        "in_flight": state.in_flight,
        "started": state.started,
        "updated": now_iso(),
    }
    with private_file(state.path) as handle:
        handle.write(json.dumps(record))


def remove_state(path: Path) -> None:
    """The state file first (its moves file alone resumes nothing), then the moves."""
    for stale in (path, path.with_suffix(".moves.json")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def move_ranges(moves: Sequence[Move]) -> list[list]:
    """Consecutive slots with the same source and target as one `[first, last, src, dst]`."""
    out: list[list] = []
    for move in moves:
        if out and out[-1][1] == move.slot - 1 and out[-1][2:] == [move.source, move.target]:
            out[-1][1] = move.slot
        else:
            out.append([move.slot, move.slot, move.source, move.target])
    return out
