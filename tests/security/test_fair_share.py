"""Each caller's pace (FAIR_SHARE) against a real daphne process: one account's flood over REST or its
socket is served at its pace and refused 429 (throttled, Retry-After) past the longest wait, while
another account is served at once; a flood changes nothing."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from channels_app.models import Channel
from tests.security.test_socket_request_cap import channel_of, resolve_request
from tests.support.abuse import log_in, logged_in_socket, new_account, request_json, started_node

pytestmark = pytest.mark.django_db(transaction=True)

PACE = {"FAIR_SHARE": "5/second", "FAIR_SHARE_BURST": "5", "FAIR_SHARE_MAX_WAIT_SECONDS": "1"}
FLOOD = 30


def assert_paced_refusal(status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
    assert status == 429
    assert body["error"]["code"] == "throttled"
    assert 1 <= body["error"]["retryAfter"] <= 10
    assert headers["Retry-After"] == str(body["error"]["retryAfter"])


def test_a_rest_flood_is_served_at_its_accounts_pace_and_refused_past_the_wait_while_others_are_not(
    node_env_for, start_process, tmp_path
):
    node = started_node(node_env_for, start_process, tmp_path, "paced-rest", **PACE)
    flooder, calm = new_account(), new_account()
    flooder_token, calm_token = log_in(node.url, flooder), log_in(node.url, calm)
    channel_url = f"{node.url}/api/channel"
    for token in (flooder_token, calm_token):  # once checked, a token is paced as its account
        assert request_json(channel_url, token=token)[0] == 404  # no channel yet: the node answered

    def flood_one(_: int) -> tuple[float, tuple[int, dict[str, str], Any]]:
        answer = request_json(channel_url, token=flooder_token)
        return time.monotonic(), answer

    with ThreadPoolExecutor(FLOOD) as pool:
        flood = [pool.submit(flood_one, index) for index in range(FLOOD)]
        calm_answer = request_json(channel_url, token=calm_token)
        calm_done = time.monotonic()
        answers = [future.result() for future in flood]

    assert calm_answer[0] == 404  # served, not throttled: its own pace is untouched
    served = [done for done, (status, _, _) in answers if status == 404]
    refused = [answer for _, answer in answers if answer[0] == 429]
    assert len(served) + len(refused) == FLOOD
    # The burst at once, then 5 a second for at most the one second a request may wait (and what the
    # pace earned back while the flood's requests were being sent).
    assert 5 <= len(served) <= 5 + 5 + 3
    assert len(refused) >= FLOOD - 13
    for answer in refused:
        assert_paced_refusal(*answer)
    assert calm_done < max(served)  # answered while the flood still waited for its turns


def test_a_socket_flood_is_served_at_its_accounts_pace_refused_past_the_wait_and_changes_nothing(
    node_env_for, start_process, tmp_path
):
    node = started_node(
        node_env_for, start_process, tmp_path, "paced-socket", WS_MAX_REQUESTS_IN_FLIGHT="100", **PACE
    )
    flooder = new_account()
    socket = logged_in_socket(node, log_in(node.url, flooder))
    channel = channel_of(flooder.address)

    for request_id in range(1, FLOOD + 1):
        socket.send(resolve_request(request_id, channel))
    frames = [json.loads(socket.recv(timeout=15)) for _ in range(FLOOD)]
    socket.close()

    assert all(frame["type"] == "response" for frame in frames)
    statuses = [frame["status"] for frame in frames]
    assert set(statuses) == {409, 429}  # served (refused by the service: the channel is closed) or paced
    assert 5 <= statuses.count(409) <= 13
    for frame in frames:
        if frame["status"] == 429:
            assert frame["body"]["error"]["code"] == "throttled"
            assert 1 <= frame["body"]["error"]["retryAfter"] <= 10
    channel.refresh_from_db()
    assert (channel.nonce, channel.latest_state, channel.status) == (1, {"nonce": "1"}, Channel.Status.CLOSED)


def test_socket_connections_past_the_ips_pace_are_refused_before_the_node_spends_anything_on_them(
    node_env_for, start_process, tmp_path
):
    node = started_node(
        node_env_for,
        start_process,
        tmp_path,
        "paced-connects",
        FAIR_SHARE="1/minute",  # nothing is earned back during the test
        FAIR_SHARE_BURST="5",
        FAIR_SHARE_MAX_WAIT_SECONDS="0",
    )
    opened, refused = [], []
    for _ in range(10):  # the IP's burst, less what waiting for the node to serve took
        try:
            opened.append(connect(node.ws_url, open_timeout=10))
        except InvalidStatus as exc:
            refused.append(exc.response.status_code)

    assert 1 <= len(opened) <= 5
    assert refused == [403] * (10 - len(opened))
    for websocket in opened:  # the ones let in are served
        websocket.send(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(websocket.recv(timeout=10))["type"] == "pong"
        websocket.close()
