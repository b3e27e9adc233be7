"""Celery tasks of the node. Tasks take ids, never model instances, and call a service."""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from channels_app.health import HEARTBEAT_CACHE_KEY
from channels_app.models import Channel, OnchainTransaction
from channels_app.services import (
    auth,
    collateral,
    node_actions,
    payments,
    swaps,
    transactions,
    watcher,
    watchtower,
    withdrawals,
)


@shared_task(ignore_result=True)
def worker_heartbeat() -> None:
    """Proves to /api/health that tasks run: the in-process loop or a Celery worker fed by beat."""
    cache.set(HEARTBEAT_CACHE_KEY, time.time(), timeout=settings.WORKER_STALE_AFTER_SECONDS * 4)


@shared_task(
    ignore_result=True, autoretry_for=(ConnectionError, TimeoutError), retry_backoff=2, max_retries=5
)
def transaction_send(transaction_id: int) -> None:
    transactions.transaction_send(transaction_id=transaction_id)


@shared_task(ignore_result=True)
def transactions_track() -> None:
    transactions.transactions_track_all()


@shared_task(ignore_result=True)
def transaction_settled(transaction_id: int) -> None:
    """Hand a settled transaction to the service that asked for it."""
    record = OnchainTransaction.objects.get(pk=transaction_id)
    Reason = OnchainTransaction.Reason
    if record.reason in (Reason.USER_WITHDRAWAL, Reason.NODE_WITHDRAWAL, Reason.CHANNEL_DEPLOY):
        withdrawals.withdrawal_settle(transaction_id=transaction_id)
    elif record.reason == Reason.COLLATERALIZATION:
        collateral.collateral_settle(transaction_id=transaction_id)
    elif record.reason == Reason.DISPUTE:
        watchtower.dispute_transaction_settled(transaction_id=transaction_id)
    channel = Channel.objects.filter(address=record.channel_address).only("pk").first()
    if channel is not None:
        node_actions.channel_reconcile(channel_id=channel.pk)


@shared_task(ignore_result=True)
def channel_reconcile(channel_id: int) -> None:
    node_actions.channel_reconcile(channel_id=channel_id)


@shared_task(ignore_result=True)
def chain_watch() -> None:
    watcher.logs_watch()
    for channel_id in watcher.deposits_watch():
        node_actions.channel_reconcile(channel_id=channel_id)


@shared_task(ignore_result=True)
def dispute_advance(dispute_id: int) -> None:
    watchtower.dispute_advance(dispute_id=dispute_id)


@shared_task(ignore_result=True)
def disputes_advance() -> None:
    """The watchtower's beat: every active dispute moves on at the current chain time."""
    watchtower.disputes_advance_all()


@shared_task(ignore_result=True)
def expiring_claims_check() -> None:
    """Dispute channels where the node would otherwise lose a claim it holds (see the service)."""
    watchtower.expiring_claims_check()


@shared_task(ignore_result=True)
def dispute_start(channel_id: int, reason: str) -> None:
    watchtower.dispute_start(channel_id=channel_id, reason=reason)


@shared_task(ignore_result=True)
def payments_sweep() -> None:
    """Settle payments nobody's update will bring up again (failed, or expired downstream)."""
    for channel_id in payments.payments_overdue_channels():
        node_actions.channel_reconcile(channel_id=channel_id)


@shared_task(ignore_result=True)
def collateral_reclaim_idle() -> None:
    """Take back collateral that sat idle above what its account's activity justifies."""
    collateral.collateral_reclaim_idle_all()


@shared_task(ignore_result=True)
def payments_follow_up(
    forward_to: str | None = None,
    settle_payment: list[Any] | None = None,
    then_tell_sender: list[Any] | None = None,
    channel_freed: list[Any] | None = None,
) -> None:
    """A payment follow-up that failed inline (`after_commit.run_inline`), tried again by a worker
    (its tuples arrive as JSON lists)."""
    payments.payments_follow_up(
        forward_to=forward_to,
        settle_payment=(int(settle_payment[0]), int(settle_payment[1])) if settle_payment else None,
        then_tell_sender=(str(then_tell_sender[0]), dict(then_tell_sender[1])) if then_tell_sender else None,
        channel_freed=(int(channel_freed[0]), str(channel_freed[1])) if channel_freed else None,
    )


@shared_task(ignore_result=True)
def auth_records_prune() -> None:
    """Login challenges and tokens past their time are deleted: unauthenticated nonce requests
    leave no rows behind beyond AUTH_CHALLENGE_TTL_SECONDS."""
    auth.auth_records_prune()


@shared_task(ignore_result=True)
def swap_rates_refresh() -> None:
    swaps.rates_refresh()
