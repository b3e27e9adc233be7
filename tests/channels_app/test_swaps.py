"""Swaps through the node (docs/protocol.md, "Swaps"): a user's swap at the node's offer is countersigned
and recorded; every other one is refused with its code and changes nothing; the node deposits what a
swap pays out first when it holds too little; a swap the node proposes is stored like any other."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from django.core.cache import cache
from django.db import transaction
from django.test import override_settings
from eth_account import Account

from channels_app.models import Channel, ChannelUpdate, OnchainTransaction, Swap, SwapExposure
from channels_app.services import channels, swaps
from connext.chain import channel_reads
from connext.protocol.errors import ProtocolError
from connext.protocol.types import SwapUpdate
from connext_site import swap_config
from tests.channels_app.conftest import FUNDER_KEY, NODE_KEY
from tests.channels_app.test_collateral import mint
from tests.support.node_work import run_node_work
from tests.support.wallet import ETH, Wallet

pytestmark = pytest.mark.django_db
E = 10**18
MILLI = 10**15
PRICE = 2000  # TestToken per ETH
SPREAD_BPS = 30


def offer_json(**overrides) -> str:
    pair = {
        "base": "eth",
        "quote": "TestToken",
        "source": {"type": "fixed", "price": str(PRICE)},
        "spreadBps": SPREAD_BPS,
        "maxPerSwap": str(100 * MILLI),
        "maxPerDay": str(150 * MILLI),
    }
    document = {"pairs": [pair], "maxExposure": {"TestToken": str(400 * E)}}
    for key, value in overrides.items():
        (pair if key in pair else document)[key] = value
    return json.dumps(document)


@pytest.fixture
def offer(w3):
    """The node swaps ETH and TestToken at a fixed 2000 with a 0.3 % spread."""
    cache.delete_many([swaps.RATES_CACHE_KEY, swaps.PUSHED_CACHE_KEY])
    with override_settings(SWAPS=swap_config.parse(offer_json())):
        yield


def funded_wallet(client, w3, deployments) -> Wallet:
    """A channel where the user holds 1 ETH and 500 tokens and the node ETH collateral."""
    mint(w3, deployments["TestToken"], wallet_node(w3), 1000 * E)  # what the node pays swaps out of
    wallet = Wallet(client=client, w3=w3)
    wallet.log_in()
    wallet.open()
    wallet.send_eth(FUNDER_KEY, wallet.state.channel_address, E)
    assert wallet.deposit_update().status_code == 200
    mint(w3, deployments["TestToken"], wallet.state.channel_address, 500 * E)
    assert wallet.deposit_update(deployments["TestToken"]).status_code == 200
    assert wallet.post("/api/channel/collateral", {"assetId": ETH}).status_code == 202
    credit_node_deposit(wallet, w3, ETH)
    assert wallet.state.balances[0][0] > 0
    return wallet


def wallet_node(w3) -> str:
    return Account.from_key(NODE_KEY).address


def credit_node_deposit(wallet: Wallet, w3, asset_id: str) -> None:
    run_node_work()
    totals = channel_reads.deposit_totals(w3, wallet.state.channel_address, asset_id, block="latest")
    wallet.countersign_proposal(deposits={asset_id: (totals.node, totals.user)})


@pytest.fixture
def wallet(client, w3, deployments):
    return funded_wallet(client, w3, deployments)


def swap_update(wallet: Wallet, give_asset: str, give: int, take_asset: str, take: int) -> SwapUpdate:
    return SwapUpdate(
        channel_address=wallet.state.channel_address,
        nonce=wallet.state.nonce + 1,
        initiator=wallet.address,
        give_asset=give_asset,
        give_amount=give,
        take_asset=take_asset,
        take_amount=take,
    )


def send_swap(wallet: Wallet, give_asset: str, give: int, take_asset: str, take: int):
    update = swap_update(wallet, give_asset, give, take_asset, take)
    new, signature = wallet.sign(update)
    response = wallet.send("/api/channel/updates", update, signature)
    if response.status_code == 200:
        wallet.accept(response, new)
    return response


def offered(give: int, *, eth_to_token: bool = True) -> int:
    mid = Fraction(PRICE) if eth_to_token else Fraction(1, PRICE)
    offer = mid * Fraction(10_000 - SPREAD_BPS, 10_000)
    return give * offer.numerator // offer.denominator


def prepare(wallet: Wallet, give_asset: str, give: int, take_asset: str, take: int):
    return wallet.post(
        "/api/swap/prepare",
        {
            "giveAssetId": give_asset,
            "giveAmount": str(give),
            "takeAssetId": take_asset,
            "takeAmount": str(take),
        },
    )


def token_collateral(wallet: Wallet, w3, token: str, *, price: int = PRICE) -> None:
    """The node's token side, through the swap's own top-up."""
    take = MILLI * price * (10_000 - SPREAD_BPS) // 10_000
    assert prepare(wallet, ETH, MILLI, token, take).status_code == 202
    credit_node_deposit(wallet, w3, token)


def records() -> tuple:
    return (
        list(
            Channel.objects.values(
                "nonce", "latest_state", "node_signature", "user_signature", "pending_update"
            )
        ),
        ChannelUpdate.objects.count(),
        list(Swap.objects.values()),
        list(SwapExposure.objects.exclude(paid_out=0).values("asset_id", "paid_out")),
    )


# -- swaps that pass ----------------------------------------------------------------------------------


def test_a_swap_at_the_nodes_offer_is_countersigned_recorded_and_conserves_each_asset(
    offer, wallet, w3, deployments
):
    token = deployments["TestToken"]
    token_collateral(wallet, w3, token)
    before = wallet.state
    take = offered(10 * MILLI)  # 19.94 tokens for 0.01 ETH

    response = send_swap(wallet, ETH, 10 * MILLI, token, take)

    assert response.status_code == 200, response.json()
    after = wallet.state
    assert after.balances[0] == (before.balances[0][0] + 10 * MILLI, before.balances[0][1] - 10 * MILLI)
    assert after.balances[1] == (before.balances[1][0] - take, before.balances[1][1] + take)
    for index in range(2):
        assert sum(after.balances[index]) == sum(before.balances[index])
    row = Swap.objects.get()
    assert (row.nonce, row.give_asset, int(row.give_amount), row.take_asset, int(row.take_amount)) == (
        after.nonce,
        ETH,
        10 * MILLI,
        token,
        take,
    )
    assert row.mid_price == "2000/1"
    assert int(row.spread) == 10 * MILLI * PRICE - take  # 0.3 % of 20 tokens
    assert int(row.base_value) == 10 * MILLI
    exposure = {r.asset_id: int(r.paid_out) for r in SwapExposure.objects.all()}
    assert exposure == {token.lower(): take, ETH.lower(): -10 * MILLI}
    assert ChannelUpdate.objects.get(nonce=after.nonce).kind == "swap"
    channel = Channel.objects.get()
    assert channels.state_at(channel, after.nonce) == after


def test_a_swap_back_gives_eth_for_tokens_at_the_inverse_rate_less_the_spread(offer, wallet, w3, deployments):
    token = deployments["TestToken"]
    before = wallet.state
    take = offered(10 * E, eth_to_token=False)  # 10 tokens: 0.004985 ETH

    response = send_swap(wallet, token, 10 * E, ETH, take)

    assert response.status_code == 200, response.json()
    assert wallet.state.balances[0][1] == before.balances[0][1] + take
    assert wallet.state.balances[1][1] == before.balances[1][1] - 10 * E
    row = Swap.objects.get()
    assert row.mid_price == "1/2000"
    assert int(row.base_value) == take  # counted in ETH, the pair's base


def test_a_swap_taking_a_little_less_than_the_offer_is_accepted(offer, wallet, deployments):
    take = offered(10 * E, eth_to_token=False) * 98 // 100

    assert send_swap(wallet, deployments["TestToken"], 10 * E, ETH, take).status_code == 200


def test_the_rates_endpoint_lists_both_directions_with_the_spread_and_limits(offer, client, w3, deployments):
    answer = client.get("/api/swap/rates").json()

    by_give = {rate["giveAssetId"]: rate for rate in answer["rates"]}
    assert set(by_give) == {ETH, deployments["TestToken"]}
    sell = by_give[ETH]
    assert sell["takeAssetId"] == deployments["TestToken"]
    assert Fraction(int(sell["rate"]["numerator"]), int(sell["rate"]["denominator"])) == Fraction(
        PRICE * (10_000 - SPREAD_BPS), 10_000
    )
    assert sell["mid"] == {"numerator": str(PRICE), "denominator": "1"}
    assert sell["maxGive"] == str(100 * MILLI)
    assert by_give[deployments["TestToken"]]["maxGive"] == str(100 * MILLI * PRICE)
    assert sell["stale"] is False
    assert (answer["toleranceBps"], answer["staleSeconds"]) == (500, 300)


def test_without_swaps_configured_the_rates_are_empty(client, w3):
    assert client.get("/api/swap/rates").json()["rates"] == []


# -- refusals: each with its code, and nothing changes ----------------------------------------------------


def refused(wallet: Wallet, give_asset: str, give: int, take_asset: str, take: int, code: str, status: int):
    """Signed as the attacker would (a state its own core derives; one the core refuses is sent with
    any signature, as a user skipping its own checks would: the node checks its offer first)."""
    before = records()
    update = swap_update(wallet, give_asset, give, take_asset, take)
    try:
        _, signature = wallet.sign(update)
    except ProtocolError:
        signature = bytes(65)
    response = wallet.send("/api/channel/updates", update, signature)
    assert response.status_code == status, response.json()
    body = response.json()["error"]
    assert body["code"] == code, body
    assert body["message"]
    assert records() == before
    assert wallet.get("/api/channel").json()["proposal"] is None
    return body


def test_a_swap_of_a_pair_the_node_does_not_offer_is_refused(w3, wallet, deployments):
    # One token wei for all the node's ETH: a rate the protocol core alone would let through.
    body = refused(
        wallet, deployments["TestToken"], 1, ETH, wallet.state.balances[0][0], "swap_not_offered", 400
    )
    assert "does not offer swaps" in body["message"]


def test_a_swap_taking_more_than_the_offer_is_refused_with_the_offer(offer, wallet, deployments):
    take = offered(10 * E, eth_to_token=False)
    body = refused(wallet, deployments["TestToken"], 10 * E, ETH, take + 1, "rate_moved", 409)
    assert body["offered"] == str(take)
    assert body["rate"]["giveAssetId"] == deployments["TestToken"]


def test_a_swap_far_below_the_offer_is_refused_as_a_mistake(offer, wallet, deployments):
    take = offered(10 * E, eth_to_token=False) * 94 // 100  # 6 % below: past the 5 % tolerance
    refused(wallet, deployments["TestToken"], 10 * E, ETH, take, "below_tolerance", 400)


def test_a_swap_giving_more_than_the_user_holds_is_refused(offer, wallet, deployments):
    give = wallet.state.balances[1][1] + 1
    body = refused(wallet, deployments["TestToken"], give, ETH, 1, "insufficient_balance", 400)
    assert body["field"] == "give_amount"


def test_a_swap_paying_more_than_the_node_holds_is_refused_by_the_core(offer, wallet, w3, deployments):
    token = deployments["TestToken"]
    token_collateral(wallet, w3, token)
    held = wallet.state.balances[1][0]
    give = 50 * MILLI  # 99.7 tokens: more than the node's 20-odd in the channel
    assert offered(give) > held

    body = refused(wallet, ETH, give, token, offered(give), "insufficient_balance", 400)

    assert body["field"] == "take_amount"


def test_a_swap_over_the_per_swap_limit_is_refused_with_the_limit(offer, wallet, w3, deployments):
    token = deployments["TestToken"]
    give = 101 * MILLI * PRICE  # tokens worth 0.101 ETH: over the 0.1 ETH a swap may move
    body = refused(wallet, token, give, ETH, offered(give, eth_to_token=False), "swap_over_limit", 400)
    assert body["maxPerSwap"] == str(100 * MILLI)


def test_swaps_over_the_daily_limit_are_refused_with_what_is_left(offer, wallet, deployments):
    token = deployments["TestToken"]
    give = 80 * MILLI * PRICE  # 0.08 ETH worth, twice: over the 0.15 ETH a day
    assert send_swap(wallet, token, give, ETH, offered(give, eth_to_token=False)).status_code == 200
    eth_taken = offered(give, eth_to_token=False)

    body = refused(wallet, token, give, ETH, offered(give, eth_to_token=False), "swap_daily_limit", 400)

    assert body["remaining"] == str(150 * MILLI - eth_taken)


def test_a_swap_past_the_nodes_exposure_in_an_asset_is_refused(w3, wallet, deployments):
    token = deployments["TestToken"]
    cache.delete_many([swaps.RATES_CACHE_KEY, swaps.PUSHED_CACHE_KEY])
    with override_settings(SWAPS=swap_config.parse(offer_json(maxExposure={"eth": str(5 * MILLI)}))):
        give = 3 * MILLI * PRICE  # tokens for about 0.003 ETH, twice: the node pays out 0.006 ETH
        assert send_swap(wallet, token, give, ETH, offered(give, eth_to_token=False)).status_code == 200
        paid = offered(give, eth_to_token=False)

        body = refused(wallet, token, give, ETH, offered(give, eth_to_token=False), "exposure_limit", 409)

    assert body["available"] == str(5 * MILLI - paid)


def test_swaps_that_bring_the_exposure_back_pass_whatever_the_limit(w3, wallet, deployments):
    token = deployments["TestToken"]
    cache.delete_many([swaps.RATES_CACHE_KEY, swaps.PUSHED_CACHE_KEY])
    with override_settings(SWAPS=swap_config.parse(offer_json(maxExposure={"eth": "0"}))):
        give = 3 * MILLI * PRICE
        refused(wallet, token, give, ETH, offered(give, eth_to_token=False), "exposure_limit", 409)
        token_collateral(wallet, w3, token)  # ETH for tokens: the node takes ETH in

        response = send_swap(wallet, ETH, 5 * MILLI, token, offered(5 * MILLI))

    assert response.status_code == 200, response.json()


def test_a_swap_the_node_lacks_collateral_for_is_prepared_by_its_deposit_first(
    offer, wallet, w3, deployments
):
    token = deployments["TestToken"]
    take = offered(10 * MILLI)
    before = records()

    response = prepare(wallet, ETH, 10 * MILLI, token, take)

    assert response.status_code == 202, response.json()
    assert response.json()["needed"] == str(take)
    assert response.json()["requested"] is True
    assert records() == before  # nothing signed, swapped or counted
    deposit = OnchainTransaction.objects.get(pk=response.json()["transactionId"])
    assert (deposit.reason, deposit.asset_id) == ("collateralization", token)
    credit_node_deposit(wallet, w3, token)
    assert wallet.state.balances[1][0] >= take
    assert prepare(wallet, ETH, 10 * MILLI, token, take).json() == {
        "needed": "0",
        "requested": False,
        "transactionId": None,
    }

    assert send_swap(wallet, ETH, 10 * MILLI, token, take).status_code == 200


def test_a_prepare_the_swap_would_be_refused_for_queues_nothing(offer, wallet, deployments):
    token = deployments["TestToken"]
    give = 101 * MILLI  # over the 0.1 ETH a swap may move
    transactions = OnchainTransaction.objects.count()

    response = prepare(wallet, ETH, give, token, offered(give))

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "swap_over_limit"
    assert OnchainTransaction.objects.count() == transactions
    assert prepare(wallet, ETH, MILLI, token, offered(MILLI) + 1).json()["error"]["code"] == "rate_moved"
    assert OnchainTransaction.objects.count() == transactions


# -- a swap the node proposes ------------------------------------------------------------------------------


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


def test_the_metrics_count_swaps_their_volume_spread_and_the_nodes_exposure(offer, wallet, w3, deployments):
    from dashboard.metrics import NodeRecords

    token = deployments["TestToken"]
    token_collateral(wallet, w3, token)
    take = offered(10 * MILLI)
    assert send_swap(wallet, ETH, 10 * MILLI, token, take).status_code == 200

    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in NodeRecords().collect()
        if family.name.startswith("connext_swap")
        for sample in family.samples
    }

    direction = (("give_asset", ETH), ("take_asset", token))
    assert found[("connext_swaps_total", direction)] == 1
    assert found[("connext_swap_given_volume_total", direction)] == pytest.approx(0.01)
    assert found[("connext_swap_taken_volume_total", direction)] == pytest.approx(take / E)
    assert found[("connext_swap_spread_earned_total", direction)] == pytest.approx((20 * E - take) / E)
    assert found[("connext_swap_exposure", (("asset", token.lower()),))] == pytest.approx(take / E)
    assert found[("connext_swap_exposure", (("asset", ETH),))] == pytest.approx(-0.01)
