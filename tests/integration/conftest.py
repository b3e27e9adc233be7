"""Fixtures that run the node as real processes against the test run's Postgres, Redis and anvil."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.core.management.commands import flush
from django.db import OperationalError

from channels_app.health import HEARTBEAT_CACHE_KEY
from connext.chain import devchain
from tests.support.processes import (
    ManagedProcess,
    NodeProcess,
    celery_worker,
    http_get_json,
    live_node_env,
    node_env,
    wait_until,
)


@pytest.fixture(scope="session", autouse=True)
def _flush_survives_a_running_node() -> Iterator[None]:
    """Each transactional test ends with Django's flush (one TRUNCATE of every table) while the
    module's node processes keep working; Postgres may pick the TRUNCATE as the victim of a deadlock
    with one of their transactions. It is rolled back whole, so trying again is safe."""
    original = flush.Command.handle

    def handle(self: flush.Command, **options: Any) -> None:
        for attempt in range(5):
            try:
                original(self, **options)
                return
            except CommandError as exc:
                if attempt == 4 or not isinstance(exc.__cause__, OperationalError):
                    raise
                if "deadlock" not in str(exc.__cause__):
                    raise
                time.sleep(0.1 * (attempt + 1))

    flush.Command.handle = handle
    try:
        yield
    finally:
        flush.Command.handle = original


# The node key of the live node (no other test signs with it) and one secret for all its processes.
LIVE_NODE_KEY = devchain.DEV_PRIVATE_KEYS[5]
LIVE_NODE_SECRET_KEY = "integration-test-secret-key-shared-by-every-node-process"


@pytest.fixture(scope="session")
def node_database_url(django_db_setup, django_db_blocker) -> str:
    """The URL of the test database pytest-django created, for node processes to share."""
    database = settings.DATABASES["default"]
    assert database["ENGINE"].endswith(".backends.postgresql"), "integration tests run on Postgres"
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


@dataclass
class LiveNode:
    """Two daphne processes and a Celery worker with beat on one database, Redis and the session's anvil."""

    nodes: list[NodeProcess]
    celery: ManagedProcess
    env: dict[str, str]
    chain_url: str

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-4000:]}" for p in [*self.nodes, self.celery])


@pytest.fixture(scope="module")
def live_node_settings() -> dict[str, str]:
    """Extra environment for a module's live node; a module overrides this fixture to change it."""
    return {}


@pytest.fixture(scope="module")
def live_node_socket_homes() -> tuple[int, ...]:
    """The live node's processes that say where their websocket is reached (NODE_SOCKET_URL, their
    own port); a module overrides this fixture to name some."""
    return ()


@pytest.fixture(scope="module")
def live_node(
    live_node_settings: dict[str, str],
    live_node_socket_homes: tuple[int, ...],
    node_database_url: str,
    anvil_url: str,
    deployments: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    django_db_blocker,
) -> Iterator[LiveNode]:
    """A whole node for a test module, with the chain watcher at depth 0; its records are flushed after.

    Tests using it write to the database only through the node (or inside `django_db_blocker.unblock()`),
    so their records outlive single tests; each test uses keys of its own."""
    assert settings.REDIS_URL, "integration tests run on Redis (set REDIS_URL)"
    logs = tmp_path_factory.mktemp("live-node")
    env = live_node_env(
        database_url=node_database_url,
        chain_url=anvil_url,
        deployments_book=deployments["book"],
        var_dir=logs / "var",
        node_key=LIVE_NODE_KEY,
        secret_key=LIVE_NODE_SECRET_KEY,
        **live_node_settings,
    )
    with django_db_blocker.unblock():
        cache.delete(HEARTBEAT_CACHE_KEY)
    nodes = [NodeProcess(env=env, log_path=logs / f"daphne-{i}.log") for i in range(2)]
    for index in live_node_socket_homes:
        nodes[index].env["NODE_SOCKET_URL"] = f"ws://127.0.0.1:{nodes[index].port}/ws/v1"
    celery = celery_worker(env=env, log_path=logs / "celery.log")
    started: list[ManagedProcess] = []
    try:
        for process in [*nodes, celery]:
            process.start()
            started.append(process)
        for node in nodes:
            node.wait_serving()

        def healthy() -> bool:
            if not celery.alive():
                raise AssertionError(f"celery exited:\n{celery.log()}")
            return http_get_json(f"{nodes[0].url}/api/health")[0] == 200

        wait_until(healthy, timeout=60, what="the Celery worker's first heartbeat")
        yield LiveNode(nodes=nodes, celery=celery, env=env, chain_url=anvil_url)
    finally:
        for process in reversed(started):
            process.stop()
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)
