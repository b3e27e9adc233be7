"""/api/health on a node whose Redis does not answer: a 503 that names what is down, in JSON."""

from __future__ import annotations

import pytest

from connext.chain import devchain
from tests.support.processes import NodeProcess, http_get_json

pytestmark = pytest.mark.django_db(transaction=True)


def test_health_is_a_503_in_json_naming_redis_and_the_workers_when_redis_is_down(
    node_env_for, start_process, tmp_path
):
    nobody_listens = f"redis://127.0.0.1:{devchain.free_port()}/0"
    node = NodeProcess(env={**node_env_for, "REDIS_URL": nobody_listens}, log_path=tmp_path / "daphne.log")
    start_process(node)
    node.wait_serving()

    status, body = http_get_json(f"{node.url}/api/health", timeout=15)

    assert status == 503, node.log()[-3000:]
    assert body["status"] == "failing"
    assert body["checks"]["redis"]["ok"] is False
    assert "ConnectionError" in body["checks"]["redis"]["error"]
    assert body["checks"]["workers"]["ok"] is False
    assert body["checks"]["workers"]["error"].startswith("heartbeat unreadable: ConnectionError")
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["chain"]["ok"] is True
