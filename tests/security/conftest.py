"""Abuse against real node processes: the fixtures of tests/integration, shared (Postgres, Redis,
anvil, daphne, Celery)."""

from __future__ import annotations

from tests.integration.conftest import (  # noqa: F401 - fixtures, found by name
    _flush_survives_a_running_node,
    celery_process,
    live_node,
    live_node_settings,
    live_node_socket_homes,
    node_database_url,
    node_env_for,
    node_process,
    start_process,
)
