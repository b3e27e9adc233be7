"""Prices read from on-chain sources: an aggregator feed (Chainlink's AggregatorV3Interface) or a
constant-product pool (a Uniswap V2 pair), as exact fractions of base units.

Every value in one reading comes from one block, so a reading never mixes an old answer with new
decimals or an old reserve with a new one. A source that cannot give a usable price raises
`PriceSourceError`; a chain that cannot be reached raises whatever the provider raises, so a caller can
tell a bad source from a chain that is down.

A pool's mid price is the spot price of one block, which one large trade in that block can move: read it
at a confirmed block, and bound how far it may be from another source or from the last reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import BadFunctionCallOutput, ContractLogicError
from web3.types import BlockIdentifier

from connext.chain.contracts import contract_at

ETH_DECIMALS = 18
# Our test contracts implement the interfaces exactly (same selectors and return types), so their ABIs
# read any aggregator feed or V2 pair, and TestToken's any ERC20's decimals().
_FEED_ABI = "TestPriceFeed"
_POOL_ABI = "TestPool"
_ERC20_ABI = "TestToken"


class PriceSourceError(RuntimeError):
    """A source that cannot give a usable price (reverted call, no code, answer <= 0, incomplete round,
    zero reserves, a pool without the base token)."""


@dataclass(frozen=True)
class PriceReading:
    """One price from one source at one block."""

    price: Fraction  # quote-asset base units per one base unit of the base asset (exact)
    updated_at: int  # unix seconds the source says the price is from (feed: updatedAt; pool: the block's)
    block: int  # the block number read at


def read_feed(
    w3: Web3, address: str, *, base_decimals: int, quote_decimals: int, block: int | str = "latest"
) -> PriceReading:
    """The feed's latest round at `block`. Its answer prices one whole base unit in whole quote units with
    `decimals()` decimals, so in base units: answer * 10**quote_decimals / 10**(decimals + base_decimals).

    Staleness is the caller's to judge from `updated_at`; an incomplete round (updatedAt 0) is refused."""
    _check_decimals(base_decimals, "base_decimals")
    _check_decimals(quote_decimals, "quote_decimals")
    number = _block_number(w3, block)
    feed = contract_at(w3, _FEED_ABI, address)
    feed_decimals = int(_call(w3, feed, "decimals", number))
    _round_id, answer, _started_at, updated_at, _answered_in_round = _call(
        w3, feed, "latestRoundData", number
    )
    if answer <= 0:
        raise PriceSourceError(f"feed {feed.address} answers {answer} at block {number}: not a price")
    if updated_at == 0:
        raise PriceSourceError(f"feed {feed.address}'s latest round at block {number} is incomplete")
    price = Fraction(answer * 10**quote_decimals, 10 ** (feed_decimals + base_decimals))
    return PriceReading(price=price, updated_at=int(updated_at), block=number)


def read_pool(w3: Web3, address: str, *, base_token: str, block: int | str = "latest") -> PriceReading:
    """The pool's mid price at `block`: its reserve of the other token per unit of its reserve of
    `base_token` (reserves are base units already, so decimals do not enter). The quote token is the
    pool's other token: the caller checks it is the asset it means."""
    number = _block_number(w3, block)
    pool = contract_at(w3, _POOL_ABI, address)
    token0 = to_checksum_address(_call(w3, pool, "token0", number))
    token1 = to_checksum_address(_call(w3, pool, "token1", number))
    reserve0, reserve1, _timestamp_last = _call(w3, pool, "getReserves", number)
    base = to_checksum_address(base_token)
    if base == token0:
        reserve_base, reserve_quote = int(reserve0), int(reserve1)
    elif base == token1:
        reserve_base, reserve_quote = int(reserve1), int(reserve0)
    else:
        raise PriceSourceError(f"pool {pool.address} holds {token0} and {token1}, not the base token {base}")
    if reserve_base == 0 or reserve_quote == 0:
        raise PriceSourceError(f"pool {pool.address} has no liquidity at block {number}")
    timestamp = int(w3.eth.get_block(number)["timestamp"])
    return PriceReading(price=Fraction(reserve_quote, reserve_base), updated_at=timestamp, block=number)


def pool_tokens(w3: Web3, address: str, *, block: int | str = "latest") -> tuple[str, str]:
    """The pool's (token0, token1), checksummed: what a caller checks its configured pair against."""
    number = _block_number(w3, block)
    pool = contract_at(w3, _POOL_ABI, address)
    return (
        to_checksum_address(_call(w3, pool, "token0", number)),
        to_checksum_address(_call(w3, pool, "token1", number)),
    )


def token_decimals(w3: Web3, asset_id: str) -> int:
    """18 for ETH (the zero address), else the token's `decimals()` (optional in ERC20, so a token
    without it is a source that cannot be priced)."""
    if int(asset_id, 16) == 0:
        return ETH_DECIMALS
    return int(_call(w3, contract_at(w3, _ERC20_ABI, asset_id), "decimals", _block_number(w3, "latest")))


def _block_number(w3: Web3, block: int | str) -> int:
    """`block` as a number, so that every read of one reading sees the same block."""
    if isinstance(block, int):
        return block
    return int(w3.eth.get_block(cast(BlockIdentifier, block))["number"])


def _check_decimals(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, not {value!r}")


def _call(w3: Web3, contract: Contract, function: str, block: int) -> Any:
    """`function()` of `contract` at `block`; what the contract refuses or cannot answer is a
    `PriceSourceError`, anything else (the chain unreachable) is raised as it is."""
    try:
        return contract.functions[function]().call(block_identifier=block)
    except ContractLogicError as exc:
        raise PriceSourceError(f"{contract.address}: {function}() reverted at block {block}: {exc}") from exc
    except BadFunctionCallOutput as exc:
        if len(w3.eth.get_code(contract.address, block_identifier=block)) == 0:
            raise PriceSourceError(f"{contract.address}: no contract there at block {block}") from exc
        raise PriceSourceError(
            f"{contract.address}: {function}() at block {block} did not answer as expected: {exc}"
        ) from exc
