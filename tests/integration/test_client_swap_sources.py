"""Swaps at prices read from the chain, end to end: one live node (two daphne processes, a Celery
worker with beat) offering ETH against three tokens, priced by a feed, by a feed that goes stale and
by a pool, all on the session's anvil; the node reads each at most every second (`pollSeconds: 1`).

A price that moves while a swap is on its way is made to move at one exact point: a client whose rate
fetch is followed, before the swap goes on, by the feed moving and the node serving the new price.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from channels_app.models import ChannelUpdate, Swap
from connext import ETH, Client
from connext.chain import channel_reads, devchain, disputes, prices, test_contracts
from connext.client.async_client import AsyncClient
from connext.errors import NodeError, SlippageError
from tests.integration.conftest import LIVE_NODE_KEY, LiveNode
from tests.support.client_wallets import SWAP_EVENTS, Funder, Wallet, until
from tests.support.processes import http_get_json

pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[7]
E = 10**18
MILLI = 10**15
FEED_DECIMALS = 8
SPREAD_BPS = 30
PUSH_BPS = 10
NODE_ADDRESS = Account.from_key(LIVE_NODE_KEY).address
POOL_WETH, POOL_TOKENS = 100 * E, 300_000 * E  # 3000 TestToken per ETH


@dataclass(frozen=True)
class Sources:
    owner: LocalAccount  # owns the feeds, seeds and trades in the pool
    feed_token: str  # priced by `feed`
    feed: str
    stale_token: str  # priced by `stale_feed`, which the stale test sends back in time
    stale_feed: str
    weth: str  # the pool's stand-in for ETH, against the TestToken
    pool: str


@pytest.fixture(scope="module")
def sources(anvil_url: str, deployments: dict[str, str]) -> Sources:
    w3 = Web3(HTTPProvider(anvil_url))
    owner = Account.from_key(FUNDER_KEY)

    def token(symbol: str) -> str:
        return test_contracts.deploy_test_token(w3, owner, name=f"{symbol} Token", symbol=symbol)

    def feed(description: str) -> str:
        return test_contracts.deploy_test_feed(
            w3, owner, decimals=FEED_DECIMALS, answer=2000 * 10**FEED_DECIMALS, description=description
        )

    feed_token, stale_token = token("FEED"), token("STALE")
    weth = test_contracts.deploy_test_token(w3, owner, name="Wrapped Ether", symbol="WETH")
    pool = test_contracts.deploy_test_pool(w3, owner, weth, deployments["TestToken"])
    test_contracts.seed_pool(w3, owner, pool, {weth: POOL_WETH, deployments["TestToken"]: POOL_TOKENS})
    return Sources(
        owner=owner,
        feed_token=feed_token,
        feed=feed("FEED / ETH"),
        stale_token=stale_token,
        stale_feed=feed("STALE / ETH"),
        weth=weth,
        pool=pool,
    )


@pytest.fixture(scope="module")
def live_node_settings(sources: Sources) -> dict[str, str]:
    def pair(quote: str, source: dict[str, str]) -> dict[str, Any]:
        return {
            "base": "eth",
            "quote": quote,
            "source": source,
            "spreadBps": SPREAD_BPS,
            "maxPerSwap": str(100 * MILLI),
            "maxPerDay": str(1000 * MILLI),
        }

    document = {
        "pairs": [
            pair(sources.feed_token, {"type": "feed", "address": sources.feed}),
            pair(sources.stale_token, {"type": "feed", "address": sources.stale_feed}),
            pair("TestToken", {"type": "pool", "address": sources.pool, "baseToken": sources.weth}),
        ],
        "pollSeconds": 1,
        "pushBps": PUSH_BPS,
    }
    return {
        "SWAPS": json.dumps(document),
        "SUPPORTED_TOKENS": f"{sources.feed_token},{sources.stale_token}",
    }


@pytest.fixture(scope="module")
def funder(live_node: LiveNode, sources: Sources, deployments: dict[str, str]) -> Funder:
    """The module's dev account; it first mints the node the tokens it pays swaps out of."""
    funder = Funder(Web3(HTTPProvider(live_node.chain_url)), FUNDER_KEY)
    for token in (sources.feed_token, sources.stale_token, deployments["TestToken"]):
        funder.mint(token, NODE_ADDRESS, 1000 * E)
    return funder


@pytest.fixture
def wallets(live_node: LiveNode) -> Iterator[list[Wallet]]:
    opened: list[Wallet] = []
    yield opened
    for wallet in opened:
        wallet.client.close()


def connect(live_node: LiveNode, wallets: list[Wallet], key: str) -> Wallet:
    client = Client.connect(live_node.url, key, chain_rpc_url=live_node.chain_url)
    wallet = Wallet(client, events=SWAP_EVENTS)
    wallets.append(wallet)
    return wallet


