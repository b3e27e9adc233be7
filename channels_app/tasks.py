"""Celery tasks of the node. Tasks take ids, never model instances, and call a service."""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from channels_app.health import HEARTBEAT_CACHE_KEY
from channels_app.services import transactions


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
