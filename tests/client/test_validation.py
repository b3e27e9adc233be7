"""The client signs only what it derived itself: node proposals that move money wrongly are refused,
and nothing is sent to the node for them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

import pytest

from connext.client import policy
from connext.client.async_client import AsyncClient
from connext.client.store import SignedState
from connext.errors import NodeUnavailableError, ValidationError
from connext.protocol import meta as transfer_meta
from connext.protocol import serialization, signing, validation
from connext.protocol.definitions import PreimageResolver
from connext.protocol.encoding import ZERO_BYTES32, keccak256
from connext.protocol.types import ChannelState, Update
from tests.protocol.protocol_helpers import (
    CHAIN_ID,
    DEFINITIONS,
    ETH,
    HASHLOCK,
    LINKED,
    NODE,
    NOW,
    STRANGER,
    USER,
    WITHDRAW,
    context,
    create_update,
    deposit_update,
    funded_state,
    hashlock_state,
    linked_create,
    linked_state,
    preimage_for,
    resolve_update,
    swap_update,
    two_asset_state,
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


def incoming(state: ChannelState, definition: str, encoded_state: bytes, meta: dict[str, Any]) -> Update:
    """The node's transfer to the user for a payment, committing to `meta`."""
    return replace(
        create_update(
            state, initiator=NODE.address, definition=definition, encoded_state=encoded_state, amount=E // 2
        ),
        meta_hash=transfer_meta.meta_hash(meta),
    )


def test_an_incoming_payment_whose_meta_hashes_right_is_accepted_and_other_meta_is_refused():
    state = funded_state()
    meta = {
        "sender": STRANGER.address,
        "paymentId": "0x" + keccak256(b"payment" + bytes([state.nonce])).hex(),
    }
    update = incoming(state, LINKED, linked_state(preimage_for("x")), meta)
    _, node_signature = node_signs(state, update)

    accepted = policy.check_node_proposal(state, update, node_signature, context=context(), meta=meta)
    with pytest.raises(ValidationError) as swapped:
        policy.check_node_proposal(
            state, update, node_signature, context=context(), meta={**meta, "sender": NODE.address}
        )
    with pytest.raises(ValidationError) as missing:
        policy.check_node_proposal(state, update, node_signature, context=context())

    assert accepted.balances == ((E // 2, E),)
    assert (swapped.value.code, missing.value.code) == ("bad_meta", "bad_meta")


def test_meta_naming_another_payment_is_refused():
    state = funded_state()
    meta = {"paymentId": "0x" + "00" * 32}
    update = incoming(state, LINKED, linked_state(preimage_for("x")), meta)

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, update, node_signs(state, update)[1], context=context(), meta=meta)

    assert refused.value.code == "bad_meta"


def test_an_incoming_hashlock_about_to_expire_is_refused():
    state = funded_state()
    soon = incoming(state, HASHLOCK, hashlock_state(preimage_for("h"), NOW + 30), {})
    later = incoming(state, HASHLOCK, hashlock_state(preimage_for("h"), NOW + 3600), {})

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, soon, node_signs(state, soon)[1], context=context(), min_window=60)
    policy.check_node_proposal(state, later, node_signs(state, later)[1], context=context(), min_window=60)

    assert refused.value.code == "expiring"


def test_an_incoming_hashlock_expiring_inside_the_default_window_is_refused():
    state = funded_state()
    inside = incoming(
        state, HASHLOCK, hashlock_state(preimage_for("h"), NOW + policy.DEFAULT_MIN_WINDOW - 1), {}
    )
    at_edge = incoming(
        state, HASHLOCK, hashlock_state(preimage_for("h"), NOW + policy.DEFAULT_MIN_WINDOW), {}
    )

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, inside, node_signs(state, inside)[1], context=context())
    policy.check_node_proposal(state, at_edge, node_signs(state, at_edge)[1], context=context())

    assert refused.value.code == "expiring"


