"""Reads of a channel's on-chain totals, the same for a channel that is deployed and one that is not.

Before deployment the address can already hold funds (users deposit by plain transfer): then the node
has deposited nothing through the contract and nothing was withdrawn, so all of it is the user's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError
from web3.types import BlockIdentifier, RPCEndpoint

ETH = "0x0000000000000000000000000000000000000000"
_ERC20_BALANCE_OF = [
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]


@dataclass(frozen=True)
class DepositTotals:
    """Cumulative deposits of one asset into one channel: the node's recorded, the user's derived."""

    node: int
    user: int


def confirmed_block(w3: Web3, confirmations: int) -> int:
    """The newest block with `confirmations` blocks on top of it."""
    return max(0, int(w3.eth.block_number) - confirmations)


def is_deployed(w3: Web3, address: str, *, block: BlockIdentifier = "latest") -> bool:
    return len(w3.eth.get_code(to_checksum_address(address), block_identifier=block)) > 0


def asset_balance(w3: Web3, holder: str, asset_id: str, *, block: BlockIdentifier = "latest") -> int:
    holder = to_checksum_address(holder)
    if int(asset_id, 16) == 0:
        return int(w3.eth.get_balance(holder, block_identifier=block))
    token = w3.eth.contract(address=to_checksum_address(asset_id), abi=_ERC20_BALANCE_OF)
    try:
        return int(token.functions.balanceOf(holder).call(block_identifier=block))
    except BadFunctionCallOutput:
        # No token code at that block (read below the token's deployment): nobody held any.
        if len(w3.eth.get_code(token.address, block_identifier=block)) == 0:
            return 0
        raise


_SYMBOL = bytes.fromhex("95d89b41")  # symbol()
_DECIMALS = bytes.fromhex("313ce567")  # decimals()


@dataclass(frozen=True)
class TokenMetadata:
    """An ERC20's optional metadata; None where the token does not answer (no code, a revert, a value
    that is not one)."""

    symbol: str | None
    decimals: int | None


def token_metadata(w3: Web3, asset_id: str) -> TokenMetadata:
    """`symbol()` and `decimals()` of a token (both optional in ERC20). A symbol is an ABI string or,
    in older tokens, a bytes32; decimals above 77 are not a number of decimals any uint256 has."""
    address = to_checksum_address(asset_id)

    def call(data: bytes) -> bytes:
        try:
            return bytes(w3.eth.call({"to": address, "data": data}))
        except (ContractLogicError, BadFunctionCallOutput):
            return b""

    symbol: str | None = None
    raw = call(_SYMBOL)
    if len(raw) == 32:
        symbol = raw.rstrip(b"\0").decode("utf-8", "replace") or None
    elif len(raw) >= 64:
        offset, length = int.from_bytes(raw[:32]), int.from_bytes(raw[32:64])
        if offset == 32 and length <= len(raw) - 64:
            symbol = raw[64 : 64 + length].decode("utf-8", "replace") or None
    raw = call(_DECIMALS)
    decimals = int.from_bytes(raw) if len(raw) == 32 else None
    if decimals is not None and decimals > 77:
        decimals = None
    return TokenMetadata(symbol=symbol[:32] if symbol else None, decimals=decimals)


def deposit_totals(w3: Web3, channel_address: str, asset_id: str, *, block: BlockIdentifier) -> DepositTotals:
    """The deposit totals `Channel` reports at `block` (derived from the balance when not deployed)."""
    if not isinstance(block, int):
        # Every read below must see the same block: "latest" twice could straddle the block that
        # deploys the channel with the node's deposit, and count that deposit as the user's.
        block = int(w3.eth.get_block(block)["number"])
    return deposit_totals_many(w3, [(channel_address, asset_id)], block=block)[(channel_address, asset_id)]


DEFAULT_BATCH_SIZE = 100
_TOTAL_DEPOSITS_NODE = keccak(text="getTotalDepositsNode(address)")[:4]
_TOTAL_DEPOSITS_USER = keccak(text="getTotalDepositsUser(address)")[:4]
_BALANCE_OF = keccak(text="balanceOf(address)")[:4]


class ChainReadError(RuntimeError):
    """The chain's RPC refused a read (or a whole batch of them)."""


