"""Pushes to websocket clients through the channel layer (Redis across node processes).

Pushes always go out after the database transaction that caused them commits, never inside it,
so a client is never told about something that was rolled back.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

BROADCAST_GROUP = "node.broadcast"


def user_group(address: str) -> str:
    """The group of every websocket logged in as `address` (all devices, all node processes)."""
    return f"user.{address.lower()}"


def event_message(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message a consumer turns into `{"type": "event", "event": ..., "payload": ...}`."""
    return {"type": "event.push", "event": event, "payload": payload}


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


def push_event_now(group: str, event: str, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = event_message(event, payload)
    if isinstance(layer, InMemoryChannelLayer):
        # In-memory queues belong to the node process's own loop: send from (or through) that loop.
        async_to_sync(layer.group_send)(group, message)
        return
    asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender_loop()).result(
        PUSH_TIMEOUT_SECONDS
    )


def push_event_on_commit(group: str, event: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: push_event_now(group, event, payload), robust=True)
