"""Reads of the node's records for views, consumers and the dashboard. No writes here."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from channels_app.models import Channel, ChannelUpdate, Payment, Withdrawal


def channel_get_for_user(*, user: str) -> Channel | None:
    return Channel.objects.filter(user_address=user).order_by("-pk").first()


def channel_updates_since(*, channel: Channel, nonce: int, limit: int = 500) -> QuerySet[ChannelUpdate]:
    return channel.updates.filter(nonce__gt=nonce).order_by("nonce")[:limit]


def withdrawals_for_channel(*, channel: Channel) -> QuerySet[Withdrawal]:
    return channel.withdrawals.select_related("transfer", "onchain_transaction", "channel").order_by("-pk")


def payments_for_user(*, user: str, limit: int = 200, before: Payment | None = None) -> QuerySet[Payment]:
    """Payments the user sent or received, newest first; with `before`, only those older than it."""
    payments = Payment.objects.filter(Q(sender=user) | Q(recipient=user))
    if before is not None:
        payments = payments.filter(pk__lt=before.pk)
    return payments.select_related("sender_transfer", "receiver_transfer").order_by("-pk")[:limit]


def payment_get_for_user(*, user: str, payment_id: str) -> Payment | None:
    return (
        Payment.objects.filter(Q(sender=user) | Q(recipient=user), payment_id=payment_id)
        .select_related("sender_transfer", "receiver_transfer")
        .first()
    )


def user_public_key(*, address: str) -> str | None:
    channel = Channel.objects.filter(user_address=address).exclude(user_public_key="").first()
    return channel.user_public_key if channel is not None else None
