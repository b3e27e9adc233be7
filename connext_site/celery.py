"""The Celery app. The beat schedule lives here, in one place, for both ways of running tasks:
Celery beat (with REDIS_URL) and the node's in-process loop (without)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from celery import Celery
from celery.signals import beat_init, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "connext_site.settings")

app = Celery("connext_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _database_hygiene(sender: Any = None, **_: Any) -> None:
    """Around every task, what Django does around every request: a connection that failed, or is
    older than its age, is closed; with the pool, handed back to it, open. (Celery's own Django fixup
    closed the connection and the whole pool around every task: two new Postgres sessions per task.
    `CELERY_DB_REUSE_MAX` in the settings leaves that to this.)"""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # run inside its caller (the embedded default): the connection is the caller's
    from django.db import close_old_connections

    close_old_connections()


@beat_init.connect
def _first_heartbeat(sender: Any = None, **_: Any) -> None:
    """Beat runs an interval task first one interval after it starts; the heartbeat is sent at once,
    through the broker like every other, so a node just started is healthy as soon as a worker takes
    tasks (not ten seconds later)."""
    app.send_task(PERIODIC_TASKS["worker-heartbeat"][0])


# name -> (task, interval). Read by Celery beat and by connext_site.periodic.
PERIODIC_TASKS: dict[str, tuple[str, timedelta]] = {
    "worker-heartbeat": ("channels_app.tasks.worker_heartbeat", timedelta(seconds=10)),
    "transactions-track": ("channels_app.tasks.transactions_track", timedelta(seconds=2)),
    "chain-watch": ("channels_app.tasks.chain_watch", timedelta(seconds=3)),
    "disputes-advance": ("channels_app.tasks.disputes_advance", timedelta(seconds=10)),
    "expiring-claims-check": ("channels_app.tasks.expiring_claims_check", timedelta(seconds=60)),
    # As often as a payment counts as stalled (payments.STALLED_AFTER_SECONDS): a step lost in a crash,
    # or a push lost with Redis, is taken up again within 20 s. Three indexed queries when none is.
    "payments-sweep": ("channels_app.tasks.payments_sweep", timedelta(seconds=10)),
    "auth-records-prune": ("channels_app.tasks.auth_records_prune", timedelta(seconds=60)),
    "collateral-reclaim-idle": ("channels_app.tasks.collateral_reclaim_idle", timedelta(seconds=300)),
    # Each pair's source is read once per its `pollSeconds`; a move is pushed to every socket.
    "swap-rates-refresh": ("channels_app.tasks.swap_rates_refresh", timedelta(seconds=5)),
    "dashboard-value-snapshot": ("dashboard.tasks.value_snapshot", timedelta(seconds=300)),
}

app.conf.beat_schedule = {
    name: {"task": task, "schedule": interval, "options": {"expires": interval.total_seconds()}}
    for name, (task, interval) in PERIODIC_TASKS.items()
}
