"""The REST API keeps its OpenAPI contract under generated input (schemathesis against a live node).

Every operation of `/api/schema` gets requests made from its schema, valid and invalid, as a funded
user with a channel, a completed payment and an open link. Every answer must be documented (status,
content type, body shape: the error body too), input the schema forbids must be refused with a 4xx,
nothing may answer 5xx, and whatever was refused must have moved no money: the users' balances, their
locked transfers and their payments stay as they were. (A request the schema allows may still be
refused for its meaning, e.g. a well-formed update with a wrong signature: that is a documented 4xx.)
Well-formed updates and payment ids are aimed at the user's own channel and payments, so they reach
the checks behind "not yours"; the two endpoints a client also calls over its websocket get each
request a second time as a socket frame, and must answer it alike.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import positive_data_acceptance
from web3 import HTTPProvider, Web3
from websockets.sync.client import connect

from channels_app.models import Channel, Payment, Transfer
from channels_app.services import channels
from connext import ETH, Client
from connext.chain import devchain
from tests.integration.conftest import LiveNode
from tests.support.abuse import log_in, new_account
from tests.support.client_wallets import Funder, until
from tests.support.processes import http_get_json

# Not transactional: a transactional test flushes the database after itself, and the users' records
# must outlive each operation's test (the live node's teardown flushes them at the module's end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

MILLI = 10**15


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, str]:
    """Generated requests come faster than the pace a node keeps per caller (FAIR_SHARE, tested in
    tests/security/test_fair_share.py); here they would only wait for their turns."""
    return {"FAIR_SHARE": "1000000/second", "FAIR_SHARE_BURST": "100000"}


class Users:
    def __init__(self, alice: Client, bob: Client, *, paid: str, link: str) -> None:
        self.alice, self.bob = alice, bob
        self.paid, self.link = paid, link  # alice's settled payment to bob, and her open link
        self.token: str = alice.async_client.api.token
        self.money_before = money_of(self)


def money_of(users: Users) -> dict[str, Any]:
    """What the users own: their side of each balance, their locked transfers, their payments."""
    owned: dict[str, Any] = {}
    for client in (users.alice, users.bob):
        state = channels.latest_state(Channel.objects.get(address=client.channel_address))
        owned[client.address] = {
            "balances": {a: b[1] for a, b in zip(state.asset_ids, state.balances, strict=True)},
            "transfers": sorted(t.transfer_id.hex() for t in state.transfers),
            "payments": sorted(
                Payment.objects.filter(sender=client.address).values_list("payment_id", "status")
            ),
        }
    return owned


def quiet(alice: Client, bob: Client, payment_id: str) -> bool:
    """The payment settled on both sides (the sender's too, which follows the receiver's), and each
    client holds its channel's latest state."""
    payment = Payment.objects.select_related("sender_transfer").get(payment_id=payment_id)
    if payment.sender_transfer.status != Transfer.Status.RESOLVED:
        return False
    for client in (alice, bob):
        channel = Channel.objects.get(address=client.channel_address)
        if channel.pending_update is not None or client.get_channel()["nonce"] != channel.nonce:
            return False
    return True


@pytest.fixture(scope="module")
def users(live_node: LiveNode, django_db_blocker) -> Iterator[Users]:
    funder = Funder(Web3(HTTPProvider(live_node.chain_url)), devchain.DEV_PRIVATE_KEYS[8])
    alice = Client.connect(live_node.nodes[0].url, funder.new_key(), chain_rpc_url=live_node.chain_url)
    bob = Client.connect(live_node.nodes[1].url, funder.new_key(), chain_rpc_url=live_node.chain_url)
    try:
        alice.deposit(5 * MILLI)
        paid = alice.transfer(bob.address, MILLI)
        link = alice.create_link(MILLI)["payment_id"]
        with django_db_blocker.unblock():
            until(lambda: quiet(alice, bob, paid), "the payment to settle on both sides")
            users = Users(alice, bob, paid=paid, link=link)
        yield users
    finally:
        alice.close()
        bob.close()


def aim_at_alices_channel(case: Any, alice: Client) -> None:
    """A well-formed update (of the schema's valid cases) is made alice's own next update, so that it
    reaches the protocol core's checks of balances, transfers and deposits, and the signature check
    after them, instead of stopping at "not your channel"."""
    update = case.body.get("update") if isinstance(case.body, dict) else None
    if case.meta.generation.mode is not GenerationMode.POSITIVE or not isinstance(update, dict):
        return
    for key, value in update.items():  # mixed case must be EIP-55: the schema's pattern cannot say so
        if isinstance(value, str) and len(value) == 42:
            update[key] = value.lower()
    update.update(channelAddress=alice.channel_address, initiator=alice.address)
    if update.get("type") != "setup":
        update["nonce"] = str(Channel.objects.get(address=alice.channel_address).nonce + 1)


