"""The dashboard's periodic work (scheduled in connext_site.celery.PERIODIC_TASKS)."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from dashboard import snapshots


@shared_task(ignore_result=True)
def value_snapshot() -> None:
    snapshots.take(timezone.now())
