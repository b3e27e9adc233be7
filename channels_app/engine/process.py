"""The update engine in a node process (setting UPDATE_ENGINE, off by default while #21 is built):
started on the process's event loop at its first socket request, it takes its fair share of the
shards (all of them alone; half with one other engine, given back by the first) and serves the
socket's update requests for them (`Engine.serve`), and sends those of other shards to their owner
(`relay`). A request it does not take (an update the router leaves to the row-lock path, one its
shard's owner did not answer, a writer session lost under it) goes the row-lock way, in a worker
thread as before. Both paths may write one channel: the owner's compare-and-set makes that safe
(docs/protocol.md, "The update engine")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from psycopg.conninfo import make_conninfo

from channels_app import crash_points, metrics, network, realtime
from channels_app.api.channel_views import countersign_input, parse_update, signed_json, update_input
from channels_app.api.errors import error_answer
from channels_app.engine.owner import ChannelOwner, Event
from channels_app.engine.reader import Reader
from channels_app.engine.relay import Relay
from channels_app.engine.router import Routed, Router, Unserved, in_django
from channels_app.engine.shard_writer import SHARDS, NotOwner, OwnershipLost, ShardWriter, shard_of
from channels_app.services import auth
from connext.protocol.signing import Signer

logger = logging.getLogger(__name__)

UPDATES = "/api/channel/updates"
COUNTERSIGN = "/api/channel/countersign"
COMMAND = "engine:command"  # a router step sent to the engine owning its channel (not a socket path)


class Engine:
    """One process's writer, reader, owner and router, on the loop that started them, and the relay
    that forwards requests to the other processes' engines (none in a test's engine alone)."""

    def __init__(
        self, writer: ShardWriter, reader: Reader, owner: ChannelOwner, router: Router, layer: Any = None
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.owner = owner
        self.router = router
        self._later: set[asyncio.Future[None]] = set()
        address = writer.reached_at
        self.relay = None
        if layer is not None and address is not None:
            self.relay = Relay(layer, address, reader, self._serve_forwarded)
            router.remote = self._ask_owner

    async def start(self) -> None:
        await self.reader.open()
        await self.writer.start()
        if self.relay is not None:
            self.relay.start()

    async def close(self) -> None:
        if self._later:  # the steps after requests already answered: a moment to end
            await asyncio.wait(set(self._later), timeout=5)
        if self.relay is not None:
            await self.relay.close()
        await self.reader.close()
        await self.writer.close()

    async def token_address(self, token: str) -> str:
        """The address a socket's token stands for, checked as `auth.auth_token_check` checks it (a
        revoked token fails at once), read on the reader's connection: no thread hop."""
        key_hash = auth.token_hash(token)

        async def look_up(cursor: Any) -> tuple[str, datetime] | None:
            await cursor.execute(
                "SELECT address, expires_at FROM channels_app_authtoken WHERE key_hash = %s", (key_hash,)
            )
            row = await cursor.fetchone()
            return None if row is None else (str(row[0]), row[1])

        return auth.token_valid(key_hash, await self.reader.read(look_up)).address

    async def serve(self, path: str, address: str, body: Any) -> tuple[int, Any] | None:
        """The answer to a socket request of `address` on `path`: served here when this engine owns
        the user's shard, else by its owner (`Relay.forward`); None when the row-lock path is to
        serve it here. What became of each request is counted (`metrics.ENGINE_REQUESTS`)."""
        name = _PATHS.get(path)
        if name is None:
            return None
        shard = shard_of(address, self.writer.shards)
        if self.relay is not None and not self.writer.owns(shard):
            forwarded, why = await self.relay.forward(shard, path, address, body)
            if forwarded is None:
                metrics.engine_request(name, "handed_on", why)
            else:
                metrics.engine_request(name, "forwarded")
            return forwarded
        return await self.serve_owned(path, address, body)

    async def socket_home(self, address: str) -> str:
        """Where the socket of `address` belongs, when that is another process that said where users
        reach it (`NODE_SOCKET_URL`); blank when here or unknown. A hint: a socket that stays where it
        is has its requests forwarded as before."""
        shard = shard_of(address, self.writer.shards)
        if self.relay is None or self.writer.owns(shard):
            return ""
        try:
            return await self.relay.socket_of(shard)
        except Exception:  # the directory unread (the database away): no hint, nothing lost
            logger.exception("the owner of shard %s was not looked up", shard)
            return ""

    async def _ask_owner(self, user: str, command: str, args: dict[str, Any]) -> bool:
        """The router's step on a channel of another process's shard, asked of its owner."""
        assert self.relay is not None
        answer, why = await self.relay.forward(
            shard_of(user, self.writer.shards), COMMAND, user, {"command": command, "args": args}
        )
        metrics.engine_request(command, "forwarded" if answer is not None else "handed_on", why)
        return answer is not None

    async def _serve_forwarded(self, path: str, user: str, body: Any) -> tuple[int, Any] | None:
        """A request another process's engine sent here: a socket request of a user of this engine's
        shard, or a step of the router's on such a user's channel (`Router.run_command`)."""
        if path != COMMAND:
            return await self.serve_owned(path, user, body)
        command = str(body.get("command"))
        try:
            events = await self.router.run_command(user, command, dict(body["args"]))
        except Exception:  # the asker takes it the row-lock way (the payment's checks hold there)
            logger.exception("the step %s asked by another engine failed here", command)
            metrics.engine_request(command, "handed_on", "failed")
            return None
        if events is None:
            metrics.engine_request(command, "handed_on", "not_owner")
            return None
        await push(tuple(events))
        metrics.engine_request(command, "answered")
        return 200, None

    async def serve_owned(self, path: str, address: str, body: Any) -> tuple[int, Any] | None:
        """`serve` for a shard this engine owns (or a request forwarded here by the process that
        got it): its events pushed first (as the row-lock path pushes before it answers)."""
        name = _PATHS.get(path)
        if name is None:
            return None
        try:
            routed = await self._routed(path, address, body)
        except (Unserved, NotOwner, OwnershipLost) as exc:
            # OwnershipLost: nothing of it was revealed; whatever committed, the row-lock path reads
            # (a request committed here is answered there as sent again, with the same answer).
            metrics.engine_request(name, "handed_on", _handed_on(exc))
            return None
        except Exception as exc:
            refused = error_answer(exc)
            if refused is None:
                # A bug, or a read that failed: the row-lock path serves the request as sent again
                # (whatever of it committed here, it reads and answers the same).
                logger.exception("the update engine failed a request; the row-lock path serves it")
                metrics.engine_request(name, "handed_on", "failed")
                return None
            metrics.engine_request(name, "refused")
            return refused
        if crash_points.ARMED and routed.outcome.stored:
            crash_points.reached("committed", address, routed.outcome.stored[-1].update_type)
        await push(routed.events)
        if routed.later is not None:
            self._after_answer(routed.later)
        metrics.engine_request(name, "answered")
        return 200, signed_json(routed.outcome.signed)

    def _after_answer(self, steps: Callable[[], Awaitable[list[Event]]]) -> None:
        """The steps after a request's commit, taken once it is answered (the caller answers as this
        returns: the task runs from the loop's next turn), their events pushed as they end."""

        async def take() -> None:
            try:
                await push(tuple(await steps()))
            except Exception:  # each step logs its own failure; the sweep takes it up
                logger.exception("the steps after a request failed")

        task = asyncio.ensure_future(take())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def _routed(self, path: str, address: str, body: Any) -> Routed:
        if path == UPDATES:
            given = update_input(body)
            answer = given.get("answer")
            return await self.router.user_update(
                user=address,
                update=parse_update(given["update"]),
                signature=given["signature"],
                meta=given.get("meta"),
                answer=(answer["nonce"], answer["signature"]) if answer else None,
                answer_first=True,
            )
        given = countersign_input(body)
        return await self.router.countersign(
            user=address,
            channel_address=self.router.channel_address_for(address),
            nonce=given["nonce"],
            signature=given["signature"],
            answer_first=True,
        )


