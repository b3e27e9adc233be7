"""Websocket consumers: the node's push channel to clients and the low-latency update exchange.

Protocol: JSON text frames. Client → node `{"type": "ping", "id": ...}`, `{"type": "auth", "token": ...}`
(after which the node pushes the caller's own events) and, once authenticated,
`{"type": "request", "id": ..., "method": "POST", "path": ..., "body": {...}}` for the channel update
endpoints (`SOCKET_REQUESTS`): the same input, checks and answers as over REST, without an HTTP
request per update. Node → client `{"type": "authenticated", "address": ..., "socketUrl": ...}`
(`socketUrl`, with the update engine on, when another process owns the user's shard and said where
its socket is reached: the client may move there, saving each request a forward; `{"type": "move",
"socketUrl": ...}` when that becomes so later), `{"type": "pong", "id": ...,
"server_time": ...}`, `{"type": "event", "event": ..., "payload": ...}`, `{"type": "response", "id":
..., "status": <HTTP status>, "body": <the REST answer or its error body>}` and `{"type": "error",
"code": ..., "message": ...}` for anything it cannot take.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from channels_app import after_commit, metrics, realtime
from channels_app.api import channel_views
from channels_app.api.errors import error_answer, error_body
from channels_app.edge_limits import (
    account_key,
    busy_error,
    client_ip,
    ip_key,
    json_within_depth,
    process_pace,
)
from channels_app.engine.process import Engine, process_engine
from channels_app.fair import Busy
from channels_app.realtime import BROADCAST_GROUP, user_group
from channels_app.services.auth import AuthError, auth_token_address, auth_token_check

logger = logging.getLogger(__name__)

# Close codes (application range): the token stopped working (expired, revoked, logged out), and no
# login within WS_AUTH_TIMEOUT_SECONDS of connecting.
CLOSE_TOKEN_ENDED = 4401
CLOSE_AUTH_TIMEOUT = 4408

# The REST endpoints a client may also call over its socket: (method, path) -> handler(address, body).
SOCKET_REQUESTS: dict[tuple[str, str], Callable[[str, Any], dict[str, Any]]] = {
    ("POST", "/api/channel/updates"): channel_views.channel_update_request,
    ("POST", "/api/channel/countersign"): channel_views.channel_countersign_request,
}


def _serve_request(
    handler: Callable[[str, Any], dict[str, Any]],
    token: str,
    body: Any,
    answer: Callable[[int, Any], None],
) -> AuthError | None:
    """Run one socket request like a REST request (its own database connection state, the same error
    bodies, the token checked as a REST request's is: a revoked or expired one is refused with 401
    and returned), hand its answer to `answer`, then run the payment steps its commit released
    (forward, settle, the next proposal): the client gets its answer without waiting for work done
    for others. The pushes the request released go out together, before its answer
    (`realtime.batched`). Runs in a worker thread (the service holds row locks; the event loop must
    not)."""
    close_old_connections()
    try:
        try:
            address = auth_token_address(token=token)
        except AuthError as exc:
            answer(401, error_body(exc.code, exc.message))
            return exc
        except Exception as exc:
            # Answered all the same (the database down, say): a request left unanswered holds its
            # client for its whole timeout, and with it every payment of that user.
            logger.exception("socket request failed checking its token")
            answer(
                *(
                    error_answer(exc)
                    or (500, error_body("internal_error", "The node failed to handle the request."))
                )
            )
            return None
        with after_commit.answer_first() as follow_ups, realtime.batched():
            try:
                status, result = 200, handler(address, body)
            except Exception as exc:
                refused = error_answer(exc)
                if refused is None:
                    logger.exception("socket request failed")
                    refused = 500, error_body("internal_error", "The node failed to handle the request.")
                status, result = refused
        answer(status, result)
        after_commit.run_all(follow_ups)
        return None
    finally:
        close_old_connections()


async def _on_engine(
    engine: Engine, token: str, path: str, body: Any
) -> tuple[tuple[int, Any] | None, AuthError | None]:
    """A socket request served by the update engine on this loop (no worker thread): the token
    checked as `_serve_request` checks it (`Engine.token_address`), then `Engine.serve`. (None,
    None) when the row-lock path is to serve it (also when the token check itself failed: that path
    answers it)."""
    try:
        address = await engine.token_address(token)
    except AuthError as exc:
        return (401, error_body(exc.code, exc.message)), exc
    except Exception:
        return None, None
    return await engine.serve(path, address, body), None


class NodeConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    groups: ClassVar[list[str]] = [BROADCAST_GROUP]
    address: str | None = None
    # Socket requests running per account in this process: one account's flood cannot take every
    # worker thread (and with them everyone else's latency).
    in_flight: ClassVar[dict[str, int]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._requests: set[asyncio.Future[None]] = set()
        self._token: str | None = None
        self._key_hash: str | None = None
        self._deadline: asyncio.TimerHandle | None = None  # the login timeout, then the token's expiry
        self._closing: asyncio.Future[None] | None = None
        self._open = False  # accepted, and counted in metrics.WEBSOCKETS
        self._told_home = False  # told where its user's shard's owner has its socket (once a socket)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """A connection is paced as the caller's IP before the node spends anything on it (a
        consumer, a group, a timer): one whose turn is too far away is refused (403, the HTTP answer
        to a websocket the server does not accept)."""
        try:
            await process_pace().turn(self._ip_key())
        except Busy:
            metrics.refusal_count("throttled")
            await self.close()
            return
        await super().websocket_connect(message)

    def _ip_key(self) -> str:
        return ip_key(client_ip(self.scope, settings.EDGE.trusted_proxy_count))

    async def connect(self) -> None:
        await self.accept()
        metrics.WEBSOCKETS.inc()
        self._open = True
        timeout = settings.WS_AUTH_TIMEOUT_SECONDS
        self._close_after(
            timeout,
            "auth_timeout",
            f"Send {{'type': 'auth', 'token': ...}} within {timeout} seconds of connecting.",
            CLOSE_AUTH_TIMEOUT,
        )

    def _close_after(self, seconds: float, code: str, message: str, close_code: int) -> None:
        if self._deadline is not None:
            self._deadline.cancel()

        def close() -> None:
            self._closing = asyncio.ensure_future(self._close_with(code, message, close_code))

        self._deadline = asyncio.get_running_loop().call_later(max(0.0, seconds), close)

    async def _close_with(self, code: str, message: str, close_code: int) -> None:
        """Say why in the error shape, then close: the socket is served no more."""
        if self._deadline is not None:
            self._deadline.cancel()
        if self.address is not None:
            await self.channel_layer.group_discard(user_group(self.address), self.channel_name)
        self.address = self._token = self._key_hash = None
        await self._error(code, message)
        await self.close(code=close_code)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-message `close_old_connections` hop to the shared sync
        thread: every frame and every push paid a thread switch (and queued behind other consumers)
        for database cleanup this consumer does not need. Handlers that touch the database run in
        worker threads that clean up after themselves (`_serve_request`, `database_sync_to_async`)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' disconnect without its `aclose_old_connections` hop to the shared sync thread
        (as in `dispatch`): a burst of sockets closing (the login timeout of a crowd that connected
        together) queued one hop each in front of every REST request."""
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer

    async def _request(self, content: dict[str, Any]) -> None:
        """A REST call over the socket; answered with `{"type": "response", "id", "status", "body"}`
        (requests are answered concurrently, each when done, up to WS_MAX_REQUESTS_IN_FLIGHT per
        account; one more is answered 429 at once)."""
        request_id = content.get("id")
        handler = SOCKET_REQUESTS.get((str(content.get("method")), str(content.get("path"))))
        address, token = self.address, self._token
        cap = settings.WS_MAX_REQUESTS_IN_FLIGHT
        if address is None or token is None:
            await self._respond(
                request_id, 401, error_body("not_authenticated", "Send {'type': 'auth'} first.")
            )
        elif handler is None:
            await self._respond(
                request_id, 404, error_body("not_found", "This request is served over REST only.")
            )
        elif self.in_flight.get(address, 0) >= cap:
            message = f"At most {cap} requests of one account run at once: wait for an answer first."
            await self._respond(
                request_id, 429, error_body("too_many_requests", message, extra={"limit": cap})
            )
        else:
            self.in_flight[address] = self.in_flight.get(address, 0) + 1
            loop = asyncio.get_running_loop()

            def answer(status: int, body: Any) -> None:  # from the worker thread, onto this loop
                asyncio.run_coroutine_threadsafe(self._respond(request_id, status, body), loop)

            try:
                try:
                    await process_pace().turn(account_key(address))  # waiting counts as in flight
                except Busy as busy:
                    metrics.refusal_count("throttled")
                    await self._respond(request_id, 429, busy_error(busy))
                    return
                path, body = str(content.get("path")), content.get("body")
                engine = await process_engine()
                served, refused = (
                    (None, None) if engine is None else await _on_engine(engine, token, path, body)
                )
                if served is not None:
                    await self._respond(request_id, *served)
                    assert engine is not None
                    await self._tell_home(engine, address)
                else:
                    refused = await sync_to_async(_serve_request, thread_sensitive=False)(
                        handler, token, body, answer
                    )
            finally:
                left = self.in_flight.pop(address) - 1
                if left:
                    self.in_flight[address] = left
            if refused is not None and self._token == token:
                await self._close_with(refused.code, refused.message, CLOSE_TOKEN_ENDED)

    async def _respond(self, request_id: Any, status: int, body: Any) -> None:
        await self.send_json({"type": "response", "id": request_id, "status": status, "body": body})

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        if text_data is None:
            await self._error("malformed_message", "Frames must be JSON text.")
            return
        if len(text_data) > settings.WS_MAX_FRAME_BYTES:
            limit = settings.WS_MAX_FRAME_BYTES
            await self._error("message_too_large", f"Frames are limited to {limit} bytes.")
            return
        depth = settings.API_MAX_JSON_DEPTH
        try:
            message = json.loads(text_data)
            too_deep = not json_within_depth(message, depth)
        except ValueError:
            await self._error("malformed_message", "Frames must be valid JSON.")
            return
        except RecursionError:  # Python's parser gives up on deep nesting before our check can
            too_deep = True
        if too_deep:
            await self._error("json_too_deep", f"JSON may nest arrays and objects at most {depth} deep.")
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self._error("malformed_message", 'A message is a JSON object with a string "type".')
            return
        await self.receive_json(message)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if content["type"] == "ping":
            await self.send_json({"type": "pong", "id": content.get("id"), "server_time": time.time()})
            return
        if content["type"] == "auth":
            await self._authenticate(content)
            return
        if content["type"] == "request":
            task = asyncio.ensure_future(self._request(content))
            self._requests.add(task)
            task.add_done_callback(self._requests.discard)
            return
        await self._error(
            "unknown_message_type", f"Unknown message type {content['type']!r}.", content.get("id")
        )

    async def _authenticate(self, content: dict[str, Any]) -> None:
        """`{"type": "auth", "token": ...}`: join the caller's own group to get its pushes."""
        token = content.get("token")
        if not isinstance(token, str) or not token:
            await self._error("invalid_token", "Send {'type': 'auth', 'token': <token>}.", content.get("id"))
            return
        try:  # a token check reads the database: paced as the caller's IP, like a REST login
            await process_pace().turn(self._ip_key())
        except Busy as busy:
            metrics.refusal_count("throttled")
            await self._error("throttled", busy_error(busy)["error"]["message"], content.get("id"))
            return
        try:
            session = await database_sync_to_async(auth_token_check)(token=token)
        except AuthError as exc:
            await self._error(exc.code, exc.message, content.get("id"))
            return
        address = session.address
        if self.address is not None and self.address != address:
            await self.channel_layer.group_discard(user_group(self.address), self.channel_name)
        self.address, self._token, self._key_hash = address, token, session.key_hash
        await self.channel_layer.group_add(user_group(address), self.channel_name)
        self._close_after(
            (session.expires_at - timezone.now()).total_seconds(),
            "token_expired",
            "The token expired; log in again.",
            CLOSE_TOKEN_ENDED,
        )
        authenticated: dict[str, Any] = {"type": "authenticated", "id": content.get("id"), "address": address}
        engine = await process_engine()
        home = "" if engine is None else await engine.socket_home(address)
        if home:
            authenticated["socketUrl"], self._told_home = home, True
        await self.send_json(authenticated)

    async def _tell_home(self, engine: Engine, address: str) -> None:
        """After a request the engine served: when another process owns the user's shard now (it
        moved since the socket authenticated: the engines sharing the shards anew) and said where
        its socket is reached, tell the socket once, `{"type": "move", "socketUrl": ...}`."""
        if self._told_home:
            return
        home = await engine.socket_home(address)
        if home:
            self._told_home = True
            await self.send_json({"type": "move", "socketUrl": home})

    async def session_revoked(self, message: dict[str, Any]) -> None:
        """The token this socket logged in with was revoked (logout) on some node process."""
        if self._key_hash is not None and message.get("key_hash") == self._key_hash:
            await self._close_with(
                "logged_out", "The token was revoked (logout); log in again.", CLOSE_TOKEN_ENDED
            )

    async def disconnect(self, code: int) -> None:
        if self._open:
            metrics.WEBSOCKETS.dec()
            self._open = False
        if self._deadline is not None:
            self._deadline.cancel()
        if self.address is not None:
            await self.channel_layer.group_discard(user_group(self.address), self.channel_name)
        await super().disconnect(code)

    async def event_push(self, message: dict[str, Any]) -> None:
        """One event, or several (`realtime.batched`) written as one frame each, in order."""
        for event in message.get("events") or [message]:
            await self.send_json({"type": "event", "event": event["event"], "payload": event["payload"]})

    async def _error(self, code: str, message: str, request_id: Any = None) -> None:
        await self.send_json({"type": "error", "id": request_id, "code": code, "message": message})
