"""Side effects that run after the current database transaction commits (never inside it).

Robust: a failure to queue a task (or, without a broker, to run it in-process) or of inline follow-up
work is logged and never raised into the request or task whose commit caused it; the periodic sweeps
pick up anything missed.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


def run_task(task_path: str, *args: Any) -> None:
    """Queue the Celery task at `task_path` (e.g. "channels_app.tasks.channel_reconcile") on commit."""

    def send() -> None:
        import_string(task_path).delay(*args)

    transaction.on_commit(send, robust=True)


def run_inline(function_path: str, **kwargs: Any) -> None:
    """Call the function at `function_path` in this thread right after commit (latency-critical
    follow-ups, e.g. forwarding a payment the moment its sender side is signed). It runs in a
    transaction of its own; a failure is logged and left to the periodic sweeps."""

    def call() -> None:
        try:
            import_string(function_path)(**kwargs)
        except Exception:
            logger.exception("follow-up %s(%s) failed; the periodic sweep retries it", function_path, kwargs)

    transaction.on_commit(call)
