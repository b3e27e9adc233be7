"""In-process periodic tasks for the embedded default (no REDIS_URL, so no Celery beat or worker).

The node process starts one daemon thread that runs every entry of `PERIODIC_TASKS` on its interval,
executing the task body in this process exactly as a worker would.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import close_old_connections
from django.utils.module_loading import import_string

from connext_site.celery import PERIODIC_TASKS

logger = logging.getLogger(__name__)

_started = threading.Event()
_stop = threading.Event()


def _run_forever() -> None:
    tasks = {name: import_string(task_path) for name, (task_path, _) in PERIODIC_TASKS.items()}
    next_run = dict.fromkeys(PERIODIC_TASKS, 0.0)
    while not _stop.is_set():
        now = time.monotonic()
        for name, (_, interval) in PERIODIC_TASKS.items():
            if now < next_run[name]:
                continue
            next_run[name] = now + interval.total_seconds()
            close_old_connections()
            try:
                tasks[name].apply(throw=True)
            except Exception:
                logger.exception("periodic task %s failed", name)
            finally:
                close_old_connections()
        _stop.wait(max(0.05, min(next_run.values()) - time.monotonic()))


def start() -> None:
    """Start the loop once per process; later calls do nothing."""
    if _started.is_set():
        return
    _started.set()
    _stop.clear()
    threading.Thread(target=_run_forever, name="periodic-tasks", daemon=True).start()


def stop() -> None:
    _stop.set()
