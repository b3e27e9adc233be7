"""The node's swap prices from its sources on anvil: an aggregator-style feed (exact to the unit, stale
or broken rounds refused) and a Uniswap-V2-style pool (the reserves' ratio, following trades), and the
rates pushed when a price moves."""

from __future__ import annotations

import json
import time
from fractions import Fraction

import pytest
from django.core.cache import cache
from django.test import override_settings
from eth_account import Account

from channels_app.models import Swap
from channels_app.services import swaps
from connext.chain import devchain, disputes, test_contracts
from connext_site import swap_config
from tests.channels_app.test_swaps import (
    MILLI,
    E,
    funded_wallet,
    refused,
    send_swap,
    swap_update,
    token_collateral,
)
from tests.support.wallet import ETH

pytestmark = pytest.mark.django_db
OWNER = Account.from_key(devchain.DEV_PRIVATE_KEYS[6])


def offer(source: dict, **document) -> swap_config.SwapConfig:
    pair = {
        "base": "eth",
        "quote": "TestToken",
        "source": source,
        "spreadBps": 30,
        "maxPerSwap": str(100 * MILLI),
        "maxPerDay": str(150 * MILLI),
    }
    return swap_config.parse(json.dumps({"pairs": [pair], **document}))


@pytest.fixture(autouse=True)
def _no_cached_prices():
    cache.delete_many([swaps.RATES_CACHE_KEY, swaps.PUSHED_CACHE_KEY])
    yield
    cache.delete_many([swaps.RATES_CACHE_KEY, swaps.PUSHED_CACHE_KEY])


@pytest.fixture
def feed(w3):
    """ETH in TestToken, 8 decimals like most feeds: 2000.5."""
    return test_contracts.deploy_test_feed(
        w3, OWNER, decimals=8, answer=200_050_000_000, description="ETH / TKN"
    )


def rates(client) -> dict[str, dict]:
    return {rate["giveAssetId"]: rate for rate in client.get("/api/swap/rates").json()["rates"]}


def mid(rate: dict) -> Fraction:
    return Fraction(int(rate["mid"]["numerator"]), int(rate["mid"]["denominator"]))


def test_a_feeds_answer_is_the_mid_price_exact_to_the_unit_and_follows_a_new_round(client, w3, feed):
    with override_settings(SWAPS=offer({"type": "feed", "address": feed})):
        assert mid(rates(client)[ETH]) == Fraction(40_010, 20)  # 2000.5 tokens per ETH, both 18 decimals
        test_contracts.set_feed_answer(w3, OWNER, feed, 190_000_000_000)
        cache.delete(swaps.RATES_CACHE_KEY)  # the poll interval passed

        listed = rates(client)

    assert mid(listed[ETH]) == 1900
    assert listed[ETH]["source"] == "feed"
    assert listed[ETH]["stale"] is False


def test_a_swap_against_a_stale_feed_round_is_refused_and_changes_nothing(client, w3, feed, deployments):
    wallet = funded_wallet(client, w3, deployments)
    test_contracts.set_feed_round(w3, OWNER, feed, 200_050_000_000, updated_at=disputes.chain_time(w3) - 3600)
    with override_settings(SWAPS=offer({"type": "feed", "address": feed}, staleSeconds=300)):
        assert rates(client)[ETH]["stale"] is True

        body = refused(wallet, deployments["TestToken"], 10 * E, ETH, MILLI, "stale_rate", 409)

    assert "no fresh price" in body["message"]


def test_a_feed_rounds_age_is_read_on_the_chains_clock_not_the_nodes(client, w3, feed):
    """A chain whose clock runs a day ahead of the node's: a round stamped with the node's now is a day
    old there (stale), and one stamped with the chain's now is fresh."""
    devchain.rpc_call(w3.provider.endpoint_uri, "evm_increaseTime", [86_400])
    devchain.rpc_call(w3.provider.endpoint_uri, "evm_mine")
    with override_settings(SWAPS=offer({"type": "feed", "address": feed}, staleSeconds=300)):
        test_contracts.set_feed_round(w3, OWNER, feed, 200_050_000_000, updated_at=int(time.time()))
        assert rates(client)[ETH]["stale"] is True
        test_contracts.set_feed_answer(w3, OWNER, feed, 200_050_000_000)  # stamped by the chain
        cache.delete(swaps.RATES_CACHE_KEY)

        assert rates(client)[ETH]["stale"] is False


def test_a_feed_that_answers_no_price_leaves_the_pair_unquoted_and_its_swaps_refused(
    client, w3, feed, deployments
):
    wallet = funded_wallet(client, w3, deployments)
    test_contracts.set_feed_answer(w3, OWNER, feed, 0)
    with override_settings(SWAPS=offer({"type": "feed", "address": feed})):
        assert rates(client) == {}

        refused(wallet, deployments["TestToken"], 10 * E, ETH, MILLI, "stale_rate", 409)


