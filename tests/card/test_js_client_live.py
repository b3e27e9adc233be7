"""The card's JavaScript client (`card/js/client`) against a live node: daphne and a Celery worker (with
beat) on Postgres, Redis and the session's anvil, driven by Node's test runner
(`card/js/test/live/`), which must pass as a whole."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command

from channels_app.health import HEARTBEAT_CACHE_KEY
from connext.chain import devchain
from tests.integration.conftest import node_database_url  # noqa: F401 - the test database, shared
from tests.support.processes import (
    ManagedProcess,
    NodeProcess,
    celery_worker,
    http_get_json,
    node_env,
    wait_until,
)

# Not transactional: the node's records must outlive the test (the fixture flushes them at the end).
pytestmark = [pytest.mark.chain, pytest.mark.slow, pytest.mark.django_db]

ROOT = Path(__file__).resolve().parents[2]
NODE_KEY = devchain.DEV_PRIVATE_KEYS[2]
FUNDER_KEY = devchain.DEV_PRIVATE_KEYS[8]
PORTS = range(18700, 18800)  # this machine's rule for servers this test starts
NODE_TEST_TIMEOUT_SECONDS = 240


def free_port_in_range() -> int:
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass(frozen=True)
class LiveNode:
    url: str
    processes: tuple[ManagedProcess, ...]

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {p.log_path.name} (its end) ---\n{p.log()[-tail:]}" for p in self.processes)


@pytest.fixture(scope="module")
def node(
    node_database_url: str,  # noqa: F811
    anvil_url: str,
    deployments: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    django_db_blocker: Any,
) -> Iterator[LiveNode]:
    """One daphne and a Celery worker (with beat); chain events count at once (no confirmations)."""
    assert settings.REDIS_URL, "the live card test runs on Redis (set REDIS_URL)"
    logs = tmp_path_factory.mktemp("card-client-node")
    env = node_env(
        DATABASE_URL=node_database_url,
        REDIS_URL=settings.REDIS_URL,
        CHAIN_RPC_URL=anvil_url,
        PUBLIC_CHAIN_RPC_URL=anvil_url,
        NODE_VAR_DIR=str(logs / "var"),
        DEPLOYMENTS_FILE=deployments["book"],
        NODE_PRIVATE_KEY=NODE_KEY,
        CHAIN_CONFIRMATIONS="0",
        DISPUTE_TIMEOUT_SECONDS="3600",
        DJANGO_SECRET_KEY="card-client-live-test-secret-key-for-every-process",
    )
    with django_db_blocker.unblock():
        cache.delete(HEARTBEAT_CACHE_KEY)
    daphne = NodeProcess(env=env, log_path=logs / "daphne.log", port=free_port_in_range())
    celery = celery_worker(env=env, log_path=logs / "celery.log")
    started = []
    try:
        for process in (daphne, celery):
            process.start()
            started.append(process)
        daphne.wait_serving()
        wait_until(
            lambda: http_get_json(f"{daphne.url}/api/health")[0] == 200,
            timeout=60,
            what="the node healthy (the worker's first heartbeat)",
        )
        yield LiveNode(url=daphne.url, processes=(daphne, celery))
    finally:
        for process in reversed(started):
            process.stop()
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def test_the_js_client_passes_its_live_tests_against_a_real_node(node: LiveNode, anvil_url: str) -> None:
    node_binary = shutil.which("node")
    assert node_binary, "the live card tests need Node 20 (`node` on PATH)"
    env = {
        **os.environ,
        "NODE_URL": node.url,
        "CHAIN_RPC_URL": anvil_url,
        "FUNDER_KEY": FUNDER_KEY,
        "CARD_LIVE_REQUIRED": "1",  # a missing variable or WebSocket fails the run, never skips it
    }
    try:
        result = subprocess.run(
            [node_binary, "--experimental-websocket", "--test", "--test-reporter=spec", "card/js/test/live/"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TEST_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"node's live card tests ran over {NODE_TEST_TIMEOUT_SECONDS}s:\n{exc.output}\n{node.logs()}"
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"node's live card tests failed (exit {result.returncode}):\n{output}\n{node.logs()}"
    )
    assert "skipped 0" in output, f"some live card tests were skipped:\n{output}"
