"""Side effects that run after the current database transaction commits (never inside it).

Robust: a failure to queue a task (or, without a broker, to run it in-process) is logged and never
raised into the request or task whose commit caused it; the periodic tasks pick up anything missed.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string


def run_task(task_path: str, *args: Any) -> None:
    """Queue the Celery task at `task_path` (e.g. "channels_app.tasks.channel_reconcile") on commit."""

    def send() -> None:
        import_string(task_path).delay(*args)

    transaction.on_commit(send, robust=True)
