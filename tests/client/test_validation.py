"""The client signs only what it derived itself: node proposals that move money wrongly are refused,
and nothing is sent to the node for them."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from connext.client import policy
from connext.client.async_client import AsyncClient
from connext.client.store import SignedState
from connext.errors import ValidationError
from connext.protocol import serialization, signing, validation
from connext.protocol.types import ChannelState, Update
from tests.protocol.protocol_helpers import (
    CHAIN_ID,
    DEFINITIONS,
    ETH,
    LINKED,
    NODE,
    USER,
    WITHDRAW,
    context,
    create_update,
    deposit_update,
    funded_state,
    linked_state,
    preimage_for,
    withdraw_state,
)

E = 10**18


def node_signs(
    state: ChannelState, update: Update, chain: tuple[int, int] = (E, E)
) -> tuple[ChannelState, bytes]:
    return validation.initiate_update(state, update, NODE, context=context(deposits={ETH: chain}))


def test_a_deposit_credit_the_clients_own_chain_reading_does_not_show_is_refused():
    state = funded_state()
    update = deposit_update(state, node=E, user=3 * E)  # the node claims the user deposited 2 more
    _, node_signature = node_signs(state, update, chain=(E, 3 * E))

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, update, node_signature, context=context(deposits={ETH: (E, E)}))

    assert refused.value.code == "deposit_exceeds_chain"


def test_a_node_signature_over_a_state_other_than_the_update_derives_is_refused():
    state = funded_state()
    update = deposit_update(state, node=2 * E, user=E)
    honest, _ = node_signs(state, update, chain=(2 * E, E))
    skimmed = replace(honest, balances=((3 * E, 0),))  # the user's ETH moved to the node
    forged_signature = signing.sign_state(skimmed, NODE)

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(
            state, update, forged_signature, context=context(deposits={ETH: (2 * E, E)})
        )

    assert refused.value.code == "bad_signature"


def test_a_transfer_of_a_kind_this_client_does_not_handle_is_refused():
    state = funded_state()
    update = create_update(
        state,
        initiator=NODE.address,
        definition=LINKED,
        encoded_state=linked_state(preimage_for("x")),
        amount=E // 2,
    )
    _, node_signature = node_signs(state, update)

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, update, node_signature, context=context())

    assert refused.value.code == "unsupported_transfer"


def test_an_update_initiated_by_the_user_is_not_a_node_proposal():
    state = funded_state()
    update = deposit_update(state, node=E, user=2 * E, initiator=USER.address)
    _, signature = validation.initiate_update(
        state, update, USER, context=context(deposits={ETH: (E, 2 * E)})
    )

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, update, signature, context=context(deposits={ETH: (E, 2 * E)}))

    assert refused.value.code == "unauthorized"


def test_the_nodes_own_withdraw_transfer_and_an_honest_deposit_credit_are_accepted():
    state = funded_state()
    reclaim = create_update(
        state,
        initiator=NODE.address,
        definition=WITHDRAW,
        encoded_state=withdraw_state(state, initiator=NODE, amount=E // 2, recipient=NODE.address),
        amount=E // 2,
    )
    credit = deposit_update(state, node=2 * E, user=E)

    after_reclaim = policy.check_node_proposal(
        state, reclaim, node_signs(state, reclaim)[1], context=context()
    )
    after_credit = policy.check_node_proposal(
        state,
        credit,
        node_signs(state, credit, chain=(2 * E, E))[1],
        context=context(deposits={ETH: (2 * E, E)}),
    )

    assert after_reclaim.balances == ((E // 2, E),)
    assert after_credit.balances == ((2 * E, E),)


# -- the client itself: refusals send nothing ---------------------------------------------------------


class RecordingApi:
    """Stands in for the node's REST API: records what the client sends."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        self.posts.append((path, body))
        raise AssertionError("the client must not send anything for a refused proposal")


class ChainReading:
    def __init__(self, totals: tuple[int, int]) -> None:
        self.totals = totals

    def block_number(self) -> int:
        return 7

    def deposit_totals(self, channel_address: str, asset_id: str, block: int) -> tuple[int, int]:
        return self.totals


def offline_client(state: ChannelState, chain_totals: tuple[int, int]) -> tuple[AsyncClient, RecordingApi]:
    """A client holding `state`, as if connected, without a node or a chain."""
    from connext.protocol.encoding import keccak256

    client = AsyncClient(
        "http://node.invalid", keccak256(b"connext-py/tests/user"), store_path=None, chain_rpc_url=None
    )
    client._config = {"chainId": str(CHAIN_ID), "nodeAddress": NODE.address, "supportedAssets": [ETH]}
    client._definitions = dict(DEFINITIONS)
    client._channel_address = state.channel_address
    client._signed = SignedState(state, signing.sign_state(state, NODE), signing.sign_state(state, USER))
    api = RecordingApi()
    client._api = api  # type: ignore[assignment]
    client._chain = ChainReading(chain_totals)  # type: ignore[assignment]
    return client, api


def test_the_client_sends_no_countersignature_for_a_proposal_that_overstates_the_chain():
    state = funded_state()
    client, api = offline_client(state, chain_totals=(E, E))
    update = deposit_update(state, node=E, user=5 * E)
    _, node_signature = node_signs(state, update, chain=(E, 5 * E))
    refusals: list[dict] = []
    client.on("update.refused", refusals.append)

    asyncio.run(
        client._answer_proposal_locked(
            {
                "update": serialization.update_to_json(update),
                "nodeSignature": serialization.hex_bytes(node_signature),
            }
        )
    )

    assert api.posts == []
    assert [r["code"] for r in refusals] == ["deposit_exceeds_chain"]
    assert client.get_channel()["nonce"] == state.nonce
    assert client.get_free_balance(ETH) == {"user": E, "node": E}
