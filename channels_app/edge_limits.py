"""Limits the node keeps at its edges before any of its code reads a request.

A request body over `API_MAX_BODY_BYTES` is refused with 413 in the API's error shape, twice over:
`limit_daphne_bodies` makes daphne's HTTP layer (Twisted) answer as soon as the declared or received
length passes the limit, so the body is never buffered (daphne otherwise spools all of it and queues
it to the app in 8 KB messages, in memory), and `RequestBodyLimit`, ASGI middleware in front of
Django, does the same under any ASGI server. `limit_websocket_messages` has autobahn (daphne's
websocket layer) close a connection whose message is far over the consumer's frame limit instead of
buffering it whole. `json_within_depth` is the nesting check every JSON document from a client
passes before anything walks it recursively. `FairShare`, outermost in front of Django, paces each
caller's API requests (`channels_app.fair`) on the event loop, before anything else of the node runs
for them; the websocket consumer paces its requests on the same `process_pace()`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from daphne import http_protocol, ws_protocol

from channels_app import metrics
from channels_app.fair import Aliases, Busy, Pace, retry_seconds

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# A websocket message this many times over the consumer's frame limit is not buffered at all.
TRANSPORT_FRAME_FACTOR = 16


def json_within_depth(document: Any, limit: int) -> bool:
    """Whether no array or object in `document` is nested deeper than `limit` (iterative: a deep
    document must not exhaust the stack of the check meant to stop it)."""
    if not isinstance(document, dict | list):
        return True
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return False
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


class RequestBodyLimit:
    """Refuse HTTP request bodies over `max_bytes` with 413 before the app reads them."""

    def __init__(self, app: App, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before its body was complete: nobody to answer
            body = message.get("body", b"")
            received += len(body)
            if received > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _refuse(self, send: Send) -> None:
        await send_json(send, 413, too_large_body(self.max_bytes), [(b"connection", b"close")])


async def send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Answer an HTTP request with a JSON body from ASGI middleware, before the app ran."""
    start = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*start, *headers]})
    await send({"type": "http.response.body", "body": body})


def too_large_body(max_bytes: int) -> bytes:
    message = f"Request bodies are limited to {max_bytes} bytes."
    return json.dumps(
        {"error": {"code": "request_too_large", "message": message, "limit": max_bytes}}
    ).encode()


def _content_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


# --- Fair shares -----------------------------------------------------------------------------------

# Paths no caller's pace applies to: the health check a proxy or an orchestrator polls.
UNPACED_PATHS = frozenset({"/api/health"})

# The accounts of the tokens this process has checked (token digest -> pace key), so a REST request
# is paced as its account before Django runs; a token not checked yet is paced as its IP.
TOKEN_ACCOUNTS = Aliases()


@functools.cache
def _pace(rate: float, burst: int, max_wait: float) -> Pace:
    return Pace(rate=rate, burst=burst, max_wait=max_wait)


def process_pace() -> Pace:
    """This process's pace for every caller (REST and socket share it: one account, one share)."""
    from django.conf import settings

    return _pace(settings.FAIR_SHARE_RATE, settings.FAIR_SHARE_BURST, settings.FAIR_SHARE_MAX_WAIT_SECONDS)


def account_key(address: str) -> str:
    return f"account:{address.lower()}"


def ip_key(ip: str) -> str:
    return f"ip:{ip}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def remember_token(token: str, address: str) -> None:
    """The token was checked and stands for `address`: its requests are paced as that account."""
    TOKEN_ACCOUNTS.remember(token_digest(token), account_key(address))


def client_ip(scope: Scope, trusted_proxies: int) -> str:
    """The caller's IP: the connection's, or with `trusted_proxies` proxies in front, the address the
    outermost trusted one saw (X-Forwarded-For, counted from the right as DRF does)."""
    peer = scope.get("client") or ("", 0)
    if trusted_proxies > 0:
        forwarded = _header(scope, b"x-forwarded-for")
        if forwarded:
            hops = [hop.strip() for hop in forwarded.decode("latin-1").split(",") if hop.strip()]
            if hops:
                return hops[-min(trusted_proxies, len(hops))]
    return str(peer[0])


