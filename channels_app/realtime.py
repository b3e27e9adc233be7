"""Pushes to websocket clients through the channel layer (Redis across node processes).

Pushes always go out after the database transaction that caused them commits, never inside it,
so a client is never told about something that was rolled back. Inside `batched()` the pushes that
are released go out together at its end: one channel-layer message per group, carrying its events in
order (a push through Redis costs the node about twice what writing its frame does, and one payment
step often tells the same user two or three things at once).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

BROADCAST_GROUP = "node.broadcast"


def user_group(address: str) -> str:
    """The group of every websocket logged in as `address` (all devices, all node processes)."""
    return f"user.{address.lower()}"


def event_message(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message a consumer turns into `{"type": "event", "event": ..., "payload": ...}`."""
    return {"type": "event.push", "event": event, "payload": payload}


def events_message(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One channel-layer message for several events to one group; the consumer writes one frame per
    event, in order, as if each had been pushed on its own."""
    if len(events) == 1:
        return event_message(*events[0])
    return {
        "type": "event.push",
        "events": [{"event": event, "payload": payload} for event, payload in events],
    }


PUSH_TIMEOUT_SECONDS = 5
_sender_lock = threading.Lock()
_sender: asyncio.AbstractEventLoop | None = None


def _sender_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process for pushes from sync code (workers, request threads).

    `async_to_sync` outside an event loop makes a new loop per call, and the Redis layer's connections
    belong to a loop: every push would open a fresh Redis connection.
    """
    global _sender
    with _sender_lock:
        if _sender is None or _sender.is_closed():
            _sender = asyncio.new_event_loop()
            threading.Thread(target=_sender.run_forever, name="channel-layer-pushes", daemon=True).start()
        return _sender


_batch = threading.local()


@contextmanager
def batched() -> Iterator[None]:
    """Hold the pushes this thread releases inside the block (sent now, or by a commit) and send them
    at its end, one message per group with its events in order, also when the block raises (what
    committed was done). Nested blocks send with the outermost."""
    if getattr(_batch, "pushes", None) is not None:
        yield
        return
    pushes: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    _batch.pushes = pushes
    try:
        yield
    finally:
        _batch.pushes = None
        for group, events in pushes.items():
            try:
                _send(group, events_message(events))
            except Exception:  # a push is a notification: clients sync on their next request
                logger.exception("push of %d events to %s failed", len(events), group)


def push_event_now(group: str, event: str, payload: dict[str, Any]) -> None:
    held: dict[str, list[tuple[str, dict[str, Any]]]] | None = getattr(_batch, "pushes", None)
    if held is not None:
        held.setdefault(group, []).append((event, payload))
        return
    _send(group, event_message(event, payload))


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        # In-memory queues belong to the node process's own loop: send from (or through) that loop.
        async_to_sync(layer.group_send)(group, message)
        return
    asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender_loop()).result(
        PUSH_TIMEOUT_SECONDS
    )


def push_event_on_commit(group: str, event: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: push_event_now(group, event, payload), robust=True)


def sockets_close_for_token(address: str, key_hash: str) -> None:
    """Close every socket logged in with the token whose hash is `key_hash` (its holder's group
    reaches each node process that has one)."""
    _send(user_group(address), {"type": "session.revoked", "key_hash": key_hash})
