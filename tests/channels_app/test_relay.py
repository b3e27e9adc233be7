"""Requests forwarded to their shard's owner (`channels_app.engine.relay`): on the node's channel layer
(Redis pub/sub, as the node runs it) between two relays and the owners recorded in the database, each
way a forward can end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer

from channels_app.engine.reader import Reader
from channels_app.engine.relay import Relay
from channels_app.models import ShardOwner
from tests.support.engine import database_conninfo, django

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_request_is_answered_by_its_owner_and_served_here_when_it_declines_is_silent_or_is_unknown():
    conninfo = database_conninfo()
    served: list[tuple[str, str, Any]] = []

    async def owner_serves(path: str, user: str, body: Any) -> tuple[int, Any] | None:
        served.append((path, user, body))
        return None if body.get("decline") else (200, {"nonce": body["nonce"] + 1})

    async def not_here(path: str, user: str, body: Any) -> tuple[int, Any] | None:
        raise AssertionError("a request for another shard is not served by the relay that forwards it")

    async def scenario() -> None:
        layer = get_channel_layer()
        assert layer is not None
        reader = Reader(conninfo)
        await reader.open()
        here = Relay(layer, await layer.new_channel(), reader, not_here, answer_seconds=0.3)
        there = Relay(layer, await layer.new_channel(), reader, owner_serves)
        silent = await layer.new_channel()  # an owner that died: nobody listens
        await django(
            lambda: ShardOwner.objects.bulk_create(
                [
                    ShardOwner(shard=1, channel=there.address, since="2026-01-01T00:00Z"),
                    ShardOwner(shard=2, channel=silent, since="2026-01-01T00:00Z"),
                    ShardOwner(shard=3, channel=here.address, since="2026-01-01T00:00Z"),
                ]
            )
        )
        here.start()
        there.start()
        try:
            assert await here.forward(1, "/api/channel/updates", "0xabc", {"nonce": 4}) == (
                (200, {"nonce": 5}),
                "",
            )
            assert served == [("/api/channel/updates", "0xabc", {"nonce": 4})]
            assert await here.forward(1, "/api/channel/updates", "0xabc", {"decline": True}) == (
                None,
                "declined",
            )
            assert await here.forward(2, "/api/channel/countersign", "0xabc", {}) == (None, "timeout")
            assert await here.forward(3, "/api/channel/countersign", "0xabc", {}) == (
                None,
                "no_owner",
            )  # itself
            assert await here.forward(4, "/api/channel/countersign", "0xabc", {}) == (None, "no_owner")
            assert len(served) == 2
        finally:
            await here.close()
            await there.close()
            await reader.close()

    asyncio.run(scenario())
