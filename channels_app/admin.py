"""Django admin for operators: read the records; edit only rebalance profiles.

Money-moving records (channels, updates, transfers, withdrawals, transactions) are read-only here:
every change to them goes through a service.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from channels_app.models import (
    Channel,
    ChannelUpdate,
    Dispute,
    DisputeAction,
    OnchainTransaction,
    RebalanceProfile,
    Transfer,
    TransferDispute,
    Withdrawal,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.action(description="Dispute channel (take the latest state to the chain)")
def dispute_channel(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Channel]) -> None:
    from channels_app.services import watchtower

    for channel in queryset:
        try:
            dispute = watchtower.dispute_start(
                channel_id=channel.pk, reason=f"operator {request.user} disputed the channel"
            )
        except watchtower.DisputeError as exc:
            modeladmin.message_user(request, f"{channel.address}: {exc.message}", messages.ERROR)
            continue
        modeladmin.message_user(request, f"{channel.address}: dispute {dispute.pk} is {dispute.status}")


@admin.register(Channel)
class ChannelAdmin(ReadOnlyAdmin):
    list_display = ("address", "user_address", "status", "nonce", "deployed", "updated_at")
    list_filter = ("status", "deployed")
    search_fields = ("address", "user_address")
    actions = [dispute_channel]


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


class DisputeActionInline(admin.TabularInline):
    model = DisputeAction
    fields = ("kind", "transfer_id", "asset_ids", "transaction", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    """Dispute rounds: who started them, the nonce disputed, the windows (chain time), the node's steps."""

    list_display = (
        "channel",
        "status",
        "disputed_by",
        "started_nonce",
        "nonce",
        "consensus_expiry",
        "defund_expiry",
        "created_at",
    )
    list_filter = ("status", "disputed_by")
    search_fields = ("channel__address", "channel__user_address", "state_hash")
    inlines = [DisputeActionInline]


@admin.register(TransferDispute)
class TransferDisputeAdmin(ReadOnlyAdmin):
    list_display = (
        "transfer_id",
        "channel",
        "status",
        "expiry",
        "to_initiator",
        "to_responder",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("transfer_id", "transfer_hash", "channel__address")
