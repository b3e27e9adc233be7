"""Reads of the node's records for views, consumers and the dashboard. No writes here."""

from __future__ import annotations

from django.db.models import QuerySet

from channels_app.models import Channel, ChannelUpdate, Withdrawal


def channel_get_for_user(*, user: str) -> Channel | None:
    return Channel.objects.filter(user_address=user).order_by("-pk").first()


def channel_updates_since(*, channel: Channel, nonce: int, limit: int = 500) -> QuerySet[ChannelUpdate]:
    return channel.updates.filter(nonce__gt=nonce).order_by("nonce")[:limit]


def withdrawals_for_channel(*, channel: Channel) -> QuerySet[Withdrawal]:
    return channel.withdrawals.select_related("transfer", "onchain_transaction", "channel").order_by("-pk")
