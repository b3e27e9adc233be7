"""The user's side of a dispute in tests (what a client's `dispute_channel` and friends will send), and
the node's worker loop with the watchtower's periodic steps."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from web3 import Web3

from channels_app.models import ChannelUpdate, OnchainTransaction, ProcessedLog
from channels_app.services import watchtower
from connext.chain import devchain, disputes
from connext.protocol.types import ChannelState, TransferState
from tests.support.node_work import IN_FLIGHT, run_node_work
from tests.support.wallet import Wallet


def send_from(w3: Web3, key: bytes | str, to: str, data: bytes) -> Any:
    """Send a call from `key`'s account and return its successful receipt."""
    account = Account.from_key(key)
    tx: dict[str, Any] = {"from": account.address, "to": to, "data": data, "value": 0}
    gas = w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
    signed = account.sign_transaction(
        {
            **tx,
            "chainId": w3.eth.chain_id,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "gas": gas * 5 // 4,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
    assert receipt["status"] == 1
    return receipt


def gas_cost(receipt: Any) -> int:
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def signatures_at(state: ChannelState) -> tuple[bytes, bytes]:
    """Both signatures of a state the node stored (every doubly signed state is in `ChannelUpdate`)."""
    update = ChannelUpdate.objects.get(channel__address=state.channel_address, nonce=state.nonce)
    return bytes.fromhex(update.node_signature[2:]), bytes.fromhex(update.user_signature[2:])


def user_disputes_channel(wallet: Wallet, state: ChannelState) -> Any:
    node_signature, user_signature = signatures_at(state)
    calldata = disputes.dispute_channel_calldata(wallet.w3, state, node_signature, user_signature)
    return send_from(wallet.w3, wallet.key, state.channel_address, calldata)


def user_disputes_transfer(wallet: Wallet, state: ChannelState, transfer: TransferState) -> Any:
    calldata = disputes.dispute_transfer_calldata(wallet.w3, state, transfer)
    return send_from(wallet.w3, wallet.key, state.channel_address, calldata)


def user_defunds_transfer(wallet: Wallet, transfer: TransferState, resolver: bytes = b"") -> Any:
    calldata = disputes.defund_transfer_calldata(wallet.w3, transfer, resolver)
    return send_from(wallet.w3, wallet.key, transfer.channel_address, calldata)


def advance_chain(url: str, seconds: int) -> None:
    devchain.increase_time(url, seconds)


def run_tower_work(*wallets: Wallet, rounds: int = 16) -> None:
    """The node's workers (as `run_node_work`) plus the watchtower's beat, until a round changes nothing.
    Pass only the wallets that are online: they countersign what the node proposes."""
    for _ in range(rounds):
        before = (OnchainTransaction.objects.count(), ProcessedLog.objects.count())
        run_node_work(*wallets, rounds=1)
        watchtower.expiring_claims_check()
        watchtower.disputes_advance_all()
        after = (OnchainTransaction.objects.count(), ProcessedLog.objects.count())
        quiet = before == after and not OnchainTransaction.objects.filter(status__in=IN_FLIGHT).exists()
        if quiet and not any(wallet.proposal() is not None for wallet in wallets):  # e.g. a resume
            return
