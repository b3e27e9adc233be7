"""Prices read from a feed and from a pool on the session's anvil: exact, at one block, and refused with
`PriceSourceError` when the source cannot give one."""

from __future__ import annotations

from fractions import Fraction

import pytest
import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractLogicError

from connext.chain import devchain
from connext.chain.contracts import contract_at
from connext.chain.prices import PriceSourceError, pool_tokens, read_feed, read_pool, token_decimals
from connext.chain.test_contracts import (
    deploy_test_feed,
    deploy_test_pool,
    deploy_test_token,
    seed_pool,
    set_feed_answer,
    set_feed_round,
    swap_exact_in,
)

ETH = "0x0000000000000000000000000000000000000000"
WHOLE = 10**18  # one whole unit of an 18-decimal asset


@pytest.fixture
def w3(chain: str) -> Web3:
    return Web3(HTTPProvider(chain))


@pytest.fixture
def deployer() -> LocalAccount:
    return Account.from_key(devchain.DEV_PRIVATE_KEYS[6])


@pytest.fixture
def weth_usd_pool(w3: Web3, deployer: LocalAccount) -> tuple[str, str, str]:
    """(pool, weth, usd): 10 "Wrapped Ether" against 30,000 "Test Dollar", both 18 decimals."""
    weth = deploy_test_token(w3, deployer, name="Wrapped Ether", symbol="WETH")
    usd = deploy_test_token(w3, deployer, name="Test Dollar", symbol="TUSD")
    pool = deploy_test_pool(w3, deployer, weth, usd)
    seed_pool(w3, deployer, pool, {weth: 10 * WHOLE, usd: 30_000 * WHOLE})
    return pool, weth, usd


def _timestamp(w3: Web3, block: int | str = "latest") -> int:
    return int(w3.eth.get_block(block)["timestamp"])


def _reserves(w3: Web3, pool: str) -> tuple[int, int]:
    reserve0, reserve1, _ = contract_at(w3, "TestPool", pool).functions.getReserves().call()
    return int(reserve0), int(reserve1)


# -- feeds ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feed_decimals", "answer", "base_decimals", "quote_decimals", "quote_units_per_whole_base"),
    [
        # ETH/USD at 3,000.12345678 with a 6-decimal dollar: one ETH is 3,000,123,456.78 units
        (8, 3_000_12345678, 18, 6, Fraction(3_000_123_456_78, 100)),
        # USD/ETH at 0.00033332 ETH with a 6-decimal dollar: one dollar is 333,320,000,000,000 wei
        (18, 333_320_000_000_000, 6, 18, Fraction(333_320_000_000_000)),
        # equal decimals everywhere: a base unit costs answer / 10**8 quote units, 2.5
        (8, 2_50000000, 8, 8, Fraction(2_50000000)),
    ],
)
def test_a_feed_prices_one_base_unit_exactly_in_quote_units(
    w3, deployer, feed_decimals, answer, base_decimals, quote_decimals, quote_units_per_whole_base
):
    feed = deploy_test_feed(w3, deployer, decimals=feed_decimals, answer=answer, description="X / Y")

    reading = read_feed(w3, feed, base_decimals=base_decimals, quote_decimals=quote_decimals)

    assert reading.price * 10**base_decimals == quote_units_per_whole_base
    assert reading.block == w3.eth.block_number
    assert reading.updated_at == _timestamp(w3)


def test_a_stale_round_reads_with_the_time_the_feed_gives_it(w3, deployer):
    feed = deploy_test_feed(w3, deployer, decimals=8, answer=3_000_00000000, description="ETH / USD")
    first_block = w3.eth.block_number
    two_hours_ago = _timestamp(w3) - 7200

    set_feed_round(w3, deployer, feed, 2_900_00000000, updated_at=two_hours_ago)
    reading = read_feed(w3, feed, base_decimals=18, quote_decimals=18)

    assert reading.updated_at == two_hours_ago
    assert reading.price == 2_900
    before = read_feed(w3, feed, base_decimals=18, quote_decimals=18, block=first_block)
    assert (before.price, before.block) == (3_000, first_block)


@pytest.mark.parametrize("answer", [0, -1, -(10**20)])
def test_a_feed_answering_zero_or_less_is_refused(w3, deployer, answer):
    feed = deploy_test_feed(w3, deployer, decimals=8, answer=1_00000000, description="ETH / USD")
    set_feed_answer(w3, deployer, feed, answer)

    with pytest.raises(PriceSourceError, match="not a price"):
        read_feed(w3, feed, base_decimals=18, quote_decimals=6)


def test_an_incomplete_round_is_refused(w3, deployer):
    feed = deploy_test_feed(w3, deployer, decimals=8, answer=1_00000000, description="ETH / USD")
    set_feed_round(w3, deployer, feed, 1_00000000, updated_at=0)

    with pytest.raises(PriceSourceError, match="incomplete"):
        read_feed(w3, feed, base_decimals=18, quote_decimals=6)


def test_only_the_feeds_owner_sets_its_answer(w3, deployer):
    feed = deploy_test_feed(w3, deployer, decimals=8, answer=1_00000000, description="ETH / USD")
    stranger = Account.from_key(devchain.DEV_PRIVATE_KEYS[5])

    with pytest.raises(ContractLogicError):
        set_feed_answer(w3, stranger, feed, 2_00000000)
    assert contract_at(w3, "TestPriceFeed", feed).functions.description().call() == "ETH / USD"


