"""Withdrawals: a withdraw transfer resolved with both signatures on its commitment, executed on chain
by the node (which pays the gas), deploying the channel first when it does not exist yet.

- The user withdraws: the user creates a withdraw transfer (its commitment signature inside); the node
  proposes the resolve with its own commitment signature and sends the transaction at once, since both
  signatures exist from then on. The contract pays a withdraw transfer out once, by `withdraw` or as a
  refund in a dispute, never both.
- The node withdraws (reclaiming collateral): the node creates the transfer, the user's client resolves
  it, then the node sends the transaction.
"""

from __future__ import annotations

import logging

from django.db import transaction

from channels_app import chain, network, realtime
from channels_app.models import Channel, OnchainTransaction, Transfer, Withdrawal
from channels_app.services import channels
from channels_app.services.transactions import transaction_enqueue
from connext.chain.channel_reads import is_deployed
from connext.chain.contracts import contract_at, create_channel_calldata
from connext.protocol import serialization, signing
from connext.protocol.definitions import WithdrawResolver, WithdrawState
from connext.protocol.errors import ProtocolError
from connext.protocol.types import DefinitionKind

logger = logging.getLogger(__name__)

Reason = OnchainTransaction.Reason
TxStatus = OnchainTransaction.Status
_IN_FLIGHT = (TxStatus.QUEUED, TxStatus.PENDING)


def channel_deployment(channel: Channel) -> tuple[bool, OnchainTransaction | None]:
    """(deployed, the in-flight transaction deploying it). Any transaction of ours to the factory for
    this channel deploys it: a plain deployment or a collateral deposit that creates the channel."""
    if channel.deployed:
        return True, None
    deploying = (
        OnchainTransaction.objects.filter(
            channel_address=channel.address, to_address=network.network().factory, status__in=_IN_FLIGHT
        )
        .order_by("pk")
        .first()
    )
    if deploying is not None:
        return False, deploying
    if is_deployed(chain.web3(), channel.address):
        channel.deployed = True
        channel.save(update_fields=["deployed", "updated_at"])
        return True, None
    return False, None


def channel_deploy_transaction(channel: Channel) -> OnchainTransaction | None:
    """The transaction that deploys `channel`, queued now if needed; None when it is deployed already.

    The caller holds the channel's row lock, so two withdrawals never queue two deployments.
    """
    deployed, deploying = channel_deployment(channel)
    if deployed or deploying is not None:
        return deploying
    net = network.network()
    return transaction_enqueue(
        reason=Reason.CHANNEL_DEPLOY,
        to=net.factory,
        data=create_channel_calldata(
            chain.web3(), factory=net.factory, node=channel.node_address, user=channel.user_address
        ),
        channel_address=channel.address,
    )


def _submit(channel: Channel, withdrawal: Withdrawal, *, reason: str) -> None:
    deployment = channel_deploy_transaction(channel)
    contract = contract_at(chain.web3(), "Channel", channel.address)
    calldata = contract.encode_abi(
        "withdraw",
        args=[
            (
                channel.address,
                withdrawal.asset_id,
                withdrawal.recipient,
                int(withdrawal.amount),
                withdrawal.nonce,
            ),
            serialization.parse_bytes(withdrawal.node_signature, field="nodeSignature"),
            serialization.parse_bytes(withdrawal.user_signature, field="userSignature"),
        ],
    )
    withdrawal.onchain_transaction = transaction_enqueue(
        reason=reason,
        to=channel.address,
        data=bytes.fromhex(calldata[2:]),
        channel_address=channel.address,
        asset_id=withdrawal.asset_id,
        after=deployment,
    )
    withdrawal.status = Withdrawal.Status.SUBMITTED
    withdrawal.save(update_fields=["onchain_transaction", "status", "updated_at"])
    realtime.push_event_on_commit(
        realtime.user_group(channel.user_address), "withdrawal.started", withdrawal_json(withdrawal)
    )


def withdrawal_json(withdrawal: Withdrawal) -> dict[str, object]:
    tx = withdrawal.onchain_transaction
    return {
        "transferId": withdrawal.transfer.transfer_id,
        "channelAddress": withdrawal.channel.address,
        "assetId": withdrawal.asset_id,
        "recipient": withdrawal.recipient,
        "amount": str(int(withdrawal.amount)),
        "nonce": str(withdrawal.nonce),
        "status": withdrawal.status,
        "transactionHash": tx.hash if tx is not None else "",
    }


