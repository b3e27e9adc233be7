"""Swaps through the node: a user's swap is refused until the node checks its rate; a swap the node
proposes is stored and its state rebuilt from the stored updates like any other."""

from __future__ import annotations

import pytest
from django.db import transaction

from channels_app.models import Channel, ChannelUpdate
from channels_app.services import channels
from connext.chain import channel_reads
from connext.protocol.types import SwapUpdate
from tests.channels_app.conftest import FUNDER_KEY
from tests.channels_app.test_collateral import mint
from tests.support.node_work import run_node_work
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db
E = 10**18


@pytest.fixture
def wallet(client, w3, deployments):
    """A channel where the user holds ETH and tokens and the node ETH collateral."""
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().status_code == 200
    mint(w3, deployments["TestToken"], wallet.state.channel_address, 5 * E)
    assert wallet.deposit_update(deployments["TestToken"]).status_code == 200
    assert wallet.post("/api/channel/collateral", {"assetId": ETH}).status_code == 202
    run_node_work()
    totals = channel_reads.deposit_totals(w3, wallet.state.channel_address, ETH, block="latest")
    wallet.countersign_proposal(deposits={ETH: (totals.node, totals.user)})
    assert wallet.state.balances[0][0] > 0
    return wallet


def test_a_users_swap_is_refused_as_not_offered_and_changes_nothing(wallet, deployments):
    state = wallet.state
    # One token wei for all the node's ETH: a rate the protocol core alone would let through.
    swap = SwapUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=wallet.address,
        give_asset=deployments["TestToken"],
        give_amount=1,
        take_asset=ETH,
        take_amount=state.balances[0][0],
    )
    derived, signature = wallet.sign(swap)
    assert derived.balances[0] == (0, sum(state.balances[0]))
    before = Channel.objects.values().get()
    records = ChannelUpdate.objects.count()

    response = wallet.send("/api/channel/updates", swap, signature)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "swap_not_offered"
    assert response.json()["error"]["message"] == "This node does not offer swaps yet."
    assert Channel.objects.values().get() == before
    assert ChannelUpdate.objects.count() == records
    latest = wallet.get("/api/channel").json()
    assert latest["state"]["nonce"] == str(state.nonce)
    assert latest["proposal"] is None


def test_a_swap_the_node_proposes_is_stored_once_countersigned_and_its_state_rebuilds(wallet, deployments):
    token = deployments["TestToken"]
    state = wallet.state
    swap = SwapUpdate(
        channel_address=state.channel_address,
        nonce=state.nonce + 1,
        initiator=state.node,
        give_asset=ETH,
        give_amount=10**15,
        take_asset=token,
        take_amount=3 * 10**18,
    )
    with transaction.atomic():
        channel = channels.lock_for_proposal(Channel.objects.get().pk)
        assert channel is not None
        channels.propose_locked(channel, swap)

    update, new = wallet.countersign_proposal()

    assert update == swap
    assert new.balances[0] == (state.balances[0][0] - 10**15, state.balances[0][1] + 10**15)
    assert new.balances[1] == (state.balances[1][0] + 3 * 10**18, state.balances[1][1] - 3 * 10**18)
    record = ChannelUpdate.objects.get(nonce=new.nonce)
    assert record.kind == "swap"
    assert record.initiator == state.node
    channel = Channel.objects.get()
    assert channel.nonce == new.nonce
    assert channels.state_at(channel, new.nonce) == new
    assert channels.state_at(channel, state.nonce) == state
