"""Deploys and drives the test-only contracts (mintable tokens, a price feed, a constant-product pool)
on a development chain, for tests and `make up`. Never for a real network: anyone can mint the tokens,
and the feed's owner decides its price."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.logs import DISCARD

from connext.chain.artifacts import load_artifact
from connext.chain.contracts import contract_at
from connext.chain.deploy import DeployError, send_transaction


def deploy_test_token(w3: Web3, deployer: LocalAccount, *, name: str, symbol: str) -> str:
    """A `TestToken` (18 decimals, anyone mints): a "Wrapped Ether" one stands in for WETH in ETH pools."""
    return _deploy(w3, deployer, "TestToken", (name, symbol))


def deploy_test_feed(
    w3: Web3, deployer: LocalAccount, *, decimals: int, answer: int, description: str
) -> str:
    """A `TestPriceFeed` owned by `deployer`, its first round answered `answer` now."""
    return _deploy(w3, deployer, "TestPriceFeed", (decimals, answer, description))


def set_feed_answer(w3: Web3, owner: LocalAccount, feed: str, answer: int) -> None:
    """A new round of `feed` answered `answer` now."""
    send_transaction(w3, owner, contract_at(w3, "TestPriceFeed", feed).functions.setAnswer(answer))


def set_feed_round(w3: Web3, owner: LocalAccount, feed: str, answer: int, *, updated_at: int) -> None:
    """A new round of `feed` claiming to be from `updated_at` (old: stale; 0: incomplete)."""
    send_transaction(w3, owner, contract_at(w3, "TestPriceFeed", feed).functions.setRound(answer, updated_at))


def deploy_test_pool(w3: Web3, deployer: LocalAccount, token_a: str, token_b: str) -> str:
    """An empty `TestPool` of two ERC20s (it sorts them into token0 < token1)."""
    return _deploy(w3, deployer, "TestPool", (to_checksum_address(token_a), to_checksum_address(token_b)))


def seed_pool(w3: Web3, provider: LocalAccount, pool: str, amounts: Mapping[str, int]) -> None:
    """Mints `amounts` (keyed by token address, both of the pool's tokens) of `TestToken`s to `provider`
    and adds them to `pool` as liquidity."""
    pool_contract = contract_at(w3, "TestPool", pool)
    tokens = [to_checksum_address(pool_contract.functions[name]().call()) for name in ("token0", "token1")]
    by_token = {to_checksum_address(token): amount for token, amount in amounts.items()}
    if set(by_token) != set(tokens):
        raise ValueError(f"amounts must name the pool's tokens {tokens}, not {sorted(by_token)}")
    for token in tokens:
        _mint_and_approve(w3, provider, token, pool_contract.address, by_token[token])
    send_transaction(
        w3, provider, pool_contract.functions.addLiquidity(by_token[tokens[0]], by_token[tokens[1]])
    )


def swap_exact_in(
    w3: Web3,
    trader: LocalAccount,
    pool: str,
    *,
    token_in: str,
    amount_in: int,
    min_out: int = 0,
    to: str | None = None,
) -> int:
    """Mints `amount_in` of the `TestToken` `token_in` to `trader`, sells it in `pool` and returns the
    amount of the other token sent to `to` (the trader by default)."""
    pool_contract = contract_at(w3, "TestPool", pool)
    _mint_and_approve(w3, trader, token_in, pool_contract.address, amount_in)
    receipt = send_transaction(
        w3,
        trader,
        pool_contract.functions.swapExactIn(
            to_checksum_address(token_in), amount_in, min_out, to_checksum_address(to or trader.address)
        ),
    )
    # The tokens' Transfer logs are in the receipt too: only the pool's Swap is read.
    (swap,) = pool_contract.events.Swap().process_receipt(receipt, errors=DISCARD)
    return int(swap["args"]["amountOut"])


def _mint_and_approve(w3: Web3, owner: LocalAccount, token: str, spender: str, amount: int) -> None:
    test_token = contract_at(w3, "TestToken", token)
    send_transaction(w3, owner, test_token.functions.mint(owner.address, amount))
    send_transaction(w3, owner, test_token.functions.approve(spender, amount))


def _deploy(w3: Web3, deployer: LocalAccount, name: str, args: Sequence[Any]) -> str:
    artifact = load_artifact(name)
    constructor = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor(*args)
    address = send_transaction(w3, deployer, constructor)["contractAddress"]
    if not address:
        raise DeployError(f"{name}: no contract address in the receipt")
    return to_checksum_address(address)