def withdrawal_resolve_for_user(*, channel_id: int, transfer_id: str) -> Withdrawal | None:
    """Counter-sign the user's withdraw commitment: propose the resolve and send the transaction.

    Returns None when the channel is busy with another proposal or the transfer is no longer active.
    """
    with transaction.atomic():
        channel = channels.lock_for_proposal(channel_id)
        if channel is None:
            return None
        state = channels.latest_state(channel)
        transfer = state.transfer(bytes.fromhex(transfer_id[2:]))
        net = network.network()
        if transfer is None or net.definitions.get(transfer.definition) is not DefinitionKind.WITHDRAW:
            return None
        if transfer.responder != net.node_address:
            return None
        withdraw = WithdrawState.decode(transfer.encoded_state)
        node_signature = signing.sign_withdraw(withdraw.commitment(state.chain_id), network.node_signer())
        try:
            channels.propose_resolve_locked(
                channel, state, transfer.transfer_id, WithdrawResolver(node_signature).encode()
            )
        except ProtocolError as exc:  # e.g. `dispute_mismatch`: disputed on chain, it settles there only
            logger.warning("cannot resolve withdraw %s off chain: %s", transfer_id, exc)
            return None
        withdrawal = Withdrawal.objects.create(
            channel=channel,
            transfer=Transfer.objects.get(transfer_id=transfer_id),
            asset_id=withdraw.asset_id,
            recipient=withdraw.recipient,
            amount=withdraw.amount,
            nonce=withdraw.nonce,
            node_signature=serialization.hex_bytes(node_signature),
            user_signature=serialization.hex_bytes(withdraw.initiator_signature),
        )
        _submit(channel, withdrawal, reason=Reason.USER_WITHDRAWAL)
    return withdrawal


def withdrawal_submit_for_node(*, transfer_pk: int) -> Withdrawal | None:
    """The node's own withdraw transfer was resolved by the user: send its transaction (once)."""
    with transaction.atomic():
        # Lock order everywhere: the channel first, then its records.
        channel = Channel.objects.select_for_update().get(transfers__pk=transfer_pk)
        transfer = Transfer.objects.select_for_update().get(pk=transfer_pk)
        if transfer.status != Transfer.Status.RESOLVED or hasattr(transfer, "withdrawal"):
            return None
        withdraw = WithdrawState.decode(bytes.fromhex(transfer.transfer_state["encodedState"][2:]))
        user_signature = WithdrawResolver.decode(
            bytes.fromhex(transfer.encoded_resolver[2:])
        ).responder_signature
        withdrawal = Withdrawal.objects.create(
            channel=channel,
            transfer=transfer,
            asset_id=withdraw.asset_id,
            recipient=withdraw.recipient,
            amount=withdraw.amount,
            nonce=withdraw.nonce,
            node_signature=serialization.hex_bytes(withdraw.initiator_signature),
            user_signature=serialization.hex_bytes(user_signature),
        )
        _submit(channel, withdrawal, reason=Reason.NODE_WITHDRAWAL)
    return withdrawal


def withdrawal_settle(*, transaction_id: int) -> None:
    """The withdraw (or deployment) transaction settled: record it and tell the user."""
    record = OnchainTransaction.objects.get(pk=transaction_id)
    if record.reason == Reason.CHANNEL_DEPLOY:
        if record.status == TxStatus.MINED:
            Channel.objects.filter(address=record.channel_address).update(deployed=True)
        return
    with transaction.atomic():
        withdrawal = (
            Withdrawal.objects.select_for_update(of=("self",))
            .select_related("channel", "transfer")
            .filter(onchain_transaction=record)
            .first()
        )
        if withdrawal is None or withdrawal.status != Withdrawal.Status.SUBMITTED:
            return
        executed = record.status == TxStatus.MINED or _executed_on_chain(withdrawal)
        withdrawal.status = Withdrawal.Status.CONFIRMED if executed else Withdrawal.Status.FAILED
        withdrawal.save(update_fields=["status", "updated_at"])
        event = "withdrawal.confirmed" if executed else "withdrawal.failed"
        payload = withdrawal_json(withdrawal) | ({} if executed else {"error": record.error})
        realtime.push_event_on_commit(realtime.user_group(withdrawal.channel.user_address), event, payload)


def _executed_on_chain(withdrawal: Withdrawal) -> bool:
    """Someone else (the user, with both signatures) may have executed the commitment first."""
    try:
        channel = contract_at(chain.web3(), "Channel", withdrawal.channel.address)
        return bool(channel.functions.isWithdrawExecuted(withdrawal.nonce).call())
    except Exception:
        logger.exception("could not read whether withdraw %s executed", withdrawal.pk)
        return False
