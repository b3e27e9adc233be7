"""The node as it runs for real: a daphne process, a Celery worker with beat, Redis between them."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from channels_app.realtime import BROADCAST_GROUP, push_event_now
from tests.support.processes import http_get_json, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_websocket_ping_round_trip_through_daphne(node_process):
    with connect(node_process.ws_url, open_timeout=10) as websocket:
        websocket.send(json.dumps({"type": "ping", "id": "r1"}))
        reply = json.loads(websocket.recv(timeout=10))

    assert reply["type"] == "pong"
    assert reply["id"] == "r1"


def test_an_event_pushed_from_another_process_reaches_the_websocket_through_redis(node_process):
    with connect(node_process.ws_url, open_timeout=10) as websocket:
        # Make sure the consumer has joined its group before pushing.
        websocket.send(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(websocket.recv(timeout=10))["type"] == "pong"

        push_event_now(BROADCAST_GROUP, "node.notice", {"text": "from the test process"})
        pushed = json.loads(websocket.recv(timeout=10))

    assert pushed == {"type": "event", "event": "node.notice", "payload": {"text": "from the test process"}}


def test_health_turns_200_once_the_celery_worker_and_beat_run(node_process, celery_process, anvil_url):
    status, body = http_get_json(f"{node_process.url}/api/health")
    if status == 503:  # no heartbeat has arrived yet: workers are the only thing missing
        assert {name for name, check in body["checks"].items() if not check["ok"]} <= {"workers"}

    def healthy():
        if not celery_process.alive():
            raise AssertionError(f"celery exited:\n{celery_process.log()}")
        return http_get_json(f"{node_process.url}/api/health")[0] == 200

    wait_until(healthy, timeout=60, what="a heartbeat from the Celery worker")
    status, body = http_get_json(f"{node_process.url}/api/health")
    assert status == 200
    assert body["checks"]["workers"]["detail"]["mode"] == "celery"
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["database"]["detail"]["vendor"] == "postgresql"
    assert body["checks"]["chain"]["detail"]["chain_id"] == 31337


def test_daphne_stops_cleanly_on_sigterm(node_process):
    assert node_process.stop() == 0
