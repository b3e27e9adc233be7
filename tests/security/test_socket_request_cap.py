"""One account's socket requests in flight are capped: a flood gets typed 429 answers at once, not
silence, and the worker threads it cannot take serve other accounts. A real daphne process; the
flood is held in flight by the test holding the account's channel row lock."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction
from websockets.sync.client import ClientConnection

from channels_app.models import Channel
from tests.support.abuse import log_in, logged_in_socket, new_account, started_node

pytestmark = pytest.mark.django_db(transaction=True)

CAP = 2


def channel_of(user: str) -> Channel:
    """A closed channel: an update to it takes the row lock, then is refused (409 channel_not_open)."""
    return Channel.objects.create(
        status=Channel.Status.CLOSED,
        address=new_account().address,
        chain_id=31337,
        node_address=new_account().address,
        user_address=user,
        nonce=1,
        latest_state={"nonce": "1"},
        node_signature="0x01",
        user_signature="0x02",
    )


def resolve_request(request_id: int, channel: Channel) -> str:
    update = {
        "type": "resolve",
        "channelAddress": channel.address,
        "nonce": "2",
        "initiator": channel.user_address,
        "transferId": "0x" + "00" * 32,
        "encodedResolver": "0x",
    }
    body = {"update": update, "signature": "0x" + "11" * 65}
    return json.dumps(
        {"type": "request", "id": request_id, "method": "POST", "path": "/api/channel/updates", "body": body}
    )


def answers(websocket: ClientConnection, count: int) -> dict[int, dict[str, Any]]:
    received = [json.loads(websocket.recv(timeout=15)) for _ in range(count)]
    assert all(frame["type"] == "response" for frame in received), received
    return {frame["id"]: frame for frame in received}


def test_a_flood_of_one_accounts_socket_requests_is_answered_429_past_the_cap_and_others_are_served(
    node_env_for, start_process, tmp_path
):
    node = started_node(node_env_for, start_process, tmp_path, "capped", WS_MAX_REQUESTS_IN_FLIGHT=str(CAP))
    flooder, other = new_account(), new_account()
    flooding = logged_in_socket(node, log_in(node.url, flooder))
    calm = logged_in_socket(node, log_in(node.url, other))
    channel = channel_of(flooder.address)

    with transaction.atomic():
        Channel.objects.select_for_update().get(pk=channel.pk)  # the flood's requests wait on this
        for request_id in range(1, CAP + 4):
            flooding.send(resolve_request(request_id, channel))
        refused = answers(flooding, 3)
        calm.send(
            json.dumps(
                {"type": "request", "id": 1, "method": "POST", "path": "/api/channel/countersign", "body": {}}
            )
        )
        served_meanwhile = answers(calm, 1)[1]

    assert set(refused) == {CAP + 1, CAP + 2, CAP + 3}
    for frame in refused.values():
        assert frame["status"] == 429
        assert frame["body"]["error"]["code"] == "too_many_requests"
        assert frame["body"]["error"]["limit"] == CAP
    assert served_meanwhile["status"] == 400  # its own answer (invalid input), not a wait for the flood
    held = answers(flooding, CAP)
    assert set(held) == set(range(1, CAP + 1))
    assert {frame["body"]["error"]["code"] for frame in held.values()} == {"channel_not_open"}
    channel.refresh_from_db()
    assert (channel.nonce, channel.latest_state) == (1, {"nonce": "1"})  # nothing changed

    flooding.send(resolve_request(99, channel))  # answered ones no longer count
    assert answers(flooding, 1)[99]["status"] == 409
    flooding.close()
    calm.close()
