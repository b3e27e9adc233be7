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

from django.conf import settings
from django.db.models import Q, QuerySet, Sum

from channels_app.models import Channel, OnchainTransaction, Payment, Transfer, Withdrawal
from channels_app.services.errors import ServiceError
from connext.protocol.types import ChannelState, DefinitionKind
from connext_site.config import CHANNEL_DEPLOY_GAS_RESERVED, WITHDRAWAL_GAS_RESERVED

Reason = OnchainTransaction.Reason
TxStatus = OnchainTransaction.Status
RATE_WINDOW = timedelta(hours=1)
GAS_WINDOW = timedelta(days=1)


class LimitError(ServiceError):
    """A request over one of the limits: a stable `code`, a message, an HTTP status and the bound."""


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


# -- gas ---------------------------------------------------------------------------------------------


def withdrawal_check(*, channel: Channel, asset_id: str, amount: int, now: datetime) -> None:
    """Refuse (`LimitError`) a user withdrawal the node should not pay gas for: below the least
    amount, over the channel's rate, or over the account's daily gas budget. The caller holds the
    channel's row lock, so two withdrawals of one channel are never counted against each other's
    absence."""
    minimum = min_onchain_amount(asset_id)
    if amount < minimum:
        raise LimitError(
            "withdrawal_too_small",
            f"A withdrawal moves at least {minimum} of this asset (the node pays its gas).",
            extra={"minimum": str(minimum)},
        )
    recent = _user_withdraw_transfers(channel).filter(created_at__gte=now - RATE_WINDOW)
    allowed = int(settings.WITHDRAWAL_MAX_PER_HOUR)
    if recent.count() >= allowed:
        oldest = recent.order_by("created_at").values_list("created_at", flat=True)[0]
        raise LimitError(
            "withdrawal_rate_limited",
            f"At most {allowed} withdrawals per channel and hour; try again later.",
            status=429,
            extra={"retryAfter": str(_seconds_until(oldest + RATE_WINDOW, now))},
        )
    budget = int(settings.WITHDRAWAL_GAS_PER_DAY)
    spent = withdrawal_gas_spent(channel=channel, since=now - GAS_WINDOW)
    needed = WITHDRAWAL_GAS_RESERVED + (0 if _deployment_counted(channel) else CHANNEL_DEPLOY_GAS_RESERVED)
    if spent + needed > budget:
        raise LimitError(
            "withdrawal_gas_limit",
            f"The node pays at most {budget} gas a day for one account's withdrawals "
            f"({spent} spent or reserved, this one needs {needed}); try again later.",
            status=429,
            extra={"gasPerDay": str(budget), "gasSpent": str(spent)},
        )


def withdrawal_gas_spent(*, channel: Channel, since: datetime) -> int:
    """Gas the node spent, or holds reserved, for the account's withdrawals since `since`: per user
    withdraw transfer its transaction's gas (used when mined, its limit while in flight, the
    reservation before it is sent), and the channel's deployments."""
    spent = 0
    transfers = _user_withdraw_transfers(channel).filter(created_at__gte=since)
    sent = {
        row["transfer_id"]: row
        for row in Withdrawal.objects.filter(transfer__in=transfers).values(
            "transfer_id",
            "onchain_transaction__status",
            "onchain_transaction__gas_used",
            "onchain_transaction__gas_limit",
        )
    }
    for transfer_pk in transfers.values_list("pk", flat=True):
        row = sent.get(transfer_pk)
        if row is None or row["onchain_transaction__status"] is None:
            spent += WITHDRAWAL_GAS_RESERVED
        else:
            spent += _gas_of(
                row["onchain_transaction__status"],
                row["onchain_transaction__gas_used"],
                row["onchain_transaction__gas_limit"],
                reserved=WITHDRAWAL_GAS_RESERVED,
            )
    for status, gas_used, gas_limit in OnchainTransaction.objects.filter(
        reason=Reason.CHANNEL_DEPLOY, channel_address=channel.address, created_at__gte=since
    ).values_list("status", "gas_used", "gas_limit"):
        spent += _gas_of(status, gas_used, gas_limit, reserved=CHANNEL_DEPLOY_GAS_RESERVED)
    return spent


def _gas_of(status: str, gas_used: int | None, gas_limit: int | None, *, reserved: int) -> int:
    if gas_used is not None:
        return int(gas_used)
    if status == TxStatus.FAILED:
        return 0  # refused before it got a nonce: it cost nothing
    if gas_limit is not None:
        return int(gas_limit)
    return reserved  # queued: not estimated yet


def _deployment_counted(channel: Channel) -> bool:
    """The channel is deployed, or a deployment is on its way (already counted or someone else's)."""
    if channel.deployed:
        return True
    return (
        OnchainTransaction.objects.filter(
            channel_address=channel.address, reason__in=[Reason.CHANNEL_DEPLOY, Reason.COLLATERALIZATION]
        )
        .exclude(status=TxStatus.FAILED)
        .exists()
    )


def _user_withdraw_transfers(channel: Channel) -> QuerySet[Transfer]:
    return Transfer.objects.filter(
        channel=channel, kind=DefinitionKind.WITHDRAW.value, initiator=channel.user_address
    )


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds()) + 1)
