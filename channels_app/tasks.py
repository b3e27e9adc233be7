"""Celery tasks of the node. Tasks take ids, never model instances, and call a service."""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from channels_app.health import HEARTBEAT_CACHE_KEY


@shared_task(ignore_result=True)
def worker_heartbeat() -> None:
    """Proves to /api/health that tasks run: the in-process loop or a Celery worker fed by beat."""
    cache.set(HEARTBEAT_CACHE_KEY, time.time(), timeout=settings.WORKER_STALE_AFTER_SECONDS * 4)
