"""The ASGI app `bench/stack_floor.py` serves with daphne: the node's websocket stack with nothing of
ours behind it, so what a frame costs in daphne, Channels and the Redis channel layer is measured alone.

Frames (JSON text), each answered with one frame of about the size the node's answers have:
- `{"type": "echo"}`: answered on the event loop;
- `{"type": "thread"}`: answered after a hop to a worker thread and back, as the node's socket
  requests are (`sync_to_async(thread_sensitive=False)`);
- `{"type": "push"}`: a `group_send` to the socket's own group through the channel layer (one Redis
  PUBLISH and its delivery), which the consumer then writes out, as the node's pushes are.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connext_site.settings")

import django

django.setup()

from typing import Any  # noqa: E402

from asgiref.sync import sync_to_async  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402
from stack_floor import PAYLOAD  # noqa: E402


def _in_a_worker_thread() -> dict[str, Any]:
    return PAYLOAD


class FloorConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        self.group = f"floor.{self.channel_name.rsplit('!', 1)[-1]}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        kind = content.get("type")
        if kind == "echo":
            await self.send_json({"type": "response", "id": content.get("id"), "body": PAYLOAD})
        elif kind == "thread":
            body = await sync_to_async(_in_a_worker_thread, thread_sensitive=False)()
            await self.send_json({"type": "response", "id": content.get("id"), "body": body})
        elif kind == "push":
            await self.channel_layer.group_send(
                self.group, {"type": "event.push", "id": content.get("id"), "payload": PAYLOAD}
            )

    async def event_push(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "id": message["id"], "payload": message["payload"]})


application = ProtocolTypeRouter({"websocket": URLRouter([path("floor", FloorConsumer.as_asgi())])})
