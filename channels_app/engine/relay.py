"""Socket requests forwarded to the engine owning their shard (issue #21): a user's socket may land on
any node process, and only the owner of the user's shard signs for its channel on the engine.

Each engine listens on a channel-layer channel of its own (`address`), and its writer records that
address for every shard it takes (`ShardOwner`, written by the session holding the shard's lock). A
process serving a request for a shard it does not own looks the owner up and sends it the request
(the user's address, already authenticated here, the path and the body); the owner serves it as its
own, pushes its events, and sends back the answer. A request the owner does not take (it no longer
owns the shard, or leaves the step to the row-lock path) and one not answered in time go the row-lock
way in the process that got it: a request is safe to serve twice (whatever of it one path committed,
the other reads and answers as the same request sent again), so a lost answer costs only time.

The owner's row also says where users reach its process's websocket (`socket_of`), when it said so
(NODE_SOCKET_URL): a socket landing elsewhere is told to move there, and its requests then need no
forward at all.

The channel layer is the one the pushes go through (trusted, as the node's Redis is); a message is
taken as a request only from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import BaseChannelLayer

from channels_app.engine.reader import Reader

logger = logging.getLogger(__name__)

REQUEST = "engine.request"
ANSWER = "engine.answer"
ANSWER_SECONDS = 5.0  # a forwarded request not answered by then is served the row-lock way here
DIRECTORY_SECONDS = 2.0  # an owner looked up is trusted this long

Serve = Callable[[str, str, Any], Awaitable[tuple[int, Any] | None]]


class Relay:
    """This engine's end of forwarding: it answers requests sent to `address` with `serve` and sends
    requests for shards it does not own to their owners."""

    def __init__(
        self,
        layer: BaseChannelLayer,
        address: str,
        reader: Reader,
        serve: Serve,
        *,
        answer_seconds: float = ANSWER_SECONDS,
    ) -> None:
        self._layer = layer
        self._answer_seconds = answer_seconds
        self.address = address
        self._reader = reader
        self._serve = serve
        self._waiting: dict[int, asyncio.Future[tuple[int, Any] | None]] = {}
        self._ids = itertools.count(1)
        # shard -> (owner's address, where users reach its socket, read at)
        self._owners: dict[int, tuple[str | None, str, float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._listening = asyncio.ensure_future(self._listen())

    async def close(self) -> None:
        tasks = [t for t in (self._listening, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_result(None)

    async def forward(
        self, shard: int, path: str, user: str, body: Any
    ) -> tuple[tuple[int, Any] | None, str]:
        """The owner's answer to a request for `shard`, or None with why it is to be served here:
        `no_owner` (none recorded but this engine), `declined` (the owner did not take it: it left
        it to the row-lock path, or owns the shard no more), `timeout`, `not_sent`."""
        owner, _ = await self._owner_of(shard)
        if owner is None or owner == self.address:
            self._owners.pop(shard, None)
            return None, "no_owner"
        request_id = next(self._ids)
        waiting: asyncio.Future[tuple[int, Any] | None] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiting
        request = {"type": REQUEST, "id": request_id, "reply": self.address, "path": path, "user": user}
        try:
            await self._layer.send(owner, {**request, "body": body})
            async with asyncio.timeout(self._answer_seconds):
                answer = await waiting
        except TimeoutError:
            logger.warning("the owner of shard %s (%s) did not answer in time", shard, owner)
            self._owners.pop(shard, None)
            return None, "timeout"
        except Exception:  # not sent (a body the layer cannot carry, Redis away): served here
            logger.exception("a request for shard %s was not forwarded", shard)
            return None, "not_sent"
        finally:
            self._waiting.pop(request_id, None)
        if answer is None:  # not taken there (its ownership may have moved)
            self._owners.pop(shard, None)
            return None, "declined"
        return answer, ""

    async def socket_of(self, shard: int) -> str:
        """Where users reach the websocket of the process owning `shard`, as its owner recorded it;
        blank when unknown, not said, or this process's."""
        owner, socket_url = await self._owner_of(shard)
        return "" if owner is None or owner == self.address else socket_url

    async def _owner_of(self, shard: int) -> tuple[str | None, str]:
        known = self._owners.get(shard)
        if known is not None and time.monotonic() - known[2] < DIRECTORY_SECONDS:
            return known[0], known[1]

        async def look_up(cursor: Any) -> tuple[str | None, str]:
            await cursor.execute(
                "SELECT channel, socket_url FROM channels_app_shardowner WHERE shard = %s", (shard,)
            )
            row = await cursor.fetchone()
            return (None, "") if row is None else (str(row[0]), str(row[1]))

        owner, socket_url = await self._reader.read(look_up)
        self._owners[shard] = (owner, socket_url, time.monotonic())
        return owner, socket_url

    async def _listen(self) -> None:
        while True:
            try:
                message = await self._layer.receive(self.address)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("receiving forwarded requests failed; listening again")
                await asyncio.sleep(0.1)
                continue
            kind = message.get("type")
            if kind == ANSWER:
                waiting = self._waiting.get(message.get("id", 0))
                if waiting is not None and not waiting.done():
                    served = message.get("served")
                    waiting.set_result(None if served is None else (int(served[0]), served[1]))
            elif kind == REQUEST:
                task = asyncio.ensure_future(self._answer(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _answer(self, message: dict[str, Any]) -> None:
        served: tuple[int, Any] | None = None
        try:
            served = await self._serve(str(message["path"]), str(message["user"]), message.get("body"))
        except Exception:
            logger.exception("a forwarded request failed here; its sender serves it the row-lock way")
        reply = {"type": ANSWER, "id": message.get("id")}
        try:
            await self._layer.send(
                str(message["reply"]), {**reply, "served": None if served is None else list(served)}
            )
        except Exception:
            # Not carried (an answer the layer cannot serialize): the sender serves it itself now
            # rather than after its timeout (the request is safe to serve twice).
            logger.exception("the answer to a forwarded request was not sent")
            with contextlib.suppress(Exception):
                await self._layer.send(str(message["reply"]), {**reply, "served": None})