def test_an_address_without_code_is_no_source(w3):
    nowhere = Account.create().address

    with pytest.raises(PriceSourceError, match="no contract"):
        read_feed(w3, nowhere, base_decimals=18, quote_decimals=6)
    with pytest.raises(PriceSourceError, match="no contract"):
        read_pool(w3, nowhere, base_token=nowhere)


def test_a_contract_that_is_not_a_feed_is_no_source(w3, weth_usd_pool):
    pool, weth, _ = weth_usd_pool

    with pytest.raises(PriceSourceError, match=r"decimals\(\)"):
        read_feed(w3, pool, base_decimals=18, quote_decimals=18)
    with pytest.raises(PriceSourceError, match=r"token0\(\)"):
        read_pool(w3, weth, base_token=weth)


def test_a_chain_that_cannot_be_reached_is_not_a_bad_source():
    unreachable = Web3(
        HTTPProvider(f"http://127.0.0.1:{devchain.free_port()}", exception_retry_configuration=None)
    )

    with pytest.raises(requests.ConnectionError):
        read_feed(unreachable, Account.create().address, base_decimals=18, quote_decimals=6)


# -- pools ------------------------------------------------------------------------------------------


def test_a_pools_price_is_its_reserve_ratio_and_falls_for_the_token_sold_into_it(w3, deployer, weth_usd_pool):
    pool, weth, usd = weth_usd_pool

    weth_in_usd = read_pool(w3, pool, base_token=weth)
    usd_in_weth = read_pool(w3, pool, base_token=usd)

    assert weth_in_usd.price == 3_000
    assert usd_in_weth.price == Fraction(1, 3_000)
    assert weth_in_usd.updated_at == _timestamp(w3, weth_in_usd.block)
    seeded_block = w3.eth.block_number

    swap_exact_in(w3, deployer, pool, token_in=weth, amount_in=WHOLE)
    after = read_pool(w3, pool, base_token=weth)

    reserves = dict(zip(pool_tokens(w3, pool), _reserves(w3, pool), strict=True))
    assert after.price == Fraction(reserves[usd], reserves[weth])
    assert after.price < 3_000  # more WETH in the pool, fewer dollars: WETH is cheaper
    assert read_pool(w3, pool, base_token=usd).price > Fraction(1, 3_000)
    assert read_pool(w3, pool, base_token=weth, block=seeded_block).price == 3_000


@pytest.mark.parametrize("amount_in", [1, 997, WHOLE // 3, 25 * WHOLE])
def test_a_swap_pays_out_uniswap_v2s_get_amount_out_and_keeps_x_times_y(w3, weth_usd_pool, amount_in):
    pool, weth, usd = weth_usd_pool
    trader = Account.from_key(devchain.DEV_PRIVATE_KEYS[4])
    reserve_in, reserve_out = 10 * WHOLE, 30_000 * WHOLE
    # UniswapV2Library.getAmountOut
    amount_in_with_fee = amount_in * 997
    expected = amount_in_with_fee * reserve_out // (reserve_in * 1000 + amount_in_with_fee)
    k_before = reserve_in * reserve_out

    paid = swap_exact_in(w3, trader, pool, token_in=weth, amount_in=amount_in, min_out=expected)

    assert paid == expected
    assert contract_at(w3, "TestToken", usd).functions.balanceOf(trader.address).call() == expected
    reserves = dict(zip(pool_tokens(w3, pool), _reserves(w3, pool), strict=True))
    assert reserves == {weth: reserve_in + amount_in, usd: reserve_out - expected}
    assert reserves[weth] * reserves[usd] >= k_before


def test_a_swap_paying_less_than_its_minimum_reverts(w3, deployer, weth_usd_pool):
    pool, weth, _ = weth_usd_pool

    with pytest.raises(ContractLogicError):
        swap_exact_in(w3, deployer, pool, token_in=weth, amount_in=WHOLE, min_out=3_000 * WHOLE)
    assert read_pool(w3, pool, base_token=weth).price == 3_000  # nothing moved


def test_a_pool_sorts_its_tokens_like_uniswap_v2(w3, weth_usd_pool):
    pool, weth, usd = weth_usd_pool

    assert pool_tokens(w3, pool) == tuple(sorted((weth, usd), key=lambda address: int(address, 16)))


def test_a_base_token_the_pool_does_not_hold_is_refused(w3, deployer, weth_usd_pool):
    pool, _, _ = weth_usd_pool
    other = deploy_test_token(w3, deployer, name="Other", symbol="OTH")

    with pytest.raises(PriceSourceError, match="not the base token"):
        read_pool(w3, pool, base_token=other)


def test_a_pool_without_liquidity_is_refused(w3, deployer):
    weth = deploy_test_token(w3, deployer, name="Wrapped Ether", symbol="WETH")
    usd = deploy_test_token(w3, deployer, name="Test Dollar", symbol="TUSD")
    pool = deploy_test_pool(w3, deployer, weth, usd)

    with pytest.raises(PriceSourceError, match="no liquidity"):
        read_pool(w3, pool, base_token=weth)


# -- decimals ---------------------------------------------------------------------------------------


def test_eth_has_18_decimals_and_a_token_those_it_reports(w3, weth_usd_pool):
    _, weth, _ = weth_usd_pool

    assert token_decimals(w3, ETH) == 18
    assert token_decimals(w3, weth) == 18


def test_decimals_that_cannot_be_read_are_refused(w3, weth_usd_pool):
    pool, _, _ = weth_usd_pool

    with pytest.raises(PriceSourceError, match="no contract"):
        token_decimals(w3, Account.create().address)
    with pytest.raises(PriceSourceError, match=r"decimals\(\)"):
        token_decimals(w3, pool)  # no decimals() there
