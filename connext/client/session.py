"""The client's connection to its node: logging in, opening or restoring the channel, the websocket and
its reconnects, the inbox that handles syncs and the node's pushes one at a time, and closing.

Invariants:
- The websocket reconnects with backoff; after every (re)connection the client syncs with the node
  (latest state, open proposal, the user's update that was left unanswered, uncredited deposits,
  the node's withdrawals waiting for the user's signature) and emits `channel.synced`.
- A socket told where it belongs (`socketUrl` when it authenticates, or a `move` frame later: the
  node process owning the user's shard) moves there, before it syncs or at once, when
  `node_api.socket_home` allows it, at most MAX_MOVES times in a row; a home that fails or drops is
  left for the node's own URL, and not moved to again by that socket.
- `close()` ends all background work, including work that starts while it winds down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp

from connext.chain.contracts import channel_address as compute_channel_address
from connext.client.core import ETH, ClientCore
from connext.client.events import wait as wait_future
from connext.client.exchange import Exchange
from connext.client.funds import Funds
from connext.client.incoming import Incoming
from connext.client.node_api import NodeApi, socket_home
from connext.client.onchain import UserChain
from connext.client.payments import Payments
from connext.client.watcher import setup_from_config, start_watch
from connext.errors import AuthenticationError, ConnextError, NodeError, NodeUnavailableError
from connext.protocol.encoding import normalize_address

logger = logging.getLogger("connext.client")

CLOSE_ROUND_SECONDS = 1.0  # how long close() waits for cancelled work before cancelling it again
CLOSE_ROUNDS = 10
RECONNECT_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
MAX_MOVES = 2  # moves to a named home in a row (ownership moving meanwhile), then the socket stays


class Session:
    """One connection's lifetime, from `start` to `close`, and what the node pushes meanwhile."""

    def __init__(
        self, core: ClientCore, exchange: Exchange, incoming: Incoming, payments: Payments, funds: Funds
    ) -> None:
        self._core = core
        self._exchange = exchange
        self._incoming = incoming
        self._payments = payments
        self._funds = funds
        self._moves = 0  # moves in a row to a home a node process named
        self._failed_home = ""  # a home whose socket failed: not moved to again for now

    async def start(self) -> None:
        core = self._core
        loop = asyncio.get_running_loop()
        core.store.flush_with(lambda delay, flush: loop.call_soon_threadsafe(loop.call_later, delay, flush))
        core.http = aiohttp.ClientSession()
        core.node_api = NodeApi(core.node_url, core.signer, core.http)
        await core.node_api.log_in()
        core.config = await core.node_api.get("/api/config")
        core.node_api.set_limits(core.config.get("limits") or {})
        rpc_url = core.chain_rpc_url or core.config.get("chainRpcUrl")
        if rpc_url:
            core.chain = UserChain(rpc_url, core.key)
            chain_id = await asyncio.to_thread(core.chain.chain_id)
            if chain_id != core.chain_id:
                raise ConnextError(
                    "wrong_chain", f"the RPC serves chain {chain_id}, the node chain {core.chain_id}"
                )
        core.channel_address = compute_channel_address(
            factory=core.config["contracts"]["ChannelFactory"],
            mastercopy=core.config["contracts"]["Channel"],
            node=core.node_address,
            user=core.address,
            chain_id=core.chain_id,
        )
        core.setup = setup_from_config(
            core.config,
            channel_address=core.channel_address,
            user=core.address,
            rpc_url=core.chain.rpc_url if core.chain is not None else "",
        )
        core.definitions = core.setup.definitions
        core.signed = core.store.latest(core.channel_address)
        async with core.lock:
            channel = await self._exchange.fetch_channel()
            if channel is None and core.signed is not None:
                await self._exchange.reconcile_locked()  # a node restored from before this channel was opened
            elif channel is None:
                await self._exchange.open_locked()
            elif core.signed is None:
                self._exchange.adopt(self._exchange.verified(channel), restoring=True)
        self._start_watch()
        core.tasks.append(asyncio.create_task(self._process_inbox(), name="connext-inbox"))
        synced = core.events.waiter("channel.synced")
        core.tasks.append(asyncio.create_task(self._run_socket(), name="connext-socket"))
        await wait_future(synced, 60, "first sync with the node")

    def _start_watch(self) -> None:
        core = self._core
        assert core.setup is not None
        core.disputes, tasks = start_watch(
            setup=core.setup,
            chain=core.chain,
            store=core.store,
            events=core.events,
            enabled=core.watch_disputes,
            options=core.watch_options,
            latest=lambda: core.signed.state if core.signed is not None else None,
        )
        core.tasks.extend(tasks)

    async def close(self) -> None:
        core = self._core
        core.closed = True
        # Background work may start more while the rest winds down (an answer's follow-up, say):
        # cancel in rounds until none is left. Iterating the live list instead skipped tasks that
        # removed themselves and awaited one started mid-close, uncancelled: `close()` hung.
        # A task that swallowed its cancellation (a library racing an answer against it, as
        # `asyncio.wait_for` of Python 3.11 does) is cancelled again rather than awaited forever.
        rounds = 0
        while core.tasks:
            tasks, core.tasks = list(core.tasks), []
            for task in tasks:
                task.cancel()
            _, still_running = await asyncio.wait(tasks, timeout=CLOSE_ROUND_SECONDS)
            core.tasks.extend(still_running)
            rounds += 1
            if still_running and rounds >= CLOSE_ROUNDS:
                logger.warning(
                    "closing left %d background tasks running: %s", len(still_running), still_running
                )
                core.tasks.clear()
        if core.http is not None:
            await core.http.close()
        core.store.close()

    async def logout(self) -> None:
        try:
            await self._core.api.log_out()
        finally:
            await self.close()

    # -- the websocket ------------------------------------------------------------------------------

    async def _run_socket(self) -> None:
        core = self._core
        failures = 0
        while not core.closed:
            try:
                if await self._socket_session():
                    continue  # straight on to the socket's home
                failures = 0
            except asyncio.CancelledError:
                raise
            except AuthenticationError:
                with contextlib.suppress(ConnextError):
                    await core.api.log_in()
            except Exception as exc:
                logger.info("websocket to the node lost: %r", exc)
            if core.api.socket_home:  # a home that failed or dropped: the node's own URL next
                self._failed_home, core.api.socket_home = core.api.socket_home, ""
            if core.closed:
                return
            core.events.emit("connection.lost", {"attempt": failures + 1})
            await asyncio.sleep(RECONNECT_BACKOFF[min(failures, len(RECONNECT_BACKOFF) - 1)])
            failures += 1

    async def _socket_session(self) -> bool:
        """One socket, until it closes; True when it was told to move and may (nothing synced)."""
        core = self._core
        assert core.http is not None
        url = core.api.socket_url
        async with core.http.ws_connect(url, heartbeat=20, timeout=aiohttp.ClientWSTimeout(ws_close=5)) as ws:
            await ws.send_json({"type": "auth", "token": core.api.token, "id": "auth"})
            reply = await ws.receive_json(timeout=15)
            if reply.get("type") == "error" and reply.get("code") in ("invalid_token", "token_expired"):
                raise AuthenticationError(str(reply["code"]), str(reply.get("message", "")), 401)
            if reply.get("type") != "authenticated":
                raise NodeError(str(reply.get("code", "bad_reply")), f"websocket auth answered {reply}", 400)
            if self._move_to(reply.get("socketUrl"), url):
                return True
            self._moves, self._failed_home = 0, ""  # it stays: a later reconnect may move again
            await core.inbox.put({"type": "sync"})
            core.api.attach_socket(ws.send_json)
            try:
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        try:
                            frame = json.loads(message.data)
                        except ValueError:
                            continue
                        if not isinstance(frame, dict):
                            continue
                        if frame.get("type") == "event":
                            await core.inbox.put(frame)
                        elif frame.get("type") == "response":
                            core.api.socket_response(frame)
                        elif frame.get("type") == "move" and self._move_to(frame.get("socketUrl"), url):
                            # Calls still waiting on this socket are sent again over REST (the node
                            # answers them as the same call sent again); the next socket syncs.
                            return True
                    elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
            finally:
                core.api.detach_socket()
        return False

    def _move_to(self, offered: object, url: str) -> bool:
        """Whether the socket at `url` is to move where a node process named (`socketUrl`), the
        move recorded when so."""
        core = self._core
        home = socket_home(core.api.ws_url, offered)
        if home is None or home in (url, self._failed_home) or self._moves >= MAX_MOVES:
            return False
        self._moves += 1
        core.api.socket_home = "" if home == core.api.ws_url else home
        return True

    async def _process_inbox(self) -> None:
        """Handle syncs and the node's pushes one at a time, in order."""
        while True:
            frame = await self._core.inbox.get()
            try:
                await self._handle_frame(frame)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("handling %s failed: %r", frame.get("event", frame.get("type")), exc)
                if frame.get("type") == "sync" or isinstance(exc, NodeUnavailableError):
                    # A sync must happen: try again. So must one after a push the node could not be
                    # asked about (its proposal, say, whose countersignature it failed to take): a
                    # proposal left unanswered keeps the channel busy for every payment of the user's.
                    await asyncio.sleep(1)
                    await self._core.inbox.put({"type": "sync"})

    async def _handle_frame(self, frame: dict[str, Any]) -> None:
        core, exchange = self._core, self._exchange
        if frame.get("type") == "expiry":
            async with core.lock:
                await self._incoming.follow_up_locked()
            return
        if frame.get("type") == "sync":
            async with core.lock:
                held = core.state.nonce if core.signed is not None else 0
                await exchange.sync_locked()
                await self._funds.credit_deposits_locked()
                await self._payments.settle_sending_locked()
                if core.state.nonce > held:  # the channel moved: its payments' pushes may be lost
                    await self._payments.catch_up_locked()
            await self._funds.poll_withdrawals()
            core.events.emit("channel.synced", core.get_channel())
            return
        event, payload = str(frame.get("event")), frame.get("payload") or {}
        if event == "update.proposed":
            async with core.lock:
                await exchange.answer_proposal_locked(payload)
        elif event == "channel.updated":
            async with core.lock:
                if int(payload.get("nonce", 0)) > core.state.nonce:
                    exchange.adopt_if_newer(exchange.verified(payload))
                    await self._incoming.follow_up_locked()
        elif event == "deposit.confirmed":  # the node's watcher sees more on chain than is credited
            asset_id = normalize_address(payload.get("assetId", ETH))
            block = int(payload.get("blockNumber", 0)) or None
            if core.chain is not None and asset_id in core.supported_assets:
                async with core.lock:
                    await self._funds.credit_deposit_locked(asset_id, block)
        elif event.startswith("withdrawal."):
            self._funds.note_withdrawal(payload, event)
        elif event.startswith("transfer."):
            self._payments.note_payment_news(payload)
            core.events.emit(event, payload)
        else:
            core.events.emit(event, payload)
