"""Client events: `on`, `once`, `off` and awaiting the next occurrence of an event.

Callbacks run on the client's event loop, in the order events happen; they may be plain functions or
coroutine functions. A callback that raises is logged and never breaks the client.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
from collections.abc import Callable
from typing import Any

from connext.errors import TimeoutError

logger = logging.getLogger("connext.client")

Callback = Callable[[dict[str, Any]], Any]
Predicate = Callable[[dict[str, Any]], bool]

EVENTS = (
    "channel.synced",  # after every (re)connection: the client's state matches the node's
    "channel.updated",  # a new doubly signed state was adopted
    "deposit.started",  # the user's deposit transaction was sent
    "deposit.confirmed",  # a deposit was credited in the channel (processed user deposits rose)
    "deposit.failed",  # the deposit transaction reverted, or its credit was refused
    "withdrawal.started",  # the node sends the withdraw transaction
    "withdrawal.confirmed",  # the withdraw transaction was mined: the funds are on chain
    "withdrawal.failed",  # the withdraw transaction failed
    "transfer.created",  # the node registered a payment this user sent (its side is locked)
    "transfer.received",  # a payment to this user is locked in its channel
    "transfer.resolved",  # a payment of this user completed (both sides resolved)
    "transfer.failed",  # a payment this user sent failed or was refunded
    "swap.completed",  # a swap of this user's was countersigned (payload: the amounts and assets)
    "swap.rates",  # the node's swap rates moved (payload: as GET /api/swap/rates)
    "update.refused",  # the client refused to countersign a node proposal (payload: code, message)
    "connection.lost",  # the websocket dropped; the client reconnects on its own
    "node.unresponsive",  # the node has not answered for `node_timeout_seconds` while funds are at stake
    "dispute.started",  # a dispute round of the channel is on chain (by anyone; payload: phase, nonce, windows)
    "dispute.answered",  # a stale disputed state was replaced with the latest doubly signed one
    "dispute.defunded",  # a defund paid out on chain (payload: kind, assetId, toUser, paymentId)
)


class EventBus:
    def __init__(self) -> None:
        self._callbacks: dict[str, list[tuple[Callback, bool]]] = {}
        self._waiters: list[tuple[str, Predicate | None, asyncio.Future[dict[str, Any]]]] = []

    def on(self, event: str, callback: Callback) -> None:
        self._callbacks.setdefault(event, []).append((callback, False))

    def once(self, event: str, callback: Callback) -> None:
        self._callbacks.setdefault(event, []).append((callback, True))

    def off(self, event: str, callback: Callback) -> None:
        self._callbacks[event] = [
            (cb, one) for cb, one in self._callbacks.get(event, []) if cb is not callback
        ]

    def emit(self, event: str, payload: dict[str, Any]) -> None:
        for waiter in list(self._waiters):
            name, predicate, future = waiter
            if name == event and not future.done() and (predicate is None or _safe(predicate, payload)):
                future.set_result(payload)
        registered = self._callbacks.get(event, [])
        self._callbacks[event] = [(cb, one) for cb, one in registered if not one]
        for callback, _ in registered:
            try:
                result = callback(payload)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result).add_done_callback(_log_failure)
            except Exception:
                logger.exception("a callback for %s failed", event)

    def waiter(self, event: str, predicate: Predicate | None = None) -> asyncio.Future[dict[str, Any]]:
        """A future for the next `event` (matching `predicate`); register it before acting."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        entry = (event, predicate, future)
        self._waiters.append(entry)
        future.add_done_callback(lambda _: self._waiters.remove(entry))
        return future

    async def wait_for(
        self, event: str, timeout: float | None, predicate: Predicate | None = None
    ) -> dict[str, Any]:
        return await wait(self.waiter(event, predicate), timeout, f"event {event}")


async def wait(future: asyncio.Future[dict[str, Any]], timeout: float | None, what: str) -> dict[str, Any]:
    try:
        async with asyncio.timeout(timeout):  # not `wait_for`: it can drop a cancellation on 3.11
            return await future
    except builtins.TimeoutError:
        raise TimeoutError(f"no {what} within {timeout}s") from None


def _safe(predicate: Predicate, payload: dict[str, Any]) -> bool:
    try:
        return bool(predicate(payload))
    except Exception:
        logger.exception("an event predicate failed")
        return False


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("an async callback failed", exc_info=task.exception())