def deposit_totals_many(
    w3: Web3,
    pairs: Iterable[tuple[str, str]],
    *,
    block: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[tuple[str, str], DepositTotals]:
    """`deposit_totals` of every (channel address, asset id) pair at `block`, keyed by the pair as given.

    Two rounds of JSON-RPC batches of at most `batch_size` calls each, whatever the number of pairs:
    first which channels (and tokens) have code at `block`, then per pair the contract's two totals
    (deployed) or the address's balance (not deployed). A node watching thousands of channels asks its
    provider tens of times per block instead of three times per channel and asset. `batch_size` 1
    sends each call on its own, for providers that refuse batches."""
    wanted = list(dict.fromkeys(pairs))
    hex_block = hex(block)
    # Round 1: code of every channel and of every token (a token read below its deployment holds 0).
    with_code = sorted({channel for channel, _ in wanted} | {a for _, a in wanted if int(a, 16) != 0})
    codes = _batch(
        w3,
        [(RPCEndpoint("eth_getCode"), [to_checksum_address(a), hex_block]) for a in with_code],
        batch_size,
    )
    deployed = {address: _hex_bytes(code) != b"" for address, code in zip(with_code, codes, strict=True)}
    # Round 2: the totals. Each pair asks one or two calls; `plan` says how to read its answers.
    calls: list[tuple[RPCEndpoint, list[Any]]] = []
    plan: list[tuple[tuple[str, str], str]] = []
    for channel, asset in wanted:
        if deployed[channel]:
            calls.append(_eth_call(channel, _TOTAL_DEPOSITS_NODE, asset, hex_block))
            calls.append(_eth_call(channel, _TOTAL_DEPOSITS_USER, asset, hex_block))
            plan.append(((channel, asset), "contract"))
        elif int(asset, 16) == 0:
            calls.append((RPCEndpoint("eth_getBalance"), [to_checksum_address(channel), hex_block]))
            plan.append(((channel, asset), "balance"))
        elif deployed[asset]:
            calls.append(_eth_call(asset, _BALANCE_OF, channel, hex_block))
            plan.append(((channel, asset), "token"))
        else:
            plan.append(((channel, asset), "no_token"))
    answers = iter(_batch(w3, calls, batch_size))
    totals: dict[tuple[str, str], DepositTotals] = {}
    for pair, how in plan:
        if how == "contract":
            node = _uint(next(answers), f"getTotalDepositsNode of {pair[0]}")
            totals[pair] = DepositTotals(
                node=node, user=_uint(next(answers), f"getTotalDepositsUser of {pair[0]}")
            )
        elif how == "balance":
            totals[pair] = DepositTotals(node=0, user=int(str(next(answers)), 16))
        elif how == "token":
            totals[pair] = DepositTotals(node=0, user=_uint(next(answers), f"balanceOf of token {pair[1]}"))
        else:
            totals[pair] = DepositTotals(node=0, user=0)
    return totals


def _eth_call(
    to: str, selector: bytes, address_argument: str, hex_block: str
) -> tuple[RPCEndpoint, list[Any]]:
    data = selector + bytes(12) + bytes.fromhex(address_argument.removeprefix("0x"))
    return RPCEndpoint("eth_call"), [{"to": to_checksum_address(to), "data": "0x" + data.hex()}, hex_block]


def _batch(w3: Web3, calls: Sequence[tuple[RPCEndpoint, list[Any]]], batch_size: int) -> list[Any]:
    """The results of `calls`, in order, sent in JSON-RPC batches of at most `batch_size`."""
    results: list[Any] = []
    provider = w3.provider
    for start in range(0, len(calls), max(1, batch_size)):
        chunk = calls[start : start + max(1, batch_size)]
        if len(chunk) == 1:
            responses: Any = [provider.make_request(*chunk[0])]
        else:
            responses = provider.make_batch_request(list(chunk))  # type: ignore[attr-defined]
        if not isinstance(responses, list) or len(responses) != len(chunk):
            raise ChainReadError(f"The RPC refused a batch of {len(chunk)} reads: {responses!r}")
        for (method, params), response in zip(chunk, responses, strict=True):
            if "error" in response or "result" not in response:
                raise ChainReadError(f"{method}{params!r} failed: {response.get('error')!r}")
            results.append(response["result"])
    return results


def _hex_bytes(value: Any) -> bytes:
    return bytes.fromhex(str(value).removeprefix("0x"))


def _uint(value: Any, what: str) -> int:
    """A uint256 return value; a call that returned nothing (no such function) is an error."""
    data = _hex_bytes(value)
    if len(data) != 32:
        raise BadFunctionCallOutput(f"{what} returned {len(data)} bytes, not a uint256")
    return int.from_bytes(data, "big")
