"""Websocket consumers: the node's push channel to clients (and, later, low-latency update exchange).

Protocol: JSON text frames. Client → node `{"type": "ping", "id": ...}`, `{"type": "auth", "token": ...}`
(after which the node pushes the caller's own events); node → client `{"type": "authenticated", ...}`,
`{"type": "pong", "id": ..., "server_time": ...}`, `{"type": "event", "event": ..., "payload": ...}`
and `{"type": "error", "code": ..., "message": ...}` for anything it cannot take.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from channels_app.realtime import BROADCAST_GROUP, user_group
from channels_app.services.auth import AuthError, auth_token_address

MAX_FRAME_BYTES = 64 * 1024


class NodeConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    groups: ClassVar[list[str]] = [BROADCAST_GROUP]
    address: str | None = None

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self._error("malformed_message", "Frames must be JSON text.")
            return
        if len(text_data) > MAX_FRAME_BYTES:
            await self._error("message_too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self._error("malformed_message", "Frames must be valid JSON.")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self._error("malformed_message", 'A message is a JSON object with a string "type".')
            return
        await self.receive_json(message)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if content["type"] == "ping":
            await self.send_json({"type": "pong", "id": content.get("id"), "server_time": time.time()})
            return
        if content["type"] == "auth":
            await self._authenticate(content)
            return
        await self._error(
            "unknown_message_type", f"Unknown message type {content['type']!r}.", content.get("id")
        )

    async def _authenticate(self, content: dict[str, Any]) -> None:
        """`{"type": "auth", "token": ...}`: join the caller's own group to get its pushes."""
        token = content.get("token")
        if not isinstance(token, str) or not token:
            await self._error("invalid_token", "Send {'type': 'auth', 'token': <token>}.", content.get("id"))
            return
        try:
            address = await database_sync_to_async(auth_token_address)(token=token)
        except AuthError as exc:
            await self._error(exc.code, exc.message, content.get("id"))
            return
        if self.address is not None and self.address != address:
            await self.channel_layer.group_discard(user_group(self.address), self.channel_name)
        self.address = address
        await self.channel_layer.group_add(user_group(address), self.channel_name)
        await self.send_json({"type": "authenticated", "id": content.get("id"), "address": address})

    async def disconnect(self, code: int) -> None:
        if self.address is not None:
            await self.channel_layer.group_discard(user_group(self.address), self.channel_name)
        await super().disconnect(code)

    async def event_push(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "event": message["event"], "payload": message["payload"]})

    async def _error(self, code: str, message: str, request_id: Any = None) -> None:
        await self.send_json({"type": "error", "id": request_id, "code": code, "message": message})
