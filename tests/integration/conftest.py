"""Fixtures that run the node as real processes against the test run's Postgres, Redis and anvil."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache

from channels_app.health import HEARTBEAT_CACHE_KEY
from tests.support.processes import ManagedProcess, NodeProcess, celery_worker, node_env


@pytest.fixture(scope="session")
def node_database_url(django_db_setup, django_db_blocker) -> str:
    """The URL of the test database pytest-django created, for node processes to share."""
    database = settings.DATABASES["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql", "integration tests run on Postgres"
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    return f"postgres://{database['USER']}{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


@pytest.fixture
def node_env_for(
    node_database_url: str, anvil_url: str, deployments: dict[str, str], tmp_path: Path
) -> dict[str, str]:
    """Environment for a node process on Postgres + Redis + the session's anvil and contracts."""
    assert settings.REDIS_URL, "integration tests run on Redis (set REDIS_URL)"
    return node_env(
        DATABASE_URL=node_database_url,
        REDIS_URL=settings.REDIS_URL,
        CHAIN_RPC_URL=anvil_url,
        NODE_VAR_DIR=str(tmp_path / "var"),
        DEPLOYMENTS_FILE=deployments["book"],
    )


@pytest.fixture
def start_process(tmp_path: Path) -> Iterator[Callable[[ManagedProcess], ManagedProcess]]:
    """Start processes for a test and always stop them afterwards."""
    started: list[ManagedProcess] = []

    def start(process: ManagedProcess) -> ManagedProcess:
        process.start()
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()


@pytest.fixture
def node_process(node_env_for, start_process, tmp_path) -> NodeProcess:
    node = NodeProcess(env=node_env_for, log_path=tmp_path / "daphne.log")
    start_process(node)
    node.wait_serving()
    return node


@pytest.fixture
def celery_process(node_env_for, start_process, tmp_path) -> ManagedProcess:
    """A Celery worker with embedded beat; any heartbeat left from earlier tests is cleared first."""
    cache.delete(HEARTBEAT_CACHE_KEY)
    return start_process(celery_worker(env=node_env_for, log_path=tmp_path / "celery.log"))
