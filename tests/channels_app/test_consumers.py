"""The websocket consumer, unit-tested in process with Channels' WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from channels_app.realtime import BROADCAST_GROUP, event_message
from connext_site.asgi import application


async def connected() -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, "/ws/v1")
    accepted, _ = await communicator.connect()
    assert accepted
    return communicator


def run(coroutine_function):
    return asyncio.run(coroutine_function())


def test_ping_is_answered_with_pong_carrying_the_same_id():
    async def scenario():
        communicator = await connected()
        await communicator.send_json_to({"type": "ping", "id": 7})
        reply = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return reply

    reply = run(scenario)
    assert reply["type"] == "pong"
    assert reply["id"] == 7
    assert isinstance(reply["server_time"], float)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "malformed_message"),
        (json.dumps([1, 2]), "malformed_message"),
        (json.dumps({"type": 5}), "malformed_message"),
        (json.dumps({"type": "launch", "id": "a"}), "unknown_message_type"),
        ("x" * (64 * 1024 + 1), "message_too_large"),
    ],
)
def test_bad_frames_get_an_error_and_keep_the_connection(frame, code):
    async def scenario():
        communicator = await connected()
        await communicator.send_to(text_data=frame)
        error = await communicator.receive_json_from(timeout=5)
        await communicator.send_json_to({"type": "ping", "id": 1})
        still_there = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return error, still_there

    error, still_there = run(scenario)
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["message"]
    assert still_there["type"] == "pong"


def test_binary_frames_are_refused_with_an_error():
    async def scenario():
        communicator = await connected()
        await communicator.send_to(bytes_data=b"\x00\x01")
        error = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return error

    assert run(scenario)["code"] == "malformed_message"


def test_a_broadcast_event_reaches_a_connected_client():
    async def scenario():
        communicator = await connected()
        await get_channel_layer().group_send(BROADCAST_GROUP, event_message("node.notice", {"text": "hello"}))
        pushed = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return pushed

    assert run(scenario) == {"type": "event", "event": "node.notice", "payload": {"text": "hello"}}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
FRAMES = st.fixed_dictionaries(
    {"type": st.sampled_from(["ping", "auth", "request", "launch"])},
    optional=dict.fromkeys(("id", "token", "method", "path", "body"), JSON_VALUES),
)


@pytest.mark.django_db(transaction=True)  # the token lookup runs in a worker thread
@settings(max_examples=40, derandomize=True, database=None, deadline=None)
@given(frame=FRAMES)
def test_any_frame_of_a_known_shape_gets_one_typed_answer_and_the_connection_stays(frame):
    """Whatever the fields hold (a token that is an object, a method that is a list, a body of any
    JSON), the answer is a pong, an error or a response, never a dropped socket or a server error."""

    async def scenario():
        communicator = await connected()
        await communicator.send_json_to(frame)
        answer = await communicator.receive_json_from(timeout=5)
        await communicator.send_json_to({"type": "ping", "id": "after"})
        after = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return answer, after

    answer, after = run(scenario)
    expected = {"ping": "pong", "auth": "error", "request": "response", "launch": "error"}[frame["type"]]
    assert answer["type"] == expected
    if expected == "response":  # not logged in: refused like REST without a token
        assert (answer["status"], answer["body"]["error"]["code"]) == (401, "not_authenticated")
    if expected == "error":
        assert answer["code"]
        assert answer["message"]
    assert after["type"] == "pong"


def test_open_websockets_are_counted_while_they_are_open():
    def open_count() -> float:
        return REGISTRY.get_sample_value("connext_websocket_connections") or 0.0

    async def scenario() -> tuple[float, float, float]:
        before = open_count()
        first, second = await connected(), await connected()
        during = open_count()
        await first.disconnect()
        await second.disconnect()  # returns once the consumer has finished
        return before, during, open_count()

    before, during, after = run(scenario)
    assert during == before + 2
    assert after == before


@pytest.mark.django_db(transaction=True)
def test_a_socket_request_whose_token_check_the_database_fails_is_still_answered():
    """Found by bench/chaos.py: Postgres restarting, the token check of a socket request raised and the
    request went unanswered; its client waited its whole timeout (30 s) before trying REST, holding its
    channel, and every payment to or from that user waited with it. Here Postgres really fails the
    check: the token table is away (renamed) while the request runs."""
    import threading

    from django.db import connection

    from channels_app.consumers import SOCKET_REQUESTS, _serve_request
    from channels_app.models import AuthToken

    table = AuthToken._meta.db_table
    answers: list[tuple[int, dict]] = []
    handler = SOCKET_REQUESTS[("POST", "/api/channel/updates")]
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
        try:
            worker = threading.Thread(
                target=_serve_request, args=(handler, "t" * 40, {}, lambda *answer: answers.append(answer))
            )
            worker.start()
            worker.join(timeout=30)
        finally:
            cursor.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    assert not worker.is_alive()
    [(status, body)] = answers
    assert status == 500
    assert body["error"]["code"] == "internal_error"
