"""Calls and reads of a channel's dispute: calldata for `disputeChannel`, `defundChannel`,
`disputeTransfer`, `defundTransfer`, the on-chain dispute records and the dispute events' topics.

Shared by the node's watchtower and the client's: both build the same calls from `connext.protocol`
values. Amounts, nonces and expiries are `int`; chain time is the latest block's timestamp, which is
what the contract compares its windows with (never the local clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.types import BlockIdentifier

from connext.chain import channel_reads, logs
from connext.chain.contracts import contract_at
from connext.protocol.types import AssetDefund, ChainDispute, ChannelState, TransferState


def _topic(signature: str) -> str:
    return "0x" + keccak(text=signature).hex()


CHANNEL_DISPUTED_TOPIC = _topic("ChannelDisputed(address,uint256,bytes32,bytes32,uint256,uint256)")
CHANNEL_DEFUNDED_TOPIC = _topic("ChannelDefunded(address,uint256,uint256,uint256)")
TRANSFER_DISPUTED_TOPIC = _topic("TransferDisputed(bytes32,bytes32,uint256)")
TRANSFER_DEFUNDED_TOPIC = _topic("TransferDefunded(bytes32,bytes32,uint256,uint256)")


def channel_state_abi(state: ChannelState) -> tuple[Any, ...]:
    """The `ChannelState` struct as web3 encodes it."""
    return (
        state.channel_address,
        state.chain_id,
        state.node,
        state.user,
        list(state.asset_ids),
        [list(pair) for pair in state.balances],
        [list(pair) for pair in state.processed_deposits],
        list(state.defund_nonces),
        state.timeout,
        state.nonce,
        state.merkle_root,
    )


def transfer_state_abi(transfer: TransferState) -> tuple[Any, ...]:
    """The `TransferState` struct as web3 encodes it."""
    return (
        transfer.channel_address,
        transfer.transfer_id,
        transfer.payment_id,
        transfer.definition,
        transfer.initiator,
        transfer.responder,
        transfer.asset_id,
        list(transfer.balance),
        transfer.transfer_timeout,
        transfer.initial_state_hash,
        transfer.meta_hash,
    )


def _calldata(w3: Web3, channel_address: str, function: str, args: list[Any]) -> bytes:
    encoded = contract_at(w3, "Channel", channel_address).encode_abi(function, args=args)
    return bytes.fromhex(encoded[2:])


def dispute_channel_calldata(
    w3: Web3, state: ChannelState, node_signature: bytes, user_signature: bytes
) -> bytes:
    return _calldata(
        w3,
        state.channel_address,
        "disputeChannel",
        [channel_state_abi(state), node_signature, user_signature],
    )


def defund_channel_calldata(w3: Web3, state: ChannelState, asset_ids: list[str]) -> bytes:
    return _calldata(w3, state.channel_address, "defundChannel", [channel_state_abi(state), asset_ids])


def dispute_transfer_calldata(w3: Web3, state: ChannelState, transfer: TransferState) -> bytes:
    proof = state.merkle_proof(transfer.transfer_id)
    return _calldata(w3, state.channel_address, "disputeTransfer", [transfer_state_abi(transfer), proof])


def defund_transfer_calldata(
    w3: Web3, transfer: TransferState, encoded_resolver: bytes, responder_signature: bytes = b""
) -> bytes:
    return _calldata(
        w3,
        transfer.channel_address,
        "defundTransfer",
        [transfer_state_abi(transfer), transfer.encoded_state, encoded_resolver, responder_signature],
    )


@dataclass(frozen=True)
class OnchainDispute:
    """`Channel.getDispute()`: zero expiries mean the channel was never disputed."""

    state_hash: bytes
    merkle_root: bytes
    nonce: int
    consensus_expiry: int
    defund_expiry: int


@dataclass(frozen=True)
class OnchainTransferDispute:
    expiry: int  # zero: never disputed
    defunded: bool


def chain_time(w3: Web3) -> int:
    """The latest block's timestamp: the clock the contract's windows run on."""
    return int(w3.eth.get_block("latest")["timestamp"])


def read_dispute(w3: Web3, channel_address: str, *, block: BlockIdentifier = "latest") -> OnchainDispute:
    values = contract_at(w3, "Channel", channel_address).functions.getDispute().call(block_identifier=block)
    return OnchainDispute(bytes(values[0]), bytes(values[1]), int(values[2]), int(values[3]), int(values[4]))


def read_transfer_dispute(w3: Web3, channel_address: str, transfer_hash: bytes) -> OnchainTransferDispute:
    values = contract_at(w3, "Channel", channel_address).functions.getTransferDispute(transfer_hash).call()
    return OnchainTransferDispute(int(values[0]), bool(values[1]))


def read_defund_nonce(w3: Web3, channel_address: str, asset_id: str) -> int:
    channel = contract_at(w3, "Channel", channel_address)
    return int(channel.functions.getDefundNonce(to_checksum_address(asset_id)).call())


def is_withdraw_executed(w3: Web3, channel_address: str, nonce: int) -> bool:
    return bool(contract_at(w3, "Channel", channel_address).functions.isWithdrawExecuted(nonce).call())


def read_defunds(w3: Web3, channel_address: str, asset_ids: list[str]) -> dict[str, AssetDefund]:
    """Per asset, its latest defund: the stored `getDefundNonce` and the `ChannelDefunded` payout at it.
    Assets never defunded are left out."""
    channel = contract_at(w3, "Channel", channel_address)
    stored = {asset: read_defund_nonce(w3, channel_address, asset) for asset in asset_ids}
    if not any(stored.values()):
        return {}
    needed = {(asset, nonce) for asset, nonce in stored.items() if nonce}

    def payouts_of(found: Sequence[Any]) -> dict[tuple[str, int], tuple[int, int]]:
        return {
            (to_checksum_address(log["args"]["assetId"]), int(log["args"]["defundNonce"])): (
                int(log["args"]["toNode"]),
                int(log["args"]["toUser"]),
            )
            for log in found
        }

    # The latest defunds are the newest events: read back from the head only as far as they lie.
    payouts = payouts_of(
        logs.scan_back(
            channel.events.ChannelDefunded,
            to_block=int(w3.eth.block_number),
            enough=lambda found: needed <= payouts_of(found).keys(),
        )
    )
    defunds: dict[str, AssetDefund] = {}
    for asset, nonce in stored.items():
        if nonce == 0:
            continue
        payout = payouts.get((asset, nonce))
        if payout is None:  # the stored nonce without its event: the node cannot be the one to guess
            raise LookupError(f"no ChannelDefunded of {asset} at defund nonce {nonce} on {channel_address}")
        defunds[asset] = AssetDefund(asset_id=asset, defund_nonce=nonce, payout=payout)
    return defunds


def read_chain_dispute(
    w3: Web3, state: ChannelState, extra_assets: tuple[str, ...] = ()
) -> ChainDispute | None:
    """What the chain says about the channel's latest dispute, for checking an update to `state`: the
    dispute record, the defunds of the state's assets (and `extra_assets`), and which of the state's
    transfers were disputed and paid out. None when the channel was never disputed."""
    address = state.channel_address
    if not channel_reads.is_deployed(w3, address):
        return None
    onchain = read_dispute(w3, address)
    if onchain.defund_expiry == 0:
        return None
    assets = [*state.asset_ids, *(a for a in extra_assets if a not in state.asset_ids)]
    disputed: set[bytes] = set()
    defunded: set[bytes] = set()
    for transfer in state.transfers:
        record = read_transfer_dispute(w3, address, transfer.transfer_hash)
        if record.expiry:
            disputed.add(transfer.transfer_hash)
        if record.defunded:
            defunded.add(transfer.transfer_hash)
    return ChainDispute(
        state_hash=onchain.state_hash,
        defund_expiry=onchain.defund_expiry,
        chain_time=chain_time(w3),
        defunds=read_defunds(w3, address, assets),
        disputed_transfers=frozenset(disputed),
        defunded_transfers=frozenset(defunded),
    )