def aim_at_alices_payments(case: Any, users: Users) -> None:
    """A valid-shaped payment id in the path is made one of alice's: her open link for redeem and
    cancel (she may not redeem her own; she may cancel it only once it expired), her settled payment
    to read."""
    if case.meta.generation.mode is not GenerationMode.POSITIVE or "payment_id" not in (
        case.path_parameters or {}
    ):
        return
    link_operation = case.path.endswith(("/redeem", "/cancel"))
    case.path_parameters["payment_id"] = users.link if link_operation else users.paid


SOCKET_PATHS = ("/api/channel/updates", "/api/channel/countersign")
# Refusals of the HTTP request itself, which a socket frame cannot earn: it is logged in, JSON, a POST.
HTTP_ONLY_REFUSALS = {
    "not_authenticated",
    "authentication_failed",
    "invalid_token",
    "token_expired",
    "malformed_request",
    "unsupported_media_type",
    "method_not_allowed",
}


class Socket:
    """Alice's websocket to the node, logged in, for `{"type": "request"}` frames."""

    def __init__(self, url: str, token: str) -> None:
        self._websocket = connect(url, open_timeout=10)
        self._next_id = 0
        self._send({"type": "auth", "token": token, "id": "auth"})
        assert self._reply("auth")["type"] == "authenticated"

    def _send(self, frame: dict[str, Any]) -> None:
        self._websocket.send(json.dumps(frame))

    def _reply(self, request_id: Any) -> dict[str, Any]:
        while True:  # pushes (events) may come in between
            frame = json.loads(self._websocket.recv(timeout=10))
            if frame.get("id") == request_id and frame.get("type") != "event":
                return dict(frame)

    def request(self, path: str, body: Any) -> tuple[int, Any]:
        self._next_id += 1
        self._send({"type": "request", "id": self._next_id, "method": "POST", "path": path, "body": body})
        reply = self._reply(self._next_id)
        assert reply["type"] == "response", reply
        return int(reply["status"]), reply["body"]

    def close(self) -> None:
        self._websocket.close()


def assert_the_socket_answers_alike(case: Any, response: Any, socket: Socket) -> None:
    """The same request over the websocket gets the same status and code (README). Not compared: what
    a socket frame cannot earn, and HTTP requests the server refused before the node saw them (daphne
    answers a malformed multipart request with an empty 400)."""
    try:
        answer = response.json()
    except ValueError:
        return
    code = answer["error"]["code"] if response.status_code >= 400 else None
    if code in HTTP_ONLY_REFUSALS:
        return
    status, body = socket.request(case.path, case.body)
    assert (status, body["error"]["code"] if status >= 400 else None) == (response.status_code, code)


@pytest.fixture(scope="module")
def alice_socket(live_node: LiveNode, users: Users) -> Iterator[Socket]:
    socket = Socket(live_node.nodes[0].ws_url, users.token)
    yield socket
    socket.close()


def _openapi() -> dict[str, Any]:
    """The schema the node serves, written here from the same code (the live node's is compared
    below): schemathesis needs it at collection, before any node runs."""
    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))


OPENAPI = _openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
# Unknown query parameters are ignored, as HTTP APIs do; everything else the schema forbids is refused.
schema.config.generation.update(allow_extra_parameters=False)


def test_the_live_node_serves_the_schema_these_requests_are_made_from(live_node: LiveNode) -> None:
    status, served = http_get_json(f"{live_node.nodes[0].url}/api/schema?format=json")
    assert status == 200
    assert served == OPENAPI


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("CONTRACT_EXAMPLES", "25")),
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_refused_input_moves_no_money(
    case: Any, users: Users, live_node: LiveNode, alice_socket: Socket
) -> None:
    aim_at_alices_channel(case, users.alice)
    aim_at_alices_payments(case, users)
    token = users.token
    if case.path == "/api/auth/logout":  # with alice's token it would log her out of every other case
        token = log_in(live_node.nodes[0].url, new_account())
    response = case.call_and_validate(
        base_url=live_node.nodes[0].url,
        headers={"Authorization": f"Bearer {token}"},
        # A request the schema allows may be refused for its meaning (a bad signature, say).
        excluded_checks=[positive_data_acceptance],
    )
    assert response.status_code < 500
    if case.path in SOCKET_PATHS and case.method.upper() == "POST" and not isinstance(case.body, NotSet):
        assert_the_socket_answers_alike(case, response, alice_socket)
    assert money_of(users) == users.money_before, f"{case.method} {case.formatted_path} moved money"
    assert users.money_before[users.alice.address]["balances"][ETH] == 3 * MILLI  # paid 1, linked 1
