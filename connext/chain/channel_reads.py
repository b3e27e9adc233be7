"""Reads of a channel's on-chain totals, the same for a channel that is deployed and one that is not.

Before deployment the address can already hold funds (users deposit by plain transfer): then the node
has deposited nothing through the contract and nothing was withdrawn, so all of it is the user's.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import BadFunctionCallOutput
from web3.types import BlockIdentifier

from connext.chain.contracts import contract_at

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


def deposit_totals(w3: Web3, channel_address: str, asset_id: str, *, block: BlockIdentifier) -> DepositTotals:
    """The deposit totals `Channel` reports at `block` (derived from the balance when not deployed)."""
    if not isinstance(block, int):
        # Every read below must see the same block: "latest" twice could straddle the block that
        # deploys the channel with the node's deposit, and count that deposit as the user's.
        block = int(w3.eth.get_block(block)["number"])
    if not is_deployed(w3, channel_address, block=block):
        return DepositTotals(node=0, user=asset_balance(w3, channel_address, asset_id, block=block))
    channel = contract_at(w3, "Channel", channel_address)
    asset = to_checksum_address(asset_id)
    node = int(channel.functions.getTotalDepositsNode(asset).call(block_identifier=block))
    user = int(channel.functions.getTotalDepositsUser(asset).call(block_identifier=block))
    return DepositTotals(node=node, user=user)