@pytest.mark.parametrize("kind", [LINKED, HASHLOCK, WITHDRAW])
def test_a_node_transfer_with_a_one_second_window_is_refused_whatever_its_definition(kind):
    state = funded_state()
    encoded = {
        LINKED: linked_state(preimage_for("x")),
        HASHLOCK: hashlock_state(preimage_for("x"), NOW + 7 * 24 * 3600),
        WITHDRAW: withdraw_state(state, initiator=NODE, amount=E // 2, recipient=NODE.address),
    }[kind]
    update = replace(incoming(state, kind, encoded, {}), transfer_timeout=1)

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, update, node_signs(state, update)[1], context=context())

    assert (refused.value.code, refused.value.field) == ("window_too_short", "transfer_timeout")


def test_a_transfer_window_as_long_as_the_watcher_needs_is_accepted_and_one_second_less_is_not():
    state = funded_state()
    window = policy.min_window(poll_seconds=2, confirmations=1, block_seconds=1, margin_seconds=60)
    enough = replace(incoming(state, LINKED, linked_state(preimage_for("x")), {}), transfer_timeout=window)
    short = replace(enough, transfer_timeout=window - 1)

    policy.check_node_proposal(
        state, enough, node_signs(state, enough)[1], context=context(), min_window=window
    )
    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(
            state, short, node_signs(state, short)[1], context=context(), min_window=window
        )

    assert window == 63
    assert refused.value.code == "window_too_short"


def test_the_default_window_is_the_watchers_poll_three_blocks_and_a_quarter_hour_well_below_a_payments():
    from connext.client.async_client import PAYMENT_TRANSFER_TIMEOUT
    from connext.client.watcher import WatchOptions

    assert policy.DEFAULT_MIN_WINDOW == WatchOptions().min_window_seconds == 5 + 3 * 12 + 300
    assert WatchOptions(poll_seconds=1, confirmations=0, margin_seconds=0).min_window_seconds == 1
    # An honest node gives the receiver the sender's window minus 3 routing reactions (3 h by default).
    assert policy.DEFAULT_MIN_WINDOW < PAYMENT_TRANSFER_TIMEOUT - 3 * 3600


