"""The node's REST API over aiohttp: login, bearer token, one error shape turned into typed errors.

Every non-2xx answer becomes a `NodeError` carrying the node's `code` (`AuthenticationError` for 401,
`LimitError` for the node's limits on collateral and withdrawal gas);
a 5xx or a failed connection becomes `NodeUnavailableError`. An expired token is renewed by logging in
again, once per request.

While the client's websocket is up, the channel update calls (`SOCKET_PATHS`) go over it as
`{"type": "request"}` frames (same bodies, same answers, no HTTP request per update); when the socket
is down or drops before the answer, the call goes over REST instead (the node answers a repeated
update or countersignature exactly as the first time).

A node process may name where the client's socket belongs (`socketUrl` when it authenticates: the
process owning the user's shard). The client moves there only on its node's own host, with its
scheme (`socket_home`): the socket carries the bearer token, which must never reach another host.

The client keeps to the node's pace (`limits` in /api/config): at most `socketRequestsInFlight` socket
requests at once (the rest wait here, not in a 429), and a call the node refused for its pace (429
`throttled` or `too_many_requests`: nothing was done) is sent again after the `retryAfter` it named.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from yarl import URL

from connext.errors import LIMIT_CODES, AuthenticationError, LimitError, NodeError, NodeUnavailableError
from connext.protocol import auth, serialization
from connext.protocol.signing import Signer

REQUEST_TIMEOUT_SECONDS = 30
_RENEWABLE = ("invalid_token", "token_expired")
SOCKET_PATHS = frozenset({"/api/channel/updates", "/api/channel/countersign"})
# Refusals for the caller's pace: nothing was done, the same call may be sent again after retryAfter.
PACE_CODES = frozenset({"throttled", "too_many_requests"})
PACE_RETRIES = 3
PACE_MAX_WAIT_SECONDS = 10.0
DEFAULT_SOCKET_REQUESTS_IN_FLIGHT = 4


class _SocketLost(Exception):
    """The socket went away before the node answered a request sent over it."""


def socket_home(ws_url: str, offered: object) -> str | None:
    """The websocket URL a node process's `socketUrl` names, when the client may go there: a path
    taken on the node's own host, or a URL with the scheme and host name of `ws_url` (its port and
    path may differ: node processes side by side on one host). None for anything else (another
    host, a scheme downgrade, credentials, a query): the socket's first frame carries the bearer
    token, and a node process must not be able to send that anywhere. Parsed as aiohttp connects
    (yarl), so what is checked is where the socket would go."""
    if not isinstance(offered, str) or not offered or len(offered) > 300:
        return None
    own = URL(ws_url)
    try:
        named = URL(offered)
        named = named if named.is_absolute() else own.join(named)
    except ValueError:
        return None
    same_host = named.host is not None and named.host == own.host
    plain = not (named.user or named.password or named.query_string or named.fragment)
    return str(named) if named.scheme == own.scheme and same_host and plain else None


class NodeApi:
    def __init__(self, node_url: str, signer: Signer, session: aiohttp.ClientSession) -> None:
        self.base_url = node_url.rstrip("/")
        self.signer = signer
        self.session = session
        self.token = ""
        self._socket_send: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self._waiting: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self._request_ids = itertools.count(1)
        self._socket_slots = asyncio.Semaphore(DEFAULT_SOCKET_REQUESTS_IN_FLIGHT)
        self.socket_requests = 0  # calls sent over the socket so far
        self.paced_retries = 0  # calls sent again after the node refused them for the pace
        self.socket_home = ""  # where a node process said the socket belongs ("": ws_url)

    def set_limits(self, limits: dict[str, Any]) -> None:
        """Keep to the node's limits from /api/config (before any request is under way)."""
        in_flight = limits.get("socketRequestsInFlight")
        if isinstance(in_flight, int) and in_flight >= 1:
            self._socket_slots = asyncio.Semaphore(in_flight)

    # -- requests over the websocket ------------------------------------------------------------------

    def attach_socket(self, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Send the update calls over an authenticated socket from now on."""
        self._socket_send = send

    def detach_socket(self) -> None:
        """The socket is gone: calls waiting on it go over REST."""
        self._socket_send = None
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(_SocketLost())

    def socket_response(self, frame: dict[str, Any]) -> None:
        """Hand the node's `{"type": "response"}` frame to the call waiting for it."""
        request_id = frame.get("id")
        future = self._waiting.pop(request_id, None) if isinstance(request_id, int) else None
        if future is not None and not future.done():
            status = frame.get("status")
            future.set_result((status if isinstance(status, int) else 500, frame.get("body")))

    async def _socket_request(self, method: str, path: str, body: dict[str, Any]) -> Any:
        async with self._socket_slots:
            return await self._socket_request_once(method, path, body)

    async def _socket_request_once(self, method: str, path: str, body: dict[str, Any]) -> Any:
        send = self._socket_send
        if send is None:
            raise _SocketLost()
        request_id = next(self._request_ids)
        self.socket_requests += 1
        future: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await send({"type": "request", "id": request_id, "method": method, "path": path, "body": body})
            # Not `asyncio.wait_for`: on Python 3.11 it returns an answer that arrives in the same
            # loop step as a cancellation and drops the cancellation.
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                status, answer = await future
        except (ConnectionError, RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
            raise _SocketLost() from exc
        finally:
            self._waiting.pop(request_id, None)
        if status < 400:
            return answer
        if status >= 500:
            raise unavailable_from_body(status, answer, f"{method} {path}")
        raise error_from_body(status, answer)

    @property
    def ws_url(self) -> str:
        """The node's own websocket URL (beside its REST API)."""
        scheme, _, rest = self.base_url.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws/v1"

    @property
    def socket_url(self) -> str:
        """Where the socket connects: the home a node process named (`socket_home`), else `ws_url`."""
        return self.socket_home or self.ws_url

    async def log_in(self) -> str:
        """Sign the node's login nonce (EIP-191) and keep the bearer token it issues."""
        challenge = await self.request(
            "GET", "/api/auth/nonce", params={"address": self.signer.address}, authenticated=False
        )
        signature = auth.sign_login(challenge["message"], self.signer)
        issued = await self.request(
            "POST",
            "/api/auth/token",
            json={
                "address": self.signer.address,
                "nonce": challenge["nonce"],
                "signature": serialization.hex_bytes(signature),
            },
            authenticated=False,
        )
        self.token = str(issued["token"])
        return self.token

    async def log_out(self) -> None:
        """Revoke the token at the node (its sockets close there) and forget it."""
        if self.token:
            await self._request_once("POST", "/api/auth/logout", json=None, params=None, authenticated=True)
        self.token = ""

    async def get(self, path: str, **params: str) -> Any:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        if path in SOCKET_PATHS and self._socket_send is not None:
            try:
                return await self._paced(lambda: self._socket_request("POST", path, body))
            except _SocketLost:
                pass  # the node answers the same call over REST exactly as it would have here
            except AuthenticationError as exc:
                if exc.code not in _RENEWABLE:
                    raise  # else REST renews the token and sends the call again
        return await self.request("POST", path, json=body)

    async def _paced(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """`call()`, sent again (up to PACE_RETRIES times) after the wait the node names when it
        refuses it for the caller's pace; any other answer or error is the caller's."""
        for attempt in range(PACE_RETRIES + 1):
            try:
                return await call()
            except NodeError as exc:
                if exc.status != 429 or exc.code not in PACE_CODES or attempt == PACE_RETRIES:
                    raise
                wait = exc.details.get("retryAfter")
                wait = float(wait) if isinstance(wait, int | float) and wait > 0 else 1.0
                self.paced_retries += 1
                await asyncio.sleep(min(wait, PACE_MAX_WAIT_SECONDS))
        raise AssertionError("unreachable")

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        authenticated: bool = True,
    ) -> Any:
        async def renewing() -> Any:  # an expired token is renewed by logging in again, once
            try:
                return await self._request_once(
                    method, path, json=json, params=params, authenticated=authenticated
                )
            except AuthenticationError as exc:
                if not authenticated or exc.code not in _RENEWABLE:
                    raise
            await self.log_in()
            return await self._request_once(method, path, json=json, params=params, authenticated=True)

        return await self._paced(renewing)

    async def _request_once(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None,
        params: dict[str, str] | None,
        authenticated: bool,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if authenticated and self.token else {}
        try:
            async with self.session.request(
                method,
                self.base_url + path,
                json=json,
                params=params,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
            ) as response:
                status = response.status
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NodeUnavailableError(
                "node_unavailable", f"{method} {path}: the node did not answer ({exc!r})"
            ) from None
        if status < 400:
            return body
        if status >= 500:
            raise unavailable_from_body(status, body, f"{method} {path}")
        raise error_from_body(status, body)


def unavailable_from_body(status: int, body: Any, request: str) -> NodeUnavailableError:
    """A 5xx: the node could not serve the request now (nothing changed). Its own code and reason when
    it gave them (e.g. `chain_unavailable`), else `node_unavailable`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return NodeUnavailableError(error["code"], f"{request}: {error.get('message', status)}")
    return NodeUnavailableError("node_unavailable", f"{request}: the node answered {status}")


def error_from_body(status: int, body: Any) -> NodeError:
    """The typed error for a node error answer `{"error": {"code", "message", ...}}`."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": "http_" + str(status), "message": f"the node answered {status}"}
    details = {key: value for key, value in error.items() if key not in ("code", "message")}
    code = str(error.get("code", "error"))
    kind = AuthenticationError if status == 401 else LimitError if code in LIMIT_CODES else NodeError
    return kind(code, str(error.get("message", "")), status, details)