def entry_of(rates: dict[str, Any], give_asset: str, take_asset: str) -> dict[str, Any]:
    (entry,) = (r for r in rates["rates"] if (r["giveAssetId"], r["takeAssetId"]) == (give_asset, take_asset))
    return entry


def fraction(value: dict[str, str]) -> Fraction:
    return Fraction(int(value["numerator"]), int(value["denominator"]))


def node_rates(live_node: LiveNode) -> dict[str, Any]:
    status, rates = http_get_json(f"{live_node.url}/api/swap/rates")
    assert status == 200, rates
    return rates


def serving(live_node: LiveNode, take_asset: str, mid: Fraction) -> dict[str, Any]:
    """Until the node serves `mid` for ETH -> `take_asset` (it reads a source at most every second)."""

    def served() -> dict[str, Any] | None:
        entry = entry_of(node_rates(live_node), ETH, take_asset)
        return entry if fraction(entry["mid"]) == mid else None

    found: dict[str, Any] = until(served, f"the node to serve {mid} for {take_asset}", timeout=30)
    return found


def feed_price(whole_per_eth: Fraction) -> int:
    answer = whole_per_eth * 10**FEED_DECIMALS
    assert answer.denominator == 1
    return int(answer)


def offer_at(mid: Fraction, give: int) -> int:
    offer = mid * Fraction(10_000 - SPREAD_BPS, 10_000)
    return give * offer.numerator // offer.denominator


# -- a price that moves while a swap is on its way ----------------------------------------------------


class QuoteThenMove:
    """A client's rate fetch (its funds part's, which the swap quotes from), the next one followed by
    `after_quote` (in a thread) before the swap it quotes for goes on: the price moves at exactly that
    point."""

    after_quote: Callable[[], None] | None = None

    def __init__(self, client: AsyncClient) -> None:
        self.fetch = client._funds.get_swap_rates
        client._funds.get_swap_rates = self.get_swap_rates  # type: ignore[method-assign]

    async def get_swap_rates(self) -> dict[str, Any]:
        rates = await self.fetch()
        move, self.after_quote = self.after_quote, None
        if move is not None:
            await asyncio.to_thread(move)
        return rates


def test_a_feed_moving_past_the_slippage_during_a_swap_refuses_it_and_a_smaller_move_is_taken(
    live_node, funder, sources
):
    w3, token = funder.w3, sources.feed_token
    start = Fraction(2000)
    test_contracts.set_feed_answer(w3, sources.owner, sources.feed, feed_price(start))
    serving(live_node, token, start)
    key = funder.new_key()

    def moved_to(mid: Fraction) -> Callable[[], None]:
        def move() -> None:
            test_contracts.set_feed_answer(w3, sources.owner, sources.feed, feed_price(mid))
            serving(live_node, token, mid)

        return move

    async def user() -> dict[str, Any]:
        client = await AsyncClient.connect(live_node.url, key, chain_rpc_url=live_node.chain_url)
        quotes = QuoteThenMove(client)
        seen: dict[str, Any] = {}
        try:
            await client.deposit(40 * MILLI)

            def holdings() -> tuple[int, int]:
                return client.get_free_balance(ETH)["user"], client.get_free_balance(token)["user"]

            before = holdings()

            # The node holds none of the token here: the swap asks it to deposit first, at the
            # quote. 3 % down is past the 1 % the swap accepts.
            quotes.after_quote = moved_to(start * Fraction(97, 100))
            with pytest.raises(SlippageError) as seen["far_while_short"]:
                await client.swap(10 * MILLI, ETH, token, max_slippage="0.01")
            seen["after_refusal"] = (holdings(), before)

            # 0.5 % down: the swap goes at the node's new offer, the node's deposit first.
            low = start * Fraction(97, 100) * Fraction(995, 1000)
            quotes.after_quote = moved_to(low)
            seen["near_while_short"] = (await client.swap(10 * MILLI, ETH, token, max_slippage="0.01"), low)

            # The node now holds the token here: the swap itself meets the moved rate.
            lower = low * Fraction(995, 1000)
            quotes.after_quote = moved_to(lower)
            seen["near"] = (await client.swap(5 * MILLI, ETH, token, max_slippage="0.01"), lower)
            held = holdings()
            quotes.after_quote = moved_to(lower * Fraction(97, 100))
            with pytest.raises(SlippageError) as seen["far"]:
                await client.swap(5 * MILLI, ETH, token, max_slippage="0.01")
            seen["after_second_refusal"] = (holdings(), held)
            seen["balances"] = holdings()
            seen["address"] = client.address
            seen["channel"] = client.channel_address
        finally:
            await client.close()
        return seen

    seen = asyncio.run(user())

    far = seen["far_while_short"].value
    assert (far.quoted, far.offered) == (
        offer_at(start, 10 * MILLI),
        offer_at(start * Fraction(97, 100), 10 * MILLI),
    )
    after, before = seen["after_refusal"]
    assert after == before == (40 * MILLI, 0)  # nothing was signed
    received, low = seen["near_while_short"]
    assert received == offer_at(low, 10 * MILLI)
    received_next, lower = seen["near"]
    assert received_next == offer_at(lower, 5 * MILLI)
    assert seen["far"].value.offered == offer_at(lower * Fraction(97, 100), 5 * MILLI)
    after, held = seen["after_second_refusal"]
    assert after == held
    assert seen["balances"] == (25 * MILLI, received + received_next)
    records = Swap.objects.filter(user_address=seen["address"]).order_by("nonce")
    assert [int(r.take_amount) for r in records] == [received, received_next]
    assert [r.mid_price for r in records] == [f"{m.numerator}/{m.denominator}" for m in (low, lower)]
    # The node deposited once, for the swap it paid, not for the one refused before it.
    node_deposits = channel_reads.deposit_totals(w3, seen["channel"], token, block="latest").node
    assert node_deposits == received + 20 * E  # what it paid and the token's usual target


