"""Bodies over the limit and deeply nested JSON, against a real daphne process: each refused with the
API's JSON error shape, before the node buffers or walks it, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import override_settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from channels_app.models import AuthChallenge, AuthToken
from tests.support.abuse import log_in, nested, new_account, parse_raw_answer, raw_http, request_json

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 1024 * 1024  # API_MAX_BODY_BYTES's default
FRAME_LIMIT = 64 * 1024  # WS_MAX_FRAME_BYTES's default


def peak_memory_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc")


def post_head(path: str, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_body_declared_over_the_limit_is_refused_with_413_in_json_before_it_is_sent(node_process):
    answer = raw_http(node_process.port, post_head("/api/auth/token", Content_Length=str(200 * 10**6)))

    status, headers, body = parse_raw_answer(answer)
    assert status == 413
    assert headers["content-type"] == "application/json"
    assert body["error"]["code"] == "request_too_large"
    assert body["error"]["limit"] == LIMIT
    assert str(LIMIT) in body["error"]["message"]


def test_a_streamed_body_is_refused_with_413_in_json_once_it_passes_the_limit(node_process):
    chunk = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (LIMIT // len(chunk)) + [b"1\r\n \r\n"]

    answer = raw_http(node_process.port, post_head("/api/auth/token", Transfer_Encoding="chunked"), chunks)

    status, _, body = parse_raw_answer(answer)
    assert status == 413
    assert body["error"]["code"] == "request_too_large"
    assert AuthToken.objects.count() == 0


def test_a_200_mb_body_does_not_grow_the_node_process(node_process):
    assert node_process.process is not None
    pid = node_process.process.pid
    peak_before = peak_memory_kib(pid)

    raw_http(
        node_process.port,
        post_head("/api/auth/token", Content_Length=str(200 * 10**6)),
        [b" " * 10**6] * 200,
    )

    assert peak_memory_kib(pid) - peak_before < 20 * 1024  # it held none of it (it was 200 MB)
    assert request_json(f"{node_process.url}/api/")[0] == 200


def test_a_body_just_under_the_limit_still_reaches_the_api(node_process):
    padding = " " * (LIMIT - 100)
    status, _, body = request_json(
        f"{node_process.url}/api/auth/token", method="POST", body=f'{{"address": "x"}}{padding}'.encode()
    )

    assert status == 400
    assert body["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_json_is_a_400_in_json_also_without_a_token(node_process, depth):
    status, _, body = request_json(
        f"{node_process.url}/api/auth/token", method="POST", body=nested(depth).encode()
    )

    assert status == 400
    assert body["error"]["code"] == "json_too_deep"
    assert "32" in body["error"]["message"]
    assert AuthChallenge.objects.count() == 0
    assert AuthToken.objects.count() == 0


def test_deeply_nested_json_is_a_400_in_json_for_a_logged_in_update(node_process):
    token = log_in(node_process.url, new_account())
    update = {"update": json.loads(nested(40)), "signature": "0x00"}

    status, _, body = request_json(
        f"{node_process.url}/api/channel/updates",
        method="POST",
        body=json.dumps(update).encode(),
        token=token,
    )

    assert status == 400
    assert body["error"]["code"] == "json_too_deep"


def test_json_nested_within_the_limit_is_read_as_usual(node_process):
    status, _, body = request_json(
        f"{node_process.url}/api/auth/token", method="POST", body=nested(30).encode()
    )

    assert status == 400
    assert body["error"]["code"] == "invalid_input"


@pytest.mark.parametrize("depth", [40, 30_000])  # 30,000: past Python's recursion limit, under 64 KB
def test_a_deeply_nested_websocket_frame_gets_a_json_error_and_the_socket_stays(node_process, depth):
    with connect(node_process.ws_url, open_timeout=10, max_size=None) as websocket:
        websocket.send(nested(depth))
        error = json.loads(websocket.recv(timeout=10))
        websocket.send(json.dumps({"type": "ping", "id": 1}))
        still_there = json.loads(websocket.recv(timeout=10))

    assert error["type"] == "error"
    assert error["code"] == "json_too_deep"
    assert still_there["type"] == "pong"


def test_a_websocket_frame_over_the_limit_gets_a_json_error_and_the_socket_stays(node_process):
    with connect(node_process.ws_url, open_timeout=10, max_size=None) as websocket:
        websocket.send(json.dumps({"type": "ping", "id": "x" * FRAME_LIMIT}))
        error = json.loads(websocket.recv(timeout=10))
        websocket.send(json.dumps({"type": "ping", "id": 1}))
        still_there = json.loads(websocket.recv(timeout=10))

    assert error["code"] == "message_too_large"
    assert still_there["type"] == "pong"


def test_a_websocket_message_far_over_the_limit_is_not_read_the_connection_closes_1009(node_process):
    with connect(node_process.ws_url, open_timeout=10, max_size=None) as websocket:
        websocket.send("x" * (16 * FRAME_LIMIT + 1))
        with pytest.raises(ConnectionClosed) as closed:
            websocket.recv(timeout=10)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def test_a_body_django_refuses_to_read_is_a_400_in_json(client):
    """Behind another ASGI server, or with the limit raised past Django's own: Django's refusal of a
    body it will not read is in the API's shape too."""
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        response = client.post("/api/auth/token", " " * 5000, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_request"
