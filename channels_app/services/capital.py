"""What one account may make the node spend: its capital (collateral) and its gas (withdrawals).

The rule (docs/protocol.md, "The node's capital and gas"): the node locks capital in an account's
channel only for what the account itself brings or receives, never more than a bound per account,
and takes back what sits idle; it pays gas for an account's withdrawals only from a least amount on,
at a bounded rate per channel and within a gas budget per account and day. Every check runs before
anything is signed or queued, so a refusal changes nothing.

Payments waiting for collateral are outside these bounds: the sender has locked the same amount in
its own channel, so that capital is matched, and it is exactly what the payment needs.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, Sum

from channels_app.models import Channel, OnchainTransaction, Payment
from connext.protocol.types import ChannelState

Reason = OnchainTransaction.Reason
TxStatus = OnchainTransaction.Status


class LimitError(Exception):
    """A request over one of the limits: a stable `code`, a message, an HTTP status and the bound."""

    def __init__(
        self, code: str, message: str, *, status: int = 400, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.extra = extra or {}


def _asset_class(asset_id: str) -> str:
    return "eth" if int(asset_id, 16) == 0 else "token"


def min_onchain_amount(asset_id: str) -> int:
    """The least amount the node moves on chain for an account: a withdrawal, and a collateral
    deposit or reclaim it makes on its own. Below it, the gas costs more than the move is worth."""
    return int(settings.WITHDRAWAL_MIN_AMOUNT[_asset_class(asset_id)])


# -- capital -----------------------------------------------------------------------------------------


def collateral_cap(asset_id: str) -> int:
    return int(settings.COLLATERAL_MAX_PER_ACCOUNT[_asset_class(asset_id)])


def received_volume(*, user: str, asset_id: str, since: datetime) -> int:
    """What the account received in completed payments of `asset_id` since `since`."""
    total = Payment.objects.filter(
        recipient=user, asset_id=asset_id, status=Payment.Status.COMPLETED, updated_at__gte=since
    ).aggregate(total=Sum("amount"))["total"]
    return int(total or 0)


def collateral_justified(*, channel: Channel, asset_id: str, state: ChannelState, now: datetime) -> int:
    """The most collateral the account's own activity justifies: its balance in the channel (the
    capital it brings) or what it received in the last idle period, whichever is larger, capped per
    account. A fresh account with no deposit and no payments justifies nothing."""
    index = state.asset_index(asset_id)
    own = 0 if index is None else state.balances[index][1]
    since = now - timedelta(seconds=settings.COLLATERAL_IDLE_SECONDS)
    received = (
        received_volume(user=channel.user_address, asset_id=asset_id, since=since)
        if own < collateral_cap(asset_id)
        else 0
    )
    return min(collateral_cap(asset_id), max(own, received))


def collateral_idle(*, channel: Channel, asset_id: str, now: datetime) -> bool:
    """No payment to the account is open, none changed, and the node deposited no collateral, in
    this asset, for a whole idle period."""
    since = now - timedelta(seconds=settings.COLLATERAL_IDLE_SECONDS)
    incoming = Payment.objects.filter(recipient=channel.user_address, asset_id=asset_id)
    if incoming.filter(
        Q(updated_at__gte=since) | Q(status__in=[Payment.Status.PENDING, Payment.Status.FORWARDED])
    ).exists():
        return False
    return (
        not OnchainTransaction.objects.filter(
            reason=Reason.COLLATERALIZATION,
            channel_address=channel.address,
            asset_id=asset_id,
        )
        .filter(Q(created_at__gte=since) | Q(status__in=[TxStatus.QUEUED, TxStatus.PENDING]))
        .exists()
    )