_PATHS = {UPDATES: "update", COUNTERSIGN: "countersign"}


def _handed_on(exc: Exception) -> str:
    if isinstance(exc, Unserved):
        return "unserved"
    return "not_owner" if isinstance(exc, NotOwner) else "ownership_lost"


async def push(events: tuple[Event, ...]) -> None:
    """The events, one channel-layer message per user with its events in order (`realtime.batched`'s
    shape); a push that fails is logged (a push is a notification: clients sync on their next
    request)."""
    layer = get_channel_layer()
    if layer is None or not events:
        return
    by_user: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for user, event, payload in events:
        by_user.setdefault(user, []).append((event, payload))
    for user, told in by_user.items():
        try:
            await layer.group_send(realtime.user_group(user), realtime.events_message(told))
        except Exception:
            logger.exception("push of %d events to %s failed", len(told), user)


_engine: Engine | None = None
_starting: asyncio.Lock | None = None


async def process_engine() -> Engine | None:
    """This process's engine, started on the running loop at the first call; None when
    UPDATE_ENGINE is off."""
    global _engine, _starting
    if not settings.UPDATE_ENGINE:
        return None
    backend = settings.DATABASES["default"]["ENGINE"]
    if not backend.endswith("postgresql"):  # the writer's fence is a Postgres advisory lock
        if _starting is None:
            logger.warning("UPDATE_ENGINE needs Postgres (the database is %s): it stays off", backend)
            _starting = asyncio.Lock()
        return None
    if _engine is not None:
        return _engine
    if _starting is None:
        _starting = asyncio.Lock()
    async with _starting:
        if _engine is None:
            try:
                _engine = await _start()
            except Exception:  # the row-lock path serves until a later request starts it
                logger.exception("the update engine did not start")
                return None
    return _engine


