"""The swap update: two assets exchanged between node and user in one state, each conserved.

Property tests run on random valid states (three assets, some of each locked in active transfers) and
random swaps, valid or not, checked against an independent statement of the rules.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connext.protocol import invariants, signing
from connext.protocol import serialization as sz
from connext.protocol.encoding import MAX_UINT256
from connext.protocol.errors import ProtocolError
from connext.protocol.types import ChannelState, SwapUpdate
from connext.protocol.updates import apply_update
from connext.protocol.validation import countersign, initiate_update, validate_update
from tests.protocol import protocol_helpers as h
from tests.protocol.strategies import PROTOCOL_SETTINGS

OTHER_TOKEN = h._address("connext-py/tests/other-token")
NOT_IN_CHANNEL = h._address("connext-py/tests/not-in-channel")
ASSETS = (h.ETH, h.TOKEN, OTHER_TOKEN)
E = 10**18
# Enough examples that every refusal of the rules comes up several times.
SWAP_SETTINGS = settings(PROTOCOL_SETTINGS, max_examples=200)


def _refused(state: ChannelState, update: SwapUpdate) -> ProtocolError:
    before = sz.channel_state_to_json(state)
    with pytest.raises(ProtocolError) as raised:
        apply_update(state, update, context=h.context())
    assert sz.channel_state_to_json(state) == before
    return raised.value


def test_the_users_swap_moves_its_eth_to_the_node_and_the_nodes_tokens_to_it_in_one_state():
    state = h.two_asset_state(eth=(E, 2 * E), token=(500, 0))
    update = h.swap_update(state, initiator=h.USER.address, give_amount=E // 10, take_amount=100)

    new = apply_update(state, update, context=h.context())

    assert new.nonce == state.nonce + 1
    assert new.balances == ((E + E // 10, 2 * E - E // 10), (400, 100))
    assert new.processed_deposits == state.processed_deposits
    assert new.defund_nonces == state.defund_nonces
    assert new.transfers == state.transfers


def test_the_nodes_swap_moves_the_same_way_from_its_side():
    state = h.two_asset_state(eth=(E, 2 * E), token=(500, 60))
    update = h.swap_update(
        state, initiator=h.NODE.address, give_asset=h.TOKEN, give_amount=7, take_asset=h.ETH, take_amount=3
    )

    new = apply_update(state, update, context=h.context())

    assert new.balances == ((E + 3, 2 * E - 3), (493, 67))


def test_a_swap_is_signed_by_one_side_and_countersigned_by_the_other_over_the_same_hash():
    state = h.two_asset_state()
    update = h.swap_update(state, initiator=h.USER.address, give_amount=5, take_amount=9)

    new, user_signature = initiate_update(state, update, h.USER, context=h.context())
    countersigned, node_signature = countersign(state, update, user_signature, h.NODE, context=h.context())

    assert countersigned == new
    assert signing.recover_signer(new, user_signature) == h.USER.address
    assert signing.recover_signer(new, node_signature) == h.NODE.address
    with pytest.raises(ProtocolError) as raised:
        validate_update(state, update, node_signature, context=h.context())
    assert raised.value.code == "bad_signature"


def test_a_swap_travels_as_json_with_decimal_amounts_and_comes_back_equal():
    state = h.two_asset_state()
    update = h.swap_update(state, initiator=h.USER.address, give_amount=MAX_UINT256, take_amount=1)

    document = sz.update_to_json(update)

    assert document == {
        "type": "swap",
        "channelAddress": h.CHANNEL,
        "nonce": str(state.nonce + 1),
        "initiator": h.USER.address,
        "giveAssetId": h.ETH,
        "giveAmount": str(MAX_UINT256),
        "takeAssetId": h.TOKEN,
        "takeAmount": "1",
    }
    assert sz.update_from_json(document) == update
    for key, value in (("giveAmount", "01"), ("takeAmount", 1), ("takeAssetId", "0x12")):
        with pytest.raises(ProtocolError) as raised:
            sz.update_from_json({**document, key: value})
        assert (raised.value.code, raised.value.field) == ("malformed", key)
    with pytest.raises(ProtocolError) as raised:
        sz.update_from_json({**document, "assetId": h.ETH})
    assert raised.value.code == "malformed"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"give_amount": 0}, "amount_out_of_range", "give_amount"),
        ({"take_amount": 0}, "amount_out_of_range", "take_amount"),
        ({"give_amount": -1}, "amount_out_of_range", "give_amount"),
        ({"take_amount": MAX_UINT256 + 1}, "amount_out_of_range", "take_amount"),
        ({"take_asset": h.ETH}, "same_asset", "take_asset"),
        ({"give_asset": NOT_IN_CHANNEL}, "unknown_asset", "give_asset"),
        ({"take_asset": NOT_IN_CHANNEL}, "unknown_asset", "take_asset"),
        ({"give_amount": 2 * E + 1}, "insufficient_balance", "give_amount"),
        ({"take_amount": 501}, "insufficient_balance", "take_amount"),
        ({"give_asset": "0x" + "ab" * 20}, "malformed", "give_asset"),
        ({"initiator": h.STRANGER.address}, "unauthorized", "initiator"),
    ],
)
def test_a_bad_swap_is_refused_with_its_code_naming_the_field_and_changes_nothing(change, code, field):
    state = h.two_asset_state(eth=(E, 2 * E), token=(500, 0))
    update = replace(h.swap_update(state, initiator=h.USER.address, give_amount=1, take_amount=1), **change)

    error = _refused(state, update)

    assert (error.code, error.field) == (code, field)


def test_a_swap_at_a_stale_or_skipping_nonce_is_refused():
    state = h.two_asset_state()
    update = h.swap_update(state, initiator=h.USER.address, give_amount=1, take_amount=1)

    assert _refused(state, replace(update, nonce=state.nonce)).code == "stale_nonce"
    assert _refused(state, replace(update, nonce=state.nonce + 2)).code == "nonce_gap"


def test_a_swap_crediting_a_balance_above_uint256_is_refused():
    state = h.two_asset_state(eth=(MAX_UINT256, MAX_UINT256), token=(1, 1))
    update = h.swap_update(state, initiator=h.USER.address, give_amount=1, take_amount=1)

    assert _refused(state, update).code == "amount_out_of_range"


def test_a_forged_swap_result_breaks_the_transition_invariants():
    state = h.two_asset_state(eth=(E, E), token=(500, 500))
    update = h.swap_update(state, initiator=h.USER.address, give_amount=10, take_amount=20)
    new = apply_update(state, update, context=h.context())
    (eth_node, eth_user), (token_node, token_user) = new.balances
    forgeries = [
        replace(new, balances=((eth_node + 1, eth_user - 1), (token_node, token_user))),  # another rate
        replace(new, balances=((eth_node, eth_user), (token_node + 1, token_user))),  # a token made up
        replace(new, balances=state.balances),  # nothing moved
        replace(new, processed_deposits=((E + 10, E - 10), new.processed_deposits[1])),
    ]
    invariants.check_transition(state, new, update)
    for forged in forgeries:
        with pytest.raises(ProtocolError) as raised:
            invariants.check_transition(state, forged, update)
        assert raised.value.code == "invariant_violated"


# -- properties ------------------------------------------------------------------------------------

funding = st.tuples(st.integers(0, 10**6), st.integers(0, 10**6))


@st.composite
def valid_states(draw: st.DrawFn) -> ChannelState:
    """A channel holding three assets, each with random deposits of both sides credited, and perhaps a
    Linked transfer locking part of a side's balance."""
    state = h.setup_state()
    for asset in ASSETS:
        node, user = draw(funding)
        if node or user:
            update = h.deposit_update(state, asset=asset, node=node, user=user)
            state = apply_update(state, update, context=h.context(deposits={asset: (node, user)}))
    for index, asset in enumerate(state.asset_ids):
        side = draw(st.sampled_from((0, 1)))
        held = state.balances[index][side]
        amount = draw(st.integers(0, held))
        if amount:
            initiator = (h.NODE, h.USER)[side].address
            preimage = h.preimage_for(f"swap/{asset}")
            create = h.linked_create(
                state, initiator=initiator, amount=amount, preimage=preimage, asset=asset
            )
            state = apply_update(state, create, context=h.context())
    return state