def busy_error(busy: Busy) -> dict[str, Any]:
    """The API's error body for a caller whose turn is too far away (REST and socket alike)."""
    seconds = retry_seconds(busy)
    message = f"Too many requests from you for now; retry in {seconds} seconds."
    return {"error": {"code": "throttled", "message": message, "retryAfter": seconds}}


class FairShare:
    """Each API request waits for its caller's turn (`process_pace`) before the node does anything
    for it: by account when its bearer token was checked before, else by client IP. A turn too far
    away is answered 429 at once, with Retry-After, in the API's error shape."""

    def __init__(self, app: App, *, pace: Callable[[], Pace], trusted_proxies: int) -> None:
        self.app = app
        self.pace = pace
        self.trusted_proxies = trusted_proxies

    def key(self, scope: Scope) -> str:
        authorization = _header(scope, b"authorization")
        if authorization and authorization[:7].lower() == b"bearer ":
            account = TOKEN_ACCOUNTS.get(token_digest(authorization[7:].strip().decode("latin-1")))
            if account is not None:
                return account
        return ip_key(client_ip(scope, self.trusted_proxies))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/api/") or path in UNPACED_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            await self.pace().turn(self.key(scope))
        except Busy as busy:
            metrics.refusal_count("throttled")
            body = json.dumps(busy_error(busy)).encode()
            await send_json(send, 429, body, [(b"retry-after", str(retry_seconds(busy)).encode())])
            return
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read so far as one message, then whatever the server sends next (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


class _BoundedWebRequest(http_protocol.WebRequest):  # type: ignore[misc]
    """daphne's request, answering 413 and closing once the body passes `max_body_bytes`."""

    max_body_bytes = 0
    refused = False
    received = 0

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        if length is not None and length > self.max_body_bytes:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.received += len(data)
        if self.received > self.max_body_bytes:
            self._refuse()
            return
        super().handleContentChunk(data)

    def process(self) -> Any:
        if not self.refused:
            return super().process()
        return None

    def _refuse(self) -> None:
        self.refused = True
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue": the body need not be sent
        body = too_large_body(self.max_body_bytes)
        head = (
            b"HTTP/1.1 413 Request Entity Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.channel.transport.write(head + body)
        self.channel.loseConnection()


def limit_daphne_bodies(max_bytes: int) -> None:
    """Have daphne's HTTP factory build requests that refuse bodies over `max_bytes` while they
    arrive (it looks its request class up in its module on every connection)."""
    _BoundedWebRequest.max_body_bytes = max_bytes
    http_protocol.WebRequest = _BoundedWebRequest


def limit_websocket_messages(max_frame_bytes: int) -> None:
    """Have daphne's websocket protocol (autobahn) close with 1009 on a message far over the
    consumer's limit while it arrives, instead of buffering it whole and handing it on. Autobahn takes
    an option set on the protocol class before the factory's default."""
    cap = TRANSPORT_FRAME_FACTOR * max_frame_bytes
    ws_protocol.WebSocketProtocol.maxFramePayloadSize = cap
    ws_protocol.WebSocketProtocol.maxMessagePayloadSize = cap
    # Say why (close code 1009) and finish the closing handshake rather than drop the TCP connection.
    ws_protocol.WebSocketProtocol.failByDrop = False


# How long a peer has to answer the node's close frame before the node drops the connection. Autobahn's
# default is one second: a client on a slow link, or one whose reader was busy for a second, had its
# connection reset while it answered, and some client libraries (websockets) then drop the frames that
# came with the close, among them the error frame saying why (`token_expired`, `logged_out`). The
# common clients wait as long for the server's answer to theirs (websockets' and aiohttp's default).
CLOSE_HANDSHAKE_SECONDS = 10


def wait_for_close_answers(seconds: float = CLOSE_HANDSHAKE_SECONDS) -> None:
    """Have daphne's websocket protocol wait `seconds` for the answer to a close it sent."""
    ws_protocol.WebSocketProtocol.closeHandshakeTimeout = seconds
