"""Side effects that run after the current database transaction commits (never inside it).

Robust: a failure to queue a task (or, without a broker, to run it in-process) or of inline follow-up
work is logged and never raised into the request or task whose commit caused it; the periodic sweeps
pick up anything missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


def run_task(task_path: str, *args: Any) -> None:
    """Queue the Celery task at `task_path` (e.g. "channels_app.tasks.channel_reconcile") on commit."""

    def send() -> None:
        import_string(task_path).delay(*args)

    transaction.on_commit(send, robust=True)


_deferral = threading.local()


RETRY_AFTER_SECONDS = 1


def run_inline(function: Callable[..., Any], *, retry_task: str | None = None, **kwargs: Any) -> None:
    """Call `function` in this thread right after commit (latency-critical
    follow-ups, e.g. forwarding a payment the moment its sender side is signed). It runs in a
    transaction of its own. A failure is logged and, with `retry_task` (the path of a Celery task
    taking the same keyword arguments, which must be JSON values), handed to a worker a second later;
    the periodic sweeps catch anything left. Inside `answer_first()` the call is handed to the caller
    instead, to run once the answer is out."""

    def call() -> None:
        try:
            function(**kwargs)
        except Exception:
            logger.exception("follow-up %s(%s) failed", function.__qualname__, kwargs)
            if retry_task is None:
                return
            try:
                import_string(retry_task).apply_async(kwargs=kwargs, countdown=RETRY_AFTER_SECONDS)
            except Exception:
                logger.exception("could not queue %s; the periodic sweep retries it", retry_task)

    def on_commit() -> None:
        deferred: list[Callable[[], None]] | None = getattr(_deferral, "calls", None)
        if deferred is None:
            call()
        else:
            deferred.append(call)

    transaction.on_commit(on_commit)


def run_all(follow_ups: list[Callable[[], None]]) -> None:
    """Run follow-ups collected by `answer_first`, in order (each logs its own failure)."""
    for follow_up in follow_ups:
        follow_up()


@contextmanager
def answer_first() -> Iterator[list[Callable[[], None]]]:
    """Collect the inline follow-ups that commits inside the block release, instead of running them
    there: the caller answers its request first, then runs them (in order, each as it would have run).
    Used by the socket requests, whose answer a client waits for while the follow-ups concern others."""
    calls: list[Callable[[], None]] = []
    outer = getattr(_deferral, "calls", None)
    _deferral.calls = calls
    try:
        yield calls
    finally:
        _deferral.calls = outer