@st.composite
def swaps(draw: st.DrawFn, state: ChannelState) -> SwapUpdate:
    """Mostly valid swaps of `state`; the rest with one flaw: an asset not in it, one asset for itself,
    zero, more than a side holds, a stranger, a wrong nonce."""
    flaw = draw(st.sampled_from(("none",) * 6 + ("unknown", "same", "zero", "too_much", "stranger", "nonce")))
    initiator = draw(st.sampled_from((h.STRANGER,) if flaw == "stranger" else (h.NODE, h.USER)))
    held = list(state.asset_ids)
    give_asset = draw(st.sampled_from(held)) if held else NOT_IN_CHANNEL
    others = [asset for asset in held if asset != give_asset]
    take_asset = draw(st.sampled_from(others)) if others else NOT_IN_CHANNEL
    if flaw == "unknown":
        give_asset, take_asset = draw(
            st.sampled_from(((NOT_IN_CHANNEL, take_asset), (give_asset, NOT_IN_CHANNEL)))
        )
    elif flaw == "same":
        take_asset = give_asset
    payer = 0 if initiator is h.NODE else 1

    def amount(asset: str, side: int) -> int:
        index = state.asset_index(asset)
        balance = state.balances[index][side] if index is not None else 0
        if flaw == "too_much":
            return draw(st.integers(balance, balance + 2))
        if flaw == "zero":
            return draw(st.sampled_from((0, max(balance, 1))))
        return draw(st.integers(1, max(balance, 1)))

    return SwapUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + (draw(st.sampled_from((0, 2))) if flaw == "nonce" else 1),
        initiator=initiator.address,
        give_asset=give_asset,
        give_amount=amount(give_asset, payer),
        take_asset=take_asset,
        take_amount=amount(take_asset, 1 - payer),
    )


