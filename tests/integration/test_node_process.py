"""The node as it runs for real: a daphne process, a Celery worker with beat, Redis between them."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request

import psycopg
import pytest
from django.core.cache import cache
from websockets.sync.client import connect

from channels_app.health import HEARTBEAT_CACHE_KEY
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


def _sessions_and_commits(database_url: str) -> tuple[int, int]:
    """Postgres' counts of sessions opened to the test database and transactions committed in it."""
    server, name = database_url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        row = connection.execute(
            "SELECT sessions, xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_the_celery_worker_keeps_its_database_connection_from_task_to_task(celery_process, node_database_url):
    """Celery's Django fixup closes the connection, and with it Django's connection pool, before and
    after every task: a worker opened two new Postgres sessions for each task it ran (a connection
    storm under load, a TLS handshake per task against a remote database)."""
    wait_until(lambda: cache.get(HEARTBEAT_CACHE_KEY), timeout=60, what="the worker's first task")
    time.sleep(3)  # the worker's first connection is open and flushed to Postgres' statistics
    sessions, commits = _sessions_and_commits(node_database_url)

    time.sleep(8)  # beat runs a database task every 2 to 3 seconds: about six of them

    assert celery_process.alive(), celery_process.log()
    sessions_after, commits_after = _sessions_and_commits(node_database_url)
    assert commits_after - commits >= 4  # the tasks ran, and used the database
    # Without the fix about 16. The pool's first connections may still be counted in the window.
    assert sessions_after - sessions <= 2


def test_daphne_stops_cleanly_on_sigterm(node_process):
    assert node_process.stop() == 0


def _token(node_url: str) -> str:
    """Log a fresh key in over REST (nonce, EIP-191 signature) and return its bearer token."""
    from connext.protocol import auth, serialization
    from connext.protocol.signing import Signer

    signer = Signer(secrets.token_bytes(32))
    status, challenge = http_get_json(f"{node_url}/api/auth/nonce?address={signer.address}")
    assert status == 200, challenge
    body = json.dumps(
        {
            "address": signer.address,
            "nonce": challenge["nonce"],
            "signature": serialization.hex_bytes(auth.sign_login(challenge["message"], signer)),
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - local test URL
        f"{node_url}/api/auth/token", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - local test URL
        return str(json.loads(response.read())["token"])


def _request(websocket, frame: dict) -> dict:
    websocket.send(json.dumps({"type": "request", **frame}))
    reply = json.loads(websocket.recv(timeout=10))
    assert reply["type"] == "response", reply
    assert reply["id"] == frame.get("id")
    return reply


def test_socket_requests_answer_like_rest_with_the_same_error_codes(node_process):
    token = _token(node_process.url)
    with connect(node_process.ws_url, open_timeout=10) as websocket:
        before_auth = _request(
            websocket, {"id": 1, "method": "POST", "path": "/api/channel/updates", "body": {}}
        )
        websocket.send(json.dumps({"type": "auth", "token": token, "id": "a"}))
        assert json.loads(websocket.recv(timeout=10))["type"] == "authenticated"
        unknown = _request(
            websocket, {"id": 2, "method": "POST", "path": "/api/channel/withdraw", "body": {}}
        )
        malformed = _request(
            websocket, {"id": 3, "method": "POST", "path": "/api/channel/updates", "body": {}}
        )
        no_channel = _request(
            websocket,
            {
                "id": 4,
                "method": "POST",
                "path": "/api/channel/countersign",
                "body": {"nonce": "2", "signature": "0x" + "11" * 65},
            },
        )
        websocket.send(json.dumps({"type": "ping", "id": 5}))
        still_there = json.loads(websocket.recv(timeout=10))

    assert (before_auth["status"], before_auth["body"]["error"]["code"]) == (401, "not_authenticated")
    assert (unknown["status"], unknown["body"]["error"]["code"]) == (404, "not_found")
    assert (malformed["status"], malformed["body"]["error"]["code"]) == (400, "invalid_input")
    assert set(malformed["body"]["error"]["fields"]) == {"update", "signature"}
    assert (no_channel["status"], no_channel["body"]["error"]["code"]) == (404, "no_channel")
    assert still_there["type"] == "pong"
