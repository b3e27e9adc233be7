"""The dashboard's records as JSON (the API's answers): amounts as decimal strings of wei, times ISO 8601."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from channels_app.models import (
    Channel,
    ChannelUpdate,
    Dispute,
    OnchainTransaction,
    Payment,
    Transfer,
    Withdrawal,
)
from dashboard import selectors


def _wei(value: Any) -> str | None:
    return None if value is None else str(int(value))


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _ratio(value: Any) -> str | None:
    return None if value is None else str(value)


def overview_json(context: dict[str, Any]) -> dict[str, Any]:
    hot = context["hot_wallet"]
    return {
        "channelsByStatus": context["channels_by_status"],
        "valueLocked": [
            {
                "assetId": value.asset_id,
                "onChain": _wei(value.on_chain),
                "offChain": _wei(value.off_chain),
                "node": _wei(value.node),
                "users": _wei(value.users),
                "lockedInTransfers": _wei(value.locked),
                "collateralRatio": _ratio(value.collateral_ratio),
            }
            for value in context["value_locked"]
        ],
        "hotWallet": None
        if hot is None
        else {
            "address": hot[0],
            "assets": [
                {
                    "assetId": wallet.asset_id,
                    "balance": _wei(wallet.balance),
                    "minimum": _wei(wallet.minimum),
                    "low": wallet.low,
                }
                for wallet in hot[1]
            ],
        },
        "payments": [
            {
                "window": window.window,
                "assetId": window.asset_id,
                "count": window.count,
                "completed": window.completed,
                "failed": window.not_completed,
                "volume": _wei(window.volume),
                "average": _wei(window.average),
                "failureRate": _ratio(window.failure_rate),
            }
            for window in context["windows"]
        ],
        "inFlight": [
            {"assetId": asset, "count": count, "amount": _wei(amount)}
            for asset, (count, amount) in sorted(context["in_flight"].items())
        ],
        "openDisputes": context["open_disputes"],
        "swaps": [
            {
                "giveAssetId": row.give_asset,
                "takeAssetId": row.take_asset,
                **{
                    period: {
                        "count": totals.count,
                        "given": _wei(totals.given),
                        "taken": _wei(totals.taken),
                        "spread": _wei(totals.spread),
                    }
                    for period, totals in (("day", row.day), ("all", row.all))
                },
            }
            for row in context["swaps"]
        ],
        "swapExposure": [
            {"assetId": row.asset_id, "paidOut": str(row.paid_out), "limit": _wei(row.limit)}
            for row in context["swap_exposure"]
        ],
    }


def series_json(
    window: str, bucket: str, points: list[selectors.SeriesPoint], collateral: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "window": window,
        "bucket": bucket,
        "payments": [
            {
                "at": _time(point.at),
                "count": point.count,
                "failed": point.failed,
                "volume": {asset: _wei(amount) for asset, amount in point.volume.items()},
            }
            for point in points
        ],
        "collateral": [
            {
                "at": _time(row["at"]),
                "assetId": row["asset_id"],
                "node": _wei(row["node"]),
                "users": _wei(row["users"]),
                "locked": _wei(row["locked"]),
                "onChain": _wei(row["on_chain"]),
            }
            for row in collateral
        ],
    }


def channel_row_json(channel: Channel) -> dict[str, Any]:
    return {
        "address": channel.address,
        "user": channel.user_address,
        "status": channel.status,
        "nonce": str(channel.nonce),
        "deployed": channel.deployed,
        "nodeBalance": _wei(getattr(channel, "node_balance", None)),
        "userBalance": _wei(getattr(channel, "user_balance", None)),
        "createdAt": _time(channel.created_at),
        "updatedAt": _time(channel.updated_at),
    }


def _update_json(update: ChannelUpdate) -> dict[str, Any]:
    return {
        "nonce": str(update.nonce),
        "kind": update.kind,
        "initiator": update.initiator,
        "update": update.update,
        "stateHash": update.state_hash,
        "nodeSignature": update.node_signature,
        "userSignature": update.user_signature,
        "createdAt": _time(update.created_at),
    }


def transfer_json(transfer: Transfer) -> dict[str, Any]:
    return {
        "transferId": transfer.transfer_id,
        "paymentId": transfer.payment_id,
        "kind": transfer.kind,
        "status": transfer.status,
        "assetId": transfer.asset_id,
        "amount": _wei(transfer.amount),
        "initiator": transfer.initiator,
        "responder": transfer.responder,
        "createdNonce": str(transfer.created_nonce),
        "resolvedNonce": None if transfer.resolved_nonce is None else str(transfer.resolved_nonce),
        "createdAt": _time(transfer.created_at),
    }


def withdrawal_json(withdrawal: Withdrawal) -> dict[str, Any]:
    tx = withdrawal.onchain_transaction
    return {
        "assetId": withdrawal.asset_id,
        "recipient": withdrawal.recipient,
        "amount": _wei(withdrawal.amount),
        "status": withdrawal.status,
        "transactionHash": tx.hash if tx is not None and tx.hash else None,
        "createdAt": _time(withdrawal.created_at),
    }


def transaction_json(tx: OnchainTransaction, head: int | None) -> dict[str, Any]:
    fee_cap = getattr(tx, "max_fee_per_gas", None)
    return {
        "id": tx.pk,
        "reason": tx.reason,
        "status": tx.status,
        "hash": tx.hash or None,
        "nonce": None if tx.nonce is None else str(tx.nonce),
        "channelAddress": tx.channel_address or None,
        "assetId": tx.asset_id or None,
        "value": _wei(tx.value),
        "gasUsed": None if tx.gas_used is None else str(tx.gas_used),
        "feeAtMost": None if tx.gas_used is None or fee_cap is None else _wei(tx.gas_used * int(fee_cap)),
        "blockNumber": None if tx.block_number is None else str(tx.block_number),
        "confirmations": None
        if head is None or tx.block_number is None
        else max(0, head - tx.block_number + 1),
        "attempts": getattr(tx, "attempt_count", None) or 0,
        "error": tx.error or None,
        "createdAt": _time(tx.created_at),
        "updatedAt": _time(tx.updated_at),
    }


def dispute_json(dispute: Dispute) -> dict[str, Any]:
    return {
        "id": dispute.pk,
        "channelAddress": dispute.channel.address,
        "status": dispute.status,
        "disputedBy": dispute.disputed_by,
        "disputer": dispute.disputer or None,
        "reason": dispute.reason or None,
        "startedNonce": str(dispute.started_nonce),
        "nonce": str(dispute.nonce),
        "consensusExpiry": dispute.consensus_expiry,
        "defundExpiry": dispute.defund_expiry,
        "defunds": dispute.defunds,
        "createdAt": _time(dispute.created_at),
        "actions": [
            {
                "kind": action.kind,
                "transferId": action.transfer_id or None,
                "assetIds": action.asset_ids,
                "transactionStatus": action.transaction.status,
                "transactionHash": action.transaction.hash or None,
                "createdAt": _time(action.created_at),
            }
            for action in dispute.actions.all()
        ],
    }


def channel_detail_json(detail: selectors.ChannelDetail, head: int | None) -> dict[str, Any]:
    return {
        "channel": channel_row_json(detail.channel),
        "assets": [
            {
                "assetId": asset.asset_id,
                "node": _wei(asset.node),
                "user": _wei(asset.user),
                "processedDepositsNode": _wei(asset.processed_node),
                "processedDepositsUser": _wei(asset.processed_user),
                "profile": {
                    "collateralizeThreshold": _wei(asset.collateralize_threshold),
                    "target": _wei(asset.target),
                    "reclaimThreshold": _wei(asset.reclaim_threshold),
                    "operatorSet": asset.operator_profile,
                },
                "collateral": asset.position,
            }
            for asset in detail.assets
        ],
        "latest": detail.signed_state,
        "updateCount": detail.update_count,
        "updatesPage": detail.updates_page,
        "updatesPages": detail.updates_pages,
        "updates": [_update_json(update) for update in detail.updates],
        "transfers": [transfer_json(transfer) for transfer in detail.transfers],
        "withdrawals": [withdrawal_json(withdrawal) for withdrawal in detail.withdrawals],
        "disputes": [dispute_json(dispute) for dispute in detail.disputes],
        "transactions": [transaction_json(tx, head) for tx in detail.transactions],
    }


def payment_json(payment: Payment) -> dict[str, Any]:
    return {
        "paymentId": payment.payment_id,
        "kind": payment.kind,
        "status": payment.status,
        "assetId": payment.asset_id,
        "amount": _wei(payment.amount),
        "sender": payment.sender,
        "recipient": payment.recipient or None,
        "redeemer": payment.redeemer or None,
        "failure": payment.failure or None,
        "createdAt": _time(payment.created_at),
        "updatedAt": _time(payment.updated_at),
    }
