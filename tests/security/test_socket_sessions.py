"""A socket lives no longer than its token: logout, deletion and expiry end it on every node process,
and a socket that never logs in is closed. Real daphne processes on one Redis and Postgres."""

from __future__ import annotations

import asyncio
import json
import secrets
import select
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from channels_app.models import AuthToken
from connext.client.node_api import NodeApi
from connext.protocol.signing import Signer
from tests.support.abuse import log_in, logged_in_socket, new_account, request_json, started_node

pytestmark = pytest.mark.django_db(transaction=True)


def read_until_closed(websocket: ClientConnection, frames: list[dict[str, Any]], timeout: float) -> None:
    while True:
        frames.append(json.loads(websocket.recv(timeout=timeout)))


def closing_words(websocket: ClientConnection, timeout: float = 20) -> tuple[dict[str, Any], int]:
    """The last frame before the node closed the socket, and the close code."""
    frames: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as closed:
        read_until_closed(websocket, frames, timeout)
    assert closed.value.rcvd is not None, "the node dropped the connection without a close frame"
    return frames[-1], closed.value.rcvd.code


def still_served(websocket: ClientConnection) -> bool:
    websocket.send(json.dumps({"type": "ping", "id": "still"}))
    return json.loads(websocket.recv(timeout=10))["type"] == "pong"


def test_logout_revokes_the_token_and_closes_its_sockets_on_every_node_process(
    node_env_for, start_process, tmp_path
):
    first = started_node(node_env_for, start_process, tmp_path, "first")
    second = started_node(node_env_for, start_process, tmp_path, "second")
    account = new_account()
    token, other_device = log_in(first.url, account), log_in(second.url, account)
    on_first, on_second = logged_in_socket(first, token), logged_in_socket(second, token)
    other_session = logged_in_socket(second, other_device)

    status, _, body = request_json(f"{first.url}/api/auth/logout", method="POST", token=token)

    assert (status, body) == (204, None)
    for websocket in (on_first, on_second):
        frame, code = closing_words(websocket)
        assert (frame["type"], frame["code"], code) == ("error", "logged_out", 4401)
    status, _, body = request_json(f"{second.url}/api/auth/me", token=token)
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    assert still_served(other_session)  # the same account's other token is another session
    with connect(second.ws_url, open_timeout=10) as again:
        again.send(json.dumps({"type": "auth", "token": token, "id": 1}))
        assert json.loads(again.recv(timeout=10))["code"] == "invalid_token"
    other_session.close()


def test_logout_without_a_token_is_401_in_json(node_process):
    status, _, body = request_json(f"{node_process.url}/api/auth/logout", method="POST")

    assert status == 401
    assert body["error"]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("end_the_token", "code"),
    [
        (lambda tokens: tokens.delete(), "invalid_token"),
        (lambda tokens: tokens.update(expires_at=timezone.now() - timedelta(seconds=1)), "token_expired"),
    ],
    ids=["deleted", "expired"],
)
def test_a_socket_request_after_its_token_ended_is_refused_401_and_the_socket_closes(
    node_process, end_the_token, code
):
    account = new_account()
    websocket = logged_in_socket(node_process, log_in(node_process.url, account))
    end_the_token(AuthToken.objects.filter(address=account.address))

    websocket.send(
        json.dumps(
            {"type": "request", "id": 9, "method": "POST", "path": "/api/channel/countersign", "body": {}}
        )
    )
    answer = json.loads(websocket.recv(timeout=10))
    frame, close_code = closing_words(websocket)

    assert (answer["type"], answer["id"], answer["status"]) == ("response", 9, 401)
    assert answer["body"]["error"]["code"] == code
    assert (frame["code"], close_code) == (code, 4401)


def test_a_socket_closes_when_its_token_expires(node_env_for, start_process, tmp_path):
    node = started_node(node_env_for, start_process, tmp_path, "short", AUTH_TOKEN_TTL_SECONDS="2")
    websocket = logged_in_socket(node, log_in(node.url, new_account()))

    frame, code = closing_words(websocket)

    assert (frame["type"], frame["code"], code) == ("error", "token_expired", 4401)


def test_a_client_slow_to_answer_the_close_still_gets_why_its_socket_closed(
    node_env_for, start_process, tmp_path
):
    node = started_node(node_env_for, start_process, tmp_path, "slow", AUTH_TOKEN_TTL_SECONDS="2")
    websocket = logged_in_socket(node, log_in(node.url, new_account()))
    # The client library's reader thread reads the error frame and the close but cannot act on them, as
    # when a loaded machine does not schedule it, until the node hangs up or the token's two seconds and
    # two more have passed: the close is answered two seconds or more after the node sent it. (Autobahn's
    # default hung up after one second, and the library lost the error frame with the reset.)
    hang_up = select.poll()
    hang_up.register(websocket.socket, select.POLLRDHUP | select.POLLHUP | select.POLLERR)
    with websocket.protocol_mutex:
        hang_up.poll(4000)

    frame, code = closing_words(websocket)

    assert (frame["type"], frame["code"], code) == ("error", "token_expired", 4401)


def test_a_socket_that_does_not_log_in_in_time_is_closed(node_env_for, start_process, tmp_path):
    node = started_node(node_env_for, start_process, tmp_path, "impatient", WS_AUTH_TIMEOUT_SECONDS="1")
    websocket = connect(node.ws_url, open_timeout=10)
    assert still_served(websocket)  # pings are no login

    frame, code = closing_words(websocket)

    assert (frame["type"], frame["code"], code) == ("error", "auth_timeout", 4408)


def test_a_socket_that_logs_in_in_time_outlives_the_login_timeout_until_its_token_ends(
    node_env_for, start_process, tmp_path
):
    node = started_node(
        node_env_for,
        start_process,
        tmp_path,
        "patient",
        WS_AUTH_TIMEOUT_SECONDS="1",
        AUTH_TOKEN_TTL_SECONDS="3",
    )
    websocket = logged_in_socket(node, log_in(node.url, new_account()))

    frame, code = closing_words(websocket)

    assert (frame["code"], code) == ("token_expired", 4401)  # not auth_timeout, a second in


def test_the_client_sdk_logs_out_and_its_token_no_longer_works(node_process):
    signer = Signer(secrets.token_bytes(32))

    async def scenario() -> tuple[str, str]:
        async with aiohttp.ClientSession() as session:
            api = NodeApi(node_process.url, signer, session)
            token = await api.log_in()
            await api.log_out()
            return token, api.token

    token, kept = asyncio.run(scenario())

    assert kept == ""
    status, _, body = request_json(f"{node_process.url}/api/auth/me", token=token)
    assert (status, body["error"]["code"]) == (401, "invalid_token")
    assert not AuthToken.objects.filter(address=signer.address).exists()
