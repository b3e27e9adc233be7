"""Django admin for operators: read the records; edit only rebalance profiles.

Money-moving records (channels, updates, transfers, withdrawals, transactions) are read-only here:
every change to them goes through a service.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from channels_app.models import (
    Channel,
    ChannelUpdate,
    OnchainTransaction,
    RebalanceProfile,
    Transfer,
    Withdrawal,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Channel)
class ChannelAdmin(ReadOnlyAdmin):
    list_display = ("address", "user_address", "status", "nonce", "deployed", "updated_at")
    list_filter = ("status", "deployed")
    search_fields = ("address", "user_address")


@admin.register(ChannelUpdate)
class ChannelUpdateAdmin(ReadOnlyAdmin):
    list_display = ("channel", "nonce", "kind", "initiator", "created_at")
    list_filter = ("kind",)
    search_fields = ("channel__address", "channel__user_address")


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = (
        "transfer_id",
        "kind",
        "status",
        "asset_id",
        "amount",
        "initiator",
        "responder",
        "created_at",
    )
    list_filter = ("kind", "status")
    search_fields = ("transfer_id", "payment_id", "channel__address")


@admin.register(Withdrawal)
class WithdrawalAdmin(ReadOnlyAdmin):
    list_display = ("channel", "asset_id", "amount", "recipient", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("channel__address", "recipient")


@admin.register(OnchainTransaction)
class OnchainTransactionAdmin(ReadOnlyAdmin):
    list_display = ("pk", "reason", "status", "nonce", "hash", "channel_address", "gas_used", "created_at")
    list_filter = ("reason", "status")
    search_fields = ("hash", "channel_address")


@admin.register(RebalanceProfile)
class RebalanceProfileAdmin(admin.ModelAdmin):
    """Per channel and asset: collateralize below, fill up to the target, reclaim above (wei)."""

    list_display = ("channel", "asset_id", "collateralize_threshold", "target", "reclaim_threshold")
    search_fields = ("channel__address", "channel__user_address")
    raw_id_fields = ("channel",)
