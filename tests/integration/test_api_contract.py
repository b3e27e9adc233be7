"""The REST API keeps its OpenAPI contract under generated input (schemathesis against a live node).

Every operation of `/api/schema` gets requests made from its schema, valid and invalid, as a funded
user with a channel, a completed payment and an open link. Every answer must be documented (status,
content type, body shape: the error body too), input the schema forbids must be refused with a 4xx,
nothing may answer 5xx, and whatever was refused must have moved no money: the users' balances, their
locked transfers and their payments stay as they were. (A request the schema allows may still be
refused for its meaning, e.g. a well-formed update with a wrong signature: that is a documented 4xx.)
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
from schemathesis.specs.openapi.checks import positive_data_acceptance
from web3 import HTTPProvider, Web3

from channels_app.models import Channel, Payment, Transfer
from connext import ETH, Client
from connext.chain import devchain
from connext.protocol import serialization
from tests.integration.conftest import LiveNode
from tests.support.client_wallets import Funder, until
from tests.support.processes import http_get_json

# Not transactional: a transactional test flushes the database after itself, and the users' records
# must outlive each operation's test (the live node's teardown flushes them at the module's end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

MILLI = 10**15


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
        channel = Channel.objects.get(address=client.channel_address)
        state = serialization.channel_state_from_json(channel.latest_state)
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
    case: Any, users: Users, live_node: LiveNode
) -> None:
    aim_at_alices_channel(case, users.alice)
    aim_at_alices_payments(case, users)
    response = case.call_and_validate(
        base_url=live_node.nodes[0].url,
        headers={"Authorization": f"Bearer {users.token}"},
        # A request the schema allows may be refused for its meaning (a bad signature, say).
        excluded_checks=[positive_data_acceptance],
    )
    assert response.status_code < 500
    assert money_of(users) == users.money_before, f"{case.method} {case.formatted_path} moved money"
    assert users.money_before[users.alice.address]["balances"][ETH] == 3 * MILLI  # paid 1, linked 1
