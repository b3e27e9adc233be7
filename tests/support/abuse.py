"""What an abusive client does to a real node process: raw HTTP on a socket, plain JSON requests,
a login by signature, websocket frames."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from websockets.sync.client import ClientConnection, connect

from tests.support.processes import NodeProcess


def request_json(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, parsed JSON body); a body that is not JSON fails the test."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=sent)  # noqa: S310 - local
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - local test URL
            raw, status, answer_headers = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        raw, status, answer_headers = exc.read(), exc.code, dict(exc.headers)
    return status, answer_headers, json.loads(raw) if raw else None


def log_in(node_url: str, account: Any) -> str:
    """Sign the node's login nonce as a wallet does; the bearer token."""
    status, _, challenge = request_json(f"{node_url}/api/auth/nonce?address={account.address}")
    assert status == 200, challenge
    signature = account.sign_message(encode_defunct(text=challenge["message"])).signature.to_0x_hex()
    body = {"address": account.address, "nonce": challenge["nonce"], "signature": signature}
    status, _, issued = request_json(
        f"{node_url}/api/auth/token", method="POST", body=json.dumps(body).encode()
    )
    assert status == 201, issued
    return str(issued["token"])


def new_account() -> Any:
    return Account.create()


def raw_http(port: int, head: bytes, body_chunks: Sequence[bytes] = (), timeout: float = 10.0) -> bytes:
    """Send `head` then each chunk (as far as the node lets us: it may close early), and read the
    whole answer until the node closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(head)
        for chunk in body_chunks:
            try:
                connection.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        try:
            while piece := connection.recv(65536):
                answer += piece
        except ConnectionResetError:
            pass
        return answer


def parse_raw_answer(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def started_node(
    node_env_for: dict[str, str], start_process: Any, tmp_path: Any, name: str, **settings: str
) -> NodeProcess:
    """A daphne process of its own with `settings` added to the test environment, serving."""
    node = NodeProcess(env={**node_env_for, **settings}, log_path=tmp_path / f"{name}.log")
    start_process(node)
    node.wait_serving()
    return node


def logged_in_socket(node: NodeProcess, token: str) -> ClientConnection:
    """A websocket to `node`, logged in with `token`."""
    websocket = connect(node.ws_url, open_timeout=10)
    websocket.send(json.dumps({"type": "auth", "token": token, "id": "auth"}))
    assert json.loads(websocket.recv(timeout=10))["type"] == "authenticated"
    return websocket