# -- a stale feed ------------------------------------------------------------------------------------


def test_a_stale_feed_round_shows_as_stale_and_a_swap_at_it_is_refused_with_nothing_moved(
    live_node, wallets, funder, sources
):
    w3, token = funder.w3, sources.stale_token
    alice = connect(live_node, wallets, funder.new_key())
    alice.deposit(10 * MILLI)

    an_hour_ago = disputes.chain_time(w3) - 3600  # on the chain's clock; the node's staleSeconds: 300
    test_contracts.set_feed_round(w3, sources.owner, sources.stale_feed, 2100 * 10**8, updated_at=an_hour_ago)
    stale = until(
        lambda: (entry := entry_of(node_rates(live_node), ETH, token))["stale"] and entry,
        "the node to read the stale round",
        timeout=30,
    )
    with pytest.raises(NodeError) as refused:
        alice.swap(5 * MILLI, ETH, token)

    assert (stale["updatedAt"], fraction(stale["mid"])) == (an_hour_ago, Fraction(2100))
    assert entry_of(alice.get_swap_rates(), token, ETH)["stale"] is True
    assert refused.value.code == "stale_rate"
    assert alice.get_free_balance(ETH)["user"] == 10 * MILLI
    assert alice.get_free_balance(token) == {"user": 0, "node": 0}
    assert not Swap.objects.filter(user_address=alice.address).exists()
    assert not ChannelUpdate.objects.filter(channel__address=alice.channel_address, kind="swap").exists()


# -- the rates pushed over the socket ------------------------------------------------------------------


def test_a_feed_moving_past_push_bps_pushes_the_new_rates_to_a_connected_client(
    live_node, wallets, funder, sources
):
    w3, token = funder.w3, sources.feed_token
    alice = connect(live_node, wallets, funder.new_key())
    moved = Fraction(2222)  # far past 0.1 % from anything the other tests set

    test_contracts.set_feed_answer(w3, sources.owner, sources.feed, feed_price(moved))
    pushed = alice.first_seen(
        "swap.rates", lambda p: fraction(entry_of(p, ETH, token)["mid"]) == moved, timeout=30
    )

    entry = entry_of(pushed, ETH, token)
    assert (entry["source"], entry["stale"]) == ("feed", False)
    assert fraction(entry["rate"]) == moved * Fraction(10_000 - SPREAD_BPS, 10_000)
    assert fraction(entry_of(pushed, token, ETH)["mid"]) == 1 / moved
    assert pushed == {**pushed, "toleranceBps": 500, "staleSeconds": 300}


# -- a pool ------------------------------------------------------------------------------------------


def test_the_rate_of_a_pool_is_its_reserve_ratio_less_the_spread_and_follows_trades_in_it(
    live_node, wallets, funder, sources, deployments
):
    w3, token = funder.w3, deployments["TestToken"]
    alice = connect(live_node, wallets, funder.new_key())
    alice.deposit(10 * MILLI)

    def pool_mid() -> Fraction:
        return prices.read_pool(w3, sources.pool, base_token=sources.weth).price

    first = pool_mid()
    served = serving(live_node, token, first)
    received = alice.swap(1 * MILLI, ETH, token)
    bought = test_contracts.swap_exact_in(
        w3, sources.owner, sources.pool, token_in=sources.weth, amount_in=10 * E
    )
    after_trade = pool_mid()
    followed = serving(live_node, token, after_trade)

    assert first == Fraction(POOL_TOKENS, POOL_WETH) == 3000
    assert (served["source"], fraction(served["rate"])) == ("pool", first * Fraction(9970, 10_000))
    assert received == offer_at(first, 1 * MILLI)
    assert after_trade == Fraction(POOL_TOKENS - bought, POOL_WETH + 10 * E) < first
    assert fraction(followed["rate"]) == after_trade * Fraction(9970, 10_000)
    assert fraction(entry_of(alice.get_swap_rates(), token, ETH)["mid"]) == 1 / after_trade
    assert alice.get_free_balance(token)["user"] == received
