"""Pushes to websocket clients through the channel layer (Redis across node processes).

Pushes always go out after the database transaction that caused them commits, never inside it,
so a client is never told about something that was rolled back.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

BROADCAST_GROUP = "node.broadcast"


def user_group(address: str) -> str:
    """The group of every websocket logged in as `address` (all devices, all node processes)."""
    return f"user.{address.lower()}"


def event_message(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message a consumer turns into `{"type": "event", "event": ..., "payload": ...}`."""
    return {"type": "event.push", "event": event, "payload": payload}


def push_event_now(group: str, event: str, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    async_to_sync(layer.group_send)(group, event_message(event, payload))


def push_event_on_commit(group: str, event: str, payload: dict[str, Any]) -> None:
    transaction.on_commit(lambda: push_event_now(group, event, payload), robust=True)
