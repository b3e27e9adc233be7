"""The chain watcher: deposits arriving in channels, withdraw commitments executed on chain, and the
dispute events of our channels (handed to the watchtower).

Deposits need no event (a user deposits by a plain transfer, before or after deployment), so the
watcher compares each open channel's on-chain totals at the confirmation depth with what its latest
state credits. Logs are read from a stored block cursor and each is acted on once
(`ProcessedLog` is unique per chain, transaction and log index).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from eth_utils.crypto import keccak
from web3 import Web3

from channels_app import chain, network, realtime
from channels_app.models import BlockCursor, Channel, ProcessedLog, Withdrawal
from channels_app.services import channels, collateral, fence, watchtower
from connext.chain import channel_reads, disputes
from connext.chain.contracts import contract_at

logger = logging.getLogger(__name__)

WITHDRAWN_TOPIC = "0x" + keccak(text="Withdrawn(address,address,uint256,uint256)").hex()
MAX_BLOCKS_PER_SCAN = 2_000


_TOTALS_AT_BLOCK: dict[tuple[str, str], channel_reads.DepositTotals] = {}
_TOTALS_BLOCK: list[bytes] = [b""]


def _deposit_totals(
    w3: Web3, pairs: list[tuple[str, str]], block: int, block_hash: bytes
) -> dict[tuple[str, str], channel_reads.DepositTotals]:
    """The chain's deposit totals of every (channel, asset) pair at `block`, in a few JSON-RPC
    batches, read once per block (balances change only with blocks; the watch runs every few seconds
    whether or not a block arrived). Keyed by the block's hash: a reorganised (or, on a dev chain,
    reverted) height is read again."""
    if _TOTALS_BLOCK[0] != block_hash:
        _TOTALS_AT_BLOCK.clear()
        _TOTALS_BLOCK[0] = block_hash
    missing = [pair for pair in pairs if pair not in _TOTALS_AT_BLOCK]
    if missing:
        _TOTALS_AT_BLOCK.update(
            channel_reads.deposit_totals_many(
                w3, missing, block=block, batch_size=settings.CHAIN_RPC_BATCH_SIZE
            )
        )
    return {pair: _TOTALS_AT_BLOCK[pair] for pair in pairs}


def deposits_watch() -> list[int]:
    """Push `deposit.confirmed` to users whose channel holds more than its state credits; return the
    ids of channels where the node has uncredited deposits (the caller reconciles them)."""
    w3 = chain.web3()
    net = network.network()
    block = channel_reads.confirmed_block(w3, settings.CHAIN_CONFIRMATIONS)
    block_hash = bytes(w3.eth.get_block(block)["hash"])
    open_channels = list(
        Channel.objects.filter(status=Channel.Status.OPEN).only(
            "pk", "address", "user_address", "nonce", "node_signature", "latest_state"
        )
    )
    totals_of = _deposit_totals(
        w3,
        [(channel.address, asset_id) for channel in open_channels for asset_id in net.assets],
        block,
        block_hash,
    )
    node_credit_due: list[int] = []
    for channel in open_channels:
        state = channels.latest_state(channel)
        for asset_id in net.assets:
            totals = totals_of[(channel.address, asset_id)]
            index = state.asset_index(asset_id)
            processed_node, processed_user = (0, 0) if index is None else state.processed_deposits[index]
            if totals.node > processed_node:
                collateral.node_deposit_seen(channel_address=channel.address)
                node_credit_due.append(channel.pk)
            if totals.user <= processed_user:
                continue
            seen_key = f"deposit-seen:{channel.address}:{asset_id}"
            if cache.get(seen_key) == totals.user:
                continue  # already told about this total
            cache.set(seen_key, totals.user, timeout=24 * 3600)
            realtime.push_event_now(
                realtime.user_group(channel.user_address),
                "deposit.confirmed",
                {
                    "channelAddress": channel.address,
                    "assetId": asset_id,
                    "totalDepositsUser": str(totals.user),
                    "totalDepositsNode": str(totals.node),
                    "processedDepositsUser": str(processed_user),
                    "blockNumber": str(block),
                },
            )
    return sorted(set(node_credit_due))


def logs_watch() -> int:
    """Act once on every `Withdrawn` and dispute log from the cursor to the confirmation depth.
    Returns logs seen."""
    w3 = chain.web3()
    chain_id = int(w3.eth.chain_id)
    head = channel_reads.confirmed_block(w3, settings.CHAIN_CONFIRMATIONS)
    cursor, _ = BlockCursor.objects.get_or_create(
        name="logs", chain_id=chain_id, defaults={"block_number": max(0, settings.CHAIN_START_BLOCK - 1)}
    )
    start = cursor.block_number + 1 if cursor.block_number else settings.CHAIN_START_BLOCK
    if start > head:
        return 0
    end = min(head, start + MAX_BLOCKS_PER_SCAN - 1)
    topics = [WITHDRAWN_TOPIC, *_DISPUTE_HANDLERS]
    logs = w3.eth.get_logs({"fromBlock": start, "toBlock": end, "topics": [topics]})  # type: ignore[typeddict-item]
    ours = _our_channels(log["address"] for log in logs)
    for log in logs:
        topic = log["topics"][0].to_0x_hex()
        if topic == WITHDRAWN_TOPIC:
            _withdrawn(chain_id, log)
        elif log["address"] in ours:
            _DISPUTE_HANDLERS[topic](w3, chain_id, log)
    BlockCursor.objects.filter(pk=cursor.pk, block_number=cursor.block_number).update(block_number=end)
    return len(logs)


def _withdrawn(chain_id: int, log: dict) -> None:
    channel_address = log["address"]
    nonce = int.from_bytes(bytes(log["data"])[32:64], "big")
    with transaction.atomic():
        if not _first_time(chain_id, log):
            return
        # A commitment made at a nonce the node never stored: its data is behind what it signed.
        fence.chain_shows_nonce(channel_address=channel_address, nonce=nonce, event="Withdrawn")
        withdrawal = (
            Withdrawal.objects.select_for_update(of=("self",))
            .select_related("channel", "transfer", "onchain_transaction")
            .filter(channel__address=channel_address, nonce=nonce)
            .first()
        )
        if withdrawal is None or withdrawal.status == Withdrawal.Status.CONFIRMED:
            return
        withdrawal.status = Withdrawal.Status.CONFIRMED
        withdrawal.save(update_fields=["status", "updated_at"])
        from channels_app.services.withdrawals import withdrawal_json

        # The log can arrive before the sender settles its transaction: name the executing one.
        realtime.push_event_on_commit(
            realtime.user_group(withdrawal.channel.user_address),
            "withdrawal.confirmed",
            withdrawal_json(withdrawal) | {"transactionHash": log["transactionHash"].to_0x_hex()},
        )


# -- disputes: decoded here, acted on by the watchtower --------------------------------------------


def _our_channels(addresses: Iterable[str]) -> set[str]:
    """Which of these log addresses are channels of this node (one query per scan)."""
    wanted = set(addresses)
    if not wanted:
        return set()
    return set(Channel.objects.filter(address__in=wanted).values_list("address", flat=True))


def _first_time(chain_id: int, log: Any) -> bool:
    """Record the log as processed; False when another watcher (or an earlier run) already did."""
    try:
        with transaction.atomic():
            ProcessedLog.objects.create(
                chain_id=chain_id,
                tx_hash=log["transactionHash"].to_0x_hex(),
                log_index=int(log["logIndex"]),
                block_number=int(log["blockNumber"]),
            )
    except IntegrityError:
        return False
    return True


def _event_args(w3: Web3, name: str, log: Any) -> Any:
    return contract_at(w3, "Channel", log["address"]).events[name]().process_log(log)["args"]


def _channel_disputed(w3: Web3, chain_id: int, log: Any) -> None:
    args = _event_args(w3, "ChannelDisputed", log)
    with transaction.atomic():
        if _first_time(chain_id, log):
            fence.chain_shows_nonce(
                channel_address=log["address"], nonce=int(args["nonce"]), event="ChannelDisputed"
            )
            watchtower.channel_disputed_observe(
                channel_address=log["address"],
                disputer=args["disputer"],
                nonce=int(args["nonce"]),
                state_hash="0x" + bytes(args["stateHash"]).hex(),
                consensus_expiry=int(args["consensusExpiry"]),
                defund_expiry=int(args["defundExpiry"]),
            )


def _channel_defunded(w3: Web3, chain_id: int, log: Any) -> None:
    args = _event_args(w3, "ChannelDefunded", log)
    with transaction.atomic():
        if _first_time(chain_id, log):
            watchtower.channel_defunded_observe(
                channel_address=log["address"],
                asset_id=args["assetId"],
                defund_nonce=int(args["defundNonce"]),
                to_node=int(args["toNode"]),
                to_user=int(args["toUser"]),
            )


def _transfer_disputed(w3: Web3, chain_id: int, log: Any) -> None:
    args = _event_args(w3, "TransferDisputed", log)
    with transaction.atomic():
        if _first_time(chain_id, log):
            watchtower.transfer_disputed_observe(
                channel_address=log["address"],
                transfer_id="0x" + bytes(args["transferId"]).hex(),
                transfer_hash="0x" + bytes(args["transferHash"]).hex(),
                expiry=int(args["expiry"]),
            )


def _transfer_defunded(w3: Web3, chain_id: int, log: Any) -> None:
    args = _event_args(w3, "TransferDefunded", log)
    to_responder = int(args["toResponder"])
    resolver = _defund_resolver(w3, log) if to_responder > 0 else None
    with transaction.atomic():
        if _first_time(chain_id, log):
            watchtower.transfer_defunded_observe(
                channel_address=log["address"],
                transfer_id="0x" + bytes(args["transferId"]).hex(),
                transfer_hash="0x" + bytes(args["transferHash"]).hex(),
                to_initiator=int(args["toInitiator"]),
                to_responder=to_responder,
                encoded_resolver=resolver,
            )


def _defund_resolver(w3: Web3, log: Any) -> bytes | None:
    """The resolver of a transfer paid out on chain, from the `defundTransfer` call itself (None when
    the call came through another contract: its input is not ours to read)."""
    tx = w3.eth.get_transaction(log["transactionHash"])
    if tx.get("to") != log["address"]:
        return None
    try:
        function, params = contract_at(w3, "Channel", log["address"]).decode_function_input(tx["input"])
    except ValueError:
        return None
    if function.fn_name != "defundTransfer":
        return None
    return bytes(params["encodedResolver"])


_DISPUTE_HANDLERS: dict[str, Callable[[Web3, int, Any], None]] = {
    disputes.CHANNEL_DISPUTED_TOPIC: _channel_disputed,
    disputes.CHANNEL_DEFUNDED_TOPIC: _channel_defunded,
    disputes.TRANSFER_DISPUTED_TOPIC: _transfer_disputed,
    disputes.TRANSFER_DEFUNDED_TOPIC: _transfer_defunded,
}