def expected_refusal(state: ChannelState, swap: SwapUpdate) -> str | None:
    """The rules, stated independently of the core, in the order it checks them."""
    if swap.nonce <= state.nonce:
        return "stale_nonce"
    if swap.nonce > state.nonce + 1:
        return "nonce_gap"
    if swap.initiator not in (state.node, state.user):
        return "unauthorized"
    if swap.give_amount == 0 or swap.take_amount == 0:
        return "amount_out_of_range"
    if swap.give_asset == swap.take_asset:
        return "same_asset"
    if swap.give_asset not in state.asset_ids or swap.take_asset not in state.asset_ids:
        return "unknown_asset"
    payer = 0 if swap.initiator == state.node else 1
    give = state.balances[state.asset_ids.index(swap.give_asset)]
    take = state.balances[state.asset_ids.index(swap.take_asset)]
    if give[payer] < swap.give_amount or take[1 - payer] < swap.take_amount:
        return "insufficient_balance"
    return None


def _totals(state: ChannelState) -> dict[str, int]:
    return {asset: sum(state.balances[i]) + state.locked(asset) for i, asset in enumerate(state.asset_ids)}


@SWAP_SETTINGS
@given(data=st.data())
def test_a_random_swap_is_accepted_exactly_when_the_rules_allow_and_refusals_change_nothing(data):
    state = data.draw(valid_states())
    swap = data.draw(swaps(state))
    before = sz.channel_state_to_json(state)
    code = expected_refusal(state, swap)
    if code is not None:
        with pytest.raises(ProtocolError) as raised:
            apply_update(state, swap, context=h.context())
        assert raised.value.code == code
        assert sz.channel_state_to_json(state) == before
        return
    new = apply_update(state, swap, context=h.context())
    assert sz.channel_state_to_json(state) == before
    payer = 0 if swap.initiator == state.node else 1
    for index, asset in enumerate(state.asset_ids):
        delta = [new.balances[index][i] - state.balances[index][i] for i in (0, 1)]
        expected = [0, 0]
        if asset == swap.give_asset:
            expected[payer], expected[1 - payer] = -swap.give_amount, swap.give_amount
        elif asset == swap.take_asset:
            expected[1 - payer], expected[payer] = -swap.take_amount, swap.take_amount
        assert delta == expected
    assert _totals(new) == _totals(state)  # per asset: node + user + locked unchanged
    assert new.transfers == state.transfers
    assert new.processed_deposits == state.processed_deposits
    assert new.defund_nonces == state.defund_nonces
    assert new.asset_ids == state.asset_ids
    assert [new.withdrawn(a) for a in ASSETS] == [state.withdrawn(a) for a in ASSETS]


@SWAP_SETTINGS
@given(data=st.data())
def test_the_inverse_swap_by_either_side_restores_every_balance(data):
    state = data.draw(valid_states())
    swap = data.draw(swaps(state))
    if expected_refusal(state, swap) is not None:
        return
    new = apply_update(state, swap, context=h.context())
    # The responder gives back what it got and takes back what it gave; or the initiator does, its way.
    by_responder = replace(swap, nonce=new.nonce + 1, initiator=new.counterparty(swap.initiator))
    by_initiator = replace(
        swap,
        nonce=new.nonce + 1,
        give_asset=swap.take_asset,
        give_amount=swap.take_amount,
        take_asset=swap.give_asset,
        take_amount=swap.give_amount,
    )
    for inverse in (by_responder, by_initiator):
        restored = apply_update(new, inverse, context=h.context())
        assert restored == replace(state, nonce=state.nonce + 2)


@SWAP_SETTINGS
@given(data=st.data())
def test_both_sides_derive_the_same_signed_state_and_the_json_round_trips(data):
    state = data.draw(valid_states())
    swap = data.draw(swaps(state))
    if expected_refusal(state, swap) is not None:
        return
    signer = h.SIGNERS[swap.initiator]
    responder = h.SIGNERS[state.counterparty(swap.initiator)]
    new, signature = initiate_update(state, swap, signer, context=h.context())
    parsed = sz.update_from_json(sz.update_to_json(swap))
    countersigned, _ = countersign(state, parsed, signature, responder, context=h.context())
    assert countersigned == new
    assert sz.channel_state_from_json(sz.channel_state_to_json(new)) == new