def build(
    conninfo: str,
    *,
    net: network.Network,
    signer: Signer,
    shards: int = SHARDS,
    layer: Any = None,
    address: str | None = None,
    socket_url: str = "",
) -> Engine:
    """An engine on the database at `conninfo` (not started), sharing the shards fairly with the
    other processes' engines, reached at `address` on the channel `layer` (when given) for requests
    forwarded to it, and by users' sockets at `socket_url` (when said); the writer's shard callbacks reset the owner's memory of the shards taken or
    lost."""
    owner: ChannelOwner
    writer = ShardWriter(
        conninfo,
        shards=shards,
        fair_share=True,
        reached_at=address if layer is not None else None,
        socket_url=socket_url,
        on_acquired=lambda taken: owner.shards_changed(taken),
        on_lost=lambda lost: owner.shards_changed(lost),
    )
    owner = ChannelOwner(writer, signer=signer, definitions=net.definitions)
    reader = Reader(conninfo)
    router = Router(
        owner,
        reader,
        node_address=net.node_address,
        definitions=net.definitions,
        channel_address_for=net.channel_address_for,
        definition_address=net.definition_address,
    )
    return Engine(writer, reader, owner, router, layer)


async def _start() -> Engine:
    def facts() -> tuple[str, network.Network, Signer]:
        params = connection.get_connection_params()
        conninfo = make_conninfo(
            **{k: v for k, v in params.items() if k in ("host", "port", "user", "password", "dbname")}
        )
        return conninfo, network.network(), network.node_signer()

    conninfo, net, signer = await in_django(facts)
    layer = get_channel_layer()
    address = None if layer is None else await layer.new_channel(prefix="engine.")
    engine = build(
        conninfo, net=net, signer=signer, layer=layer, address=address, socket_url=settings.NODE_SOCKET_URL
    )
    try:
        await engine.start()
    except BaseException:
        with contextlib.suppress(Exception):  # its shards' locks go with its session
            await engine.close()
        raise
    logger.info(
        "update engine started, owning %d of %d shards, reached at %s",
        len(engine.writer.owned),
        engine.writer.shards,
        address,
    )
    return engine