def test_the_nodes_resolve_of_the_users_transfer_needs_a_resolver_the_definition_accepts():
    state = funded_state()
    preimage = preimage_for("mine")
    create = linked_create(state, initiator=USER.address, amount=E // 4, preimage=preimage)
    with_transfer = validation.initiate_update(state, create, USER, context=context())[0]
    transfer_id = with_transfer.transfers[0].transfer_id

    def proposal(resolver: bytes) -> Update:
        return resolve_update(
            with_transfer, transfer_id=transfer_id, initiator=NODE.address, resolver=resolver
        )

    wrong = proposal(PreimageResolver(preimage_for("guess")).encode())
    wrong_signature = signing.sign_state(replace(with_transfer, nonce=with_transfer.nonce + 1), NODE)
    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(with_transfer, wrong, wrong_signature, context=context())
    paid = proposal(PreimageResolver(preimage).encode())
    refund = proposal(PreimageResolver(ZERO_BYTES32).encode())

    after_paid = policy.check_node_proposal(
        with_transfer, paid, node_signs(with_transfer, paid)[1], context=context()
    )
    after_refund = policy.check_node_proposal(
        with_transfer, refund, node_signs(with_transfer, refund)[1], context=context()
    )

    assert refused.value.code == "bad_resolver"
    assert after_paid.balances == ((E + E // 4, E - E // 4),)
    assert after_refund.balances == ((E, E),)


def test_an_update_initiated_by_the_user_is_not_a_node_proposal():
    state = funded_state()
    update = deposit_update(state, node=E, user=2 * E, initiator=USER.address)
    _, signature = validation.initiate_update(
        state, update, USER, context=context(deposits={ETH: (E, 2 * E)})
    )

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, update, signature, context=context(deposits={ETH: (E, 2 * E)}))

    assert refused.value.code == "unauthorized"


@pytest.mark.parametrize("give_amount", [1, E // 2])
def test_a_swap_the_node_proposes_is_refused_at_any_rate_though_the_protocol_accepts_it(give_amount):
    state = two_asset_state()
    update = swap_update(state, initiator=NODE.address, give_amount=give_amount, take_amount=1)
    new, signature = validation.initiate_update(state, update, NODE, context=context())
    assert validation.validate_update(state, update, signature, context=context()) == new

    with pytest.raises(ValidationError) as refused:
        policy.check_node_proposal(state, update, signature, context=context())

    assert refused.value.code == "unsupported_update"


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


def offline_client(
    state: ChannelState, chain_totals: tuple[int, int], **options: Any
) -> tuple[AsyncClient, RecordingApi]:
    """A client holding `state`, as if connected, without a node or a chain."""
    from connext.protocol.encoding import keccak256

    client = AsyncClient(
        "http://node.invalid",
        keccak256(b"connext-py/tests/user"),
        store_path=None,
        chain_rpc_url=None,
        **options,
    )
    client._core.config = {"chainId": str(CHAIN_ID), "nodeAddress": NODE.address, "supportedAssets": [ETH]}
    client._core.definitions = dict(DEFINITIONS)
    client._core.channel_address = state.channel_address
    client._core.signed = SignedState(state, signing.sign_state(state, NODE), signing.sign_state(state, USER))
    api = RecordingApi()
    client._core.node_api = api  # type: ignore[assignment]
    client._core.chain = ChainReading(chain_totals)  # type: ignore[assignment]
    return client, api


def test_the_client_sends_no_countersignature_for_a_proposal_that_overstates_the_chain():
    state = funded_state()
    client, api = offline_client(state, chain_totals=(E, E))
    update = deposit_update(state, node=E, user=5 * E)
    _, node_signature = node_signs(state, update, chain=(E, 5 * E))
    refusals: list[dict] = []
    client.on("update.refused", refusals.append)

    asyncio.run(
        client._exchange.answer_proposal_locked(
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


def test_the_client_sends_no_countersignature_for_a_transfer_with_a_one_second_window():
    state = funded_state()
    client, api = offline_client(state, chain_totals=(E, E))
    meta = {"sender": STRANGER.address}
    update = replace(incoming(state, LINKED, linked_state(preimage_for("x")), meta), transfer_timeout=1)
    refusals: list[dict] = []
    client.on("update.refused", refusals.append)

    asyncio.run(
        client._exchange.answer_proposal_locked(
            {
                "update": serialization.update_to_json(update),
                "nodeSignature": serialization.hex_bytes(node_signs(state, update)[1]),
                "meta": meta,
            }
        )
    )

    assert api.posts == []
    assert [r["code"] for r in refusals] == ["window_too_short"]
    assert client.get_channel()["nonce"] == state.nonce
    assert client._core.store.payments() == []


def test_the_client_opens_no_channel_whose_dispute_timeout_its_watcher_cannot_answer_in():
    state = funded_state()
    client, api = offline_client(state, chain_totals=(0, 0))
    client._core.config = {**client._core.config, "disputeTimeout": "60"}

    with pytest.raises(ValidationError) as refused:
        asyncio.run(client._exchange.open_locked())

    assert (refused.value.code, refused.value.field) == ("window_too_short", "timeout")
    assert api.posts == []


def test_the_client_builds_no_hashlock_expiring_inside_its_window_and_no_window_longer_than_its_payments():
    from connext.client.watcher import WatchOptions
    from connext.errors import InvalidArgumentError

    state = funded_state()
    client, api = offline_client(state, chain_totals=(0, 0))
    soon = int(time.time()) + policy.DEFAULT_MIN_WINDOW - 10

    with pytest.raises(InvalidArgumentError) as too_soon:
        asyncio.run(
            client.conditional_transfer(
                "hashlock", E // 10, STRANGER.address, lock_hash=preimage_for("h"), expiry=soon
            )
        )
    with pytest.raises(InvalidArgumentError) as too_long:
        offline_client(state, chain_totals=(0, 0), watch_options=WatchOptions(margin_seconds=2 * 86_400))

    assert too_soon.value.code == "window_too_short"
    assert too_long.value.code == "invalid_argument"
    assert api.posts == []


def test_the_client_signs_no_transfer_of_its_own_with_a_window_shorter_than_its_own():
    state = funded_state()
    client, _ = offline_client(state, chain_totals=(0, 0))
    update = replace(
        linked_create(state, initiator=USER.address, amount=E // 4, preimage=preimage_for("o")),
        transfer_timeout=60,
    )

    with pytest.raises(ValidationError) as refused:
        client._exchange._sign_own(update, {})

    assert refused.value.code == "window_too_short"
    assert client._core.store.pending(state.channel_address) is None


def _resume_proposal() -> tuple[ChannelState, Any, bytes, Any]:
    from connext.protocol.types import AssetDefund, ChainDispute, ResumeUpdate

    state = funded_state()
    payout = (state.balances[0][0], state.balances[0][1] + 5)  # 5 wei arrived after the state
    dispute = ChainDispute(
        state_hash=state.state_hash,
        defund_expiry=NOW,
        chain_time=NOW,
        defunds={ETH: AssetDefund(asset_id=ETH, defund_nonce=1, payout=payout)},
    )
    update = ResumeUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=NODE.address,
        defunds=(dispute.defunds[ETH],),
    )
    _, node_signature = validation.initiate_update(
        state, update, NODE, context=replace(context(), dispute=dispute)
    )
    return state, update, node_signature, dispute


def test_the_nodes_resume_is_signed_only_against_the_clients_own_reading_of_the_dispute():
    state, update, node_signature, dispute = _resume_proposal()
    with pytest.raises(ValidationError) as unread:
        policy.check_node_proposal(state, update, node_signature, context=context())
    assert unread.value.code == "no_chain_reading"
    new = policy.check_node_proposal(
        state, update, node_signature, context=replace(context(), dispute=dispute)
    )
    assert new.balances == ((0, 0),)
    assert new.processed_deposits == ((state.processed_deposits[0][0], state.processed_deposits[0][1] + 5),)
    # The chain paid the user less than the node claims: the client's own reading disagrees.
    paid_less = replace(dispute, defunds={ETH: replace(dispute.defunds[ETH], payout=(10**18, 10**18))})
    with pytest.raises(ValidationError) as mismatch:
        policy.check_node_proposal(
            state, update, node_signature, context=replace(context(), dispute=paid_less)
        )
    assert mismatch.value.code == "dispute_mismatch"
    early = replace(dispute, chain_time=NOW - 1)
    with pytest.raises(ValidationError) as not_over:
        policy.check_node_proposal(state, update, node_signature, context=replace(context(), dispute=early))
    assert not_over.value.code == "dispute_not_over"


class NodeBackSoon:
    """Stands in for the node's API while its database restarts: the first countersignature of its
    proposal fails (a 5xx), later ones are taken; the channel read shows the proposal until then."""

    def __init__(self, state: ChannelState, proposal: dict[str, Any], proposed: ChannelState) -> None:
        self.state, self.proposal, self.proposed = state, proposal, proposed
        self.countersigns = 0
        self.answered = asyncio.Event()

    def _signed(self, state: ChannelState, user_signature: bytes) -> dict[str, Any]:
        return {
            "channelAddress": state.channel_address,
            "state": serialization.channel_state_to_json(state),
            "nodeSignature": serialization.hex_bytes(signing.sign_state(state, NODE)),
            "userSignature": serialization.hex_bytes(user_signature),
        }

    async def get(self, path: str, **params: str) -> Any:
        assert path == "/api/channel", path
        if self.answered.is_set():
            return {**self._signed(self.proposed, signing.sign_state(self.proposed, USER)), "proposal": None}
        return {**self._signed(self.state, signing.sign_state(self.state, USER)), "proposal": self.proposal}

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        assert path == "/api/channel/countersign", path
        self.countersigns += 1
        if self.countersigns == 1:
            raise NodeUnavailableError("node_unavailable", f"POST {path}: the node answered 500")
        self.answered.set()
        return self._signed(self.proposed, serialization.parse_bytes(body["signature"], field="signature"))


def test_a_proposal_whose_answer_the_node_could_not_take_is_answered_again_once_it_is_back():
    """Found by bench/chaos.py: Postgres restarting, the node's push of a proposal arrived but the
    countersignature failed with a 5xx; the client dropped it, and the user's channel stayed busy (the
    payments to and from the user waiting) until the node's sweep pushed the proposal again."""
    state = funded_state()
    client, _ = offline_client(state, chain_totals=(2 * E, E))
    update = deposit_update(state, node=2 * E, user=E)  # the node's deposit, as the chain shows
    proposed, node_signature = node_signs(state, update, chain=(2 * E, E))
    proposal = {
        "update": serialization.update_to_json(update),
        "nodeSignature": serialization.hex_bytes(node_signature),
    }
    node = NodeBackSoon(state, proposal, proposed)
    client._core.node_api = node  # type: ignore[assignment]

    async def scenario() -> None:
        inbox = asyncio.ensure_future(client._session._process_inbox())
        await client._core.inbox.put({"type": "event", "event": "update.proposed", "payload": proposal})
        try:
            await asyncio.wait_for(node.answered.wait(), 10)
        finally:
            inbox.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await inbox

    asyncio.run(scenario())
    assert node.countersigns == 2
    assert client.get_channel()["nonce"] == proposed.nonce
    assert client.get_free_balance(ETH) == {"user": E, "node": 2 * E}


class NodeMissedTheAnswer:
    """Stands in for the node's API after a countersignature of its proposal was lost on the way (a
    5xx): the proposal stays open; an update of the user's that carries the answer is taken."""

    def __init__(self, state: ChannelState, proposal: dict[str, Any], proposed: ChannelState) -> None:
        self.state, self.proposal, self.proposed = state, proposal, proposed
        self.updates: list[dict[str, Any]] = []

    async def get(self, path: str, **params: str) -> Any:
        assert path == "/api/channel", path
        return {
            "channelAddress": self.state.channel_address,
            "state": serialization.channel_state_to_json(self.state),
            "nodeSignature": serialization.hex_bytes(signing.sign_state(self.state, NODE)),
            "userSignature": serialization.hex_bytes(signing.sign_state(self.state, USER)),
            "proposal": self.proposal,
        }

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        if path == "/api/channel/countersign":
            raise NodeUnavailableError("node_unavailable", f"POST {path}: the node answered 500")
        assert path == "/api/channel/updates", path
        self.updates.append(body)
        update = serialization.update_from_json(body["update"])
        signature = serialization.parse_bytes(body["signature"], field="signature")
        new = validation.validate_update(
            self.proposed, update, signature, context=context(deposits={ETH: (2 * E, 2 * E)})
        )
        return {"nodeSignature": serialization.hex_bytes(signing.sign_state(new, NODE))}


def test_a_countersignature_whose_answer_was_lost_goes_again_with_the_users_next_update_and_no_other():
    """The countersigned proposal is in the store before its signature leaves; when the answer is lost
    the user's next update carries that same countersignature (the same state, the same bytes) instead
    of signing a second state at the proposal's nonce."""
    state = funded_state()
    client, _ = offline_client(state, chain_totals=(2 * E, E))
    update = deposit_update(state, node=2 * E, user=E)
    proposed, node_signature = node_signs(state, update, chain=(2 * E, E))
    proposal = {
        "update": serialization.update_to_json(update),
        "nodeSignature": serialization.hex_bytes(node_signature),
    }
    node = NodeMissedTheAnswer(state, proposal, proposed)
    client._core.node_api = node  # type: ignore[assignment]
    store = client._core.store

    def build(base: ChannelState) -> tuple[Update, dict[str, tuple[int, int]]]:
        own = deposit_update(base, node=2 * E, user=2 * E, initiator=USER.address)
        return own, {ETH: (2 * E, 2 * E)}

    async def scenario() -> None:
        async with client._core.lock:
            with pytest.raises(NodeUnavailableError):
                await client._exchange.answer_proposal_locked(proposal)
            held = store.countersigned(state.channel_address)
            assert held is not None
            assert held.state == proposed
            await client._exchange.propose_locked(build)
            (sent,) = node.updates
            assert sent["answer"] == {
                "nonce": str(proposed.nonce),
                "signature": serialization.hex_bytes(held.user_signature),
            }
            assert sent["update"]["nonce"] == str(proposed.nonce + 1)

    asyncio.run(scenario())
    assert client.get_channel()["nonce"] == proposed.nonce + 1
    assert client.get_free_balance(ETH) == {"user": 2 * E, "node": 2 * E}
    assert store.countersigned(state.channel_address) is None
    assert store.latest(state.channel_address).state.nonce == proposed.nonce + 1
