"""The deployment's tests run the integration tests' whole node (two daphne processes, a Celery worker
with beat, Postgres, Redis, anvil) with the proxy in front of it."""

from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    _flush_survives_a_running_node,
    live_node,
    live_node_settings,
    node_database_url,
)