def pool_of(w3, deployments, weth: str, *, eth: int, tokens: int) -> str:
    pool = test_contracts.deploy_test_pool(w3, OWNER, weth, deployments["TestToken"])
    test_contracts.seed_pool(w3, OWNER, pool, {weth: eth, deployments["TestToken"]: tokens})
    return pool


def test_a_pools_reserves_are_the_mid_price_and_a_trade_moves_it(client, w3, deployments):
    weth = test_contracts.deploy_test_token(w3, OWNER, name="Wrapped Ether", symbol="WETH")
    pool = pool_of(w3, deployments, weth, eth=10 * E, tokens=20_000 * E)
    with override_settings(SWAPS=offer({"type": "pool", "address": pool, "baseToken": weth})):
        assert mid(rates(client)[ETH]) == 2000
        assert mid(rates(client)[deployments["TestToken"]]) == Fraction(1, 2000)
        out = test_contracts.swap_exact_in(w3, OWNER, pool, token_in=weth, amount_in=E)  # someone sells ETH
        cache.delete(swaps.RATES_CACHE_KEY)

        moved = mid(rates(client)[ETH])

    assert moved == Fraction(20_000 * E - out, 11 * E)
    assert moved < 2000


def test_a_swap_at_a_pools_price_is_countersigned_at_the_reserve_ratio_less_the_spread(
    client, w3, deployments
):
    wallet = funded_wallet(client, w3, deployments)
    weth = test_contracts.deploy_test_token(w3, OWNER, name="Wrapped Ether", symbol="WETH")
    pool = pool_of(w3, deployments, weth, eth=10 * E, tokens=25_000 * E)
    token = deployments["TestToken"]
    with override_settings(SWAPS=offer({"type": "pool", "address": pool, "baseToken": weth})):
        token_collateral(wallet, w3, token, price=2500)
        take = 5 * MILLI * 2500 * 9970 // 10_000

        assert send_swap(wallet, ETH, 5 * MILLI, token, take).status_code == 200

    assert Swap.objects.get().mid_price == "2500/1"


def test_a_pool_of_other_tokens_gives_no_price(client, w3, deployments):
    weth = test_contracts.deploy_test_token(w3, OWNER, name="Wrapped Ether", symbol="WETH")
    other = test_contracts.deploy_test_token(w3, OWNER, name="Other", symbol="OTH")
    pool = test_contracts.deploy_test_pool(w3, OWNER, weth, other)
    test_contracts.seed_pool(w3, OWNER, pool, {weth: E, other: 2000 * E})
    with override_settings(SWAPS=offer({"type": "pool", "address": pool, "baseToken": weth})):
        assert rates(client) == {}


def test_rates_are_pushed_when_a_price_moves_by_the_push_threshold_and_not_otherwise(w3, feed):
    with override_settings(SWAPS=offer({"type": "feed", "address": feed}, pushBps=10, pollSeconds=1)):
        assert swaps.rates_refresh() is True  # nothing pushed yet
        assert swaps.rates_refresh() is False
        test_contracts.set_feed_answer(w3, OWNER, feed, 200_060_000_000)  # 0.5 bps: under the threshold
        cache.delete(swaps.RATES_CACHE_KEY)
        assert swaps.rates_refresh() is False
        test_contracts.set_feed_answer(w3, OWNER, feed, 201_000_000_000)  # 47 bps
        cache.delete(swaps.RATES_CACHE_KEY)
        assert swaps.rates_refresh() is True


def test_a_swap_sent_again_gets_its_first_answer_after_the_price_went_stale(client, w3, feed, deployments):
    wallet = funded_wallet(client, w3, deployments)
    token = deployments["TestToken"]
    with override_settings(SWAPS=offer({"type": "feed", "address": feed})):
        give = 10 * E
        take = give * 10**8 * 9970 // (200_050_000_000 * 10_000)
        update = swap_update(wallet, token, give, ETH, take)
        _, signature = wallet.sign(update)
        first = wallet.send("/api/channel/updates", update, signature)
        assert first.status_code == 200, first.json()
        test_contracts.set_feed_round(
            w3, OWNER, feed, 200_050_000_000, updated_at=disputes.chain_time(w3) - 3600
        )
        cache.delete(swaps.RATES_CACHE_KEY)

        again = wallet.send("/api/channel/updates", update, signature)

    assert again.status_code == 200, again.json()
    assert again.json()["nodeSignature"] == first.json()["nodeSignature"]
    assert Swap.objects.count() == 1
