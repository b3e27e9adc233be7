"""The client keeps to the node's pace against a real daphne process: its socket requests never run
more at once than /api/config allows (they wait in the client, not in a 429), and a call the node
refused for the pace is sent again after the wait it named."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import aiohttp
import pytest

from connext.client.node_api import NodeApi
from connext.errors import NodeError
from connext.protocol.signing import Signer
from tests.support.abuse import started_node

pytestmark = pytest.mark.django_db(transaction=True)


async def logged_in_api(session: aiohttp.ClientSession, url: str) -> NodeApi:
    api = NodeApi(url, Signer(secrets.token_bytes(32)), session)
    await api.log_in()
    return api


def test_calls_refused_for_the_pace_are_sent_again_after_the_named_wait_and_all_succeed(
    node_env_for, start_process, tmp_path
):
    node = started_node(
        node_env_for,
        start_process,
        tmp_path,
        "pace-retry",
        FAIR_SHARE="5/second",
        FAIR_SHARE_BURST="3",
        FAIR_SHARE_MAX_WAIT_SECONDS="0",  # a turn not free now is refused at once: retryAfter 1
    )

    async def scenario() -> tuple[list[Any], int]:
        async with aiohttp.ClientSession() as session:
            api = await logged_in_api(session, node.url)
            await api.get("/api/auth/me")  # the token is checked: paced as its account from now on
            answers = await asyncio.gather(*(api.get("/api/auth/me") for _ in range(6)))
            return answers, api.paced_retries

    answers, retries = asyncio.run(scenario())

    assert len(answers) == 6
    assert all(answer["address"] for answer in answers)
    assert retries >= 3  # the account's burst is three: the other three were refused, then served


def test_socket_requests_wait_in_the_client_for_a_slot_instead_of_being_refused(
    node_env_for, start_process, tmp_path
):
    # The pace is not what is tested here: a loaded machine (its turns falling behind) must not have
    # the node refuse a request 429 and the client send it again.
    node = started_node(
        node_env_for,
        start_process,
        tmp_path,
        "pace-slots",
        WS_MAX_REQUESTS_IN_FLIGHT="1",
        FAIR_SHARE="10000/second",
        FAIR_SHARE_BURST="10000",
    )

    async def scenario() -> tuple[list[BaseException | Any], int, int]:
        async with aiohttp.ClientSession() as session:
            api = await logged_in_api(session, node.url)
            config = await api.get("/api/config")
            api.set_limits(config["limits"])
            socket = await session.ws_connect(api.ws_url)
            await socket.send_json({"type": "auth", "token": api.token})
            assert json.loads((await socket.receive()).data)["type"] == "authenticated"

            async def read() -> None:
                async for message in socket:
                    frame = json.loads(message.data)
                    if frame.get("type") == "response":
                        api.socket_response(frame)

            reader = asyncio.create_task(read())
            api.attach_socket(socket.send_json)
            answers = await asyncio.gather(
                *(api.post("/api/channel/countersign", {}) for _ in range(5)), return_exceptions=True
            )
            reader.cancel()
            await socket.close()
            return answers, api.socket_requests, api.paced_retries

    answers, over_socket, retries = asyncio.run(scenario())

    assert over_socket == 5
    assert retries == 0  # none was refused 429: they took turns for the one slot
    for answer in answers:  # each got its own answer: the empty body is invalid input
        assert isinstance(answer, NodeError)
        assert (answer.status, answer.code) == (400, "invalid_input")
