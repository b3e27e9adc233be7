"""Writing the value history behind the collateral chart (see `models.ValueSnapshot`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction

from dashboard import selectors
from dashboard.models import ValueSnapshot

KEEP = timedelta(days=120)  # the longest chart window is 90 days


def take(now: datetime) -> list[ValueSnapshot]:
    """One row per asset of what the overview shows now, and drop rows older than the keep time. One
    aggregate read (the same as the overview's) and one insert; taking two at the same moment is a
    no-op for the second."""
    rows = [
        ValueSnapshot(
            taken_at=now,
            asset_id=value.asset_id,
            node=value.node,
            users=value.users,
            locked=value.locked,
            on_chain=value.on_chain,
        )
        for value in selectors.value_locked()
    ]
    with transaction.atomic():
        ValueSnapshot.objects.bulk_create(rows, ignore_conflicts=True)
        ValueSnapshot.objects.filter(taken_at__lt=now - KEEP).delete()
    return rows
