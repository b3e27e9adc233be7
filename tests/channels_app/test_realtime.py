"""Pushes through the channel layer: batched pushes go out as one message per group, in order, and
only for what committed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction

from channels_app import realtime
from connext_site.asgi import application

MARKER = "test.marker"


def messages_to(group: str, action: Callable[[], object]) -> list[dict]:
    """The channel-layer messages to `group` while `action()` runs in a worker thread; a marker
    pushed after it closes the window (pushes from one process arrive in order)."""

    async def scenario() -> list[dict]:
        layer = get_channel_layer()
        name = await layer.new_channel()
        await layer.group_add(group, name)
        try:
            await sync_to_async(action, thread_sensitive=False)()
            await sync_to_async(realtime.push_event_now, thread_sensitive=False)(group, MARKER, {})
            heard = []
            while (message := await asyncio.wait_for(layer.receive(name), 10)).get("event") != MARKER:
                heard.append(message)
            return heard
        finally:
            await layer.group_discard(group, name)

    return asyncio.run(scenario())


def test_without_a_batch_every_push_is_its_own_message():
    def action() -> None:
        realtime.push_event_now("user.a", "one", {"n": 1})
        realtime.push_event_now("user.a", "two", {"n": 2})

    assert messages_to("user.a", action) == [
        realtime.event_message("one", {"n": 1}),
        realtime.event_message("two", {"n": 2}),
    ]


def test_a_batch_sends_one_message_per_group_with_its_events_in_order():
    def action() -> None:
        with realtime.batched():
            realtime.push_event_now("user.a", "one", {"n": 1})
            realtime.push_event_now("user.b", "other", {})
            with realtime.batched():  # nested: sent with the outer block
                realtime.push_event_now("user.a", "two", {"n": 2})
            realtime.push_event_now("user.a", "three", {"n": 3})

    heard = messages_to("user.a", action)

    assert heard == [
        {
            "type": "event.push",
            "events": [
                {"event": "one", "payload": {"n": 1}},
                {"event": "two", "payload": {"n": 2}},
                {"event": "three", "payload": {"n": 3}},
            ],
        }
    ]


def test_a_batch_of_one_push_is_the_plain_message():
    def action() -> None:
        with realtime.batched():
            realtime.push_event_now("user.a", "one", {"n": 1})

    assert messages_to("user.a", action) == [realtime.event_message("one", {"n": 1})]


def _commit_then_fail() -> None:
    with transaction.atomic():
        realtime.push_event_on_commit("user.a", "committed", {})
        try:
            with transaction.atomic():  # a savepoint rolled back: its push is dropped
                realtime.push_event_on_commit("user.a", "savepoint.rolled.back", {})
                raise ValueError
        except ValueError:
            pass
    with transaction.atomic():
        realtime.push_event_on_commit("user.a", "rolled.back", {})
        raise RuntimeError("the block fails after one commit")


@pytest.mark.django_db(transaction=True)
def test_a_batch_sends_only_what_committed_and_sends_it_when_the_block_raises():
    def action() -> None:
        with pytest.raises(RuntimeError), realtime.batched():  # batched sees the raise
            _commit_then_fail()

    assert messages_to("user.a", action) == [realtime.event_message("committed", {})]


def test_the_consumer_writes_each_event_of_a_batched_message_as_its_own_frame_in_order():
    async def scenario() -> list[dict]:
        communicator = WebsocketCommunicator(application, "/ws/v1")
        assert (await communicator.connect())[0]
        message = realtime.events_message([("first", {"n": 1}), ("second", {"n": 2})])
        await get_channel_layer().group_send(realtime.BROADCAST_GROUP, message)
        frames = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()
        return frames

    assert asyncio.run(scenario()) == [
        {"type": "event", "event": "first", "payload": {"n": 1}},
        {"type": "event", "event": "second", "payload": {"n": 2}},
    ]
